"""What a point is: its fields, and the builders of its histogram field.

A point is a list read through the index constants below (``point[TIME]``, not ``point[5]``),
built by :func:`new_point`; a list rather than an object because a batch holds thousands and the
worker builds them in its hot loop::

    RESOURCE, SCOPE, METRIC, ATTRIBUTES   indexes into the batch's tables
    START_TIME, TIME                      Unix nanoseconds (start 0 for gauges)
    VALUE                                 the number of a gauge or sum; None for histograms
    STEP, EPOCH                           from TrainingMetrics.log / records; None otherwise
    HISTOGRAM                             {"count", "sum", "min", "max", "bounds", "counts"} for
                                          explicit buckets; {"count", "sum", "min", "max",
                                          "scale", "zero_count", "positive": [offset, counts],
                                          "negative": [offset, counts], "flags"} exponential
    EXTRA                                 a submitted record's other fields (its id, free-form
                                          keys): kept in the store, never sent to OTLP

A point lives in a :class:`~.batch.PointBatch`, whose tables its first four fields index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ATTRIBUTES",
    "EPOCH",
    "EXTRA",
    "HISTOGRAM",
    "INT64_MAX",
    "INT64_MIN",
    "METRIC",
    "RESOURCE",
    "SCOPE",
    "START_TIME",
    "STEP",
    "TIME",
    "VALUE",
    "Point",
    "explicit_histogram",
    "exponential_histogram",
    "new_point",
    "wide_ints_as_float",
]

#: The fields of a point, in order (see the module docstring).
RESOURCE, SCOPE, METRIC, ATTRIBUTES, START_TIME, TIME, VALUE, STEP, EPOCH, HISTOGRAM, EXTRA = range(11)

Point = list[Any]


def new_point(
    resource: int,
    scope: int,
    metric: int,
    attributes: int,
    start_time_unix_nano: int,
    time_unix_nano: int,
    value: float | int | None,
    step: int | None = None,
    epoch: int | None = None,
    histogram: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Point:
    """One point; the first four are indexes into its batch's tables (see :class:`~.batch.BatchBuilder`)."""
    return [resource, scope, metric, attributes, start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra]


#: What SQLite's INTEGER and OTLP's ``as_int`` hold; an ``int`` value beyond is kept as a float.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def wide_ints_as_float(points: Sequence[Point]) -> tuple[list[Point], int]:
    """``points`` with every integer value past 64 bits as a float (the others as they are), and how many.

    SQLite refuses such an integer (``OverflowError``), and with it the whole batch; as a float
    it keeps its magnitude (to 53 bits). A cumulative counter passes 2**63 this way. The points
    changed are copies: the given ones (which another sink may be reading) stay as they were.
    """
    out: list[Point] = []
    changed = 0
    for point in points:
        value = point[VALUE]
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            widened = point.copy()
            widened[VALUE] = float(value)
            out.append(widened)
            changed += 1
        else:
            out.append(point)
    return out, changed


def explicit_histogram(
    count: int, total: float, minimum: float | None, maximum: float | None, bounds: Sequence[float], counts: Sequence[int]
) -> dict[str, Any]:
    """The ``histogram`` field of an explicit-bucket histogram point."""
    return {"count": count, "sum": total, "min": minimum, "max": maximum, "bounds": list(bounds), "counts": list(counts)}


def exponential_histogram(
    count: int,
    total: float,
    minimum: float | None,
    maximum: float | None,
    scale: int,
    zero_count: int,
    positive: tuple[int, Sequence[int]],
    negative: tuple[int, Sequence[int]],
    flags: int = 0,
) -> dict[str, Any]:
    """The ``histogram`` field of an exponential histogram point; buckets as ``(offset, counts)``."""
    return {
        "count": count,
        "sum": total,
        "min": minimum,
        "max": maximum,
        "scale": scale,
        "zero_count": zero_count,
        "positive": [positive[0], list(positive[1])],
        "negative": [negative[0], list(negative[1])],
        "flags": flags,
    }
