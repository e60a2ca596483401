"""Bounded storage calls: every call to an object store ends, answered or not, within a known time.

Without limits, a frozen S3 endpoint holds a call for as long as the kernel keeps the connection (botocore's
60 s read timeout times its retries, times s3fs's own retries: many minutes per call). evalpipe gives every
S3 filesystem made in the process (through fsspec's defaults, so it reaches every module that opens one)
a connect timeout of :data:`S3_CONNECT_TIMEOUT_S`, a read timeout of :data:`S3_READ_TIMEOUT_S` and one
botocore attempt per s3fs try (s3fs tries 5 times, backing off 0.1 s to 0.8 s): at most about 80 s per call.
A job's ``storage_options.config_kwargs`` replaces these defaults. Clean-up after a failure is bounded as a
whole by :data:`CLEANUP_S`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import fsspec.config

S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 10
CLEANUP_S = 20.0
"""Longest wait for the removal of a failed or stopped run's files before giving up on them."""


def bound_storage_calls() -> None:
    """Give every S3 filesystem made from now on in this process the timeouts above (unless the job's
    ``storage_options`` set ``config_kwargs``)."""
    defaults = fsspec.config.conf.setdefault("s3", {})
    defaults.setdefault(
        "config_kwargs",
        {
            "connect_timeout": S3_CONNECT_TIMEOUT_S,
            "read_timeout": S3_READ_TIMEOUT_S,
            "retries": {"max_attempts": 1, "mode": "standard"},
        },
    )


def within(seconds: float, cleanup: Callable[[], object]) -> bool:
    """Run ``cleanup`` for at most ``seconds`` (in a daemon thread, so that a storage that does not answer
    cannot hold the process); whether it finished. Its errors are swallowed: a clean-up is best effort."""
    done = threading.Event()

    def target() -> None:
        try:
            cleanup()
        except Exception:
            pass
        finally:
            done.set()

    threading.Thread(target=target, name="evalpipe-cleanup", daemon=True).start()
    return done.wait(seconds)
