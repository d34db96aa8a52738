"""The OTLP/gRPC sink: one ``MetricsService/Export`` call per batch over a channel kept open.

The endpoint follows the OTLP exporter specification: ``https://`` means TLS, ``http://``
plaintext, and an endpoint without a scheme uses TLS unless ``insecure`` is set; the path is
ignored (:func:`grpc_target`):

>>> grpc_target("https://collector:4317", insecure=False)
('collector:4317', True)
>>> grpc_target("collector:4317", insecure=True)
('collector:4317', False)

TLS verifies the server against ``certificate`` (else the system roots); ``client_key`` with
``client_certificate`` enables mutual TLS. The channel is opened on the first send, so building a
sink never touches the network and a bad endpoint surfaces as a retryable send error.

A failed call is classified by :func:`~otel_recursive_metrics.sinks.otlp.errors.classify_grpc_error`
(the status code, and any ``RetryInfo`` in the trailing metadata, decide permanent or retryable).

Thread safety: as for every OTLP sink (:mod:`~otel_recursive_metrics.sinks.otlp.base`), one sending
thread at a time; ``close()`` may come from another.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from ...config import display_url
from ...errors import DeliveryError, RetryableError
from .base import OtlpSink, user_agent
from .errors import classify_grpc_error

__all__ = ["DEFAULT_GRPC_ENDPOINT", "OtlpGrpcSink", "grpc_target"]

DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def grpc_target(endpoint: str, insecure: bool) -> tuple[str, bool]:
    """``(host:port, use_tls)`` for a gRPC endpoint, per the spec's ``insecure`` rule."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"otlp_endpoint={display_url(endpoint)!r}: expected an http:// or https:// URL or host:port")
        if not parts.netloc:
            raise ValueError(f"otlp_endpoint={display_url(endpoint)!r}: no host")
        host = parts.netloc.rpartition("@")[2]
        return host, scheme == "https"
    return endpoint.strip().rstrip("/"), not insecure


class OtlpGrpcSink(OtlpSink):
    """OTLP over gRPC (``MetricsService/Export``), one channel kept open across batches."""

    protocol = "grpc"

    def __init__(
        self,
        endpoint: str = DEFAULT_GRPC_ENDPOINT,
        *,
        insecure: bool = False,
        reconnect_backoff_max_s: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(endpoint, **options)
        self.insecure = insecure
        # gRPC's own reconnect backoff grows to 120 s by default: after a long outage the
        # channel would sit idle for up to two minutes after the receiver is back.
        self.reconnect_backoff_max_s = max(0.1, reconnect_backoff_max_s)
        self._channel: Any = None
        self._export: Any = None
        try:
            self.target, self.tls = grpc_target(endpoint, insecure)
        except ValueError as exc:
            self.target, self.tls = "", False
            self._setup_error = self._setup_error or str(exc)

    def _connect(self) -> Any:
        backoff_ms = int(self.reconnect_backoff_max_s * 1000)
        options = [
            ("grpc.primary_user_agent", user_agent()),
            ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_send_message_length", -1),
        ]
        compression = grpc.Compression.Gzip if self.compression == "gzip" else grpc.Compression.NoCompression
        if self.tls:
            root = self._read_file("otlp_certificate", self.certificate)
            key = self._read_file("otlp_client_key", self.client_key)
            chain = self._read_file("otlp_client_certificate", self.client_certificate)
            credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
            channel = grpc.secure_channel(self.target, credentials, options=options, compression=compression)
        else:
            channel = grpc.insecure_channel(self.target, options=options, compression=compression)
        # The request goes out as the bytes the sink encoded (no serializer): the generated stub
        # would want a message object, and building one is what the encoding avoids.
        export = channel.unary_unary(_EXPORT_METHOD, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString)
        with self._lock:
            self._channel, self._export = channel, export
        return export

    def send_payload(self, payload: bytes, points: int, deadline: float) -> None:
        where = self.display_endpoint
        if self._setup_error:
            raise RetryableError(f"OTLP/gRPC {where}: {self._setup_error}")
        export = self._export if self._export is not None else self._connect()
        timeout = self._attempt_timeout_s(deadline)
        failure: DeliveryError | None = None
        try:
            response = export(payload, metadata=self._headers, timeout=timeout)
        except grpc.RpcError as exc:
            failure = classify_grpc_error(exc, where=where, timeout_s=timeout, redact=self._redact)
        except ValueError as exc:  # e.g. metadata refused by the library: never echo it
            failure = RetryableError(f"OTLP/gRPC {where}: request refused by grpc before sending ({type(exc).__name__})")
        if failure is not None:
            # Raised outside the except block: the grpc error (whose text may echo what the
            # receiver sent back) must not ride along as __context__.
            raise failure
        partial = response.partial_success
        if partial.rejected_data_points or partial.error_message:
            self._partial_success(int(partial.rejected_data_points), str(partial.error_message), points)

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._export = self._channel, None, None
        if channel is not None:
            channel.close()
