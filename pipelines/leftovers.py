"""What killed runs leave under a results URI besides checkpoints: run directories that never committed (no
``_COMMITTED`` manifest, or one that does not parse or lacks what readers need) and stale ``on_existing: refuse``
claims. Readers ignore both; ``evalpipe checkpoints`` lists them and, with ``--delete``, removes them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from pipelines.checkpoints import job_directories, modified_time
from pipelines.claims import stale_claims
from pipelines.storage import RUN_ID, committed_manifest, join


@dataclass(frozen=True)
class Leftover:
    """One uncommitted run directory (``kind == "run"``) or stale claim file (``kind == "claim"``)."""

    kind: str
    job: str
    uri: str
    files: int
    bytes: int
    last_written: dt.datetime | None
    """UTC time of the newest file (None when the storage does not say)."""


def _committed(fs: fsspec.AbstractFileSystem, run_dir: str) -> bool:
    """Whether readers take the run for committed (:func:`~pipelines.storage.committed_manifest`: a manifest with its
    job, run id and timestamp, and every file it lists there at the size it lists)."""
    return committed_manifest(fs, run_dir) is not None


def _entry(kind: str, job: str, uri: str, files: list[dict[str, Any]]) -> Leftover:
    times = [t for t in (modified_time(f) for f in files) if t is not None]
    size = sum(int(f.get("size") or 0) for f in files)
    return Leftover(kind, job, uri, len(files), size, max(times) if times else None)


def list_leftovers(uri: str, job: str | None = None, storage_options: dict[str, Any] | None = None) -> list[Leftover]:
    """Uncommitted run directories and stale claims under a results URI (the jobs' ``output.uri``)."""
    fs, root, protocol, jobs = job_directories(uri, job, storage_options)
    found: list[Leftover] = []
    for name in jobs:
        job_dir = join(root, name)
        try:
            entries = fs.ls(job_dir, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            path = entry["name"].rstrip("/")
            # (only directories named as runs are: a results site or other files kept beside the runs are not)
            if (
                entry.get("type") != "directory"
                or not RUN_ID.fullmatch(path.rsplit("/", 1)[-1])
                or _committed(fs, path)
            ):
                continue
            files = [f for f in fs.find(path, detail=True).values() if f.get("type") != "directory"]
            found.append(_entry("run", name, protocol + path, files))
        for claim in stale_claims(fs, job_dir):
            found.append(_entry("claim", name, protocol + claim.path, [fs.info(claim.path)]))
    return found


def remove_leftover(leftover: Leftover, storage_options: dict[str, Any] | None = None) -> None:
    """Delete one uncommitted run directory or stale claim."""
    fs, path = url_to_fs(leftover.uri, **(storage_options or {}))
    fs.rm(path, recursive=leftover.kind == "run")
