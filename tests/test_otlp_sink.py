"""The OTLP sinks against real loopback receivers: endpoints, error classes, timeouts, partial success."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.errors import PermanentError, RetryableError
from otel_recursive_metrics.model.otlp import encode_request
from otel_recursive_metrics.sinks.base import build_sinks
from otel_recursive_metrics.sinks.otlp import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    OtlpGrpcSink,
    OtlpHttpSink,
    build_otlp_sink,
    grpc_target,
    parse_retry_after,
    resolve_endpoint,
)

from .otlp_receiver import Fault, GrpcReceiver, HttpReceiver, otlp_points, sample_batch

PROTOCOLS = ("grpc", "http/protobuf")


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def receiver(protocol: str) -> Iterator[GrpcReceiver | HttpReceiver]:
    rec: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with rec:
        yield rec


def make_sink(receiver: GrpcReceiver | HttpReceiver, **options: Any) -> OtlpGrpcSink | OtlpHttpSink:
    options.setdefault("timeout_s", 5.0)
    if isinstance(receiver, GrpcReceiver):
        return OtlpGrpcSink(receiver.endpoint, reconnect_backoff_max_s=0.2, **options)
    return OtlpHttpSink(receiver.endpoint, **options)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


# -- endpoints ---------------------------------------------------------------------------------


def test_default_endpoints_follow_the_spec() -> None:
    assert build_otlp_sink(load_config(sinks="otlp", environ={}), environ={}).endpoint == DEFAULT_GRPC_ENDPOINT
    http = build_otlp_sink(load_config(sinks="otlp", otlp_protocol="http/protobuf", environ={}), environ={})
    assert isinstance(http, OtlpHttpSink)
    assert http.endpoint == DEFAULT_HTTP_ENDPOINT == "http://localhost:4318/v1/metrics"


def test_base_endpoint_gets_v1_metrics_and_the_metrics_specific_one_is_used_as_is() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert resolve_endpoint(load_config(environ=base), base) == "http://collector:4318/v1/metrics"
    specific = {**base, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/custom"}
    assert resolve_endpoint(load_config(environ=specific), specific) == "http://collector:4318/custom"
    # A keyword argument is the metrics endpoint itself, like the SDK's `endpoint=`.
    assert (
        resolve_endpoint(load_config(otlp_endpoint="http://c:4318/x", otlp_protocol="http/protobuf", environ={}), {}) == "http://c:4318/x"
    )
    # gRPC ignores paths: the base endpoint is used as host:port.
    grpc_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert resolve_endpoint(load_config(environ=grpc_env), grpc_env) == "http://collector:4317"


@pytest.mark.parametrize(
    ("endpoint", "insecure", "target", "tls"),
    [
        ("https://collector:4317", False, "collector:4317", True),
        ("https://collector:4317", True, "collector:4317", True),  # the scheme wins over insecure
        ("http://collector:4317", False, "collector:4317", False),
        ("collector:4317", False, "collector:4317", True),  # no scheme: TLS unless insecure
        ("collector:4317", True, "collector:4317", False),
    ],
)
def test_grpc_tls_follows_scheme_then_insecure(endpoint: str, insecure: bool, target: str, tls: bool) -> None:
    assert grpc_target(endpoint, insecure) == (target, tls)
    sink = OtlpGrpcSink(endpoint, insecure=insecure)
    assert (sink.target, sink.tls) == (target, tls)


def test_http_without_scheme_uses_tls_unless_insecure() -> None:
    assert OtlpHttpSink("collector:4318/v1/metrics").tls
    assert not OtlpHttpSink("collector:4318/v1/metrics", insecure=True).tls


def test_build_sinks_fans_out_to_store_and_otlp(tmp_path: Any) -> None:
    sinks = build_sinks(load_config(sinks="store,otlp", dir=tmp_path, environ={}))
    assert [s.name for s in sinks] == ["store", "otlp"]


# -- Retry-After -------------------------------------------------------------------------------


def test_retry_after_takes_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0


# -- delivery and classification -----------------------------------------------------------------


def test_sends_one_request_per_batch_with_every_point(receiver: GrpcReceiver | HttpReceiver) -> None:
    batch = sample_batch(5)
    sink = make_sink(receiver)
    try:
        sink.send(batch, soon())
    finally:
        sink.close()
    assert len(receiver.attempts) == 1
    assert otlp_points(receiver.accepted) == otlp_points([encode_request(batch)])
    assert receiver.attempts[0].headers["user-agent"].startswith("otel-recursive-metrics/")


def test_gzip_compression(receiver: GrpcReceiver | HttpReceiver) -> None:
    sink = make_sink(receiver, compression="gzip")
    try:
        sink.send(sample_batch(50), soon())
    finally:
        sink.close()
    assert receiver.points_accepted == 50
    if isinstance(receiver, HttpReceiver):
        assert receiver.attempts[0].content_encoding == "gzip"
    # (gRPC strips grpc-encoding before the servicer sees it: delivery is what can be checked.)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_http_retryable_statuses(status: int) -> None:
    with HttpReceiver() as rec:
        rec.inject(Fault(http_status=status, retry_after="3"))
        sink = make_sink(rec)
        with pytest.raises(RetryableError) as info:
            sink.send(sample_batch(), soon())
        sink.close()
    assert info.value.retry_after_s == 3.0
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 500, 501, 505])
def test_http_other_statuses_are_permanent(status: int) -> None:
    with HttpReceiver() as rec:
        rec.inject(Fault(http_status=status, message="cannot take this"))
        sink = make_sink(rec)
        with pytest.raises(PermanentError) as info:
            sink.send(sample_batch(), soon())
        sink.close()
    assert f"HTTP {status}" in str(info.value)
    assert "cannot take this" in str(info.value)  # the google.rpc.Status message


def test_http_wrong_path_is_permanent() -> None:
    with HttpReceiver() as rec:
        sink = OtlpHttpSink(rec.base_endpoint + "/wrong", timeout_s=5)
        with pytest.raises(PermanentError, match="HTTP 404"):
            sink.send(sample_batch(), soon())
        sink.close()


@pytest.mark.parametrize("code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"])
def test_grpc_retryable_codes(code: str) -> None:
    with GrpcReceiver() as rec:
        rec.inject(Fault(grpc_code=code))
        sink = make_sink(rec)
        with pytest.raises(RetryableError, match=code) as info:
            sink.send(sample_batch(), soon())
        sink.close()
    assert info.value.retry_after_s is None


@pytest.mark.parametrize(
    "code",
    [
        "INVALID_ARGUMENT",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "UNIMPLEMENTED",
        "INTERNAL",
        "FAILED_PRECONDITION",
        "UNKNOWN",
    ],
)
def test_grpc_other_codes_are_permanent(code: str) -> None:
    with GrpcReceiver() as rec:
        rec.inject(Fault(grpc_code=code, message="no thanks"))
        sink = make_sink(rec)
        with pytest.raises(PermanentError, match=code):
            sink.send(sample_batch(), soon())
        sink.close()


def test_grpc_retry_info_is_honoured_and_makes_resource_exhausted_retryable() -> None:
    with GrpcReceiver() as rec:
        sink = make_sink(rec)
        rec.inject(Fault(grpc_code="RESOURCE_EXHAUSTED", message="slow down"))
        with pytest.raises(PermanentError, match="RESOURCE_EXHAUSTED"):
            sink.send(sample_batch(), soon())
        rec.inject(Fault(grpc_code="RESOURCE_EXHAUSTED", retry_info_s=2.5))
        with pytest.raises(RetryableError) as info:
            sink.send(sample_batch(), soon())
        assert info.value.retry_after_s == pytest.approx(2.5)
        rec.inject(Fault(grpc_code="UNAVAILABLE", retry_info_s=0.25))
        with pytest.raises(RetryableError) as info:
            sink.send(sample_batch(), soon())
        assert info.value.retry_after_s == pytest.approx(0.25)
        sink.close()


def test_connection_refused_is_retryable_and_recovers(receiver: GrpcReceiver | HttpReceiver) -> None:
    sink = make_sink(receiver)
    try:
        sink.send(sample_batch(1), soon())  # an open, kept-alive connection
        receiver.down()
        with pytest.raises(RetryableError):
            sink.send(sample_batch(1), soon())
        receiver.up()
        deadline = time.monotonic() + 20
        while True:
            try:
                sink.send(sample_batch(2), soon())
                break
            except RetryableError:
                assert time.monotonic() < deadline, "the sink never reconnected"
                time.sleep(0.05)
    finally:
        sink.close()
    assert receiver.points_accepted == 3


def test_slow_receiver_attempt_ends_at_the_timeout(receiver: GrpcReceiver | HttpReceiver) -> None:
    receiver.inject(Fault(delay_s=8.0))
    sink = make_sink(receiver, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(RetryableError) as info:
        sink.send(sample_batch(), soon(30))
    elapsed = time.monotonic() - started
    sink.close()
    # Not a speed test: only that the attempt did not wait for the receiver's 8 seconds.
    assert elapsed < 6.0
    assert "DEADLINE_EXCEEDED" in str(info.value) or "no answer within" in str(info.value)


def test_slow_receiver_attempt_ends_at_the_deadline(receiver: GrpcReceiver | HttpReceiver) -> None:
    receiver.inject(Fault(delay_s=8.0))
    sink = make_sink(receiver, timeout_s=60.0)
    started = time.monotonic()
    with pytest.raises(RetryableError):
        sink.send(sample_batch(), soon(0.3))
    sink.close()
    assert time.monotonic() - started < 6.0


def test_partial_success_is_counted_logged_once_and_not_an_error(
    receiver: GrpcReceiver | HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    receiver.inject(
        Fault(rejected=2, message="2 points had NaN values"), Fault(rejected=1, message="again"), Fault(message="just a warning")
    )
    sink = make_sink(receiver)
    try:
        for _ in range(3):
            sink.send(sample_batch(3), soon())
    finally:
        sink.close()
    assert sink.rejected_points == 3
    assert sink.partial_successes == 3
    assert len(receiver.attempts) == 3  # nothing retried
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("otel_recursive_metrics.sinks")]
    assert len(messages) == 1, messages  # rate-limited
    assert "rejected 2 of 3 point(s)" in messages[0]
    assert "2 points had NaN values" in messages[0]


def test_send_request_sends_a_request_unchanged(receiver: GrpcReceiver | HttpReceiver) -> None:
    request = encode_request(sample_batch(4))
    sink = make_sink(receiver)
    try:
        sink.send_request(request, soon())
    finally:
        sink.close()
    assert receiver.accepted == [request]


def test_unreadable_certificate_is_retryable_and_names_the_setting(tmp_path: Any) -> None:
    missing = tmp_path / "nope.pem"
    for sink in (
        OtlpGrpcSink("https://127.0.0.1:1", certificate=missing),
        OtlpHttpSink("https://127.0.0.1:1/v1/metrics", certificate=missing),
    ):
        with pytest.raises(RetryableError, match="otlp_certificate"):
            sink.send(sample_batch(), soon())
        sink.close()
