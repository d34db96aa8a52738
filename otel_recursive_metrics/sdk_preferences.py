"""What the SDK's standard variables ask of a metric exporter, read the way the stock OTLP exporter reads them.

``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``: ``cumulative`` (the default), ``delta``
(counters, histograms and observable counters report deltas) or ``lowmemory`` (synchronous
counters and histograms only). Our exporter and the system-metrics sampler's both honour it.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import _Gauge as SyncGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality

__all__ = ["temporality_from_env"]


def _cumulative() -> dict[type, AggregationTemporality]:
    kinds: list[type] = [Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge, SyncGauge]
    return {k: AggregationTemporality.CUMULATIVE for k in kinds}


def temporality_from_env() -> dict[type, AggregationTemporality] | None:
    """The temporality table the variable asks for, or None for the SDK's default (cumulative)."""
    preference = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
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
    return None
