"""Errors that are the user's to fix (exit code 2) versus evalpipe's own failures (exit 1)."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input: a job spec, a dataset, a path. Printed as one paragraph, no traceback; exit code 2.

    The message names the file, shard, column or YAML key and says what was expected.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message


class SpecError(UserError):
    """A job spec that cannot be read or does not validate."""


class DataError(UserError):
    """A dataset whose files, schema or values do not fit the job spec."""


class DamagedRunFile(UserError):
    """A committed run's file whose bytes changed after the commit (its size still the manifest's): ``run_uri`` is
    the run's directory, so that a window can leave that run out."""

    def __init__(self, message: str, run_uri: str | None = None) -> None:
        super().__init__(message)
        self.run_uri = run_uri

    def __reduce__(self) -> tuple:  # (raised in a worker process, it reaches the driver whole)
        return (type(self), (self.message, self.run_uri))


class UserCodeError(DataError):
    """A user metric function or statistic class raised: not retried (it would raise again)."""


class JobFailed(Exception):
    """evalpipe could not finish the job for a reason outside the spec and the data (workers kept dying,
    storage kept failing). Printed as one paragraph, no traceback; exit code 1; nothing is committed."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


_TRANSIENT_ERROR_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientPayloadError",
        "RetryError",
        "TransportError",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


def is_transient_error(exc: BaseException) -> bool:
    """Storage errors worth another try: connection resets and timeouts, throttling, 5xx answers, also where a
    client library raised them as the cause of its own error (s3fs's ``OSError(EBUSY)`` from a ``SlowDown``).

    Not transient: a missing file, a denied request, a corrupt or mistyped file (those fail the same way
    again), and every :class:`UserError`.
    """
    for link in exception_chain(exc, context=False):
        if isinstance(link, UserError):
            return False
        if _transient(link):
            return True
    return False


def exception_chain(exc: BaseException, *, context: bool = True) -> list[BaseException]:
    """``exc`` and the exceptions behind it, each once: its ``__cause__``, else (``context``) its ``__context__``,
    and so on."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ or (link.__context__ if context else None)
    return chain


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, UserError):
        return False
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if type(exc).__name__ in _TRANSIENT_ERROR_NAMES:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code in _TRANSIENT_CODES or status in _TRANSIENT_CODES
    # OSError with an errno of a failing device or connection (EIO, ECONNRESET, ETIMEDOUT, ...)
    return isinstance(exc, OSError) and exc.errno in {
        errno.EIO,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EAGAIN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EBUSY,  # (s3fs: throttled, SlowDown / 503)
        errno.EREMOTEIO,  # (s3fs: the store's own failure, InternalError / 500)
    }


_STORAGE_ERROR_MODULES = ("botocore", "aiobotocore", "google.auth", "google.api_core", "azure.core")


def is_storage_access_error(exc: BaseException) -> bool:
    """Errors of object-store clients that mean "cannot access" (no or bad credentials, denied, no bucket)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(_STORAGE_ERROR_MODULES)


_MISSING_PACKAGES = {
    "Install s3fs to access S3": ("s3fs", "s3://", "s3"),
    "Please install gcsfs to access Google Storage": ("gcsfs", "gs://", "gcs"),
}
"""fsspec's messages for an object store whose package is missing -> (the package, the paths that need it, evalpipe's
extra that installs it)."""


def missing_package(exc: BaseException) -> str | None:
    """What to install where ``exc`` is fsspec's refusal of an object store whose package is missing (one clause,
    without a full stop); None for any other error."""
    found = _MISSING_PACKAGES.get(str(exc)) if isinstance(exc, ImportError) else None
    if found is None:
        return None
    package, paths, extra = found
    return (
        f"{paths} paths need {package}, which is not installed: pip install 'evalpipe[{extra}]' (in a checkout: "
        f".venv/bin/pip install -e '.[{extra}]')"
    )


def opening_problem(exc: BaseException) -> str:
    """Why a location could not be opened, for a message: :func:`missing_package`'s advice, else ``exc`` itself."""
    return missing_package(exc) or str(exc)
