"""The seed's API: AsyncMetricsCollector and MetricsStore, same names, same usage, durable underneath."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_recursive_metrics import ConfigError, load_config
from otel_recursive_metrics import async_metrics_collector as amc
from otel_recursive_metrics.async_metrics_collector import (
    AsyncMetricsCollector,
    get_async_metrics_collector,
    reset_async_metrics_collector,
)
from otel_recursive_metrics.errors import MetricValueError
from otel_recursive_metrics.metrics_store import MetricsStore, get_metrics_store, reset_metrics_store
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.store import PointStore

from .helpers import ScriptedSink

TEST_CONFIG = {
    "metrics_batch_size": 5,
    "metrics_flush_interval_sec": 0.5,
    "metrics_max_retries": 2,
    "metrics_retry_delay_sec": 0.1,
}


@pytest.fixture(autouse=True)
def _fresh_singletons() -> Iterator[None]:
    reset_async_metrics_collector()
    reset_metrics_store()
    yield
    reset_async_metrics_collector()
    reset_metrics_store()


def stored(path: Path, metric: str | None = None) -> list[Any]:
    store = PointStore(path)
    try:
        return store.query(metric)
    finally:
        store.close()


def test_seed_usage_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(tmp_path / "data"))
    # --- the seed's documented usage, only the import path changed ---
    from otel_recursive_metrics.async_metrics_collector import get_async_metrics_collector

    # Basic configuration (optional)
    config = {"metrics_batch_size": 100, "metrics_flush_interval_sec": 10.0}

    collector = get_async_metrics_collector(config=config)

    metric_data = {"metric_name": "training_accuracy", "value": 0.95, "epoch": 5, "step": 500}
    metric_id = collector.submit_metric(metric_data)
    print(f"Metric {metric_id} submitted.")

    def handle_metric_error(exception_instance):  # type: ignore[no-untyped-def]
        print(f"An error occurred while processing a metric: {exception_instance}")

    collector.register_error_callback(handle_metric_error)

    stats = collector.get_stats()
    print(f"Metrics processed: {stats.get('metrics_processed')}")
    print(f"Current queue size: {stats.get('queue_size')}")

    # Wait for pending metrics to be processed (up to a timeout)
    collector.stop(wait_for_completion=True, timeout=30.0)
    # --- end of the seed's usage ---

    out = capsys.readouterr().out
    assert f"Metric {metric_id} submitted." in out
    assert "Metrics processed: " in out and "Current queue size: " in out
    assert "timestamp" in metric_data and metric_data["id"] == metric_id
    (point,) = stored(tmp_path / "data" / "metrics.db", "training_accuracy")
    assert (point.value, point.step, point.epoch) == (0.95, 500, 5)
    assert point.extra == {"id": metric_id}
    assert collector.get_stats()["metrics_processed"] == 1


def test_seed_metrics_store_usage_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # --- the seed's documented MetricsStore usage, only the import path changed ---
    from datetime import datetime, timezone

    from otel_recursive_metrics.metrics_store import get_metrics_store

    config = {"metrics_path": "./my_custom_metrics_data", "enable_caching": True, "warning_cost_threshold": 15.0}
    metrics_store = get_metrics_store(config)
    training_metric_data = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "metric_type": "training_loss",
        "model": "alpha_v1",
        "epoch": 5,
        "value": 0.075,
        "tags": ["experiment_x", "run_001"],
    }
    metric_id = metrics_store.store_metric(training_metric_data)
    retrieved_metric = metrics_store.get_metric(metric_id)
    assert retrieved_metric is not None
    assert (retrieved_metric["metric_type"], retrieved_metric["value"]) == ("training_loss", 0.075)
    queried_metrics = metrics_store.query_metrics(metric_types=["training_loss"], models=["alpha_v1"], tags=["experiment_x"], limit=5)
    assert len(queried_metrics) == 1
    cost_details = metrics_store.track_cost(cost=0.25, api_calls=50, token_usage=15000)
    assert cost_details == {"total_cost": 0.25, "api_calls": 50, "token_usage": 15000, "status": "ok"}
    summary = metrics_store.get_metrics_summary()
    assert summary["total_metrics"] == 4 and summary["models"] == ["alpha_v1"]
    assert metrics_store.get_metrics_by_filter({"model": "alpha_v1"})[0]["id"] == metric_id
    assert metrics_store.get_recent_metrics(metric_types=["training_loss"], limit=3)[0]["id"] == metric_id
    metrics_store.close()
    # --- end ---
    assert (tmp_path / "my_custom_metrics_data" / "metrics.db").exists()
    assert retrieved_metric["tags"] == ["experiment_x", "run_001"] and retrieved_metric["epoch"] == 5
    assert retrieved_metric["timestamp"][:19] == training_metric_data["timestamp"][:19]


def test_seed_test_suite_flow_with_the_real_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's own tests, against the real worker and store instead of a mocked store."""
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(tmp_path / "data"))
    collector = AsyncMetricsCollector(TEST_CONFIG)
    assert (collector.batch_size, collector.flush_interval, collector.max_retries, collector.retry_delay) == (5, 0.5, 2, 0.1)
    # test_submit_metric: the seed's records name the metric with metric_type.
    metric = {"metric_type": "test", "value": 42}
    metric_id = collector.submit_metric(metric)
    assert metric_id and metric["id"] == metric_id and "timestamp" in metric
    # test_batch_processing
    for i in range(10):
        collector.submit_metric({"metric_type": "test", "value": i})
    assert collector.flush(60)
    stats = collector.get_stats()
    assert stats["metrics_submitted"] == 11 and stats["metrics_processed"] == 11
    assert stats["batches_processed"] >= 1 and stats["queue_size"] == 0 and stats["metrics_failed"] == 0
    assert stats["success_rate"] == 100.0
    # test_stop_with_pending_metrics
    for i in range(10):
        collector.submit_metric({"metric_type": "test", "value": 100 + i})
    assert collector.stop(wait_for_completion=True, timeout=30.0)
    points = stored(tmp_path / "data" / "metrics.db", "test")
    assert len(points) == 21
    assert all(p.extra["metric_type"] == "test" and p.extra["id"] for p in points)
    # test_get_singleton
    collector1 = get_async_metrics_collector(TEST_CONFIG)
    collector2 = get_async_metrics_collector()
    assert collector1 is collector2 is AsyncMetricsCollector._instance


def test_record_fields_step_epoch_and_extras_are_kept(data_dir: Path) -> None:
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.2))
    collector = AsyncMetricsCollector(pipeline=pipeline)
    record = {
        "metric_name": "eval.f1",
        "value": np.float32(0.5),
        "step": np.int64(1200),
        "epoch": 3,
        "model": "bert-tiny",
        "cycle_id": "cycle_005",
        "notes": {"nested": [1, 2]},
        "tags": {"split": "val"},
        "unit": "1",
        "timestamp": "2025-03-01T12:00:00Z",
    }
    metric_id = collector.submit_metric(record)
    record["model"] = "changed after the call"
    assert collector.stop(True, 60)
    (point,) = stored(data_dir / "metrics.db", "eval.f1")
    assert (point.value, point.step, point.epoch, point.unit) == (0.5, 1200, 3, "1")
    assert point.attributes == {"split": "val"}
    assert point.extra == {"id": metric_id, "model": "bert-tiny", "cycle_id": "cycle_005", "notes": {"nested": [1, 2]}}
    assert point.time_unix_nano == 1740830400 * 10**9


@pytest.mark.parametrize(
    ("record", "named"),
    [
        ({"value": 1.0}, "metric_name=missing"),
        ({"metric_name": 7, "value": 1.0}, "metric_name=7"),
        ({"metric_name": "", "value": 1.0}, "metric_name=''"),
        ({"metric_type": None, "value": 1.0}, "metric_type=missing"),
        ({"metric_name": "loss"}, "value=missing"),
        ({"metric_name": "loss", "value": "0.5"}, "value='0.5'"),
        ({"metric_name": "loss", "value": None}, "value=None"),
        ({"metric_name": "loss", "value": True}, "value=True"),
        ({"metric_name": "loss", "value": [1, 2]}, "value=[1, 2]"),
        ({"metric_name": "loss", "value": 1.0, "step": "ten"}, "step='ten'"),
        ({"metric_name": "loss", "value": 1.0, "epoch": -2}, "epoch=-2"),
        ({"metric_name": "loss", "value": 1.0, "timestamp": "yesterday"}, "timestamp='yesterday'"),
        ("loss=1", "metric_data='loss=1'"),
    ],
)
def test_bad_records_are_refused_at_the_call_naming_the_field(data_dir: Path, record: Any, named: str) -> None:
    pipeline = Pipeline(load_config(dir=data_dir))
    collector = AsyncMetricsCollector(pipeline=pipeline)
    with pytest.raises(MetricValueError) as info:
        collector.submit_metric(record)
    assert named in str(info.value)
    assert len(pipeline.buffer) == 0
    store = MetricsStore(path=data_dir / "direct.db")
    with pytest.raises(MetricValueError, match=named.split("=", maxsplit=1)[0]):
        store.store_metric(record)
    store.close()
    collector.stop(True, 5)


def test_error_callbacks_get_the_exception_after_retries(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="retry")
    pipeline = Pipeline(load_config(TEST_CONFIG, dir=data_dir, retry_max_elapsed_s=30), sinks=[sink])
    collector = AsyncMetricsCollector(pipeline=pipeline)
    seen_one: list[BaseException] = []
    seen_two: list[tuple[BaseException, dict[str, Any]]] = []
    called = threading.Event()

    def seed_style(exception: BaseException) -> None:
        seen_one.append(exception)
        called.set()

    collector.register_error_callback(seed_style)
    collector.register_error_callback(lambda exc, context: seen_two.append((exc, context)))
    collector.submit_metric({"metric_name": "loss", "value": 1.0})
    assert called.wait(60), "the error callback was not called"
    assert "503" in str(seen_one[0])
    assert seen_two[0][1]["outcome"] == "failing" and seen_two[0][1]["sink"] == "store"
    sink.default = "ok"
    assert collector.flush(60)
    assert collector.get_stats()["metrics_processed"] == 1
    collector.stop(True, 30)


def test_submit_never_waits_for_a_hung_sink(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="hang")
    pipeline = Pipeline(load_config(dir=data_dir, batch_size=5, flush_interval_s=0.1), sinks=[sink])
    collector = AsyncMetricsCollector(pipeline=pipeline)
    ids = [collector.submit_metric({"metric_name": "loss", "value": float(i), "step": i}) for i in range(200)]
    assert len(set(ids)) == 200
    assert collector.get_stats()["metrics_processed"] == 0 and sink.points() == 0
    sink.release.set()
    assert collector.stop(wait_for_completion=True, timeout=60)
    assert sink.points() == 200


def test_submit_after_stop_starts_again_instead_of_losing_the_record(data_dir: Path) -> None:
    collector = AsyncMetricsCollector({"dir": str(data_dir), "metrics_flush_interval_sec": 0.2})
    collector.submit_metric({"metric_name": "loss", "value": 1.0})
    assert collector.stop(True, 30)
    assert not collector.running
    collector.submit_metric({"metric_name": "loss", "value": 2.0})
    assert collector.running
    assert collector.stop(True, 30)
    assert [p.value for p in stored(data_dir / "metrics.db", "loss")] == [1.0, 2.0]


def test_invalid_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        AsyncMetricsCollector({"metrics_batch_size": 0, "metrics_flush_interval_sec": "soon", "metrics_colour": "red"})
    assert len(info.value.problems) == 3
    with pytest.raises(ConfigError, match="metrics_colour"):
        MetricsStore({"metrics_colour": "red"})


def test_singleton_reset_for_tests(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(data_dir))
    first = get_async_metrics_collector()
    assert get_async_metrics_collector() is first
    reset_async_metrics_collector()
    assert not first.running
    second = get_async_metrics_collector(TEST_CONFIG)
    assert second is not first and second.batch_size == 5
    AsyncMetricsCollector._instance = None  # the seed's tests reset it this way
    assert get_async_metrics_collector() is not second
    second.stop(True, 5)
    store = get_metrics_store()
    assert store is get_metrics_store() and store.path == data_dir / "metrics.db"


def test_no_unused_asyncio_import() -> None:
    tree = ast.parse(Path(amc.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "asyncio" not in imported


def test_seed_usage_example_script(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = Path(__file__).resolve().parents[1] / "examples" / "seed_usage.py"
    result = subprocess.run(
        [sys.executable, str(script), "--dir", str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert "Found 1 matching metrics." in result.stdout and "Status: ok" in result.stdout
    names = {p.metric for p in stored(tmp_path / "data" / "metrics.db")}
    assert {"training_accuracy", "training_loss", "cost.usd"} <= names


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_two_records_with_one_timestamp_are_two_points(data_dir: Path) -> None:
    from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector

    collector = AsyncMetricsCollector({"metrics_flush_interval_sec": 0.05}, pipeline=_pipeline(data_dir))
    collector.submit_metric({"metric_name": "acc", "value": 0.5, "timestamp": 1_700_000_000.0, "id": "A"})
    collector.submit_metric({"metric_name": "acc", "value": 0.7, "timestamp": 1_700_000_000.0, "id": "B"})
    collector.stop(wait_for_completion=True, timeout=20)
    assert sorted(p.value for p in PointStore(data_dir / "metrics.db").query("acc")) == [0.5, 0.7]


# -- records that share a timestamp (a log replayed at one-second resolution) --------------------


def test_records_cycling_over_ten_timestamps_are_all_stored(data_dir: Path) -> None:
    collector = AsyncMetricsCollector({"metrics_flush_interval_sec": 0.05}, pipeline=_pipeline(data_dir))
    for i in range(100):
        collector.submit_metric({"metric_name": "replayed.loss", "value": float(i), "timestamp": 1_700_000_000 + i % 10})
    assert collector.stop(wait_for_completion=True, timeout=30)
    points = PointStore(data_dir / "metrics.db").query("replayed.loss")
    assert sorted(p.value for p in points) == [float(i) for i in range(100)], f"{len(points)} of 100 records stored"
    # Each keeps the timestamp it was given.
    assert sorted({p.time_unix_nano for p in points}) == [(1_700_000_000 + k) * 10**9 for k in range(10)]
    assert collector.get_stats()["metrics_processed"] == 100


def test_store_metric_keeps_records_at_one_time_and_a_record_given_again_once(tmp_path: Path) -> None:
    store = MetricsStore(path=tmp_path / "m.db")
    when = "2025-03-01T12:00:00Z"
    for i in range(30):  # ten values, each three times: the ids tell them apart
        store.store_metric({"metric_name": "m", "value": float(i % 10), "timestamp": when})
    # One id, another step: another point.
    store.store_metric({"metric_name": "m", "value": 5.0, "timestamp": when, "step": 1, "id": "s"})
    store.store_metric({"metric_name": "m", "value": 5.0, "timestamp": when, "step": 2, "id": "s"})
    # The same record twice, id and all (a re-delivery): one point.
    again = {"metric_name": "m", "value": 7.0, "timestamp": when, "id": "fixed", "model": "alpha"}
    store.store_metric(dict(again))
    store.store_metric(dict(again))
    points = store.store.query("m")
    assert len(points) == 30 + 2 + 1, f"{len(points)} points"
    assert {p.time_unix_nano for p in points} == {1_740_830_400 * 10**9}
    assert sorted(p.step for p in points if p.extra["id"] == "s") == [1, 2]
    assert [p.extra["id"] for p in points].count("fixed") == 1
    store.close()


# The child submits 100 records over 10 timestamps and is killed (SIGKILL) right after the store
# committed them, before the queue recorded it: the next start delivers the same batch again.
_KILLED_AFTER_COMMIT = """
import os, signal, sys
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.queue.slot import QueueSlot

def killed_before_the_cursor_moves(self, sink, record_id):
    os.kill(os.getpid(), signal.SIGKILL)

QueueSlot.done = killed_before_the_cursor_moves
config = {"dir": sys.argv[1], "metrics_flush_interval_sec": 30.0, "metrics_batch_size": 1000, "store_direct": False}
collector = AsyncMetricsCollector(config)
for i in range(100):
    collector.submit_metric({"metric_name": "replayed.loss", "value": float(i), "timestamp": 1_700_000_000 + i % 10, "id": f"r{i}"})
collector.flush(60)
"""


def test_a_redelivery_after_kill_9_stores_records_sharing_timestamps_exactly_once(data_dir: Path) -> None:
    import subprocess
    import sys

    argv = [sys.executable, "-c", _KILLED_AFTER_COMMIT, str(data_dir)]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -9, child.stderr
    assert len(stored(data_dir / "metrics.db", "replayed.loss")) == 100, "committed before the kill"
    # The next start with the folder: the batch is still queued, and is delivered again.
    collector = AsyncMetricsCollector({"metrics_flush_interval_sec": 0.05}, pipeline=_pipeline(data_dir, store_direct=False))
    assert collector.flush(60)
    assert collector.get_stats()["sent_points"] == {"store": 100}, "the batch was delivered a second time"
    assert collector.stop(wait_for_completion=True, timeout=30)
    points = stored(data_dir / "metrics.db", "replayed.loss")
    assert sorted(p.extra["id"] for p in points) == sorted(f"r{i}" for i in range(100))
