"""The seed system's ``AsyncMetricsCollector``, running on the durable pipeline.

For code written against the seed (``recursive_training.metrics.async_metrics_collector``): only
the import path changes.

    >>> from otel_recursive_metrics.async_metrics_collector import get_async_metrics_collector
    >>> collector = get_async_metrics_collector({"metrics_batch_size": 100, "metrics_flush_interval_sec": 10.0})
    >>> metric_id = collector.submit_metric({"metric_name": "training_accuracy", "value": 0.95, "epoch": 5, "step": 500})
    >>> collector.register_error_callback(lambda exc: print("metric error:", exc))
    >>> collector.get_stats()["metrics_processed"]
    >>> collector.stop(wait_for_completion=True, timeout=30.0)

What changed under the same names:

- ``submit_metric`` validates the record **at the call** (see
  :func:`~otel_recursive_metrics.metrics_store.prepare_record`): a record without a string
  ``metric_name`` (or the seed's ``metric_type``), without a ``value`` or with a non-numeric one
  raises :class:`~otel_recursive_metrics.errors.MetricValueError` naming the field and value,
  instead of failing later in the worker. It still adds ``timestamp`` and ``id`` to your dict
  when missing and returns the id. The record is copied, then appended to the pipeline's memory
  buffer; the call never waits on disk or network.
- Records go through the same worker as the OpenTelemetry exporter: on disk within
  ``metrics_flush_interval_sec``, retried with backoff (``metrics_retry_delay_sec`` first
  delay), dead-lettered with the reason when they can never be stored, and kept in the store
  with their ``step``, ``epoch`` and every other field (in the point's ``extra``).
- Each collector owns one :class:`~otel_recursive_metrics.pipeline.worker.Pipeline` built by
  ``load_config(config)``: the seed's four keys plus any setting of
  :mod:`otel_recursive_metrics.config` (``dir``, ``sinks``, ...); the environment fills the rest.
  An invalid config raises one ``ConfigError`` listing every problem.
- Error callbacks are called after ``metrics_max_retries`` failed retries of a batch, on a dead
  letter and on a drop. A callback taking one argument gets the exception, as in the seed; one
  taking two also gets a context dict (``sink``, ``points``, ``reason``, ``outcome``).
- ``stop(wait_for_completion=True, timeout=10.0)`` returns within ``timeout``, True when every
  record was delivered; with ``wait_for_completion=False`` it stops at once and whatever was not
  yet delivered stays in the durable queue, sent by the next process that uses the same data
  folder. Submitting after ``stop()`` starts a fresh pipeline rather than losing the record.
  At interpreter exit, collectors still running are stopped with a 5-second budget.

In asyncio code, ``await collector.aflush(timeout=...)`` and
``await collector.astop(wait_for_completion=True, timeout=...)`` answer as ``flush`` and ``stop``
do, without blocking the event loop (the wait runs on a thread of its own; cancelling the
awaiting task leaves it to finish, see :mod:`otel_recursive_metrics.training.aio`)::

    >>> async def main() -> None:
    ...     collector = get_async_metrics_collector()
    ...     collector.submit_metric({"metric_name": "reward", "value": 1.0, "step": 1})
    ...     delivered = await collector.aflush(timeout=10.0)
    ...     await collector.astop(wait_for_completion=True, timeout=30.0)

Tests get a clean singleton with :func:`reset_async_metrics_collector` (or, as in the seed,
``AsyncMetricsCollector._instance = None``).

Thread safety: ``submit_metric`` may be called from any thread.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .config import load_config
from .pipeline.buffer import RecordItem
from .pipeline.worker import ErrorCallback, Pipeline
from .system import start_when_configured
from .training.aio import run_off_loop
from .training.records import prepare_record

__all__ = ["AsyncMetricsCollector", "get_async_metrics_collector", "reset_async_metrics_collector"]

_log = logging.getLogger(__name__)

_running: weakref.WeakSet[AsyncMetricsCollector] = weakref.WeakSet()


class AsyncMetricsCollector:
    """Non-blocking metric submission with the seed's API (and ``aflush``/``astop`` for asyncio); see the module docstring."""

    _instance: ClassVar[AsyncMetricsCollector | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def get_instance(cls, config: Mapping[str, Any] | None = None) -> AsyncMetricsCollector:
        """The process-wide collector, created with ``config`` on first use."""
        with cls._instance_lock:
            instance = cls._instance
            if instance is None:
                instance = cls._instance = cls(config)
            elif config is not None and dict(config) != instance.config:
                _log.warning(
                    "otel-recursive-metrics: get_async_metrics_collector(config) ignored: the collector already exists with %r",
                    instance.config,
                )
            return instance

    def __init__(self, config: Mapping[str, Any] | None = None, *, pipeline: Pipeline | None = None) -> None:
        self.config = dict(config or {})
        self.settings = pipeline.config if pipeline is not None else load_config(self.config)
        # The seed's attribute names, for code that read them.
        self.batch_size = self.settings.batch_size
        self.flush_interval = self.settings.flush_interval_s
        self.max_retries = self.settings.max_retries
        self.retry_delay = self.settings.retry_delay_s
        self.error_callbacks: list[Callable[..., Any]] = []
        self._wrapped_callbacks: list[ErrorCallback] = []
        self._given_pipeline = pipeline
        self._pipeline: Pipeline | None = None
        self._start_lock = threading.Lock()
        self._submitted = 0
        self._refused = 0
        self._last_flush_time = time.time()
        self.running = False
        self.start()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the collector ready (it is after construction); after :meth:`stop`, a fresh pipeline."""
        with self._start_lock:
            if self.running:
                return
            given = self._given_pipeline
            pipeline = given if given is not None and not given.closed else Pipeline(self.settings)
            start_when_configured(pipeline)
            for callback in self._wrapped_callbacks:
                pipeline.register_error_callback(callback)
            self._pipeline = pipeline
            self.running = True
            _running.add(self)

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self.start()
        assert self._pipeline is not None
        return self._pipeline

    def stop(self, wait_for_completion: bool = True, timeout: float = 10.0) -> bool:
        """Stop within ``timeout`` seconds; True if every submitted record was delivered.

        With ``wait_for_completion=False`` it returns at once; records not yet delivered stay in
        the durable queue for the next process using the same data folder.
        """
        with self._start_lock:
            if not self.running or self._pipeline is None:
                return True
            self.running = False
            _running.discard(self)
            pipeline = self._pipeline
        return pipeline.shutdown(max(0.0, float(timeout)) if wait_for_completion else 0.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """True once every record submitted before the call is delivered to every sink."""
        self._last_flush_time = time.time()
        return self.pipeline.flush(timeout)

    async def aflush(self, timeout: float = 10.0) -> bool:
        """:meth:`flush` without blocking the event loop; the same answer within ``timeout``."""
        return await run_off_loop(
            lambda: self.flush(timeout), name="otel-recursive-metrics-collector-aflush", timeout_s=timeout, field="timeout"
        )

    async def astop(self, wait_for_completion: bool = True, timeout: float = 10.0) -> bool:
        """:meth:`stop` without blocking the event loop; the same answer within ``timeout``."""
        return await run_off_loop(
            lambda: self.stop(wait_for_completion, timeout),
            name="otel-recursive-metrics-collector-astop",
            timeout_s=timeout if wait_for_completion else 0.0,
            field="timeout",
        )

    # -- the caller's side ----------------------------------------------------------------------

    def submit_metric(self, metric_data: dict[str, Any]) -> str:
        """Validate and queue one record; returns its id. Never waits on disk or network.

        Raises MetricValueError naming the field when ``metric_name``/``value`` are missing or
        the value is not a number. Adds ``timestamp`` and ``id`` to ``metric_data`` if missing.
        """
        record, metric_id = prepare_record(metric_data)
        if not self.running:
            self.start()
        pipeline = self._pipeline
        assert pipeline is not None
        self._submitted += 1
        if not pipeline.offer(RecordItem(time.monotonic_ns(), record)):
            # Counted by the pipeline as dropped (buffer_full by the overflow policy, or shutdown).
            self._refused += 1
        return metric_id

    def register_error_callback(self, callback: Callable[..., Any]) -> None:
        """Call ``callback(exception)`` (or ``callback(exception, context)``) on delivery failures."""
        self.error_callbacks.append(callback)
        wrapped = _adapt_callback(callback)
        self._wrapped_callbacks.append(wrapped)
        if self._pipeline is not None:
            self._pipeline.register_error_callback(wrapped)

    # -- introspection ---------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """The pipeline's counters plus the seed's keys.

        Seed keys: ``metrics_submitted``, ``metrics_processed`` (delivered to every sink),
        ``metrics_failed`` (dead-lettered or dropped), ``batches_processed``,
        ``processing_time`` (seconds in successful sends), ``avg_batch_time``, ``success_rate``
        (percent), ``last_flush_time``, ``queue_size`` (in memory plus on disk, not yet final).
        """
        stats = self.pipeline.get_stats()
        sinks = stats.get("sinks") or list(self.settings.sinks)
        batches = min((stats["sent_batches"].get(s, 0) for s in sinks), default=0)
        processing = float(sum(stats["send_seconds_total"].values()))
        failed = sum(stats["dead_lettered_points"].values()) + sum(stats["dropped_points"].values())
        processed = stats["metrics_processed"]
        stats.update(
            metrics_submitted=self._submitted,
            metrics_failed=failed,
            metrics_refused=self._refused,
            batches_processed=batches,
            processing_time=processing,
            avg_batch_time=processing / batches if batches else 0.0,
            success_rate=100.0 * processed / self._submitted if self._submitted else 100.0,
            last_flush_time=self._last_flush_time,
            running=self.running,
        )
        return stats


def _adapt_callback(callback: Callable[..., Any]) -> ErrorCallback:
    """The pipeline calls ``(error, context)``; the seed's callbacks take ``(error)`` only."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        takes_context = False
    else:
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        takes_context = any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 2
    if takes_context:
        return callback

    def one_argument(error: BaseException, context: dict[str, Any]) -> None:
        callback(error)

    return one_argument


def get_async_metrics_collector(config: Mapping[str, Any] | None = None) -> AsyncMetricsCollector:
    """The process-wide :class:`AsyncMetricsCollector`, created with ``config`` on first use.

    A later ``config`` is ignored (with a warning), as in the seed. A stopped singleton is
    restarted on its next ``submit_metric``.
    """
    return AsyncMetricsCollector.get_instance(config)


def reset_async_metrics_collector(timeout: float = 5.0) -> None:
    """Stop the process-wide collector (within ``timeout``) and forget it, for tests."""
    with AsyncMetricsCollector._instance_lock:
        instance, AsyncMetricsCollector._instance = AsyncMetricsCollector._instance, None
    if instance is not None:
        instance.stop(wait_for_completion=True, timeout=timeout)


@atexit.register
def _stop_at_exit() -> None:
    # Records still in memory would otherwise be lost at exit; bounded, whatever the sinks do.
    deadline = time.monotonic() + 5.0
    for collector in list(_running):
        try:
            collector.stop(wait_for_completion=True, timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - never fail the interpreter's exit
            _log.exception("otel-recursive-metrics: stopping a collector at exit failed")
