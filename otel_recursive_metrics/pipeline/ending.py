"""How pipelines end: at SIGTERM, at interpreter exit, in a forked child, and what each one says it left.

Every :class:`~.worker.Pipeline` registers itself here (:func:`register`; a weak reference), so
that what the process does to all of them at once lives in one place:

- **SIGTERM.** :func:`install_sigterm_handler` hands :mod:`.preemption` a :class:`SigtermView` of
  each pipeline worth keeping (running, or one an SDK collect may start; not a forked child's
  that logged nothing): what the handler needs of a pipeline (its ``Persistable`` protocol), and
  nothing else;
- **exit.** At interpreter exit every running pipeline is shut down, in parallel, within one
  budget of :data:`EXIT_TIMEOUT_S`;
- **fork.** ``os.register_at_fork`` resets every pipeline in the child: new buffer, new locks,
  no threads, the parent's queue and connections abandoned untouched
  (:meth:`~.worker.Pipeline.after_fork_in_child`).

What is left, said once: at shutdown :func:`count_lost_at_shutdown` (what memory still held)
and :func:`log_what_is_left` (what waits on disk, where, and how it will be sent; what was lost
in this process); :meth:`SigtermView.sigterm_summary` for the SIGTERM line.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from ..model.kinds import LossOutcome
from ..sinks.base import is_local_sink
from . import preemption
from .queue_faults import Report
from .telemetry import DropReason

if TYPE_CHECKING:
    from .worker import Pipeline

__all__ = ["EXIT_TIMEOUT_S", "SigtermView", "count_lost_at_shutdown", "install_sigterm_handler", "log_what_is_left", "register"]

_log = logging.getLogger(__name__)

#: Budget of the shutdown of every running pipeline at interpreter exit.
EXIT_TIMEOUT_S = 30.0
#: How often a wait for the local store wakes to check its deadline (SIGTERM's budget is short).
_LOCAL_POLL_S = 0.05

_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def register(pipeline: Pipeline) -> None:
    """Include ``pipeline`` in what SIGTERM, fork and exit act on (for as long as it lives)."""
    _pipelines.add(pipeline)


def install_sigterm_handler(pipeline: Pipeline) -> bool:
    """Put the SIGTERM handler in front of the program's, if ``pipeline`` wants it (``handle_sigterm``; see :mod:`.preemption`)."""
    return pipeline.config.handle_sigterm and not pipeline.in_forked_child and preemption.install(_sigterm_views)


def _sigterm_views() -> list[SigtermView]:
    """What SIGTERM keeps: running pipelines, and those an SDK collect may start (not a fork's)."""
    return [SigtermView(p) for p in list(_pipelines) if not p.closed and (p.started or not p.in_forked_child)]


class SigtermView:
    """One pipeline as the SIGTERM handler sees it (:class:`.preemption.Persistable`)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def sigterm_timeout_s(self) -> float:
        return self.pipeline.config.sigterm_timeout_s

    def persist_async(self) -> threading.Event | None:
        """Start putting memory on disk; an event set when done (None if the pipeline holds nothing)."""
        return self.pipeline.persist_async()

    def deliver_locally(self, deadline: float) -> bool:
        """Wait until ``deadline`` (monotonic) for the local sinks (the store) to take everything on disk."""
        deliveries = self.pipeline.deliveries
        return deliveries is None or deliveries.wait_delivered(deadline, local_only=True, poll_s=_LOCAL_POLL_S)

    def sigterm_summary(self, persisted: bool) -> str | None:
        """One phrase for the SIGTERM log line: what this pipeline kept and where."""
        pipeline, config = self.pipeline, self.pipeline.config
        if not persisted:
            backlog = pipeline.backlog()
            return (
                f"{backlog.items} item(s) and {backlog.points} point(s) were still in memory for {config.queue_dir}"
                f" ({(pipeline.failing or DropReason.OVERLOAD).value}); they are lost"
            )
        waiting = {} if pipeline.deliveries is None else pipeline.deliveries.pending_by_sink()
        if not waiting:
            local = any(is_local_sink(s) for s in pipeline.delivering_sinks)
            where = config.resolved_store_path if local else config.queue_dir
            return f"everything logged is on disk ({where})"
        total = max(waiting.values())
        return (
            f"{total} point(s) are on disk in {config.queue_dir}, sent at the next start"
            f" or by: otel-recursive-metrics sync --dir {config.dir}"
        )


def count_lost_at_shutdown(pipeline: Pipeline, report: Report) -> None:
    """What memory still held when shutdown ran out of time: dropped, counted, reported."""
    lost = pipeline.buffer.points() + pipeline.backlog().points
    if lost:
        reason = pipeline.failing or DropReason.SHUTDOWN
        pipeline.stats.drop(lost, reason)
        pipeline.buffer.take_all()
        error = RuntimeError(f"{lost} point(s) not on disk at shutdown")
        report(error, sink="*", points=lost, reason=reason.value, outcome=LossOutcome.DROPPED)


def log_what_is_left(pipeline: Pipeline, waiting: dict[str, int]) -> None:
    """At shutdown: one line on what waits on disk per sink (``waiting``), one on what this process lost."""
    config = pipeline.config
    if waiting:
        offline = pipeline.offline_sinks
        where = ", ".join(f"{points} for {sink}" + (" (offline)" if sink in offline else "") for sink, points in waiting.items())
        last = pipeline.stats.snapshot()["last_error"]
        why = "; ".join(f"{s}: {last[s]}" for s in waiting if s in last)
        _log.warning(
            "otel-recursive-metrics: point(s) wait on disk in %s (%s)%s; they are sent at the next start with this data folder,"
            " or now with: otel-recursive-metrics sync --dir %s",
            config.queue_dir,
            where,
            f"; last error: {why}" if why else "",
            config.dir,
        )
    snap = pipeline.stats.snapshot()
    dropped, dead = snap["dropped_points"], snap["dead_lettered_points"]
    if dropped or dead:
        parts = []
        if dropped:
            parts.append("dropped " + ", ".join(f"{n} ({reason})" for reason, n in sorted(dropped.items())))
        if dead:
            parts.append(
                f"{sum(dead.values())} point(s) dead-lettered, kept in {pipeline.dead_letters.folder}"
                f" (see them with: otel-recursive-metrics dlq list --dir {pipeline.config.dir})"
            )
        _log.warning(
            "otel-recursive-metrics: in this process: %s. get_stats() has the counts; docs/guarantees.md says what each reason means.",
            "; ".join(parts),
        )


def _reset_pipelines_in_child() -> None:
    for pipeline in list(_pipelines):
        try:
            pipeline.after_fork_in_child()
        except Exception:  # noqa: BLE001 - never break the child over our bookkeeping
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pipelines_in_child)


@atexit.register
def _shutdown_at_exit() -> None:
    """Persist every running pipeline, give delivery its grace, stop: one budget for all."""
    pipelines = [p for p in list(_pipelines) if p.started and not p.closed]
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
