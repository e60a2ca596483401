"""SIGINT and SIGTERM handlers of a run (:mod:`pipelines.stopping`), in this process: Ctrl-C raises before the
commit and is noted after it; a process started with Ctrl-C ignored keeps ignoring it; after the report both
signals stay noted (the process then still ends within the grace period, as `test_output_faults` shows)."""

from __future__ import annotations

import signal
import threading

import pytest

from pipelines.stopping import StopControl, Stopped, keep_noting_stops, stop_on_sigterm


@pytest.fixture
def handlers():
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def _raise_now(sig: int) -> None:
    """Deliver ``sig`` to this process: its Python handler runs in the main thread at the next bytecode boundary,
    within this call's remaining bytecodes."""
    signal.raise_signal(sig)
    for _ in range(100):  # (bytecode boundaries at which the interpreter runs the pending handler)
        pass


def test_ctrl_c_raises_before_the_commit_and_is_noted_after(handlers):
    with stop_on_sigterm(grace_s=None) as control:
        with pytest.raises(KeyboardInterrupt):
            _raise_now(signal.SIGINT)
        control.committed("file:///run")
        _raise_now(signal.SIGINT)
        assert control.interrupted and not control.received
        _raise_now(signal.SIGTERM)
        assert control.received


def test_sigterm_before_the_commit_raises_stopped(handlers):
    with pytest.raises(Stopped), stop_on_sigterm(grace_s=None):
        _raise_now(signal.SIGTERM)


def test_an_ignored_ctrl_c_stays_ignored(handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with stop_on_sigterm(grace_s=None) as control:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        _raise_now(signal.SIGINT)  # (nothing happens)
        control.committed("file:///run")
        keep_noting_stops(control)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_after_the_report_both_signals_stay_noted(handlers):
    control = StopControl(grace_s=None)
    keep_noting_stops(control)  # (not committed: nothing changes)
    assert signal.getsignal(signal.SIGTERM) is not control.handle
    control.committed("file:///run")
    keep_noting_stops(control)
    _raise_now(signal.SIGTERM)
    _raise_now(signal.SIGINT)
    assert control.received and control.interrupted
    assert threading.current_thread() is threading.main_thread()
