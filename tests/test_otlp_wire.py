"""The columnar OTLP encoder writes the very bytes the protobuf classes write, for any batch.

``encode_request_bytes(batch)`` must equal ``encode_request(batch).SerializeToString()`` byte for
byte (and so decode, with the real protobuf classes, to an equal message), raise what
``encode_request`` raises, and count the points the request holds. Batches are drawn by
Hypothesis over every metric kind, temporality and attribute type, NaN and infinities,
store-only metrics, empty batches and malformed values; a batch of well-typed gauges and sums
must take the columnar path (not fall back on the slow one, which would pass trivially).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from otel_recursive_metrics.model import otlp_points
from otel_recursive_metrics.model.attributes import canonical_json
from otel_recursive_metrics.model.batch import (
    MetricEntry,
    PointBatch,
    ResourceEntry,
    ScopeEntry,
    explicit_histogram,
    exponential_histogram,
    new_point,
)
from otel_recursive_metrics.model.kinds import MetricKind
from otel_recursive_metrics.model.otlp import encode_request
from otel_recursive_metrics.model.otlp_wire import encode_request_bytes, encode_request_columnar
from otel_recursive_metrics.model.resource import RUN_EVENT_METRIC
from otel_recursive_metrics.sinks.otlp import OtlpGrpcSink, OtlpHttpSink
from otel_recursive_metrics.sinks.otlp.base import count_points

from .otlp_receiver import GrpcReceiver, HttpReceiver

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

texts = st.text(max_size=6)
scalars = st.one_of(
    texts,
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),  # becomes the text "None", as the slow path writes it
)
attribute_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=6
)
attribute_sets = st.dictionaries(texts, attribute_values, max_size=4)
# Mostly plain ones (the padded path), sometimes one wider than the padding (the scattered path).
wide_attribute_sets = st.dictionaries(texts, st.text(min_size=150, max_size=400), min_size=1, max_size=2)
times = st.one_of(st.just(0), st.integers(1, 2**62), st.integers(2**63, UINT64_MAX))
starts = st.one_of(st.just(0), st.none(), st.integers(1, 2**62))
ints = st.integers(INT64_MIN, INT64_MAX)
doubles = st.floats(allow_nan=True, allow_infinity=True)
counts = st.lists(st.integers(0, UINT64_MAX), max_size=4)
optional_doubles = st.one_of(st.none(), st.floats(allow_nan=False))


@st.composite
def histograms(draw: Any, kind: MetricKind) -> dict[str, Any]:
    total, low, high = draw(st.floats(allow_nan=True)), draw(optional_doubles), draw(optional_doubles)
    if kind == MetricKind.HISTOGRAM:
        bucket_counts = draw(counts)
        bounds = draw(
            st.lists(st.floats(allow_nan=False), min_size=max(0, len(bucket_counts) - 1), max_size=max(0, len(bucket_counts) - 1))
        )
        return explicit_histogram(draw(st.integers(0, UINT64_MAX)), total, low, high, bounds, bucket_counts)
    offsets = st.integers(-(2**31), 2**31 - 1)
    return exponential_histogram(
        draw(st.integers(0, UINT64_MAX)),
        total,
        low,
        high,
        draw(st.integers(-10, 20)),
        draw(st.integers(0, UINT64_MAX)),
        (draw(offsets), draw(counts)),
        (draw(offsets), draw(counts)),
        draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def batches(draw: Any, odd_values: bool = True) -> PointBatch:
    """A batch over random tables; with ``odd_values`` its values may be what the columns do not hold."""
    resources = draw(st.lists(st.builds(ResourceEntry, attribute_sets, texts), min_size=1, max_size=3))
    scopes = draw(st.lists(st.builds(ScopeEntry, texts, texts, attribute_sets, texts), min_size=1, max_size=3))
    kinds = st.sampled_from(list(MetricKind))
    names = st.one_of(texts, st.just(RUN_EVENT_METRIC))
    metrics = draw(st.lists(st.builds(MetricEntry, names, texts, texts, kinds, st.integers(0, 2), st.booleans()), min_size=1, max_size=6))
    attributes = draw(st.lists(st.one_of(attribute_sets, attribute_sets, attribute_sets, wide_attribute_sets), min_size=1, max_size=5))
    texts_ = list(dict.fromkeys(canonical_json(a) for a in attributes))
    value_kinds = [ints, doubles, st.one_of(ints, doubles)]
    if odd_values:
        value_kinds += [st.one_of(st.booleans(), st.none(), st.integers(INT64_MAX + 1, 2**70), st.just("1.5"))]
    values = draw(st.sampled_from(value_kinds))
    points = []
    for _ in range(draw(st.integers(0, 40))):
        metric = draw(st.integers(0, len(metrics) - 1))
        kind = metrics[metric].kind
        histogram = draw(histograms(kind)) if kind in (MetricKind.HISTOGRAM, MetricKind.EXPONENTIAL_HISTOGRAM) else None
        value = None if histogram else draw(values)
        points.append(
            new_point(
                draw(st.integers(0, len(resources) - 1)),
                draw(st.integers(0, len(scopes) - 1)),
                metric,
                draw(st.integers(0, len(texts_) - 1)),
                draw(starts),
                draw(times),
                value,
                draw(st.one_of(st.none(), st.integers(0, 100))),  # step and epoch: never sent
                draw(st.one_of(st.none(), st.integers(0, 5))),
                histogram,
            )
        )
    return PointBatch(resources, scopes, metrics, points, "b", texts_)


def _assert_same_request(batch: PointBatch) -> bytes:
    """``encode_request_bytes`` against ``encode_request``: same bytes, same message, same count, or the same error."""
    try:
        expected = encode_request(batch)
    except Exception as exc:  # whatever the slow path raises, the fast one must too
        with pytest.raises(type(exc)):
            encode_request_bytes(batch)
        return b""
    payload, sent = encode_request_bytes(batch)
    assert payload == expected.SerializeToString()
    decoded = ExportMetricsServiceRequest.FromString(payload)
    assert decoded == expected
    assert sent == count_points(expected)
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_the_bytes_are_the_protobuf_classes_bytes_for_any_batch(batch: PointBatch) -> None:
    _assert_same_request(batch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(odd_values=False))
def test_well_typed_batches_take_the_columnar_path(batch: PointBatch) -> None:
    expected = encode_request(batch)
    columnar = encode_request_columnar(batch)
    numbers = [m for m in batch.metrics if m.kind in (MetricKind.GAUGE, MetricKind.SUM) and m.name != RUN_EVENT_METRIC]
    if batch.points and not numbers:
        assert columnar is None, "a batch of histograms alone goes to the protobuf classes whole"
        return
    assert columnar is not None, "a batch of int and float values and int times fell back on the slow path"
    assert columnar == (expected.SerializeToString(), count_points(expected))


def test_nan_infinities_and_negative_zero_keep_their_bits() -> None:
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.0, 0, -1, INT64_MIN, INT64_MAX]
    batch = PointBatch(
        [ResourceEntry({"service.name": "t"}, "")],
        [ScopeEntry("s", "1", {}, "")],
        [MetricEntry("g", "", "", MetricKind.GAUGE, 0, False)],
        [new_point(0, 0, 0, 0, 0, 1_700_000_000_000_000_000 + i, v) for i, v in enumerate(values)],
        "b",
        ["{}"],
    )
    payload = _assert_same_request(batch)
    assert encode_request_columnar(batch) is not None
    decoded = ExportMetricsServiceRequest.FromString(payload).resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    got = [dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double for dp in decoded]
    assert math.isnan(got[0])
    assert got[1:] == values[1:]
    assert [type(v) for v in got] == [type(v) for v in values]
    assert math.copysign(1.0, got[3]) == -1.0, "-0.0 keeps its sign"


def test_a_training_batch_keeps_steps_out_and_run_events_out() -> None:
    """The shape ``TrainingMetrics.log`` makes: 20 gauges a step with step and epoch, one run event."""
    metrics = [MetricEntry(f"train.m{i}", "", "", MetricKind.GAUGE, 0, False) for i in range(20)]
    metrics.append(MetricEntry(RUN_EVENT_METRIC, "", "", MetricKind.GAUGE, 0, False))
    points = [new_point(0, 0, 20, 0, 0, 1, 1.0, None, None, None, {"event": "start"})]
    points += [new_point(0, 0, m, 0, 0, 10 + step, step / (m + 1), step, step // 10) for step in range(50) for m in range(20)]
    batch = PointBatch([ResourceEntry({"training.run.id": "r"}, "")], [ScopeEntry("t", "", {}, "")], metrics, points, "b", ["{}"])
    payload = _assert_same_request(batch)
    assert encode_request_columnar(batch) == (payload, 1000)
    request = ExportMetricsServiceRequest.FromString(payload)
    (scope_metrics,) = request.resource_metrics[0].scope_metrics
    assert [m.name for m in scope_metrics.metrics] == [f"train.m{i}" for i in range(20)]
    assert all(not dp.attributes for m in scope_metrics.metrics for dp in m.gauge.data_points), "step and epoch are store-only"


def test_values_the_columns_cannot_hold_take_the_slow_path_and_its_error() -> None:
    tables = ([ResourceEntry({}, "")], [ScopeEntry("s", "", {}, "")], [MetricEntry("c", "", "", MetricKind.SUM, 2, True)])
    cases: list[tuple[Any, Any, type[Exception] | None]] = [
        (True, 5, None),
        ("2.5", 5, None),
        (2**64, 5, ValueError),
        (None, 5, TypeError),
        (1.0, -1, ValueError),
        (1.0, 1.5, TypeError),
    ]
    for value, when, error in cases:
        batch = PointBatch(*tables, [new_point(0, 0, 0, 0, 0, when, value)], "b", ["{}"])
        try:
            declined = encode_request_columnar(batch) is None
        except (ValueError, TypeError, OverflowError):
            declined = True
        assert declined, f"the columns took value={value!r}, time={when!r}"
        if error is None:
            assert encode_request_bytes(batch)[1] == 1
        else:
            with pytest.raises(error):
                encode_request_bytes(batch)
        _assert_same_request(batch)


def test_an_empty_batch_and_a_batch_of_run_events_are_empty_requests() -> None:
    assert encode_request_bytes(PointBatch()) == (b"", 0)
    events = PointBatch(
        [ResourceEntry({}, "")],
        [ScopeEntry("s", "", {}, "")],
        [MetricEntry(RUN_EVENT_METRIC, "", "", MetricKind.GAUGE, 0, False)],
        [new_point(0, 0, 0, 0, 0, 1, 1.0)],
        "b",
        ["{}"],
    )
    assert encode_request_bytes(events) == (b"", 0) == (encode_request(events).SerializeToString(), 0)


def test_a_large_batch_is_written_in_slices_with_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_points, "_SLICE_POINTS", 7)
    sets: list[dict[str, Any]] = [
        {},
        {"phase": "train"},
        {"phase": "validation", "rank": 3},
        {"layer": "x" * 300},
    ]  # padded, masked and scattered
    texts_ = [canonical_json(a) for a in sets]
    metrics = [MetricEntry("g", "", "", MetricKind.GAUGE, 0, False), MetricEntry("c", "", "1", MetricKind.SUM, 2, True)]
    points = [new_point(0, 0, i % 2, i % 4, (i % 3) * 5, 1_700_000_000_000_000_000 + i, i if i % 5 else i / 7) for i in range(100)]
    batch = PointBatch([ResourceEntry({"service.name": "t"}, "")], [ScopeEntry("s", "", {}, "")], metrics, points, "b", texts_)
    assert encode_request_columnar(batch) == (encode_request(batch).SerializeToString(), 100)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_sinks_deliver_the_request_the_protobuf_classes_would(protocol: str, compression: str) -> None:
    """Over a real loopback receiver: gauges, a sum, a histogram and a run event in one batch."""
    metrics = [
        MetricEntry("train.loss", "", "", MetricKind.GAUGE, 0, False),
        MetricEntry("tokens", "", "{token}", MetricKind.SUM, 2, True),
        MetricEntry("step_time", "", "s", MetricKind.HISTOGRAM, 2, False),
        MetricEntry(RUN_EVENT_METRIC, "", "", MetricKind.GAUGE, 0, False),
    ]
    histogram = explicit_histogram(3, 0.6, 0.1, 0.3, [0.2], [1, 2])
    points = [new_point(0, 0, 3, 0, 0, 1, 1.0)]
    for step in range(10):
        t = 1_700_000_000_000_000_000 + step
        points += [new_point(0, 0, 0, 1, 0, t, 1 / (step + 1), step, 0), new_point(0, 0, 1, 0, 5, t, 100 * step)]
        points.append(new_point(0, 0, 2, 0, 5, t, None, histogram=histogram))
    batch = PointBatch(
        [ResourceEntry({"service.name": "t"}, "")], [ScopeEntry("s", "1", {}, "")], metrics, points, "b", ["{}", '{"phase":"train"}']
    )
    receiver: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with receiver:
        sink: OtlpGrpcSink | OtlpHttpSink
        if protocol == "grpc":
            sink = OtlpGrpcSink(receiver.endpoint, compression=compression, timeout_s=5.0)
        else:
            sink = OtlpHttpSink(receiver.endpoint, compression=compression, timeout_s=5.0)
        try:
            sink.send(batch, time.monotonic() + 5.0)
        finally:
            sink.close()
        assert receiver.accepted == [encode_request(batch)]
        assert receiver.points_accepted == 30


def test_without_numpy_the_protobuf_classes_write_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_recursive_metrics.model import otlp_wire

    monkeypatch.setattr(otlp_wire, "np", None)
    batch = PointBatch(
        [ResourceEntry({"service.name": "t"}, "")],
        [ScopeEntry("s", "", {}, "")],
        [MetricEntry("g", "", "", MetricKind.GAUGE, 0, False), MetricEntry(RUN_EVENT_METRIC, "", "", MetricKind.GAUGE, 0, False)],
        [new_point(0, 0, 0, 0, 0, 5, 1.5), new_point(0, 0, 1, 0, 0, 6, 1.0)],
        "b",
        ["{}"],
    )
    assert encode_request_bytes(batch) == (encode_request(batch).SerializeToString(), 1)
