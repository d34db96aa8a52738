"""One metric across every run: its last, lowest and highest value per run, for a view across runs.

A plot of a parameter against a metric (learning rate against the final validation loss) needs
one number per run: the metric's last value, or its best (the lowest loss, the highest
accuracy). :func:`summarize_metric` reads them for every run of the store at once:

- **a first read** (up to ``until_id``): per (metric, resource) the count, lowest and highest
  value through the series' blocks (see :mod:`.blocks`), and the latest point from the latest
  block (the probe :func:`~.series.last_values` uses), so the last value costs a block, not a scan;
- **an update** (``after_id``): the same over the rows after ``after_id``, read by rowid range,
  which costs what was written since. :func:`combine` folds an update into what a client holds.

A run of several ranks (resources) gets the lowest and highest over all of them and the latest
point of any. A histogram point counts at its mean, as on a chart. Nothing here holds state;
safe from any thread that may use the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..model.resource import RUN_ID_KEY
from .downsample import DRAWN_VALUE

if TYPE_CHECKING:
    from .point_store import PointStore
    from .series import RunCatalog

__all__ = ["MetricSummary", "combine", "summarize_metric"]


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
    ``after_id`` if given); runs without a point of it are left out."""
    metric_ids = catalog.metric_ids.get(metric, [])
    if not metric_ids:
        return {}
    marks = ",".join("?" * len(metric_ids))
    if after_id is not None:
        where = f"id > ? AND id <= ? AND +metric_id IN ({marks})"
        params: list[Any] = [after_id, until_id, *metric_ids]
        stats = store.read(
            f"SELECT resource_id, count({DRAWN_VALUE}), min({DRAWN_VALUE}), max({DRAWN_VALUE})"
            f" FROM points WHERE {where} GROUP BY resource_id",
            params,
        )
        # One max() in the query: SQLite fills the other columns from the row that gave it.
        latest = store.read(
            f"SELECT resource_id, max(time_unix_nano), step, {DRAWN_VALUE} FROM points WHERE {where} GROUP BY resource_id", params
        )
    else:
        series = (
            " FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
            f" WHERE b.metric_id IN ({marks}) AND p.metric_id = b.metric_id AND p.resource_id = b.resource_id AND p.id <= ?"
        )
        # DRAWN_VALUE's columns are the points' alone: blocks has no value or histogram.
        stats = store.read(
            f"SELECT p.resource_id, count({DRAWN_VALUE}), min({DRAWN_VALUE}), max({DRAWN_VALUE}){series} GROUP BY p.resource_id",
            [*metric_ids, until_id],
        )
        latest = _latest(store, metric_ids, until_id)
    by_resource: dict[int, tuple[int, Any, Any]] = {row[0]: (row[1], row[2], row[3]) for row in stats}
    out: dict[str | None, MetricSummary] = {}
    for resource_id, time_unix_nano, step, last in latest:
        if time_unix_nano is None:
            continue
        count, low, high = by_resource.get(resource_id, (0, None, None))
        run = catalog.resources.get(resource_id, {}).get(RUN_ID_KEY)
        key = None if run is None else str(run)
        out[key] = combine(out.get(key), MetricSummary(count, low, high, last, step, int(time_unix_nano)))
    return out


def _latest(store: PointStore, metric_ids: list[int], until_id: int) -> list[Any]:
    """Per resource, ``(resource_id, time, step, value)`` of its latest point of ``metric_ids``."""
    marks = ",".join("?" * len(metric_ids))
    # Per (metric, resource): the block that reaches latest in time, then the latest row in it.
    probe = (
        "SELECT b.resource_id, (SELECT p.id FROM points p WHERE p.id BETWEEN b.first_id AND min(b.last_id, ?)"
        " AND p.metric_id = b.metric_id AND p.resource_id = b.resource_id ORDER BY p.time_unix_nano DESC LIMIT 1)"
        f" FROM (SELECT metric_id, resource_id, first_id, last_id, max(max_time) FROM blocks WHERE metric_id IN ({marks})"
        " AND first_id <= ? GROUP BY metric_id, resource_id) b"
    )
    ids = [row[1] for row in store.read(probe, [until_id, *metric_ids, until_id]) if row[1] is not None]
    if not ids:
        return []
    rows = store.read(f"SELECT resource_id, time_unix_nano, step, {DRAWN_VALUE} FROM points WHERE id IN ({','.join('?' * len(ids))})", ids)
    best: dict[int, Any] = {}
    for row in rows:
        if row[0] not in best or row[1] > best[row[0]][1]:
            best[row[0]] = row
    return list(best.values())
