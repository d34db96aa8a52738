"""The whole pipeline against real loopback OTLP receivers: SDK -> exporter -> queue -> OTLP sink.

Each test records with the real OpenTelemetry SDK (MeterProvider + reader), compares what the
receiver got with what the SDK handed the exporter, point for point, and injects faults at the
receiver: an outage, 503 with Retry-After, permanent refusals, partial success, a slow answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExportResult, MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.model.otlp import request_from_json_line
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .otlp_receiver import Fault, GrpcReceiver, HttpReceiver, otlp_points, sdk_points, wait_until

PROTOCOLS = ("grpc", "http/protobuf")

#: Short retry settings so a test spends milliseconds, not the production seconds, per retry.
FAST = {
    "retry_delay_s": 0.05,
    "retry_max_delay_s": 0.2,
    "retry_jitter": 0.0,
    "flush_interval_s": 0.05,
    "batch_size": 1,
    "fsync": False,
}


class TeeExporter(RecursiveMetricExporter):
    """Our exporter, keeping what the SDK handed it: the reference for "exactly as recorded"."""

    def __init__(self, **options: Any) -> None:
        self.handed: list[MetricsData] = []
        super().__init__(**options)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.handed.append(metrics_data)
        return super().export(metrics_data, timeout_millis, **kwargs)


@dataclass
class Harness:
    exporter: TeeExporter
    reader: PeriodicExportingMetricReader
    provider: MeterProvider
    counter: Any
    gauge: Any
    histogram: Any

    def cycle(self, i: int) -> None:
        """Record one training step on three instruments, then one SDK collection and export."""
        self.counter.add(i, {"phase": "train", "rank": 0})
        self.gauge.set(1.0 / i, {"phase": "train"})
        self.histogram.record(i * 3, {"phase": "train"})
        self.reader.collect()

    @property
    def stats(self) -> dict[str, Any]:
        return self.exporter.get_stats()

    def expected(self) -> list[tuple[Any, ...]]:
        return sdk_points(self.exporter.handed)


@pytest.fixture
def harness_factory(data_dir: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(receiver: GrpcReceiver | HttpReceiver, **options: Any) -> Harness:
        settings = {
            **FAST,
            "sinks": "otlp",
            "dir": data_dir,
            "otlp_endpoint": receiver.endpoint,
            "otlp_protocol": "grpc" if isinstance(receiver, GrpcReceiver) else "http/protobuf",
            **options,
        }
        exporter = TeeExporter(
            preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA},
            **settings,
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(resource=Resource.create({"service.name": "otlp-test"}), metric_readers=[reader])
        meter = provider.get_meter("trainer")
        harness = Harness(
            exporter,
            reader,
            provider,
            meter.create_counter("train.samples", unit="{sample}"),
            meter.create_gauge("train.loss"),
            meter.create_histogram("train.step_time", unit="ms"),
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.exporter.pipeline.shutdown(5.0)
        harness.provider.shutdown(timeout_millis=5_000)


def make_receiver(protocol: str) -> GrpcReceiver | HttpReceiver:
    return GrpcReceiver() if protocol == "grpc" else HttpReceiver()


@pytest.fixture(params=PROTOCOLS)
def receiver(request: pytest.FixtureRequest) -> Iterator[GrpcReceiver | HttpReceiver]:
    rec = make_receiver(str(request.param))
    with rec:
        yield rec


def dead_letters(data_dir: Path) -> list[Any]:
    return list(DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40).entries())


# -- outages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_outage_then_recovery_delivers_every_point_exactly_as_recorded(protocol: str, harness_factory: Any, data_dir: Path) -> None:
    rec = make_receiver(protocol).start()
    rec.down()  # the endpoint is down from the first export on
    try:
        # Small requests, so the outage spans many queued batches that must come back in order.
        h = harness_factory(rec, max_batch_points=2, retry_max_elapsed_s=0)
        for i in range(1, 21):
            h.cycle(i)
        wait_until(lambda: h.stats["retries"].get("otlp", 0) >= 3, what="retries against the dead endpoint")
        assert h.stats["sent_points"].get("otlp", 0) == 0
        for i in range(21, 26):  # the trainer keeps going during the outage
            h.cycle(i)
        rec.up()
        assert h.exporter.force_flush(30_000), h.stats
        stats = h.stats
        assert otlp_points(rec.accepted) == h.expected()  # no loss, no duplicate, values and times exact
        assert len(h.expected()) == 75
        assert stats["sent_points"]["otlp"] == 75
        assert not stats["dead_lettered_points"] and not stats["dropped_points"]
        assert dead_letters(data_dir) == []
        # In order per series: each series' points arrive in the order they were recorded.
        times: dict[str, list[int]] = {}
        for name, _attrs, _start, end, _value in otlp_points_in_arrival_order(rec):
            times.setdefault(name, []).append(end)
        assert all(t == sorted(t) for t in times.values()), times
    finally:
        rec.down()


def otlp_points_in_arrival_order(rec: GrpcReceiver | HttpReceiver) -> list[tuple[Any, ...]]:
    out = []
    for request in rec.accepted:
        out.extend(sorted(otlp_points([request]), key=lambda p: p[3]))
    return out


def test_store_keeps_going_while_the_otlp_endpoint_is_down(harness_factory: Any, data_dir: Path) -> None:
    with GrpcReceiver() as rec:
        rec.down()
        h = harness_factory(rec, sinks="store,otlp", retry_max_elapsed_s=0)
        for i in range(1, 4):
            h.cycle(i)
        wait_until(lambda: h.stats["sent_points"].get("store", 0) == 9, what="the store sink to get every point")
        assert h.stats["sent_points"].get("otlp", 0) == 0
        rec.up()
        assert h.exporter.force_flush(30_000)
        assert otlp_points(rec.accepted) == h.expected()


# -- receiver says "later" -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "fault"),
    [
        ("http/protobuf", Fault(http_status=503, retry_after="1")),
        ("http/protobuf", Fault(http_status=429, retry_after="1")),
        ("grpc", Fault(grpc_code="UNAVAILABLE", retry_info_s=1.0)),
        ("grpc", Fault(grpc_code="RESOURCE_EXHAUSTED", retry_info_s=1.0)),
    ],
    ids=["http-503", "http-429", "grpc-unavailable", "grpc-resource-exhausted"],
)
def test_retry_after_and_retry_info_set_the_next_wait(protocol: str, fault: Fault, harness_factory: Any, data_dir: Path) -> None:
    with make_receiver(protocol) as rec:
        rec.inject(fault)
        h = harness_factory(rec)
        h.cycle(1)
        assert h.exporter.force_flush(30_000)
        assert len(rec.attempts) == 2
        first, second = rec.attempts
        assert not first.accepted and second.accepted
        assert first.request == second.request
        # The backoff alone would be 0.05 s: the receiver's 1 s is the floor.
        assert second.time - first.time >= 0.9
        assert otlp_points(rec.accepted) == h.expected()
        assert h.stats["retries"]["otlp"] == 1


# -- receiver says "never" -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "fault", "reason"),
    [
        ("http/protobuf", Fault(http_status=401, message="bad token"), "HTTP 401"),
        ("http/protobuf", Fault(http_status=404, message="no such path"), "HTTP 404"),
        ("grpc", Fault(grpc_code="UNAUTHENTICATED", message="bad token"), "UNAUTHENTICATED"),
        ("grpc", Fault(grpc_code="PERMISSION_DENIED", message="not yours"), "PERMISSION_DENIED"),
    ],
    ids=["http-401", "http-404", "grpc-unauthenticated", "grpc-permission-denied"],
)
def test_permanent_refusal_is_dead_lettered_after_one_attempt(
    protocol: str, fault: Fault, reason: str, harness_factory: Any, data_dir: Path
) -> None:
    with make_receiver(protocol) as rec:
        rec.inject(fault)
        errors: list[dict[str, Any]] = []
        h = harness_factory(rec)
        h.exporter.register_error_callback(lambda exc, ctx: errors.append(ctx))
        h.cycle(1)
        assert not h.exporter.force_flush(30_000)  # False: something was dead-lettered
        h.cycle(2)  # the next batch goes through: one refusal does not block the sink
        assert h.exporter.force_flush(30_000)
        assert len(rec.attempts) == 2
        stats = h.stats
        assert stats["dead_lettered_points"] == {"otlp": 3}
        assert stats.get("retries", {}).get("otlp", 0) == 0
        entries = dead_letters(data_dir)
        assert len(entries) == 1
        assert reason in entries[0].reason and entries[0].points == 3
        assert [c["outcome"] for c in errors] == ["dead_lettered"]
        # The dead letter is the refused request, as OTLP JSON.
        (line,) = entries[0].json_lines()
        assert otlp_points([request_from_json_line(line)]) == otlp_points([rec.attempts[0].request])


def _has_value(bad: float) -> Any:
    def predicate(request: Any) -> bool:
        return any(
            dp.as_double == bad
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.WhichOneof("data") == "gauge"
            for dp in m.gauge.data_points
        )

    return predicate


@pytest.mark.parametrize(
    ("protocol", "fault", "reason"),
    [
        ("http/protobuf", Fault(http_status=400, message="bad metric value"), "HTTP 400"),
        ("http/protobuf", Fault(http_status=413, message="too large"), "HTTP 413"),
        ("grpc", Fault(grpc_code="INVALID_ARGUMENT", message="bad metric value"), "INVALID_ARGUMENT"),
        ("grpc", Fault(grpc_code="RESOURCE_EXHAUSTED", message="quota"), "RESOURCE_EXHAUSTED"),
    ],
    ids=["http-400", "http-413", "grpc-invalid-argument", "grpc-resource-exhausted-without-retryinfo"],
)
def test_a_refused_point_is_dead_lettered_alone_and_its_neighbours_delivered(
    protocol: str, fault: Fault, reason: str, data_dir: Path
) -> None:
    """A refusal about the data (400, 413, INVALID_ARGUMENT, ...) is never retried as it was,
    but the batch is split until the refused point is alone: only it is dead-lettered."""
    from otel_recursive_metrics import TrainingMetrics

    with make_receiver(protocol) as rec:
        rec.refuse_when(_has_value(666.0), fault)
        settings = {**FAST, "batch_size": 1000, "flush_interval_s": 0.3}
        metrics = TrainingMetrics(**settings, sinks="otlp", dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol=protocol)
        for step in range(40):
            metrics.log({"loss": 666.0 if step == 17 else float(step)}, step=step)
        assert not metrics.flush(30.0)  # False: one point was dead-lettered
        stats = metrics.get_stats()
        assert stats["dead_lettered_points"] == {"otlp": 1}
        assert stats["sent_points"] == {"otlp": 39}
        assert stats.get("retries", {}).get("otlp", 0) == 0
        delivered = sorted(p[-1] for p in otlp_points(rec.accepted))
        assert delivered == sorted(float(s) for s in range(40) if s != 17)
        (entry,) = dead_letters(data_dir)
        assert reason in entry.reason and entry.points == 1
        assert entry.batch().points[0][6] == 666.0  # VALUE
        metrics.close(5.0)


def test_a_receiver_refusing_everything_costs_a_bounded_number_of_requests(data_dir: Path) -> None:
    from otel_recursive_metrics import TrainingMetrics
    from otel_recursive_metrics.pipeline.delivery import MAX_SPLIT_SENDS

    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=400, message="everything is wrong"))
        metrics = TrainingMetrics(**FAST, sinks="otlp", dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf")
        metrics.log({f"m{i}": float(i) for i in range(500)}, step=0)
        assert not metrics.flush(30.0)
        assert metrics.get_stats()["dead_lettered_points"] == {"otlp": 500}
        # The batch, two halves, two quarters: then it is clear every point is refused.
        assert len(rec.attempts) == 5 < MAX_SPLIT_SENDS
        (entry,) = dead_letters(data_dir)
        assert entry.points == 500
        metrics.close(5.0)


# -- partial success ---------------------------------------------------------------------------------


def test_partial_success_is_counted_not_retried(
    receiver: GrpcReceiver | HttpReceiver, harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_recursive_metrics")
    receiver.inject(Fault(rejected=2, message="2 data points had NaN values"))
    h = harness_factory(receiver)
    h.cycle(1)
    assert h.exporter.force_flush(30_000)
    h.cycle(2)
    assert h.exporter.force_flush(30_000)
    stats = h.stats
    assert stats["rejected_points"] == {"otlp": 2}
    assert stats["sent_points"] == {"otlp": 6}
    assert not stats["dead_lettered_points"] and not stats.get("retries")
    assert len(receiver.attempts) == 2
    logged = [r for r in caplog.records if "2 data points had NaN values" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR


# -- slow receiver ---------------------------------------------------------------------------------


def test_slow_receiver_times_out_then_the_retry_delivers(receiver: GrpcReceiver | HttpReceiver, harness_factory: Any) -> None:
    receiver.inject(Fault(delay_s=10.0))  # only the first request is slow
    h = harness_factory(receiver, otlp_timeout_s=0.3, send_timeout_s=30.0)
    h.cycle(1)
    assert h.exporter.force_flush(30_000)
    stats = h.stats
    assert stats["retries"]["otlp"] >= 1
    assert "DEADLINE_EXCEEDED" in stats["last_error"]["otlp"] or "no answer within 0.3s" in stats["last_error"]["otlp"]
    assert len(receiver.attempts) >= 1
    # At least once: the slow request may also have been taken in after the client gave up.
    assert sorted(set(otlp_points(receiver.accepted)), key=repr) == h.expected()


def test_stats_and_files_are_json_serialisable(receiver: GrpcReceiver | HttpReceiver, harness_factory: Any) -> None:
    h = harness_factory(receiver)
    h.cycle(1)
    assert h.exporter.force_flush(30_000)
    json.dumps(h.stats)
