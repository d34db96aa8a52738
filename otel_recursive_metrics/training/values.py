"""What the training API accepts: numbers, steps, names, attributes, timestamps.

Everything here runs on the caller's thread, at the call, so that a bad value is refused with
a :class:`~otel_recursive_metrics.errors.MetricValueError` naming the field and the value,
before anything of the call is queued, rather than failing later in the worker (where it could
cost the valid values beside it).

The bounds are those of the sinks: integers and steps within 64 bits (the store's INTEGER, OTLP's
``int64``), timestamps within OTLP's unsigned 64-bit nanoseconds and the store's signed ones
(1970 to 2262), attribute values that OTLP can carry (strings, booleans, 64-bit integers,
floats, and flat lists of those).
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Mapping
from typing import Any, cast

from ..errors import MetricValueError

__all__ = [
    "CLOCK",
    "INT64_MAX",
    "INT64_MIN",
    "StrictClock",
    "check_attributes",
    "check_time_unix_nano",
    "next_time_unix_nano",
    "refuse",
    "to_index",
    "to_number",
    "valid_name",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}\Z")


class StrictClock:
    """The wall clock in Unix nanoseconds, strictly increasing within the process.

    Two ``log`` calls (or records) then never share a timestamp, so never the store's identity
    key. ``last`` is public so the training thread's hot path can inline the call.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        now = time.time_ns()
        if now <= self.last:
            now = self.last + 1
        self.last = now
        return now


#: The process's one clock for training points and records.
CLOCK = StrictClock()


def valid_name(name: str) -> bool:
    """An OpenTelemetry instrument name: a letter, then letters, digits, ``_ . - /``; at most 255."""
    return bool(_NAME.match(name))


def next_time_unix_nano() -> int:
    """The wall clock in nanoseconds, strictly increasing within the process (see :class:`StrictClock`)."""
    return CLOCK()


def refuse(field: str, value: Any, why: str) -> MetricValueError:
    """The error for ``field=value``: the value shown (clipped), then why and what would do."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return MetricValueError(f"{field}={shown}: {why}")


def check_time_unix_nano(field: str, value: Any, time_unix_nano: int) -> int:
    """``time_unix_nano`` if the sinks can hold it (1970-01-01 to 2262-04-11), else MetricValueError."""
    if not 0 <= time_unix_nano <= INT64_MAX:
        raise refuse(field, value, "a time between 1970-01-01 and 2262-04-11 (nanoseconds since the epoch within 64 bits)")
    return time_unix_nano


def _attribute_value(field: str, value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return value
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise refuse(field, value, "an integer attribute must fit in 64 bits; pass str(value) to keep it")
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple, dict)) for v in value):
            raise refuse(field, value, "an attribute value must be a str, bool, int, float or a flat list of those (not nested)")
        return [_attribute_value(f"{field}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, numbers.Integral):
        return _attribute_value(field, int(value))
    if isinstance(value, numbers.Real):
        return float(value)
    raise refuse(field, value, "an attribute value must be a str, bool, int, float or a flat list of those")


def check_attributes(field: str, attributes: Mapping[Any, Any] | None) -> dict[str, Any]:
    """``attributes`` as OTLP can carry them, or MetricValueError naming ``field[key]``."""
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if not isinstance(key, str) or not key:
            raise refuse(f"{field} key", key, "attribute keys must be non-empty strings")
        out[key] = _attribute_value(f"{field}[{key!r}]", value)
    return out


def to_number(field: str, value: Any) -> float | int:
    """``value`` as a Python ``float`` or ``int``, or :class:`MetricValueError` naming ``field``.

    The slow path of :meth:`TrainingMetrics.log` (its fast path takes ``float`` as is), shared
    with ``submit_metric``. One-element tensors go through ``.item()``, which synchronises a GPU.
    """
    kind = type(value)
    if kind is float:
        return cast(float, value)
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return cast(int, value)
        raise refuse(field, value, "integer outside the 64-bit range; pass float(value) to keep it approximately")
    if kind is bool or value is None or isinstance(value, (str, bytes, bool)):
        raise refuse(field, value, "expected a number (int, float, a NumPy scalar or a one-element tensor)")
    if isinstance(value, numbers.Integral):
        return to_number(field, int(value))
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if item is None and callable(getattr(value, "numpy", None)):
        # TensorFlow eager tensors have .numpy() but no .item().
        try:
            return to_number(field, value.numpy())
        except MetricValueError:
            raise
        except Exception as exc:
            raise refuse(field, value, f"could not read the tensor's value: {exc}") from exc
    if callable(item):
        shape = getattr(value, "shape", None)
        if shape is not None:
            try:
                size = math.prod(int(d) for d in shape)
            except (TypeError, ValueError):
                size = 1
            if size != 1:
                raise refuse(field, value, f"expected a number or a one-element tensor, got shape {tuple(shape)}")
        try:
            scalar = item()
        except Exception as exc:
            raise refuse(field, value, f"expected a number; .item() failed: {exc}") from exc
        if type(scalar) is bool:
            raise refuse(field, value, "expected a number, got a boolean tensor")
        return to_number(field, scalar)
    raise refuse(field, value, f"expected a number (int, float, a NumPy scalar or a one-element tensor), got {type(value).__name__}")


def to_index(field: str, value: Any) -> int:
    """A step or epoch as a non-negative ``int`` within 64 bits, or :class:`MetricValueError`."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            if callable(getattr(value, "item", None)) and not isinstance(value, (str, bytes)):
                try:
                    return to_index(field, getattr(value, "item")())  # noqa: B009
                except MetricValueError:
                    pass
                except Exception:  # noqa: BLE001 - reported below with the field named
                    pass
            raise refuse(field, value, "expected a non-negative integer")
        value = int(value)
    if not 0 <= value <= INT64_MAX:
        raise refuse(field, value, "expected a non-negative integer within 64 bits")
    return cast(int, value)
