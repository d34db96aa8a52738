"""Retry, dead letters, shutdown deadlines: the promises about sinks that misbehave."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.errors import PermanentError, RetryableError
from otel_recursive_metrics.pipeline.buffer import RecordItem
from otel_recursive_metrics.pipeline.retry import Outcome, Retrier, RetryPolicy
from otel_recursive_metrics.pipeline.worker import Pipeline

from .helpers import ScriptedSink, wait_until


def record(i: int) -> RecordItem:
    return RecordItem(
        time.time_ns(), {"metric_name": "loss", "value": float(i), "step": i, "_time_unix_nano": 1_700_000_000_000_000_000 + i}
    )


def make_pipeline(data_dir: Path, *sinks: ScriptedSink, **options: Any) -> Pipeline:
    settings = {"dir": data_dir, "flush_interval_s": 0.05, "retry_delay_s": 0.01, "retry_max_delay_s": 0.05, "retry_jitter": 0.0}
    settings.update(options)
    return Pipeline(load_config(sinks=",".join(s.name for s in sinks), **settings), sinks=list(sinks))


# -- the retry stage alone, with a fake clock ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    clock = FakeClock()
    errors = [RetryableError("503"), RetryableError("503"), RetryableError("429", retry_after_s=7.0), RetryableError("503")] + [
        RetryableError("503")
    ] * 6
    attempts = []

    def send(deadline: float) -> None:
        attempts.append(deadline - clock.now)
        if errors:
            raise errors.pop(0)

    policy = RetryPolicy(initial_delay_s=1.0, multiplier=2.0, jitter=0.0, max_delay_s=5.0, max_elapsed_s=1000.0)
    result = Retrier(policy, attempt_timeout_s=3.0, sleep=clock.sleep, clock=clock).deliver(send, lambda: False)
    assert result.outcome is Outcome.DELIVERED and result.attempts == 11
    assert clock.sleeps == [1.0, 2.0, 7.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    assert attempts == [3.0] * 11  # each attempt gets its own timeout


def test_jitter_stays_within_its_band() -> None:
    policy = RetryPolicy(initial_delay_s=4.0, multiplier=1.5, jitter=0.5)
    assert policy.delay_s(0, lambda: 0.0) == 2.0 and policy.delay_s(0, lambda: 1.0) == 6.0


def test_budget_spent_dead_letters_with_the_last_error() -> None:
    clock = FakeClock()

    def send(deadline: float) -> None:
        raise RetryableError("503 Service Unavailable")

    policy = RetryPolicy(initial_delay_s=1.0, multiplier=2.0, jitter=0.0, max_delay_s=30.0, max_elapsed_s=20.0)
    result = Retrier(policy, attempt_timeout_s=1.0, sleep=clock.sleep, clock=clock).deliver(send, lambda: False)
    assert result.outcome is Outcome.BUDGET_SPENT
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # the next wait (16 s) would pass the 20 s budget
    assert "retry budget of 20s spent after 5 attempt(s)" in result.reason and "503 Service Unavailable" in result.reason


def test_permanent_error_is_never_retried() -> None:
    clock = FakeClock()
    calls = []

    def send(deadline: float) -> None:
        calls.append(1)
        raise PermanentError("400 Bad Request: metric name invalid")

    result = Retrier(RetryPolicy(), attempt_timeout_s=1.0, sleep=clock.sleep, clock=clock).deliver(send, lambda: False)
    assert (result.outcome, len(calls), clock.sleeps) == (Outcome.PERMANENT, 1, [])
    assert "400 Bad Request" in result.reason


def test_stop_interrupts_a_backoff() -> None:
    stop = threading.Event()

    def send(deadline: float) -> None:
        raise RetryableError("down")

    retrier = Retrier(RetryPolicy(initial_delay_s=60.0, jitter=0.0, max_delay_s=60.0), attempt_timeout_s=1.0, sleep=stop.wait)
    threading.Timer(0.1, stop.set).start()
    result = retrier.deliver(send, stop.is_set)
    assert result.outcome is Outcome.STOPPED


# -- the whole pipeline with scripted sinks ---------------------------------------------------------


def test_permanent_failure_goes_to_the_dead_letter_queue_after_one_attempt(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="permanent")
    pipeline = make_pipeline(data_dir, sink)
    reports: list[tuple[str, dict[str, Any]]] = []
    pipeline.register_error_callback(lambda err, ctx: reports.append((str(err), ctx)))
    for i in range(5):
        assert pipeline.offer(record(i))
    assert pipeline.flush(10.0) is False  # nothing was delivered
    assert sink.attempts == 1, "a permanent error must not be retried"
    [entry] = list(pipeline.dead_letters.entries())
    assert entry.sink == "store" and entry.points == 5 and "400" in entry.reason
    line = json.loads(entry.path.read_text())
    dps = line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"]
    assert [dp["asDouble"] for dp in dps] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert dps[0]["timeUnixNano"] == "1700000000000000000"  # 64-bit integers as strings
    assert [p.step for p in _points(entry.batch())] == [0, 1, 2, 3, 4]
    stats = pipeline.get_stats()
    assert stats["dead_lettered_points"] == {"store": 5} and stats["retries"] == {}
    assert reports and reports[0][1]["outcome"] == "dead_lettered" and reports[0][1]["points"] == 5
    for path in (entry.path, entry.meta_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    pipeline.shutdown(5.0)


def _points(batch: Any) -> list[Any]:
    from types import SimpleNamespace

    return [SimpleNamespace(step=p[7], value=p[6]) for p in batch.points]


def test_transient_failures_are_retried_and_delivered(data_dir: Path) -> None:
    sink = ScriptedSink("store", script=["retry", "crash", "retry"])
    pipeline = make_pipeline(data_dir, sink)
    for i in range(3):
        pipeline.offer(record(i))
    assert pipeline.flush(10.0) is True
    assert sink.attempts == 4 and sink.points() == 3
    stats = pipeline.get_stats()
    assert stats["retries"] == {"store": 3} and stats["sent_points"] == {"store": 3} and stats["dead_lettered_points"] == {}
    pipeline.shutdown(5.0)


def test_failing_sink_is_reported_after_max_retries_and_keeps_trying(data_dir: Path) -> None:
    sink = ScriptedSink("store", script=["retry"] * 4)
    pipeline = make_pipeline(data_dir, sink, max_retries=2)
    reports: list[dict[str, Any]] = []
    pipeline.register_error_callback(lambda err, ctx: reports.append(ctx))
    pipeline.offer(record(1))
    assert pipeline.flush(10.0) is True
    assert [r["outcome"] for r in reports] == ["failing"]
    assert sink.points() == 1
    pipeline.shutdown(5.0)


def test_one_sink_down_does_not_hold_the_other_back(data_dir: Path) -> None:
    down = ScriptedSink("otlp", default="retry")
    up = ScriptedSink("store")
    pipeline = make_pipeline(data_dir, up, down, retry_delay_s=0.05, retry_max_delay_s=0.05)
    for i in range(10):
        pipeline.offer(record(i))
    wait_until(lambda: up.points() == 10, what="the healthy sink to receive everything")
    assert down.points() == 0
    down.default = "ok"
    wait_until(lambda: down.points() == 10, what="the recovered sink to catch up")
    assert pipeline.flush(10.0)
    pipeline.shutdown(5.0)


def test_shutdown_returns_within_its_deadline_with_a_hung_sink(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="hang")
    pipeline = make_pipeline(data_dir, sink)
    for i in range(3):
        pipeline.offer(record(i))
    wait_until(lambda: sink.attempts >= 1, what="the first send")
    done = threading.Event()
    result: list[bool] = []

    def stop() -> None:
        result.append(pipeline.shutdown(0.5))
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(20.0), "shutdown outlived its deadline by far"
    assert result == [False]  # it says it could not deliver
    assert pipeline.shutdown(0.1) is True  # idempotent
    # When the receiver finally answers, the lingering thread finishes that batch and lets go
    # of the queue; whatever it did not finish is there for the next start. Nothing twice.
    sink.release.set()
    wait_until(lambda: not any(t.is_alive() for t in pipeline._threads), what="the lingering sink thread")
    fresh = ScriptedSink("store")
    again = make_pipeline(data_dir, fresh)
    assert again.flush(10.0) is True
    assert again._queue is not None and again._queue.slot == 0, "the old pipeline still holds its queue slot"
    assert sink.points() + fresh.points() == 3
    again.shutdown(5.0)


def test_offer_after_shutdown_is_counted_not_lost_silently(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir, ScriptedSink("store"))
    pipeline.shutdown(1.0)
    assert pipeline.offer(record(1)) is False
    assert pipeline.get_stats()["dropped_points"] == {"shutdown": 1}


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_memory_overflow_policy_counts_every_drop(data_dir: Path, policy: str) -> None:
    sink = ScriptedSink("store", default="hang")
    # flush_interval long and batch_size large: the worker does not drain while we fill.
    pipeline = make_pipeline(data_dir, sink, overflow=policy, max_buffer_items=10, batch_size=1000, flush_interval_s=30.0)
    accepted = [pipeline.offer(record(i)) for i in range(25)]
    stats = pipeline.get_stats()
    assert stats["dropped_points"] == {"buffer_full": 15}
    if policy == "drop_newest":
        assert accepted == [True] * 10 + [False] * 15
        kept = [item.record["value"] for item in list(pipeline.buffer.items)]
        assert kept == [float(i) for i in range(10)]
    else:
        assert all(accepted)
        kept = [item.record["value"] for item in list(pipeline.buffer.items)]
        assert kept == [float(i) for i in range(15, 25)]
    sink.release.set()
    pipeline.shutdown(5.0)


def test_block_policy_waits_for_room_then_refuses(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="hang")
    pipeline = make_pipeline(
        data_dir, sink, overflow="block", max_buffer_items=3, batch_size=1000, flush_interval_s=30.0, block_timeout_s=0.05
    )
    pipeline._start()
    pipeline.buffer.wake.clear()
    # Stop the ingest thread from draining by holding it: replace drain with a no-op briefly.
    original = pipeline.buffer.drain
    pipeline.buffer.drain = lambda limit=None: []  # type: ignore[method-assign]
    try:
        assert all(pipeline.offer(record(i)) for i in range(3))
        started = time.monotonic()
        assert pipeline.offer(record(99)) is False
        assert time.monotonic() - started >= 0.04  # it did wait for room before refusing
        assert pipeline.get_stats()["dropped_points"] == {"buffer_full": 1}
    finally:
        pipeline.buffer.drain = original  # type: ignore[method-assign]
    sink.release.set()
    pipeline.shutdown(5.0)


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_flush_after_shutdown_answers_at_once(data_dir: Path) -> None:
    p = _pipeline(data_dir)
    p.offer(RecordItem(time.time_ns(), {"metric_name": "loss", "value": 1.0, "_time_unix_nano": 1}))
    assert p.shutdown(10.0)
    started = time.monotonic()
    assert p.flush(30.0) is False
    assert time.monotonic() - started < 10.0  # not the whole 30 s timeout


def test_the_store_as_the_only_sink_takes_batches_straight_and_the_queue_when_locked(data_dir: Path) -> None:
    """The store is the durable log when it is the only sink; what it does not take at once
    (another rank holds its write lock) goes through the queue, and nothing is lost or repeated."""
    import sqlite3

    from otel_recursive_metrics import PointStore, TrainingMetrics

    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(100):
        metrics.log({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
    assert metrics.flush(30.0)
    queue = pipeline._queue
    assert queue is not None
    assert queue.last_id() == 0, "nothing went through the queue"
    assert pipeline.get_stats()["sent_points"] == {"store": 200}
    other_rank = sqlite3.connect(data_dir / "metrics.db", isolation_level=None)
    other_rank.execute("BEGIN IMMEDIATE")  # holds the write lock
    for step in range(100, 200):
        metrics.log({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
    wait_until(lambda: queue.last_id() > 0, 30, "a batch to go to the queue instead")
    assert pipeline._ingest.direct_fallbacks >= 1
    for step in range(200, 300):
        metrics.log({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
    time.sleep(1.0)
    other_rank.execute("ROLLBACK")
    assert metrics.flush(60.0)
    assert pipeline.get_stats()["sent_points"] == {"store": 600}
    metrics.close(10.0)
    store = PointStore(data_dir / "metrics.db", readonly=True)
    steps = [p.step for p in store.query("loss")]
    assert sorted(steps) == list(range(300)), "every step once"
    rows = [(p.step,) for p in sorted(store.query("loss"), key=lambda p: p.row_id)]  # in the order they were written
    assert [r[0] for r in rows] == list(range(300)), "in order: while the queue held batches for the store, none went past them"


def test_a_dead_letter_the_disk_refuses_is_held_in_the_queue_for_its_sink_alone(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One sink refuses a batch for good and the disk will not take the dead letter: those points
    are held in the queue for that sink only (nothing dropped), the other sink still gets every
    point, and once the disk takes the dead letter they are dead-lettered. (Issue 18, 11d: they
    used to be counted as dropped for that sink.)"""
    store, otlp = ScriptedSink("store"), ScriptedSink("otlp", default="permanent")
    pipeline = make_pipeline(data_dir, store, otlp)
    write = pipeline.dead_letters.add
    refusals: list[int] = []
    disk_is_full = True

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        if disk_is_full:
            refusals.append(1)
            raise OSError(28, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(pipeline.dead_letters, "add", disk_full)
    for i in range(5):
        assert pipeline.offer(record(i))
    wait_until(lambda: len(refusals) >= 2, 30, "the dead letter to be refused twice")
    assert pipeline.flush(0.5) is False
    stats = pipeline.get_stats()
    assert store.points() == 5
    assert stats["dropped_points"] == {} and stats["sink_dropped_points"] == {}, "held, not dropped"
    assert "dead letter" in stats["last_error"]["otlp"]
    queue = pipeline._queue
    assert queue is not None and queue.pending("otlp")[1] == 5, "the batch waits in the queue for otlp"
    disk_is_full = False
    wait_until(lambda: queue.pending("otlp")[1] == 0, 30, "the held batch to be dead-lettered once the disk takes it")
    stats = pipeline.get_stats()
    assert stats["dead_lettered_points"] == {"otlp": 5} and stats["dropped_points"] == {}
    assert sum(e.points for e in pipeline.dead_letters.entries()) == 5
    pipeline.shutdown(5.0)
