"""Header values (tokens) reach the receiver and nothing else: logs, stats, errors, files."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.errors import DeliveryError
from otel_recursive_metrics.sinks.otlp import OtlpGrpcSink, OtlpHttpSink, build_otlp_sink

from .otlp_receiver import Fault, GrpcReceiver, HttpReceiver, sample_batch
from .test_otlp_delivery import FAST, TeeExporter

TOKEN = "s3cr3t-T0KEN-7f9c2e41d8"
AUTH = f"Bearer {TOKEN}"
PROTOCOLS = ("grpc", "http/protobuf")


def all_file_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_auth_header_arrives_and_is_never_logged_stored_or_reported(
    protocol: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    rec: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    rec.start()
    # The standard variable, URL-encoded as the spec says.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={quote(AUTH)},x-tenant=team-a")
    errors: list[tuple[str, dict[str, Any]]] = []
    try:
        exporter = TeeExporter(**FAST, sinks="otlp", dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol=protocol)
        exporter.register_error_callback(lambda exc, ctx: errors.append((f"{type(exc).__name__}: {exc!r} {exc}", ctx)))
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        gauge = provider.get_meter("t").create_gauge("train.loss")
        # A receiver that echoes the token in its errors, first retryable then permanent,
        # then a partial success that does the same, then a plain success.
        if protocol == "grpc":
            rec.inject(
                Fault(grpc_code="UNAVAILABLE", message=f"overloaded; got {AUTH}"),
                Fault(grpc_code="UNAUTHENTICATED", message=f"token {TOKEN} revoked"),
                Fault(rejected=1, message=f"point rejected for {TOKEN}"),
            )
        else:
            rec.inject(
                Fault(http_status=503, message=f"overloaded; got {AUTH}"),
                Fault(http_status=401, message=f"token {TOKEN} revoked"),
                Fault(rejected=1, message=f"point rejected for {TOKEN}"),
            )
        gauge.set(1.0)
        reader.collect()
        assert not exporter.force_flush(30_000)  # retried once, then dead-lettered
        gauge.set(2.0)
        reader.collect()
        assert exporter.force_flush(30_000)  # partial success
        gauge.set(3.0)
        reader.collect()
        assert exporter.force_flush(30_000)
        stats = exporter.get_stats()
        provider.shutdown(timeout_millis=5_000)
    finally:
        rec.down()

    # It arrived, on every request.
    assert len(rec.attempts) >= 4  # (+1 for the final export at provider shutdown)
    assert all(a.headers.get("authorization") == AUTH and a.headers.get("x-tenant") == "team-a" for a in rec.attempts)
    # The failure paths really ran, so the checks below mean something.
    assert stats["dead_lettered_points"] == {"otlp": 1}
    assert stats["rejected_points"] == {"otlp": 1}
    assert stats["retries"] == {"otlp": 1}
    assert any("revoked" in r.getMessage() for r in caplog.records)
    assert any("point rejected for" in r.getMessage() for r in caplog.records)
    # And it is nowhere else.
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() and TOKEN not in str(r.args) for r in caplog.records)
    out, err = capfd.readouterr()
    assert TOKEN not in out and TOKEN not in err
    assert TOKEN not in json.dumps(stats)
    assert errors and all(TOKEN not in text and TOKEN not in json.dumps(ctx, default=str) for text, ctx in errors)
    assert TOKEN.encode() not in all_file_bytes(data_dir)  # dead letters, queue, everything
    assert list((data_dir / "dead-letter").glob("*.jsonl"))
    assert TOKEN not in repr(exporter.config) and TOKEN not in str(exporter.config.redacted())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_error_messages_and_repr_never_carry_header_values(protocol: str) -> None:
    rec: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with rec:
        headers = (("authorization", AUTH), ("api-key", "k3y-abcdef-0123"))
        sink: OtlpGrpcSink | OtlpHttpSink
        if protocol == "grpc":
            sink = OtlpGrpcSink(rec.endpoint, headers=headers, timeout_s=5)
            rec.inject(Fault(grpc_code="PERMISSION_DENIED", message=f"{AUTH} / k3y-abcdef-0123 not allowed"))
        else:
            sink = OtlpHttpSink(rec.endpoint, headers=headers, timeout_s=5)
            rec.inject(Fault(http_status=403, message=f"{AUTH} / k3y-abcdef-0123 not allowed"))
        with pytest.raises(DeliveryError) as info:
            sink.send(sample_batch(), time.monotonic() + 5)
        sink.close()
    text = str(info.value) + repr(info.value) + repr(sink)
    assert "not allowed" in text
    assert TOKEN not in text and "k3y-abcdef-0123" not in text
    # No library exception rides along (its text holds what the receiver echoed).
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_header_value_the_transport_refuses_is_reported_by_name_only(protocol: str) -> None:
    bad = f"{TOKEN}\r\nX-Injected: 1"
    sink = build_otlp_sink(
        load_config(sinks="otlp", otlp_protocol=protocol, otlp_endpoint="http://127.0.0.1:9", otlp_headers={"authorization": bad})
    )
    with pytest.raises(DeliveryError) as info:
        sink.send(sample_batch(), time.monotonic() + 2)
    sink.close()
    assert "authorization" in str(info.value)
    assert TOKEN not in str(info.value)


def test_credentials_in_the_endpoint_url_are_not_shown() -> None:
    sink = OtlpHttpSink("https://user:hunter2-pass@collector.example:4318/v1/metrics?api_key=abc123", timeout_s=1)
    assert "hunter2" not in sink.display_endpoint and "abc123" not in sink.display_endpoint
    assert "hunter2" not in repr(sink)


def test_endpoint_without_a_scheme_is_shown_as_written() -> None:
    from otel_recursive_metrics.config import display_url

    assert display_url("collector:4317") == "collector:4317"
    assert display_url("http://user:tok3n@host:4318/v1/metrics?key=tok3n") == "http://<redacted>@host:4318/v1/metrics?<redacted>"
