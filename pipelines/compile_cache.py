"""JAX's persistent compilation cache, on by default in a per-user directory.

Every ``evalpipe run`` compiles the same updates for the same job; with the cache a later
process (a nightly run, each Ray actor) loads the compiled executables from disk instead of
compiling them again (about 0.6 s per process for the binary suite on one core).

* ``EVALPIPE_COMPILE_CACHE=off`` (or ``0``, ``false``, ``no``): no persistent cache;
* ``EVALPIPE_COMPILE_CACHE=/some/dir``: that directory;
* ``JAX_COMPILATION_CACHE_DIR`` set: JAX's own setting is used as it stands;
* otherwise ``$XDG_CACHE_HOME/evalpipe/xla`` (``~/.cache/evalpipe/xla``).

Every compiled executable is kept (JAX's defaults skip compiles under one second, which are
all of evalpipe's updates). Entries are keyed by the program, the JAX/XLA version and the
device, so a stale entry is never used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from evaluators import lazyjax

SETTING = "EVALPIPE_COMPILE_CACHE"
_OFF = frozenset({"off", "0", "false", "no", "none"})


def cache_directory(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the cache lives under ``environ``; None when it is turned off or JAX's own variable decides."""
    setting = environ.get(SETTING, "").strip()
    if setting.lower() in _OFF and setting:
        return None
    if setting:
        return Path(setting).expanduser()
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base).expanduser() / "evalpipe" / "xla"


def enable_on_import() -> None:
    """:func:`enable` now if JAX is imported, else right after the first use of JAX imports it (before its
    first compile), reading ``EVALPIPE_COMPILE_CACHE`` then: a job that never compiles never imports JAX."""
    lazyjax.when_imported(enable)


def enable(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Point JAX at the cache directory (before the first compile of this process); returns it, or
    None when no evalpipe-chosen directory applies. An unusable directory leaves the cache off."""
    directory = cache_directory(environ)
    if directory is None and not environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    import jax

    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
