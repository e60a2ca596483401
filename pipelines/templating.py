"""``${...}`` placeholders in job specs, for nightly paths.

==========================  ===================================================
``${DATE}``                 the run date, ``YYYY-MM-DD`` (UTC today unless
                            ``vars.DATE`` is set, e.g. ``--set vars.DATE=2026-11-20``)
``${DATE:%Y/%m/%d}``        the run date in any ``strftime`` format
``${YESTERDAY}``            the day before the run date (formats work too)
``${NAME}``                 a value from the spec's ``vars:`` mapping
``${env:NAME}``             an environment variable; the recorded spec keeps
                            the placeholder, never the value
``$${...}``                 a literal ``${...}``
==========================  ===================================================
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.errors import SpecError

_PLACEHOLDER = re.compile(r"\$?\$\{([^}]*)\}")


def run_date(variables: Mapping[str, Any], today: dt.date | None = None) -> dt.date:
    raw = variables.get("DATE")
    if raw is None:
        return today or dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise SpecError(f"vars.DATE must be a date written YYYY-MM-DD, got {raw!r}.") from None


def as_of(variables: Mapping[str, Any], started: dt.datetime) -> dt.datetime:
    """The time a run stands for: ``started`` (UTC), or where ``vars.DATE`` names an earlier day (a backfill), that day's
    last microsecond (UTC), so that a backfilled night is listed, gated and windowed among the nights around it rather
    than after the newest, and after the runs that ran on that night (a backfill replaces them; of several
    backfills of one night, the one started last comes last)."""
    if variables.get("DATE") is None:
        return started
    date = run_date(variables)
    return dt.datetime.combine(date, dt.time.max, dt.UTC) if date < started.date() else started  # (not a later day)


def env_values(data: Any, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name: value}`` of every ``${env:NAME}`` placeholder in the strings of ``data`` that is set."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            for match in _PLACEHOLDER.finditer(value):
                name, _, var = match.group(1).strip().partition(":")
                if name == "env" and not match.group(0).startswith("$$") and env.get(var):
                    found[var] = env[var]
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def redact(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each environment value of ``values`` (name -> value) written back as ``${env:NAME}``:
    for messages and records, which never hold a resolved environment value. Values shorter than 4
    characters are replaced only as whole words (``8`` in ``got '8'``, not in ``2048``)."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[1])):
        if len(value) >= 4:
            text = text.replace(value, "${env:" + name + "}")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "${env:" + name + "}", text)
    return text


_UNCLOSED = re.compile(r"(?<!\$)\$\{")
"""A ``${`` left once every whole placeholder (and ``$${...}`` literal) is taken out: one without its ``}``."""


def _unclosed(text: str) -> bool:
    """Whether ``text`` holds a ``${`` without its closing ``}``."""
    return bool(_UNCLOSED.search(_PLACEHOLDER.sub("", text)))


def _holds_placeholder(text: str) -> bool:
    """Whether ``text`` holds a placeholder, closed or not (a ``$${...}`` literal is none)."""
    closed = any(not m.group(0).startswith("$$") for m in _PLACEHOLDER.finditer(text))
    return closed or _unclosed(text)


def _substitute(text: str, lookup: Callable[[str], str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return lookup(match.group(1).strip())

    if _unclosed(text):
        raise SpecError(
            f"{where}: a placeholder `${{` without its closing `}}` in {text!r}; expected `${{name}}` (or `$${{name}}` "
            "for the literal text `${name}`)."
        )
    return _PLACEHOLDER.sub(replace, text)


def render(
    data: Any,
    variables: Mapping[str, Any],
    where: Callable[[tuple], str],
    env: Mapping[str, str] | None = None,
    today: dt.date | None = None,
) -> tuple[Any, Any]:
    """Resolve placeholders in every string of ``data``.

    Returns ``(resolved, recorded)``: ``recorded`` is the same document with
    ``${env:...}`` placeholders left in place, fit to be written into a run.
    """
    env = os.environ if env is None else env
    date = run_date(variables, today)
    for key, value in variables.items():
        if not isinstance(value, str | int | float | bool | dt.date):
            raise SpecError(
                f"{where(('vars', key))}: expected a string, number or boolean to put in place of `${{{key}}}`, got "
                f"{type(value).__name__} {value!r}."
            )
        if isinstance(value, str) and _holds_placeholder(value):
            raise SpecError(
                f"{where(('vars', key))}: its value {value!r} holds a placeholder; a var is put in place as written "
                "(placeholders are resolved in the rest of the spec, not inside vars)."
            )
    names = {str(k): str(v) for k, v in variables.items() if k != "DATE"}

    def lookup_for(path: tuple, keep_env: bool) -> Callable[[str], str]:
        def lookup(expr: str) -> str:
            name, _, fmt = expr.partition(":")
            if name == "env":
                if not fmt:
                    raise SpecError(f"{where(path)}: `${{env:}}` needs a variable name, e.g. `${{env:BUCKET}}`.")
                if fmt not in env:
                    raise SpecError(
                        f"{where(path)}: environment variable {fmt!r} is not set (used as `${{env:{fmt}}}`)."
                    )
                return "${env:" + fmt + "}" if keep_env else env[fmt]
            if name in ("DATE", "YESTERDAY"):
                day = date if name == "DATE" else date - dt.timedelta(days=1)
                try:
                    return day.strftime(fmt) if fmt else day.isoformat()
                except ValueError:
                    raise SpecError(f"{where(path)}: bad date format {fmt!r} in `${{{expr}}}`.") from None
            if name in names and not fmt:
                return names[name]
            known = ", ".join(["DATE", "YESTERDAY", "env:NAME", *sorted(names)])
            raise SpecError(f"{where(path)}: unknown placeholder `${{{expr}}}`; known: {known}.")

        return lookup

    def walk(value: Any, path: tuple, keep_env: bool) -> Any:
        if isinstance(value, str):
            return _substitute(value, lookup_for(path, keep_env), where(path))
        if isinstance(value, dict):
            return {k: (v if path == () and k == "vars" else walk(v, (*path, k), keep_env)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i), keep_env) for i, v in enumerate(value)]
        return value

    return walk(data, (), False), walk(data, (), True)
