"""A full disk or a folder that stops taking writes: bounded memory, counted drops, resumption.

Two kinds of tests. The first fills a real 24 MB tmpfs, as a user's disk fills (it needs root to
mount one and skips without). The second makes SQLite itself refuse to grow the durable queue
(``max_page_count``: the same "database or disk is full" error a full disk gives), so the
behaviour is checked on every machine.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.buffer import RecordItem
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.folder import DurableQueue
from otel_recursive_metrics.sinks.store import StoreSink

from .helpers import fill, wait_until

VALUES = 10


class Loop:
    """A training loop on a thread: ``rate_hz`` calls of ``VALUES`` values a second."""

    def __init__(self, metrics: TrainingMetrics, rate_hz: float) -> None:
        self.metrics, self.period = metrics, 1.0 / rate_hz
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        names = [f"m{k}" for k in range(VALUES)]
        started = time.monotonic()
        while not self._stop.is_set():
            self.metrics.log(dict.fromkeys(names, float(self.steps)), step=self.steps)
            self.steps += 1
            delay = started + self.steps * self.period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)


def stored_points(store: Path) -> int:
    return len({(p.metric, p.step) for p in PointStore(store, readonly=True).query()})


def queue_log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "durable queue" in r.getMessage() and r.levelno >= logging.ERROR]


def test_a_full_disk_is_bounded_counted_reported_and_survived(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = small_disk / "otel-metrics"
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.5, batch_size=50)
    callbacks: list[dict[str, Any]] = []
    metrics.pipeline.register_error_callback(lambda exc, ctx: callbacks.append(ctx))
    ballast = fill(small_disk, leave_bytes=2 << 20)
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    with Loop(metrics, rate_hz=1000) as loop:  # 10,000 values/s
        wait_until(lambda: metrics.get_stats()["queue_failing"] == "disk_full", 60, "the disk to fill")
        full_since = time.monotonic()
        peaks = []
        while time.monotonic() - full_since < 6.0:
            stats = metrics.get_stats()
            peaks.append((stats["buffer_items"], stats["queue_points"]))
            time.sleep(0.1)
        stats = metrics.get_stats()
        assert stats["dropped_points"].get("disk_full", 0) > 0, stats["dropped_points"]
        assert "disk_full" in stats["last_error"]["queue"]
        assert any(c["reason"] == "disk_full" and c["outcome"] == "failing" for c in callbacks)
        # Memory within its caps: what waits is at most the interval's worth (plus one chunk).
        assert max(items for items, _ in peaks) <= stats["buffer_capacity_items"] + 2_000
        assert max(points for _, points in peaks) < 50_000
        # One line per condition, not one per retry.
        assert len(queue_log_lines(caplog)) <= 2
        ballast.unlink()  # space comes back
        wait_until(lambda: metrics.get_stats()["queue_failing"] is None, 60, "writing to resume")
        assert "queue" not in metrics.get_stats()["last_error"]
    # The store sink retries with backoff (up to retry_max_delay_s): give it the time to catch up.
    # flush() is True only if nothing was lost since the last answer: the disk_full drops above
    # make this first one False once everything is delivered, the next one True.
    assert not metrics.flush(90.0), "flush must say that points were dropped (disk_full) on the way"
    assert metrics.get_stats()["queue_points"] == 0, "delivery resumes by itself once there is space"
    assert metrics.flush(30.0), "everything is delivered and nothing was lost since the last flush"
    metrics.close(60.0)
    stats = metrics.get_stats()
    logged = loop.steps * VALUES
    dropped = sum(stats["dropped_points"].values())
    stored = stored_points(data_dir / "metrics.db")
    assert logged == stored + dropped, f"logged {logged} != stored {stored} + dropped {dropped} ({stats['dropped_points']})"


def refuse_growth(pipeline: Pipeline) -> Any:
    """Make SQLite answer "database or disk is full" to the next write that needs a new page, in the
    queue and in the store (one disk: with the store as the only sink, batches go straight into
    it, and into the queue when it refuses); returns the queue."""
    queue = pipeline._queue
    assert queue is not None
    for conn in _connections(pipeline):
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")
    return queue


def allow_growth(pipeline: Pipeline) -> None:
    """Undo :func:`refuse_growth`: the disk has space again."""
    for conn in _connections(pipeline):
        conn.execute("PRAGMA max_page_count=1073741823")


def _connections(pipeline: Pipeline) -> list[Any]:
    assert pipeline._queue is not None
    return [pipeline._queue._conn, *(sink.store._conn for sink in pipeline._sinks if isinstance(sink, StoreSink))]


def test_at_exit_what_could_not_reach_disk_is_counted_and_said_in_one_line(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.3)
    for step in range(100):
        metrics.log({"loss": 1.0}, step=step)
    assert metrics.flush(30.0)
    refuse_growth(metrics.pipeline)
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    wide = {f"w{k}": 1.0 for k in range(200)}  # more than the free pages the queue still has
    for step in range(100, 200):
        metrics.log(wide, step=step)
    assert not metrics.close(3.0)
    dropped = metrics.get_stats()["dropped_points"]
    assert sum(dropped.values()) == 20_000 and set(dropped) <= {"disk_full", "overload"}, dropped
    summary = [r.getMessage() for r in caplog.records if "in this process" in r.getMessage()]
    assert len(summary) == 1 and "dropped 20000 (disk_full)" in summary[0], [r.getMessage() for r in caplog.records]
    assert stored_points(data_dir / "metrics.db") == 100


def test_a_queue_that_cannot_grow_holds_a_bounded_backlog_and_resumes(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.3, batch_size=20))
    metrics = TrainingMetrics(pipeline=pipeline)
    metrics.log({"loss": 0.0}, step=0)
    assert metrics.flush(30.0)
    refuse_growth(pipeline)
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    with Loop(metrics, rate_hz=500) as loop:
        wait_until(lambda: pipeline.get_stats()["queue_failing"] == "disk_full", 30, "the queue to refuse")
        time.sleep(3.0)
        stats = pipeline.get_stats()
        assert stats["dropped_points"].get("disk_full", 0) > 0
        assert stats["durability_lag_s"] <= 0.3 + 0.75 + 0.5
        assert len(queue_log_lines(caplog)) <= 2
        allow_growth(pipeline)
        wait_until(lambda: pipeline.get_stats()["queue_failing"] is None, 30, "writing to resume")
    # shutdown() is True only if everything was delivered with nothing lost since the last flush
    # answered: the disk_full drops above make it False. The rest was delivered: no line says
    # points wait on disk, and the count below holds.
    caplog.clear()
    assert pipeline.shutdown(30.0) is False, "shutdown must say that points were dropped (disk_full)"
    assert not [r.getMessage() for r in caplog.records if "wait on disk" in r.getMessage()]
    stats = pipeline.get_stats()
    logged = 1 + loop.steps * VALUES
    dropped = sum(stats["dropped_points"].values())
    assert logged == stored_points(data_dir / "metrics.db") + dropped


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_a_failed_queue_write_keeps_the_items_for_the_next_run(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = DurableQueue.append
    failures = [OSError("disk hiccup")]

    def flaky(self: DurableQueue, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DurableQueue, "append", flaky)
    p = _pipeline(data_dir, max_batch_points=10)
    for i in range(50):
        p.offer(RecordItem(time.time_ns(), {"metric_name": "loss", "value": float(i), "step": i, "_time_unix_nano": 1_000 + i}))
    assert p.flush(20.0)
    assert [pt.step for pt in PointStore(data_dir / "metrics.db").query("loss")] == list(range(50))
    assert p.get_stats()["dropped_points"] == {}
    p.shutdown(5.0)
