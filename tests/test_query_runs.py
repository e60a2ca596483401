"""A query's rows are checked for one contiguous run as the files hold them, before bad rows are dropped or rows are
split into slices: either could otherwise join two runs of one query into one ranked list, silently."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import ndcg_score

from pipelines.cli import main
from pipelines.results import load_run
from tests.conftest import write_job


def _job(tmp_path, table: pa.Table, *, slices: bool = False, drop: bool = False, row_group_size: int | None = None):
    pq.write_table(table, tmp_path / "q.parquet", row_group_size=row_group_size)
    data = {"path": str(tmp_path / "q.parquet"), "columns": {"predictions": "s", "targets": "r", "query_id": "q"}}
    spec = {
        "name": "runs",
        "data": {**data, **({"on_bad_rows": "drop"} if drop else {})},
        "task": "ranking",
        "metrics": ["ndcg", "mean_reciprocal_rank"],
        **({"slices": [{"column": "c"}]} if slices else {}),
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec)


@pytest.mark.parametrize(
    ("table", "options"),
    [
        # query 1 in two runs, the rows between them in another slice: the slice's rows looked contiguous
        (
            {"q": [1, 1, 2, 2, 1], "s": [0.9, 0.1, 0.5, 0.4, 0.3], "r": [0, 1, 1, 0, 1], "c": list("UUDDU")},
            {"slices": True},
        ),
        # the row between the two runs dropped as bad (a NaN score, a negative relevance)
        ({"q": [1, 1, 2, 1], "s": [0.9, 0.1, float("nan"), 0.3], "r": [0, 1, 1, 1], "c": list("UUUU")}, {"drop": True}),
        ({"q": ["a", "a", "b", "a"], "s": [0.9, 0.1, 0.5, 0.3], "r": [0, 1, -1, 1], "c": list("UUUU")}, {"drop": True}),
    ],
)
def test_two_runs_of_a_query_hidden_by_a_slice_or_a_dropped_row_are_refused(tmp_path, capsys, table, options) -> None:
    job = _job(tmp_path, pa.table(table), **options)
    assert main(["run", str(job), "--quiet"]) == 2  # committed nDCG 0.8467 (query 1's runs joined) before
    err = capsys.readouterr().err
    query = table["q"][0]
    assert f"query {query!r} has rows in two separate runs of rows" in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "runs").exists()


def test_contiguous_queries_across_many_row_groups_keep_their_values_with_slices_and_dropped_rows(tmp_path, capsys):
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 9, 60)
    q = np.repeat(np.arange(60), sizes)
    n = len(q)
    s, r = rng.random(n), rng.integers(0, 3, n).astype(float)
    r[rng.random(n) < 0.05] = -1.0  # bad rows inside queries, dropped
    c = np.where(q % 2 == 0, "even", "odd")  # a slice column constant within each query
    job = _job(
        tmp_path, pa.table({"q": q, "s": s, "r": r, "c": c}), slices=True, drop=True, row_group_size=5
    )  # (queries go on from one row group, one batch, into the next)
    assert main(["run", str(job), "--quiet"]) == 0, capsys.readouterr().err
    overall = load_run(str(tmp_path / "out" / "runs" / "latest")).point("overall").metrics
    good = r >= 0
    per_query = [
        ndcg_score([r[good & (q == i)]], [s[good & (q == i)]]) if (good & (q == i)).sum() > 1 else None
        for i in range(60)
    ]
    expected = [v for v in per_query if v is not None]
    singles = [i for i in range(60) if (good & (q == i)).sum() == 1]
    # (a one-item query's nDCG is 1 where its item is relevant, 0 otherwise; scikit-learn refuses one item)
    expected += [1.0 if r[good & (q == i)][0] > 0 else 0.0 for i in singles]
    assert overall["ndcg"].value == pytest.approx(np.mean(expected), abs=1e-12)


def test_a_query_in_two_files_of_one_unit_is_refused_naming_the_second_file_and_the_id_as_written(tmp_path, capsys):
    """Query 1 at the start of ``a.parquet`` and at the end of ``b.parquet``, both files in one work unit: the
    statistic meets it first, and the message named it ``np.int64(1)`` without a file."""
    data = tmp_path / "d"
    data.mkdir()
    pq.write_table(pa.table({"q": [1, 1, 2, 2], "s": [0.9, 0.1, 0.8, 0.3], "r": [1, 0, 0, 1]}), data / "a.parquet")
    pq.write_table(pa.table({"q": [3, 3, 1, 1], "s": [0.9, 0.1, 0.8, 0.3], "r": [1, 0, 0, 1]}), data / "b.parquet")
    job = _job(tmp_path, pa.table({"q": [0], "s": [0.5], "r": [1]}))
    text = job.read_text().replace(str(tmp_path / "q.parquet"), str(data))
    job.write_text(text)
    assert main(["run", str(job), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "query 1 has rows in two separate runs of rows (the second in " in err, err
    assert str(data / "b.parquet") in err and "np.int64" not in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "runs").exists()


def test_the_statistics_own_message_shows_a_numpy_query_id_as_written():
    from evaluators.retrieval import reopened

    assert str(reopened(np.int64(7))).startswith("query 7: ")
    assert str(reopened(np.str_("q1"))).startswith("query 'q1': ")
