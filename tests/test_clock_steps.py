"""A step of the wall clock (NTP, a VM resumed) neither drops memory nor keeps it past its bound.

An item's age in memory is measured on the monotonic clock from when it was offered; only the
points' own timestamps come from the wall clock. The wall clock is made to jump at its seam
(``time.time_ns``), the monotonic one at its own (``time.monotonic_ns``); everything else is
the real pipeline writing a real store.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.training import metrics as training_metrics

HOUR_NS = 3600 * 10**9
VALUES = {f"v{k}": float(k) for k in range(20)}


def _jump(monkeypatch: pytest.MonkeyPatch, name: str, by_ns: int) -> None:
    real = getattr(time, name)
    monkeypatch.setattr(time, name, lambda: real() + by_ns)


def test_a_wall_clock_step_forward_while_logging_drops_nothing(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """240,000 values, batch_size 5,000; the wall clock jumps an hour a third of the way in."""
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=5.0, batch_size=5000))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(4000):
        metrics.log(VALUES, step=step)
    _jump(monkeypatch, "time_ns", HOUR_NS)
    for step in range(4000, 12_000):
        metrics.log(VALUES, step=step)
    assert pipeline.flush(120.0), pipeline.get_stats()["dropped_points"]
    stats = pipeline.get_stats()
    pipeline.shutdown(10.0)
    assert stats["dropped_points"] == {}
    assert stats["sent_points"] == {"store": 240_000}
    assert PointStore(data_dir / "metrics.db").count() == 240_000


@pytest.mark.parametrize("step_ns", [HOUR_NS, -HOUR_NS], ids=["forward", "backward"])
def test_what_waits_in_memory_when_the_wall_clock_steps_is_kept(data_dir: Path, monkeypatch: pytest.MonkeyPatch, step_ns: int) -> None:
    """Logged with a long interval, so it waits in memory; then the clock (points' too) steps."""
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=60.0, batch_size=1_000_000))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(1000):
        metrics.log(VALUES, step=step)
    _jump(monkeypatch, "time_ns", step_ns)
    monkeypatch.setattr(training_metrics, "_time_ns", time.time_ns)  # the points' own clock steps too
    for step in range(1000, 2000):
        metrics.log(VALUES, step=step)
    assert pipeline.flush(60.0), pipeline.get_stats()["dropped_points"]
    stats = pipeline.get_stats()
    pipeline.shutdown(10.0)
    assert stats["dropped_points"] == {}
    steps = [p.step for p in PointStore(data_dir / "metrics.db").query("v0")]
    assert sorted(steps) == list(range(2000))


def test_an_item_past_its_bound_on_the_monotonic_clock_is_still_dropped_and_counted(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound itself still holds: an hour on the monotonic clock is an hour (a worker that was
    stopped that long), and what waited so long is counted as ``overload``, not written late."""
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=60.0, batch_size=1_000_000))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(100):
        metrics.log({"loss": 1.0}, step=step)
    _jump(monkeypatch, "monotonic_ns", HOUR_NS)
    assert not pipeline.flush(30.0)
    stats = pipeline.get_stats()
    pipeline.shutdown(10.0)
    assert stats["dropped_points"] == {"overload": 100}
