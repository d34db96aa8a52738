"""What the SDK's standard variables ask of a metric exporter, read the way the stock OTLP exporter reads them.

- ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``: ``cumulative`` (the default), ``delta``
  (counters, histograms and observable counters report deltas) or ``lowmemory`` (synchronous
  counters and histograms only).
- ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``: ``explicit_bucket_histogram``
  (the default) or ``base2_exponential_bucket_histogram`` (histograms whose buckets follow the
  values' scale, with no boundaries to choose).

Our exporter honours both (the system-metrics sampler's, which records no histogram, the first).
Any other value is logged as a warning naming the variable and the value, and the default is used,
as the SDK's exporter does.
"""

from __future__ import annotations

import logging
import os

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)

# The synchronous Gauge (SDK >= 1.23, the pin is 1.27) is exported only under a private name.
from opentelemetry.sdk.metrics import _Gauge as SyncGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import Aggregation, ExponentialBucketHistogramAggregation

__all__ = ["HISTOGRAM_AGGREGATION_VARIABLE", "TEMPORALITY_VARIABLE", "aggregation_from_env", "temporality_from_env"]

_log = logging.getLogger(__name__)

TEMPORALITY_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
HISTOGRAM_AGGREGATION_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"


def _cumulative() -> dict[type, AggregationTemporality]:
    kinds: list[type] = [Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge, SyncGauge]
    return {k: AggregationTemporality.CUMULATIVE for k in kinds}


def temporality_from_env() -> dict[type, AggregationTemporality] | None:
    """The temporality table the variable asks for, or None for the SDK's default (cumulative)."""
    preference = os.environ.get(TEMPORALITY_VARIABLE, "cumulative").strip().lower()
    if preference == "delta":
        table = _cumulative()
        for kind in (Counter, Histogram, ObservableCounter):
            table[kind] = AggregationTemporality.DELTA
        return table
    if preference == "lowmemory":
        table = _cumulative()
        for kind in (Counter, Histogram):
            table[kind] = AggregationTemporality.DELTA
        return table
    if preference != "cumulative":
        _log.warning("%s=%r is not cumulative, delta or lowmemory: using cumulative", TEMPORALITY_VARIABLE, preference)
    return None


def aggregation_from_env() -> dict[type, Aggregation]:
    """The histogram aggregation the variable asks for; empty for the SDK's default (explicit buckets)."""
    value = os.environ.get(HISTOGRAM_AGGREGATION_VARIABLE, "explicit_bucket_histogram").strip().lower()
    if value == "base2_exponential_bucket_histogram":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    if value != "explicit_bucket_histogram":
        _log.warning(
            "%s=%r is not explicit_bucket_histogram or base2_exponential_bucket_histogram: using explicit_bucket_histogram",
            HISTOGRAM_AGGREGATION_VARIABLE,
            value,
        )
    return {}
