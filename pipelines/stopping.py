"""SIGTERM (``ray job stop``, a scheduler's kill): unwind before the commit, tell the truth after it, and end the
process within :data:`STOP_GRACE_S` seconds whatever storage does.

Before the run commits, SIGTERM raises :class:`Stopped` in the main thread, which unwinds the job like Ctrl-C:
nothing is committed, uploads in flight are aborted, finished units stay as checkpoints. Once the manifest is
created (:meth:`StopControl.committed`) the run is published: a SIGTERM from then on is only noted, the
driver finishes removing the checkpoints and reports the committed run. Either way, a process that is still
alive :data:`STOP_GRACE_S` seconds after the first SIGTERM (a frozen storage endpoint under the cleanup)
exits at once with one line saying what was and was not done.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

STOP_GRACE_S = 30.0
"""Seconds from the first SIGTERM to the end of the process, at most."""
STOPPED_EXIT = 143


class Stopped(KeyboardInterrupt):
    """SIGTERM before the commit: unwinds the job like Ctrl-C."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C before the commit (told apart from a ``KeyboardInterrupt`` that user code raises itself)."""


STOP_SIGNALS = (Stopped, Interrupted)
"""The exceptions the signal handlers raise: never a user function's or backbone's own failure."""


class StopControl:
    """What the SIGTERM handler has seen, and whether the run it stops is already committed."""

    def __init__(self, grace_s: float | None) -> None:
        self.grace_s = grace_s
        self.received = False
        self.interrupted = False
        self.committed_uri: str | None = None

    def committed(self, uri: str) -> None:
        """The run's manifest exists: from now on a SIGTERM is noted, not raised."""
        self.committed_uri = uri

    def interrupt(self, signum: int, frame: object) -> None:
        """Ctrl-C (SIGINT): ``KeyboardInterrupt`` before the commit, as Python's own handler; after it, noted, and
        the process ends within the grace period as after a SIGTERM."""
        if self.committed_uri is None:
            raise Interrupted()
        self._start_grace()
        self.interrupted = True

    def handle(self, signum: int, frame: object) -> None:
        self._start_grace()
        self.received = True
        if self.committed_uri is None:
            raise Stopped()

    def _start_grace(self) -> None:
        """At the first stop signal, end the process :attr:`grace_s` seconds later whatever it waits for."""
        if not (self.received or self.interrupted) and self.grace_s is not None:
            timer = threading.Timer(self.grace_s, self._hard_exit)
            timer.daemon = True
            timer.start()

    def _hard_exit(self) -> None:
        if self.committed_uri is not None:
            message = (
                f"evalpipe: stopped after run {self.committed_uri} committed; its checkpoints may be "
                "left (`evalpipe checkpoints URI --delete` removes them)\n"
            )
            code = 0
        else:
            message = (
                f"evalpipe: stopped (SIGTERM); the storage did not answer the cleanup within {self.grace_s:g} s, so "
                "this run's files and unit checkpoints may be left (not committed: readers ignore them; "
                "`evalpipe checkpoints URI --delete` removes them)\n"
            )
            code = STOPPED_EXIT
        with contextlib.suppress(Exception):
            sys.stderr.write(message)
            sys.stderr.flush()
            sys.stdout.flush()
        os._exit(code)


@contextlib.contextmanager
def stop_on_sigterm(grace_s: float | None = STOP_GRACE_S) -> Iterator[StopControl]:
    """Route SIGTERM and SIGINT to a :class:`StopControl` inside the block (main thread only). ``grace_s``: end the
    process that long after the first SIGTERM (None: never, for callers that are not the whole process).

    Some libraries turn an exception raised by a signal handler into their own ``KeyboardInterrupt``: one
    that unwinds out of the block after a SIGTERM is re-raised as :class:`Stopped`."""
    control = StopControl(grace_s)
    if threading.current_thread() is not threading.main_thread():
        yield control
        return
    previous = signal.signal(signal.SIGTERM, control.handle)
    previous_interrupt = signal.getsignal(signal.SIGINT)
    if previous_interrupt is not signal.SIG_IGN:  # (a process started with Ctrl-C ignored keeps ignoring it)
        signal.signal(signal.SIGINT, control.interrupt)
    try:
        yield control
    except KeyboardInterrupt as exc:
        if control.received and not isinstance(exc, Stopped):
            raise Stopped() from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)


def keep_noting_stops(control: StopControl) -> None:
    """For the rest of the process (main thread only), note SIGTERM and Ctrl-C as ``control`` does after the commit:
    once its run is committed and reported, a process ending by a signal would tell a scheduler the job was stopped;
    it still ends within the grace period of the first one (a frozen store under the site's regeneration)."""
    if threading.current_thread() is threading.main_thread() and control.committed_uri is not None:
        signal.signal(signal.SIGTERM, control.handle)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, control.interrupt)


def ignore_stops_at_exit(control: StopControl) -> None:
    """Ignore SIGTERM and Ctrl-C from here to the end of the process (main thread, a committed ``control``): the
    interpreter puts the default actions back as it shuts down, so a signal then would end a process whose run
    committed and was reported with the status of a stopped one."""
    if threading.current_thread() is threading.main_thread() and control.committed_uri is not None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def committing(control: StopControl | None, uri: str, committed: Callable[[], bool]) -> Iterator[Callable | None]:
    """Around the writing of a run at ``uri``: gives the callback that tells ``control`` the manifest exists (None
    without a control); an interrupt that unwinds out of the block is swallowed when ``committed()`` says the
    manifest was created after all (the signal came as it was written), so the run is reported as committed."""
    try:
        yield None if control is None else functools.partial(control.committed, uri)
    except KeyboardInterrupt as exc:
        if not committed():
            raise
        if control is not None:
            control.committed(uri)
            control.interrupted |= not isinstance(exc, Stopped)  # (a SIGTERM is received already)
