"""Malformed and hostile job specs: each gives exit code 2 and one paragraph naming the key or line, with no
traceback and nothing written."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pipelines.cli import main
from pipelines.synthetic import write_shards

GOOD = """\
name: nightly
data:
  path: {data}
  columns: {{predictions: score, targets: label}}
task: binary
metrics: [accuracy, roc_auc]
execution: {{runner: local}}
output: {{uri: {out}}}
"""

# (name, how to break GOOD, text the message must contain)
CASES = [
    ("syntax error", lambda s: s.replace("task: binary", "task: [binary"), "line"),
    ("tab indentation", lambda s: s.replace("  path:", "\tpath:"), "line"),
    ("empty file", lambda s: "", "empty"),
    ("not a mapping", lambda s: "- just\n- a list\n", "mapping"),
    ("python object tag", lambda s: s.replace("task: binary", "task: !!python/object/apply:os.system [ls]"), "line"),
    ("python name tag", lambda s: s + "x: !!python/name:os.system\n", "line"),
    ("duplicate key", lambda s: s + "task: multiclass\n", "appears twice"),
    ("unknown top-level key", lambda s: s + "metrix: [accuracy]\n", "metrix"),
    ("unknown metric with near miss", lambda s: s.replace("roc_auc]", "roc_acu]"), "did you mean 'roc_auc'"),
    ("another library's name", lambda s: s.replace("roc_auc]", "auroc]"), "'auroc' (evalpipe calls it 'roc_auc')"),
    ("a guide's name", lambda s: s.replace("roc_auc]", "mAP]"), "(evalpipe calls it 'mean_average_precision')"),
    ("a short name", lambda s: s.replace("roc_auc]", "f1]"), "'f1' (evalpipe calls it 'f1_score')"),
    (
        "unknown metric parameter",
        lambda s: s.replace("[accuracy, roc_auc]", "[{name: f1_score, averag: macro}]"),
        "averag",
    ),
    (
        "bad parameter value",
        lambda s: s.replace("[accuracy, roc_auc]", "[{name: f1_score, average: most}]"),
        "f1_score",
    ),
    ("metric for another task", lambda s: s.replace("roc_auc]", "r2]"), "metrics[1]"),
    ("metrics not a list", lambda s: s.replace("metrics: [accuracy, roc_auc]", "metrics: accuracy"), "metrics"),
    ("empty metrics", lambda s: s.replace("metrics: [accuracy, roc_auc]", "metrics: []"), "metrics"),
    ("missing data", lambda s: s.replace("data:\n", "dota:\n"), "dota"),
    ("missing targets column", lambda s: s.replace(", targets: label", ""), "targets"),
    ("column name not a string", lambda s: s.replace("targets: label", "targets: [label]"), "data.columns.targets"),
    ("unknown task", lambda s: s.replace("task: binary", "task: clustering"), "task"),
    ("multiclass without classes", lambda s: s.replace("task: binary", "task: multiclass"), "num_classes"),
    ("bad job name", lambda s: s.replace("name: nightly", "name: ../../etc"), "name"),
    ("unknown runner", lambda s: s.replace("runner: local", "runner: spark"), "execution.runner"),
    ("absurd actors", lambda s: s.replace("{runner: local}", "{runner: local, actors: 1000000}"), "execution.actors"),
    ("absurd gpus", lambda s: s.replace("{runner: local}", "{runner: local, num_gpus: 100000}"), "execution.num_gpus"),
    ("zero unit rows", lambda s: s.replace("{runner: local}", "{runner: local, unit_rows: 0}"), "execution.unit_rows"),
    ("negative cpus", lambda s: s.replace("{runner: local}", "{runner: local, num_cpus: -2}"), "execution.num_cpus"),
    ("unknown placeholder", lambda s: s.replace("name: nightly", "name: nightly-${TOMORROW}"), "TOMORROW"),
    (
        "function outside allow-list",
        lambda s: s + "functions: [{function: os.system, outputs: [x], columns: {outputs: score}}]\n",
        "not allowed",
    ),
    (
        "statistic outside allow-list",
        lambda s: s.replace("[accuracy, roc_auc]", "[{statistic: subprocess.Popen}]"),
        "not allowed",
    ),
    ("slice boundaries not increasing", lambda s: s + "slices: [{column: score, boundaries: [3, 1]}]\n", "boundaries"),
    (
        "two entries on one column",
        lambda s: s + "slices: [{column: country}, {column: country, name: c2}]\n",
        "already sliced",
    ),
    ("unknown filter operator", lambda s: s + "slices: [{filter: {country: {like: U%}}}]\n", "like"),
    ("empty filter", lambda s: s + "slices: [{name: f, filter: {}}]\n", "slices[0].filter"),
    ("filter value a list", lambda s: s + "slices: [{filter: {country: {eq: [US]}}}]\n", "slices[0].filter.country.eq"),
    ("bad confidence level", lambda s: s + "confidence: {level: 1.5}\n", "confidence.level"),
    (
        "text metric without backbone",
        lambda s: s.replace("task: binary", "task: text").replace("[accuracy, roc_auc]", "[bertscore_f1]"),
        "backbone",
    ),
    ("bad baseline tolerance", lambda s: s + "baseline: {run: latest, tolerance: -1}\n", "baseline.tolerance"),
    ("bad on_existing", lambda s: s.replace("output: {uri:", "output: {on_existing: overwrite, uri:"), "on_existing"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    write_shards(str(directory), "binary", 2_000, 2, seed=1)
    return directory


def test_the_good_spec_runs(tmp_path, data, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(GOOD.format(data=data, out=tmp_path / "out"))
    assert main(["run", str(job), "--quiet"]) == 0


@pytest.mark.parametrize(("name", "mutate", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_spec_exits_2_with_one_paragraph(tmp_path, data, capsys, name, mutate, needle):
    assert len(CASES) >= 30
    job = tmp_path / "job.yaml"
    job.write_text(mutate(GOOD.format(data=data, out=tmp_path / "out")))
    code = main(["run", str(job), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2, (name, captured.err)
    message = captured.err.strip()
    assert message.startswith("evalpipe: error: "), message
    assert "Traceback" not in message and "\n\n" not in message, message
    assert needle in message, (needle, message)
    assert str(job) in message or "job.yaml" in message or "--set" in message, message  # names the file
    assert not (tmp_path / "out").exists()  # nothing written


def test_messages_are_one_paragraph_of_reasonable_length(tmp_path, data, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(textwrap.dedent(GOOD.format(data=data, out=tmp_path / "out")).replace("roc_auc]", "roc_acu]"))
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and len(err) < 800, err
    assert "bertscore_f1" not in err  # only the metrics of this task are listed


@pytest.mark.parametrize("kind", ["multiclass", "regression", "segmentation"])
def test_a_threshold_on_a_task_that_reads_none_is_refused(tmp_path, kind):
    """``task.threshold`` on a multiclass task was accepted and silently unused (a row's class is its highest score)."""
    from pipelines import spec as spec_module
    from pipelines.errors import SpecError

    task = {"kind": kind, "threshold": 0.3, **({"num_classes": 3} if kind != "regression" else {})}
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "data": {"path": str(tmp_path), "columns": {"predictions": "p", "targets": "y"}},
                "task": task,
                "metrics": ["mse" if kind == "regression" else "mean_iou" if kind == "segmentation" else "accuracy"],
                "output": {"uri": str(tmp_path / "out")},
            }
        )
    )
    with pytest.raises(SpecError, match=rf"task.threshold.*a {kind} task reads no threshold.*binary and multilabel"):
        spec_module.load(str(job))


def test_a_cross_of_a_column_with_itself_is_refused(tmp_path):
    """``columns: [country, country]`` made points named ``country=US,country=US``."""
    from pipelines import spec as spec_module
    from pipelines.errors import SpecError

    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "data": {"path": str(tmp_path), "columns": {"predictions": "p", "targets": "y"}},
                "task": "binary",
                "metrics": ["accuracy"],
                "slices": [{"columns": ["country", "device", "country"]}],
                "output": {"uri": str(tmp_path / "out")},
            }
        )
    )
    with pytest.raises(SpecError, match=r"slices\[0\]\.columns.*'country' appears twice"):
        spec_module.load(str(job))


def test_a_value_given_by_set_is_named_by_its_assignment_not_the_line_it_replaced(tmp_path, data, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(
        GOOD.format(data=data, out=tmp_path / "out").replace("{runner: local}", "{runner: local, actors: 4}")
    )
    assert main(["run", str(job), "--quiet", "--set", "execution.actors=0"]) == 2
    err = capsys.readouterr().err
    assert "job.yaml: execution.actors (--set execution.actors=0): expected an integer" in err, err  # was "(line 7)"
    assert main(["run", str(job), "--quiet", "--set", "confidence.buckets=2"]) == 2  # a section the file lacks
    assert "confidence.buckets (--set confidence.buckets=2): expected at least 8 buckets" in capsys.readouterr().err
    # a key that only the assignment made, on the way to the path it sets: named by it, not by a line of the file
    assert main(["run", str(job), "--quiet", "--set", "execution.nosuch.key=1"]) == 2
    err = capsys.readouterr().err
    assert "job.yaml: execution.nosuch (--set execution.nosuch.key=1): unknown key 'nosuch'" in err, err
    assert main(["run", str(job), "--quiet", "--set", "nosuch.key=1"]) == 2
    assert "job.yaml: nosuch (--set nosuch.key=1): unknown key 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "key", "metric"),
    [("regression", "ignore_index", "mse"), ("regression", "num_classes", "mse"), ("text", "num_classes", "bleu")],
)
def test_class_settings_on_a_task_without_classes_are_refused(tmp_path, kind, key, metric):
    """``ignore_index: 0`` on a regression task was accepted and unused: every row still counted (MSE 1.1006 where
    leaving out the targets of 0 gives 1.0431)."""
    from pipelines import spec as spec_module
    from pipelines.errors import SpecError

    job = tmp_path / "job.yaml"
    spec = {
        "name": "t",
        "data": {"path": str(tmp_path), "columns": {"predictions": "p", "targets": "y"}},
        "task": {"kind": kind, key: 3},
        "metrics": [metric],
        "output": {"uri": str(tmp_path / "out")},
    }
    job.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=rf"task.{key}.*a {kind} task reads no {key}.*binary, multiclass, multilabel"):
        spec_module.load(str(job))
    spec["task"] = {"kind": kind, key: None}  # (null: left unset, as the README's spec template writes it)
    job.write_text(yaml.safe_dump(spec))
    assert getattr(spec_module.load(str(job)).task, key) is None


def test_a_null_average_is_refused_as_ambiguous(tmp_path):
    """``average: null`` meant the task's default (macro), stored under the key ``f1_score(average=None)``, where
    scikit-learn's and the functional API's ``average=None`` give one value per class."""
    from pipelines import spec as spec_module
    from pipelines.errors import SpecError

    job = tmp_path / "job.yaml"
    spec = {
        "name": "t",
        "data": {"path": str(tmp_path), "columns": {"predictions": "p", "targets": "y"}},
        "task": {"kind": "multiclass", "num_classes": 3},
        "metrics": [{"name": "f1_score", "average": None}],
        "output": {"uri": str(tmp_path / "out")},
    }
    job.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=r"metrics\[0\].average.*`average: null` is ambiguous.*`average: none`"):
        spec_module.load(str(job))
    spec["metrics"] = [{"name": "f1_score", "average": "none"}]
    job.write_text(yaml.safe_dump(spec))
    assert [m.key for m in spec_module.load(str(job)).metrics] == ["f1_score(average=none)"]
