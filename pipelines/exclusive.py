"""Creating a file only if it does not exist: the commit of a run (its ``_COMMITTED`` manifest) and the claim of
its inputs. On S3 the create is a conditional write (``If-None-Match: *``), and a client that lost the answer to it
tries again: the retry finds the file its own first try wrote and is refused (412), which is no failure."""

from __future__ import annotations

import fsspec


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> None:
    """Create ``path`` holding ``payload`` only if it does not exist.

    Raises:
        FileExistsError: it exists already, holding other bytes (a file that holds ``payload`` is this create's own,
            written by a try whose answer was lost).
    """
    try:
        with fs.open(path, "xb") as handle:
            handle.write(payload)
        return
    except (NotImplementedError, ValueError):
        pass  # this filesystem has no exclusive create: check, then write
    except FileExistsError:
        if _holds(fs, path, payload):
            return
        raise
    if fs.exists(path):
        raise FileExistsError(path)
    with fs.open(path, "wb") as handle:
        handle.write(payload)


def _holds(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> bool:
    """Whether ``path`` holds exactly ``payload`` (payloads name their run and time: no other writer's equals it)."""
    try:
        fs.invalidate_cache(path)
        return fs.cat_file(path) == payload
    except OSError:
        return False
