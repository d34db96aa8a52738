"""What the OTLP gRPC and HTTP sinks share: settings, one attempt per send, and partial success.

A transport subclasses :class:`OtlpSink` and implements two methods, ``send_payload(payload,
points, deadline)`` and ``close()``. ``send(batch, deadline)`` encodes the batch once, straight to
the request's protobuf bytes (:func:`~otel_recursive_metrics.model.otlp_wire.encode_request_bytes`:
no message object per point), and hands them to ``send_payload``, which makes exactly one attempt,
bounded by ``deadline`` (monotonic seconds) and by ``timeout_s``
(:meth:`OtlpSink._attempt_timeout_s`), and raises a classified error
(:mod:`~otel_recursive_metrics.sinks.otlp.errors`) on failure; the retry stage decides the rest.
``send_request(request, deadline)`` sends a request message as it is (dead-letter replay).

A response with ``partial_success.rejected_data_points > 0`` is a delivery: the rejected points
are not retried (the spec forbids it) but counted in :attr:`OtlpSink.rejected_points`, which the
worker copies into its stats, and the receiver's message is logged at most once a minute::

    sink = OtlpHttpSink("http://collector:4318/v1/metrics", headers=[("authorization", token)])
    sink.send(batch, deadline=time.monotonic() + 10)
    sink.rejected_points  # points the receiver refused so far

Header values are secrets: they are kept only for the wire, ``repr`` shows their names, and every
text put in an exception or a log line passes through the sink's redactor first.

Thread safety: a sink is used by one worker thread at a time (see
:class:`~otel_recursive_metrics.sinks.base.Sink`); ``close()`` may come from another thread, so
the partial-success counters (and the gRPC channel) are guarded by ``_lock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..._version import __version__
from ...config import display_url, setting_default
from ...errors import PermanentError, RetryableError
from ...model.otlp_wire import encode_request_bytes
from .errors import Redactor, check_headers, clip_message

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from ...model.batch import PointBatch

__all__ = ["OtlpSink", "count_points", "user_agent"]

# The logger keeps the name it had before the sinks were split into modules, so logging
# configurations that name "otel_recursive_metrics.sinks.otlp" still reach these lines.
_log = logging.getLogger("otel_recursive_metrics.sinks.otlp")

#: At most one partial-success log line per sink in this many seconds.
_PARTIAL_LOG_INTERVAL_S = 60.0


def user_agent() -> str:
    return f"otel-recursive-metrics/{__version__}"


def count_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                which = m.WhichOneof("data")
                if which:
                    total += len(getattr(m, which).data_points)
    return total


class OtlpSink:
    """What both transports share: headers, timeouts, partial success, redaction."""

    name = "otlp"
    #: Sends over the network (see the Sink protocol): ``offline`` leaves it to ``sync``.
    is_local = False
    protocol = ""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        timeout_s: float = setting_default("otlp_timeout_s"),
        compression: str = setting_default("otlp_compression"),
        certificate: Path | None = None,
        client_key: Path | None = None,
        client_certificate: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.display_endpoint = display_url(endpoint)
        self.timeout_s = timeout_s
        self.compression = compression
        self.certificate = certificate
        self.client_key = client_key
        self.client_certificate = client_certificate
        self._headers = tuple((str(k).lower(), str(v)) for k, v in headers)
        self._redact = Redactor(v for _, v in self._headers)
        self._setup_error = check_headers(self._headers)
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

    def send(self, batch: PointBatch, deadline: float) -> None:
        """Deliver ``batch`` in one request before ``deadline`` (monotonic seconds) or raise."""
        try:
            payload, points = encode_request_bytes(batch)
        except (ValueError, TypeError, OverflowError) as exc:
            # A value OTLP cannot carry (an integer attribute beyond 64 bits, say): no receiver
            # will ever take it, but the points beside it are fine.
            raise PermanentError(
                f"OTLP {self.display_endpoint}: cannot encode the batch: {type(exc).__name__}: {exc}", splittable=True
            ) from None
        self.send_payload(payload, points, deadline)

    def send_request(self, request: ExportMetricsServiceRequest, deadline: float) -> None:
        """Deliver one ``ExportMetricsServiceRequest`` as it is (dead-letter replay uses this)."""
        self.send_payload(request.SerializeToString(), count_points(request), deadline)

    def send_payload(self, payload: bytes, points: int, deadline: float) -> None:
        """Deliver one serialised ``ExportMetricsServiceRequest`` holding ``points`` points (one attempt)."""
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
        text = clip_message(self._redact(message)) or "(no message)"
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
