"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import otel_recursive_metrics.store.point_store as store_module
from otel_recursive_metrics import ConfigError, MetricValueError, PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.batch import BatchBuilder
from otel_recursive_metrics.pipeline.buffer import RecordItem
from otel_recursive_metrics.pipeline.queue import DurableQueue
from otel_recursive_metrics.pipeline.worker import Pipeline


def pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_an_invalid_unicode_attribute_loses_nothing_beside_it(data_dir: Path) -> None:
    p = pipeline(data_dir)
    bad = TrainingMetrics(prefix="bad.", attributes={"split": "\ud800"}, pipeline=p)
    good = TrainingMetrics(prefix="good.", pipeline=p)
    for step in range(50):
        good.log({"loss": 1.0}, step=step)
        bad.log({"loss": 2.0}, step=step)
    assert p.flush(20.0)
    store = PointStore(data_dir / "metrics.db")
    assert len(store.query("good.loss")) == 50
    bad_points = store.query("bad.loss")
    assert len(bad_points) == 50 and bad_points[0].attributes == {"split": "?"}
    p.shutdown(5.0)


def test_a_failed_queue_write_keeps_the_items_for_the_next_run(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = DurableQueue.append
    failures = [OSError("disk hiccup")]

    def flaky(self: DurableQueue, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DurableQueue, "append", flaky)
    p = pipeline(data_dir, max_batch_points=10)
    for i in range(50):
        p.offer(RecordItem(time.time_ns(), {"metric_name": "loss", "value": float(i), "step": i, "_time_unix_nano": 1_000 + i}))
    assert p.flush(20.0)
    assert [pt.step for pt in PointStore(data_dir / "metrics.db").query("loss")] == list(range(50))
    assert p.get_stats()["dropped_points"] == {}
    p.shutdown(5.0)


def test_the_attribute_cache_refills_after_it_is_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_ATTR_CACHE_MAX", 3)
    store = PointStore(tmp_path / "m.db")
    for round_ in range(3):
        b = BatchBuilder()
        res, sc, m = b.resource({}), b.scope("s"), b.metric("loss", "", "", "gauge")
        for i in range(4):
            b.add_point(res, sc, m, f'{{"k":"{i}"}}', 0, round_ * 10 + i, 1.0)
        assert store.write_batch(b.build()) == 4
    assert store.count() == 12


def test_steps_and_epochs_beyond_64_bits_are_refused_at_the_call(data_dir: Path) -> None:
    p = pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=p)
    with pytest.raises(MetricValueError, match="step"):
        metrics.log({"loss": 1.0}, step=2**63)
    with pytest.raises(MetricValueError, match="epoch"):
        metrics.log({"loss": 1.0}, step=1, epoch=-5)
    p.shutdown(1.0)


def test_two_records_with_one_timestamp_are_two_points(data_dir: Path) -> None:
    from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector

    collector = AsyncMetricsCollector({"metrics_flush_interval_sec": 0.05}, pipeline=pipeline(data_dir))
    collector.submit_metric({"metric_name": "acc", "value": 0.5, "timestamp": 1_700_000_000.0, "id": "A"})
    collector.submit_metric({"metric_name": "acc", "value": 0.7, "timestamp": 1_700_000_000.0, "id": "B"})
    collector.stop(wait_for_completion=True, timeout=20)
    assert sorted(p.value for p in PointStore(data_dir / "metrics.db").query("acc")) == [0.5, 0.7]


def test_flush_after_shutdown_answers_at_once(data_dir: Path) -> None:
    p = pipeline(data_dir)
    p.offer(RecordItem(time.time_ns(), {"metric_name": "loss", "value": 1.0, "_time_unix_nano": 1}))
    assert p.shutdown(10.0)
    started = time.monotonic()
    assert p.flush(30.0) is False
    assert time.monotonic() - started < 10.0  # not the whole 30 s timeout


def test_a_data_folder_that_cannot_be_used_fails_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(ConfigError, match=r"dir=.*not-a-folder.*cannot keep the durable queue"):
        pipeline(blocker / "otel-metrics")
    with pytest.raises(ConfigError, match="not-a-folder"):
        TrainingMetrics(dir=blocker)
