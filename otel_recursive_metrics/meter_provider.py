"""``configure()``: one call that installs a MeterProvider exporting through our exporter."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from .exporter import RecursiveMetricExporter
from .model.resource import training_attributes
from .pipeline import preemption
from .system import start_configured_now

__all__ = ["configure"]


def configure(
    *,
    export_interval_s: float | None = None,
    resource_attributes: dict[str, Any] | None = None,
    set_global: bool = True,
    **options: Any,
) -> MeterProvider:
    """Build a MeterProvider around a :class:`RecursiveMetricExporter` and install it.

    ``options`` are the exporter's settings (``sinks``, ``dir``, ...). The reader collects every
    ``export_interval_s`` (default: ``OTEL_METRIC_EXPORT_INTERVAL`` or 60 s, as in the SDK; the
    exporter's own batching is separate). The resource carries the training run and rank
    (see :mod:`otel_recursive_metrics.model.resource`). Call ``provider.shutdown()`` at the end, or
    rely on the SDK's exit handler.

        >>> provider = configure(sinks="store", dir="./otel-metrics", export_interval_s=5)
    """
    exporter = RecursiveMetricExporter(**options)
    attrs = training_attributes()
    attrs.update(resource_attributes or {})
    resource = Resource.create(attrs)
    exporter.pipeline.resource_attributes = dict(resource.attributes)
    if exporter.config.system_metrics:
        start_configured_now(exporter.pipeline)  # now, with the provider's resource; not at the first point
    interval_ms = None if export_interval_s is None else export_interval_s * 1000.0
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    if set_global:
        metrics.set_meter_provider(provider)
    # On SIGTERM, what the SDK aggregated since its last export is collected before persisting.
    preemption.register_meter_provider(provider)
    return provider
