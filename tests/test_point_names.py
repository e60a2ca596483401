"""Points of slices whose names could collide, NaN values of bucketed columns, and tests of a one-row slice: each
slice's value equals scikit-learn's on that slice's rows, and no two slices share a point."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score

from pipelines import spec as spec_module
from pipelines.cli import main
from pipelines.errors import SpecError
from pipelines.execute import run_job
from pipelines.significance import compare_runs, compare_slices
from tests.conftest import write_job


def _job(tmp_path, table: pa.Table, slices: list, name: str = "names", **extra) -> dict:
    data = tmp_path / f"data-{name}"
    data.mkdir(exist_ok=True)
    pq.write_table(table, data / "part.parquet", row_group_size=700)
    columns = {"predictions": "score", "targets": "label", **extra.pop("columns", {})}
    return {
        "name": name,
        "data": {"path": str(data), "columns": columns},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": slices,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
        **extra,
    }


def _run(tmp_path, spec: dict):
    return run_job(spec_module.load(str(write_job(tmp_path / f"{spec['name']}.yaml", spec))), show_progress=False)


def _scores(rng, n):
    label = rng.integers(0, 2, n)
    return np.clip(0.3 * label + 0.7 * rng.random(n), 0, 1), label


def _accuracy(table: pa.Table, mask: np.ndarray) -> float:
    score, label = table["score"].to_numpy()[mask], table["label"].to_numpy()[mask]
    return float(accuracy_score(label, score >= 0.5))


def test_values_holding_commas_equals_signs_and_backslashes_name_points_of_their_own(tmp_path):
    rng = np.random.default_rng(2)
    n = 3000
    score, label = _scores(rng, n)
    i = np.arange(n)
    a = np.select([i < 1000, i < 1400, i < 1700], ["1,b=2", "x\\,y", "x,y"], "1")
    b = np.where(i % 2 == 0, "2", "3")
    table = pa.table({"score": score, "label": label, "a": a, "b": b})
    result = _run(tmp_path, _job(tmp_path, table, [{"column": "a"}, {"columns": ["a", "b"]}]))
    names = [p.name for p in result.run.points]
    assert len(names) == len(set(names))
    expected = {
        "a=1\\,b\\=2": a == "1,b=2",  # the value `1,b=2` of column a
        "a=x\\\\\\,y": a == "x\\,y",  # the value `x\,y`
        "a=x\\,y": a == "x,y",
        "a=1,b=2": (a == "1") & (b == "2"),  # the cross a=1, b=2
        "a=1\\,b\\=2,b=2": (a == "1,b=2") & (b == "2"),
    }
    for name, mask in expected.items():
        point = result.run.point(name)
        assert point.metrics["rows"].value == mask.sum(), name
        assert point.metrics["accuracy"].value == pytest.approx(_accuracy(table, mask), abs=1e-12), name
    assert result.run.point("a=1\\,b\\=2").tags == {"a": "1,b=2"}
    assert result.run.point("a=1,b=2").tags == {"a": "1", "b": "2"}
    # a run compared with itself: every point paired with itself, nothing regressed
    assert main(["compare", result.uri, result.uri]) == 0


def test_a_column_named_filter_is_sliced_by_its_values(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    score, label = _scores(rng, n)
    kind = np.where(np.arange(n) < 500, "hi", "other")
    table = pa.table({"score": score, "label": label, "filter": kind})
    result = _run(tmp_path, _job(tmp_path, table, [{"column": "filter"}, {"columns": ["filter", "label"]}]))
    for value in ("hi", "other"):
        point = result.run.point(f"filter={value}")
        assert point.metrics["rows"].value == (kind == value).sum()
        assert point.metrics["accuracy"].value == pytest.approx(_accuracy(table, kind == value), abs=1e-12)
    cross = result.run.point("filter=other,label=1")
    assert cross.metrics["rows"].value == ((kind == "other") & (label == 1)).sum()


def test_a_column_named_filter_beside_filter_entries_is_refused_naming_the_entry(tmp_path):
    rng = np.random.default_rng(4)
    score, label = _scores(rng, 100)
    table = pa.table({"score": score, "label": label, "filter": np.full(100, "hi"), "x": rng.random(100)})
    slices = [{"column": "filter"}, {"name": "hi", "filter": {"x": {"ge": 0.9}}}]
    spec = _job(tmp_path, table, slices)
    with pytest.raises(SpecError, match=r"slices\[0\] \(line \d+\): a column named `filter` cannot be sliced .*'hi'"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", spec)))


@pytest.mark.parametrize("entry", [{"boundaries": [0.3, 0.6]}, {"quantiles": 4}])
def test_nan_values_of_a_bucketed_column_are_a_slice_of_their_own(tmp_path, entry):
    rng = np.random.default_rng(5)
    n = 4000
    score, label = _scores(rng, n)
    x = rng.random(n)
    x[rng.permutation(n)[:100]] = np.nan
    table = pa.table({"score": score, "label": label, "x": x})
    result = _run(tmp_path, _job(tmp_path, table, [{"column": "x", **entry}]))
    sliced = [p for p in result.run.points if p.name != "overall"]
    assert sum(p.metrics["rows"].value for p in sliced) == n  # every row in one bucket
    point = result.run.point("x=nan")
    assert point.metrics["rows"].value == 100
    assert point.metrics["accuracy"].value == pytest.approx(_accuracy(table, np.isnan(x)), abs=1e-12)
    finite = x[~np.isnan(x)]
    cuts = [0.3, 0.6] if "boundaries" in entry else list(np.quantile(finite, [0.25, 0.5, 0.75]))
    first = next(p for p in sliced if p.name.startswith("x=[-inf,"))
    assert first.metrics["rows"].value == (finite < cuts[0]).sum()


def test_a_one_row_slice_is_not_significantly_different_from_anything(tmp_path):
    """Its interval is NaN (one resampled unit); its paired differences cannot be tested either."""
    rng = np.random.default_rng(1)
    n = 2000
    score, label = _scores(rng, n)
    group = np.where(np.arange(n) == 0, "solo", "big")
    flipped = score.copy()
    flipped[0] = 1 - flipped[0]
    runs = []
    for k, s in enumerate((score, flipped)):
        table = pa.table({"row_id": np.arange(n), "score": s, "label": label, "grp": group})
        spec = _job(
            tmp_path,
            table,
            [{"column": "grp"}],
            name=f"onerow{k}",
            columns={"row_id": "row_id"},
            confidence={"method": "bootstrap", "replicates": 100, "seed": 3, "samples": True},
        )
        spec["name"] = "onerow"
        runs.append(_run(tmp_path, {**spec, "output": {"uri": str(tmp_path / "out")}}).run)
    solo = runs[0].point("grp=solo").metrics["accuracy"]
    assert np.isnan(solo.lower) and np.isnan(solo.upper) and np.isfinite(solo.samples).any()
    within = compare_slices(runs[0], "accuracy", "grp=solo", "grp=big")
    across = compare_runs(runs[0], runs[1], "accuracy", "grp=solo")
    for result in (within, across):
        assert np.isnan(result.p_value) and not result.significant
    assert across.effect_size == pytest.approx(
        runs[0].point("grp=solo").metrics["accuracy"].value - runs[1].point("grp=solo").metrics["accuracy"].value
    )
    # the big slice still tests: the same rows give p = 1 (no difference)
    same = compare_runs(runs[0], runs[0], "accuracy", "grp=big")
    assert same.p_value == 1.0 and not same.significant


def test_a_cross_with_a_column_named_filter_beside_filter_entries_has_points_of_its_own(tmp_path):
    rng = np.random.default_rng(6)
    n = 2000
    score, label = _scores(rng, n)
    kind = np.where(np.arange(n) < 400, "hi", "lo")
    x = rng.random(n)
    table = pa.table({"score": score, "label": label, "filter": kind, "x": x})
    slices = [{"columns": ["filter", "label"]}, {"name": "hi", "filter": {"x": {"ge": 0.9}}}]
    result = _run(tmp_path, _job(tmp_path, table, slices))
    high = result.run.point("filter=hi")  # the filter entry
    assert high.metrics["rows"].value == (x >= 0.9).sum()
    assert high.metrics["accuracy"].value == pytest.approx(_accuracy(table, x >= 0.9), abs=1e-12)
    cross = result.run.point("filter=hi,label=0")
    assert cross.metrics["rows"].value == ((kind == "hi") & (label == 0)).sum()


def test_stored_statistics_and_comparisons_find_points_by_their_escaped_names(tmp_path):
    """Curves read a slice's stored state by the point's name; a one-row slice, which the paired test cannot
    test, regresses by the tolerance alone."""
    from pipelines.results import compare_all, load_statistics

    rng = np.random.default_rng(7)
    n = 2000
    score, label = _scores(rng, n)
    a = np.where(np.arange(n) < 300, "1,b=2", np.where(np.arange(n) == 300, "solo", "1"))
    b = np.where(np.arange(n) % 2 == 0, "2", "3")
    runs = []
    for k in range(2):
        s = score.copy()
        if k:
            s[300] = 1 - s[300]  # the one row of a=solo flips
        table = pa.table({"row_id": np.arange(n), "score": s, "label": label, "a": a, "b": b})
        spec = _job(
            tmp_path,
            table,
            [{"column": "a"}, {"columns": ["a", "b"]}],
            name=f"esc{k}",
            columns={"row_id": "row_id"},
            confidence={"method": "bootstrap", "replicates": 50, "seed": 1, "samples": True},
        )
        runs.append(_run(tmp_path, {**spec, "name": "esc"}))
    stats = load_statistics(runs[0].uri)
    table = pa.table({"score": score, "label": label})
    for name, mask in (("a=1\\,b\\=2", a == "1,b=2"), ("a=1,b=2", (a == "1") & (b == "2"))):
        value = stats.metric("accuracy").compute(stats.state("accuracy", name))[""]
        assert value == pytest.approx(_accuracy(table, mask), abs=1e-12), name
        assert runs[0].run.point(name).metrics["rows"].value == mask.sum()
    solo = [c for c in compare_all(runs[0].run, runs[1].run) if c.point == "a=solo" and c.metric == "accuracy"]
    assert solo and solo[0].significance is None and solo[0].regressed == (solo[0].worse_by > 0)


def test_values_holding_newlines_and_nuls_keep_the_text_tables_rows_whole(tmp_path, capsys):
    """`evalpipe show` of slices whose values hold a newline, a tab or a NUL: one line per entry, the characters
    written as escapes (a row was split in two and the NUL printed raw); JSON keeps the values as they are."""
    rng = np.random.default_rng(3)
    n = 900
    score, label = _scores(rng, n)
    values = np.array(["two\nlines", "tab\there", "nul\x00byte"], dtype=object)[
        np.arange(n) % 3
    ]  # (object: Arrow cuts U at a NUL)
    table = pa.table({"score": score, "label": label, "v": values})
    result = _run(tmp_path, _job(tmp_path, table, [{"column": "v"}], name="controls"))
    assert result.run.point("v=two\nlines").metrics["rows"].value == 300
    capsys.readouterr()
    assert main(["show", result.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    body = [line for line in lines[2:] if line.startswith(("overall", "v="))]
    assert len(body) == 4 * 2  # (overall and three slices) x (accuracy, rows)
    assert sum(line.startswith("v=two\\nlines ") for line in body) == 2
    assert sum(line.startswith("v=tab\\there ") for line in body) == 2
    assert sum(line.startswith("v=nul\\x00byte ") for line in body) == 2, body
    assert not any("\x00" in line or "\t" in line for line in lines)
    assert main(["show", result.uri, "--format", "json"]) == 0
    assert "two\\nlines" in capsys.readouterr().out  # (JSON's own escape of the newline)
    plain = _run(tmp_path, _job(tmp_path, table, [], name="controls"))  # (a run of the same job without the slices)
    assert main(["compare", result.uri, plain.uri]) == 0
    out = capsys.readouterr().out
    assert "not compared: points v=nul\\x00byte, v=tab\\there, v=two\\nlines, only in the baseline" in out, out


@pytest.mark.parametrize("negative_first", [False, True])
def test_negative_zero_and_zero_name_one_slice_whichever_file_comes_first(tmp_path, negative_first):
    """-0.0 and 0.0 compare equal and are one slice; its name was `x=-0` when a file of -0.0 came first."""
    rng = np.random.default_rng(4)
    data = tmp_path / "data"
    data.mkdir()
    signs = (-0.0, 0.0) if negative_first else (0.0, -0.0)
    tables = []
    for i, zero in enumerate(signs):
        score, label = _scores(rng, 100)
        x = np.where(np.arange(100) < 60, zero, 1.5)
        tables.append(pa.table({"score": score, "label": label, "x": x}))
        pq.write_table(tables[-1], data / f"part-{i}.parquet")
    spec = _job(tmp_path, tables[0], [{"column": "x"}], name="zeros")
    spec["data"]["path"] = str(data)
    run = _run(tmp_path, spec).run
    assert [p.name for p in run.points] == ["overall", "x=0", "x=1.5"]
    table = pa.concat_tables(tables)
    zero = table["x"].to_numpy() == 0.0
    assert run.point("x=0").metrics["rows"].value == 120
    assert run.point("x=0").metrics["accuracy"].value == pytest.approx(_accuracy(table, zero), abs=1e-12)
    assert run.point("x=0").tags == {"x": "0"}
