"""Identities of what shapes a unit's states besides its rows: files and code, for resumed runs.

A resumed run reuses a unit's checkpoint only when everything that decided that unit's states is unchanged
(see :mod:`pipelines.checkpoints` and the README's failure semantics). This module says what "unchanged"
means for the pieces that live outside the spec:

* a file (an input shard, a backbone weight file): its size and its store's version (S3 ``ETag``, GCS
  generation or md5) or, for a local file, its modification time **and** inode and status-change time
  (``ctime``), which no ``cp -p``, ``rsync -t`` or ``tar x`` can put back;
* user code: the bytes of the source file of every module the job names (metric functions, statistic
  classes, the backbone's implementation).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable

import fsspec
from fsspec.core import url_to_fs

_VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified", "created")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local filesystem."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def file_version(info: dict) -> str:
    """What changes when a file's content does, from its fsspec ``info`` dict.

    Local files: ``mtime=<s> ino=<inode> ctime=<s>`` (a same-size rewrite whose mtime was put back still
    changes the status-change time); object stores: the ETag, generation or md5 (or the last-modified time
    when the store gives nothing else).
    """
    if "ino" in info and "mtime" in info:
        return f"mtime={info['mtime']} ino={info['ino']} ctime={info.get('created')}"
    for key in _VERSION_KEYS:
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


def tree_identity(uri: str) -> tuple[tuple[str, int, str], ...]:
    """``(relative name, size in bytes, version)`` of the file at ``uri``, or of every file under it (a
    directory of checkpoint files); ``()`` when nothing is there (the job then fails on loading it)."""
    fs, root = url_to_fs(uri)
    try:
        entries = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    except FileNotFoundError:
        return ()
    base = root.rstrip("/")
    return tuple(
        (path[len(base) :].lstrip("/"), int(info.get("size") or 0), file_version(info))
        for path, info in sorted(entries.items())
        if info.get("type") != "directory"
    )


def tree_digest(uri: str) -> str:
    """SHA-256 (hex) of the names, sizes and bytes of the file at ``uri``, or of every file under it (a directory of
    checkpoint files): equal for the same content wherever it lies, unlike :func:`tree_identity`."""
    fs, root = url_to_fs(uri)
    digest = hashlib.sha256()
    base = root.rstrip("/")
    for path in sorted(fs.find(root)) if fs.isdir(root) else [root]:
        content = fs.cat_file(path)
        digest.update(f"{path[len(base) :].lstrip('/')}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def module_digest(name: str) -> str:
    """SHA-256 of the source file of module ``name`` (the module itself, not the modules it imports);
    ``builtin`` for the standard library; ``missing`` when it cannot be found."""
    if name.split(".")[0] in sys.stdlib_module_names:
        return "builtin"
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return "missing"
    if found is None or not found.origin or not found.has_location:
        return "missing"
    try:
        with open(found.origin, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return "missing"


def code_identity(modules: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``(module, digest of its source)`` for each distinct module, sorted."""
    return tuple((name, module_digest(name)) for name in sorted(set(modules)))
