"""Values of command-line options that are more than one number or name: ``compare --tolerance``."""

from __future__ import annotations

import math

from pipelines.errors import UserError


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses, brackets and braces (a metric key's parameters keep theirs)."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def tolerance_option(text: str | None) -> float | dict[str, float]:
    """``0.01`` or ``roc_auc=0.005,accuracy=0.01,*=0.02``."""
    if not text:
        return 0.0
    try:
        if "=" not in text:
            tolerance: float | dict[str, float] = float(text)
        else:  # (a key may hold parameters: roc_auc(mode=exact,precision_bits=14)=0.005)
            tolerance = {k.strip(): float(v) for k, v in (item.rsplit("=", 1) for item in _top_level_items(text))}
    except ValueError:
        raise UserError(
            f"--tolerance {text!r}: expected a number or NAME=NUMBER pairs separated by commas, e.g. roc_auc=0.005,*=0.01."
        ) from None
    for name, value in tolerance.items() if isinstance(tolerance, dict) else [("", tolerance)]:
        if not (math.isfinite(value) and value >= 0):
            raise UserError(
                f"--tolerance {text!r}: {f'{name}=' if name else ''}{value:g} is not a finite number of at least 0; "
                "expected the worsening allowed, in the metric's units, e.g. 0.01 or roc_auc=0.005,*=0.01."
            )
    return tolerance
