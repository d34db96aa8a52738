"""Where batches are delivered: the embedded store and OTLP endpoints.

A sink is anything with a ``name``, ``send(batch, deadline)`` and ``close()`` (see
:class:`~otel_recursive_metrics.sinks.base.Sink`). ``send`` raises
:class:`~otel_recursive_metrics.errors.PermanentError` or
:class:`~otel_recursive_metrics.errors.RetryableError`; the retry stage decides the rest.
"""

from .base import Sink, build_sinks
from .store import StoreSink

__all__ = ["Sink", "StoreSink", "build_sinks"]
