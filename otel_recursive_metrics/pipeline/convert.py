"""Turn what the worker accepted (SDK exports, ``log`` calls, submitted records) into points.

This runs on the worker thread, never on the caller's: the exporter and the training API only
append references to a deque, and the cost of walking the SDK's objects is paid here, once per
batch.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)

from ..model.attributes import AttributeLimits, canonical_json, canonical_json_of_immutable, limit_attributes
from ..model.batch import (
    INT64_MAX,
    INT64_MIN,
    BatchBuilder,
    explicit_histogram,
    exponential_histogram,
    new_point,
)
from ..model.kinds import MetricKind

__all__ = ["LogContext", "LogItem", "add_log_item", "add_metrics_data", "add_record", "context_number"]


@dataclass(frozen=True)
class LogContext:
    """What every point of one logging source shares: resource, scope, attributes, name prefix."""

    resource: Mapping[str, Any]
    scope_name: str
    scope_version: str
    attributes_json: str = "{}"
    prefix: str = ""
    unit: str = ""


#: A ``TrainingMetrics.log`` call as queued: ``(context, time_unix_nano, step, epoch, values,
#: offered_monotonic_ns)``, the context as a LogContext or as its number from :func:`context_number`.
LogItem = tuple["LogContext | int", int, int, "int | None", dict[str, float], int]

# Contexts by number. A queued item that holds only numbers, strings and a dict of floats is
# not tracked by the garbage collector, so a buffer of many log calls costs collections nothing;
# an item holding the LogContext object itself would be tracked.
_contexts: dict[int, LogContext] = {}
_context_numbers: dict[int, int] = {}
_context_lock = threading.Lock()


def context_number(ctx: LogContext) -> int:
    """A small number standing for ``ctx`` in queued items (contexts are kept for the process)."""
    with _context_lock:
        number = _context_numbers.get(id(ctx))
        if number is None or _contexts[number] is not ctx:
            number = len(_contexts)
            _contexts[number] = ctx
            _context_numbers[id(ctx)] = number
        return number


# The kind of a logged value, as a module name: the loop of add_log_item runs once per logged
# value, and looking a member up on its class costs about 0.1 µs on Python 3.11.
_GAUGE = MetricKind.GAUGE


def _temporality(value: Any) -> int:
    return int(getattr(value, "value", value) or 0)


def add_metrics_data(builder: BatchBuilder, data: MetricsData, limits: AttributeLimits) -> tuple[int, int]:
    """Add every point of an SDK export; returns how many attribute keys or values ``limits``
    cut, and how many integer values past 64 bits became floats.

    A counter's cumulative sum can pass 2**63 (the SDK keeps Python ints); neither the store's
    INTEGER nor OTLP's ``as_int`` holds that, so the value is kept as a float (its magnitude,
    to 53 bits) rather than refused with the points batched beside it.
    """
    points = builder.batch.points
    append = points.append
    intern = builder.attributes
    cut = 0
    as_float = 0

    def attrs_json(attributes: Any) -> int:
        nonlocal cut
        text, n = canonical_json_of_immutable(attributes, limits)
        cut += n
        return intern(text)

    for rm in data.resource_metrics:
        res = builder.resource(dict(rm.resource.attributes), rm.schema_url or rm.resource.schema_url or "")
        for sm in rm.scope_metrics:
            scope = sm.scope
            sc = builder.scope(scope.name, scope.version, dict(scope.attributes or {}), sm.schema_url or scope.schema_url or "")
            for metric in sm.metrics:
                d = metric.data
                desc, unit = metric.description or "", metric.unit or ""
                if isinstance(d, (Sum, Gauge)):
                    if isinstance(d, Sum):
                        m = builder.metric(metric.name, desc, unit, MetricKind.SUM, _temporality(d.aggregation_temporality), d.is_monotonic)
                    else:
                        m = builder.metric(metric.name, desc, unit, MetricKind.GAUGE)
                    for p in d.data_points:
                        attrs = attrs_json(p.attributes)
                        value = p.value
                        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
                            value = float(value)
                            as_float += 1
                        append(new_point(res, sc, m, attrs, p.start_time_unix_nano or 0, p.time_unix_nano, value))
                elif isinstance(d, Histogram):
                    m = builder.metric(metric.name, desc, unit, MetricKind.HISTOGRAM, _temporality(d.aggregation_temporality))
                    for h in d.data_points:
                        hist = explicit_histogram(h.count, h.sum, _finite(h.min), _finite(h.max), h.explicit_bounds, h.bucket_counts)
                        attrs = attrs_json(h.attributes)
                        append(new_point(res, sc, m, attrs, h.start_time_unix_nano, h.time_unix_nano, None, histogram=hist))
                elif isinstance(d, ExponentialHistogram):
                    m = builder.metric(metric.name, desc, unit, MetricKind.EXPONENTIAL_HISTOGRAM, _temporality(d.aggregation_temporality))
                    for e in d.data_points:
                        hist = exponential_histogram(
                            e.count, e.sum, _finite(e.min), _finite(e.max), e.scale, e.zero_count,
                            (e.positive.offset, e.positive.bucket_counts), (e.negative.offset, e.negative.bucket_counts), e.flags,
                        )  # fmt: skip
                        attrs = attrs_json(e.attributes)
                        append(new_point(res, sc, m, attrs, e.start_time_unix_nano, e.time_unix_nano, None, histogram=hist))
    return cut, as_float


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def add_log_item(builder: BatchBuilder, item: LogItem) -> int:
    """Add one ``log`` call: a gauge point per value, all with the call's time and step."""
    key, time_ns, step, epoch, values = item[:5]  # the LOG_* fields, in order; the age is not a point's
    ctx = _contexts[key] if isinstance(key, int) else key
    res = builder.resource_object(ctx.resource)
    sc = builder.plain_scope(ctx.scope_name, ctx.scope_version)
    append = builder.batch.points.append
    attrs = builder.attributes(ctx.attributes_json)
    prefix, unit = ctx.prefix, ctx.unit
    metrics = builder.gauge_names.get((prefix, unit))
    if metrics is None:
        metrics = builder.gauge_names[(prefix, unit)] = {}
    for name, value in values.items():
        metric = metrics.get(name)
        if metric is None:
            metric = metrics[name] = builder.metric(prefix + name, "", unit, _GAUGE)
        # new_point()'s field order, written out: this loop runs once per logged value.
        append([res, sc, metric, attrs, 0, time_ns, value, step, epoch, None, None])
    return len(values)


# Record keys that map to point fields; every other key is kept in ``extra``.
_RECORD_CORE = frozenset(
    ("metric_name", "value", "timestamp", "_time_unix_nano", "step", "epoch", "tags", "labels", "attributes", "unit", "description")
)


def add_record(
    builder: BatchBuilder, record: Mapping[str, Any], resource: Mapping[str, Any], scope: tuple[str, str], limits: AttributeLimits
) -> int:
    """Add one submitted record (validated at the call) as a gauge point; returns attributes cut by ``limits``."""
    attrs: dict[str, Any] = {}
    for key in ("tags", "labels", "attributes"):
        extra_attrs = record.get(key)
        if isinstance(extra_attrs, Mapping):
            attrs.update({str(k): _attr_value(v) for k, v in extra_attrs.items()})
        elif extra_attrs is not None:
            attrs[key] = _attr_value(extra_attrs)  # a list of tags: one array attribute
    extra = {k: _json_safe(v) for k, v in record.items() if k not in _RECORD_CORE}
    res = builder.resource_object(resource)
    sc = builder.plain_scope(*scope)
    m = builder.metric(record["metric_name"], str(record.get("description") or ""), str(record.get("unit") or ""), MetricKind.GAUGE)
    limited, cut = limit_attributes(attrs, limits)
    builder.add_point(
        res,
        sc,
        m,
        canonical_json(limited),
        0,
        int(record["_time_unix_nano"]),
        record["value"],
        record.get("step"),
        record.get("epoch"),
        extra=extra or None,
    )
    return cut


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return list(value)
    return str(value)


def _json_safe(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)
