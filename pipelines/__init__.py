"""evalpipe's pipeline: job spec, shard planning, runners, reduction, storage, CLI.

Nothing here knows any one metric's arithmetic: that lives in ``evaluators``.
"""
