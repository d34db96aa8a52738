"""The OTLP/HTTP sink: one protobuf ``POST`` per batch over a keep-alive HTTP/1.1 connection.

The endpoint is used as given (``https://collector:4318/v1/metrics``); like gRPC, an endpoint
without a scheme uses TLS unless ``insecure`` is set. TLS verifies the server against
``certificate`` (else the system roots); ``client_key`` with ``client_certificate`` enables mutual
TLS. The body is gzipped when ``compression="gzip"``.

One attempt per send, bounded by the deadline at every step (connect, send, response). A
receiver may close an idle keep-alive connection just as a request goes out; that one case gets
a second try on a fresh connection within the same deadline. Otherwise:

- a 2xx response is a delivery (its ``partial_success``, if any, is counted and logged);
- any other status is classified by
  :func:`~otel_recursive_metrics.sinks.otlp.errors.classify_http_response` (429/502/503/504
  retryable with their ``Retry-After``, everything else permanent);
- a refused connection, a timeout, a TLS failure or a broken connection is retryable.

No library exception is chained to the error raised: its text may echo what the receiver sent,
and only redacted text leaves this module.

Thread safety: as for every OTLP sink (:mod:`~otel_recursive_metrics.sinks.otlp.base`), one sending
thread at a time.
"""

from __future__ import annotations

import gzip
import http.client
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from ...errors import DeliveryError, RetryableError
from .base import OtlpSink, user_agent
from .errors import classify_http_response

__all__ = ["DEFAULT_HTTP_ENDPOINT", "OtlpHttpSink"]

DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/metrics"


class OtlpHttpSink(OtlpSink):
    """OTLP over HTTP/1.1 with protobuf bodies; one keep-alive connection reused across batches."""

    protocol = "http/protobuf"

    def __init__(self, endpoint: str = DEFAULT_HTTP_ENDPOINT, *, insecure: bool = False, **options: Any) -> None:
        super().__init__(endpoint, **options)
        if "://" not in endpoint:
            # The same rule as gRPC: without a scheme, TLS unless told otherwise.
            endpoint = ("http://" if insecure else "https://") + endpoint
        parts = urlsplit(endpoint)
        self.tls = parts.scheme.lower() == "https"
        self._host = parts.hostname or ""
        try:
            self._port = parts.port or (443 if self.tls else 80)
        except ValueError:
            self._port = 0
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.scheme.lower() not in ("http", "https") or not self._host or not self._port:
            self._setup_error = (
                self._setup_error or f"otlp_endpoint={self.display_endpoint!r}: expected http://host:port/path or https://..."
            )
        self._conn: http.client.HTTPConnection | None = None
        self._ssl_context: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            cafile = self._read_file("otlp_certificate", self.certificate)
            context = ssl.create_default_context(cadata=cafile.decode("ascii", errors="replace") if cafile else None)
            if self.client_certificate is not None:
                self._read_file("otlp_client_certificate", self.client_certificate)
                self._read_file("otlp_client_key", self.client_key)
                try:
                    context.load_cert_chain(str(self.client_certificate), None if self.client_key is None else str(self.client_key))
                except (OSError, ssl.SSLError) as exc:
                    raise RetryableError(f"OTLP/HTTP {self.display_endpoint}: cannot load the client certificate/key: {exc}") from None
            self._ssl_context = context
        return self._ssl_context

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def send_payload(self, payload: bytes, points: int, deadline: float) -> None:
        where = self.display_endpoint
        if self._setup_error:
            raise RetryableError(f"OTLP/HTTP {where}: {self._setup_error}")
        body = payload
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": user_agent()}
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        for key, value in self._headers:
            headers[key] = value
        status, reason, response_headers, response_body = self._post(body, headers, deadline)
        if 200 <= status < 300:
            self._check_partial_success(response_body, response_headers, points)
            return
        raise classify_http_response(status, reason, response_headers, response_body, where=where, redact=self._redact)

    def _post(self, body: bytes, headers: dict[str, str], deadline: float) -> tuple[int, str, dict[str, str], bytes]:
        for attempt in (0, 1):
            reused = self._conn is not None
            failure, retry_fresh = self._try_post(body, headers, deadline)
            if isinstance(failure, tuple):
                return failure
            self._drop_connection()
            if retry_fresh and reused and attempt == 0 and time.monotonic() < deadline:
                continue  # the receiver closed an idle keep-alive connection: one fresh try
            # Raised here, outside any except block, so no library exception rides along as
            # __context__ (its text may hold what a receiver echoed back).
            raise failure
        raise RetryableError(f"OTLP/HTTP {self.display_endpoint}: connection lost")  # pragma: no cover

    def _try_post(
        self, body: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[tuple[int, str, dict[str, str], bytes] | DeliveryError, bool]:
        """``(response, False)`` or ``(error, worth_one_fresh_connection)``; never raises."""
        where = self.display_endpoint
        timeout = self._attempt_timeout_s(deadline)
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._new_connection(timeout)
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.request("POST", self._path, body=body, headers=headers)
            if conn.sock is not None:
                conn.sock.settimeout(self._attempt_timeout_s(deadline))
            response = conn.getresponse()
            if conn.sock is not None:
                conn.sock.settimeout(self._attempt_timeout_s(deadline))
            data = response.read()
            response_headers = dict(response.getheaders())
            if response.will_close:
                self._drop_connection()
            return (response.status, response.reason, response_headers, data), False
        except RetryableError as exc:
            return exc, False
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            return RetryableError(f"OTLP/HTTP {where}: connection lost ({type(exc).__name__})"), True
        except TimeoutError:
            return RetryableError(f"OTLP/HTTP {where}: no answer within {timeout:.3g}s"), False
        except ConnectionRefusedError:
            return RetryableError(f"OTLP/HTTP {where}: connection refused"), False
        except ssl.SSLCertVerificationError as exc:
            return RetryableError(f"OTLP/HTTP {where}: TLS verification failed: {exc.verify_message or exc.reason}"), False
        except (OSError, http.client.HTTPException) as exc:
            return RetryableError(f"OTLP/HTTP {where}: {type(exc).__name__}: {self._redact(str(exc))}"), False
        except ValueError as exc:  # http.client refusing a header: never echo it
            return RetryableError(f"OTLP/HTTP {where}: request refused before sending ({type(exc).__name__})"), False

    def _check_partial_success(self, body: bytes, headers: Mapping[str, str], points: int) -> None:
        if not body:
            return
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if "json" in content_type:
            return  # a receiver answering JSON to a protobuf request: nothing we can rely on
        try:
            response = ExportMetricsServiceResponse.FromString(body)
        except Exception:  # noqa: BLE001 - the points were accepted; an odd body changes nothing
            return
        partial = response.partial_success
        if partial.rejected_data_points or partial.error_message:
            self._partial_success(int(partial.rejected_data_points), str(partial.error_message), points)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self._drop_connection()
