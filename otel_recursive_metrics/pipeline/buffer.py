"""The in-memory hand-off between the caller's thread and the worker, bounded in size and in time.

:meth:`MemoryBuffer.offer` is the only thing the exporter, ``TrainingMetrics.log`` and
``submit_metric`` do on the caller's thread: an atomic ``deque.append`` of a reference, plus a
wake-up once ``batch_size`` items wait. No lock is taken on that path; it never touches disk or
network. The worker's side takes items with :meth:`~MemoryBuffer.drain`, puts back what the disk
refused with :meth:`~MemoryBuffer.requeue_front`, and drops what waited too long with
:meth:`~MemoryBuffer.drop_older_than`; nothing else touches the deque.

Two caps apply, and past either one the overflow policy decides (every refused or evicted item
is counted, with its reason):

- ``max_items`` (``max_buffer_items``), a hard cap on memory;
- :attr:`MemoryBuffer.capacity`, the number of items the worker can make durable within about
  half of ``flush_interval_s``, which the ingest stage keeps up to date from the rate it
  measures. A loop that logs faster than the worker can write therefore meets the policy within
  seconds, instead of piling up minutes of data that a ``kill -9`` would take with it.

``drop_oldest`` evicts the oldest item, ``drop_newest`` refuses the new one, ``block`` waits up
to ``block_timeout_s`` for the worker to make room, then refuses. Whatever the policy, an item
still in memory :data:`STALE_AFTER_S` past ``flush_interval_s`` is dropped by the worker when it
reaches it (reason ``overload``, or the reason the disk refused it): the promise is that a
point is on disk within the interval, or counted.

Ages are measured on the monotonic clock (``time.monotonic_ns()``, stamped when an item is
offered): a step of the wall clock (NTP, a VM resumed) neither ages what waits in memory nor
makes it young. Only the points' own timestamps come from the wall clock.

What is queued (the *items*):

- a ``TrainingMetrics.log`` call: a plain tuple ``(context, time_unix_nano, step, epoch,
  values, offered_monotonic_ns)`` read through the ``LOG_*`` indexes; plain, because a tuple of
  numbers and a dict of floats is not tracked by the garbage collector, and this is built once
  per training step;
- an SDK export: :class:`ExportItem`; a submitted record: :class:`RecordItem`.

Thread safety: many producers, one consumer (the worker's ingest thread).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import MetricsData

from ..model.kinds import OverflowPolicy
from ..model.resource import RUN_METADATA_METRICS

__all__ = [
    "ASSUMED_ITEMS_PER_S",
    "LOG_CONTEXT",
    "LOG_EPOCH",
    "LOG_OFFERED",
    "LOG_STEP",
    "LOG_TIME",
    "LOG_VALUES",
    "STALE_AFTER_S",
    "ExportItem",
    "MemoryBuffer",
    "RecordItem",
    "initial_capacity",
    "item_offered_ns",
    "item_points",
    "metrics_data_points",
]

#: Fields of a queued ``log`` call: the point's wall-clock time, then when it was offered on
#: the monotonic clock (the item's age).
LOG_CONTEXT, LOG_TIME, LOG_STEP, LOG_EPOCH, LOG_VALUES, LOG_OFFERED = range(6)

#: How long past ``flush_interval_s`` an item may still wait in memory before the worker drops it.
STALE_AFTER_S = 0.75
#: Before the worker has measured how fast it writes, it is assumed to take this many items a second.
ASSUMED_ITEMS_PER_S = 40_000


def initial_capacity(max_items: int, flush_interval_s: float) -> int:
    """The buffer's capacity until the worker measured its rate: half the interval's time budget
    at :data:`ASSUMED_ITEMS_PER_S` (all of ``max_items`` at the default 5 s; 19,000 at 0.2 s)."""
    return max(1, min(max_items, int((flush_interval_s + STALE_AFTER_S) * 0.5 * ASSUMED_ITEMS_PER_S)))


class ExportItem(NamedTuple):
    """An SDK export as queued: when it was offered (``time.monotonic_ns()``), and the SDK's snapshot."""

    offered_monotonic_ns: int
    data: MetricsData


class RecordItem(NamedTuple):
    """A submitted record (already validated) as queued, with when it was offered (``time.monotonic_ns()``)."""

    offered_monotonic_ns: int
    record: dict[str, Any]


def item_offered_ns(item: Any) -> int:
    """When an item was offered, on the monotonic clock (ns); now for an item without the stamp.

    (An item of another shape is dropped as ``invalid`` by the worker; it must not stall it.)
    """
    kind = type(item)
    if kind is tuple:
        if len(item) > LOG_OFFERED:
            return int(item[LOG_OFFERED])
    elif kind is ExportItem or kind is RecordItem:
        return int(item[0])
    return time.monotonic_ns()


def metrics_data_points(data: MetricsData) -> int:
    """How many points an SDK export holds."""
    return sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)


def item_points(item: Any) -> int:
    """How many points an item holds."""
    if type(item) is tuple:
        return len(item[LOG_VALUES])
    if type(item) is ExportItem:
        return metrics_data_points(item.data)
    if type(item) is RecordItem and item.record.get("metric_name") in RUN_METADATA_METRICS:
        return 0  # run metadata, not a logged point
    return 1


class MemoryBuffer:
    """A bounded deque of accepted items with a wake-up event for the worker."""

    def __init__(
        self,
        *,
        max_items: int,
        wake_after: int,
        flush_interval_s: float,
        overflow: OverflowPolicy | str,
        block_timeout_s: float,
        on_drop: Callable[[Any], None],
        on_shut: Callable[[Any], bool],
    ) -> None:
        """``on_drop(item)``: the overflow policy refused or evicted ``item``. ``on_shut(item)``: an
        item is offered while the buffer is not :attr:`open`; True to take it all the same."""
        self.max_items = max_items
        self.start_capacity = initial_capacity(max_items, flush_interval_s)
        self.wake_after = wake_after
        self.overflow = OverflowPolicy(overflow)
        self.block_timeout_s = block_timeout_s
        self._on_drop = on_drop
        self._on_shut = on_shut
        #: How long an item may wait (monotonic ns): ``flush_interval_s`` plus :data:`STALE_AFTER_S`.
        self.max_age_ns = int((flush_interval_s + STALE_AFTER_S) * 1e9)
        self.reset()

    def reset(self) -> None:
        """Forget every item and recreate the primitives (used in a forked child)."""
        self.items: deque[Any] = deque()
        #: Whether items are taken (the worker runs); see :meth:`offer`.
        self.open = False
        self.wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        #: The cap in force now (<= max_items); see the module docstring. Until the worker has
        #: measured its rate, a guess (:func:`initial_capacity`).
        self.capacity = self.start_capacity

    def __len__(self) -> int:
        return len(self.items)

    def set_capacity(self, items: int) -> None:
        """Cap what may wait in memory at ``items`` (never above ``max_items``, never below 1)."""
        self.capacity = max(1, min(self.max_items, int(items)))
        if self.overflow is OverflowPolicy.BLOCK:
            with self._room:
                self._room.notify_all()

    def offer(self, item: Any) -> bool:
        """Queue ``item`` for the worker; False if it was refused (shut, or the overflow policy).

        The training thread calls this for every ``log``: while open and below the capacity it is
        one append and, every ``batch_size`` items, one wake-up, so that case comes first and calls
        nothing else. While shut, ``on_shut`` decides (the pipeline starts its worker, or counts
        the item lost after shutdown).
        """
        items = self.items
        if self.open and len(items) < self.capacity:
            items.append(item)
            if len(items) >= self.wake_after and not self.wake.is_set():
                self.wake.set()
            return True
        if not self.open and not self._on_shut(item):
            return False
        if len(items) >= self.capacity and not self._make_room():
            self._on_drop(item)
            return False
        items.append(item)
        if len(items) >= self.wake_after and not self.wake.is_set():
            self.wake.set()
        return True

    def requeue_front(self, items: list[Any]) -> None:
        """Put ``items`` (taken by :meth:`drain`, oldest first) back in front, in their order.

        For what the worker took but could not put on disk: it is taken again, first, at the next run.
        """
        self.items.extendleft(reversed(items))

    def take_all(self) -> list[Any]:
        """Empty the buffer and return what it held, oldest first, waking nobody (at the end: what is lost)."""
        taken = list(self.items)
        self.items.clear()
        return taken

    def points(self) -> int:
        """How many points the waiting items hold."""
        return sum(item_points(item) for item in list(self.items))

    def _make_room(self) -> bool:
        if self.overflow is OverflowPolicy.DROP_OLDEST:
            try:
                self._on_drop(self.items.popleft())
            except IndexError:
                pass
            return True
        if self.overflow is OverflowPolicy.BLOCK and self.block_timeout_s > 0:
            deadline = time.monotonic() + self.block_timeout_s
            self.wake.set()
            with self._room:
                while len(self.items) >= self.capacity:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._room.wait(remaining)
            return True
        return False

    def oldest_offered_ns(self) -> int | None:
        """When the oldest waiting item was offered (monotonic ns), or None when nothing waits."""
        try:
            return item_offered_ns(self.items[0])
        except IndexError:
            return None

    def drop_older_than(self, cutoff_ns: int) -> int:
        """Drop the items offered before ``cutoff_ns`` (monotonic); how many points they held."""
        items = self.items
        points = 0
        dropped = 0
        while True:
            try:
                item = items[0]
            except IndexError:
                break
            if item_offered_ns(item) >= cutoff_ns:
                break
            try:
                item = items.popleft()
            except IndexError:
                break
            points += item_points(item)
            dropped += 1
        if dropped:
            self._notify_room()
        return points

    def drain(self, limit: int | None = None) -> list[Any]:
        """Take up to ``limit`` items (all if None), oldest first; wakes blocked producers."""
        items = self.items
        out = []
        popleft = items.popleft
        n = len(items) if limit is None else min(limit, len(items))
        for _ in range(n):
            try:
                out.append(popleft())
            except IndexError:
                break
        if out:
            self._notify_room()
        return out

    def _notify_room(self) -> None:
        if self.overflow is OverflowPolicy.BLOCK:
            with self._room:
                self._room.notify_all()
