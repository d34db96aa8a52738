"""Self-telemetry: what the pipeline did with every point, as a dict and as OTel metrics.

Counters are named after the Collector's ``otelcol_exporter_*`` family. Every point handed to
the pipeline ends in exactly one of, per sink: ``sent``, ``dead_lettered``, or ``dropped`` with a
:class:`DropReason`, so that, once the queue is empty::

    accepted points = sent + dead-lettered + dropped        (for each sink)

:func:`pipeline_stats` adds what the stages hold now (memory, disk, the store's file) to the
counters: that is ``get_stats()``. The figures are exported as OTel instruments only through a meter *you* pass to
:func:`register_instruments`, typically a second ``MeterProvider`` with another exporter: they
are never fed back into the exporter they describe, so exporting them cannot create more of
them in a loop.

Thread safety: every mutation takes one lock; :meth:`Stats.snapshot` copies under it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..sinks.store import StoreSink, store_file_stats

if TYPE_CHECKING:
    from .worker import Pipeline

__all__ = ["METRIC_PREFIX", "DropReason", "Stats", "pipeline_stats", "register_instruments"]

METRIC_PREFIX = "otel_recursive_metrics.exporter."


class DropReason(str, enum.Enum):
    """Why points were dropped; the value is the key in ``get_stats()["dropped_points"]``."""

    #: The memory buffer was full (``max_buffer_items``, or what the worker can write within the
    #: flush interval) and the overflow policy refused or evicted the item.
    BUFFER_FULL = "buffer_full"
    #: The item waited in memory longer than ``flush_interval_s`` allows: the worker is behind.
    OVERLOAD = "overload"
    #: The durable queue reached ``max_queue_bytes`` and the overflow policy refused or evicted
    #: (an evicted record counts only for the sinks that had not finished it).
    QUEUE_FULL = "queue_full"
    #: The disk is full: the durable queue could not take the points in time.
    DISK_FULL = "disk_full"
    #: The durable queue could not be opened or written (a folder gone read-only, say).
    QUEUE_UNAVAILABLE = "queue_unavailable"
    #: The dead-letter folder reached ``dead_letter_max_bytes``.
    DEAD_LETTER_FULL = "dead_letter_full"
    #: Writing a dead letter failed (a full disk, an unwritable folder).
    DEAD_LETTER_FAILED = "dead_letter_failed"
    #: Offered after shutdown, or still in memory when shutdown (or SIGTERM) ran out of time.
    SHUTDOWN = "shutdown"
    #: Could not be converted into points.
    INVALID = "invalid"
    #: An unreadable record or slot of the durable queue.
    CORRUPT = "corrupt"


class Stats:
    """Counters of the pipeline, per sink where it matters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero everything and recreate the lock (a forked child starts with its own)."""
        self._lock = threading.Lock()
        self.accepted_items = 0
        self.received_points = 0
        self.sent_points: defaultdict[str, int] = defaultdict(int)
        self.sent_batches: defaultdict[str, int] = defaultdict(int)
        self.dead_lettered_points: defaultdict[str, int] = defaultdict(int)
        self.dropped_points: defaultdict[str, int] = defaultdict(int)
        # The part of dropped_points lost for one sink only (a dead letter that could not be
        # written, a record a sink could not read, a queue record evicted that another sink had
        # already finished), per sink; the rest was lost for every sink.
        self.sink_dropped_points: defaultdict[str, int] = defaultdict(int)
        self.retries: defaultdict[str, int] = defaultdict(int)
        self.send_seconds_total: defaultdict[str, float] = defaultdict(float)
        self.last_error: dict[str, str] = {}
        self.failing: dict[str, bool] = {}
        self.ignored_forked_exports = 0
        # OTLP partial_success: points a receiver accepted the request for but rejected (a
        # subset of sent_points, never retried), per sink.
        self.rejected_points: defaultdict[str, int] = defaultdict(int)
        # Attribute keys or values cut by the attribute limits.
        self.attributes_cut = 0
        # Integer values past 64 bits (a cumulative counter past 2**63) kept as floats.
        self.values_as_float = 0

    def accepted(self, items: int) -> None:
        with self._lock:
            self.accepted_items += items

    def received(self, points: int) -> None:
        with self._lock:
            self.received_points += points

    def drop(self, points: int, reason: DropReason, sink: str | None = None) -> None:
        """Count ``points`` dropped for ``reason``: for ``sink`` alone, or (``None``) for every sink."""
        with self._lock:
            self.dropped_points[reason.value] += points
            if sink is not None:
                self.sink_dropped_points[sink] += points

    def drop_for_sinks(self, lost: dict[str, int], reason: DropReason, sinks: Iterable[str]) -> None:
        """Count ``lost`` (points per sink): what each of ``sinks`` lost, as for every sink; the
        rest for the sink that lost it alone."""
        common = min((lost.get(sink, 0) for sink in sinks), default=0)
        if common:
            self.drop(common, reason)
        for sink, points in lost.items():
            if points > common:
                self.drop(points - common, reason, sink=sink)

    def dead_lettered(self, sink: str, points: int, reason: str) -> None:
        with self._lock:
            self.dead_lettered_points[sink] += points
            self.last_error[sink] = reason

    def retry(self, sink: str, error: str) -> None:
        with self._lock:
            self.retries[sink] += 1
            self.last_error[sink] = error

    def reject(self, sink: str, points: int) -> None:
        with self._lock:
            self.rejected_points[sink] += points

    def ignored_forked_export(self) -> None:
        with self._lock:
            self.ignored_forked_exports += 1

    def cut_attributes(self, n: int) -> None:
        with self._lock:
            self.attributes_cut += n

    def stored_as_float(self, n: int) -> None:
        with self._lock:
            self.values_as_float += n

    def set_last_error(self, key: str, text: str) -> None:
        """The latest problem of a sink (by name) or of the ``queue``."""
        with self._lock:
            self.last_error[key] = text

    def clear_last_error(self, key: str) -> None:
        with self._lock:
            self.last_error.pop(key, None)

    def set_failing(self, sink: str) -> None:
        with self._lock:
            self.failing[sink] = True

    def sent(self, sink: str, points: int, seconds: float) -> None:
        with self._lock:
            self.sent_points[sink] += points
            self.sent_batches[sink] += 1
            self.send_seconds_total[sink] += seconds
            self.failing[sink] = False

    def losses(self) -> int:
        """Points dead-lettered or dropped so far (all sinks, all reasons)."""
        with self._lock:
            return sum(self.dead_lettered_points.values()) + sum(self.dropped_points.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted_items": self.accepted_items,
                "received_points": self.received_points,
                "sent_points": dict(self.sent_points),
                "sent_batches": dict(self.sent_batches),
                "dead_lettered_points": dict(self.dead_lettered_points),
                "dropped_points": dict(self.dropped_points),
                "sink_dropped_points": dict(self.sink_dropped_points),
                "retries": dict(self.retries),
                "send_seconds_total": dict(self.send_seconds_total),
                "last_error": dict(self.last_error),
                "failing": dict(self.failing),
                "ignored_forked_exports": self.ignored_forked_exports,
                "rejected_points": dict(self.rejected_points),
                "attributes_cut": self.attributes_cut,
                "values_as_float": self.values_as_float,
            }


def pipeline_stats(pipeline: Pipeline) -> dict[str, Any]:
    """``get_stats()``: the counters, plus what the buffer, the ingest stage, the queue and the store hold now."""
    snap = pipeline.stats.snapshot()
    deliveries = pipeline.deliveries
    sinks = [] if deliveries is None else deliveries.sinks
    on_disk = 0 if deliveries is None else deliveries.points_on_disk()  # before memory: a batch written meanwhile counts once
    backlog = pipeline.backlog()
    sent = snap["sent_points"]
    snap["metrics_processed"] = min((sent.get(s, 0) for s in pipeline.delivering_sinks), default=0)
    snap["buffer_items"] = backlog.items
    snap["buffer_capacity_items"] = pipeline.buffer.capacity
    snap["queue_points"] = on_disk + backlog.points
    snap["queue_size"] = snap["buffer_items"] + snap["queue_points"]
    snap["queue_bytes"] = 0 if deliveries is None else deliveries.queue.bytes
    snap["queue_capacity_bytes"] = pipeline.config.max_queue_bytes
    oldest = backlog.oldest_offered_ns
    snap["durability_lag_s"] = 0.0 if oldest is None else max(0.0, (time.monotonic_ns() - oldest) / 1e9)
    failing = pipeline.failing
    snap["queue_failing"] = None if failing is None else failing.value
    # Converted at ingest, plus what the store converted in batches queued by an earlier version.
    snap["values_as_float"] += sum(s.values_as_float for s in sinks if isinstance(s, StoreSink))
    snap["sinks"] = list(pipeline.config.sinks)
    snap["offline_sinks"] = list(pipeline.offline_sinks)
    snap.update(store_file_stats(sinks))  # a store file removed or truncated under us (sinks/store.py)
    return snap


def register_instruments(meter: Meter, stats_source: Callable[[], dict[str, Any]]) -> None:
    """Create observable instruments on ``meter`` that read ``stats_source()`` when collected."""

    def per_sink(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {"sink": s}) for s, v in stats_source().get(key, {}).items()]

        return callback

    def dropped(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"reason": r}) for r, v in stats_source().get("dropped_points", {}).items()]

    def scalar(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(stats_source().get(key, 0))]

        return callback

    p = METRIC_PREFIX
    meter.create_observable_counter(
        p + "sent_metric_points", [per_sink("sent_points")], unit="{datapoint}", description="Points delivered, per sink."
    )
    meter.create_observable_counter(
        p + "send_failed_metric_points",
        [per_sink("dead_lettered_points")],
        unit="{datapoint}",
        description="Points a sink failed to deliver (dead-lettered).",
    )
    meter.create_observable_counter(p + "dropped_metric_points", [dropped], unit="{datapoint}", description="Points dropped, by reason.")
    meter.create_observable_counter(
        p + "rejected_metric_points",
        [per_sink("rejected_points")],
        unit="{datapoint}",
        description="Points a receiver rejected in an OTLP partial success.",
    )
    meter.create_observable_counter(p + "retries", [per_sink("retries")], unit="{retry}", description="Delivery retries, per sink.")
    meter.create_observable_counter(
        p + "send_duration", [per_sink("send_seconds_total")], unit="s", description="Time spent in successful sends."
    )
    meter.create_observable_gauge(
        p + "queue_size", [scalar("queue_size")], unit="{datapoint}", description="Items in memory plus points on disk not yet final."
    )
    meter.create_observable_gauge(p + "queue_bytes", [scalar("queue_bytes")], unit="By", description="Bytes in the durable queue.")
    meter.create_observable_gauge(
        p + "queue_capacity", [scalar("queue_capacity_bytes")], unit="By", description="Byte cap of the durable queue."
    )
    meter.create_observable_gauge(
        p + "durability_lag",
        [scalar("durability_lag_s")],
        unit="s",
        description="Age of the oldest accepted point not yet on disk (0 when everything is).",
    )
