"""TLS and mutual TLS to real loopback receivers, with certificates made at test time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.errors import RetryableError
from otel_recursive_metrics.sinks.otlp import OtlpGrpcSink, OtlpHttpSink, build_otlp_sink

from .otlp_receiver import GrpcReceiver, HttpReceiver, TlsFiles, make_tls_files, sample_batch, sdk_points
from .test_otlp_delivery import FAST, TeeExporter

PROTOCOLS = ("grpc", "http/protobuf")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("other-tls"))


def start(protocol: str, tls: TlsFiles, *, mtls: bool = False) -> GrpcReceiver | HttpReceiver:
    if protocol == "grpc":
        return GrpcReceiver(tls=tls, require_client_cert=mtls).start()
    return HttpReceiver(tls=tls, require_client_cert=mtls).start()


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tls_receiver(protocol: str, tls: TlsFiles) -> Iterator[GrpcReceiver | HttpReceiver]:
    rec = start(protocol, tls)
    yield rec
    rec.down()


def sink_for(rec: GrpcReceiver | HttpReceiver, endpoint: str | None = None, **options: Any) -> OtlpGrpcSink | OtlpHttpSink:
    options.setdefault("timeout_s", 5.0)
    if isinstance(rec, GrpcReceiver):
        return OtlpGrpcSink(endpoint or rec.endpoint, reconnect_backoff_max_s=0.2, **options)
    return OtlpHttpSink(endpoint or rec.endpoint, **options)


def test_tls_with_the_right_ca_delivers(tls_receiver: GrpcReceiver | HttpReceiver, tls: TlsFiles) -> None:
    assert tls_receiver.endpoint.startswith("https://")
    sink = sink_for(tls_receiver, certificate=tls.ca_cert)
    try:
        sink.send(sample_batch(3), time.monotonic() + 10)
    finally:
        sink.close()
    assert tls_receiver.points_accepted == 3


def test_tls_verification_is_on_by_default(tls_receiver: GrpcReceiver | HttpReceiver, other_ca: TlsFiles) -> None:
    # The system roots do not know the test CA, and neither does another CA: both are refused.
    for options in ({}, {"certificate": other_ca.ca_cert}):
        sink = sink_for(tls_receiver, **options)
        try:
            with pytest.raises(RetryableError):
                sink.send(sample_batch(1), time.monotonic() + 5)
        finally:
            sink.close()
    assert tls_receiver.points_accepted == 0


def test_insecure_does_not_turn_tls_off_for_https(tls_receiver: GrpcReceiver | HttpReceiver, tls: TlsFiles) -> None:
    sink = sink_for(tls_receiver, certificate=tls.ca_cert, insecure=True)
    try:
        assert sink.tls
        sink.send(sample_batch(1), time.monotonic() + 10)
    finally:
        sink.close()
    assert tls_receiver.points_accepted == 1


def test_grpc_endpoint_without_scheme_uses_tls(tls: TlsFiles) -> None:
    rec = start("grpc", tls)
    try:
        sink = OtlpGrpcSink(f"127.0.0.1:{rec.port}", certificate=tls.ca_cert, timeout_s=5)
        assert sink.tls
        sink.send(sample_batch(2), time.monotonic() + 10)
        sink.close()
    finally:
        rec.down()
    assert rec.points_accepted == 2


def test_mutual_tls(protocol: str, tls: TlsFiles) -> None:
    rec = start(protocol, tls, mtls=True)
    try:
        without = sink_for(rec, certificate=tls.ca_cert)
        with pytest.raises(RetryableError):
            without.send(sample_batch(1), time.monotonic() + 5)
        without.close()
        with_cert = sink_for(rec, certificate=tls.ca_cert, client_key=tls.client_key, client_certificate=tls.client_cert)
        with_cert.send(sample_batch(2), time.monotonic() + 10)
        with_cert.close()
    finally:
        rec.down()
    assert rec.points_accepted == 2


def test_standard_environment_variables_configure_tls_end_to_end(
    protocol: str, tls: TlsFiles, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = start(protocol, tls, mtls=True)
    try:
        endpoint_var = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
        monkeypatch.setenv(endpoint_var, rec.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls.ca_cert))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(tls.client_key))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(tls.client_cert))
        monkeypatch.setenv("OTEL_RECURSIVE_METRICS_SINKS", "otlp")
        monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(data_dir))
        assert isinstance(build_otlp_sink(load_config()), OtlpGrpcSink if protocol == "grpc" else OtlpHttpSink)

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        exporter = TeeExporter(**{k: v for k, v in FAST.items() if k != "batch_size"})
        assert isinstance(exporter, RecursiveMetricExporter)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        provider.get_meter("t").create_gauge("train.loss").set(0.25)
        reader.collect()
        assert exporter.force_flush(30_000), exporter.get_stats()
        provider.shutdown(timeout_millis=5_000)
        from .otlp_receiver import otlp_points

        assert otlp_points(rec.accepted) == sdk_points(exporter.handed)
    finally:
        rec.down()
