"""Job spec validation: every error names the key path and line and suggests the closest name."""

from __future__ import annotations

import datetime as dt

import pytest

from evaluators.task import TaskKind
from pipelines import spec as spec_module
from pipelines.errors import SpecError
from pipelines.templating import render
from pipelines.yamlsource import load_yaml

GOOD = """\
name: nightly
data:
  path: data/${DATE}/*.parquet
  columns:
    predictions: score
    targets: label
task: binary
metrics:
  - accuracy
  - name: f1_score
    average: macro
    as: f1_macro
  - roc_auc: {mode: exact}
output:
  uri: out
"""


def parse(text: str, **overrides):
    return spec_module.parse(load_yaml(text, "job.yaml"), overrides)


def error(text: str, **overrides) -> str:
    with pytest.raises(SpecError) as info:
        parse(text, **overrides)
    return str(info.value)


def test_good_spec_parses_to_frozen_dataclasses():
    job = parse(GOOD, set=["vars.DATE=2026-11-20"])
    assert job.name == "nightly"
    assert job.data.paths == ("data/2026-11-20/*.parquet",)
    assert job.task.kind is TaskKind.BINARY
    assert [m.key for m in job.metrics] == ["accuracy", "f1_macro", "roc_auc(mode=exact)"]
    assert job.metrics[1].params == {"average": "macro"}
    assert job.execution.runner == "ray" and job.execution.actors is None
    with pytest.raises(AttributeError):
        job.name = "other"  # frozen


def test_unknown_key_names_path_line_and_suggestion():
    text = GOOD.replace("  columns:", "  colums:")
    message = error(text)
    assert "job.yaml: data.colums (line 4)" in message
    assert "did you mean 'columns'" in message


def test_unknown_metric_suggests_near_miss():
    message = error(GOOD.replace("  - accuracy", "  - accuracyy"))
    assert "metrics[0] (line 9)" in message and "did you mean 'accuracy'" in message


def test_unknown_metric_parameter_suggests_near_miss():
    message = error(GOOD.replace("average: macro", "averge: macro"))
    assert "metrics[1].averge (line 11)" in message and "did you mean 'average'" in message


def test_bad_parameter_value_names_metric():
    message = error(GOOD.replace("average: macro", "average: macor"))
    assert "metrics[1]" in message and "macor" in message


def test_wrong_type_names_key():
    message = error(GOOD + "execution:\n  actors: many\n")
    assert "execution.actors (line 17)" in message and "'auto'" in message


def test_python_tags_are_refused_with_line():
    message = error(GOOD.replace("name: nightly", "name: !!python/object/apply:os.system ['echo hi']"))
    assert "line 1" in message and "only plain YAML" in message


def test_syntax_error_has_line_and_column():
    message = error(GOOD.replace("task: binary", "task: [binary"))
    assert "invalid YAML" in message and "line" in message


def test_duplicate_keys_are_refused():
    message = error(GOOD + "task: multiclass\n")
    assert "'task' appears twice" in message and "line 7" in message


def test_multiclass_needs_num_classes():
    assert "needs `num_classes`" in error(GOOD.replace("task: binary", "task: multiclass"))


def test_metric_not_defined_for_task():
    message = error(GOOD.replace("  - accuracy", "  - r2"))
    assert "metrics[0]" in message and "regression" in message


def test_duplicate_output_keys_are_refused():
    message = error(GOOD.replace("as: f1_macro", "as: accuracy"))
    assert "already used by metrics[0]" in message


@pytest.mark.parametrize("key", ["accuracy.error_bound", "accuracy[0]"])
def test_keys_inside_another_metrics_values_are_refused(key):
    """A key that another metric's values use (``roc_auc.error_bound``, ``f1[2]``, ``confusion_matrix[0,0]``) would
    overwrite them in the run: refused, as the same key is."""
    message = error(GOOD.replace("as: f1_macro", f"as: '{key}'"))
    assert f"metrics[1] (line 10): metric key {key!r} overlaps metrics[0]'s key 'accuracy'" in message


def test_a_key_holding_another_metrics_values_is_refused():
    message = error(GOOD.replace("  - accuracy\n", "  - {name: accuracy, as: acc.top}\n").replace("f1_macro", "acc"))
    assert "metric key 'acc' overlaps metrics[0]'s key 'acc.top'" in message


def test_the_rows_key_is_reserved():
    message = error(GOOD.replace("as: f1_macro", "as: rows"))
    assert (
        "metrics[1] (line 10): metric key 'rows' is reserved (every point records its rows); choose another" in message
    )


def test_absurd_resources_are_refused():
    assert "execution.num_gpus" in error(GOOD + "execution:\n  num_gpus: 100000\n")
    assert "execution.unit_rows" in error(GOOD + "execution:\n  unit_rows: 0\n")


def test_set_overrides_and_runner_override():
    job = parse(GOOD, set=["execution.actors=3", "task.kind=binary"], runner="local")
    assert job.execution.actors == 3 and job.execution.runner == "local"


def test_templating_dates_vars_and_env_are_resolved_but_env_not_recorded():
    data = {"a": "x/${DATE:%Y/%m/%d}/${YESTERDAY}/${region}/${env:SECRET_BUCKET}", "b": "$${DATE}"}
    resolved, recorded = render(
        data, {"region": "eu"}, lambda p: "job.yaml", env={"SECRET_BUCKET": "s3cr3t"}, today=dt.date(2026, 3, 1)
    )
    assert resolved["a"] == "x/2026/03/01/2026-02-28/eu/s3cr3t"
    assert recorded["a"] == "x/2026/03/01/2026-02-28/eu/${env:SECRET_BUCKET}"
    assert resolved["b"] == "${DATE}"


def test_unknown_placeholder_is_named():
    message = error(GOOD.replace("${DATE}", "${DAYTE}"))
    assert "data.path" in message and "unknown placeholder `${DAYTE}`" in message


def test_storage_options_are_redacted_in_recorded_spec():
    text = GOOD.replace("  columns:", "  storage_options: {key: AKIAFAKE, secret: hunter2}\n  columns:")
    job = parse(text)
    assert job.data.storage_options == {"key": "AKIAFAKE", "secret": "hunter2"}
    assert "hunter2" not in repr(job.recorded) and "AKIAFAKE" not in repr(job.recorded)
    assert "hunter2" not in repr(job)


def test_quantile_slices_are_validated():
    good = parse(GOOD + "slices:\n  - {column: age, quantiles: 4}\n")
    assert good.slices[0].quantiles == 4 and good.slices[0].columns == ("age",)
    assert "slices[0].quantiles" in error(GOOD + "slices:\n  - {column: age, quantiles: 1}\n")
    message = error(GOOD + "slices:\n  - {columns: [a, b], quantiles: 4}\n")
    assert "slices[0].quantiles" in message and "exactly one `column`" in message
    message = error(GOOD + "slices:\n  - {column: age, quantiles: 4, boundaries: [3]}\n")
    assert "no `boundaries`" in message


def test_one_slice_entry_per_column():
    message = error(GOOD + "slices:\n  - {column: age}\n  - {column: age, boundaries: [30], name: age2}\n")
    assert "slices[1]" in message and "already sliced by entry 0" in message
