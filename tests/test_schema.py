"""``evalpipe schema``: the job spec's JSON Schema, derived from the spec reader, checks the example configs."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipelines import spec as spec_module
from pipelines import spec_execution
from pipelines.cli import main
from pipelines.schema import DRAFT, job_schema

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    path
    for path in sorted((ROOT / "configs").glob("*.yaml"))
    if "task" in next(yaml.safe_load_all(path.read_text()))  # job specs (rayjob.yaml holds Kubernetes manifests)
]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_example_job_config_validates(validator, config):
    document = yaml.safe_load(config.read_text())
    spec_module.load(str(config))  # the reader takes it too
    assert list(validator.iter_errors(document)) == []


def _minimal() -> dict:
    return {
        "name": "job",
        "data": {"path": "data/*.parquet", "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "output": {"uri": "out"},
    }


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(metricz=["accuracy"]), "metricz"),  # unknown top-level key
        (lambda d: d.pop("name"), "name"),  # required key
        (lambda d: d.update(execution={"runner": "spark"}), "spark"),  # not one of the choices
        (lambda d: d.update(execution={"unit_rows": "many"}), "many"),  # wrong type
        (lambda d: d.update(task={"kind": "binary", "treshold": 0.3}), "treshold"),  # unknown nested key
        (lambda d: d.update(task={"kind": "ranking-ish"}), "ranking-ish"),
        (lambda d: d["data"]["columns"].update(predictons="score"), "predictons"),
        (lambda d: d.update(slices=[{"column": "country", "max_slices": 2.5}]), "2.5"),
        (lambda d: d.update(confidence={"samples": "yes"}), "yes"),
        (lambda d: d.update(backbone={"weights": "w"}), "kind"),
    ],
)
def test_malformed_specs_are_rejected(validator, change, where):
    document = _minimal()
    assert list(validator.iter_errors(document)) == []
    change(document)
    errors = list(validator.iter_errors(document))
    found = [e for error in errors for e in (error, *error.context)]  # anyOf: each branch's errors
    assert errors and any(where in e.message or where in str(list(e.path)) for e in found)


def test_a_key_added_to_the_reader_appears_in_the_schema():
    execution_source = inspect.getsource(spec_execution)
    anchor = '    runner = sec.get("runner", str, "ray", choices=RUNNERS)\n'
    assert execution_source.count(anchor) == 1
    changed_execution = execution_source.replace(anchor, anchor + '    sec.get("probe_limit", int, 7)\n')
    anchor = '    commit = root.get("commit", str)\n'
    changed_spec = inspect.getsource(spec_module).replace(
        anchor, anchor + '    root.get("probe_flag", bool, required=True)\n'
    )
    before = job_schema()
    after = job_schema({"pipelines.spec_execution": changed_execution, "pipelines.spec": changed_spec})
    assert "probe_limit" not in json.dumps(before) and "probe_flag" not in json.dumps(before)
    execution = next(s for s in after["properties"]["execution"]["anyOf"] if s.get("type") == "object")
    assert execution["properties"]["probe_limit"] == {"type": ["integer", "null"], "default": 7}
    assert after["properties"]["probe_flag"] == {"type": "boolean"} and "probe_flag" in after["required"]


def test_cli_prints_the_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == DRAFT and printed == job_schema()
