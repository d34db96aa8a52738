"""The process's default pipeline, shared by the exporter and the training API.

``TrainingMetrics`` and ``AsyncMetricsCollector`` without an explicit exporter use the pipeline of
the most recently created ``RecursiveMetricExporter`` (so ``OTEL_METRICS_EXPORTER=recursive``
plus ``TrainingMetrics`` share one queue and one store), or build one from the environment.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker import Pipeline

_lock = threading.Lock()
_default: Pipeline | None = None


def set_default_pipeline(pipeline: Pipeline) -> None:
    global _default
    with _lock:
        _default = pipeline


def get_default_pipeline() -> Pipeline:
    """The default pipeline, built from the environment on first use."""
    global _default
    with _lock:
        if _default is None or _default.closed:
            from ..config import load_config
            from .worker import Pipeline

            _default = Pipeline(load_config())
        return _default


def reset_default_pipeline() -> None:
    """Forget the default pipeline (tests); it is not shut down."""
    global _default
    with _lock:
        _default = None
