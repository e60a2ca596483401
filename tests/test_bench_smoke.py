"""``scripts/bench.py`` at toy sizes, every tool in this process: the subcommands run end to end and the check
that evalpipe's values equal scikit-learn's passes (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench
import bench_harness
import bench_suites

pytest.importorskip("sklearn")
pytest.importorskip("torchmetrics")
pytestmark = pytest.mark.filterwarnings("ignore")


def _run(tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "result.json"
    bench.main([*args, "--repeats", "1", "--inline", "--data-dir", str(tmp_path / "data"), "--json", str(out)])
    return json.loads(out.read_text())["results"]


def test_suites_match_sklearn(tmp_path, capsys):
    for args in (
        ("binary", "--rows", "3000", "--shard-rows", "1000"),
        ("multiclass", "--multiclass-rows", "1500", "--classes", "7"),
        ("segmentation", "--images", "6", "--size", "32", "--segmentation-classes", "5"),
    ):
        (result,) = _run(tmp_path, *args)
        assert result["values_match_sklearn"]["ok"], result["values_match_sklearn"]
        assert set(result["table"]) == set(bench_harness.TOOLS)
        assert all(row["wall_s"] > 0 and row["peak_rss_mb"] > 0 for row in result["table"].values())
    assert "| segmentation | evalpipe |" in capsys.readouterr().out


def test_values_check_catches_a_difference():
    suite = bench_suites.Suite("binary", 1, Path("."), {}, {}, ({"name": "roc_auc", "as": "roc_auc"},), 1)
    assert bench_harness.compare_values(suite, {"roc_auc": 0.9, "roc_auc.error_bound": 0.01}, {"roc_auc": 0.905})["ok"]
    assert not bench_harness.compare_values(suite, {"roc_auc": 0.9, "roc_auc.error_bound": 0.001}, {"roc_auc": 0.905})[
        "ok"
    ]


def test_reduce_and_memory(tmp_path):
    common = ("--rows", "4000", "--shard-rows", "200")
    (reduce,) = _run(tmp_path, "reduce", *common, "--units", "64")
    assert reduce["units"] == 64 and reduce["state_bytes"] > 0
    assert set(reduce["per_statistic"]) >= {"ConfusionCounts", "ScoreHistogram"}
    (memory,) = _run(tmp_path, "memory", *common, "--shards", "1")
    assert set(memory["table"]) == {"1 shards", "10 shards"}
    assert memory["table"]["10 shards"]["rows"] == 10 * memory["table"]["1 shards"]["rows"]


def test_families_match_their_references(capsys):
    bench.main(
        ["families", "--ranking-rows", "3000", "--queries", "300", "--fairness-rows", "3000", "--text-rows", "60"]
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"ranking", "fairness", "text bleu", "text wer"}
    assert result["ranking"]["references"]["scikit-learn ndcg_score"]["max_abs_difference"] <= 1e-9


def test_fused_update_part_runs_at_toy_size():
    import argparse
    import os

    import bench_fused

    before = os.sched_getaffinity(0)
    try:
        result = bench_fused.bench_fused(argparse.Namespace(rows=3000, repeats=1, cpu=min(before)))
    finally:
        os.sched_setaffinity(0, before)
    assert result["statistics"] == ["ConfusionCounts", "ScoreHistogram", "BrierSum", "CalibrationBins"]
    assert result["fused_s"] > 0 and result["sum_of_parts_s"] == pytest.approx(sum(result["parts_s"].values()))
