"""Domains of metric parameters: which values a parameter may take, checked before any data is read.

A :class:`Domain` says in words what it accepts (for the error message) and tests a value. Booleans are
not numbers here (YAML's ``true`` is no ``top_k``), NaN and infinities are in no numeric domain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Domain:
    """The values one parameter accepts.

    Attributes:
        description: what is accepted, as it reads after "expected" (``"an integer >= 1"``).
        accepts: the test of one value.
    """

    description: str
    accepts: Callable[[Any], bool]

    def check(self, metric: str, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming the metric and parameter when ``value`` is outside the domain."""
        if not self.accepts(value):
            raise ValueError(f"parameter {name!r} of metric {metric!r} must be {self.description}; got {value!r}")


def _is_number(value: Any, integer: bool) -> bool:
    """A real number other than a boolean: Python's or NumPy's (``np.int64(3)`` from an array is a ``top_k``)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        return False
    if integer:
        return isinstance(value, Integral) or (math.isfinite(value) and float(value).is_integer())
    return math.isfinite(value)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> Domain:
    """A finite number (``integer``: a whole one) in ``[low, high]`` (ends open with ``low_open`` / ``high_open``;
    ``None``: unbounded); ``optional`` also accepts ``None`` (null)."""

    def accepts(value: Any) -> bool:
        if value is None:
            return optional
        if not _is_number(value, integer):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    text = f"{kind} {' and '.join(bounds)}".strip() + (" or null" if optional else "")
    return Domain(text, accepts)


def flag() -> Domain:
    """``true`` or ``false``."""
    return Domain("true or false", lambda value: isinstance(value, bool))


def text(optional: bool = True) -> Domain:
    """A string (its choices are checked by the metric, which lists them); ``optional``: or null."""
    return Domain(
        "a string" + (" or null" if optional else ""), lambda v: isinstance(v, str) or (optional and v is None)
    )


def numbers(element: Domain, *, optional: bool = True) -> Domain:
    """A non-empty list of values of ``element``'s domain; ``optional``: or null."""

    def accepts(value: Any) -> bool:
        if value is None:
            return optional
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) == 0:
            return False
        return all(element.accepts(v) for v in value)

    return Domain(f"a non-empty list, each {element.description}" + (", or null" if optional else ""), accepts)
