"""The sinks' side of an open pipeline: one delivery thread per sink, and how far they got.

Each sink gets a thread, ``otel-recursive-metrics-sink-<name>``, that runs
:class:`~.delivery.SinkDelivery` from the sink's own cursor in the durable queue, woken when the
ingest stage wrote (:meth:`Deliveries.wake`). Whenever a sink finishes a record, the batches every
sink is done with are forgotten (:class:`~.recent.RecentBatches`) and whoever waits on the
progress condition is woken: :meth:`Deliveries.wait_delivered` is how ``flush``, ``shutdown`` and
SIGTERM wait for the sinks. :meth:`Deliveries.close` closes the sinks and the queue, and keeps
what the queue still held for ``get_stats()`` after the end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ..config import Config
from ..queue.dead_letter import DeadLetterQueue
from ..queue.folder import DurableQueue, UnusableQueue
from ..sinks.base import Sink
from .delivery import SinkDelivery
from .queue_faults import Report
from .recent import RecentBatches
from .telemetry import Stats

__all__ = ["Deliveries"]

_log = logging.getLogger(__name__)


class Deliveries:
    """The delivery threads of the sinks over one durable queue; see the module docstring."""

    def __init__(
        self,
        config: Config,
        queue: DurableQueue | UnusableQueue,
        sinks: list[Sink],
        *,
        stats: Stats,
        dead_letters: DeadLetterQueue,
        recent: RecentBatches,
        report: Report,
        stop: threading.Event,
        progress: threading.Condition,
        on_thread_end: Callable[[], None],
    ) -> None:
        """``on_thread_end`` runs on each sink's thread as it ends (the worker releases the files after the last one)."""
        self.config = config
        self.queue = queue
        self.sinks = sinks
        self.stats = stats
        self.dead_letters = dead_letters
        self.recent = recent
        self._report = report
        self.stop = stop
        self.progress = progress
        self._on_thread_end = on_thread_end
        self._wake = {sink.name: threading.Event() for sink in sinks}
        #: Points the queue still held for a sink when it was closed.
        self._points_left = 0

    def start(self) -> list[threading.Thread]:
        """Start one thread per sink; the threads, started."""
        threads = []
        for sink in self.sinks:
            thread = threading.Thread(target=self._run, args=(sink,), name=f"otel-recursive-metrics-sink-{sink.name}", daemon=True)
            threads.append(thread)
            thread.start()
        return threads

    def wake(self) -> None:
        """New records are in the queue (or the pipeline stops): every sink's thread looks."""
        for event in self._wake.values():
            event.set()

    def _run(self, sink: Sink) -> None:
        SinkDelivery(
            sink,
            config=self.config,
            queue=self.queue,
            stats=self.stats,
            dead_letters=self.dead_letters,
            recent=self.recent,
            report=self._report,
            stop=self.stop,
            wake=self._wake[sink.name],
            on_progress=self._on_progress,
        ).run()
        self._on_thread_end()

    def _on_progress(self) -> None:
        """A sink moved its cursor: forget batches every sink is done with, wake the waiters."""
        try:
            self.recent.forget_through(min(self.queue.cursor(s.name) for s in self.sinks))
        except Exception:  # noqa: BLE001 - bookkeeping only
            pass
        with self.progress:
            self.progress.notify_all()

    def wait_delivered(self, deadline: float, *, target_id: int | None = None, local_only: bool = False, poll_s: float = 0.5) -> bool:
        """Wait until ``deadline`` (monotonic) for the sinks to finish the records up to ``target_id``; False at the deadline.

        ``target_id`` None: every record queued now. ``local_only``: only the local sinks (the store).
        """
        queue = self.queue
        target = queue.last_id() if target_id is None else target_id
        sinks = [s for s in self.sinks if s.is_local] if local_only else self.sinks
        with self.progress:
            while any(queue.cursor(s.name) < target for s in sinks):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.progress.wait(min(remaining, poll_s))
        return True

    def pending_by_sink(self) -> dict[str, int]:
        """Points on disk not yet final, per sink that has any."""
        try:
            return {sink: n for sink, n in self.queue.pending_by_sink().items() if n}
        except Exception:  # noqa: BLE001 - the files may be closed already
            return {}

    def points_on_disk(self) -> int:
        """Points in the queue not yet final for some sink (once closed: what it held then)."""
        try:
            return self.queue.pending()[1]
        except Exception:  # noqa: BLE001 - closed: what it held then is still on disk
            return self._points_left

    def close(self) -> None:
        """Close the sinks and the queue (once every thread that uses them has ended)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                _log.exception("closing sink %s failed", sink.name)
        with contextlib.suppress(Exception):
            self._points_left = self.queue.pending()[1]
        try:
            self.queue.close()
        except Exception:  # noqa: BLE001
            _log.exception("closing the durable queue failed")
