"""evalpipe's pipeline: job spec, shard planning, runners, reduction, storage, CLI.

Nothing here knows any one metric's arithmetic: that lives in ``evaluators``.
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``__version__``, looked up on first use (``importlib.metadata`` is not imported by every command)."""
    if name != "__version__":
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("evalpipe")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        version = "0+unknown"
    globals()["__version__"] = version
    return version
