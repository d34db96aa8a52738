"""``get_stats()`` after ``close()`` still says what waits on disk (the OTLP endpoint down at exit)."""

from __future__ import annotations

import socket
from pathlib import Path

from otel_recursive_metrics import TrainingMetrics
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.slot import count_pending


def refused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_queue_points_after_close_are_the_points_still_on_disk(data_dir: Path) -> None:
    metrics = TrainingMetrics(
        dir=data_dir, sinks="store,otlp", otlp_endpoint=refused_endpoint(), shutdown_grace_s=0.5, flush_interval_s=0.1
    )
    for step in range(100):
        metrics.log({"loss": 1.0, "acc": 0.5}, step=step)
    assert not metrics.close(30.0)
    stats = metrics.get_stats()
    assert stats["dropped_points"] == {} and stats["sent_points"].get("store") == 200
    assert stats["queue_points"] == 200, "the otlp sink's 200 points wait on disk"
    assert stats["queue_size"] == 200 and stats["buffer_items"] == 0
    # And that is what the slot files on disk hold.
    assert sum(count_pending(slot) or 0 for slot in (data_dir / "queue").glob("slot-*.db")) == 200


def test_the_seed_collector_reports_its_queue_after_stop(data_dir: Path) -> None:
    pipeline = Pipeline(load_config(dir=data_dir, sinks="otlp", otlp_endpoint=refused_endpoint(), shutdown_grace_s=0.2))
    collector = AsyncMetricsCollector(pipeline=pipeline)
    for i in range(10):
        collector.submit_metric({"metric_name": "loss", "value": float(i)})
    assert not collector.stop(wait_for_completion=True, timeout=10.0)
    assert collector.get_stats()["queue_size"] == 10
