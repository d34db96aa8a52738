"""The delivery stage: one sink's loop from the durable queue, through retry, to a final outcome.

Each sink gets its own :class:`SinkDelivery` on its own thread. It reads the first record after
the sink's cursor, hands the batch to the :class:`~otel_recursive_metrics.pipeline.retry.Retrier`,
and moves the cursor only once the batch has a final outcome: delivered, or written to the
dead-letter queue with its reason. A stop request interrupts a backoff and leaves the batch in
the queue, to be sent at the next start. Because each sink has its own cursor and thread, a sink
that is down never holds another one back.

One bad point never costs its neighbours: when a sink refuses a batch permanently *about its
data* (:attr:`~otel_recursive_metrics.errors.PermanentError.splittable`: an HTTP 400, a value
the store cannot hold), the halves are sent apart, and so on down to the offending points, which
alone are dead-lettered (as one entry per batch). The search is bounded: when the first halves
and quarters are all refused, the refusal is about every point and the batch is dead-lettered
whole; otherwise at most :data:`MAX_SPLIT_SENDS` sends, after which what is still refused is
dead-lettered as it stands.

A dead letter the disk refuses (full, or the folder unwritable) is not a drop: the batch is held,
its record left in the queue with the cursor unmoved, and only the dead letter's write is tried
again, with backoff (0.5 s doubling to 30 s), until it goes through; a stop leaves the record for
the next start, and ``sync`` for the next sync. A dead letter's reason is one line of about 200
characters (:func:`~.dead_letter.brief_reason`): not a receiver's whole HTML error page.

Logging is rate-limited: the first retry of a batch is logged, not every one; a dead letter is
logged at most once per ``_LOG_EVERY_S`` per sink, with a count of the ones in between.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable

from ..config import Config
from ..model.batch import PointBatch
from ..model.kinds import LossOutcome
from ..queue.dead_letter import DeadLetterQueue, brief_reason
from ..queue.slot import QueueSlot
from ..sinks.base import Sink
from .ingest import RecentBatches, Report
from .retry import Outcome, Result, Retrier, RetryPolicy
from .telemetry import DropReason, Stats

__all__ = ["MAX_SPLIT_SENDS", "SinkDelivery", "safe_error"]

_log = logging.getLogger(__name__)
_LOG_EVERY_S = 60.0
#: Backoff of a dead letter the disk refuses: first wait, and the most (the batch is held meanwhile).
_DEAD_LETTER_RETRY_FIRST_S = 0.5
_DEAD_LETTER_RETRY_MAX_S = 30.0

#: Most sends spent looking for the points a receiver refuses in one batch (each half is one).
MAX_SPLIT_SENDS = 64
#: When the halves and quarters are all refused too, the whole batch is (no point in going on).
_GIVE_UP_AFTER = 4


def safe_error(exc: BaseException) -> str:
    """An error's text for logs and stats; sinks never put header values in their messages."""
    return f"{type(exc).__name__}: {exc}"


def _send(sink: Sink, batch: PointBatch, deadline: float) -> None:
    sink.send(batch, deadline)


class SinkDelivery:
    """Delivers one sink's records in queue order until ``stop`` is set."""

    def __init__(
        self,
        sink: Sink,
        *,
        config: Config,
        queue: QueueSlot,
        stats: Stats,
        dead_letters: DeadLetterQueue,
        recent: RecentBatches,
        report: Report,
        stop: threading.Event,
        wake: threading.Event,
        on_progress: Callable[[], None],
        dead_letter_when_budget_spent: bool = True,
    ) -> None:
        """``dead_letter_when_budget_spent=False`` (``sync``): a batch still failing when its retry
        budget is spent stays queued, and :meth:`run` returns; a run dead-letters it and goes on."""
        self.sink = sink
        self.name = sink.name
        self.config = config
        self.queue = queue
        self.stats = stats
        self.dead_letters = dead_letters
        self.recent = recent
        self._report = report
        self.stop = stop
        self.wake = wake
        self._on_progress = on_progress
        self._keep_when_budget_spent = not dead_letter_when_budget_spent
        self._current_points = 0
        self._rejected_seen = sink.rejected_points
        self._last_dead_letter_log = float("-inf")
        self._unlogged_dead_letters = 0
        self.retrier = Retrier(
            RetryPolicy.from_config(config),
            attempt_timeout_s=config.send_timeout_s,
            sleep=stop.wait,
            on_retry=self._on_retry,
            on_failing=self._on_failing,
        )

    def run(self, *, until_id: int | None = None) -> None:
        """Deliver until stopped; with ``until_id``, return once every record up to it is final."""
        stop, queue = self.stop, self.queue
        while not stop.is_set():
            try:
                record = queue.next_for(self.name, with_payload=False)
            except Exception:  # noqa: BLE001 - e.g. the disk went away; try again shortly
                if stop.is_set():
                    return
                _log.exception("otel-recursive-metrics: reading the durable queue failed")
                stop.wait(1.0)
                continue
            if record is None or (until_id is not None and record.id > until_id):
                if until_id is not None:
                    return
                self.wake.wait(self.config.flush_interval_s)
                self.wake.clear()
                continue
            self._current_points = record.points
            cached = self.recent.get(record.id)
            try:
                batch = cached if cached is not None else PointBatch.decode(queue.payload(record.id))
            except (ValueError, KeyError) as exc:
                self.stats.drop(record.points, DropReason.CORRUPT, sink=self.name)
                _log.error("otel-recursive-metrics: record %d in the durable queue is unreadable: %s", record.id, exc)
                self._report(exc, sink=self.name, points=record.points, reason=DropReason.CORRUPT.value, outcome=LossOutcome.DROPPED)
                self._finish(record.id)
                continue
            except Exception:  # noqa: BLE001 - e.g. the disk is busy: keep the thread, try again
                _log.exception("otel-recursive-metrics: reading record %d of the durable queue failed", record.id)
                stop.wait(1.0)
                continue
            if not self._deliver(batch):
                return  # stopping: the record stays queued
            self._finish(record.id)

    def _deliver(self, batch: PointBatch) -> bool:
        """Deliver ``batch`` (splitting it to isolate refused points); False if stopped first."""
        started = time.monotonic()
        result = self._attempt(batch)
        if result.outcome is Outcome.STOPPED:
            return False
        if result.outcome is Outcome.BUDGET_SPENT and self._keep_when_budget_spent:
            self.stats.set_last_error(self.name, result.reason)
            return False
        if result.outcome is Outcome.DELIVERED:
            self._delivered(batch.data_points(), started)
            return True
        if not result.splittable or len(batch) < 2:
            return self._dead_letter(batch, result.reason)
        # The receiver refuses something in this batch: find what, keep the rest.
        delivered = 0
        refused: list[tuple[PointBatch, Result]] = []
        parts = collections.deque(batch.halves())
        sends = 0
        while parts:
            part = parts.popleft()
            sends += 1
            outcome = self._attempt(part)
            if outcome.outcome is Outcome.STOPPED:
                # Whatever was delivered is sent again at the next start (at least once).
                return False
            if outcome.outcome is Outcome.DELIVERED:
                delivered += part.data_points()
            elif sends >= _GIVE_UP_AFTER and not delivered:
                # Halves and quarters all refused: the refusal is about every point (a wrong
                # schema, say), not one of them. Keep the whole batch as one dead letter.
                return self._dead_letter(batch, result.reason)
            elif outcome.splittable and len(part) > 1 and sends + len(parts) + 2 <= MAX_SPLIT_SENDS:
                parts.extend(part.halves())
            else:
                refused.append((part, outcome))
        if refused and not self._dead_letter(
            PointBatch.merge([part for part, _ in refused], batch_id=refused[0][0].id + "+"), refused[0][1].reason
        ):
            return False  # the whole batch stays queued: its delivered parts are sent again (at least once)
        if delivered:
            self._delivered(delivered, started)
        return True

    def _attempt(self, batch: PointBatch) -> Result:
        return self.retrier.deliver(functools.partial(_send, self.sink, batch), self.stop.is_set)

    def _delivered(self, points: int, started: float) -> None:
        self.stats.sent(self.name, points, time.monotonic() - started)
        # OTLP partial_success: the sink keeps a running count of refused points.
        rejected = self.sink.rejected_points
        if rejected > self._rejected_seen:
            self.stats.reject(self.name, rejected - self._rejected_seen)
            self._rejected_seen = rejected

    def _on_retry(self, retry: int, exc: BaseException, delay_s: float) -> None:
        self.stats.retry(self.name, safe_error(exc))
        if retry <= 1:
            _log.warning("otel-recursive-metrics: sink %s failed (%s); retrying in %.1fs", self.name, safe_error(exc), delay_s)

    def _on_failing(self, exc: BaseException) -> None:
        self.stats.set_failing(self.name)
        self._report(exc, sink=self.name, points=self._current_points, reason=safe_error(exc), outcome=LossOutcome.FAILING)

    def _dead_letter(self, batch: PointBatch, reason: str) -> bool:
        """Write ``batch`` as a dead letter; True once it has a final outcome.

        When the disk refuses the dead letter (full, or the folder unwritable), the batch is held:
        its record stays in the queue (the cursor does not move) and the write is tried again with
        backoff until it goes through. False when stopped meanwhile, or at once under ``sync``:
        the record is then still queued, for the next start or the next sync.
        """
        name, points = self.name, batch.data_points()
        reason = brief_reason(reason)
        delay_s, tries = _DEAD_LETTER_RETRY_FIRST_S, 0
        while True:
            try:
                entry = self.dead_letters.add(batch, reason=reason, sink=name)
                break
            except OSError as exc:  # a full disk, an unwritable folder: hold the batch, try again
                tries += 1
                self._dead_letter_held(exc, points, tries, delay_s)
                if self._keep_when_budget_spent or self.stop.wait(delay_s):
                    return False
                delay_s = min(delay_s * 2, _DEAD_LETTER_RETRY_MAX_S)
            except Exception as exc:  # noqa: BLE001 - not the disk: a batch that cannot be written at all
                self.stats.drop(points, DropReason.DEAD_LETTER_FAILED, sink=name)
                self.stats.set_last_error(name, f"writing a dead letter failed: {safe_error(exc)}")
                _log.error("otel-recursive-metrics: writing a dead letter failed (%s); dropped %d point(s) for sink %s", exc, points, name)
                self._report(exc, sink=name, points=points, reason=DropReason.DEAD_LETTER_FAILED.value, outcome=LossOutcome.DROPPED)
                return True
        if tries:
            _log.warning(
                "otel-recursive-metrics: the dead letter of %d point(s) for sink %s is written, after %d refusal(s)", points, name, tries
            )
        if entry is None:
            self.stats.drop(points, DropReason.DEAD_LETTER_FULL, sink=name)
            _log.error("otel-recursive-metrics: dead-letter folder full; dropped %d point(s) for sink %s: %s", points, name, reason)
            self._report(
                RuntimeError(reason), sink=name, points=points, reason=DropReason.DEAD_LETTER_FULL.value, outcome=LossOutcome.DROPPED
            )
            return True
        self.stats.dead_lettered(name, points, reason)
        now = time.monotonic()
        if now - self._last_dead_letter_log >= _LOG_EVERY_S:
            more = f" (and {self._unlogged_dead_letters} more batch(es) since the last message)" if self._unlogged_dead_letters else ""
            _log.error("otel-recursive-metrics: dead-lettered %d point(s) for sink %s to %s: %s%s", points, name, entry.path, reason, more)
            self._last_dead_letter_log, self._unlogged_dead_letters = now, 0
        else:
            self._unlogged_dead_letters += 1
        self._report(
            RuntimeError(reason), sink=name, points=points, reason=reason, outcome=LossOutcome.DEAD_LETTERED, dead_letter=str(entry.path)
        )
        return True

    def _dead_letter_held(self, exc: OSError, points: int, tries: int, delay_s: float) -> None:
        """The disk refused a dead letter: say so (the first time, then once a minute)."""
        name = self.name
        self.stats.set_last_error(name, f"writing a dead letter failed: {safe_error(exc)}; the batch is held in the queue")
        if tries == 1 or (delay_s >= _DEAD_LETTER_RETRY_MAX_S and tries % 2 == 0):  # then once a minute
            _log.error(
                "otel-recursive-metrics: writing a dead letter failed (%s); %d point(s) for sink %s are held in the durable"
                " queue and the write is tried again (%d refusal(s) so far)",
                exc,
                points,
                name,
                tries,
            )
        if tries == 1:
            self._report(exc, sink=name, points=points, reason=DropReason.DEAD_LETTER_FAILED.value, outcome=LossOutcome.FAILING)

    def _finish(self, record_id: int) -> None:
        try:
            self.queue.done(self.name, record_id)
        except Exception:  # noqa: BLE001 - e.g. closed under us at shutdown; sent again next start
            if not self.stop.is_set():
                _log.exception("otel-recursive-metrics: updating the durable queue failed")
        self._on_progress()
