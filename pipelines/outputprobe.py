"""The output location, checked before any work: its bucket exists, and a file can be created and removed there.

``evalpipe validate`` and ``evalpipe run`` (before reading a row) create and delete a marker
``{output}/{job}/_probe-{random hex}``, so that a read-only output, an output under a file or a typo in a
bucket name is found in a second, not after hours of computing. A missing bucket is created only when the
spec says ``output.create: true``: object stores would otherwise create a bucket for a misspelt name.
"""

from __future__ import annotations

import contextlib
import os
import secrets

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import JobFailed, UserError, is_storage_access_error, opening_problem
from pipelines.spec import OutputSpec
from pipelines.storage import join

PROBE_PREFIX = "_probe-"


def _bucket_exists(fs: fsspec.AbstractFileSystem, bucket: str, uri: str) -> bool:
    try:
        # exists() answers False for any error (s3fs); info() raises it, so a missing credential is told apart
        return bool(fs.exists(bucket)) or bool(fs.info(bucket))
    except FileNotFoundError:
        return False
    except Exception as exc:
        from pipelines.environment import describe, unreachable

        message = describe(exc)  # no credentials, or no right to look: say that, not "no such bucket"
        if message is not None:
            raise UserError(f"output.uri {uri!r}: {message}") from None
        message = unreachable(exc)  # (the endpoint did not answer: not a missing bucket either)
        if message is not None:
            raise JobFailed(f"output.uri {uri!r}: {message}") from None
        if not is_storage_access_error(exc):
            raise
        return False


def _missing_directories(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """The local directories that creating ``directory`` would create, deepest first (object stores: none)."""
    if not isinstance(fs, LocalFileSystem):
        return []
    missing = []
    path = directory.rstrip("/")
    while path and not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _write_marker(fs: fsspec.AbstractFileSystem, directory: str, marker: str, tries: int = 20) -> None:
    """Create ``directory`` and an empty ``marker`` in it. Another run of the same job probing at the same
    moment may remove the directories it created (it leaves the location as it found it) while this one
    creates its own or writes its marker, so a step that finds its directory gone is tried again."""
    for attempt in range(tries):
        try:
            fs.makedirs(directory, exist_ok=True)
            fs.pipe_file(marker, b"")
            return
        except (FileNotFoundError, FileExistsError):  # a directory vanished between two steps of this one
            if attempt == tries - 1:
                raise


def probe_output(output: OutputSpec, job: str) -> None:
    """Check that runs of ``job`` can be written under ``output.uri`` (creating the bucket when
    ``output.create`` says so).

    Raises:
        UserError: the location cannot be opened, its bucket does not exist, or a marker file cannot be
            created and removed there.
    """
    try:
        fs, root = url_to_fs(output.uri, **output.storage_options)
    except (ImportError, ValueError) as exc:
        raise UserError(f"output.uri {output.uri!r}: cannot open this location: {opening_problem(exc)}.") from None
    if not isinstance(fs, LocalFileSystem):  # an object store: the first part of the path is the bucket
        bucket = root.strip("/").split("/", 1)[0]
        if not _bucket_exists(fs, bucket, output.uri):
            if not output.create:
                raise UserError(
                    f"output.uri {output.uri!r}: bucket {bucket!r} does not exist (or these credentials cannot see "
                    "it); check its name, or set output.create: true to have evalpipe create it."
                )
            try:
                fs.mkdir(bucket)
            except Exception as exc:
                if not is_storage_access_error(exc):
                    raise
                raise UserError(
                    f"output.uri {output.uri!r}: bucket {bucket!r} could not be created: {type(exc).__name__}: {exc}."
                ) from None
    directory = join(root, job)
    marker = join(directory, PROBE_PREFIX + secrets.token_hex(6))
    created = _missing_directories(fs, directory)
    try:
        _write_marker(fs, directory, marker)
        fs.rm(marker)
    except Exception as exc:
        if not is_storage_access_error(exc):
            raise
        with contextlib.suppress(Exception):
            fs.rm(marker)
        raise UserError(
            f"output.uri {output.uri!r}: cannot write runs there: creating and removing the marker file {marker} "
            f"failed with {type(exc).__name__}: {exc}. Check that the location is a writable directory or bucket."
        ) from None
    for path in created:  # leave the location as it was, unless another run of the job is using it now
        try:
            fs.rmdir(path)
        except OSError:
            break
