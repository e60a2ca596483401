"""``python -m pipelines ...`` is the ``evalpipe`` command."""

import sys

from pipelines.cli import main

sys.exit(main())
