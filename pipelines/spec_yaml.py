"""The YAML toolkit of the job spec reader: typed access to one mapping (:class:`Section`: unknown keys are
errors, a misspelt key gets a did-you-mean), range checks, the 64-bit integer bound and ``--set`` overrides.

Every message names the YAML key path and line (:class:`~pipelines.yamlsource.YamlSource`). The section
readers (:mod:`pipelines.spec` and the ``spec_*`` modules) read every mapping through :class:`Section`, which
is also what :mod:`pipelines.schema` follows to derive the JSON Schema.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

import yaml

from pipelines.errors import SpecError
from pipelines.yamlsource import Path, YamlSource, load_scalar

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A job, window or output name: it becomes a directory name."""
MAX_INTEGER = 2**63 - 1
"""Largest integer a spec may hold anywhere (a 64-bit signed integer): larger ones are refused up front."""

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def suggest(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` to a misspelt ``name``; ``""`` when none is close."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Section:
    """Typed access to one mapping of the spec; unknown keys are errors."""

    def __init__(self, source: YamlSource, path: Path, value: Any, what: str = "a mapping") -> None:
        if not isinstance(value, dict):
            raise SpecError(f"{source.where(path)}: expected {what}, got {describe(value)}.")
        self.source = source
        self.path = path
        self.value = value
        self.allowed: list[str] = []

    def where(self, key: str | int | None = None) -> str:
        return self.source.where(self.path if key is None else (*self.path, key))

    def missing(self, key: str, what: str = "key") -> SpecError:
        """The error for a required ``key`` that is absent or null: a misspelling of it if there is one."""
        if key in self.value:  # (written, with no value: `predictions:` or `predictions: null`)
            return SpecError(f"{self.where(key)}: missing the value of required {what} {key!r} (got nothing, null).")
        near = difflib.get_close_matches(key, [str(k) for k in self.value], n=1, cutoff=0.6)
        if near:
            return SpecError(f"{self.where(near[0])}: unknown key {near[0]!r} (did you mean {key!r}?).")
        return SpecError(f"{self.where()}: missing required {what} {key!r}.")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
        choices: Sequence[str] | None = None,
    ) -> Any:
        self.allowed.append(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.missing(key)
            return default
        value = self.value[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise SpecError(f"{self.where(key)}: expected {expected}, got {describe(value)}.")
        if choices is not None and value not in choices:
            raise SpecError(
                f"{self.where(key)}: expected one of {', '.join(map(str, choices))}; got {value!r}"
                f"{suggest(str(value), choices)}."
            )
        return value

    def section(self, key: str, *, required: bool = False) -> Section:
        self.allowed.append(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.missing(key, "section")
            return Section(self.source, (*self.path, key), {})
        return Section(self.source, (*self.path, key), self.value[key])

    def finish(self) -> None:
        for key in self.value:
            if key not in self.allowed:
                raise SpecError(
                    f"{self.where(key)}: unknown key {key!r}{suggest(str(key), self.allowed)}; "
                    f"expected one of: {', '.join(self.allowed)}."
                )


def describe(value: Any) -> str:
    """A value as an error message shows it: its type and a repr cut to 60 characters."""
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_range(
    section: Section, key: str, value: float | None, upper: float, integer: bool = False, allow_zero: bool = False
) -> None:
    """Refuse ``value`` of ``section.key`` outside (0, upper] (``allow_zero``: [0, upper]), not finite, or not
    whole when ``integer``; None (the key absent) passes."""
    if value is None:
        return
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and math.isfinite(value) and value <= upper) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        low = "0" if allow_zero else "above 0"
        raise SpecError(f"{section.where(key)}: expected {kind} from {low} to {upper:g}, got {value!r}.")


def check_numbers(source: YamlSource, *, finite: bool = False) -> None:
    """Refuse an integer outside the 64-bit range anywhere in the document (such numbers overflow floats and
    array dtypes far from where they were written); with ``finite``, also YAML's ``.nan`` and ``.inf`` (a run records
    its spec as JSON, which has neither: the job would fail after computing everything). The keys whose readers
    refuse such values in their own words (a metric's parameters, slice boundaries) are read first."""
    stack: list[tuple[Path, Any]] = [((), source.data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            digits = len(str(abs(value)))
            raise SpecError(
                f"{source.where(path)}: an integer of {digits} digits is out of range; expected an integer "
                f"between {-MAX_INTEGER} and {MAX_INTEGER}."
            )
        elif finite and isinstance(value, float) and not math.isfinite(value):
            raise SpecError(
                f"{source.where(path)}: {value} is not a finite number; a job spec takes finite numbers only (a run "
                "records its spec as JSON, which has no NaN or infinity)."
            )


def assigned_paths(assignments: Sequence[str]) -> dict[Path, str]:
    """``--set key.path=value`` assignments -> ``{("key", "path"): "key.path=value"}`` (the last one of a path wins,
    as it does in :func:`apply_overrides`)."""
    return {tuple(a.partition("=")[0].strip().split(".")): a for a in assignments if "=" in a}


def apply_overrides(data: dict[str, Any], assignments: Sequence[str], source_name: str) -> dict[str, Any]:
    """Apply ``--set key.path=value`` assignments (values parsed as YAML scalars)."""
    data = copy.deepcopy(data)
    if assignments and isinstance(data.get("task"), str):
        data["task"] = {"kind": data["task"]}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set execution.actors=4.")
        try:
            value = load_scalar(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        target = data
        for depth, part in enumerate(parts[:-1]):
            nxt = target.get(part)
            if nxt is None:
                nxt = target[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {key}: {'.'.join(parts[: depth + 1])} in {source_name} is not a mapping.")
            target = nxt
        target[parts[-1]] = value
    return data
