"""The delivery stage: one sink's loop from the durable queue, through retry, to a final outcome.

Each sink gets its own :class:`SinkDelivery` on its own thread. It reads the first record after
the sink's cursor, hands the batch to the :class:`~otel_recursive_metrics.pipeline.retry.Retrier`, and
moves the cursor only once the batch has a final outcome: delivered, or written to the
dead-letter queue with its reason. A stop request interrupts a backoff and leaves the batch in
the queue, to be sent at the next start. Because each sink has its own cursor and thread, a sink
that is down never holds another one back.

Logging is rate-limited: the first retry of a batch is logged, not every one; a dead letter is
logged at most once per ``_LOG_EVERY_S`` per sink, with a count of the ones in between.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from ..config import Config
from ..sinks.base import Sink
from .batch import PointBatch
from .dead_letter import DeadLetterQueue
from .ingest import RecentBatches, Report
from .queue import DurableQueue
from .retry import Outcome, Retrier, RetryPolicy
from .telemetry import Stats

__all__ = ["SinkDelivery", "safe_error"]

_log = logging.getLogger(__name__)
_LOG_EVERY_S = 60.0


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
        queue: DurableQueue,
        stats: Stats,
        dead_letters: DeadLetterQueue,
        recent: RecentBatches,
        report: Report,
        stop: threading.Event,
        wake: threading.Event,
        on_progress: Callable[[], None],
    ) -> None:
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
        self._current_points = 0
        self._rejected_seen = int(getattr(sink, "rejected_points", 0) or 0)
        self._last_dead_letter_log = float("-inf")
        self._unlogged_dead_letters = 0
        cfg = config
        self.retrier = Retrier(
            RetryPolicy(
                cfg.retry_delay_s, cfg.retry_multiplier, cfg.retry_jitter, cfg.retry_max_delay_s, cfg.retry_max_elapsed_s, cfg.max_retries
            ),
            attempt_timeout_s=cfg.send_timeout_s,
            sleep=stop.wait,
            on_retry=self._on_retry,
            on_failing=self._on_failing,
        )

    def run(self) -> None:
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
            if record is None:
                self.wake.wait(self.config.flush_interval_s)
                self.wake.clear()
                continue
            self._current_points = record.points
            cached = self.recent.get(record.id)
            try:
                batch = cached if cached is not None else PointBatch.decode(queue.payload(record.id))
            except (ValueError, KeyError) as exc:
                self.stats.add("dropped_points", record.points, "corrupt")
                _log.error("otel-recursive-metrics: record %d in the durable queue is unreadable: %s", record.id, exc)
                self._finish(record.id)
                continue
            except Exception:  # noqa: BLE001 - e.g. the disk is busy: keep the thread, try again
                _log.exception("otel-recursive-metrics: reading record %d of the durable queue failed", record.id)
                stop.wait(1.0)
                continue
            started = time.monotonic()
            result = self.retrier.deliver(functools.partial(_send, self.sink, batch), stop.is_set)
            if result.outcome is Outcome.STOPPED:
                return
            if result.outcome is Outcome.DELIVERED:
                self.stats.sent(self.name, record.points, time.monotonic() - started)
                self._count_rejected()
            else:
                self._dead_letter(batch, result.reason)
            self._finish(record.id)

    def _count_rejected(self) -> None:
        """OTLP ``partial_success``: the sink keeps a running count of refused points."""
        rejected = int(getattr(self.sink, "rejected_points", 0) or 0)
        if rejected > self._rejected_seen:
            self.stats.add("rejected_points", rejected - self._rejected_seen, self.name)
            self._rejected_seen = rejected

    def _on_retry(self, retry: int, exc: BaseException, delay_s: float) -> None:
        self.stats.add("retries", 1, self.name)
        self.stats.set_last_error(self.name, safe_error(exc))
        if retry <= 1:
            _log.warning("otel-recursive-metrics: sink %s failed (%s); retrying in %.1fs", self.name, safe_error(exc), delay_s)

    def _on_failing(self, exc: BaseException) -> None:
        self.stats.set_failing(self.name)
        self._report(exc, sink=self.name, points=self._current_points, reason=safe_error(exc), outcome="failing")

    def _dead_letter(self, batch: PointBatch, reason: str) -> None:
        name, points = self.name, len(batch)
        try:
            entry = self.dead_letters.add(batch, reason=reason, sink=name)
        except Exception as exc:  # noqa: BLE001 - a full disk, or data the encoder refuses
            self.stats.add("dropped_points", points, "dead_letter_failed")
            _log.error("otel-recursive-metrics: writing a dead letter failed (%s); dropped %d point(s) for sink %s", exc, points, name)
            self._report(exc, sink=name, points=points, reason="dead_letter_failed", outcome="dropped")
            return
        if entry is None:
            self.stats.add("dropped_points", points, "dead_letter_full")
            _log.error("otel-recursive-metrics: dead-letter folder full; dropped %d point(s) for sink %s: %s", points, name, reason)
            self._report(RuntimeError(reason), sink=name, points=points, reason="dead_letter_full", outcome="dropped")
            return
        self.stats.add("dead_lettered_points", points, name)
        self.stats.set_last_error(name, reason)
        now = time.monotonic()
        if now - self._last_dead_letter_log >= _LOG_EVERY_S:
            more = f" (and {self._unlogged_dead_letters} more batch(es) since the last message)" if self._unlogged_dead_letters else ""
            _log.error("otel-recursive-metrics: dead-lettered %d point(s) for sink %s to %s: %s%s", points, name, entry.path, reason, more)
            self._last_dead_letter_log, self._unlogged_dead_letters = now, 0
        else:
            self._unlogged_dead_letters += 1
        self._report(RuntimeError(reason), sink=name, points=points, reason=reason, outcome="dead_lettered", dead_letter=str(entry.path))

    def _finish(self, record_id: int) -> None:
        try:
            self.queue.done(self.name, record_id)
        except Exception:  # noqa: BLE001 - e.g. closed under us at shutdown; sent again next start
            if not self.stop.is_set():
                _log.exception("otel-recursive-metrics: updating the durable queue failed")
        self._on_progress()
