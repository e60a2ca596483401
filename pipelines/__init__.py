"""evalpipe's pipeline: job spec, shard planning, runners, reduction, storage, CLI.

Nothing here knows any one metric's arithmetic: that lives in ``evaluators``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("evalpipe")
except _metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
