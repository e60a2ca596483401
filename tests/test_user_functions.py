"""User metric functions (trlx interface) by dotted path: allow-list, aggregation equal to numpy on the function's
own outputs, intervals, per-row scores written with the run, and clear errors."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluators.accumulate import Accumulator
from evaluators.sketch import ALPHA, ScoreSketch, sketch_quantiles
from pipelines import spec as spec_module
from pipelines.errors import DataError, SpecError
from pipelines.execute import run_job
from pipelines.results import load_run
from pipelines.synthetic import write_shards
from tests import user_metrics
from tests.conftest import write_job


def _job(tmp_path, data, **function):
    spec = {
        "name": "generations",
        "data": {
            "path": str(data),
            "columns": {"predictions": "candidate", "targets": "reference", "row_id": "row_id"},
        },
        "task": "text",
        "functions": [
            {
                "function": "tests.user_metrics.lengths",
                "outputs": ["output_words", "exact", "sample_chars"],
                "columns": {"prompts": "country", "outputs": "candidate", "reference": "reference"},
                "as": "gen",
                "scores": True,
                **function,
            }
        ],
        "allow_modules": ["tests.user_metrics"],
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 80},
        "execution": {"runner": "local", "unit_rows": 300},
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec


def _load(tmp_path, spec, name="job.yaml"):
    return spec_module.load(str(write_job(tmp_path / name, spec)))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    data = tmp_path_factory.mktemp("pairs")
    write_shards(str(data), "text", 1_500, 5, seed=2, row_group_rows=200)
    return data


def test_function_scores_are_aggregated_like_numpy_on_its_outputs(tmp_path, pairs):
    run = run_job(_load(tmp_path, _job(tmp_path, pairs)), show_progress=False)
    table = pq.read_table(pairs)
    candidate = table.column("candidate").to_pylist()
    reference = table.column("reference").to_pylist()
    country = table.column("country").to_pylist()
    expected = user_metrics.lengths(
        [c + o for c, o in zip(country, candidate, strict=True)], country, candidate, reference=reference
    )
    values = {k: m for k, m in run.run.point("overall").metrics.items()}
    for name, scores in expected.items():
        scores = np.asarray(scores)
        assert values[f"gen.{name}"].value == pytest.approx(scores.mean(), rel=1e-12)
        assert values[f"gen.{name}.std"].value == pytest.approx(scores.std(), rel=1e-9, abs=1e-12)
        assert values[f"gen.{name}.min"].value == scores.min() and values[f"gen.{name}.max"].value == scores.max()
        assert values[f"gen.{name}.count"].value == len(scores)
        median = np.quantile(scores, 0.5, method="inverted_cdf")
        assert abs(values[f"gen.{name}.p50"].value - median) <= ALPHA * abs(median) + 1e-9
        assert values[f"gen.{name}"].lower <= values[f"gen.{name}"].value <= values[f"gen.{name}"].upper
    # a slice: the rows of one country
    us = np.asarray([c == "US" for c in country])
    words = np.asarray(expected["output_words"])
    assert run.run.point("country=US").metrics["gen.output_words"].value == pytest.approx(words[us].mean(), rel=1e-12)
    # per-row scores, keyed by row, written with the run and listed in its manifest
    scores = pq.read_table(f"{run.uri}/scores.parquet")
    by_id = dict(zip(scores.column("row_id").to_pylist(), scores.column("gen.exact").to_pylist(), strict=True))
    ids = table.column("row_id").to_pylist()
    assert by_id == dict(zip(ids, expected["exact"], strict=True))
    assert load_run(run.uri).metadata["spec"]["functions"][0]["function"] == "tests.user_metrics.lengths"


def test_quantile_sketch_is_within_its_relative_error():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.lognormal(0, 2, 5_000), -rng.exponential(3, 2_000), np.zeros(100)])
    acc = Accumulator([ScoreSketch("x")])
    state = acc.update(acc.zero(), {"x": values})[0]
    qs = np.array([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    got = sketch_quantiles(state["cells"], qs)
    want = np.quantile(values, qs, method="inverted_cdf")
    assert np.all(np.abs(got - want) <= ALPHA * np.abs(want) + 1e-9), (got, want)


def test_the_std_of_scores_far_from_0_keeps_its_digits_however_the_rows_are_split():
    """Scores of N(1e8, 0.01): sums of x and x^2 cancel in float64 (std 1.41 read, intervals that left out the
    value and moved with the sharding). The spread about each state's mean, merged by Chan's formula, keeps them."""
    from evaluators.sketch import summary

    rng = np.random.default_rng(2)
    values, weights = rng.normal(1e8, 0.01, 1_200), rng.uniform(0.5, 1.5, 1_200)
    sketch = ScoreSketch("x")
    acc = Accumulator([sketch])
    whole = acc.update(acc.zero(), {"x": values, "weights": weights})[0]
    parts = [acc.update(acc.zero(), {"x": values[i::4], "weights": weights[i::4]})[0] for i in range(4)]
    merged = parts[0]
    for part in parts[1:]:
        merged = sketch.merge(merged, part)
    mean = np.average(values, weights=weights)
    want = np.sqrt(np.average((values - mean) ** 2, weights=weights))
    for state in (whole, merged):
        assert summary(state)[".std"] == pytest.approx(want, rel=1e-6)
    # replicates: a replicate of weight 1 on every bucket is the whole state
    stacked = {k: np.stack([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    (replicate,) = sketch.resample(stacked, np.ones((1, 4)))
    assert summary(replicate)[".std"] == pytest.approx(want, rel=1e-6)
    old = {k: v for k, v in parts[0].items() if k != "spread"}  # (a state stored before the spread)
    assert abs(summary({k: v for k, v in merged.items() if k != "spread"})[".std"] - want) > 0.5 * want  # (0 here)
    for pair in ((old, parts[1]), (parts[1], old)):  # (either side: the merge reads the sums, as the old state did)
        both = sketch.merge(*pair)
        assert "spread" not in both and both["sums"].tolist() == (old["sums"] + parts[1]["sums"]).tolist()


def test_modules_outside_the_allow_list_are_refused(tmp_path, pairs, monkeypatch):
    spec = _job(tmp_path, pairs)
    spec["allow_modules"] = ["my_company.evals"]
    with pytest.raises(SpecError, match=r"functions\[0\]\.function.*not allowed.*my_company\.evals"):
        _load(tmp_path, spec)
    # the operator's list is the ceiling: the spec may narrow it, never widen it
    monkeypatch.setenv("EVALPIPE_ALLOWED_MODULES", "tests")
    with pytest.raises(SpecError, match=r"allow_modules.*'my_company\.evals' is outside EVALPIPE_ALLOWED_MODULES"):
        _load(tmp_path, spec, "env.yaml")
    spec["allow_modules"] = ["tests.user_metrics"]
    assert _load(tmp_path, spec, "narrowed.yaml").functions[0].key == "gen"
    del spec["allow_modules"]
    assert _load(tmp_path, spec, "operator.yaml").functions[0].key == "gen"


def test_a_function_key_inside_a_metrics_values_is_refused(tmp_path, pairs):
    """A function `as: bleu` with the output `error` writes `bleu.error`, among the values of the metric `bleu` (and
    `rows.x` beside the reserved `rows`): refused naming both keys; such values overwrote the metric's with exit 0."""
    spec = _job(tmp_path, pairs, **{"as": "bleu", "outputs": ["error", "exact", "sample_chars"]})
    spec["metrics"] = [{"name": "bleu", "as": "bleu.error"}]
    with pytest.raises(SpecError, match=r"functions\[0\].*output keys bleu\.error are already used"):
        _load(tmp_path, spec)
    spec["metrics"] = ["bleu"]
    with pytest.raises(SpecError, match=r"output key 'bleu\.error' overlaps the key 'bleu'"):
        _load(tmp_path, spec, "sub.yaml")
    spec = _job(tmp_path, pairs, **{"as": "rows"})
    with pytest.raises(SpecError, match=r"output key 'rows\.exact' overlaps the key 'rows'"):
        _load(tmp_path, spec, "rows.yaml")


def test_a_function_returning_the_wrong_number_of_scores_is_a_data_error(tmp_path, pairs):
    spec = _job(tmp_path, pairs, function="tests.user_metrics.broken", outputs=["score"])
    with pytest.raises(DataError, match=r"tests\.user_metrics\.broken: 'score' has \d+ scores for \d+ rows"):
        run_job(_load(tmp_path, spec), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("_COMMITTED"))


def test_scores_of_another_shape_are_a_data_error_even_with_one_number_per_row(tmp_path, pairs):
    """``[n / 2, 2]`` scores hold n numbers: they were read flattened, as if one per row."""
    spec = _job(tmp_path, pairs, function="tests.user_metrics.paired", outputs=["score"])
    with pytest.raises(DataError, match=r"tests\.user_metrics\.paired: 'score' has shape \(\d+, 2\) for \d+ rows"):
        run_job(_load(tmp_path, spec), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("_COMMITTED"))


def test_a_user_statistic_class_is_a_metric_like_the_catalogue(tmp_path):
    data = tmp_path / "binary"
    write_shards(str(data), "binary", 6_000, 4, seed=3, row_group_rows=700)
    spec = {
        "name": "custom",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": [
            "accuracy",
            {"statistic": "tests.user_metrics.PositiveRate", "params": {"threshold": 0.3}, "as": "rate"},
        ],
        "allow_modules": ["tests.user_metrics"],
        "slices": [{"column": "device"}],
        "confidence": {"replicates": 60},
        "execution": {"runner": "local", "unit_rows": 1_000},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(_load(tmp_path, spec), show_progress=False).run
    table = pq.read_table(data)
    score = table.column("score").to_numpy()
    device = np.asarray(table.column("device").to_pylist())
    rate = run.point("overall").metrics["rate"]
    assert rate.value == pytest.approx(np.mean(score > 0.3), abs=1e-15)
    assert rate.lower < rate.value < rate.upper
    assert run.point("overall").metrics["rate.rows"].value == len(score)
    web = run.point("device=web").metrics["rate"].value
    assert web == pytest.approx(np.mean(score[device == "web"] > 0.3), abs=1e-15)
    assert run.metric_defs["rate"].description == "Weighted fraction of rows whose prediction is above the threshold."
    spec["allow_modules"] = []
    with pytest.raises(SpecError, match=r"metrics\[1\]\.statistic.*not allowed"):
        _load(tmp_path, spec, "refused.yaml")


def test_the_run_records_the_cpu_time_its_workers_spent_on_units(tmp_path):
    """Each call of ``spend`` takes 0.2 s, busy on the CPU or asleep; each of the 3 units calls it once. So the
    busy job's units take at least 0.6 CPU seconds, and the sleeping job's about 0.6 s less (less the variation in
    compile time between jobs, at most about 0.1 s here; the busy job runs first, so it pays any cold compile)."""
    from tests.conftest import add_file_column, text_function_job

    def timings(how: str) -> dict[str, float]:
        data = tmp_path / how
        write_shards(str(data), "text", 300, 3, seed=4, row_group_rows=100)
        add_file_column(sorted(data.glob("*.parquet")), "how", [how] * 3)
        execution = {"runner": "local", "unit_rows": 100, "checkpoints": False}
        spec = text_function_job(how, str(data), {"uri": str(tmp_path / "out")}, execution, "spend", "how")
        run = run_job(spec_module.load(str(write_job(tmp_path / f"{how}.yaml", spec))), show_progress=False).run
        assert run.metadata["attempts"] == 3
        return run.metadata["timings"]

    busy, asleep = timings("busy"), timings("asleep")
    assert busy["worker_cpu_seconds"] >= 0.6 - 0.01  # process_time ticks
    assert busy["worker_cpu_seconds"] - asleep["worker_cpu_seconds"] >= 0.5
