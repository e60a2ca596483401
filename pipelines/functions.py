"""User metric functions with trlx's interface, referenced by dotted path in the job spec.

A function ``fn(samples, prompts, outputs, **columns) -> {name: [score per sample]}`` is called as trlx
calls its ``metric_fn`` (keywords, ``tokenizer=`` when it takes one, extra columns as ``**metadata``; see
:func:`invoke_trlx`) on every batch a worker reads (lists of strings in, one float per row out, for every output named in
the spec). Its scores are aggregated by :class:`evaluators.sketch.ScoreSketch` (count, mean, std,
extremes, quantiles, bootstrap intervals) like any statistic, and can be written per row next to
the run. Functions are imported only from module prefixes that the ``EVALPIPE_ALLOWED_MODULES``
environment variable (comma-separated, set by the operator) allows; when it is set, the spec's
``allow_modules`` may only narrow it, and without it the spec's list applies. The standard library
(``os``, ``subprocess``, ``builtins``...) is never allowed, nor a callable that a user module merely
re-exports from it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from evaluators.sketch import MAX_MAGNITUDE
from evaluators.statistic import DerivedMetric, Direction, Statistic
from pipelines.errors import DataError, UserCodeError
from pipelines.stopping import STOP_SIGNALS

ALLOW_ENV = "EVALPIPE_ALLOWED_MODULES"
TRLX_ARGUMENTS = ("samples", "prompts", "outputs")


@dataclass(frozen=True)
class FunctionSpec:
    """One ``functions:`` entry.

    Attributes:
        key: output key prefix (``key.output`` per returned score).
        path: ``package.module.attribute`` (or ``package.module:attribute``).
        outputs: the score names the function returns (others are refused).
        columns: keyword -> column: ``samples``, ``prompts``, ``outputs`` and any extra keyword.
        scores: write per-row scores to ``scores.parquet`` in the run.
        tokenizer: a Hugging Face ``tokenizer.json`` (any fsspec URL) passed as ``tokenizer=``, as trlx does.
    """

    key: str
    path: str
    outputs: tuple[str, ...]
    columns: Mapping[str, str] = field(default_factory=dict)
    scores: bool = False
    tokenizer: str | None = None

    def feature(self, output: str) -> str:
        return f"fn:{self.key}.{output}"


def allowed_prefixes(spec_allowed: Sequence[str]) -> tuple[str, ...]:
    """The module prefixes a job may import from: the operator's ``EVALPIPE_ALLOWED_MODULES`` narrowed by the
    spec's ``allow_modules`` (or the spec's list alone when the variable is not set).

    Raises:
        PermissionError: the spec names a prefix outside the operator's list.
    """
    env = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]
    if not env:
        return tuple(dict.fromkeys(spec_allowed))
    if not spec_allowed:
        return tuple(dict.fromkeys(env))
    wider = [p for p in spec_allowed if not is_allowed(p, env)]
    if wider:
        raise PermissionError(
            f"{', '.join(map(repr, wider))} is outside {ALLOW_ENV} ({', '.join(env)}), which the operator set; "
            "a job spec may only narrow that list"
        )
    return tuple(dict.fromkeys(spec_allowed))


def is_standard_library(module: str) -> bool:
    """Whether ``module`` is part of Python's standard library (``builtins`` included)."""
    return module.split(".")[0] in sys.stdlib_module_names


def split_path(path: str) -> tuple[str, str]:
    if ":" in path:
        module, _, attribute = path.partition(":")
    else:
        module, _, attribute = path.rpartition(".")
    if not module or not attribute:
        raise ValueError(f"{path!r} is not a dotted path `package.module.function`")
    return module, attribute


def is_allowed(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def import_function(path: str, prefixes: Sequence[str]) -> Callable[..., Mapping[str, Sequence[float]]]:
    """The callable at ``path``, if its module is allowed.

    Raises:
        PermissionError: the module is outside the allowed prefixes.
        ImportError / AttributeError / TypeError: it cannot be imported or is not callable.
    """
    module, attribute = split_path(path)
    if is_standard_library(module):
        raise PermissionError(
            f"module {module!r} is not allowed: it is part of the standard library, which no allow-list opens"
        )
    if not is_allowed(module, prefixes):
        raise PermissionError(
            f"module {module!r} is not allowed; allowed prefixes: {', '.join(prefixes) or 'none'} "
            f"(add it to `allow_modules:` or to {ALLOW_ENV})"
        )
    found = getattr(importlib.import_module(module), attribute)
    if not callable(found):
        raise TypeError(f"{path!r} is not callable")
    home = next((m for m in _homes(found) if is_standard_library(m)), None)
    if home is not None:
        raise PermissionError(
            f"{path!r} is not allowed: it is {home}.{getattr(found, '__name__', attribute)} of the standard library"
        )
    return found


_WRAPPERS = (
    types.MethodType,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


def _homes(found: Any) -> list[str]:
    """The modules a callable belongs to: a function's or class's own; for anything else (a builtin's method
    wrapper, a bound method of a standard-library object such as ``sys.stdout.write``, a callable instance) also
    its type's and, along ``__self__``, those of the objects it is bound to."""
    homes: list[str] = []
    for _ in range(4):  # (a method of a method of an object: a short chain)
        homes.append(getattr(found, "__module__", None) or "")
        if isinstance(found, type) or inspect.isfunction(found):
            break
        if getattr(found, "__wrapped__", None) is not None:  # (functools.wraps, lru_cache: what it wraps)
            found = found.__wrapped__
            continue
        if not isinstance(found, _WRAPPERS):  # (a wrapper's own type is a builtin one, whatever it wraps)
            homes.append(type(found).__module__)
        found = getattr(found, "__func__", None) or getattr(found, "__self__", None)
        if found is None or inspect.ismodule(found):
            break
    return homes


def load_function(path: str) -> Callable[..., Mapping[str, Sequence[float]]]:
    """Import ``path`` in a worker (the allow-list was checked when the spec was loaded)."""
    module, attribute = split_path(path)
    return getattr(importlib.import_module(module), attribute)


@lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """A Hugging Face ``tokenizers`` tokenizer from a ``tokenizer.json`` at any fsspec URL (read once per process)."""
    import fsspec
    from tokenizers import Tokenizer

    with fsspec.open(path, "rb") as f:
        return Tokenizer.from_str(f.read().decode("utf-8"))


def _keywords_fit(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(fn takes these keyword arguments, fn takes a tokenizer)`` from its signature."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False, False
    open_keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    takes_tokenizer = open_keywords or "tokenizer" in signature.parameters
    try:
        signature.bind(**kwargs)
    except TypeError:
        return False, takes_tokenizer
    return True, takes_tokenizer


def invoke_trlx(
    fn: Callable[..., Any], texts: Mapping[str, list[str]], extra: Mapping[str, list[Any]], tokenizer: str | None
) -> Any:
    """Call ``fn`` as trlx calls ``metric_fn``: ``fn(samples=..., prompts=..., outputs=..., tokenizer=...,
    **metadata)``, the tokenizer passed when ``fn`` takes it (None unless the spec names one). A function whose
    parameters do not take these keywords (``def fn(s, p, o)``) is called positionally, ``fn(samples, prompts,
    outputs, **metadata)``."""
    kwargs = {"samples": texts["samples"], "prompts": texts["prompts"], "outputs": texts["outputs"], **extra}
    fits, takes_tokenizer = _keywords_fit(fn, kwargs)
    if fits:
        if takes_tokenizer and "tokenizer" not in kwargs:
            kwargs["tokenizer"] = load_tokenizer(tokenizer) if tokenizer else None
        return fn(**kwargs)
    return fn(texts["samples"], texts["prompts"], texts["outputs"], **extra)


def call_function(
    spec: FunctionSpec, fn: Callable[..., Any], columns: Mapping[str, np.ndarray], n: int, where: str
) -> dict[str, np.ndarray]:
    """Scores ``{feature name: float64 [n]}`` of one batch; bad returns raise :class:`DataError`."""
    texts = {k: [str(v) for v in columns[k]] for k in TRLX_ARGUMENTS if k in columns}
    if "samples" not in texts:
        prompts, outputs = texts.get("prompts", [""] * n), texts.get("outputs", [""] * n)
        texts["samples"] = [p + o for p, o in zip(prompts, outputs, strict=True)]
    texts.setdefault("prompts", [""] * n)
    texts.setdefault("outputs", [""] * n)
    extra = {k: list(v) for k, v in columns.items() if k not in TRLX_ARGUMENTS}
    try:
        result = invoke_trlx(fn, texts, extra, spec.tokenizer)
    except STOP_SIGNALS:  # (SIGTERM or Ctrl-C as the function ran: the run stops, the function did not fail)
        raise
    except USER_CODE_EXITS as exc:  # sys.exit() or an interrupt inside the function: its failure, not the run's
        read = ", ".join(f"{k}={v!r}" for k, v in spec.columns.items())
        raise UserCodeError(
            f"{where}: metric function {spec.path} raised {type(exc).__name__}: {exc} (on columns {read}). "
            "Errors in user code are not retried: fix the function and run the job again."
        ) from None if isinstance(exc, SystemExit | KeyboardInterrupt) else exc
    if not isinstance(result, Mapping):
        raise DataError(f"{where}: metric function {spec.path} returned {type(result).__name__}, expected a dict.")
    out: dict[str, np.ndarray] = {}
    for name in spec.outputs:
        if name not in result:
            raise DataError(
                f"{where}: metric function {spec.path} returned no {name!r} (it returned: "
                f"{', '.join(map(str, result)) or 'nothing'}); `outputs:` lists the names it must return."
            )
        scores = _float_scores(result[name])
        if scores is None:
            raise DataError(
                f"{where}: metric function {spec.path}: {name!r} is not a list of real numbers (int, float or "
                "bool; complex numbers and strings are refused)."
            )
        if scores.ndim != 1:
            raise DataError(
                f"{where}: metric function {spec.path}: {name!r} has shape {scores.shape} for {n} rows; expected a "
                "flat list of one score per row."
            )
        if len(scores) != n:
            raise DataError(
                f"{where}: metric function {spec.path}: {name!r} has {len(scores)} scores for {n} rows; "
                "expected one per row."
            )
        bad = ~np.isfinite(scores)
        if bad.any():
            raise DataError(f"{where}: metric function {spec.path}: {name!r} has {int(bad.sum())} NaN or inf scores.")
        huge = np.abs(scores) > MAX_SCORE
        if huge.any():
            raise DataError(
                f"{where}: metric function {spec.path}: {name!r} has {int(huge.sum())} scores of magnitude above "
                f"{MAX_SCORE:.0e} (the first: {scores[np.argmax(huge)]!r}); scores are summarised exactly only "
                "within that range: rescale them (e.g. return a logarithm)."
            )
        out[spec.feature(name)] = scores
    return out


USER_CODE_EXITS = (Exception, SystemExit, KeyboardInterrupt)
"""What a user function may raise that fails the job as a user-code error (exit 2), ``sys.exit()`` included."""
MAX_SCORE = MAX_MAGNITUDE
"""Largest magnitude of a user score: the quantile sketch's last bucket (beyond it, quantiles would be clipped)."""


def _float_scores(values: Any) -> np.ndarray | None:
    """``values`` as a float64 array of their shape, or None when they are not real numbers (complex, strings,
    objects)."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        return None
    return array.astype(np.float64) if array.dtype.kind in "biuf" else None


def custom_statistic_metric(path: str, key: str, params: Mapping[str, Any]) -> DerivedMetric:
    """A metric from a user :class:`~evaluators.statistic.Statistic` subclass at ``path``.

    The class is built with ``params`` and must define ``finalize(state) -> {suffix: value}`` (``""``:
    the headline value); an optional class attribute ``direction`` (``higher``, ``lower``, ``info``)
    ranks it. Its merge and resample follow the :class:`Statistic` contract, so it is sliced,
    merged and bootstrapped like a catalogue statistic.
    """
    cls = load_function(path)
    if not (isinstance(cls, type) and issubclass(cls, Statistic)):
        raise TypeError(f"{path} is not a subclass of evaluators.statistic.Statistic")
    statistic = cls(**params)
    finalize = getattr(statistic, "finalize", None)
    if not callable(finalize):
        raise TypeError(f"{path} has no finalize(state) method")
    description = (cls.__doc__ or path).strip().split("\n")[0]

    def checked(state: Any) -> Mapping[str, Any]:
        values = finalize(state)
        if isinstance(values, Mapping) and all(
            isinstance(k, str) and (v is None or np.asarray(v).dtype.kind in "biuf") for k, v in values.items()
        ):
            return values
        raise UserCodeError(
            f"metric {key!r}: {path}.finalize returned {type(values).__name__} {str(values)[:80]!r}; expected a "
            "mapping of suffix to number ('' for the headline value)."
        )

    return DerivedMetric(key, statistic, checked, Direction(getattr(cls, "direction", "info")), description=description)


def user_code_frame(exc: BaseException, paths: Sequence[str]) -> tuple[str, int] | None:
    """``(module, line)`` of the innermost frame of ``exc``'s traceback in the package of one of the dotted ``paths``
    (a job's user functions, statistic classes and backbone), or None: an error raised by user code that no layer
    named (a statistic's merge or finalize, a backbone's load), told apart from evalpipe's own."""
    packages = {split_path(path)[0].split(".")[0] for path in paths if "." in path or ":" in path}
    packages -= {"evaluators", "pipelines"}
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        name = frame.f_globals.get("__name__", "")
        if name.split(".")[0] in packages:  # (any module of the user's package: a base class, a helper)
            found = (name, line)
    return found


def user_code_error(job: Any, exc: BaseException) -> str | None:
    """The one-paragraph error of an exception that a loaded ``job``'s own code raised where no layer named it (a
    user statistic's merge or finalize, a backbone's load), or None (no job, or evalpipe's own error)."""
    if job is None:
        return None
    paths = [f.path for f in job.functions] + [m.name.removeprefix("statistic:") for m in job.metrics]
    paths += [job.backbone.kind] if job.backbone is not None else []
    found = user_code_frame(exc, [p for p in paths if not p.startswith("torchmetrics:")])
    if found is None:
        return None
    module, line = found
    return (
        f"the job's own code raised {type(exc).__name__} in {module}, line {line}: {exc}. Errors in user code are "
        "not retried: fix it and run the job again."
    )
