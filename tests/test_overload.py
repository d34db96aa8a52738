"""A loop that logs faster than the worker can write: durable within the interval, or counted.

The promise: after ``kill -9``, nothing logged more than ``flush_interval_s`` + 1 s before the
kill is missing from the data folder unless it was counted as dropped before the kill. Memory
stays bounded meanwhile, and ``get_stats()["durability_lag_s"]`` says how far behind the worker is.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from otel_recursive_metrics import TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline

from .helpers import deliver_queued
from .programs import read_reports, start_log_loop, wait_ready

VALUES = 20
FLUSH_INTERVAL_S = 1.0


def stored_steps(data_dir: Path) -> set[int]:
    store = deliver_queued(data_dir)
    assert store is not None
    return {p.step for p in store.query("m0") if p.step is not None}


def test_after_kill_9_nothing_older_than_the_interval_is_missing_uncounted(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    # As fast as it can, 20 values a call: well past what one worker writes on this machine.
    child = start_log_loop(
        data_dir,
        "--rate-hz",
        "0",
        "--values",
        str(VALUES),
        "--flush-interval-s",
        str(FLUSH_INTERVAL_S),
        "--report",
        str(report),
        "--report-every-s",
        "0.05",
    )
    try:
        wait_ready(child)
        time.sleep(6.0)
        killed_at = time.time_ns()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    reports = read_reports(report)
    assert len(reports) > 20
    last = reports[-1]
    counted = sum(last["stats"]["dropped_points"].values())
    assert counted > 0, "the loop outran the worker: the overflow policy must have counted drops"
    assert set(last["stats"]["dropped_points"]) <= {"overload", "buffer_full"}
    # Steps logged more than flush_interval + 1 s before the kill.
    cutoff = killed_at - int((FLUSH_INTERVAL_S + 1.0) * 1e9)
    old_steps = max((r["steps"] for r in reports if r["time_unix_nano"] <= cutoff), default=0)
    assert old_steps > 1000
    stored = stored_steps(data_dir)
    missing = sum(1 for s in range(old_steps) if s not in stored) * VALUES
    assert missing <= counted, f"{missing} old point(s) missing, only {counted} counted as dropped before the kill"
    # Memory stayed bounded (the issue saw hundreds of MB of backlog) and the lag was reported.
    assert max(r["max_rss_kib"] for r in reports) < 600 * 1024
    lags = [r["stats"]["durability_lag_s"] for r in reports]
    assert max(lags) < FLUSH_INTERVAL_S + 1.0 + 1.0, f"durability lag reached {max(lags):.2f} s"


def test_memory_capacity_follows_the_rate_the_worker_achieves(data_dir: Path) -> None:
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.5, batch_size=10))
    metrics = TrainingMetrics(pipeline=pipeline)
    # The documented guess (pipeline/buffer.py): what the worker writes in half of the interval's
    # time budget (flush_interval_s + 0.75 s) at an assumed 40,000 items a second, at most
    # max_buffer_items (100,000): (0.5 + 0.75) / 2 * 40,000.
    INITIAL_CAPACITY_ITEMS = 25_000
    assert pipeline.get_stats()["buffer_capacity_items"] == INITIAL_CAPACITY_ITEMS  # a cautious guess until measured
    deadline = time.monotonic() + 20
    step = 0
    while pipeline.get_stats()["buffer_capacity_items"] == INITIAL_CAPACITY_ITEMS and time.monotonic() < deadline:
        metrics.log({f"m{k}": 1.0 for k in range(VALUES)}, step=step)
        step += 1
    capacity = pipeline.get_stats()["buffer_capacity_items"]
    assert capacity != INITIAL_CAPACITY_ITEMS, "the capacity must follow the measured rate"
    assert 1000 <= capacity <= 100_000
    pipeline.shutdown(30.0)


def test_durability_lag_is_zero_once_everything_is_on_disk(data_dir: Path) -> None:
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=5.0, batch_size=1_000_000))
    metrics = TrainingMetrics(pipeline=pipeline)
    metrics.log({"loss": 1.0}, step=0)
    time.sleep(0.3)
    assert pipeline.get_stats()["durability_lag_s"] >= 0.25  # waiting in memory for the interval
    assert pipeline.persist(10.0)
    assert pipeline.get_stats()["durability_lag_s"] == 0.0
    pipeline.shutdown(10.0)
