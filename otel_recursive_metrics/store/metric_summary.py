"""One metric across every run: its last, lowest and highest value per run, for a view across runs.

A plot of a parameter against a metric (learning rate against the final validation loss) needs
one number per run: the metric's last value, or its best (the lowest loss, the highest
accuracy). :func:`summarize_metric` reads them for every run of the store at once, in one pass
over the metric's chunks (:mod:`.scan`), each decoded once and reduced with NumPy:

- **a first read** (up to ``until_id``): per run the count of points with a value, the lowest
  and highest, and the point that sorts last (by time, then step, then row id);
- **an update** (``after_id``): the same over the points written after ``after_id``, which
  decodes only the chunks holding such points. :func:`combine` folds an update into what a
  client holds.

A run of several ranks (resources) gets the lowest and highest over all of them and the latest
point of any. A histogram point counts at its mean, as on a chart (:func:`drawn_values`). Nothing
here holds state; safe from any thread that may use the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.chunk import SeriesChunk
from ..model.resource import RUN_ID_KEY
from .chunk_index import ChunkRow
from .latest_points import LatestPoint, last_index, latest_point
from .scan import Scan, iter_chunks

if TYPE_CHECKING:
    from .point_store import PointStore
    from .series import RunCatalog

__all__ = ["MetricSummary", "combine", "drawn_values", "summarize_metric"]


@dataclass(frozen=True)
class MetricSummary:
    """A metric in one run: points with a value, the lowest and highest, and the latest point."""

    points: int
    low: float | None
    high: float | None
    last: float | None
    last_step: int | None
    last_time_unix_nano: int

    def to_json(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "min": self.low,
            "max": self.high,
            "last": self.last,
            "last_step": self.last_step,
            "last_time_unix_nano": self.last_time_unix_nano,
        }


def combine(held: MetricSummary | None, news: MetricSummary) -> MetricSummary:
    """``held`` with ``news`` (later points, or another rank's) folded in."""
    if held is None:
        return news
    lows = [v for v in (held.low, news.low) if v is not None]
    highs = [v for v in (held.high, news.high) if v is not None]
    latest = news if news.last_time_unix_nano >= held.last_time_unix_nano else held
    return replace(latest, points=held.points + news.points, low=min(lows, default=None), high=max(highs, default=None))


def summarize_metric(
    store: PointStore, catalog: RunCatalog, metric: str, *, until_id: int, after_id: int | None = None
) -> dict[str | None, MetricSummary]:
    """``{run: MetricSummary}`` of ``metric`` over the points with ids up to ``until_id`` (and after
    ``after_id`` if given); runs without a point of it are left out.

    A resource's latest point is the one that sorts last by time, then step (none first), then row
    id; a run's, the latest of its resources' (see :func:`combine`).
    """
    metric_ids = catalog.metric_ids.get(metric, [])
    if not metric_ids:
        return {}
    folds: dict[int, _Fold] = {}
    for row, chunk in iter_chunks(store, Scan(metric_ids=metric_ids, after_row_id=after_id, max_row_id=until_id)):
        fold = folds.get(row.resource_id)
        if fold is None:
            fold = folds[row.resource_id] = _Fold()
        fold.add(row, chunk)
    # Resources in the order the SQL of earlier versions gave them: a first read by their latest
    # point's row id, an update by resource id; a run's latest point is its last resource's on a tie.
    order = sorted(folds, key=lambda rid: folds[rid].last_row_id) if after_id is None else sorted(folds)
    out: dict[str | None, MetricSummary] = {}
    for resource_id in order:
        run = catalog.resources.get(resource_id, {}).get(RUN_ID_KEY)
        key = None if run is None else str(run)
        out[key] = combine(out.get(key), folds[resource_id].summary())
    return out


class _Fold:
    """A resource's summary as its chunks come: counts, lowest, highest and the point that sorts last."""

    def __init__(self) -> None:
        self.points = 0
        self.low: float | int | None = None
        self.high: float | int | None = None
        self.last: LatestPoint | None = None
        self.last_drawn: float | int | None = None

    @property
    def last_row_id(self) -> int:
        return -1 if self.last is None else self.last.row_id

    def add(self, row: ChunkRow, chunk: SeriesChunk) -> None:
        drawn = drawn_values(chunk)
        valid = ~np.isnan(drawn)
        count = int(valid.sum())
        if count:
            self.points += count
            low, high = _drawn(chunk, drawn, int(np.nanargmin(drawn))), _drawn(chunk, drawn, int(np.nanargmax(drawn)))
            # Ties keep what came first, as SQL's min() and max() did.
            if low is not None and (self.low is None or low < self.low):
                self.low = low
            if high is not None and (self.high is None or high > self.high):
                self.high = high
        index = last_index(chunk)
        if index is not None:
            point = latest_point(row, chunk, index)
            if self.last is None or point.order > self.last.order:
                self.last, self.last_drawn = point, _drawn(chunk, drawn, index)

    def summary(self) -> MetricSummary:
        assert self.last is not None  # a fold exists once a chunk with points came
        return MetricSummary(self.points, self.low, self.high, self.last_drawn, self.last.step, self.last.time_unix_nano)


def drawn_values(chunk: SeriesChunk) -> np.ndarray:
    """The number each point of ``chunk`` is drawn at, as float64: its value, or a histogram's mean (sum / count); NaN for none.

    SQL's ``coalesce(value, sum / nullif(count, 0))``: a point without a value, or with NaN (which
    SQLite kept as NULL), falls back to its histogram's mean, if it has one.
    """
    drawn = chunk.value.astype(np.float64)
    if chunk.value_missing.any():
        drawn[chunk.value_missing] = np.nan
    if chunk.histogram is not None:
        for index, text in enumerate(chunk.histogram):
            if text is not None and np.isnan(drawn[index]):
                drawn[index] = _mean(text)
    return drawn


def _mean(text: str) -> float:
    """A histogram's mean from its JSON text; NaN without a sum, or with no count."""
    try:
        histogram = json.loads(text)
        total, count = histogram.get("sum"), histogram.get("count")
        return float(total) / count if total is not None and count else math.nan
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return math.nan


def _drawn(chunk: SeriesChunk, drawn: np.ndarray, index: int) -> float | int | None:
    """Point ``index``'s drawn value as SQL gave it: an integer value as an int, NaN as None."""
    if chunk.value.dtype.kind == "i" and not chunk.value_missing[index]:
        return int(chunk.value[index])
    value = float(drawn[index])
    return None if math.isnan(value) else value
