"""The background worker: assembles the stages and runs them on their threads.

Threads (named, daemon, started lazily at the first offer or flush):

- ``otel-recursive-metrics-ingest`` opens the durable queue and the sinks, then runs the
  :mod:`~otel_recursive_metrics.pipeline.ingest` stage (memory buffer -> point batches ->
  durable queue; with the store as the only sink, straight into the store) whenever
  ``batch_size`` items wait, a flush or a persist is asked for, or the oldest item in memory
  nears ``flush_interval_s``; it fsyncs the queue once per interval.
- ``otel-recursive-metrics-sink-<name>``, one per sink this process delivers to, runs the
  :mod:`~otel_recursive_metrics.pipeline.delivery` stage (durable queue -> retry -> sink or
  dead-letter queue) from that sink's own cursor. A sink that is down never holds another back.
  With ``offline`` the network sinks get no thread: their batches wait on disk for
  ``otel-recursive-metrics sync``.

The caller's side never waits on disk or network: :meth:`Pipeline.offer` appends to the memory
buffer. The data folder is checked once, at construction: one that cannot hold files fails then,
with a :class:`~otel_recursive_metrics.errors.ConfigError` naming it.

Ending: :meth:`Pipeline.persist` puts what is in memory on disk (what SIGTERM does, see
:mod:`.preemption`). :meth:`Pipeline.flush` returns True once everything accepted before it is
delivered to every sink this process delivers to, with nothing dropped or dead-lettered on the
way. :meth:`Pipeline.shutdown` persists within its deadline, then waits for delivery for at
most ``shutdown_grace_s``; what is still on disk is sent at the next start with the same data
folder (or by ``sync``), and one log line says how many points wait, and where. At interpreter
exit every running pipeline is shut down this way.

Fork safety: ``os.register_at_fork`` resets every pipeline in the child (new buffer, new locks,
no threads, the parent's queue and connections abandoned untouched). The child starts its own
threads and queue slot if it logs anything itself; SDK exports in the child, which would repeat
the parent's data, are ignored unless ``export_in_forked_child`` is set.

Why this module is long: a pipeline is one state machine over shared state (start, setup on the
worker, ingest, one delivery loop per sink, persist, flush, shutdown with its grace, fork,
exit); each stage's own logic lives in its module (buffer, ingest, delivery, queue, retry,
preemption) and what is here is how they are wired and started and stopped, which reads best in
one place.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .._files import folder_problem
from ..config import Config
from ..errors import ConfigError
from ..model.batch import PointBatch
from ..model.resource import default_resource_attributes
from ..queue.dead_letter import DeadLetterQueue
from ..queue.folder import DurableQueue, QueueRecord, UnusableQueue, abandoned
from ..sinks.base import Sink, build_sinks
from ..sinks.store import StoreSink, store_file_stats
from ..store.schema import refuse_newer_store
from . import preemption
from .buffer import MemoryBuffer, initial_capacity, item_points
from .delivery import SinkDelivery, safe_error
from .ingest import Ingest, RecentBatches
from .telemetry import DropReason, Stats

__all__ = ["ErrorCallback", "Pipeline", "Producer"]

_log = logging.getLogger(__name__)

#: ``callback(error, context)``; context has ``sink``, ``points``, ``reason`` and ``outcome``
#: (``"dead_lettered"``, ``"failing"`` or ``"dropped"``).
ErrorCallback = Callable[[BaseException, dict[str, Any]], None]


class Producer(Protocol):
    """Something that offers points into a pipeline on its own thread (the system-metrics sampler)."""

    def shutdown(self, timeout_s: float) -> bool: ...


_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()

#: Budget of the shutdown of every running pipeline at interpreter exit.
EXIT_TIMEOUT_S = 30.0
_SETUP_RETRY_S = 1.0


#: How long a direct write into the store waits for another process's write lock before the
#: batch goes through the queue instead.
DIRECT_WAIT_S = 0.5


def _send_direct(store: StoreSink, batch: PointBatch) -> None:
    store.send(batch, time.monotonic() + DIRECT_WAIT_S)


class _Request:
    """A flush or persist request, answered by the ingest thread after a run."""

    __slots__ = ("done", "ok", "target_id")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        #: For a flush: the last queue record the sinks must finish.
        self.target_id = 0


class Pipeline:
    """Owns the buffer, the durable queue, the sinks and the worker threads for one config."""

    def __init__(
        self,
        config: Config,
        *,
        sinks: list[Sink] | None = None,
        resource_attributes: dict[str, Any] | None = None,
    ) -> None:
        problem = folder_problem(config.queue_dir)
        if problem is not None:
            raise ConfigError([f"dir={str(config.dir)!r}: cannot keep the durable queue in {str(config.queue_dir)!r}: {problem}"])
        if "store" in config.sinks:
            refuse_newer_store(config.resolved_store_path)  # ConfigError for a store of a newer version
        self.config = config
        self.stats = Stats()
        self._sink_factory: Callable[[], list[Sink]] = (lambda: list(sinks)) if sinks is not None else (lambda: build_sinks(config))
        self._resource_attributes = resource_attributes
        self._callbacks: list[ErrorCallback] = []
        self.dead_letters = DeadLetterQueue(config.dead_letter_dir, max_bytes=config.dead_letter_max_bytes)
        self.buffer = MemoryBuffer(
            max_items=config.max_buffer_items,
            wake_after=config.batch_size,
            overflow=config.overflow,
            block_timeout_s=config.block_timeout_s,
            on_drop=self._count_buffer_drop,
            start_capacity=initial_capacity(config.max_buffer_items, config.flush_interval_s),
        )
        #: Sinks this process sends to; with ``offline``, the network ones are left to ``sync``.
        self.delivering_sinks = tuple(s for s in config.sinks if not (config.offline and s in config.network_sinks))
        self.offline_sinks = tuple(s for s in config.sinks if s not in self.delivering_sinks)
        self._setup_calls: list[Callable[[], None]] = []
        self._init_runtime()
        self.in_forked_child = False
        _pipelines.add(self)

    def _init_runtime(self) -> None:
        self._start_lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._abandon = False
        self._queue: DurableQueue | UnusableQueue | None = None
        self._sinks: list[Sink] = []
        self._sink_wake: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._flush_requests: list[_Request] = []
        # Appended from a signal handler: list.append is atomic and takes no lock we could hold.
        self._persist_requests: list[_Request] = []
        self._recent = RecentBatches()
        self._ingest = Ingest(
            self.config,
            self.buffer,
            self.stats,
            report=self._report,
            resource_attributes=lambda: self.resource_attributes,
            recent=self._recent,
        )
        self._released = False
        self._losses_answered = 0
        self._set_up = False
        #: Producers beside the caller (the system-metrics sampler): stopped first at shutdown.
        self._producers: list[Producer] = []
        #: Points the queue still held for a sink when it was closed (get_stats after close).
        self._points_left_on_disk = 0

    # -- the caller's side ------------------------------------------------------------------------

    @property
    def resource_attributes(self) -> dict[str, Any]:
        """The resource of points that carry none of their own (``log`` calls, records)."""
        if self._resource_attributes is None:
            self._resource_attributes = default_resource_attributes()
        return self._resource_attributes

    @resource_attributes.setter
    def resource_attributes(self, attributes: dict[str, Any]) -> None:
        self._resource_attributes = dict(attributes)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` ran: nothing more is accepted."""
        return self._closed

    @property
    def started(self) -> bool:
        return self._started

    def offer(self, item: Any) -> bool:
        """Hand an item to the worker; never blocks unless ``overflow=block`` was chosen."""
        buffer = self.buffer
        items = buffer.items
        if self._started and not self._closed and len(items) < buffer.capacity:
            # The common case, inlined (this runs on the training thread for every log call).
            items.append(item)
            if len(items) >= buffer.wake_after and not buffer.wake.is_set():
                buffer.wake.set()
            return True
        if self._closed:
            self.stats.drop(item_points(item), DropReason.SHUTDOWN)
            return False
        if not self._started:
            self._start()
        return buffer.offer(item)

    def _count_buffer_drop(self, item: Any) -> None:
        self.stats.drop(item_points(item), DropReason.BUFFER_FULL)

    def register_error_callback(self, callback: ErrorCallback) -> None:
        self._callbacks.append(callback)

    def _report(self, error: BaseException, **context: Any) -> None:
        for callback in list(self._callbacks):
            try:
                callback(error, dict(context))
            except Exception:  # noqa: BLE001 - a user's callback must not kill the worker
                _log.exception("error callback %r raised", callback)

    # -- starting ---------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._started or self._closed:
                return
            # Only a thread start here: opening files and connections happens on the worker, so
            # the first export() costs the caller no disk or network time either.
            self._stop = threading.Event()
            self._threads = [threading.Thread(target=self._ingest_loop, name="otel-recursive-metrics-ingest", daemon=True)]
            self._started = True
            self._threads[0].start()
        self.install_sigterm_handler()

    def install_sigterm_handler(self) -> bool:
        """Put the SIGTERM handler in front of the program's, if ``handle_sigterm`` (see :mod:`.preemption`)."""
        return self.config.handle_sigterm and not self.in_forked_child and preemption.install(_sigterm_pipelines)

    def _setup(self) -> bool:
        """Open the durable queue and the sinks, start one thread per sink (on the worker)."""
        cfg = self.config
        queue: DurableQueue | UnusableQueue
        try:
            queue = DurableQueue(
                cfg.queue_dir,
                self.delivering_sinks,
                max_bytes=cfg.max_queue_bytes,
                fsync=cfg.fsync,
                offline_sinks=self.offline_sinks,
                on_foreign=self._dead_letter_foreign,
                on_corrupt=self._count_corrupt_slot,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a folder gone read-only; keep the data in memory
            self._ingest.failed(exc)
            if cfg.sinks != ("store",) or not cfg.store_direct:
                return False
            queue = UnusableQueue(cfg.queue_dir, self.delivering_sinks, exc)  # the store takes the points directly
        try:
            all_sinks = self._sink_factory()
            sinks = [s for s in all_sinks if s.name in self.delivering_sinks]
        except Exception as exc:  # noqa: BLE001
            queue.close()
            self.stats.set_last_error("sinks", f"cannot build the sinks: {safe_error(exc)}")
            _log.error("otel-recursive-metrics: cannot build the sinks: %s; retrying", exc)
            return False
        store = next((s for s in sinks if isinstance(s, StoreSink)), None)
        if store is not None and cfg.sinks == ("store",) and cfg.store_direct:
            # The store is the only destination: it is the durable log (see Ingest._write_direct).
            self._ingest.direct = functools.partial(_send_direct, store)
        with self._start_lock:
            self._queue, self._sinks = queue, sinks
            for sink in sinks:
                self._sink_wake[sink.name] = threading.Event()
                thread = threading.Thread(
                    target=self._sink_loop, args=(sink,), name=f"otel-recursive-metrics-sink-{sink.name}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._set_up = True
            starts, self._setup_calls = self._setup_calls, []
        for start in starts:
            self._run_setup_call(start)
        return True

    def on_setup(self, start: Callable[[], None]) -> None:
        """Run ``start`` on the worker once the queue and the sinks are open (at once if they are).

        How a producer that is slow to start (the system-metrics sampler opens psutil and NVML)
        starts without costing the training thread; the pipeline knows nothing of what it starts.
        Not run in a forked child, nor after shutdown.
        """
        with self._start_lock:
            if not self._set_up:
                self._setup_calls.append(start)
                return
        self._run_setup_call(start)

    def _run_setup_call(self, start: Callable[[], None]) -> None:
        if self._closed or self.in_forked_child:
            return
        try:
            start()
        except Exception:  # noqa: BLE001 - a producer must never cost the run
            _log.exception("otel-recursive-metrics: %r did not start", start)

    def add_producer(self, producer: Producer) -> None:
        """Stop ``producer`` first at :meth:`shutdown` (at most 5 s), so that its last output is persisted."""
        self._producers.append(producer)

    def _dead_letter_foreign(self, sink: str, records: list[QueueRecord]) -> None:
        """Records left pending for a sink no longer configured: dead-letter them for that sink."""
        reason = f"sink {sink!r} is no longer configured (sinks: {','.join(self.config.sinks)}); these points were still pending for it"
        for record in records:
            try:
                batch = PointBatch.decode(record.payload)
            except ValueError as exc:
                self.stats.drop(record.points, DropReason.CORRUPT)
                _log.error("otel-recursive-metrics: record %d pending for removed sink %s is unreadable: %s", record.id, sink, exc)
                continue
            entry = self.dead_letters.add(batch, reason=reason, sink=sink)
            if entry is None:
                raise RuntimeError("the dead-letter folder is full")
            self.stats.dead_lettered(sink, batch.data_points(), reason)
        points = sum(r.points for r in records)
        _log.warning(
            "otel-recursive-metrics: %d point(s) were still pending for sink %s, which is no longer configured;"
            " moved to the dead-letter queue in %s (replay them with: otel-recursive-metrics dlq replay)",
            points,
            sink,
            self.dead_letters.folder,
        )
        self._report(RuntimeError(reason), sink=sink, points=points, reason=reason, outcome="dead_lettered")

    def _count_corrupt_slot(self, moved_to: Path, points: int | None, error: BaseException) -> None:
        if points != 0:  # 0: junk where a queue file belongs (a folder, a FIFO), none of our points
            self.stats.drop(points or 0, DropReason.CORRUPT)
        lost = "an unknown number of" if points is None else str(points)
        text = f"a damaged or unusable queue file was moved aside to {moved_to}; {lost} point(s) in it are lost ({error})"
        self.stats.set_last_error("queue", text)
        self._report(error, sink="*", points=points or 0, reason=DropReason.CORRUPT.value, outcome="dropped", moved_to=str(moved_to))

    # -- ingest: memory -> disk ------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        cfg = self.config
        while not self._setup():
            self._ingest.drop_stale()
            self._answer(False)
            if self._stop.wait(min(_SETUP_RETRY_S, cfg.flush_interval_s)) or self._abandon:
                self._release_if_last()
                return
        queue = self._queue
        assert queue is not None
        last_sync = time.monotonic()
        while not self._abandon:
            self.buffer.wake.wait(self._wait_timeout_s())
            self.buffer.wake.clear()
            stopping = self._stop.is_set()
            with self._progress:
                flushes, self._flush_requests = self._flush_requests, []
            persists = self._take_persist_requests()
            ok = self._ingest.run_once(queue, stopping=stopping, on_written=self._wake_sinks)
            if ok and (persists or stopping or time.monotonic() - last_sync >= cfg.flush_interval_s):
                try:
                    queue.sync()
                    last_sync = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - the records are committed; fsync is extra
                    self._ingest.failed(exc)
            if ok:
                # Everything in the queue counts, records left by an earlier process included.
                target = max(self._ingest.last_written_id, queue.last_id())
                for request in flushes:
                    request.target_id, request.ok = target, True
                    request.done.set()
            else:
                with self._progress:  # answered at the next successful run
                    self._flush_requests[:0] = flushes
            for request in persists:
                request.ok = ok
                request.done.set()
            if stopping and ok and not len(self.buffer) and not self._ingest.held:
                break
            if not ok:
                self._stop.wait(min(_SETUP_RETRY_S, cfg.flush_interval_s))
        self._release_if_last()

    def _take_persist_requests(self) -> list[_Request]:
        taken = []
        while self._persist_requests:
            taken.append(self._persist_requests.pop(0))
        return taken

    def _answer(self, ok: bool) -> None:
        """Answer pending persist requests (the queue cannot be written now)."""
        for request in self._take_persist_requests():
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

    def _wake_sinks(self) -> None:
        for event in self._sink_wake.values():
            event.set()

    # -- delivery: disk -> sink -------------------------------------------------------------------

    def _sink_loop(self, sink: Sink) -> None:
        assert self._queue is not None
        SinkDelivery(
            sink,
            config=self.config,
            queue=self._queue,
            stats=self.stats,
            dead_letters=self.dead_letters,
            recent=self._recent,
            report=self._report,
            stop=self._stop,
            wake=self._sink_wake[sink.name],
            on_progress=self._on_progress,
        ).run()
        if self._closed:
            self._release_if_last()

    def _on_progress(self) -> None:
        """A sink moved its cursor: forget batches every sink is done with, wake flush waiters."""
        queue = self._queue
        if queue is not None:
            try:
                self._recent.forget_through(min(queue.cursor(s.name) for s in self._sinks))
            except Exception:  # noqa: BLE001 - bookkeeping only
                pass
        with self._progress:
            self._progress.notify_all()

    def _release_if_last(self) -> None:
        """After a shutdown that left threads behind, the last one to end closes the files."""
        me = threading.current_thread()
        with self._start_lock:
            if self._released or any(t.is_alive() and t is not me for t in self._threads):
                return
            self._released = True
        self._close_resources()

    def _close_resources(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                _log.exception("closing sink %s failed", sink.name)
        if self._queue is not None:
            with contextlib.suppress(Exception):
                self._points_left_on_disk = self._queue.pending()[1]
            try:
                self._queue.close()
            except Exception:  # noqa: BLE001
                _log.exception("closing the durable queue failed")

    # -- persist, flush and shutdown ---------------------------------------------------------------

    def persist_async(self) -> threading.Event | None:
        """Ask the worker to put everything in memory on disk now; an event set when it has run.

        Takes no lock (a signal handler calls it). None when there is nothing to do.
        """
        if not self._started or self._closed or (self.in_forked_child and not self._threads):
            return None
        request = _Request()
        self._persist_requests.append(request)
        self.buffer.wake.set()
        return request.done

    def persist(self, timeout_s: float) -> bool:
        """Put everything accepted so far on disk within ``timeout_s``; True when it is there."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if not self._started and len(self.buffer):
            self._start()
        request = _Request()
        if not self._started or self._closed:
            return not len(self.buffer)
        self._persist_requests.append(request)
        self.buffer.wake.set()
        return request.done.wait(max(0.0, deadline - time.monotonic())) and request.ok

    def flush(self, timeout_s: float) -> bool:
        """True once everything accepted before this call is delivered, with nothing lost on the way.

        "Delivered" means to every sink this process sends to; with ``offline`` the network
        sinks' share counts once it is on disk, waiting for ``sync``.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            # After shutdown nothing is delivered any more; without a start nothing was accepted.
            return not self._started
        if not self._started:
            self._start()
        if self.in_forked_child and not self._threads:
            return True
        request = _Request()
        with self._progress:
            self._flush_requests.append(request)
        self.buffer.wake.set()
        if not request.done.wait(max(0.0, deadline - time.monotonic())) or not request.ok:
            return False
        if not self._wait_delivered(request.target_id, deadline):
            return False
        return self._nothing_lost_since_last_asked()

    def _nothing_lost_since_last_asked(self) -> bool:
        """No point dead-lettered or dropped since the previous flush or shutdown answered.

        What was lost between two flushes was accepted before the second one, so it makes that
        one False; the next starts with a clean slate.
        """
        losses = self.stats.losses()
        clean = losses == self._losses_answered
        self._losses_answered = losses
        return clean

    def _wait_delivered(self, target_id: int, deadline: float) -> bool:
        queue = self._queue
        if queue is None:
            return False
        with self._progress:
            while any(queue.cursor(s.name) < target_id for s in self._sinks):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.5))
        return True

    def shutdown(self, timeout_s: float) -> bool:
        """Persist within ``timeout_s``, wait ``shutdown_grace_s`` for delivery, stop; idempotent.

        True if everything was delivered (see :meth:`flush`). What was not stays on disk and one
        log line says how much, where, and how it will be sent.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            return True
        for producer in list(self._producers):
            # First, so that its last output is persisted below; at most 5 s of the budget.
            try:
                producer.shutdown(max(0.0, min(5.0, deadline - time.monotonic())))
            except Exception:  # noqa: BLE001
                _log.exception("otel-recursive-metrics: stopping %r failed", producer)
        if not self._started and not len(self.buffer):
            self._closed = True
            return True
        persisted = self.persist(deadline - time.monotonic())
        queue = self._queue
        delivered = False
        if persisted and queue is not None:
            grace_deadline = min(deadline, time.monotonic() + self.config.shutdown_grace_s)
            delivered = self._wait_delivered(queue.last_id(), grace_deadline)
        waiting = self._pending_by_sink()  # while the queue is still open
        self._stop_threads(deadline)
        self._report_leftovers(persisted, waiting)
        return self._nothing_lost_since_last_asked() and delivered and persisted

    def _stop_threads(self, deadline: float) -> None:
        self._closed = True
        self._stop.set()
        self.buffer.wake.set()
        for event in self._sink_wake.values():
            event.set()
        if self._threads:
            self._threads[0].join(max(0.0, deadline - time.monotonic()))  # ingest, which starts the others
        self._abandon = True  # the ingest thread, if still at it, gives up at its next turn
        for thread in list(self._threads[1:]):
            # A sink in the middle of a send is left behind: its batch stays queued on disk.
            thread.join(max(0.0, min(deadline - time.monotonic(), 0.2)))
        if not any(t.is_alive() for t in self._threads):
            with self._start_lock:
                release = not self._released
                self._released = True
            if release:
                self._close_resources()

    def _report_leftovers(self, persisted: bool, waiting: dict[str, int]) -> None:
        """At the end: count what memory still held, say what waits on disk and what was lost."""
        leftovers = list(self.buffer.items) if not persisted else []
        lost = sum(item_points(i) for i in leftovers) + (self._ingest.pending_points() if not persisted else 0)
        if lost:
            reason = self._ingest.failing or DropReason.SHUTDOWN
            self.stats.drop(lost, reason)
            self.buffer.items.clear()
            self._report(
                RuntimeError(f"{lost} point(s) not on disk at shutdown"), sink="*", points=lost, reason=reason.value, outcome="dropped"
            )
        if waiting:
            where = ", ".join(
                f"{points} for {sink}" + (" (offline)" if sink in self.offline_sinks else "") for sink, points in waiting.items()
            )
            last = self.stats.snapshot()["last_error"]
            why = "; ".join(f"{s}: {last[s]}" for s in waiting if s in last)
            _log.warning(
                "otel-recursive-metrics: point(s) wait on disk in %s (%s)%s; they are sent at the next start with this data folder,"
                " or now with: otel-recursive-metrics sync --dir %s",
                self.config.queue_dir,
                where,
                f"; last error: {why}" if why else "",
                self.config.dir,
            )
        snap = self.stats.snapshot()
        dropped, dead = snap["dropped_points"], snap["dead_lettered_points"]
        if dropped or dead:
            parts = []
            if dropped:
                parts.append("dropped " + ", ".join(f"{n} ({reason})" for reason, n in sorted(dropped.items())))
            if dead:
                parts.append(f"dead-lettered {sum(dead.values())} into {self.dead_letters.folder}")
            _log.warning(
                "otel-recursive-metrics: in this process, point(s) were %s; see get_stats() and the README's reliability table",
                "; ".join(parts),
            )

    def _pending_by_sink(self) -> dict[str, int]:
        queue = self._queue
        if queue is None:
            return {}
        try:
            return {sink: n for sink, n in queue.pending_by_sink().items() if n}
        except Exception:  # noqa: BLE001 - the files may be closed already
            return {}

    # -- SIGTERM (see preemption) ---------------------------------------------------------------

    @property
    def sigterm_timeout_s(self) -> float:
        return self.config.sigterm_timeout_s

    def deliver_locally(self, deadline: float) -> bool:
        """Wait until ``deadline`` (monotonic) for the store sink to take everything on disk."""
        queue = self._queue
        local = [s for s in self._sinks if s.name == "store"]
        if queue is None or not local:
            return True
        target = queue.last_id()
        with self._progress:
            while any(queue.cursor(s.name) < target for s in local):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.05))
        return True

    def sigterm_summary(self, persisted: bool) -> str | None:
        """One phrase for the SIGTERM log line: what this pipeline kept and where."""
        if not persisted:
            in_memory = len(self.buffer) + self._ingest.in_flight_items
            held = self._ingest.pending_points()
            return (
                f"{in_memory} item(s) and {held} point(s) were still in memory for {self.config.queue_dir}"
                f" ({(self._ingest.failing or DropReason.OVERLOAD).value}); they are lost"
            )
        waiting = self._pending_by_sink()
        if not waiting:
            where = self.config.resolved_store_path if "store" in self.delivering_sinks else self.config.queue_dir
            return f"everything logged is on disk ({where})"
        total = max(waiting.values())
        return (
            f"{total} point(s) are on disk in {self.config.queue_dir}, sent at the next start"
            f" or by: otel-recursive-metrics sync --dir {self.config.dir}"
        )

    # -- introspection -----------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters plus queue figures; see :mod:`otel_recursive_metrics.pipeline.telemetry`."""
        snap = self.stats.snapshot()
        pending_points = 0
        queue = self._queue
        if queue is not None:
            try:
                pending_points = queue.pending()[1]
            except Exception:  # noqa: BLE001 - closed: what it held then is still on disk
                pending_points = self._points_left_on_disk
        sent = snap["sent_points"]
        snap["metrics_processed"] = min((sent.get(s, 0) for s in self.delivering_sinks), default=0)
        snap["buffer_items"] = len(self.buffer) + self._ingest.in_flight_items
        snap["buffer_capacity_items"] = self.buffer.capacity
        snap["queue_points"] = pending_points + self._ingest.pending_points()
        snap["queue_size"] = snap["buffer_items"] + snap["queue_points"]
        snap["queue_bytes"] = queue.bytes if queue is not None else 0
        snap["queue_capacity_bytes"] = self.config.max_queue_bytes
        oldest = self._ingest.oldest_unwritten()
        snap["durability_lag_s"] = 0.0 if oldest is None else max(0.0, (time.monotonic_ns() - oldest) / 1e9)
        snap["queue_failing"] = None if self._ingest.failing is None else self._ingest.failing.value
        # Converted at ingest, plus what the store converted in batches queued by an earlier version.
        snap["values_as_float"] += sum(s.values_as_float for s in self._sinks if isinstance(s, StoreSink))
        snap["sinks"] = list(self.config.sinks)
        snap["offline_sinks"] = list(self.offline_sinks)
        snap.update(store_file_stats(self._sinks))  # a store file removed or truncated under us (sinks/store.py)
        return snap

    # -- fork ------------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        if self._queue is not None:
            self._queue.abandon_after_fork()
        abandoned.extend(self._sinks)
        self.dead_letters.reset_after_fork()
        self.buffer.reset()
        self.stats.reset()
        self._init_runtime()
        self.in_forked_child = True


def _running_pipelines() -> list[Pipeline]:
    return [p for p in list(_pipelines) if p.started and not p.closed]


def _sigterm_pipelines() -> list[Pipeline]:
    """What SIGTERM keeps: running pipelines, and those an SDK collect may start (not a fork's)."""
    return [p for p in list(_pipelines) if not p.closed and (p.started or not p.in_forked_child)]


def _reset_pipelines_in_child() -> None:
    for pipeline in list(_pipelines):
        try:
            pipeline._after_fork_in_child()
        except Exception:  # noqa: BLE001 - never break the child over our bookkeeping
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pipelines_in_child)


@atexit.register
def _shutdown_at_exit() -> None:
    """Persist every running pipeline, give delivery its grace, stop: one budget for all."""
    pipelines = _running_pipelines()
    if not pipelines:
        return
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    threads = [
        threading.Thread(target=_shutdown_quietly, args=(p, deadline), name="otel-recursive-metrics-exit", daemon=True) for p in pipelines
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _shutdown_quietly(pipeline: Pipeline, deadline: float) -> None:
    try:
        pipeline.shutdown(max(0.0, deadline - time.monotonic()))
    except Exception:  # noqa: BLE001 - never fail the interpreter's exit
        _log.exception("otel-recursive-metrics: shutting down at exit failed")
