"""``jax`` and ``jax.numpy``, imported on first use.

Importing JAX costs a process 0.5-0.8 s of CPU (``ml_dtypes`` and ``jaxlib`` initialisation), which a
small job that never compiles anything should not pay. Modules of evalpipe that use JAX import it as::

    from evaluators.lazyjax import jax, jnp

and get two stand-ins that import the real module on the first attribute read (``jnp.sum``,
``jax.Array``, ``jax.jit``) and from then on hold every attribute read as a plain attribute of their
own, so a hot ``isinstance(x, jax.Array)`` costs what it does on the module. Annotations are not
evaluated (``from __future__ import annotations``), so ``x: jax.Array`` imports nothing.

:func:`when_imported` runs process-wide settings (the persistent compilation cache, compile-time
listeners) once JAX is imported, before anything is compiled.

A stand-in pickles by reference to this module (so a function or statistic pickled with one, for a
Ray actor, unpickles to the same stand-in there).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

_pending: dict[Callable[[], object], None] = {}
"""Hooks waiting for JAX's import, in the order they were registered (a dict: each hook once)."""
_lock = threading.RLock()
_deterministic_ops_asked: list[bool] = []
"""Whether :func:`prefer_deterministic_ops` has run in this process (once, at a stand-in's first attribute read)."""


def imported() -> bool:
    """Whether JAX is imported in this process (by a stand-in or by anything else)."""
    return "jax" in sys.modules


ACCELERATOR_MODULES = ("jax_plugins", "libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")
"""Modules whose presence means JAX may find an accelerator: the namespace of its PJRT plugins (CUDA, ROCm), the
TPU runtime, and the CUDA and ROCm plugin packages themselves."""


def accelerator_possible() -> bool:
    """Whether JAX might run on an accelerator in this process, found without importing it: JAX is imported
    with a non-CPU default backend, or else an accelerator plugin is installed (:data:`ACCELERATOR_MODULES`) and
    ``JAX_PLATFORMS`` does not name the CPU alone."""
    if imported():
        return sys.modules["jax"].default_backend() != "cpu"
    return _plugin_possible()


def _plugin_possible() -> bool:
    """An accelerator plugin is installed and ``JAX_PLATFORMS`` does not name the CPU alone (starts nothing)."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return False
    return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_MODULES)


DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"
"""Added to ``XLA_FLAGS`` before JAX starts where it may find a GPU: XLA then scatters without atomics, so a
state's float sums (weights, confusion matrices) come out in the same bits on every run and every device order.
Measured on an H200 without it: three runs of one weighted 100-class job gave different bits in their confusion
and calibration sums, and zero-weight rows changed a weighted confusion matrix in its last bits; with it, the runs
were bit-identical and took no longer (compute 2.4-2.9 s against 2.7-2.8 s on 400,000 rows). ``XLA_FLAGS`` that
already name ``xla_gpu_deterministic_ops`` or ``xla_gpu_exclude_nondeterministic_ops`` are left as they are
(``--xla_gpu_deterministic_ops=false`` opts out)."""


def _backends_started() -> bool:
    """Whether JAX has started a backend in this process (after which XLA_FLAGS are read and fixed)."""
    if not imported():
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # (a JAX without it: assume the worst)
        return True


def prefer_deterministic_ops(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Add :data:`DETERMINISTIC_GPU_FLAG` to ``environ["XLA_FLAGS"]`` when an accelerator is possible, no backend of
    JAX has started yet (XLA reads its flags when the first one starts: JAX may be imported already) and the flags
    say nothing of determinism. Returns whether it added the flag."""
    flags = environ.get("XLA_FLAGS", "")
    if "deterministic_ops" in flags or _backends_started() or not _plugin_possible():
        return False
    environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()
    return True


GPU_MEMORY_SETTINGS = ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_ALLOCATOR")
"""The variables by which JAX is told how much of a GPU's memory to take."""


def share_gpu_memory(num_gpus: float, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """For a process given ``num_gpus`` < 1 of a GPU (Ray actors sharing one card): JAX takes 75% of a GPU's memory
    when its backend starts, so the next process on that card would find too little; JAX's documentation advises a
    smaller ``XLA_PYTHON_CLIENT_MEM_FRACTION`` for several processes on one GPU. Sets it to the process's share of
    that 75% (``0.375`` for half a GPU) unless one of :data:`GPU_MEMORY_SETTINGS` is set already; returns the value
    set, or None. Call it before JAX's backend starts."""
    if not 0 < num_gpus < 1 or any(name in environ for name in GPU_MEMORY_SETTINGS):
        return None
    environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = share = f"{0.75 * num_gpus:.4g}"
    return share


def when_imported(hook: Callable[[], object]) -> None:
    """Call ``hook()`` now if JAX is imported, else once right after the first stand-in imports it
    (before its first use). Registering one hook several times before the import calls it once."""
    with _lock:
        if not imported():
            _pending[hook] = None
            return
    hook()


def _run_pending() -> None:
    with _lock:
        while _pending:
            hook = next(iter(_pending))
            del _pending[hook]
            hook()


class _Deferred(types.ModuleType):
    """Stands in for the module named ``__name__`` until an attribute of it is read."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__"):
            # copy, pickle and inspect probe dunders (``__reduce_ex__`` aside, which is a method of the
            # type): they must not import JAX, and the real module's would lie about this object
            raise AttributeError(attribute)
        if not _deterministic_ops_asked:
            _deterministic_ops_asked.append(prefer_deterministic_ops())
        module = importlib.import_module(self.__name__)
        _run_pending()
        value = getattr(module, attribute)
        setattr(self, attribute, value)  # later reads are ordinary attribute reads
        return value

    def __reduce__(self) -> str:
        return _NAMES[self.__name__]

    def __repr__(self) -> str:
        return f"<deferred module {self.__name__!r}>"


_NAMES = {"jax": "jax", "jax.numpy": "jnp"}
"""Each stand-in's module name -> its name in this module (what it pickles as)."""

if TYPE_CHECKING:
    import jax as jax
    import jax.numpy as jnp
else:
    jax = _Deferred("jax")
    jnp = _Deferred("jax.numpy")
