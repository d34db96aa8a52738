"""How an OTLP receiver's answer becomes a PermanentError or a RetryableError, with no secret in it.

The retry stage decides what happens to a batch from the class of the error a sink raises; this
module is where a receiver's answer gets that class, as in the Collector:

- HTTP 429, 502, 503, 504 and gRPC ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``ABORTED``,
  ``CANCELLED``, ``OUT_OF_RANGE``, ``DATA_LOSS`` are
  :class:`~otel_recursive_metrics.errors.RetryableError`, carrying the receiver's
  ``Retry-After`` (seconds or an HTTP date) or ``google.rpc.RetryInfo`` delay;
- gRPC ``RESOURCE_EXHAUSTED`` is retryable only when the server sent ``RetryInfo`` (the OTLP
  spec: without it the receiver is not expected to recover);
- every other status is a :class:`~otel_recursive_metrics.errors.PermanentError`: straight to
  the dead-letter queue, the receiver is not asked again. HTTP 400, 413, 422 and gRPC
  ``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED`` (without ``RetryInfo``), ``FAILED_PRECONDITION``
  are about the data, so they are *splittable*: the delivery stage sends the halves apart and
  dead-letters only the points refused.

>>> error = classify_http_response(503, "Service Unavailable", {"Retry-After": "7"}, b"", where="collector:4318")
>>> type(error).__name__, error.retry_after_s
('RetryableError', 7.0)
>>> classify_http_response(400, "Bad Request", {}, b"bad metric name", where="collector:4318")
PermanentError('OTLP/HTTP collector:4318: HTTP 400 Bad Request: bad metric name')

Header values are secrets. :class:`Redactor` removes them from any text a receiver sends back
(some echo the token in their error message) before it reaches an exception; :func:`display_url`
drops the user info and query string of an endpoint; :func:`check_headers` names a bad header
by its key, never its value. A receiver's message is clipped to ``_MAX_MESSAGE_CHARS``.

Everything here is a pure function of its arguments (the ``now`` of :func:`parse_retry_after`
defaults to the wall clock), so it is safe from any thread.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from ...errors import DeliveryError, PermanentError, RetryableError

__all__ = [
    "GRPC_DATA_CODES",
    "GRPC_RETRYABLE_CODES",
    "HTTP_DATA_STATUSES",
    "HTTP_RETRYABLE_STATUSES",
    "classify_grpc_error",
    "classify_http_response",
    "parse_retry_after",
]

#: The only HTTP statuses the OTLP spec lets a client retry.
HTTP_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: gRPC codes retried unconditionally (RESOURCE_EXHAUSTED only with RetryInfo).
GRPC_RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"})
#: Permanent refusals about the data itself (maybe of one point, or of the request's size):
#: the batch is split to find what is refused. Others (401, 403, 404, ...) concern every request.
HTTP_DATA_STATUSES = frozenset({400, 413, 422})
GRPC_DATA_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"})

#: Longest part of a receiver's message that goes into an error text.
_MAX_MESSAGE_CHARS = 300
_REDACTED = "<redacted>"


# -- secrets -----------------------------------------------------------------------------------


class Redactor:
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


def check_headers(headers: Sequence[tuple[str, str]]) -> str | None:
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


def clip_message(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


# -- HTTP --------------------------------------------------------------------------------------


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
    detail = clip_message(scrub(_status_message(body, lowered.get("content-type", ""))))
    text = f"OTLP/HTTP {where}: HTTP {status} {scrub(reason or '')}".rstrip() + (f": {detail}" if detail else "")
    if status in HTTP_RETRYABLE_STATUSES:
        return RetryableError(text, parse_retry_after(lowered.get("retry-after")))
    return PermanentError(text, splittable=status in HTTP_DATA_STATUSES)


# -- gRPC --------------------------------------------------------------------------------------


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
        details = clip_message(scrub(str(error.details() or "")))
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
    return PermanentError(text, splittable=code_name in GRPC_DATA_CODES)
