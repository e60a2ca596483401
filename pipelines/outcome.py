"""The machine-readable outcome of ``evalpipe run``, for schedulers and ``ray job`` users.

Every run, committed or not, ends with one JSON object::

    {"status": "committed" | "regressed" | "user_error" | "failed" | "interrupted" | "stopped",
     "exit_code": 0 | 3 | 2 | 1 | 130 | 143,
     "job": "churn-nightly", "run_id": "20261123T142351902Z-f8cf26",
     "run_uri": "s3://evals/churn-nightly/20261123T142351902Z-f8cf26" (null when nothing was committed),
     "regressions": [{"point": ..., "metric": ..., ...}], "error": "one paragraph" | null}

It is printed to stdout as the last line of the log (after ``run: URI``), prefixed ``evalpipe outcome: ``
(:func:`parse_outcome` reads it back from a log, e.g. ``ray job logs``); stderr keeps only the one-paragraph
error. A run that started
computing (committed, regressed or failed) also writes it to ``{output.uri}/_outcomes/{job}/{run id}.json``;
a user error or an interrupted run writes nothing, as promised for those, and only prints it. Readers of runs
ignore ``_outcomes/`` (it holds no ``_COMMITTED`` manifest).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

OUTCOME_PREFIX = "evalpipe outcome: "
OUTCOMES_DIR = "_outcomes"

STATUS_BY_EXIT_CODE = {0: "committed", 3: "regressed", 2: "user_error", 1: "failed", 130: "interrupted", 143: "stopped"}


@dataclass(frozen=True)
class Outcome:
    """What happened to one ``evalpipe run``; ``status`` follows ``exit_code`` (see ``STATUS_BY_EXIT_CODE``)."""

    exit_code: int
    job: str | None = None
    run_id: str | None = None
    run_uri: str | None = None
    regressions: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None
    status: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", STATUS_BY_EXIT_CODE.get(self.exit_code, "failed"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressions"] = [dict(r) for r in self.regressions]
        return {"status": data.pop("status"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, default=str)


def log_line(outcome: Outcome) -> str:
    """The last line ``evalpipe run`` prints (to stdout)."""
    return OUTCOME_PREFIX + outcome.to_json()


def parse_outcome(log: str) -> dict[str, Any] | None:
    """The outcome from the last ``evalpipe outcome:`` line of ``log``; None when there is none."""
    for line in reversed(log.splitlines()):
        if line.startswith(OUTCOME_PREFIX):
            return json.loads(line[len(OUTCOME_PREFIX) :])
    return None


def outcome_id(now: dt.datetime | None = None) -> str:
    """A run id for a run that never got one (it failed before committing)."""
    from pipelines.storage import new_run_id

    return new_run_id(now or dt.datetime.now(dt.UTC))


WRITTEN = frozenset({"committed", "regressed", "failed"})
"""Statuses whose outcome is written to storage (the others promise to write nothing)."""


def outcome_uri(output_uri: str, job: str, run_id: str) -> str:
    """Where the outcome of run ``run_id`` of ``job`` is written."""
    from pipelines.storage import join

    return join(output_uri, OUTCOMES_DIR, job, f"{run_id}.json")


def write_outcome(output_uri: str, storage_options: Mapping[str, Any], outcome: Outcome) -> str | None:
    """Write ``outcome`` to :func:`outcome_uri` when its status is in ``WRITTEN``; its URI, or None when not
    written or the location cannot be written (the outcome is still printed: the log line never depends on
    storage)."""
    from fsspec.core import url_to_fs

    from pipelines.storage import join

    if outcome.job is None or outcome.run_id is None or outcome.status not in WRITTEN:
        return None
    with contextlib.suppress(Exception):
        fs, root = url_to_fs(output_uri, **storage_options)
        directory = join(root, OUTCOMES_DIR, outcome.job)
        fs.makedirs(directory, exist_ok=True)
        with fs.open(join(directory, f"{outcome.run_id}.json"), "w") as handle:
            handle.write(outcome.to_json() + "\n")
        return outcome_uri(output_uri, outcome.job, outcome.run_id)
    return None
