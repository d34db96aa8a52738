"""Host and process metrics: OpenTelemetry's system-metrics instrumentation, on our provider.

``opentelemetry-instrumentation-system-metrics`` (the ``system`` extra, with ``psutil``) already
reads ``psutil`` and emits the conventional ``system.*`` / ``process.*`` names; we only choose the
set (:mod:`otel_recursive_metrics.metric_set`) and the MeterProvider it reports to, the private one of
:class:`~otel_recursive_metrics.system.SystemMetrics`, so the samples travel with the run and rank
resource through our pipeline rather than through whatever global provider the process has.

Why a subclass: the instrumentor is a process-wide singleton (``BaseInstrumentor.__new__`` hands
every caller the same object, and ``__init__`` then overwrites its config). Sharing it would tie a
second ``SystemMetrics`` (after a restart of the pipeline, or another pipeline) to the first one's
provider, and would rewrite the configuration of an instance that ``opentelemetry-instrument``
may have put on the global provider. :class:`_ProviderSystemMetricsInstrumentor` opts out of the
singleton: one instrumentor per provider, nothing shared. Its instruments stop with their
provider, so no ``uninstrument`` is needed (the instrumentation's is a no-op anyway).

Which ranks report what: ``process.*`` describes this process, so every rank reports it.
``system.*`` describes the host, the same for every rank on it, so by default only the node's
first rank (local rank 0, or a process without a local rank) reports it
(``host_metrics_every_rank=True`` makes every rank do so).

Thread safety: :func:`instrument_host` is called once per provider, under
``SystemMetrics``' start lock; the callbacks then run on the sampler thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider

__all__ = ["host_scope", "instrument_host"]

_log = logging.getLogger(__name__)

_instrumentor_class: type[Any] | None = None


def _instrumentor_type() -> type[Any]:
    """The per-provider instrumentor class (ImportError without the ``system`` extra)."""
    global _instrumentor_class
    if _instrumentor_class is None:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

        class _ProviderSystemMetricsInstrumentor(SystemMetricsInstrumentor):
            """SystemMetricsInstrumentor without the process-wide singleton (see the module docstring)."""

            def __new__(cls, *args: Any, **kwargs: Any) -> _ProviderSystemMetricsInstrumentor:
                return object.__new__(cls)

        _instrumentor_class = _ProviderSystemMetricsInstrumentor
    return _instrumentor_class


def host_scope(config: Mapping[str, list[str] | None], *, local_rank: int | None, every_rank: bool) -> dict[str, list[str] | None]:
    """``config`` without the ``system.*`` metrics on ranks other than a node's first (see above)."""
    if every_rank or local_rank is None or local_rank == 0:
        return dict(config)
    return {k: v for k, v in config.items() if not k.startswith("system.")}


def instrument_host(provider: MeterProvider, config: Mapping[str, list[str] | None]) -> list[str]:
    """Instrument ``provider`` for the metrics of ``config``; the config keys in effect.

    Without the instrumentation (or ``psutil``) it logs one WARNING naming the extra to install
    and returns ``[]``: the GPU metrics, if any, still run.
    """
    if not config:
        return []
    try:
        instrumentor_type = _instrumentor_type()
    except ImportError as exc:
        _log.warning(
            "otel-recursive-metrics: no host or process metrics: %s;"
            " install them with pip install -e '.[system]' in your clone of otel-recursive-metrics",
            exc,
        )
        return []
    instrumentor = instrumentor_type(config={k: (None if v is None else list(v)) for k, v in config.items()})
    instrumentor.instrument(meter_provider=provider)
    if not instrumentor.is_instrumented_by_opentelemetry:
        # The instrumentation found a dependency conflict (psutil too old) and logged it as an error.
        return []
    return list(config)
