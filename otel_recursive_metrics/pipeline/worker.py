"""The background worker: builds the stages, runs them on their threads, and stops them.

Threads (named, daemon, started lazily at the first offer or flush):

- ``otel-recursive-metrics-ingest`` opens the durable queue and the sinks, builds the
  :class:`~.ingest.Ingest` stage (memory -> point batches -> durable queue; with the store as the
  only sink, straight into the store) and runs it (:mod:`.ingest_loop`);
- ``otel-recursive-metrics-sink-<name>``, one per sink this process delivers to
  (:mod:`.deliveries`), runs :class:`~.delivery.SinkDelivery` (durable queue -> retry -> sink or
  dead-letter queue) from that sink's own cursor. With ``offline`` the network sinks get none:
  their batches wait on disk for ``otel-recursive-metrics sync``.

The caller's side never waits on disk or network: :attr:`Pipeline.offer` is
:meth:`.buffer.MemoryBuffer.offer` itself. The data folder is checked once, at construction: one that
cannot hold files fails then, with a :class:`~otel_recursive_metrics.errors.ConfigError` naming it.

Ending: :meth:`Pipeline.persist` puts what is in memory on disk (what SIGTERM does).
:meth:`Pipeline.flush` is True once everything accepted before it is delivered to every sink
this process delivers to, with nothing dropped or dead-lettered on the way.
:meth:`Pipeline.shutdown` persists within its deadline, waits ``shutdown_grace_s`` at most for
delivery, and says what is left: it is sent at the next start with this data folder, or by
``sync``. SIGTERM, interpreter exit and fork act on every pipeline at once (:mod:`.ending`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._files import folder_problem
from ..config import Config
from ..errors import ConfigError
from ..model.resource import default_resource_attributes
from ..queue.dead_letter import DeadLetterQueue
from ..queue.folder import DurableQueue, UnusableQueue, abandoned
from ..sinks.base import Sink, build_sinks, is_local_sink
from ..sinks.store import StoreSink
from ..store.schema import refuse_newer_store
from . import ending
from .buffer import MemoryBuffer, item_points
from .deliveries import Deliveries
from .delivery import safe_error
from .ingest import Backlog, Ingest
from .ingest_loop import IngestLoop
from .producers import Producer, Producers
from .queue_faults import QueueFaults, QueueFindings
from .recent import RecentBatches
from .telemetry import DropReason, Stats, pipeline_stats

__all__ = ["ErrorCallback", "Pipeline", "Producer"]

_log = logging.getLogger(__name__)

#: ``callback(error, context)``; context has ``sink``, ``points``, ``reason`` and ``outcome``
#: (a :class:`~otel_recursive_metrics.model.kinds.LossOutcome`: ``"dead_lettered"``, ``"failing"`` or ``"dropped"``).
ErrorCallback = Callable[[BaseException, dict[str, Any]], None]


class Pipeline:
    """Owns the buffer, the durable queue, the sinks and the worker threads for one config."""

    #: ``offer(item) -> bool``: hand an item to the worker; never blocks unless ``overflow=block``
    #: was chosen. It is the buffer's own :meth:`~.buffer.MemoryBuffer.offer`, with no call in
    #: between: the training thread makes it for every ``log``.
    offer: Callable[[Any], bool]

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
        if StoreSink.name in config.sinks:
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
            flush_interval_s=config.flush_interval_s,
            overflow=config.overflow,
            block_timeout_s=config.block_timeout_s,
            on_drop=lambda item: self.stats.drop(item_points(item), DropReason.BUFFER_FULL),
            on_shut=self._admit,
        )
        self.offer = self.buffer.offer
        #: Sinks this process sends to; with ``offline``, the network ones are left to ``sync``.
        self.offline_sinks = tuple(s for s in config.sinks if config.offline and not is_local_sink(s))
        self.delivering_sinks = tuple(s for s in config.sinks if s not in self.offline_sinks)
        self._init_runtime()
        self.in_forked_child = False
        ending.register(self)

    def _init_runtime(self) -> None:
        self._start_lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._queue: DurableQueue | UnusableQueue | None = None
        self._sinks: list[Sink] = []
        self._threads: list[threading.Thread] = []
        self._recent = RecentBatches()
        self._faults = QueueFaults(self.config.queue_dir, self.stats, self._report)
        self._loop = IngestLoop(
            self.config, self.buffer, self.stats, faults=self._faults, report=self._report, stop=self._stop, progress=self._progress
        )
        # The stages built on the ingest thread once the queue and the sinks are open.
        self._ingest: Ingest | None = None
        self._deliveries: Deliveries | None = None
        self._released = False
        self._losses_answered = 0
        self._producers = Producers(lambda: not self._closed and not self.in_forked_child)

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

    def _admit(self, item: Any) -> bool:
        """An item offered while the buffer is shut: the first one starts the worker; after shutdown, it is lost."""
        if self._closed:
            self.stats.drop(item_points(item), DropReason.SHUTDOWN)
            return False
        self._start()
        return True

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
            self._threads = [threading.Thread(target=self._run_ingest, name="otel-recursive-metrics-ingest", daemon=True)]
            self._started = self.buffer.open = True
            self._threads[0].start()
        self.install_sigterm_handler()

    def install_sigterm_handler(self) -> bool:
        """Put the SIGTERM handler in front of the program's, if ``handle_sigterm`` (see :mod:`.ending`)."""
        return ending.install_sigterm_handler(self)

    def _run_ingest(self) -> None:
        self._loop.run(self._setup, on_written=self._wake_sinks)
        self._release_if_last()

    def _wake_sinks(self) -> None:
        if self._deliveries is not None:
            self._deliveries.wake()

    def _sink_thread_ended(self) -> None:
        if self._closed:
            self._release_if_last()

    def _setup(self) -> Ingest | None:
        """Open the durable queue and the sinks, build the ingest stage, start one thread per sink (on the worker)."""
        cfg = self.config
        store_only = cfg.sinks == (StoreSink.name,) and cfg.store_direct
        found = QueueFindings(cfg.sinks, self.stats, self.dead_letters, self._report)
        queue: DurableQueue | UnusableQueue
        try:
            queue = DurableQueue(
                cfg.queue_dir,
                self.delivering_sinks,
                max_bytes=cfg.max_queue_bytes,
                fsync=cfg.fsync,
                offline_sinks=self.offline_sinks,
                on_foreign=found.dead_letter_foreign,
                on_corrupt=found.corrupt_file,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a folder gone read-only; keep the data in memory
            self._faults.failed(exc, pending_points=0)
            if not store_only:
                return None
            queue = UnusableQueue(cfg.queue_dir, self.delivering_sinks, exc)  # the store takes the points directly
        try:
            sinks = [s for s in self._sink_factory() if s.name in self.delivering_sinks]
        except Exception as exc:  # noqa: BLE001
            queue.close()
            self.stats.set_last_error("sinks", f"cannot build the sinks: {safe_error(exc)}")
            _log.error("otel-recursive-metrics: cannot build the sinks: %s; retrying", exc)
            return None
        # The store as the only destination is the durable log (see Ingest._write_direct).
        direct = next((s for s in sinks if isinstance(s, StoreSink)), None) if store_only else None
        ingest = Ingest(
            cfg,
            self.buffer,
            self.stats,
            queue=queue,
            direct=direct,
            faults=self._faults,
            recent=self._recent,
            report=self._report,
            resource_attributes=lambda: self.resource_attributes,
        )
        deliveries = Deliveries(
            cfg,
            queue,
            sinks,
            stats=self.stats,
            dead_letters=self.dead_letters,
            recent=self._recent,
            report=self._report,
            stop=self._stop,
            progress=self._progress,
            on_thread_end=self._sink_thread_ended,
        )
        with self._start_lock:
            self._queue, self._sinks, self._ingest, self._deliveries = queue, sinks, ingest, deliveries
            self._threads.extend(deliveries.start())
        self._producers.set_up()
        return ingest

    def on_setup(self, start: Callable[[], None]) -> None:
        """Run ``start`` on the worker once the queue and the sinks are open (see :mod:`.producers`)."""
        self._producers.on_setup(start)

    def add_producer(self, producer: Producer) -> None:
        """Stop ``producer`` first at :meth:`shutdown` (at most 5 s), so that its last output is persisted."""
        self._producers.add(producer)

    # -- ending -----------------------------------------------------------------------------------

    def _release_if_last(self) -> None:
        """Close the sinks and the queue once no other thread of this pipeline runs (once; the last one to end does it)."""
        me = threading.current_thread()
        with self._start_lock:
            if self._released or any(t.is_alive() and t is not me for t in self._threads):
                return
            self._released = True
        if self._deliveries is not None:
            self._deliveries.close()

    def persist_async(self) -> threading.Event | None:
        """Ask the worker to put everything in memory on disk now; an event set when it has run.

        Takes no lock (a signal handler calls it). None when there is nothing to do.
        """
        if not self._started or self._closed or (self.in_forked_child and not self._threads):
            return None
        return self._loop.persist().done

    def persist(self, timeout_s: float) -> bool:
        """Put everything accepted so far on disk within ``timeout_s``; True when it is there."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if not self._started and len(self.buffer):
            self._start()
        if not self._started or self._closed:
            return not len(self.buffer)
        request = self._loop.persist()
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
        request = self._loop.flush()
        if not request.done.wait(max(0.0, deadline - time.monotonic())) or not request.ok:
            return False
        deliveries = self._deliveries
        if deliveries is None or not deliveries.wait_delivered(deadline, target_id=request.target_id):
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

    def shutdown(self, timeout_s: float) -> bool:
        """Persist within ``timeout_s``, wait ``shutdown_grace_s`` for delivery, stop; idempotent.

        True if everything was delivered (see :meth:`flush`). What was not stays on disk and one
        log line says how much, where, and how it will be sent.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            return True
        self._producers.shutdown(deadline)  # first, so that their last output is persisted below
        if not self._started and not len(self.buffer):
            self._closed = True
            return True
        persisted = self.persist(deadline - time.monotonic())
        deliveries = self._deliveries
        delivered = False
        if persisted and deliveries is not None:
            delivered = deliveries.wait_delivered(min(deadline, time.monotonic() + self.config.shutdown_grace_s))
        waiting = {} if deliveries is None else deliveries.pending_by_sink()  # while the queue is still open
        self._stop_threads(deadline)
        if not persisted:
            ending.count_lost_at_shutdown(self, self._report)
        ending.log_what_is_left(self, waiting)
        return self._nothing_lost_since_last_asked() and delivered and persisted

    def _stop_threads(self, deadline: float) -> None:
        self._closed, self.buffer.open = True, False
        self._stop.set()
        self.buffer.wake.set()
        self._wake_sinks()
        if self._threads:
            self._threads[0].join(max(0.0, deadline - time.monotonic()))  # ingest, which starts the others
        self._loop.abandon = True  # the ingest thread, if still at it, gives up at its next turn
        for thread in list(self._threads[1:]):
            # A sink in the middle of a send is left behind: its batch stays queued on disk.
            thread.join(max(0.0, min(deadline - time.monotonic(), 0.2)))
        self._release_if_last()  # else the last thread to end does it

    # -- what the stages hold (for get_stats, SIGTERM and the end) -------------------------------

    @property
    def deliveries(self) -> Deliveries | None:
        """The sinks' threads over the durable queue, once the worker opened it (see :mod:`.deliveries`)."""
        return self._deliveries

    @property
    def failing(self) -> DropReason | None:
        """Why the durable queue refuses writes now, or None."""
        return self._faults.failing

    def backlog(self) -> Backlog:
        """What was accepted and is not on disk yet (before the ingest stage exists: the buffer)."""
        ingest = self._ingest
        if ingest is None:
            return Backlog(len(self.buffer), 0, self.buffer.oldest_offered_ns())
        return ingest.backlog()

    def get_stats(self) -> dict[str, Any]:
        """Counters plus queue figures; see :func:`.telemetry.pipeline_stats`."""
        return pipeline_stats(self)

    def after_fork_in_child(self) -> None:
        """In a forked child: abandon the parent's queue and connections untouched, start over empty."""
        if self._queue is not None:
            self._queue.abandon_after_fork()
        abandoned.extend(self._sinks)
        self.dead_letters.reset_after_fork()
        self.buffer.reset()
        self.stats.reset()
        self._init_runtime()
        self.in_forked_child = True
