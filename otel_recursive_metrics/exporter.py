"""``RecursiveMetricExporter``: the OpenTelemetry SDK's door into the pipeline.

The SDK's ``PeriodicExportingMetricReader`` calls :meth:`~RecursiveMetricExporter.export` with
a ``MetricsData`` snapshot; the exporter appends a reference to it to the worker's memory buffer
and returns. Conversion, disk and network all happen on the worker's threads, so ``export()``
costs microseconds whatever the sinks are doing, and never raises.

Constructed with no arguments it reads ``OTEL_RECURSIVE_METRICS_*`` (and, for the OTLP sink,
``OTEL_EXPORTER_OTLP_*``), which is how the SDK builds it from ``OTEL_METRICS_EXPORTER=recursive``.
With ``opentelemetry-instrument python train.py`` that variable is the only one needed (our distro,
:mod:`otel_recursive_metrics.distro`, turns the trace and log exporters off); the SDK collects every
``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds (60000 by default: set ``1000`` for a point a second).
Like the stock OTLP exporter it honours ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` and
``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`` (:mod:`~otel_recursive_metrics.sdk_preferences`).

An SDK export whose resource has no ``training.run.id`` gets the process's training attributes
(:func:`~otel_recursive_metrics.model.resource.training_attributes`: ``OTEL_RECURSIVE_METRICS_RUN_ID``
or the launcher's run id, the rank, ...), the ones ``configure()`` and ``TrainingMetrics`` give
their points, so the run is named in the store and in OTLP whichever way the provider was built.
Every setting is also a keyword argument, which is how the declarative configuration file
(``OTEL_CONFIG_FILE``) passes its YAML mapping::

    meter_provider:
      readers:
        - periodic:
            exporter:
              recursive: {sinks: "store", dir: "./otel-metrics", batch_size: 100}
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
)
from opentelemetry.sdk.resources import Resource

from .config import Config, load_config
from .model.resource import RUN_ID_KEY, training_attributes
from .pipeline import default as default_pipeline
from .pipeline import preemption
from .pipeline.buffer import ExportItem
from .pipeline.worker import ErrorCallback, Pipeline
from .sdk_preferences import aggregation_from_env, temporality_from_env
from .system import start_when_configured

__all__ = ["RecursiveMetricExporter"]

_log = logging.getLogger(__name__)


class RecursiveMetricExporter(MetricExporter):
    """A MetricExporter that never blocks the SDK and never loses a point.

    ``RecursiveMetricExporter(config=None, **options)``: options are the settings of
    :mod:`otel_recursive_metrics.config` (``sinks``, ``dir``, ``batch_size``, ...); ``config``
    is a mapping that may use the seed system's keys. Temporality is cumulative and histograms
    have explicit buckets by default, like the SDK's OTLP exporter, whose two variables are read
    the same way; ``preferred_temporality`` replaces the first's table, ``preferred_aggregation``
    is laid over the second's.
    """

    def __init__(
        self,
        config: Config | dict[str, Any] | None = None,
        *,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Any] | None = None,
        pipeline: Pipeline | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            preferred_temporality=preferred_temporality or temporality_from_env(),
            preferred_aggregation={**aggregation_from_env(), **(preferred_aggregation or {})} or None,
        )
        self._failed_logged = False
        # Read once, here: the same run id (named, or generated for the process) as log() points.
        self._training_attributes = training_attributes()
        self._named_resource: tuple[Resource, Resource] | None = None  # (the SDK's, with the run)
        if pipeline is not None:
            # Someone else's pipeline (the system-metrics sampler's, say): not made the default.
            self._pipeline = pipeline
        else:
            resolved = config if isinstance(config, Config) else load_config(config, **options)
            self._pipeline = Pipeline(resolved)
            default_pipeline.set_default_pipeline(self._pipeline)
            start_when_configured(self._pipeline)
            # Here, on the thread that builds us (the main one, for configure() and for the SDK's
            # auto-configuration): the SDK's first export() runs on its reader thread, too late.
            self._pipeline.install_sigterm_handler()

    @property
    def config(self) -> Config:
        return self._pipeline.config

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Queue ``metrics_data`` for the worker and return at once; never raises."""
        try:
            pipeline = self._pipeline
            if pipeline.in_forked_child and not pipeline.config.export_in_forked_child:
                # The SDK restarted its reader in this child with the parent's values: do not
                # report them twice.
                pipeline.stats.ignored_forked_export()
                return MetricExportResult.SUCCESS
            if pipeline.offer(ExportItem(time.monotonic_ns(), self._with_run(metrics_data))):
                return MetricExportResult.SUCCESS
            return MetricExportResult.FAILURE
        except Exception:  # noqa: BLE001 - the SDK's reader must never see us raise
            if not self._failed_logged:
                self._failed_logged = True
                _log.exception("otel-recursive-metrics: export failed")
            return MetricExportResult.FAILURE

    def _with_run(self, data: MetricsData) -> MetricsData:
        """``data`` with the training attributes added to each resource that names no run."""
        if all(RUN_ID_KEY in rm.resource.attributes for rm in data.resource_metrics):
            return data
        return MetricsData(
            resource_metrics=[
                rm
                if RUN_ID_KEY in rm.resource.attributes
                else ResourceMetrics(resource=self._named(rm.resource), scope_metrics=rm.scope_metrics, schema_url=rm.schema_url)
                for rm in data.resource_metrics
            ]
        )

    def _named(self, resource: Resource) -> Resource:
        # A provider exports the same Resource object every time: build its named copy once.
        cached = self._named_resource
        if cached is not None and cached[0] is resource:
            return cached[1]
        named = Resource({**self._training_attributes, **resource.attributes}, resource.schema_url)
        self._named_resource = (resource, named)
        return named

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """True when everything exported before this call is delivered to every sink."""
        if preemption.collecting():
            return False  # the SDK's collect for SIGTERM: the handler persists right after, within its budget
        try:
            return self._pipeline.flush(timeout_millis / 1000.0)
        except Exception:  # noqa: BLE001
            _log.exception("otel-recursive-metrics: force_flush failed")
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Flush and stop within the deadline; idempotent.

        The SDK's ``PeriodicExportingMetricReader`` passes the time it has left as
        ``timeout=`` (milliseconds) rather than ``timeout_millis``; both are honoured, the
        smaller wins. Other keywords are accepted and ignored.
        """
        try:
            if "timeout" in kwargs and kwargs["timeout"] is not None:
                timeout_millis = min(timeout_millis, float(kwargs["timeout"]))
            self._pipeline.shutdown(max(0.0, timeout_millis) / 1000.0)
        except Exception:  # noqa: BLE001
            _log.exception("otel-recursive-metrics: shutdown failed")

    def register_error_callback(self, callback: ErrorCallback) -> None:
        """Call ``callback(error, context)`` on every dead letter, drop and failing sink."""
        self._pipeline.register_error_callback(callback)

    def get_stats(self) -> dict[str, Any]:
        return self._pipeline.get_stats()
