"""The background worker: assembles the stages and runs them on their threads.

Threads (named, daemon, started lazily at the first offer or flush):

- ``otel-recursive-metrics-ingest`` opens the durable queue and the sinks, then wakes every
  ``flush_interval_s``, or early once ``batch_size`` items wait, or on a flush request, and runs
  the :mod:`~otel_recursive_metrics.pipeline.ingest` stage (memory buffer -> point batches -> durable
  queue); it fsyncs the queue at least once per interval.
- ``otel-recursive-metrics-sink-<name>``, one per sink, runs the
  :mod:`~otel_recursive_metrics.pipeline.delivery` stage (durable queue -> retry -> sink or dead-letter
  queue) from that sink's own cursor. A sink that is down never holds another one back.

``flush(timeout_s)`` returns True when everything accepted before the call has been delivered to
every sink. ``shutdown(timeout_s)`` computes one deadline, flushes within it, then stops the
threads; a sink stuck in a send is left behind (its batch stays queued on disk and is sent at
the next start), so shutdown never outlives its deadline.

Fork safety: ``os.register_at_fork`` resets every pipeline in the child (new buffer, new locks,
no threads, the parent's queue and connections abandoned untouched). The child starts its own
threads and queue slot if it logs anything itself; SDK exports in the child, which would repeat
the parent's data, are ignored unless ``export_in_forked_child`` is set.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..sinks.base import Sink, build_sinks
from .buffer import MemoryBuffer
from .convert import LogContext
from .dead_letter import DeadLetterQueue
from .delivery import SinkDelivery
from .ingest import Ingest, RecentBatches, item_points
from .queue import DurableQueue, _abandoned
from .telemetry import Stats

__all__ = ["ErrorCallback", "Pipeline"]

_log = logging.getLogger(__name__)

#: ``callback(error, context)``; context has ``sink``, ``points``, ``reason`` and ``outcome``
#: (``"dead_lettered"``, ``"failing"`` or ``"dropped"``).
ErrorCallback = Callable[[BaseException, dict[str, Any]], None]

_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


class Pipeline:
    """Owns the buffer, the durable queue, the sinks and the worker threads for one config."""

    def __init__(
        self,
        config: Config,
        *,
        sinks: list[Sink] | None = None,
        resource_attributes: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.stats = Stats()
        self._sink_factory: Callable[[], list[Sink]] = (lambda: list(sinks)) if sinks is not None else (lambda: build_sinks(config))
        self._resource_attributes = resource_attributes
        self._clock = clock
        self._callbacks: list[ErrorCallback] = []
        self.dead_letters = DeadLetterQueue(config.dead_letter_dir, max_bytes=config.dead_letter_max_bytes)
        self.buffer = MemoryBuffer(
            max_items=config.max_buffer_items,
            wake_after=config.batch_size,
            overflow=config.overflow,
            block_timeout_s=config.block_timeout_s,
            on_drop=self._count_buffer_drop,
        )
        self._init_runtime()
        self.in_forked_child = False
        _pipelines.add(self)

    def _init_runtime(self) -> None:
        self._start_lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._queue: DurableQueue | None = None
        self._sinks: list[Sink] = []
        self._sink_wake: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._flush_requests: list[list[Any]] = []
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

    # -- the caller's side ------------------------------------------------------------------------

    @property
    def resource_attributes(self) -> dict[str, Any]:
        if self._resource_attributes is None:
            from ..resource import default_resource_attributes

            self._resource_attributes = default_resource_attributes()
        return self._resource_attributes

    def offer(self, item: Any) -> bool:
        """Hand an item to the worker; never blocks unless ``overflow=block`` was chosen."""
        buffer = self.buffer
        items = buffer.items
        if self._started and not self._closed and len(items) < buffer.max_items:
            # The common case, inlined (this runs on the training thread for every log call).
            items.append(item)
            if len(items) >= buffer.wake_after and not buffer.wake.is_set():
                buffer.wake.set()
            return True
        if self._closed:
            self.stats.add("dropped_points", item_points(item), "shutdown")
            return False
        if not self._started:
            self._start()
        return buffer.offer(item)

    def _count_buffer_drop(self, item: Any) -> None:
        self.stats.add("dropped_points", item_points(item), "buffer_full")

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

    def _setup(self) -> bool:
        """Open the durable queue and the sinks, start one thread per sink (on the worker)."""
        cfg = self.config
        try:
            queue = DurableQueue(cfg.queue_dir, cfg.sinks, max_bytes=cfg.max_queue_bytes, fsync=cfg.fsync)
        except Exception as exc:  # noqa: BLE001 - e.g. a read-only folder; keep the data in memory
            _log.error("otel-recursive-metrics: cannot open the durable queue in %s: %s; retrying", cfg.queue_dir, exc)
            return False
        try:
            sinks = list(self._sink_factory())
        except Exception as exc:  # noqa: BLE001
            queue.close()
            _log.error("otel-recursive-metrics: cannot build the sinks: %s; retrying", exc)
            return False
        with self._start_lock:
            self._queue, self._sinks = queue, sinks
            for sink in sinks:
                self._sink_wake[sink.name] = threading.Event()
                thread = threading.Thread(
                    target=self._sink_loop, args=(sink,), name=f"otel-recursive-metrics-sink-{sink.name}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return True

    # -- ingest: memory -> disk ------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        cfg = self.config
        while not self._setup():
            if self._stop.wait(min(5.0, cfg.flush_interval_s)):
                self._release_if_last()
                return
        last_sync = self._clock()
        while True:
            self.buffer.wake.wait(cfg.flush_interval_s)
            self.buffer.wake.clear()
            stopping = self._stop.is_set()
            try:
                self._ingest_once()
                if self._clock() - last_sync >= cfg.flush_interval_s or stopping:
                    assert self._queue is not None
                    self._queue.sync()
                    last_sync = self._clock()
            except Exception:  # noqa: BLE001 - keep the worker alive; the data stays in memory
                _log.exception("otel-recursive-metrics: ingest failed; will retry")
                self._stop.wait(min(1.0, cfg.flush_interval_s))
            if stopping and not len(self.buffer) and not self._ingest.held:
                break
        self._release_if_last()

    def _ingest_once(self) -> None:
        queue = self._queue
        assert queue is not None
        with self._progress:
            requests, self._flush_requests = self._flush_requests, []
        try:
            self._ingest.run_once(queue, stopping=self._stop.is_set(), on_written=self._wake_sinks)
        except BaseException:
            with self._progress:  # answered at the next successful run
                self._flush_requests[:0] = requests
            raise
        if requests:
            # Everything in the queue counts, records left by an earlier process included.
            target = -1 if self._ingest.held else max(self._ingest.last_written_id, queue.last_id())
            with self._progress:
                for request in requests:
                    request[1] = target
                    request[0].set()

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
            try:
                self._queue.close()
            except Exception:  # noqa: BLE001
                _log.exception("closing the durable queue failed")

    # -- flush and shutdown ------------------------------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """True once everything accepted before this call is delivered to every sink."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            # After shutdown nothing is delivered any more; without a start nothing was accepted.
            return not self._started
        if not self._started:
            self._start()
        if self.in_forked_child and not self._threads:
            return True
        request: list[Any] = [threading.Event(), None]
        dead_before = sum(self.stats.snapshot()["dead_lettered_points"].values())
        with self._progress:
            self._flush_requests.append(request)
        self.buffer.wake.set()
        if not request[0].wait(max(0.0, deadline - time.monotonic())):
            return False
        target = request[1]
        if target is None or target < 0:
            return False
        queue = self._queue
        assert queue is not None
        with self._progress:
            while any(queue.cursor(s.name) < target for s in self._sinks):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.5))
        return bool(sum(self.stats.snapshot()["dead_lettered_points"].values()) == dead_before)

    def shutdown(self, timeout_s: float) -> bool:
        """Flush within ``timeout_s``, then stop; idempotent. True if everything was delivered."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            return True
        delivered = True
        if self._started or len(self.buffer):
            delivered = self.flush(max(0.0, deadline - time.monotonic()))
        self._closed = True
        self._stop.set()
        self.buffer.wake.set()
        for event in self._sink_wake.values():
            event.set()
        alive = []
        if self._threads:
            self._threads[0].join(max(0.0, deadline - time.monotonic()))  # ingest, which starts the others
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                alive.append(thread.name)
        if self._queue is None and len(self.buffer):
            # The durable queue never opened (an unwritable folder, say): what is in memory
            # cannot be kept. Say so and count it rather than losing it silently.
            lost = sum(item_points(item) for item in list(self.buffer.items))
            self.stats.add("dropped_points", lost, "queue_unavailable")
            _log.error(
                "otel-recursive-metrics: the durable queue in %s never opened; %d point(s) dropped at shutdown", self.config.queue_dir, lost
            )
            self._report(RuntimeError("durable queue unavailable"), sink="*", points=lost, reason="queue_unavailable", outcome="dropped")
        if alive:
            in_memory = len(self.buffer)
            _log.warning(
                "otel-recursive-metrics: %s still busy at the shutdown deadline; batches already queued stay in %s%s",
                ", ".join(alive),
                self.config.queue_dir,
                f"; {in_memory} item(s) still in memory are lost if the process ends now" if in_memory else "",
            )
        else:
            with self._start_lock:
                release = not self._released
                self._released = True
            if release:
                self._close_resources()
        return delivered and not alive

    # -- introspection -----------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters plus queue figures; see :mod:`otel_recursive_metrics.pipeline.telemetry`."""
        snap = self.stats.snapshot()
        pending_points = 0
        queue = self._queue
        if queue is not None and not self._closed:
            try:
                pending_points = queue.pending()[1]
            except Exception:  # noqa: BLE001
                pending_points = 0
        sent = snap["sent_points"]
        snap["metrics_processed"] = min((sent.get(s, 0) for s in self.config.sinks), default=0)
        snap["buffer_items"] = len(self.buffer) + self._ingest.in_flight_items
        snap["queue_points"] = pending_points + self._ingest.pending_points()
        snap["queue_size"] = snap["buffer_items"] + snap["queue_points"]
        snap["queue_bytes"] = queue.bytes if queue is not None else 0
        snap["queue_capacity_bytes"] = self.config.max_queue_bytes
        snap["sinks"] = list(self.config.sinks)
        return snap

    # -- fork ------------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        if self._queue is not None:
            self._queue.abandon_after_fork()
        _abandoned.extend(self._sinks)
        self.dead_letters._lock = threading.Lock()  # the parent's may have been held at the fork
        self.buffer.reset()
        self.stats.reset()
        self._init_runtime()
        self.in_forked_child = True


def _reset_pipelines_in_child() -> None:
    for pipeline in list(_pipelines):
        try:
            pipeline._after_fork_in_child()
        except Exception:  # noqa: BLE001 - never break the child over our bookkeeping
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pipelines_in_child)


def log_context(resource: dict[str, Any], *, prefix: str = "", attributes_json: str = "{}") -> LogContext:
    """A LogContext for the training API's points."""
    from .. import __version__

    return LogContext(
        resource=resource,
        scope_name="otel_recursive_metrics.training",
        scope_version=__version__,
        attributes_json=attributes_json,
        prefix=prefix,
    )
