"""OTLP sinks: batches to any OTLP endpoint over gRPC or HTTP/protobuf.

:func:`build_otlp_sink` reads the ``otlp_*`` settings (keyword arguments,
``OTEL_RECURSIVE_METRICS_OTLP_*`` or the standard ``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables)
and returns an :class:`OtlpGrpcSink` or an :class:`OtlpHttpSink`. Each ``send(batch, deadline)``
encodes the batch once (:func:`~otel_recursive_metrics.otlp_codec.encode_request`) and makes
exactly one attempt, bounded by ``deadline`` and by ``otlp_timeout_s``; the retry stage decides
what happens next from the class of the error raised, as in the Collector:

- HTTP 429, 502, 503, 504, gRPC ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``ABORTED``,
  ``CANCELLED``, ``OUT_OF_RANGE``, ``DATA_LOSS``, a refused connection or a timeout raise
  :class:`~otel_recursive_metrics.errors.RetryableError`, carrying the receiver's
  ``Retry-After`` (seconds or an HTTP date) or ``google.rpc.RetryInfo`` delay;
- gRPC ``RESOURCE_EXHAUSTED`` is retryable only when the server sent ``RetryInfo`` (the OTLP
  spec: without it the receiver is not expected to recover);
- every other status (HTTP 400, 401, 413, ..., gRPC ``INVALID_ARGUMENT``, ``UNAUTHENTICATED``,
  ...) raises :class:`~otel_recursive_metrics.errors.PermanentError`: straight to the
  dead-letter queue, the receiver is not asked again.

A response with ``partial_success.rejected_data_points > 0`` is a delivery: the rejected points
are not retried (the spec forbids it) but counted in :attr:`rejected_points`, which the worker
copies into its stats, and the receiver's message is logged at most once a minute.

Endpoints and TLS follow the OTLP exporter specification. gRPC: ``https://`` means TLS,
``http://`` plaintext, and an endpoint without a scheme uses TLS unless ``otlp_insecure`` is
set; the path is ignored. HTTP: the metrics-specific endpoint is used as-is, a base
``OTEL_EXPORTER_OTLP_ENDPOINT`` gets ``/v1/metrics`` appended. TLS verifies the server against
``otlp_certificate`` (else the system roots); ``otlp_client_key`` with
``otlp_client_certificate`` enables mutual TLS.

Header values are secrets: they go on the wire and nowhere else. Every text this module puts in
an exception or a log line is passed through a redactor that removes them, even when a receiver
echoes a token back in its error message.

Thread safety: a sink is used by one worker thread at a time (see
:class:`~otel_recursive_metrics.sinks.base.Sink`); ``close()`` may come from another thread.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

from .. import __version__
from ..errors import DeliveryError, PermanentError, RetryableError
from ..otlp_codec import encode_request

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from ..config import Config
    from ..model import PointBatch

__all__ = [
    "DEFAULT_GRPC_ENDPOINT",
    "DEFAULT_HTTP_ENDPOINT",
    "GRPC_RETRYABLE_CODES",
    "HTTP_RETRYABLE_STATUSES",
    "OtlpGrpcSink",
    "OtlpHttpSink",
    "build_otlp_sink",
    "classify_grpc_error",
    "classify_http_response",
    "parse_retry_after",
    "resolve_endpoint",
]

_log = logging.getLogger(__name__)

DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/metrics"
_METRICS_PATH = "/v1/metrics"

#: The only HTTP statuses the OTLP spec lets a client retry.
HTTP_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: gRPC codes retried unconditionally (RESOURCE_EXHAUSTED only with RetryInfo).
GRPC_RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"})

#: Longest part of a receiver's message that goes into an error text.
_MAX_MESSAGE_CHARS = 300
#: At most one partial-success log line per sink in this many seconds.
_PARTIAL_LOG_INTERVAL_S = 60.0
_REDACTED = "<redacted>"


def _user_agent() -> str:
    return f"otel-recursive-metrics/{__version__}"


# -- secrets -----------------------------------------------------------------------------------


class _Redactor:
    """Removes header values (and their longer words, e.g. the token after ``Bearer``) from text."""

    def __init__(self, values: Iterable[str]) -> None:
        secrets: set[str] = set()
        for value in values:
            if len(value) >= 4:
                secrets.add(value)
            secrets.update(word for word in value.replace(",", " ").replace(";", " ").split() if len(word) >= 8)
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text


def _display_url(url: str) -> str:
    """``url`` safe for messages: no user info, no query string (either may hold a credential)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable endpoint>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = _REDACTED + "@" + netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    return shown + ("?<redacted>" if parts.query else "")


def _check_headers(headers: Sequence[tuple[str, str]]) -> str | None:
    """A problem with the headers, naming the key and never the value, or None."""
    for key, value in headers:
        if not key or any(c.isspace() or c in ':()<>@,;\\"/[]?={}' or ord(c) < 33 or ord(c) > 126 for c in key):
            return f"otlp_headers: invalid header name {key!r}"
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"otlp_headers: the value of header {key!r} contains a control character or line break"
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"otlp_headers: the value of header {key!r} is not ASCII/Latin-1"
    return None


# -- endpoints ---------------------------------------------------------------------------------


def resolve_endpoint(config: Config, environ: Mapping[str, str] | None = None) -> str:
    """The endpoint for ``config.otlp_protocol``, after the spec's defaults and path rules.

    The configuration merges the metrics-specific and the base variable into one field, so the
    environment is consulted to tell them apart: only a value that came from the base
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` gets ``/v1/metrics`` appended (HTTP only); a keyword
    argument or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is used as-is.
    """
    env = os.environ if environ is None else environ
    grpc = config.otlp_protocol == "grpc"
    endpoint = config.otlp_endpoint
    if endpoint is None:
        return DEFAULT_GRPC_ENDPOINT if grpc else DEFAULT_HTTP_ENDPOINT
    if grpc:
        return endpoint
    specific = env.get("OTEL_RECURSIVE_METRICS_OTLP_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not specific and base and base == endpoint:
        return endpoint.rstrip("/") + _METRICS_PATH
    return endpoint


def grpc_target(endpoint: str, insecure: bool) -> tuple[str, bool]:
    """``(host:port, use_tls)`` for a gRPC endpoint, per the spec's ``insecure`` rule."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"otlp_endpoint={_display_url(endpoint)!r}: expected an http:// or https:// URL or host:port")
        if not parts.netloc:
            raise ValueError(f"otlp_endpoint={_display_url(endpoint)!r}: no host")
        host = parts.netloc.rpartition("@")[2]
        return host, scheme == "https"
    return endpoint.strip().rstrip("/"), not insecure


# -- classification ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _status_message(body: bytes, content_type: str) -> str:
    """The human part of an error response: ``google.rpc.Status.message`` or the text body."""
    if not body:
        return ""
    if "protobuf" in content_type:
        try:
            status = status_pb2.Status.FromString(body)
        except Exception:  # noqa: BLE001 - a malformed body is not worth failing over
            return ""
        return str(status.message)
    text = body[: _MAX_MESSAGE_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


def classify_http_response(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    where: str,
    redact: Any = None,
) -> DeliveryError:
    """The error for a non-2xx OTLP/HTTP response: retryable for 429/502/503/504, else permanent."""
    scrub = redact or (lambda text: text)
    lowered = {k.lower(): v for k, v in headers.items()}
    detail = _clip(scrub(_status_message(body, lowered.get("content-type", ""))))
    text = f"OTLP/HTTP {where}: HTTP {status} {scrub(reason or '')}".rstrip() + (f": {detail}" if detail else "")
    if status in HTTP_RETRYABLE_STATUSES:
        return RetryableError(text, parse_retry_after(lowered.get("retry-after")))
    return PermanentError(text)


def _retry_info_delay_s(trailing_metadata: Iterable[tuple[str, Any]] | None) -> float | None:
    """The ``google.rpc.RetryInfo`` delay in a gRPC error's trailing metadata, if any."""
    for key, value in trailing_metadata or ():
        try:
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return max(0.0, float(info.retry_delay.seconds) + float(info.retry_delay.nanos) / 1e9)
            elif key == "google.rpc.retryinfo-bin":  # what the Python SDK's own exporter reads
                info = error_details_pb2.RetryInfo.FromString(value)
                return max(0.0, float(info.retry_delay.seconds) + float(info.retry_delay.nanos) / 1e9)
        except Exception:  # noqa: BLE001 - malformed details: behave as if absent
            continue
    return None


def classify_grpc_error(error: Any, *, where: str, timeout_s: float | None = None, redact: Any = None) -> DeliveryError:
    """The error for a failed gRPC call (anything with ``code()``, ``details()``, ``trailing_metadata()``)."""
    scrub = redact or (lambda text: text)
    try:
        code = error.code()
        code_name = str(getattr(code, "name", code))
    except Exception:  # noqa: BLE001
        code_name = "UNKNOWN"
    try:
        details = _clip(scrub(str(error.details() or "")))
    except Exception:  # noqa: BLE001
        details = ""
    try:
        trailing = error.trailing_metadata()
    except Exception:  # noqa: BLE001
        trailing = None
    delay = _retry_info_delay_s(trailing)
    text = f"OTLP/gRPC {where}: {code_name}" + (f": {details}" if details else "")
    if code_name == "DEADLINE_EXCEEDED" and timeout_s is not None:
        text += f" (no answer within {timeout_s:.3g}s)"
    if code_name in GRPC_RETRYABLE_CODES:
        return RetryableError(text, delay)
    if code_name == "RESOURCE_EXHAUSTED" and delay is not None:
        return RetryableError(text, delay)
    if code_name == "RESOURCE_EXHAUSTED":
        text += " (no RetryInfo: not retried)"
    return PermanentError(text)


# -- the sinks ---------------------------------------------------------------------------------


class _OtlpSink:
    """What both transports share: headers, timeouts, partial success, redaction."""

    name = "otlp"
    protocol = ""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        timeout_s: float = 10.0,
        compression: str = "none",
        certificate: Path | None = None,
        client_key: Path | None = None,
        client_certificate: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.display_endpoint = _display_url(endpoint)
        self.timeout_s = timeout_s
        self.compression = compression
        self.certificate = certificate
        self.client_key = client_key
        self.client_certificate = client_certificate
        self._headers = tuple((str(k).lower(), str(v)) for k, v in headers)
        self._redact = _Redactor(v for _, v in self._headers)
        self._setup_error = _check_headers(self._headers)
        #: Points the receiver refused in a ``partial_success`` (cumulative; never retried).
        self.rejected_points = 0
        #: Responses that carried a ``partial_success`` message or rejection.
        self.partial_successes = 0
        self._partial_logged_at: float | None = None
        self._partial_suppressed = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the headers: repr ends up in logs and tracebacks.
        return f"{type(self).__name__}(endpoint={self.display_endpoint!r}, headers=[{', '.join(k for k, _ in self._headers)}])"

    @property
    def header_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self._headers)

    def send(self, batch: PointBatch, deadline: float) -> None:
        """Deliver ``batch`` in one request before ``deadline`` (monotonic seconds) or raise."""
        self.send_request(encode_request(batch), deadline)

    def send_request(self, request: ExportMetricsServiceRequest, deadline: float) -> None:
        """Deliver one ``ExportMetricsServiceRequest`` as it is (dead-letter replay uses this)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _attempt_timeout_s(self, deadline: float) -> float:
        return max(0.001, min(self.timeout_s, deadline - time.monotonic()))

    def _read_file(self, setting: str, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            # Retryable: the data stays queued while someone fixes the file.
            raise RetryableError(f"OTLP {self.display_endpoint}: cannot read {setting}={str(path)!r}: {exc.strerror or exc}") from None

    def _partial_success(self, rejected: int, message: str, sent_points: int) -> None:
        if rejected <= 0 and not message:
            return
        with self._lock:
            self.partial_successes += 1
            self.rejected_points += max(0, rejected)
            now = time.monotonic()
            if self._partial_logged_at is not None and now - self._partial_logged_at < _PARTIAL_LOG_INTERVAL_S:
                self._partial_suppressed += 1
                return
            suppressed, self._partial_suppressed = self._partial_suppressed, 0
            self._partial_logged_at = now
        text = _clip(self._redact(message)) or "(no message)"
        more = f" ({suppressed} similar response(s) not logged)" if suppressed else ""
        if rejected > 0:
            _log.error(
                "otel-recursive-metrics: OTLP receiver %s rejected %d of %d point(s), not retried: %s%s",
                self.display_endpoint,
                rejected,
                sent_points,
                text,
                more,
            )
        else:
            _log.warning(
                "otel-recursive-metrics: OTLP receiver %s accepted the points with a warning: %s%s", self.display_endpoint, text, more
            )


def _count_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                which = m.WhichOneof("data")
                if which:
                    total += len(getattr(m, which).data_points)
    return total


class OtlpGrpcSink(_OtlpSink):
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
        self._stub: Any = None
        try:
            self.target, self.tls = grpc_target(endpoint, insecure)
        except ValueError as exc:
            self.target, self.tls = "", False
            self._setup_error = self._setup_error or str(exc)

    def _connect(self) -> Any:
        backoff_ms = int(self.reconnect_backoff_max_s * 1000)
        options = [
            ("grpc.primary_user_agent", _user_agent()),
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
        with self._lock:
            self._channel = channel
            self._stub = MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        return self._stub

    def send_request(self, request: ExportMetricsServiceRequest, deadline: float) -> None:
        where = self.display_endpoint
        if self._setup_error:
            raise RetryableError(f"OTLP/gRPC {where}: {self._setup_error}")
        stub = self._stub if self._stub is not None else self._connect()
        timeout = self._attempt_timeout_s(deadline)
        failure: DeliveryError | None = None
        try:
            response = stub.Export(request, metadata=self._headers, timeout=timeout)
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
            self._partial_success(int(partial.rejected_data_points), str(partial.error_message), _count_points(request))

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()


class OtlpHttpSink(_OtlpSink):
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
            self._setup_error = self._setup_error or f"otlp_endpoint={self.display_endpoint!r}: expected http://host:port/path or https://..."
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

    def send_request(self, request: ExportMetricsServiceRequest, deadline: float) -> None:
        where = self.display_endpoint
        if self._setup_error:
            raise RetryableError(f"OTLP/HTTP {where}: {self._setup_error}")
        body = request.SerializeToString()
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": _user_agent()}
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        for key, value in self._headers:
            headers[key] = value
        status, reason, response_headers, response_body = self._post(body, headers, deadline)
        if 200 <= status < 300:
            self._check_partial_success(response_body, response_headers, request)
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

    def _check_partial_success(self, body: bytes, headers: Mapping[str, str], request: ExportMetricsServiceRequest) -> None:
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
            self._partial_success(int(partial.rejected_data_points), str(partial.error_message), _count_points(request))

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self._drop_connection()


def build_otlp_sink(config: Config, *, environ: Mapping[str, str] | None = None) -> OtlpGrpcSink | OtlpHttpSink:
    """The OTLP sink ``config`` asks for; never raises (setup problems surface as send errors)."""
    endpoint = resolve_endpoint(config, environ)
    common: dict[str, Any] = {
        "headers": config.otlp_headers,
        "timeout_s": config.otlp_timeout_s,
        "compression": config.otlp_compression,
        "certificate": config.otlp_certificate,
        "client_key": config.otlp_client_key,
        "client_certificate": config.otlp_client_certificate,
        "insecure": config.otlp_insecure,
    }
    if config.otlp_protocol == "grpc":
        return OtlpGrpcSink(endpoint, reconnect_backoff_max_s=min(5.0, max(0.1, config.retry_max_delay_s)), **common)
    return OtlpHttpSink(endpoint, **common)
