"""Training metrics through the OpenTelemetry meter API, durable and never in the loop's way.

    >>> import otel_recursive_metrics as orm
    >>> provider = orm.configure(sinks="store", dir="./otel-metrics")
    >>> loss = provider.get_meter("train").create_gauge("train.loss")

or, with no code change, ``OTEL_METRICS_EXPORTER=recursive``. See the README for the settings,
the data flow and the delivery guarantees.
"""

from __future__ import annotations

from ._version import __version__
from .config import Config, load_config
from .errors import ConfigError, MetricValueError, PermanentError, RetryableError
from .exporter import RecursiveMetricExporter
from .meter_provider import configure
from .store import PointStore, StoredPoint
from .training import TrainingMetrics

__all__ = [
    "Config",
    "ConfigError",
    "MetricValueError",
    "PermanentError",
    "PointStore",
    "RecursiveMetricExporter",
    "RetryableError",
    "StoredPoint",
    "TrainingMetrics",
    "__version__",
    "configure",
    "load_config",
]
