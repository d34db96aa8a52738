"""Histogram points as distributions over time: per point, percentiles computed from its buckets.

TensorBoard draws a histogram logged at every step as bands (its "distributions" view): the
minimum and maximum, then the percentiles at 1.5, 1 and 0.5 standard deviations of a normal
distribution either side of the median, and the median. A chart of the histogram's mean alone
hides all of that: a latency whose tail grows keeps a flat mean. This module computes the same
bands from the store's histogram points, on the server, so a page receives nine numbers a point
instead of every bucket:

- an **explicit-bucket** point counts values in ``(bounds[i-1], bounds[i]]``; an
  **exponential** one in ``(base**i, base**(i+1)]`` (``base = 2 ** 2 ** -scale``), negatives
  mirrored, zeros apart. A percentile is found in the bucket where the running count crosses
  it, linearly within the bucket, and kept inside the point's ``min`` and ``max`` where known
  (the outer buckets are open: there the bound is the only edge there is).
- a **cumulative** point (the SDK's default temporality) counts everything since its start
  time, so a band is drawn from the difference with the point before it (same start, same
  layout): the values recorded in between, as TensorBoard's step shows the values of that
  step. A point whose counts went down (a restarted process) or whose layout changed stands
  for itself. An update after ``after_id`` finds the point before the first new one in the
  latest chunks of its series (by the chunk index's row-id ranges).
- more points than ``max_points`` are merged, consecutive intervals added bucket by bucket
  (exactly what one longer interval would have counted). A trace longer than
  :data:`MAX_ROWS` first keeps the last point of each of ``max_points`` time buckets (NumPy,
  before any histogram is parsed): exact for cumulative points (their differences are the
  merged intervals), a sample for delta points (then ``sampled`` says so).

Points are read from the chunks (:mod:`.trace_reads`); only the histograms of the points kept
are parsed.

Nothing here holds state; safe from any thread that may use the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .downsample import TimeBuckets
from .scan import Scan, iter_chunks
from .series import TraceIdentity
from .trace_points import TracePoints
from .trace_reads import collect, read_planned

if TYPE_CHECKING:
    from .point_store import PointStore
    from .series import RunCatalog

__all__ = ["MAX_ROWS", "PERCENTILES", "Distribution", "Layout", "percentiles", "read_distributions"]

#: TensorBoard's bands: min, -1.5, -1, -0.5 sigma, median, +0.5, +1, +1.5 sigma, max (in percent).
PERCENTILES = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)
#: Above this many histogram points a trace's first load keeps the last point of each time bucket.
MAX_ROWS = 20_000


class _Row(NamedTuple):
    """A point as the bands need it."""

    step: int | None
    time_unix_nano: int
    start_time_unix_nano: int
    histogram: str | None


@dataclass
class Layout:
    """A histogram point's counts by bucket, in a form two points can be subtracted and added in.

    ``explicit`` holds the bounds (counts by bucket index); otherwise it is exponential at
    ``scale``, with ``counts`` keyed by bucket index, negative buckets in ``negative``.
    """

    explicit: tuple[float, ...] | None
    scale: int
    counts: dict[int, int]
    negative: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, histogram: dict[str, Any]) -> Layout | None:
        """The layout of a stored ``histogram`` field, or None for one this cannot read."""
        try:
            low, high = _number(histogram.get("min")), _number(histogram.get("max"))
            if "bounds" in histogram:
                counts = {i: int(c) for i, c in enumerate(histogram["counts"]) if c}
                return cls(tuple(float(b) for b in histogram["bounds"]), 0, counts, low=low, high=high)
            positive, negative = histogram["positive"], histogram["negative"]
            return cls(
                None,
                int(histogram["scale"]),
                {int(positive[0]) + i: int(c) for i, c in enumerate(positive[1]) if c},
                {int(negative[0]) + i: int(c) for i, c in enumerate(negative[1]) if c},
                int(histogram.get("zero_count") or 0),
                low,
                high,
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    def at_scale(self, scale: int) -> Layout:
        """This exponential layout at a coarser ``scale`` (each index shifted right, as OTLP downscales)."""
        shift = self.scale - scale
        if shift <= 0:
            return self

        def down(counts: dict[int, int]) -> dict[int, int]:
            out: dict[int, int] = {}
            for index, count in counts.items():
                out[index >> shift] = out.get(index >> shift, 0) + count
            return out

        return Layout(None, scale, down(self.counts), down(self.negative), self.zero_count, self.low, self.high)

    def _aligned(self, other: Layout) -> tuple[Layout, Layout] | None:
        if (self.explicit is None) != (other.explicit is None) or (self.explicit is not None and self.explicit != other.explicit):
            return None
        if self.explicit is None:
            scale = min(self.scale, other.scale)
            return self.at_scale(scale), other.at_scale(scale)
        return self, other

    def minus(self, earlier: Layout) -> Layout | None:
        """What was counted after ``earlier`` (a cumulative point before this one); None when a
        count went down (a restart) or the layouts differ. Min and max stay this point's: they
        bound the interval's values too."""
        pair = self._aligned(earlier)
        if pair is None:
            return None
        now, then = pair

        def sub(a: dict[int, int], b: dict[int, int]) -> dict[int, int] | None:
            out = dict(a)
            for index, count in b.items():
                out[index] = out.get(index, 0) - count
                if out[index] < 0:
                    return None
            return {i: c for i, c in out.items() if c}

        counts, negative = sub(now.counts, then.counts), sub(now.negative, then.negative)
        zero = now.zero_count - then.zero_count
        if counts is None or negative is None or zero < 0:
            return None
        return Layout(now.explicit, now.scale, counts, negative, zero, now.low, now.high)

    def plus(self, other: Layout) -> Layout | None:
        """Both intervals' counts together (None if the layouts differ)."""
        pair = self._aligned(other)
        if pair is None:
            return None
        a, b = pair

        def add(x: dict[int, int], y: dict[int, int]) -> dict[int, int]:
            out = dict(x)
            for index, count in y.items():
                out[index] = out.get(index, 0) + count
            return out

        low = min((v for v in (a.low, b.low) if v is not None), default=None)
        high = max((v for v in (a.high, b.high) if v is not None), default=None)
        return Layout(a.explicit, a.scale, add(a.counts, b.counts), add(a.negative, b.negative), a.zero_count + b.zero_count, low, high)

    def buckets(self) -> list[tuple[float, float, int]]:
        """``(lower, upper, count)`` of each non-empty bucket, lowest values first."""
        if self.explicit is not None:
            bounds = self.explicit
            return [
                (bounds[i - 1] if i > 0 else -math.inf, bounds[i] if i < len(bounds) else math.inf, count)
                for i, count in sorted(self.counts.items())
                if 0 <= i <= len(bounds)
            ]
        out = [(-_power(self.scale, i + 1), -_power(self.scale, i), c) for i, c in sorted(self.negative.items(), reverse=True)]
        if self.zero_count:
            out.append((0.0, 0.0, self.zero_count))
        out += [(_power(self.scale, i), _power(self.scale, i + 1), c) for i, c in sorted(self.counts.items())]
        return out


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _power(scale: int, index: int) -> float:
    """``base ** index`` of an exponential histogram at ``scale`` (infinite past a float's range)."""
    try:
        return math.pow(2.0, index * 2.0**-scale)
    except OverflowError:
        return math.inf


def percentiles(layout: Layout, wanted: Sequence[float] = PERCENTILES) -> list[float | None]:
    """The values at the ``wanted`` percentiles of what ``layout`` counted (None each when empty)."""
    buckets = layout.buckets()
    total = sum(count for _, _, count in buckets)
    if total <= 0:
        return [None] * len(wanted)
    low = layout.low if layout.low is not None else -math.inf
    high = layout.high if layout.high is not None else math.inf
    out: list[float | None] = []
    for q in wanted:
        target, seen = q / 100.0 * total, 0
        for lower, upper, count in buckets:
            if seen + count >= target:
                # Inside the point's own min and max; an open bucket without one is its finite edge.
                lo, hi = max(lower, min(low, upper)), min(upper, max(high, lower))
                lo, hi = (hi if math.isinf(lo) else lo), (lo if math.isinf(hi) else hi)
                out.append(lo + (hi - lo) * (target - seen) / count if math.isfinite(lo + hi) else None)
                break
            seen += count
        else:
            out.append(None)
    return out


@dataclass
class Distribution(TraceIdentity):
    """The bands of one trace (a resource and attribute set): per point, :data:`PERCENTILES`.

    Its ``key`` is the key of the trace of the same points in :func:`~.series.read_series`.
    """

    steps: list[int | None] = field(default_factory=list)
    times_unix_nano: list[int] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)
    #: Points were left out rather than merged (a long trace of delta points).
    sampled: bool = False


def read_distributions(
    store: PointStore,
    catalog: RunCatalog,
    run: str | None,
    metric: str,
    *,
    until_id: int,
    after_id: int | None = None,
    max_points: int = 500,
) -> list[Distribution]:
    """The distributions of ``metric``'s histogram points in ``run``, row ids up to ``until_id``
    (after ``after_id`` if given), at most ``max_points`` bands a trace; see the module docstring."""
    metric_ids = [m for m in catalog.metric_ids.get(metric, []) if m in catalog.histogram_ids]
    resources = catalog.run_resources(run)
    if not metric_ids or not resources:
        return []
    scan = Scan(metric_ids=metric_ids, resource_ids=resources, after_row_id=after_id, max_row_id=until_id)
    found = collect(iter_chunks(store, scan), key=lambda r: (r.metric_id, r.resource_id, r.attributes_id), drawn=False, histograms=True)
    attribute_sets = catalog.attribute_sets(key[2] for key in found)
    out: dict[tuple[int, int], Distribution] = {}
    for key, parts in sorted(found.items()):
        metric_id, resource_id, attributes_id = key
        cumulative = metric_id in catalog.cumulative_ids
        sampled = after_id is None and len(parts) > MAX_ROWS
        rows = _rows(parts.points(_last_per_bucket(parts.time_unix_nano, max_points) if sampled else None))
        earlier = None
        if after_id is not None and cumulative:
            earlier = _previous(store, metric_id, resource_id, attributes_id, after_id)
        intervals = _intervals(rows, earlier, cumulative=cumulative)
        found_trace = out.setdefault(
            (resource_id, attributes_id),
            Distribution(resource_id, attributes_id, catalog.resources.get(resource_id, {}), attribute_sets.get(attributes_id, {})),
        )
        found_trace.sampled = found_trace.sampled or (sampled and not cumulative)
        for step, time_unix_nano, layout in _merged(intervals, max_points):
            found_trace.steps.append(step)
            found_trace.times_unix_nano.append(time_unix_nano)
            found_trace.values.append(percentiles(layout) if layout is not None else [None] * len(PERCENTILES))
    return [out[key] for key in sorted(out)]


def _rows(points: TracePoints) -> list[_Row]:
    assert points.histogram is not None
    columns = (points.steps(), points.time_unix_nano.tolist(), points.start_time_unix_nano.tolist(), points.histogram)
    return [_Row(*point) for point in zip(*columns, strict=True)]


def _last_per_bucket(times: np.ndarray, max_points: int) -> np.ndarray:
    """Of a trace's times in order, the position of the last point of each of ``max_points`` equal time buckets."""
    numbers = TimeBuckets.over(int(times[0]), int(times[-1]), max(1, max_points)).of(times)
    return np.flatnonzero(np.append(numbers[1:] != numbers[:-1], True))


def _previous(store: PointStore, metric_id: int, resource_id: int, attributes_id: int, before_id: int) -> _Row | None:
    """The last point written to one trace with a row id up to ``before_id``.

    It lies in the trace's chunk that starts last at or before ``before_id``, or in one that
    overlaps that chunk's start (chunks of concurrent writers): those alone are decoded.
    """
    trace = "c.metric_id = ?1 AND c.resource_id = ?2 AND c.attributes_id = ?3 AND c.first_row_id <= ?4"
    sql = (
        f"SELECT {CHUNK_COLUMNS} FROM chunks c WHERE {trace} AND c.last_row_id >= (SELECT max(c.first_row_id) FROM chunks c WHERE {trace})"
    )
    params = (metric_id, resource_id, attributes_id, before_id)
    scan = Scan(metric_ids=(metric_id,), resource_ids=(resource_id,), attributes_ids=(attributes_id,), max_row_id=before_id)
    pairs = read_planned(store, lambda: [ChunkRow(*row) for row in store.read(sql, params)], scan)
    if not pairs:
        return None
    points = TracePoints.join([TracePoints.of(chunk, drawn=False, histograms=True) for _, chunk in pairs])
    return _rows(points.take(np.array([int(np.argmax(points.row_id))])))[0]


def _layout(row: _Row) -> Layout | None:
    try:
        histogram = json.loads(row.histogram) if row.histogram else None
    except ValueError:
        return None
    return Layout.parse(histogram) if isinstance(histogram, dict) else None


def _intervals(rows: Iterable[_Row], earlier: _Row | None, *, cumulative: bool) -> list[tuple[int | None, int, Layout | None]]:
    """``(step, time, what the point counted in its own interval)`` per row (see the module docstring)."""
    out: list[tuple[int | None, int, Layout | None]] = []
    before = (earlier.start_time_unix_nano, _layout(earlier)) if earlier is not None else None
    for row in rows:
        layout = _layout(row)
        own = layout
        if cumulative and layout is not None and before is not None and before[0] == row.start_time_unix_nano and before[1] is not None:
            own = layout.minus(before[1]) or layout
        out.append((row.step, row.time_unix_nano, own))
        before = (row.start_time_unix_nano, layout)
    return out


def _merged(intervals: list[tuple[int | None, int, Layout | None]], max_points: int) -> list[tuple[int | None, int, Layout | None]]:
    """At most ``max_points`` intervals: consecutive ones added together, each at its last's step and time."""
    if len(intervals) <= max_points:
        return intervals
    size = math.ceil(len(intervals) / max(1, max_points))
    out = []
    for start in range(0, len(intervals), size):
        group = intervals[start : start + size]
        total: Layout | None = None
        for _, _, layout in group:
            if layout is not None:
                total = layout if total is None else (total.plus(layout) or layout)
        out.append((group[-1][0], group[-1][1], total))
    return out
