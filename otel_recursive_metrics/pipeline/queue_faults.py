"""What the durable queue tells the pipeline: that it refuses writes (and takes them again), and
what it found when it was opened.

A disk that fills, frees a few pages and fills again must not flood the log, nor the user's
error callbacks. :class:`QueueFaults` keeps the condition (a :class:`~.telemetry.DropReason`:
``disk_full``, ``queue_full``, ``queue_unavailable``) and says it once per condition per minute,
whatever it does in between: one ERROR line (with a traceback only the first time an unexpected
error appears) and one ``failing`` callback; then, when writes resume, one WARNING line, unless
the failure was a flap that was never announced. ``get_stats()["last_error"]["queue"]`` holds the
condition while it lasts.

:class:`QueueFindings` takes what the queue reports as it opens (``on_corrupt``, ``on_foreign`` of
:class:`~otel_recursive_metrics.queue.folder.DurableQueue`): a damaged file moved aside (its
points counted as ``corrupt``), and records still pending for a sink no longer configured
(dead-lettered for that sink, to be replayed with ``otel-recursive-metrics dlq replay``).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..model.batch import PointBatch
from ..model.kinds import LossOutcome
from ..queue.dead_letter import DeadLetterQueue
from ..queue.folder import QueueRecord
from .telemetry import DropReason, Stats

__all__ = ["QueueFaults", "QueueFindings", "Report", "classify_queue_error"]

_log = logging.getLogger(__name__)

#: ``report(error, **context)``: forwards to the user's error callbacks.
Report = Callable[..., None]

_LOG_EVERY_S = 60.0


def classify_queue_error(exc: BaseException) -> DropReason:
    """What a failed queue write means: a full disk, or a queue that cannot be used at all."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DropReason.DISK_FULL
    if isinstance(exc, sqlite3.DatabaseError) and "full" in str(exc).lower():
        return DropReason.DISK_FULL
    return DropReason.QUEUE_UNAVAILABLE


@dataclass
class _Failure:
    reason: DropReason
    since: float
    logged_at: float
    traceback_logged: bool


class QueueFaults:
    """The queue's refusals, counted and said at a bounded rate (see the module docstring)."""

    def __init__(self, queue_dir: Path, stats: Stats, report: Report) -> None:
        self.queue_dir = queue_dir
        self.stats = stats
        self._report = report
        self._failure: _Failure | None = None
        # When each condition was last logged (and reported): see failed().
        self._announced: dict[DropReason, float] = {}
        self._resumed_logged: dict[DropReason, float] = {}

    @property
    def failing(self) -> DropReason | None:
        """Why the queue refuses writes now, or None."""
        failure = self._failure
        return None if failure is None else failure.reason

    def failed(self, exc: BaseException, *, pending_points: int, reason: DropReason | None = None, unexpected: bool = False) -> None:
        """Record that the queue refused (or could not be opened): stats, callbacks, a rate-limited log line."""
        reason = reason or classify_queue_error(exc)
        now = time.monotonic()
        text = f"durable queue in {self.queue_dir}: {reason.value}: {type(exc).__name__}: {exc}"
        self.stats.set_last_error("queue", text)
        failure = self._failure
        if failure is None or failure.reason is not reason:
            self._failure = _Failure(reason, now, now, unexpected)
            # A disk that fills, frees a few pages and fills again must not flood the log: one
            # line (and one callback) per condition per minute, whatever it does in between.
            if now - self._announced.get(reason, float("-inf")) >= _LOG_EVERY_S:
                self._announced[reason] = now
                _log.error(
                    "otel-recursive-metrics: %s; %d point(s) wait in memory and are retried every run%s",
                    text,
                    pending_points,
                    "" if unexpected else " (further failures of this kind: at most one line a minute)",
                    exc_info=exc if unexpected else None,
                )
                self._report(exc, sink="*", points=pending_points, reason=reason.value, outcome=LossOutcome.FAILING)
        elif now - failure.logged_at >= _LOG_EVERY_S:
            failure.logged_at = now
            show_traceback = unexpected and not failure.traceback_logged
            failure.traceback_logged = failure.traceback_logged or unexpected
            _log.error("otel-recursive-metrics: %s (for %.0f s now)", text, now - failure.since, exc_info=exc if show_traceback else None)

    def recovered(self) -> None:
        """The queue took a write: clear the condition, and say so if its failure was announced."""
        failure = self._failure
        if failure is None:
            return
        self._failure = None
        self.stats.clear_last_error("queue")
        announced = self._announced.get(failure.reason, float("-inf"))
        if self._resumed_logged.get(failure.reason, float("-inf")) >= announced:
            return  # this condition's failure was not announced since the last such line: a flap
        self._resumed_logged[failure.reason] = time.monotonic()
        _log.warning(
            "otel-recursive-metrics: the durable queue in %s takes writes again after %.1f s (%s)",
            self.queue_dir,
            time.monotonic() - failure.since,
            failure.reason.value,
        )


class QueueFindings:
    """What the durable queue found as it opened, counted and kept (see the module docstring)."""

    def __init__(self, sinks: tuple[str, ...], stats: Stats, dead_letters: DeadLetterQueue, report: Report) -> None:
        self.sinks = sinks
        self.stats = stats
        self.dead_letters = dead_letters
        self._report = report

    def corrupt_file(self, moved_to: Path, points: int | None, error: BaseException) -> None:
        """A damaged or unusable queue file was moved aside to ``moved_to`` (``points`` in it; None: unknown)."""
        if points != 0:  # 0: junk where a queue file belongs (a folder, a FIFO), none of our points
            self.stats.drop(points or 0, DropReason.CORRUPT)
        lost = "an unknown number of" if points is None else str(points)
        text = f"a damaged or unusable queue file was moved aside to {moved_to}; {lost} point(s) in it are lost ({error})"
        self.stats.set_last_error("queue", text)
        self._report(
            error, sink="*", points=points or 0, reason=DropReason.CORRUPT.value, outcome=LossOutcome.DROPPED, moved_to=str(moved_to)
        )

    def dead_letter_foreign(self, sink: str, records: list[QueueRecord]) -> None:
        """Records left pending for a sink no longer configured: dead-letter them for that sink."""
        reason = f"sink {sink!r} is no longer configured (sinks: {','.join(self.sinks)}); these points were still pending for it"
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
        self._report(RuntimeError(reason), sink=sink, points=points, reason=reason, outcome=LossOutcome.DEAD_LETTERED)
