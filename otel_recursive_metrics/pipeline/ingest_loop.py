"""The ingest thread's loop: when the ingest stage runs, when the queue is fsynced, how requests are answered.

The thread first has the worker open the durable queue and the sinks and build the
:class:`~.ingest.Ingest` stage (``setup``). Until that works it tries again every second (or
every ``flush_interval_s``, if shorter), still dropping what waited in memory past the time
bound (:attr:`.buffer.MemoryBuffer.max_age_ns`), and answers persists with False.

Then it runs :meth:`.ingest.Ingest.run_once` whenever ``batch_size`` items wait (the buffer's
wake-up), a flush or a persist is asked for, or the oldest item in memory nears
``flush_interval_s``. It fsyncs the queue once per interval, and at once for a persist or at the
end. A flush is answered with the id of the last record the sinks must finish (every record in
the queue, an earlier process's included); a run the disk refused answers persists with False
and keeps the flushes for the next run that succeeds, tried again a second later. Once stopped,
it ends when memory is on disk, or at its next turn when abandoned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..config import Config
from .buffer import MemoryBuffer
from .ingest import Ingest, count_dropped
from .queue_faults import QueueFaults, Report
from .telemetry import DropReason, Stats

__all__ = ["IngestLoop", "Request"]

#: How soon the loop tries again after a setup or a run the disk refused (at most the interval).
_RETRY_S = 1.0


class Request:
    """A flush or persist request, answered by the ingest thread after a run."""

    __slots__ = ("done", "ok", "target_id")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        #: For a flush: the last queue record the sinks must finish.
        self.target_id = 0


class IngestLoop:
    """Runs the ingest stage on the ingest thread and answers flushes and persists; see the module docstring."""

    def __init__(
        self,
        config: Config,
        buffer: MemoryBuffer,
        stats: Stats,
        *,
        faults: QueueFaults,
        report: Report,
        stop: threading.Event,
        progress: threading.Condition,
    ) -> None:
        """``progress``: the condition flush waiters wait on; its lock also guards the flush requests."""
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self.faults = faults
        self._report = report
        self.stop = stop
        self.progress = progress
        #: Set when a shutdown's deadline passed: the thread gives up at its next turn.
        self.abandon = False
        self._flushes: list[Request] = []
        # Appended from a signal handler: list.append is atomic and takes no lock we could hold.
        self._persists: list[Request] = []

    def persist(self) -> Request:
        """Ask for everything in memory to be put on disk now; takes no lock (a signal handler calls it)."""
        request = Request()
        self._persists.append(request)
        self.buffer.wake.set()
        return request

    def flush(self) -> Request:
        """Ask for a run; the answer's ``target_id`` is the last record the sinks must finish."""
        request = Request()
        with self.progress:
            self._flushes.append(request)
        self.buffer.wake.set()
        return request

    def run(self, setup: Callable[[], Ingest | None], on_written: Callable[[], None]) -> None:
        """The thread's body: ``setup`` until it gives the stage, then run it until stopped."""
        retry_s = min(_RETRY_S, self.config.flush_interval_s)
        ingest = setup()
        while ingest is None:
            self._drop_stale()
            self._answer(self._take_persists(), ok=False)
            if self.stop.wait(retry_s) or self.abandon:
                return
            ingest = setup()
        queue = ingest.queue
        last_sync = time.monotonic()
        while not self.abandon:
            self.buffer.wake.wait(self._wait_timeout_s())
            self.buffer.wake.clear()
            stopping = self.stop.is_set()
            with self.progress:
                flushes, self._flushes = self._flushes, []
            persists = self._take_persists()
            ok = ingest.run_once(stopping=stopping, on_written=on_written)
            if ok and (persists or stopping or time.monotonic() - last_sync >= self.config.flush_interval_s):
                try:
                    queue.sync()
                    last_sync = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - the records are committed; fsync is extra
                    ingest.failed(exc)
            if ok:
                # Everything in the queue counts, records left by an earlier process included.
                target = max(ingest.last_written_id, queue.last_id())
                for request in flushes:
                    request.target_id = target
                self._answer(flushes, ok=True)
            else:
                with self.progress:  # answered at the next successful run
                    self._flushes[:0] = flushes
            self._answer(persists, ok=ok)
            if stopping and ok and not len(self.buffer):  # ok: nothing is held either
                break
            if not ok:
                self.stop.wait(retry_s)

    def _drop_stale(self) -> None:
        """Before the stage exists the time bound holds too: drop (and count) what waited past it."""
        lost = self.buffer.drop_older_than(time.monotonic_ns() - self.buffer.max_age_ns)
        count_dropped(self.stats, self._report, lost, self.faults.failing or DropReason.OVERLOAD)

    def _take_persists(self) -> list[Request]:
        taken = []
        while self._persists:
            taken.append(self._persists.pop(0))
        return taken

    @staticmethod
    def _answer(requests: list[Request], *, ok: bool) -> None:
        for request in requests:
            request.ok = ok
            request.done.set()

    def _wait_timeout_s(self) -> float:
        """Until the oldest item in memory nears the flush interval (at most the interval)."""
        interval = self.config.flush_interval_s
        oldest = self.buffer.oldest_offered_ns()
        if oldest is None:
            return interval
        age_s = (time.monotonic_ns() - oldest) / 1e9
        return max(0.0, min(interval, interval * 0.9 - age_s))
