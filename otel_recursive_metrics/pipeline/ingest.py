"""The ingest stage: accepted items from memory, as point batches, into the durable queue.

This is the batcher of the data flow. The worker's ingest thread calls :meth:`Ingest.run_once`
every ``flush_interval_s``, or sooner once ``batch_size`` items wait or a flush is asked for.
One run drains the memory buffer, converts the items (SDK exports, ``log`` calls, submitted
records) into point batches of at most ``max_batch_points``, and appends each batch to the
durable queue as soon as it is full, so the sinks start on it while the rest of a large drain is
still being converted.

When the queue is at its byte cap, the overflow policy decides: ``drop_oldest`` makes room (the
queue reports what it evicted), ``drop_newest`` drops the new batches, ``block`` holds them here
and tries again at the next run (meanwhile the memory buffer fills and producers wait). Every
drop is counted and reported.

Thread safety: one ingest thread calls ``run_once``; ``pending_points`` and
:class:`RecentBatches` may be read from any thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData

from ..config import Config
from .batch import BatchBuilder, PointBatch
from .buffer import MemoryBuffer
from .convert import add_log_item, add_metrics_data, add_record
from .queue import DurableQueue, QueueFull
from .telemetry import Stats

__all__ = ["Ingest", "RecentBatches", "item_points"]

_log = logging.getLogger(__name__)

#: ``report(error, **context)``: forwards to the user's error callbacks.
Report = Callable[..., None]

_YIELD_EVERY_POINTS = 1024

# Scope of the points of submitted records (the seed API).
_RECORD_SCOPE = ("otel_recursive_metrics", "")

#: An encoded chunk waiting for the queue: (created_unix_nano, points, payload, batch).
Held = tuple[int, int, bytes, PointBatch]


def item_points(item: Any) -> int:
    """How many points an accepted item holds."""
    if isinstance(item, MetricsData):
        return sum(len(m.data.data_points) for rm in item.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    if isinstance(item, tuple):
        return len(item[4])
    return 1


class RecentBatches:
    """Batches just queued, by record id, so a sink need not decode what ingest just encoded."""

    def __init__(self, max_records: int = 64) -> None:
        self.max_records = max_records
        self._lock = threading.Lock()
        self._batches: collections.OrderedDict[int, PointBatch] = collections.OrderedDict()

    def add(self, first_id: int, batches: list[PointBatch]) -> None:
        with self._lock:
            for offset, batch in enumerate(batches):
                self._batches[first_id + offset] = batch
            while len(self._batches) > self.max_records:
                self._batches.popitem(last=False)

    def get(self, record_id: int) -> PointBatch | None:
        with self._lock:
            return self._batches.get(record_id)

    def forget_through(self, record_id: int) -> None:
        """Drop every batch up to ``record_id`` (every sink is done with them)."""
        with self._lock:
            while self._batches and next(iter(self._batches)) <= record_id:
                self._batches.popitem(last=False)


class Ingest:
    """Drains the memory buffer into the durable queue; see the module docstring."""

    def __init__(
        self,
        config: Config,
        buffer: MemoryBuffer,
        stats: Stats,
        *,
        report: Report,
        resource_attributes: Callable[[], dict[str, Any]],
        recent: RecentBatches,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self._report = report
        self._resource_attributes = resource_attributes
        self.recent = recent
        self.held: list[Held] = []
        self.last_written_id = 0
        self.in_flight_items = 0

    def pending_points(self) -> int:
        """Points converted but not yet in the durable queue."""
        return sum(h[1] for h in list(self.held))

    def run_once(self, queue: DurableQueue, *, stopping: bool, on_written: Callable[[], None]) -> None:
        """Drain, convert and append; ``on_written`` is called after each successful append."""
        items = self.buffer.drain()
        if items:
            self.in_flight_items = len(items)  # taken from memory, not yet on disk: still queued
            self.stats.add("accepted_items", len(items))
            kept = 0  # items whose points are held or written
            try:
                for done, chunks in self._encode(items):
                    self.held.extend(chunks)
                    kept = done
                    self._write_held(queue, stopping=stopping, on_written=on_written)
                    self.in_flight_items = len(items) - done
            except BaseException:
                # Put back what was not converted yet, in order, for the next run.
                self.stats.add("accepted_items", -(len(items) - kept))
                self.buffer.items.extendleft(reversed(items[kept:]))
                raise
            finally:
                self.in_flight_items = 0
        self._write_held(queue, stopping=stopping, on_written=on_written)

    def _write_held(self, queue: DurableQueue, *, stopping: bool, on_written: Callable[[], None]) -> None:
        if not self.held:
            return
        policy = self.config.overflow
        try:
            last_id, dropped = queue.append([h[:3] for h in self.held], drop_oldest=policy == "drop_oldest")
        except QueueFull as exc:
            if policy == "drop_newest" or stopping:
                lost = sum(h[1] for h in self.held)
                self.stats.add("dropped_points", lost, "queue_full")
                self._report(exc, sink="*", points=lost, reason="queue_full", outcome="dropped")
                self.held = []
            return  # overflow=block: keep holding; the memory buffer fills and producers wait
        # One writer, one transaction: the records got consecutive ids ending at last_id.
        self.recent.add(last_id - len(self.held) + 1, [h[3] for h in self.held])
        self.held = []
        self.last_written_id = last_id
        if dropped:
            self.stats.add("dropped_points", dropped, "queue_full")
        on_written()

    def _encode(self, items: list[Any]) -> Iterator[tuple[int, list[Held]]]:
        """Yield ``(items converted so far, encoded chunks)`` each time a chunk fills up."""
        builder = BatchBuilder()
        resource = None
        limit = self.config.max_batch_points
        next_yield = _YIELD_EVERY_POINTS
        for done, item in enumerate(items, 1):
            converted = len(builder.batch.points)
            if converted >= limit:
                yield done - 1, self._encode_batch(builder.build())
                builder, next_yield = BatchBuilder(), _YIELD_EVERY_POINTS
            elif converted >= next_yield:
                # Hand the GIL over if the training thread is waiting for it (back from a
                # NumPy or CUDA call), rather than making it wait for the switch interval.
                time.sleep(0)
                next_yield = converted + _YIELD_EVERY_POINTS
            try:
                if isinstance(item, MetricsData):
                    add_metrics_data(builder, item)
                elif isinstance(item, tuple):
                    add_log_item(builder, item)
                else:
                    if resource is None:
                        resource = self._resource_attributes()
                    add_record(builder, item, resource, _RECORD_SCOPE)
            except Exception as exc:  # noqa: BLE001 - one bad item must not lose the rest
                n = item_points(item)
                self.stats.add("dropped_points", n, "invalid")
                _log.warning("otel-recursive-metrics: dropped %d point(s) that could not be converted: %s", n, exc)
                self._report(exc, sink="*", points=n, reason="invalid", outcome="dropped")
        yield len(items), self._encode_batch(builder.build())

    def _encode_batch(self, batch: PointBatch) -> list[Held]:
        self.stats.add("received_points", len(batch))
        now = time.time_ns()
        return [(now, len(chunk), chunk.encode(), chunk) for chunk in batch.split(self.config.max_batch_points) if len(chunk)]
