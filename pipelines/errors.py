"""Errors that are the user's to fix (exit code 2) versus evalpipe's own failures (exit 1)."""

from __future__ import annotations


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


_STORAGE_ERROR_MODULES = ("botocore", "aiobotocore", "google.auth", "google.api_core", "azure.core")


def is_storage_access_error(exc: BaseException) -> bool:
    """Errors of object-store clients that mean "cannot access" (no or bad credentials, denied, no bucket)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(_STORAGE_ERROR_MODULES)
