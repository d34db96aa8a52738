"""Downsampling a trace to what a chart can show, keeping its spikes: min and max per bucket.

A chart ``W`` pixels wide shows at most about ``2 W`` points: a lowest and a highest per pixel
column. So a trace is cut into about ``max_points // 2`` buckets and each bucket keeps its
lowest and its highest point (in their order; once if they are the same point). Unlike keeping
every n-th point, this never loses a spike, however short. All of it is NumPy over a trace's
columns (``np.minimum.reduceat`` / ``np.maximum.reduceat`` over the buckets' runs), in two
shapes of bucket, the same rule:

- :func:`min_max_positions` (and :func:`min_max_buckets` over Python rows): buckets of
  consecutive points, for a live update and for a held trace grown by an update;
- :class:`TimeBuckets` with :func:`keep_extremes`: a first load, where the trace's time span
  is cut into equal buckets (a pixel column each) and the trace's first and last points are
  kept as well, so the line reaches both ends of the run.

On a first load the chunk index can spare most of the decoding where chunks are small beside a
bucket (a long run's recent, not yet compacted chunks): a chunk whose points all lie in one
bucket can only give that bucket its lowest or highest value, and the index holds both
(``min_value``, ``max_value``: the value drawn, NaN ignored, exactly as :func:`bucket_extremes`
ignores it). :func:`split_whole` puts such chunks aside, :func:`winners` picks, per bucket, the
one chunk whose minimum (maximum) beats what the decoded points hold there: only those are
decoded. That is exact for what is drawn only where a point is drawn at its stored value, so it
is used for metrics other than histograms (drawn at their mean, which the index does not hold).

A point is drawn at :func:`drawn_values`: its value, or a histogram's mean (sum / count, as a
float: a histogram of whole milliseconds, count 450 and sum 38, is drawn at 0.0844, not 0);
NaN where there is nothing to draw (a gap).

Thread safety: the functions hold no state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import ChunkRow

__all__ = [
    "TimeBuckets",
    "bucket_extremes",
    "buckets_for",
    "drawn_value",
    "drawn_values",
    "histogram_mean",
    "keep_extremes",
    "min_max_buckets",
    "min_max_positions",
    "split_whole",
    "winners",
]


def histogram_mean(text: str | None) -> float:
    """The mean of a stored histogram (JSON text): ``sum / count`` as a float; NaN if it has none."""
    if not text:
        return math.nan
    try:
        histogram = json.loads(text)
        count, total = histogram.get("count"), histogram.get("sum")
        if isinstance(count, bool) or isinstance(total, bool) or not count or total is None:
            return math.nan
        return float(total) / float(count)
    except (ValueError, TypeError, AttributeError, OverflowError):
        return math.nan


def drawn_values(chunk: SeriesChunk) -> np.ndarray:
    """The number each point of ``chunk`` is drawn at, as float64: its value, or its histogram's
    mean where it has no value (or NaN); NaN where neither is there."""
    values = chunk.value.astype(np.float64)  # a copy: the chunk's own arrays are read-only
    if chunk.value_missing.any():
        values[chunk.value_missing] = math.nan
    texts = chunk.histogram  # None, or None at a point, where there is no histogram
    if texts is not None and texts.count(None) < len(texts):  # count() runs in C: no loop over points here
        for i in np.flatnonzero(np.isnan(values)).tolist():
            values[i] = histogram_mean(texts[i])
    return values


def drawn_value(chunk: SeriesChunk, index: int) -> float | int | None:
    """What :func:`drawn_values` gives point ``index`` of ``chunk``, as Python gives it: an int
    where stored as one, None for a gap."""
    if not chunk.value_missing[index]:
        value = chunk.value[index].item()
        if not (isinstance(value, float) and math.isnan(value)):
            return value  # type: ignore[no-any-return]
    mean = math.nan if chunk.histogram is None else histogram_mean(chunk.histogram[index])
    return None if math.isnan(mean) else mean


def bucket_extremes(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Of each bucket (``values[starts[k]:starts[k + 1]]``), the positions of its lowest and highest
    value (the first of equals), sorted; a bucket with no value (all NaN) keeps its first position."""
    n = len(values)
    if n == 0:
        return np.zeros(0, np.int64)
    sizes = np.diff(np.append(starts, n))
    valid = ~np.isnan(values)
    every = bool(valid.all())  # the usual case: no gap, no copy of the values
    kept: list[np.ndarray] = []
    inside = np.zeros(len(starts), bool)
    for reduce, fill in ((np.minimum, np.inf), (np.maximum, -np.inf)):
        column = values if every else np.where(valid, values, fill)
        extreme = reduce.reduceat(column, starts)
        hit = column == np.repeat(extreme, sizes)
        hits = np.flatnonzero(hit if every else hit & valid)
        # The first hit at or after each bucket's start is the bucket's own if it has any.
        first = np.minimum(np.searchsorted(hits, starts), max(0, len(hits) - 1))
        at = hits[first] if len(hits) else np.full(len(starts), n)
        inside = (at >= starts) & (at < starts + sizes)
        kept.append(at[inside])
    kept.append(starts[~inside])  # buckets without a value: their first point, a gap
    return np.unique(np.concatenate(kept))


def min_max_positions(values: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` positions of ``values``: all of them if they fit, else the lowest and
    highest of each of ``max_points // 2`` buckets of consecutive values (see :func:`bucket_extremes`)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    size = math.ceil(n / max(1, max_points // 2))
    return bucket_extremes(values, np.arange(0, n, size))


def min_max_buckets(rows: Sequence[Sequence[Any]], max_points: int, value_index: int) -> list[Sequence[Any]]:
    """At most ``max_points`` of ``rows`` (in their order): each of ``max_points // 2`` buckets of
    consecutive rows keeps its lowest and its highest value, in the order they came.

    A bucket with no value at all (every value ``None``) keeps its first row, so a gap stays a gap.
    """
    if len(rows) <= max_points:
        return list(rows)
    values = np.array([math.nan if row[value_index] is None else float(row[value_index]) for row in rows], np.float64)
    return [rows[i] for i in min_max_positions(values, max_points).tolist()]


@dataclass(frozen=True)
class TimeBuckets:
    """Equal time buckets over a trace's span: bucket ``k`` holds ``[first + k width, first + (k + 1) width)``."""

    first_unix_nano: int
    width_ns: int

    @classmethod
    def over(cls, first_unix_nano: int, last_unix_nano: int, count: int) -> TimeBuckets:
        """``count`` buckets (or fewer, whole nanoseconds wide) from ``first`` to ``last``, both in."""
        return cls(first_unix_nano, max(1, -(-(last_unix_nano - first_unix_nano + 1) // max(1, count))))

    def of(self, times_unix_nano: np.ndarray) -> np.ndarray:
        """The bucket of each time."""
        return (times_unix_nano - self.first_unix_nano) // self.width_ns

    def of_time(self, time_unix_nano: int) -> int:
        return (time_unix_nano - self.first_unix_nano) // self.width_ns


def buckets_for(max_points: int) -> int:
    """How many buckets a first load of at most ``max_points`` points is cut into (a lowest and a
    highest each, and the trace's first and last points)."""
    return max(1, (max_points - 2) // 2)


def keep_extremes(times_unix_nano: np.ndarray, values: np.ndarray, buckets: TimeBuckets) -> np.ndarray:
    """Of a trace in time order, the positions kept: each time bucket's lowest and highest value,
    and the first and last points, sorted."""
    n = len(times_unix_nano)
    if n == 0:
        return np.zeros(0, np.int64)
    numbers = buckets.of(times_unix_nano)
    starts = np.flatnonzero(np.concatenate([[True], numbers[1:] != numbers[:-1]]))
    return np.union1d(bucket_extremes(values, starts), [0, n - 1])


def split_whole(
    rows: Sequence[ChunkRow], buckets: TimeBuckets, *, until_id: int, exact: Callable[[ChunkRow], bool]
) -> tuple[list[ChunkRow], list[ChunkRow]]:
    """``(to decode, set aside)``: the chunks of one trace set aside are those the index alone
    answers for: every point up to ``until_id``, all in one time bucket, values drawn as stored
    (``exact``) and some value there. The chunks that may hold the trace's first or last point
    (the earliest and the latest of those wholly read, and any read in part) are always decoded,
    and so is everything from the trace's first point in the head on (the head, level -1, is
    rows, not chunks; a chunk written after it may hold points moved from it)."""
    whole = [row for row in rows if row.last_row_id <= until_id]
    if not whole:
        return list(rows), []
    first = min(row.min_time for row in whole)
    last = max(row.max_time for row in whole)
    head_first = min((row.first_row_id for row in rows if row.level < 0), default=None)
    decode: list[ChunkRow] = []
    aside: list[ChunkRow] = []
    for row in rows:
        alone = (
            row.last_row_id <= until_id
            and row.level >= 0
            and (head_first is None or row.last_row_id < head_first)
            and row.min_value is not None
            and row.min_time != first
            and row.max_time != last
            and buckets.of_time(row.min_time) == buckets.of_time(row.max_time)
            and exact(row)
        )
        (aside if alone else decode).append(row)
    return decode, aside


def winners(aside: Sequence[ChunkRow], buckets: TimeBuckets, times_unix_nano: np.ndarray, values: np.ndarray) -> list[ChunkRow]:
    """Of the chunks set aside (:func:`split_whole`), those to decode after all: per bucket, the one
    with the lowest ``min_value`` if it is below every decoded point there (``times_unix_nano``,
    ``values``), and likewise the highest ``max_value``; the earliest chunk of equals. Where a
    decoded point has the same value, it stands for the bucket's extreme: the same number drawn
    in the same bucket (pixel column)."""
    low: dict[int, ChunkRow] = {}
    high: dict[int, ChunkRow] = {}
    for row in sorted(aside, key=lambda r: r.min_time):
        bucket = buckets.of_time(row.min_time)
        if bucket not in low or row.min_value < low[bucket].min_value:  # type: ignore[operator]
            low[bucket] = row
        if bucket not in high or row.max_value > high[bucket].max_value:  # type: ignore[operator]
            high[bucket] = row
    wanted = sorted(low.keys() | high.keys())
    known_low = np.full(len(wanted), np.inf)
    known_high = np.full(len(wanted), -np.inf)
    valid = ~np.isnan(values)
    if valid.any():
        numbers = buckets.of(times_unix_nano[valid])
        where = np.searchsorted(wanted, numbers)
        inside = (where < len(wanted)) & (np.asarray(wanted, np.int64)[np.minimum(where, len(wanted) - 1)] == numbers)
        np.minimum.at(known_low, where[inside], values[valid][inside])
        np.maximum.at(known_high, where[inside], values[valid][inside])
    picked: dict[int, ChunkRow] = {}
    for k, bucket in enumerate(wanted):
        lowest, highest = low[bucket], high[bucket]
        if lowest.min_value < known_low[k]:  # type: ignore[operator]
            picked[lowest.id] = lowest
        if highest.max_value > known_high[k]:  # type: ignore[operator]
            picked[highest.id] = highest
    return list(picked.values())
