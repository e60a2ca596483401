"""Shared fixtures: one in-process Ray cluster on loopback for the whole session, data helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (2 CPUs, loopback only) shared by the tests that use the Ray runner."""
    import ray

    from pipelines.runners.ray import start_local_cluster

    if not ray.is_initialized():
        start_local_cluster(num_cpus=2, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def write_job(path: Path, spec: dict) -> Path:
    """Write a job spec dict as YAML and return its path."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path
