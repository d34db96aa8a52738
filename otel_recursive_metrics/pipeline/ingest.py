"""The ingest stage: accepted items from memory, as point batches, into the durable queue.

This is the batcher of the data flow. The worker builds one :class:`Ingest` once the durable
queue and the sinks are open, and its ingest thread calls :meth:`Ingest.run_once` every
``flush_interval_s`` (sooner once ``batch_size`` items wait, or a flush is asked for). One
run drains the memory buffer, converts the items (SDK exports, ``log`` calls, submitted records)
into point batches of at most ``max_batch_points``, and appends each batch to the durable queue
as soon as it is full, so the sinks start on it while the rest of a large drain is still being
converted.

Durable within the interval, or counted. An item still in memory :data:`~.buffer.STALE_AFTER_S`
past ``flush_interval_s`` (measured on the monotonic clock from when it was offered) is dropped
when the worker reaches it (``overload``; or, while the disk refuses writes, the disk's
reason), so that after a ``kill -9`` nothing older than that is missing without having been
counted. The rate this stage achieves sets the memory buffer's
:attr:`~.buffer.MemoryBuffer.capacity`, so a loop that outruns the worker meets the overflow
policy at the call within seconds rather than piling data up in memory.

When the queue refuses a write:

- at its byte cap, the overflow policy decides: ``drop_oldest`` makes room (the queue reports
  what it evicted, per sink: ``queue_full`` for every sink that had not finished the records,
  see :meth:`.slot.QueueSlot.append`; never a record being sent), ``drop_newest`` drops the new
  batches (so does ``drop_oldest`` when the records being sent leave too little to evict),
  ``block`` holds them and tries again (meanwhile the memory buffer fills and producers wait);
- on a full disk or an unusable folder, the converted batches are held and retried every run,
  nothing more is converted, and memory stays within the buffer's caps and the time bound. The
  condition is put in ``get_stats()["last_error"]["queue"]``, reported once to the error
  callbacks, and logged once per condition per minute (a traceback only the first time an
  unexpected error appears). Writing resumes by itself when the disk takes it again.

Thread safety: one ingest thread calls ``run_once``; :meth:`Ingest.backlog` and
:class:`~.recent.RecentBatches` may be read from any thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..config import Config
from ..model.attributes import AttributeLimits
from ..model.batch import BatchBuilder, PointBatch
from ..model.kinds import LossOutcome, OverflowPolicy
from ..queue.slot import QueueFull, QueueSlot
from ..sinks.base import Sink
from .buffer import STALE_AFTER_S, ExportItem, MemoryBuffer, item_offered_ns, item_points
from .convert import add_log_item, add_metrics_data, add_record
from .queue_faults import QueueFaults, Report, classify_queue_error
from .recent import RecentBatches
from .telemetry import DropReason, Stats

__all__ = ["DIRECT_WAIT_S", "Backlog", "Held", "Ingest", "RecentBatches", "Report", "classify_queue_error", "count_dropped"]


_log = logging.getLogger(__name__)

_YIELD_EVERY_POINTS = 1024
#: Runs shorter than this many points say little about the rate.
_RATE_MIN_POINTS = 2000
#: The smallest slice of the buffer one pass takes, whatever the capacity.
_MIN_SLICE_ITEMS = 1000

# Scope of the points of submitted records (the seed API).
_RECORD_SCOPE = ("otel_recursive_metrics", "")
#: How long a direct write into the store waits for another process's write lock before the
#: batch goes through the queue instead.
DIRECT_WAIT_S = 0.5


def count_dropped(stats: Stats, report: Report, points: int, reason: DropReason) -> None:
    """Count ``points`` lost on the way to disk for ``reason``, and tell the error callbacks."""
    if points <= 0:
        return
    stats.drop(points, reason)
    error = RuntimeError(f"{points} point(s) dropped: {reason.value}")
    report(error, sink="*", points=points, reason=reason.value, outcome=LossOutcome.DROPPED)


class Backlog(NamedTuple):
    """What was accepted and is not on disk yet: items in memory (waiting, or taken and not converted
    yet), points converted and held, and when the oldest of all that was offered (monotonic ns)."""

    items: int
    points: int
    oldest_offered_ns: int | None


class Held:
    """A converted chunk waiting for the durable queue (or the store, written directly)."""

    __slots__ = ("_payload", "batch", "created_unix_nano", "oldest_offered_ns", "points")

    def __init__(self, created_unix_nano: int, oldest_offered_ns: int, points: int, batch: PointBatch) -> None:
        #: When it was made (wall clock): the queue record's ``created_unix_nano``, for people.
        self.created_unix_nano = created_unix_nano
        #: When its oldest item was offered (monotonic): the chunk must be on disk within the
        #: interval of that.
        self.oldest_offered_ns = oldest_offered_ns
        self.points = points
        self.batch = batch
        self._payload: bytes | None = None

    @property
    def payload(self) -> bytes:
        """The queue's encoding of the batch, made the first time it is needed (never, when the
        batch goes straight into the store)."""
        if self._payload is None:
            self._payload = self.batch.encode()
        return self._payload


class Ingest:
    """Drains the memory buffer into the durable queue; see the module docstring."""

    def __init__(
        self,
        config: Config,
        buffer: MemoryBuffer,
        stats: Stats,
        *,
        queue: QueueSlot,
        direct: Sink | None,
        faults: QueueFaults,
        recent: RecentBatches,
        report: Report,
        resource_attributes: Callable[[], dict[str, Any]],
    ) -> None:
        """``direct``: the store when it is the only sink, written straight into (see :meth:`_write_direct`)."""
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self.queue = queue
        self.direct = direct
        self.faults = faults
        self.recent = recent
        self._report = report
        self._resource_attributes = resource_attributes
        self.limits = AttributeLimits(config.attribute_count_limit, config.attribute_value_length_limit)
        self.held: list[Held] = []
        self.last_written_id = 0
        self._in_flight_items = 0
        self._in_flight_oldest: int | None = None
        self._attributes_warned = False
        self._as_float_warned = False
        self._points_per_s: float | None = None
        self._points_per_item = 1.0
        self._max_age_ns = buffer.max_age_ns
        self._policy = OverflowPolicy(config.overflow)
        #: Batches the store refused directly, handed to the queue (and its delivery) instead.
        self.direct_fallbacks = 0

    def backlog(self) -> Backlog:
        """What is not on disk yet (any thread)."""
        held = list(self.held)
        times = [t for t in (self.buffer.oldest_offered_ns(), self._in_flight_oldest) if t is not None]
        times.extend(h.oldest_offered_ns for h in held)
        return Backlog(len(self.buffer) + self._in_flight_items, sum(h.points for h in held), min(times) if times else None)

    # -- one run ------------------------------------------------------------------------------

    def run_once(self, *, stopping: bool, on_written: Callable[[], None]) -> bool:
        """Drain, convert and append what waits now; never raises. True when all of it is on disk.

        The buffer is taken in slices of about its capacity, the rate measured after each, so
        that one long run never holds more than a slice besides what waits in the buffer.
        """
        self.drop_stale()
        if self.held and not self._write_held(stopping=stopping, on_written=on_written):
            return False
        remaining = len(self.buffer)  # what was accepted before this run began: all of it, in order
        while remaining > 0:
            items = self.buffer.drain(min(remaining, max(_MIN_SLICE_ITEMS, self.buffer.capacity)))
            if not items:
                break
            remaining -= len(items)
            if not self._ingest_slice(items, stopping=stopping, on_written=on_written):
                return False
            if remaining > 0:
                self.drop_stale()
        return True

    def _ingest_slice(self, items: list[Any], *, stopping: bool, on_written: Callable[[], None]) -> bool:
        started = time.perf_counter()
        self._in_flight_items = len(items)  # taken from memory, not yet on disk: still queued
        self._in_flight_oldest = item_offered_ns(items[0])
        self.stats.accepted(len(items))
        done = 0
        points = 0
        try:
            for done, chunks in self._encode(items):
                self.held.extend(chunks)
                points += sum(c.points for c in chunks)
                if not self._write_held(stopping=stopping, on_written=on_written):
                    # The disk refuses: keep what is left unconverted, in order, for a later run.
                    self.buffer.requeue_front(items[done:])
                    self.stats.accepted(-(len(items) - done))
                    return False
                self._in_flight_items = len(items) - done
                self._in_flight_oldest = item_offered_ns(items[done]) if done < len(items) else None
        except Exception as exc:  # noqa: BLE001 - a bug in conversion must not lose the rest
            self.buffer.requeue_front(items[done:])
            self.stats.accepted(-(len(items) - done))
            self.failed(exc, unexpected=True)
            return False
        finally:
            self._in_flight_items = 0
            self._in_flight_oldest = None
        self._measure(len(items), points, time.perf_counter() - started)
        return True

    def drop_stale(self) -> None:
        """Drop what waited in memory past the interval's bound (see the module docstring)."""
        cutoff = time.monotonic_ns() - self._max_age_ns
        reason = self._stale_reason()
        if self.held and self.held[0].oldest_offered_ns < cutoff:
            keep = [h for h in self.held if h.oldest_offered_ns >= cutoff]
            lost = sum(h.points for h in self.held) - sum(h.points for h in keep)
            self.held = keep
            self._dropped(lost, reason)
        self._dropped(self.buffer.drop_older_than(cutoff), reason)

    def _stale_reason(self) -> DropReason:
        return self.faults.failing or DropReason.OVERLOAD

    def _dropped(self, points: int, reason: DropReason) -> None:
        count_dropped(self.stats, self._report, points, reason)

    def _measure(self, items: int, points: int, seconds: float) -> None:
        """Update the measured rate, and from it the memory buffer's capacity."""
        if points < _RATE_MIN_POINTS or seconds <= 0:
            return
        rate = points / seconds
        self._points_per_s = rate if self._points_per_s is None else 0.7 * self._points_per_s + 0.3 * rate
        self._points_per_item = 0.7 * self._points_per_item + 0.3 * (points / max(1, items))
        budget_s = (self.config.flush_interval_s + STALE_AFTER_S) * 0.5
        capacity = self._points_per_s * budget_s / max(1.0, self._points_per_item)
        self.buffer.set_capacity(max(1000, 2 * self.config.batch_size, int(capacity)))

    # -- writing ------------------------------------------------------------------------------

    def _write_direct(self, direct: Sink) -> None:
        """With the store as the only sink, write the held chunks straight into it.

        The store is then the durable log: a committed batch is as safe there as in the queue
        (one transaction, fsynced), and it skips the queue's encoding, its write and delete, and
        the hand-over to the delivery thread. Only while the queue holds nothing for the store,
        so batches land in order. The first chunk the store does not take (locked by another
        rank past the short wait, a full disk, a value it cannot hold) and every chunk after it
        go through the queue as usual, where delivery retries, splits and dead-letters them.
        """
        if self.queue.cursor(direct.name) < self.queue.last_id():
            return
        while self.held:
            chunk = self.held[0]
            started = time.monotonic()
            try:
                direct.send(chunk.batch, started + DIRECT_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - the queue path decides what this means
                self.direct_fallbacks += 1
                _log.debug("otel-recursive-metrics: the store did not take a batch directly (%s); queueing it", exc)
                return
            self.held.pop(0)
            self.stats.sent(direct.name, chunk.points, time.monotonic() - started)

    def _write_held(self, *, stopping: bool, on_written: Callable[[], None]) -> bool:
        """Append the held chunks; False (keeping them) when the queue refuses for now."""
        queue = self.queue
        if self.held and self.direct is not None:
            self._write_direct(self.direct)
            if not self.held:
                if queue.usable:  # else the queue's failure goes on (see queue.UnusableQueue)
                    self.faults.recovered()
                on_written()
                return True
        if not self.held:
            return True
        policy = self._policy
        try:
            last_id, evicted = queue.append(
                [(h.created_unix_nano, h.points, h.payload) for h in self.held], drop_oldest=policy is OverflowPolicy.DROP_OLDEST
            )
        except QueueFull as exc:
            if policy is not OverflowPolicy.BLOCK or stopping:
                lost = sum(h.points for h in self.held)
                self.held = []
                self.stats.drop(lost, DropReason.QUEUE_FULL)
                self._report(exc, sink="*", points=lost, reason=DropReason.QUEUE_FULL.value, outcome=LossOutcome.DROPPED)
                return True
            self.failed(exc, reason=DropReason.QUEUE_FULL)
            return False  # overflow=block: keep holding; the memory buffer fills and producers wait
        except Exception as exc:  # noqa: BLE001 - a full disk, a folder gone read-only, ...
            self.failed(exc)
            return False
        # One writer, one transaction: the records got consecutive ids ending at last_id.
        self.recent.add(last_id - len(self.held) + 1, [h.batch for h in self.held])
        self.held = []
        self.last_written_id = last_id
        if evicted:  # for every sink what they all lost, the rest for the sinks that lost it
            self.stats.drop_for_sinks(evicted, DropReason.QUEUE_FULL, self.config.sinks)
        self.faults.recovered()
        on_written()
        return True

    def failed(self, exc: BaseException, *, reason: DropReason | None = None, unexpected: bool = False) -> None:
        """Record that the queue refused (or could not be opened); see :class:`.queue_faults.QueueFaults`."""
        self.faults.failed(exc, pending_points=self.backlog().points, reason=reason, unexpected=unexpected)

    # -- converting ---------------------------------------------------------------------------

    def _encode(self, items: list[Any]) -> Iterator[tuple[int, list[Held]]]:
        """Yield ``(items converted so far, encoded chunks)`` each time a chunk fills up."""
        builder = BatchBuilder()
        resource = None
        limits = self.limits
        limit = self.config.max_batch_points
        next_check = _YIELD_EVERY_POINTS
        cutoff = time.monotonic_ns() - self._max_age_ns
        chunk_oldest: int | None = None
        stale_points = 0
        for done, item in enumerate(items, 1):
            converted = len(builder.batch.points)
            if converted >= limit:
                if stale_points:
                    self._dropped(stale_points, self._stale_reason())
                    stale_points = 0
                yield done - 1, self._encode_batch(builder.build(), chunk_oldest)
                builder, next_check, chunk_oldest = BatchBuilder(), _YIELD_EVERY_POINTS, None
            elif converted >= next_check:
                # Hand the GIL over if the training thread is waiting for it (back from a
                # NumPy or CUDA call), rather than making it wait for the switch interval.
                time.sleep(0)
                next_check = converted + _YIELD_EVERY_POINTS
                cutoff = time.monotonic_ns() - self._max_age_ns
            offered = item_offered_ns(item)
            if offered < cutoff:
                stale_points += item_points(item)
                continue
            if chunk_oldest is None:
                chunk_oldest = offered
            try:
                if type(item) is tuple:
                    add_log_item(builder, item)
                    cut = 0
                elif type(item) is ExportItem:
                    cut, as_float = add_metrics_data(builder, item.data, limits)
                    if as_float:
                        self._values_as_float(as_float)
                else:
                    if resource is None:
                        resource = self._resource_attributes()
                    cut = add_record(builder, item.record, resource, _RECORD_SCOPE, limits)
            except Exception as exc:  # noqa: BLE001 - one bad item must not lose the rest
                n = item_points(item)
                self.stats.drop(n, DropReason.INVALID)
                _log.warning("otel-recursive-metrics: dropped %d point(s) that could not be converted: %s", n, exc)
                self._report(exc, sink="*", points=n, reason=DropReason.INVALID.value, outcome=LossOutcome.DROPPED)
                continue
            if cut:
                self._attributes_cut(cut)
        if stale_points:
            self._dropped(stale_points, self._stale_reason())
        yield len(items), self._encode_batch(builder.build(), chunk_oldest)

    def _values_as_float(self, n: int) -> None:
        self.stats.stored_as_float(n)
        if not self._as_float_warned:
            self._as_float_warned = True
            _log.warning(
                "otel-recursive-metrics: %d integer value(s) past 64 bits (a counter's sum past 2**63?) kept as floats:"
                " neither the store nor OTLP holds such an integer; further ones are counted in get_stats()['values_as_float']",
                n,
            )

    def _attributes_cut(self, n: int) -> None:
        self.stats.cut_attributes(n)
        if not self._attributes_warned:
            self._attributes_warned = True
            _log.warning(
                "otel-recursive-metrics: point attributes cut to the limits (%d attributes, %d characters a value;"
                " OTEL_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT); further cuts are counted in"
                " get_stats()['attributes_cut']",
                self.limits.count,
                self.limits.value_length,
            )

    def _encode_batch(self, batch: PointBatch, oldest: int | None) -> list[Held]:
        if not len(batch):
            return []
        self.stats.received(batch.data_points())
        now = time.time_ns()
        first = oldest if oldest is not None else time.monotonic_ns()
        chunks = batch.split(self.config.max_batch_points)
        return [Held(now, first, chunk.data_points(), chunk) for chunk in chunks if len(chunk)]
