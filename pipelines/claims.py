"""``on_existing: refuse``: the claim a run takes on its inputs just before it commits, and taking over a stale one.

A run of a job with ``output.on_existing: refuse`` creates ``{job}/_instances/{run key}.json`` exclusively right
before its manifest, so of two concurrent runs of the same inputs exactly one commits. A run killed between the
two leaves a claim with no committed run behind it. Such a claim is **stale** when its run has no
``_COMMITTED`` manifest and it is older than :data:`CLAIM_LEASE_S` (a live run creates its manifest within
moments of its claim); a later run takes it over by creating the next generation,
``{run key}.{n}.json``, again exclusively, so that of two runs taking over the same stale claim exactly one
wins.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import fsspec

from pipelines.errors import UserError
from pipelines.exclusive import create_exclusive
from pipelines.storage import COMMIT_MARKER, join

CLAIMS_DIR = "_instances"
CLAIM_LEASE_S = 120.0
"""A claim whose run has not committed this many seconds after it was taken is stale."""


@dataclass(frozen=True)
class Claim:
    """One claim file: the run that took it and when (UTC)."""

    path: str
    run_id: str
    claimed_at: dt.datetime | None


def _claim_path(job_dir: str, instance: str, generation: int) -> str:
    name = f"{instance}.json" if generation == 0 else f"{instance}.{generation}.json"
    return join(job_dir, CLAIMS_DIR, name)


def read_claim(fs: fsspec.AbstractFileSystem, path: str) -> Claim:
    """The claim at ``path`` (an unreadable one counts as taken by no run, at no time: stale)."""
    try:
        payload: dict[str, Any] = json.loads(fs.cat_file(path))
        at = payload.get("claimed_at")
        return Claim(path, str(payload.get("run_id", "")), dt.datetime.fromisoformat(at) if at else None)
    except (ValueError, TypeError, AttributeError):
        return Claim(path, "", None)


def is_stale(fs: fsspec.AbstractFileSystem, job_dir: str, claim: Claim, now: dt.datetime) -> bool:
    """Whether no run stands behind ``claim``: its run never committed and the lease has run out."""
    if claim.run_id and fs.exists(join(job_dir, claim.run_id, COMMIT_MARKER)):
        return False
    return claim.claimed_at is None or (now - claim.claimed_at).total_seconds() > CLAIM_LEASE_S


def take_claim(fs: fsspec.AbstractFileSystem, job_dir: str, instance: str, run_id: str, job: str) -> str:
    """Claim ``instance`` for ``run_id``, taking over stale claims; returns the claim's path.

    Raises:
        UserError: a committed or live run holds the claim.
    """
    fs.makedirs(join(job_dir, CLAIMS_DIR), exist_ok=True)
    generation = 0
    while True:
        path = _claim_path(job_dir, instance, generation)
        now = dt.datetime.now(dt.UTC)
        payload = json.dumps({"run_id": run_id, "claimed_at": now.isoformat()}).encode()
        try:
            create_exclusive(fs, path, payload)
            return path
        except FileExistsError:
            holder = read_claim(fs, path)
        if not is_stale(fs, job_dir, holder, now):
            raise UserError(
                f"output.on_existing is 'refuse' and run {holder.run_id} of job {job!r} already claimed these inputs "
                f"({path}); this run ({run_id}) was not committed. A claim whose run never commits is taken over "
                f"{CLAIM_LEASE_S:g} s after it was made (`evalpipe checkpoints` lists such stale claims)."
            )
        generation += 1


def release_claim(fs: fsspec.AbstractFileSystem, job_dir: str, instance: str, run_id: str) -> None:
    """Remove the claims of ``run_id`` on ``instance`` (a run that stopped before committing)."""
    with contextlib.suppress(FileNotFoundError):
        for path in fs.ls(join(job_dir, CLAIMS_DIR), detail=False):
            name = path.rsplit("/", 1)[-1]
            if name.startswith(f"{instance}.") and read_claim(fs, path).run_id == run_id:
                fs.rm(path)


def stale_claims(fs: fsspec.AbstractFileSystem, job_dir: str) -> list[Claim]:
    """The stale claims under one job's directory."""
    try:
        paths = fs.ls(join(job_dir, CLAIMS_DIR), detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = dt.datetime.now(dt.UTC)
    claims = [read_claim(fs, p) for p in sorted(paths) if p.endswith(".json")]
    return [c for c in claims if is_stale(fs, job_dir, c, now)]
