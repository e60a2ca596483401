"""Progress of a job: a live bar on a terminal, sparse log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(rows_per_s: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rows_per_s >= scale:
            return f"{rows_per_s / scale:.1f}{unit}"
    return f"{rows_per_s:.0f}"


class Progress:
    """Units done, rows/s and ETA.

    On a terminal the line redraws in place (at most 10 times a second);
    otherwise a plain line is logged at most every ``log_every`` seconds and
    once at the end.
    """

    def __init__(
        self,
        total_units: int,
        total_rows: int,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        log_every: float = 30.0,
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.total_units = total_units
        self.total_rows = total_rows
        self.units = 0
        self.rows = 0
        self.resumed_rows = 0
        """Rows of units read back from checkpoints: done, but not by this run's workers (not in its rate)."""
        self.enabled = enabled
        self.log_every = log_every
        self.started = time.monotonic()
        self._last_draw = -float("inf")

    def restart_clock(self) -> None:
        """Start timing now (after cluster start-up)."""
        self.started = time.monotonic()

    def advance(self, rows: int, *, resumed: bool = False) -> None:
        """One unit of ``rows`` done; ``resumed``: read back from its checkpoint (counted, not drawn, not timed)."""
        self.units += 1
        self.rows += rows
        if resumed:
            self.resumed_rows += rows
            return
        now = time.monotonic()
        interval = 0.1 if self.interactive else self.log_every
        if self.units == self.total_units or now - self._last_draw >= interval:
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.started)
        rate = (self.rows - self.resumed_rows) / elapsed
        remaining = (self.total_rows - self.rows) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.units / max(1, self.total_units))
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        return (
            f"[{bar}] {self.units}/{self.total_units} units  {_rate(rate)} rows/s  "
            f"elapsed {_duration(elapsed)}  ETA {_duration(remaining)}"
        )

    def _draw(self, now: float) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self.stream.write("\r" + self.line(now) + "\033[K")
            if self.units == self.total_units:
                self.stream.write("\n")
        else:
            self.stream.write("evalpipe: " + self.line(now) + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            if self.interactive and 0 < self.units < self.total_units:
                self.stream.write("\n")
            self.stream.write(f"evalpipe: {text}\n")
            self.stream.flush()
