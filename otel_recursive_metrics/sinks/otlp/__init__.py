"""OTLP sinks: batches to any OTLP endpoint over gRPC or HTTP/protobuf, chosen by the configuration.

:func:`build_otlp_sink` reads the ``otlp_*`` settings (keyword arguments,
``OTEL_RECURSIVE_METRICS_OTLP_*`` or the standard ``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables)
and returns an :class:`OtlpGrpcSink` or an :class:`OtlpHttpSink`::

    sink = build_otlp_sink(load_config(sinks="otlp", otlp_protocol="http/protobuf"))
    sink.send(batch, deadline=time.monotonic() + 10)  # one attempt; raises a classified error

The parts, in the order a batch meets them:

- ``__init__.py`` (this module): endpoint resolution and the factory; it re-exports the public
  names of the modules below, so ``from otel_recursive_metrics.sinks.otlp import ...`` is the
  one import callers need;
- :mod:`.base`: what both transports share (one attempt per send, bounded by the deadline and
  ``otlp_timeout_s``; partial success counted and logged; TLS files read);
- :mod:`.grpc` and :mod:`.http`: the two transports;
- :mod:`.errors`: how a receiver's answer becomes a ``PermanentError`` or a
  ``RetryableError``, and the redaction that keeps header values out of every message.

The batch's protobuf encoding is the model's (:mod:`otel_recursive_metrics.model.otlp`): the
dead letters write the same requests as JSON Lines.

Endpoints follow the OTLP exporter specification. gRPC: ``https://`` means TLS, ``http://``
plaintext, and an endpoint without a scheme uses TLS unless ``otlp_insecure`` is set; the path is
ignored. HTTP: the metrics-specific endpoint is used as-is, a base ``OTEL_EXPORTER_OTLP_ENDPOINT``
gets ``/v1/metrics`` appended (:func:`resolve_endpoint`).

Thread safety: a sink is used by one worker thread at a time (see
:class:`~otel_recursive_metrics.sinks.base.Sink`); ``close()`` may come from another thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import GRPC_RETRYABLE_CODES, HTTP_RETRYABLE_STATUSES, classify_grpc_error, classify_http_response, parse_retry_after
from .grpc import DEFAULT_GRPC_ENDPOINT, OtlpGrpcSink, grpc_target
from .http import DEFAULT_HTTP_ENDPOINT, OtlpHttpSink

if TYPE_CHECKING:
    from ...config import Config

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
    "grpc_target",
    "parse_retry_after",
    "resolve_endpoint",
]

_METRICS_PATH = "/v1/metrics"


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
