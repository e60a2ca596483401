"""What killed runs leave under a results URI besides checkpoints: run directories that never committed (no
``_COMMITTED`` manifest, or one that does not parse or lacks what readers need) and stale ``on_existing: refuse``
claims. Readers ignore both; ``evalpipe checkpoints`` lists them and, with ``--delete``, removes them. It also lists
committed runs that readers refuse because a file their manifest lists is missing or of another size (``damaged``):
those are never deleted, since the file can be restored."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from pipelines.checkpoints import job_directories, modified_time
from pipelines.claims import stale_claims
from pipelines.records import manifest_problem
from pipelines.storage import COMMIT_MARKER, RUN_ID, committed_manifest, join


@dataclass(frozen=True)
class Leftover:
    """One uncommitted run directory (``kind == "run"``), committed run whose listed files are not all there at their
    sizes (``"damaged"``) or stale claim file (``"claim"``)."""

    kind: str
    job: str
    uri: str
    files: int
    bytes: int
    last_written: dt.datetime | None
    """UTC time of the newest file (None when the storage does not say)."""


def _run_kind(fs: fsspec.AbstractFileSystem, run_dir: str) -> str | None:
    """None where readers take the run for committed (:func:`~pipelines.storage.committed_manifest`); ``"damaged"``
    where its manifest reads but a file it lists is missing or of another size; else ``"run"`` (never committed)."""
    if committed_manifest(fs, run_dir) is not None:
        return None
    try:
        manifest = json.loads(fs.cat_file(join(run_dir, COMMIT_MARKER)))
    except (FileNotFoundError, ValueError):
        return "run"
    return "damaged" if manifest_problem(manifest) is None else "run"


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
            if entry.get("type") != "directory" or not RUN_ID.fullmatch(path.rsplit("/", 1)[-1]):
                continue
            kind = _run_kind(fs, path)
            if kind is None:
                continue
            files = [f for f in fs.find(path, detail=True).values() if f.get("type") != "directory"]
            found.append(_entry(kind, name, protocol + path, files))
        for claim in stale_claims(fs, job_dir):
            found.append(_entry("claim", name, protocol + claim.path, [fs.info(claim.path)]))
    return found


def remove_leftover(leftover: Leftover, storage_options: dict[str, Any] | None = None) -> None:
    """Delete one uncommitted run directory or stale claim."""
    fs, path = url_to_fs(leftover.uri, **(storage_options or {}))
    fs.rm(path, recursive=leftover.kind == "run")
