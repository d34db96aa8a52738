"""Which system metrics to sample: the default set, the set language, the exclusions, the GPU metrics.

Below the sampler (:mod:`otel_recursive_metrics.system`), so that the settings check a set
without importing it: this module is data and pure functions.

A *metric set* is a mapping from a metric to its states, the shape of
``opentelemetry-instrumentation-system-metrics``'s ``config`` argument, extended with the GPU
metrics of :data:`GPU_METRICS` (sampled by :mod:`otel_recursive_metrics.system.gpu`)::

    {"process.cpu.time": ["user", "system"], "process.memory.usage": None, "hw.gpu.utilization": None}

Host and process keys (``system.*``, ``process.*``, ``cpython.*``) go to the instrumentation
unchanged: a list selects the states (``user``, ``idle``, ``read``, ``transmit``, ...) it reports,
``None`` means a metric without states. Keys are the instrumentation's config keys, which are the
metric names except ``system.network.dropped.packets`` (sent as ``system.network.dropped_packets``)
and the deprecated ``process.runtime.*`` ones. ``hw.*`` keys switch GPU metrics on; their value is
ignored.

:data:`DEFAULT_METRIC_SET` is small on purpose, since every rank sends it every interval:

- process: CPU time and utilisation, resident and virtual memory;
- host: CPU utilisation per CPU (``user``, ``system``, ``iowait``, ``idle``), memory used (bytes and
  fraction), disk and network bytes per device;
- GPU: every metric of :data:`GPU_METRICS`.

:func:`parse_metric_set` reads a set given as a mapping, a JSON object, or a comma-separated list,
read from left to right:

==========================================  ==========================================================
``default``                                 the default set
``all``                                     every metric the instrumentation knows, and every GPU metric
``default,system.swap.usage``               add a metric, with its default states (ours if the default
                                            set has it, else the instrumentation's)
``default,-system.*``                       remove every metric matching a glob
``process.cpu.time,hw.gpu.utilization``     exactly these (a list that does not start with ``default``
                                            or ``all`` starts from nothing)
``{"system.cpu.utilization": ["idle"]}``    a JSON object: exactly this set, states included
==========================================  ==========================================================

The instrumentation's own variable ``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` (globs,
comma-separated) is honoured on top, GPU names included: the instrumentation applies it only to
its own default set, which we never use, so without this it would be silently ignored.

Functions without state (they read only the environment mapping given, ``os.environ`` by default);
safe from any thread.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "DEFAULT_METRIC_SET",
    "EXCLUDED_METRICS_VARIABLE",
    "GPU_METRICS",
    "GPU_METRIC_NAMES",
    "GpuMetricSpec",
    "MetricSet",
    "known_host_metrics",
    "parse_metric_set",
    "split_metric_set",
]


@dataclass(frozen=True)
class GpuMetricSpec:
    """How one GPU metric is recorded: instrument kind, UCUM unit, description."""

    kind: str  # "gauge", "counter" or "up_down_counter" (all observable)
    unit: str
    description: str


GPU_METRICS: Mapping[str, GpuMetricSpec] = {
    "hw.gpu.utilization": GpuMetricSpec("gauge", "1", "Fraction of time a kernel ran on the GPU over the driver's sample period."),
    "hw.gpu.memory.usage": GpuMetricSpec("up_down_counter", "By", "GPU memory used."),
    "hw.gpu.memory.limit": GpuMetricSpec("up_down_counter", "By", "Size of the GPU memory."),
    "hw.power": GpuMetricSpec("gauge", "W", "Instantaneous power drawn by the GPU."),
    "hw.energy": GpuMetricSpec("counter", "J", "Energy consumed by the GPU since the driver was loaded."),
    "hw.temperature": GpuMetricSpec("gauge", "Cel", "GPU die temperature in degrees Celsius."),
    "hw.gpu.speed": GpuMetricSpec("gauge", "Hz", "GPU SM clock frequency (named after hw.cpu.speed; not in the conventions yet)."),
}
GPU_METRIC_NAMES: tuple[str, ...] = tuple(GPU_METRICS)

#: A metric set: metric -> its states (host metrics) or ``None``.
MetricSet: TypeAlias = dict[str, list[str] | None]

#: The instrumentation's exclusion variable (globs), honoured by :func:`parse_metric_set` too.
EXCLUDED_METRICS_VARIABLE = "OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS"

_HOST_PREFIXES = ("system.", "process.", "cpython.")

DEFAULT_METRIC_SET: Mapping[str, tuple[str, ...] | None] = {
    "process.cpu.time": ("user", "system"),
    "process.cpu.utilization": None,
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "system.cpu.utilization": ("user", "system", "iowait", "idle"),
    "system.memory.usage": ("used",),
    "system.memory.utilization": ("used",),
    "system.disk.io": ("read", "write"),
    "system.network.io": ("transmit", "receive"),
    **dict.fromkeys(GPU_METRIC_NAMES),
}


def known_host_metrics() -> dict[str, list[str] | None] | None:
    """The instrumentation's full table of config keys and default states; None if not installed."""
    try:
        from opentelemetry.instrumentation.system_metrics import _DEFAULT_CONFIG
    except ImportError:
        return None
    # A private name of the instrumentation, read (never changed) so that names can be checked
    # and "all" can mean what that release offers; a release without it only loses the checks.
    return {key: None if states is None else list(states) for key, states in _DEFAULT_CONFIG.items()}


def _default() -> MetricSet:
    return {key: None if states is None else list(states) for key, states in DEFAULT_METRIC_SET.items()}


def _states(key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{key}: expected a list of state names (strings) or null, got {value!r}")
    return list(value)


def _check_names(names: Sequence[str], known: dict[str, list[str] | None] | None) -> None:
    unknown = [
        name
        for name in names
        if name not in GPU_METRIC_NAMES
        and not (known is None and name.startswith(_HOST_PREFIXES))
        and not (known is not None and name in known)
    ]
    if unknown:
        offered = sorted(GPU_METRIC_NAMES) + (sorted(known) if known is not None else ["system.*", "process.*", "cpython.*"])
        raise ValueError(f"unknown system metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(offered)}")


def parse_metric_set(
    value: str | Mapping[str, Any] | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> MetricSet:
    """The metric set that ``value`` describes (see the module docstring), exclusions applied.

    ``None`` and ``""`` mean ``default``. Raises :class:`ValueError` naming what was wrong and
    what would be accepted.
    """
    known = known_host_metrics()
    chosen: MetricSet
    if isinstance(value, Mapping) or (isinstance(value, str) and value.strip().startswith("{")):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not a JSON object: {exc}") from None
            if not isinstance(value, Mapping):
                raise ValueError("expected a JSON object of metric -> states")
        chosen = {str(key): _states(str(key), states) for key, states in value.items()}
        _check_names(list(chosen), known)
    elif value is None or isinstance(value, str):
        tokens = [t.strip() for t in (value or "default").split(",") if t.strip()] or ["default"]
        chosen = {} if tokens[0] not in ("default", "all") else _default()
        for token in tokens:
            if token == "default":
                chosen.update(_default())
            elif token == "all":
                chosen.update(dict(known or {}))
                chosen.update(dict.fromkeys(GPU_METRIC_NAMES))
            elif token.startswith("-"):
                pattern = token[1:].strip()
                chosen = {k: v for k, v in chosen.items() if not fnmatch.fnmatchcase(k, pattern)}
            else:
                _check_names([token], known)
                states = DEFAULT_METRIC_SET[token] if token in DEFAULT_METRIC_SET else (known or {}).get(token)
                chosen[token] = None if states is None else list(states)
    else:
        raise ValueError(f"expected a string or a mapping of metric -> states, got {type(value).__name__}")
    env = os.environ if environ is None else environ
    patterns = [p.strip() for p in env.get(EXCLUDED_METRICS_VARIABLE, "").split(",") if p.strip()]
    return {k: v for k, v in chosen.items() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def split_metric_set(metric_set: Mapping[str, list[str] | None]) -> tuple[MetricSet, list[str]]:
    """``(host config for the instrumentation, GPU metric names)`` of a metric set."""
    host = {k: (None if v is None else list(v)) for k, v in metric_set.items() if k not in GPU_METRIC_NAMES}
    gpu = [k for k in metric_set if k in GPU_METRIC_NAMES]
    return host, gpu
