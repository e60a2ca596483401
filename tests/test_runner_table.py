"""Runners are found through one table: every name the spec accepts has an entry whose function exists, and a
runner whose optional package is missing is a user error saying how to install it."""

from __future__ import annotations

import inspect

import pytest

from pipelines.errors import SpecError, UserError
from pipelines.runners import execute
from pipelines.spec import parse
from pipelines.spec_execution import RUNNER_TABLE, RunnerEntry
from pipelines.yamlsource import load_yaml

JOB = """
name: table
data: {path: data/*.parquet, columns: {predictions: score, targets: label}}
task: binary
metrics: [accuracy]
output: {uri: out}
"""


def test_the_spec_accepts_exactly_the_table_s_runners_with_ray_as_default():
    assert parse(load_yaml(JOB, "job.yaml")).execution.runner == next(iter(RUNNER_TABLE)) == "ray"
    for name in RUNNER_TABLE:
        assert parse(load_yaml(JOB, "job.yaml"), {"runner": name}).execution.runner == name
    with pytest.raises(SpecError, match="--runner: expected one of ray, local, beam; got 'spark'"):
        parse(load_yaml(JOB, "job.yaml"), {"runner": "spark"})


@pytest.mark.parametrize("name", ["local", "ray"])
def test_each_entry_loads_a_function_with_the_runner_signature(name):
    run = RUNNER_TABLE[name].load(name)
    assert run.__name__ == f"run_{name}" and run.__module__ == f"pipelines.runners.{name}"
    assert list(inspect.signature(run).parameters)[:4] == list(inspect.signature(execute).parameters)


def test_a_missing_optional_package_is_a_user_error_naming_the_extra():
    entry = RunnerEntry("evalpipe_absent_runner.module", "run", "evalpipe_absent_runner", "absent", "Absent Runner")
    with pytest.raises(UserError) as caught:
        entry.load("absent")
    assert str(caught.value) == (
        "execution.runner: absent needs Absent Runner, which is not installed here: pip install "
        "'evalpipe[absent]' (see the README for the versions that work together)."
    )


def test_a_missing_module_that_is_not_the_optional_package_is_raised_as_is():
    entry = RunnerEntry("evalpipe_absent_runner.module", "run", "some_other_package", "x", "X")
    with pytest.raises(ModuleNotFoundError, match="evalpipe_absent_runner"):
        entry.load("x")
