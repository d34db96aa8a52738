"""One bad record never costs its neighbours: refused at the call, or isolated by the sink.

A value the sinks cannot represent is refused at the call (``MetricValueError`` naming the
field and the value) and nothing already accepted is touched. What slips past the call (an SDK
attribute OTLP cannot carry, say) is found by splitting the refused batch: only the offending
points are dead-lettered, the rest are delivered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from otel_recursive_metrics import MetricValueError, PointStore, TrainingMetrics
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .otlp_receiver import GrpcReceiver, otlp_points


def collector(data_dir: Path) -> AsyncMetricsCollector:
    return AsyncMetricsCollector({"metrics_flush_interval_sec": 0.05}, pipeline=Pipeline(load_config(dir=data_dir, flush_interval_s=0.05)))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"metric_name": "future", "value": 1.0, "timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
        ({"metric_name": "past", "value": 1.0, "timestamp": "1969-12-31T23:59:59Z"}, "timestamp"),
        ({"metric_name": "far", "value": 1.0, "timestamp": 1e12}, "timestamp"),
        ({"metric_name": "edge", "value": 1.0, "timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp"),
        ({"metric_name": "big", "value": 1.0, "attributes": {"id": 2**70}}, "attributes['id']"),
        ({"metric_name": "nested", "value": 1.0, "labels": {"x": [[1]]}}, "labels['x']"),
        ({"metric_name": "obj", "value": 1.0, "tags": {"k": object()}}, "tags['k']"),
    ],
    ids=["year-2999", "before-1970", "seconds-beyond-2262", "overflowing-zone", "int-attribute-beyond-64-bits", "nested", "object"],
)
def test_a_record_the_sinks_cannot_hold_is_refused_at_the_call(data_dir: Path, record: dict[str, object], field: str) -> None:
    c = collector(data_dir)
    for i in range(5):
        c.submit_metric({"metric_name": "good", "value": float(i), "step": i})
    with pytest.raises(MetricValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        c.submit_metric(record)
    assert c.flush(20.0), "the records accepted beside the refused one are delivered, flush is True"
    assert c.get_stats()["dropped_points"] == {} and c.get_stats()["dead_lettered_points"] == {}
    assert [p.step for p in PointStore(data_dir / "metrics.db").query("good")] == [0, 1, 2, 3, 4]
    c.stop(timeout=10)


def test_training_metrics_refuses_attributes_otlp_cannot_carry(data_dir: Path) -> None:
    with pytest.raises(MetricValueError, match=r"attributes\['id'\]"):
        TrainingMetrics(attributes={"id": 2**64}, dir=data_dir)
    with pytest.raises(MetricValueError, match=r"attributes\['cfg'\]"):
        TrainingMetrics(attributes={"cfg": {"lr": 0.1}}, dir=data_dir)


def test_an_sdk_point_otlp_cannot_carry_is_dead_lettered_alone(data_dir: Path) -> None:
    """The SDK takes any int attribute; a 70-bit one fails OTLP encoding, for that point only."""
    from otel_recursive_metrics import RecursiveMetricExporter

    with GrpcReceiver() as rec:
        exporter = RecursiveMetricExporter(
            dir=data_dir, sinks="store,otlp", otlp_endpoint=rec.endpoint, flush_interval_s=0.05, retry_delay_s=0.05, batch_size=1
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        counter = provider.get_meter("t").create_counter("c")
        for shard in range(30):
            counter.add(1, {"shard": shard})
        counter.add(1, {"shard": 2**70})
        reader.collect()
        assert not exporter.force_flush(30_000)  # one point was dead-lettered
        stats = exporter.get_stats()
        assert stats["dead_lettered_points"] == {"otlp": 1}
        assert stats["sent_points"] == {"store": 31, "otlp": 30}
        assert len(otlp_points(rec.accepted)) == 30
        (entry,) = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).entries()
        assert entry.points == 1 and "cannot encode" in entry.reason
        # OTLP cannot carry that point, so the OTLP JSON holds none; the sidecar keeps it in full.
        assert entry.json_lines() and entry.batch().attributes == ['{"shard":1180591620717411303424}']
        provider.shutdown()


def test_the_store_refusing_one_point_keeps_the_others(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value SQLite refuses (here: an integer past 64 bits planted after the call's checks)."""
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, batch_size=1000))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(20):
        metrics.log({"loss": float(step)}, step=step)
    # Bypass the call's checks the way a bug in a caller could: a raw item with a 65-bit value.
    pipeline.offer((metrics._context_number, 10**30, 99, None, {"loss": 2**65}))
    assert not pipeline.flush(20.0)
    assert [p.step for p in PointStore(data_dir / "metrics.db").query("loss")] == list(range(20))
    assert pipeline.get_stats()["dead_lettered_points"] == {"store": 1}
    pipeline.shutdown(5.0)


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_an_invalid_unicode_attribute_loses_nothing_beside_it(data_dir: Path) -> None:
    p = _pipeline(data_dir)
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
