"""``python -m otel_recursive_metrics``: the same as the ``otel-recursive-metrics`` command."""

import sys

from .cli import main

sys.exit(main())
