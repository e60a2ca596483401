"""Runs stored when a binary task's ranking cells were binned at 10 bits, then at 12, one cell per bin, by default
(now 11 bits keeping up to 8 scores a bin): read for display with the values they had, and refused by ``evalpipe
merge`` (exit 2), whose union of cells of two grids would put them out of order (ROC-AUC 0.67 where scikit-learn
gives 0.83, with a tiny bound)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from evaluators import catalog
from evaluators.statistic import Statistic
from evaluators.task import Task
from pipelines import cli
from pipelines.results import list_runs, load_run, load_statistics
from pipelines.storage import STATISTICS_FILE, STATISTICS_INDEX
from tests.conftest import write_job


def _shard(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(20_000) < 0.3).astype(np.int8)
    score = 1 / (1 + np.exp(-(rng.normal(size=20_000) + 1.5 * y - 1)))
    pq.write_table(pa.table({"score": score, "label": y}), path)
    return score, y


def _run(tmp_path: Path, data: Path, params: dict, capsys, window: dict | None = None) -> str:
    metrics = [{"name": name, "as": name, **params} for name in ("roc_auc", "average_precision")]
    spec = {
        "name": "bits",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": metrics,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
        **({"window": window} if window else {}),
    }
    job = write_job(tmp_path / f"job-{data.stem}.yaml", spec)
    assert cli.main(["run", str(job)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("evalpipe outcome: "))["run_uri"]


EARLIER_DEFAULTS = [
    ({"precision_bits": 10, "bin_scores": 1}, {}),
    ({"precision_bits": 12, "bin_scores": 1}, {}),
    ({"precision_bits": 12, "bin_scores": 8}, {"bin_scores": 8}),
    ({"precision_bits": 12, "bin_scores": 1}, {"bin_scores": 1}),
]
"""``(settings a run was stored with, those its spec set)``: a binary task's ranking defaults before 8 kept scores a
bin at 11 bits, 10 bits, then 12, of one cell per bin; and a spec that set ``bin_scores`` (8, or 1) but left the
bits to the 12 of then."""
EARLIER_IDS = ["10-bits", "12-bits", "12-bits-spec-kept-8", "12-bits-spec-one-cell"]


def _as_if_stored_by_default(run: Path, spec_settings: dict) -> None:
    """A run of an earlier default's settings made to look like one whose spec left them to the default of then
    (but for ``spec_settings``): its recorded spec without them (what a run of that default recorded), its
    statistics as stored."""
    record = json.loads((run / "run.json").read_text())
    for metric in record["metadata"]["spec"]["metrics"]:
        for key in ("precision_bits", "bin_scores"):
            if key not in spec_settings:
                metric.pop(key, None)
    (run / "run.json").write_text(json.dumps(record))
    manifest = json.loads((run / "_COMMITTED").read_text())
    manifest["files"]["run.json"] = (run / "run.json").stat().st_size
    (run / "_COMMITTED").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("earlier", "spec_settings"), EARLIER_DEFAULTS, ids=EARLIER_IDS)
def test_a_run_of_an_earlier_default_reads_as_stored_and_is_not_merged(tmp_path, capsys, earlier, spec_settings):
    default = catalog.build("roc_auc", Task("binary"), spec_settings).statistic
    assert (default.precision_bits, default.bin_scores) == (11, spec_settings.get("bin_scores", 8))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _shard(tmp_path / "a" / "p0.parquet", 0)
    second = _shard(tmp_path / "b" / "p1.parquet", 1)
    binned = {"exact_cells": 0, **spec_settings}
    old = Path(_run(tmp_path, tmp_path / "a", {**binned, **earlier}, capsys))
    new = _run(tmp_path, tmp_path / "b", binned, capsys)
    _as_if_stored_by_default(old, spec_settings)
    stored = (old / STATISTICS_INDEX).read_text()
    assert f"precision_bits={earlier['precision_bits']}" in stored
    assert ("bin_scores" in stored) == (earlier["bin_scores"] != 1)

    # display: the stored cells in their order, the values the run recorded (within the bound of scikit-learn's)
    stats = load_statistics(str(old))
    recorded = {key: m.value for key, m in load_run(str(old)).point("overall").metrics.items()}
    for name, reference in (("roc_auc", roc_auc_score), ("average_precision", average_precision_score)):
        metric = stats.metric(name)
        rebuilt = metric.statistic  # (rebuilt from the recorded spec by this evalpipe: today's default)
        assert (rebuilt.precision_bits, rebuilt.bin_scores) == (default.precision_bits, default.bin_scores)
        values = metric.compute(stats.state(name, "overall"))
        assert values[""] == recorded[name]
        assert abs(values[""] - reference(first[1], first[0])) <= values[".error_bound"]

    # merge: the two runs' cells are of two grids, so exit 2 naming the change, nothing written
    code = cli.main(["merge", str(old), new, "--name", "mixed", "--output", str(tmp_path / "merged")])
    err = capsys.readouterr().err
    assert code == 2 and "bin_scores: 8" in err and "12 bits" in err and str(old) in err  # (nothing merged by place)
    assert not (tmp_path / "merged").exists() or not any((tmp_path / "merged").rglob("_COMMITTED"))
    # two runs of one grid still merge, to scikit-learn's value on both shards
    again = _run(tmp_path, tmp_path / "a", binned, capsys)
    assert cli.main(["merge", again, new, "--name", "same", "--output", str(tmp_path / "merged")]) == 0
    merged = capsys.readouterr().out.strip().splitlines()[-1].split("merged 2 runs: ")[-1]
    both = load_run(merged).point("overall").metrics["roc_auc"]
    scores, labels = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    assert abs(both.value - roc_auc_score(labels, scores)) <= 1e-6


@pytest.mark.parametrize(("earlier", "spec_settings"), EARLIER_DEFAULTS, ids=EARLIER_IDS)
def test_a_window_leaves_out_a_run_of_an_earlier_default_and_merges_the_rest(tmp_path, capsys, earlier, spec_settings):
    """Tonight's run of the new default, with a window over the last 3 runs: the run stored under an earlier default
    is left out (listed in ``metadata.window.skipped``, as a run of other settings is), and the window commits from
    the runs that merge, equal to scikit-learn over their shards. Before, the window's merge failed: exit 2 each night
    until that run left the window."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    shards = [_shard(tmp_path / name / f"{name}.parquet", seed) for seed, name in enumerate(("a", "b", "c"))]
    binned = {"exact_cells": 0, **spec_settings}
    old = Path(_run(tmp_path, tmp_path / "a", {**binned, **earlier}, capsys))
    _as_if_stored_by_default(old, spec_settings)
    _run(tmp_path, tmp_path / "b", binned, capsys)
    _run(tmp_path, tmp_path / "c", binned, capsys, window={"runs": 3})  # (exit 0 asserted by _run)
    (window_run,) = list_runs(str(tmp_path / "out"), "bits-3runs")
    run = load_run(window_run.uri)
    assert run.metadata["window"]["skipped"] == [str(old)]
    scores = np.concatenate([shards[1][0], shards[2][0]])
    labels = np.concatenate([shards[1][1], shards[2][1]])
    assert abs(run.point("overall").metrics["roc_auc"].value - roc_auc_score(labels, scores)) <= 1e-6
    assert run.metadata["rows"] == len(labels)


def test_a_window_leaves_out_runs_damaged_after_their_commit(tmp_path, capsys):
    """An older run whose run.json or statistics index was damaged after the commit (sizes kept, so the manifest
    still lists them): `show` exits 2 naming it, and a window leaves it out (listed as skipped) instead of failing
    every night until it leaves the window."""
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).mkdir()
    shards = [_shard(tmp_path / n / f"{n}.parquet", seed) for seed, n in enumerate(("a", "b", "c", "d"))]
    damaged = [Path(_run(tmp_path, tmp_path / n, {}, capsys)) for n in ("a", "b")]
    for run, name in zip(damaged, ("run.json", STATISTICS_INDEX), strict=True):
        size = (run / name).stat().st_size
        (run / name).write_text("{" + " " * (size - 1))
    _run(tmp_path, tmp_path / "c", {}, capsys)
    _run(tmp_path, tmp_path / "d", {}, capsys, window={"runs": 4})
    (window_run,) = list_runs(str(tmp_path / "out"), "bits-4runs")
    run = load_run(window_run.uri)
    assert sorted(run.metadata["window"]["skipped"]) == sorted(str(r) for r in damaged)
    scores = np.concatenate([shards[2][0], shards[3][0]])
    labels = np.concatenate([shards[2][1], shards[3][1]])
    assert abs(run.point("overall").metrics["roc_auc"].value - roc_auc_score(labels, scores)) <= 1e-6
    assert run.metadata["rows"] == len(labels)


def test_a_window_leaves_out_a_run_whose_statistics_were_damaged_after_its_commit(tmp_path, capsys):
    """An older run whose ``statistics.npz`` was overwritten after the commit (its size kept): its run.json and index
    still read, so only the merge finds it. The window leaves that run out (listed as skipped) and commits from the
    others, equal to scikit-learn over their shards; before, the window failed every night until it left the window."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    shards = [_shard(tmp_path / n / f"{n}.parquet", seed) for seed, n in enumerate(("a", "b", "c"))]
    runs = [Path(_run(tmp_path, tmp_path / n, {}, capsys)) for n in ("a", "b")]
    npz = runs[0] / STATISTICS_FILE
    data = bytearray(npz.read_bytes())
    data[len(data) // 4 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 4)  # (zeros over a quarter of it)
    npz.write_bytes(bytes(data))
    assert cli.main(["show", str(runs[0])]) == 0  # (what `show` reads is intact)
    _run(tmp_path, tmp_path / "c", {}, capsys, window={"runs": 3})
    (window_run,) = list_runs(str(tmp_path / "out"), "bits-3runs")
    run = load_run(window_run.uri)
    assert run.metadata["window"]["skipped"] == [str(runs[0])]
    scores = np.concatenate([shards[1][0], shards[2][0]])
    labels = np.concatenate([shards[1][1], shards[2][1]])
    assert abs(run.point("overall").metrics["roc_auc"].value - roc_auc_score(labels, scores)) <= 1e-6
    assert run.metadata["rows"] == len(labels)
    assert "statistics.npz" in cli_merge_error(tmp_path, runs)


def cli_merge_error(tmp_path: Path, runs: list[Path]) -> str:
    """What ``evalpipe merge`` of ``runs`` says (exit 2): the damaged file, by name."""
    import subprocess
    import sys

    merge = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "merge",
            *map(str, runs),
            "--name",
            "both",
            "--output",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert merge.returncode == 2 and "Traceback" not in merge.stderr, merge.stderr
    return merge.stderr


@dataclass(frozen=True)
class _OwnSum(Statistic):
    """A user's own statistic (outside evalpipe's modules): its repr may name what evalpipe cannot check."""

    label: str = "mine"

    def zero(self):
        return {"total": np.zeros(())}

    def update(self, state, batch):
        return {"total": state["total"] + np.sum(batch["weights"])}

    def merge(self, a, b):
        return {"total": a["total"] + b["total"]}


def test_stored_states_are_read_by_place_only_for_statistics_that_are_not_evalpipe_s_own():
    """A run's stored repr that none of this evalpipe's statistics names: one of evalpipe's own statistics stored with
    other settings (a ranking state binned at other bits, or of other ``exact_cells``) is not read by its place, for
    display or a merge; a user's own statistic of another repr still is (it was before)."""
    from pipelines.storage import stored_positions

    ours = catalog.build("roc_auc", Task("binary")).statistic
    for other in ({"exact_cells": 1000}, {"precision_bits": 9}, {"score_decimals": 2}):
        stored = catalog.build("roc_auc", Task("binary"), other).statistic
        meta = {"statistics": [{"repr": repr(stored)}]}
        assert stored_positions([ours], meta) is None
        assert stored_positions([ours], meta, approximately=True) is None
    earlier = catalog.build("roc_auc", Task("binary"), {"precision_bits": 12, "bin_scores": 1}).statistic
    meta = {"statistics": [{"repr": repr(earlier)}]}
    assert stored_positions([ours], meta) is None and stored_positions([ours], meta, approximately=True) == [0]
    own = {"statistics": [{"repr": repr(_OwnSum("theirs"))}]}
    assert stored_positions([_OwnSum()], own) == [0]
