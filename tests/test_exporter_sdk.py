"""Real SDK instruments through RecursiveMetricExporter into the SQLite store."""

from __future__ import annotations

import threading
from pathlib import Path

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline

from .helpers import ScriptedSink, sdk_provider, wait_until


def test_every_instrument_kind_lands_in_the_store(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("trainer", "1.2.3")
    meter.create_counter("tokens", unit="{token}").add(5, {"split": "train"})
    meter.create_counter("tokens", unit="{token}").add(7, {"split": "train"})
    updown = meter.create_up_down_counter("inflight")
    updown.add(3)
    updown.add(-1)
    hist = meter.create_histogram("latency", unit="s")
    for v in (0.5, 2.0, 30.0):
        hist.record(v, {"phase": "fwd"})
    exp = meter.create_histogram("latency.exp")
    for v in (1.0, 2.0, 4.0, 8.0):
        exp.record(v)
    meter.create_gauge("lr").set(0.001, {"group": "0"})
    meter.create_observable_gauge("gpu.mem", callbacks=[lambda o: [Observation(1234, {"device": "0"})]])

    def observe_total(options: CallbackOptions) -> list[Observation]:
        return [Observation(42)]

    meter.create_observable_counter("samples.seen", callbacks=[observe_total])
    meter.create_observable_up_down_counter("queue.depth", callbacks=[lambda o: [Observation(-2)]])

    assert provider.force_flush(10_000)
    provider.shutdown()
    store = PointStore(data_dir / "metrics.db")
    by_name = {}
    for p in store.query():
        by_name.setdefault(p.metric, []).append(p)

    tokens = by_name["tokens"][0]
    assert (tokens.kind, tokens.value, tokens.attributes, tokens.unit) == ("sum", 12, {"split": "train"}, "{token}")
    assert tokens.monotonic and tokens.temporality == AggregationTemporality.CUMULATIVE.value
    inflight = by_name["inflight"][0]
    assert (inflight.kind, inflight.value, inflight.monotonic) == ("sum", 2, False)
    lat = by_name["latency"][0]
    assert lat.kind == "histogram" and lat.attributes == {"phase": "fwd"}
    assert lat.histogram is not None
    assert (lat.histogram["count"], lat.histogram["sum"], lat.histogram["min"], lat.histogram["max"]) == (3, 32.5, 0.5, 30.0)
    assert sum(lat.histogram["counts"]) == 3 and len(lat.histogram["counts"]) == len(lat.histogram["bounds"]) + 1
    e = by_name["latency.exp"][0]
    assert e.kind == "exponential_histogram" and e.histogram is not None
    assert e.histogram["count"] == 4 and e.histogram["sum"] == 15.0
    assert sum(e.histogram["positive"][1]) + e.histogram["zero_count"] == 4
    lr = by_name["lr"][0]
    assert (lr.kind, lr.value, lr.attributes) == ("gauge", 0.001, {"group": "0"})
    assert by_name["gpu.mem"][0].value == 1234 and by_name["gpu.mem"][0].attributes == {"device": "0"}
    assert (by_name["samples.seen"][0].kind, by_name["samples.seen"][0].value) == ("sum", 42)
    assert by_name["queue.depth"][0].value == -2
    assert lr.scope == "trainer"
    assert lr.resource["service.name"].startswith("unknown_service")
    assert all(p.time_unix_nano > 0 for ps in by_name.values() for p in ps)
    assert tokens.start_time_unix_nano > 0


def test_resource_and_scope_are_kept(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    provider = sdk_provider(exporter, {"service.name": "resnet", "training.run.id": "r1", "training.rank": 3})
    provider.get_meter("my.scope").create_gauge("train.loss").set(0.25)
    assert provider.force_flush(10_000)
    provider.shutdown()
    points = PointStore(data_dir / "metrics.db").query("train.loss", run="r1", rank=3)
    assert points and all(p.value == 0.25 for p in points)
    assert points[0].resource["service.name"] == "resnet" and points[0].scope == "my.scope"
    assert PointStore(data_dir / "metrics.db").query("train.loss", rank=4) == []


def test_export_returns_at_once_while_the_sink_hangs(data_dir: Path) -> None:
    sink = ScriptedSink("store", default="hang")
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05), sinks=[sink])
    exporter = RecursiveMetricExporter(pipeline=pipeline)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    gauge = provider.get_meter("t").create_gauge("g")
    results: list[bool] = []

    def export_many() -> None:
        for i in range(50):
            gauge.set(i)
            reader.collect()
            results.append(True)

    worker = threading.Thread(target=export_many)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "export() blocked behind a hung sink"
    assert len(results) == 50
    wait_until(lambda: sink.attempts >= 1, what="the hung sink to be called")  # data did flow to it
    sink.release.set()
    pipeline.shutdown(2.0)


def test_export_never_raises_even_on_a_broken_pipeline(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir)

    def boom(item: object) -> bool:
        raise RuntimeError("broken")

    exporter.pipeline.offer = boom  # type: ignore[method-assign]
    from opentelemetry.sdk.metrics.export import MetricsData

    assert exporter.export(MetricsData(resource_metrics=[])) is MetricExportResult.FAILURE
    exporter.shutdown()


def test_force_flush_true_only_when_delivered(data_dir: Path) -> None:
    sink = ScriptedSink("store", script=["hang"])
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05), sinks=[sink])
    exporter = RecursiveMetricExporter(pipeline=pipeline)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("c").add(1)
    reader.collect()
    # The SDK's reader ignores its exporter's answer, so ask the exporter itself.
    assert exporter.force_flush(500) is False
    sink.release.set()
    assert exporter.force_flush(10_000) is True
    assert sink.points() == 1
    exporter.shutdown()
