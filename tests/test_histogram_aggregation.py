"""OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, honoured as the stock OTLP exporter does (issue 20, section 2).

``base2_exponential_bucket_histogram`` makes every histogram exponential, with no View; the
points go through the store and the OTLP sink as exponential histograms and read back whole.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.sdk_preferences import HISTOGRAM_AGGREGATION_VARIABLE, aggregation_from_env

from .helpers import sdk_provider
from .otlp_receiver import GrpcReceiver

VALUES = (0.5, 1.0, 2.0, 4.0, 4.5, 300.0)


def record_latencies(exporter: RecursiveMetricExporter) -> None:
    provider = sdk_provider(exporter)
    latency = provider.get_meter("server").create_histogram("http.server.duration", unit="ms")
    for value in VALUES:
        latency.record(value, {"route": "/"})
    provider.shutdown()


def test_exponential_histograms_reach_the_store_and_read_back(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HISTOGRAM_AGGREGATION_VARIABLE, "base2_exponential_bucket_histogram")
    record_latencies(RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1))
    [point] = PointStore(data_dir / "metrics.db", readonly=True).query("http.server.duration")
    assert point.kind == "exponential_histogram" and point.unit == "ms" and point.attributes == {"route": "/"}
    hist = point.histogram
    assert hist is not None
    assert (hist["count"], hist["sum"], hist["min"], hist["max"]) == (len(VALUES), sum(VALUES), 0.5, 300.0)
    assert hist["zero_count"] == 0 and sum(hist["positive"][1]) == len(VALUES) and sum(hist["negative"][1]) == 0
    # Each value falls in the bucket (base**i, base**(i+1)] that the scale and offset name.
    base = 2.0 ** (2.0 ** -hist["scale"])
    offset, counts = hist["positive"]
    for value in VALUES:
        index = next(i for i in range(offset, offset + len(counts)) if base**i < value <= base ** (i + 1) * (1 + 1e-12))
        assert counts[index - offset] >= 1, (value, index, hist)


def test_exponential_histograms_reach_an_otlp_receiver(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HISTOGRAM_AGGREGATION_VARIABLE, "base2_exponential_bucket_histogram")
    with GrpcReceiver() as receiver:
        exporter = RecursiveMetricExporter(dir=data_dir, sinks="store,otlp", otlp_endpoint=receiver.endpoint, flush_interval_s=0.1)
        record_latencies(exporter)
        receiver.wait_for_points(1, timeout_s=30)
        [metric] = [m for r in receiver.accepted for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert metric.name == "http.server.duration" and metric.WhichOneof("data") == "exponential_histogram"
    [dp] = metric.exponential_histogram.data_points
    [stored] = PointStore(data_dir / "metrics.db", readonly=True).query("http.server.duration")
    assert stored.histogram is not None
    assert (dp.count, dp.sum, dp.scale, dp.positive.offset) == (
        len(VALUES),
        sum(VALUES),
        stored.histogram["scale"],
        stored.histogram["positive"][0],
    )
    assert list(dp.positive.bucket_counts) == stored.histogram["positive"][1]


def test_the_default_and_explicit_buckets_stay_explicit(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HISTOGRAM_AGGREGATION_VARIABLE, "explicit_bucket_histogram")
    record_latencies(RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1))
    [point] = PointStore(data_dir / "metrics.db", readonly=True).query("http.server.duration")
    assert point.kind == "histogram"


def test_an_invalid_value_warns_naming_the_variable_and_the_value(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HISTOGRAM_AGGREGATION_VARIABLE, "exponential")
    with caplog.at_level(logging.WARNING, logger="otel_recursive_metrics.sdk_preferences"):
        assert aggregation_from_env() == {}
    [record] = caplog.records
    assert HISTOGRAM_AGGREGATION_VARIABLE in record.getMessage() and "'exponential'" in record.getMessage()


def test_an_explicit_preferred_aggregation_is_laid_over_the_variable(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the stock exporter does: the variable first, the argument's table over it."""
    monkeypatch.setenv(HISTOGRAM_AGGREGATION_VARIABLE, "base2_exponential_bucket_histogram")
    exporter = RecursiveMetricExporter(dir=data_dir, preferred_aggregation={Histogram: ExplicitBucketHistogramAggregation((1.0, 10.0))})
    record_latencies(exporter)
    [point] = PointStore(data_dir / "metrics.db", readonly=True).query("http.server.duration")
    assert point.kind == "histogram" and point.histogram is not None and point.histogram["bounds"] == [1.0, 10.0]
    assert isinstance(aggregation_from_env()[Histogram], ExponentialBucketHistogramAggregation)
