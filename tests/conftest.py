"""Shared fixtures: one in-process Ray cluster on loopback for the whole session, data helpers."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
import yaml

from evaluators import lazyjax

lazyjax.prefer_deterministic_ops()  # (on a GPU, XLA's deterministic scatter, as in evalpipe's own processes)

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # a suite started in the background by a non-interactive shell inherits Ctrl-C ignored (and so would the evalpipe
    # processes the tests start): the tests of Ctrl-C need Python's own handler, as a terminal gives it
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (2 CPUs, loopback only) shared by the tests of this pytest process that use the Ray
    runner (under pytest-xdist, each worker that runs such a test starts its own)."""
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


def accuracy_job(name: str, data: str, output: dict) -> dict:
    """The spec of a local binary job of accuracy over the ``score`` / ``label`` columns of ``data``."""
    return {
        "name": name,
        "data": {"path": data, "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "execution": {"runner": "local"},
        "output": output,
    }


def write_text(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def add_file_column(paths, column: str, values, row_group_rows: int = 100) -> None:
    """Append a string column ``column`` to each Parquet file of ``paths``: ``values[i]`` in every row of file i."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path, value in zip(paths, values, strict=True):
        table = pq.read_table(path)
        pq.write_table(table.append_column(column, pa.array([value] * len(table))), path, row_group_size=row_group_rows)


def text_function_job(name: str, data: str, output: dict, execution: dict, function: str, extra: str) -> dict:
    """A text-pair job spec whose only metric is the user function ``tests.user_metrics.<function>`` (output
    ``words``), reading the candidate column and the extra column ``extra``."""
    return {
        "name": name,
        "data": {"path": data, "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "functions": [
            {
                "function": f"tests.user_metrics.{function}",
                "outputs": ["words"],
                "columns": {"outputs": "candidate", extra: extra},
            }
        ],
        "allow_modules": ["tests.user_metrics"],
        "execution": execution,
        "output": output,
    }


def image_job_spec(name: str, data, backbone: dict, metrics: list, execution: dict, output) -> dict:
    """An image-task job spec over shards written by ``write_shards(..., "image", ...)``."""
    return {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "generated", "targets": "real", "row_id": "row_id"}},
        "task": "image",
        "backbone": backbone,
        "metrics": metrics,
        "execution": execution,
        "output": {"uri": str(output)},
    }
