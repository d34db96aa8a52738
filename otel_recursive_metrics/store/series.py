"""Series for charts: one run's metric as traces, only the points added since an id, downsampled.

A chart needs three reads that :class:`~.points.PointQuery` is not shaped for, and this module
answers them through :meth:`PointStore.read` alone (read-only; no schema of its own):

- **Everything up to a snapshot** (``until_id``): a chart's first load. A trace is one resource
  (a run's rank, per restart) and one attribute set. Up to ``IN_MEMORY_MAX_ROWS`` rows a trace is
  read whole and downsampled here; above that it is downsampled inside SQLite: the trace's time
  span is cut into ``max_points // 2`` equal buckets and each bucket keeps its lowest and its
  highest point, so a spike survives however long the run (see :mod:`.downsample`). Both read
  a trace through its blocks (see :mod:`.blocks`): the row-id ranges where its points lie.
- **What was added since** (``after_id``): a live update. ``points.id`` only grows (SQLite gives
  each insert the next rowid, one writer at a time, and the store never deletes), so the rows in
  ``(after_id, until_id]`` are exactly what a client has not seen. They are read by rowid range,
  which costs what was written since, never the history. A large increment is downsampled the
  same way.
- **The last point of every metric of every run**, for the runs table: per (metric, resource)
  pair, the latest block, then the latest row in its range.

``until_id`` is the snapshot: a client takes :func:`max_point_id` once, reads everything up to it
and later asks for what lies after it, so no point is sent twice or missed.

Values: a histogram point is shown as its mean (sum / count); ``NaN`` is stored as ``NULL`` and
comes back as ``None`` (a gap). Nothing here holds state: the functions are safe from any thread
that may use the store (:class:`PointStore` serialises its own calls).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model.kinds import HISTOGRAM_KINDS
from ..model.resource import RANK_KEY, RESTART_COUNT_KEY, RUN_ID_KEY
from .downsample import DRAWN_VALUE, IDS_PER_STATEMENT, ROW_SELECT, SERIES_ROWS, bucketed_rows, min_max_buckets

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = [
    "IN_MEMORY_MAX_ROWS",
    "LastValue",
    "RunCatalog",
    "Series",
    "Trace",
    "last_values",
    "max_point_id",
    "merge_series",
    "min_max_buckets",
    "read_series",
    "series_rows",
]

#: Above this many rows a trace's first load is downsampled inside SQLite instead of in Python.
IN_MEMORY_MAX_ROWS = 20_000

#: OTLP's AggregationTemporality.CUMULATIVE, as the metrics table stores it.
_CUMULATIVE = 2

# The fields of a ROW_SELECT row (a histogram point's value is its mean: see downsample.value_sql).
_ID, _RESOURCE, _ATTRIBUTES, _STEP, _TIME, _VAL = range(6)


@dataclass
class TraceIdentity:
    """Which points a chart's line holds: one resource and attribute set (a run's rank, a label set)."""

    resource_id: int
    attributes_id: int
    resource: dict[str, Any]
    attributes: dict[str, Any]

    @property
    def key(self) -> str:
        """Stable across reads of the same store: ``"<resource id>:<attribute set id>"``."""
        return f"{self.resource_id}:{self.attributes_id}"

    @property
    def rank(self) -> Any:
        return self.resource.get(RANK_KEY)

    @property
    def restart(self) -> Any:
        return self.resource.get(RESTART_COUNT_KEY)


@dataclass
class Trace(TraceIdentity):
    """One line of a chart: the points of one resource and attribute set, in time order."""

    steps: list[int | None] = field(default_factory=list)
    times_unix_nano: list[int] = field(default_factory=list)
    values: list[float | int | None] = field(default_factory=list)
    #: Whether points of this trace were left out (min and max per bucket kept): a chart says so.
    downsampled: bool = False


@dataclass
class Series:
    """A run's metric: its traces, and whether any of them was downsampled."""

    run: str | None
    metric: str
    traces: list[Trace]
    downsampled: bool = False

    def mark_downsampled(self, trace: Trace) -> None:
        """Note that points of ``trace`` were left out."""
        trace.downsampled = True
        self.downsampled = True


@dataclass(frozen=True)
class LastValue:
    """The latest point of one metric of one run."""

    value: float | int | None
    step: int | None
    time_unix_nano: int


class RunCatalog:
    """The store's small tables, read once: which resources make a run, which ids a metric name has.

    Build one per request; it does not follow later writes (a new rank or metric shows up in
    the next catalog). A metric name may have several descriptions (ids): ``units`` and ``kinds``
    hold the first non-empty unit and the first kind of each name; ``cumulative_ids`` the ids
    whose points count from a start time (OTLP temporality 2), which a histogram's distribution
    needs to know (see :mod:`.distributions`).
    """

    def __init__(self, store: PointStore) -> None:
        self.store = store
        self.resources: dict[int, dict[str, Any]] = {}
        self.by_run: dict[str | None, list[int]] = {}
        for resource_id, text in store.read("SELECT id, attributes FROM resources"):
            attrs = json.loads(text)
            self.resources[resource_id] = attrs
            run = attrs.get(RUN_ID_KEY)
            self.by_run.setdefault(None if run is None else str(run), []).append(resource_id)
        self.metric_ids: dict[str, list[int]] = {}
        self.histogram_ids: set[int] = set()
        self.cumulative_ids: set[int] = set()
        self.units: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        for metric_id, name, kind, unit, temporality in store.read("SELECT id, name, kind, unit, temporality FROM metrics ORDER BY id"):
            self.metric_ids.setdefault(name, []).append(metric_id)
            self.kinds.setdefault(name, kind)
            if unit and not self.units.get(name):
                self.units[name] = unit
            if kind in HISTOGRAM_KINDS:
                self.histogram_ids.add(metric_id)
            if temporality == _CUMULATIVE:
                self.cumulative_ids.add(metric_id)

    def run_resources(self, run: str | None) -> list[int]:
        return self.by_run.get(run, [])

    def metric_names(self, run: str | None) -> list[str]:
        """The names of the metrics that have points in ``run``, sorted (from the blocks)."""
        resources = self.run_resources(run)
        if not resources:
            return []
        marks = ",".join("?" * len(resources))
        present = {row[0] for row in self.store.read(f"SELECT DISTINCT metric_id FROM blocks WHERE resource_id IN ({marks})", resources)}
        return sorted(name for name, ids in self.metric_ids.items() if present.intersection(ids))

    def start_time_unix_nano(self, run: str | None) -> int | None:
        """The time of the run's first point (from the blocks)."""
        resources = self.run_resources(run)
        if not resources:
            return None
        marks = ",".join("?" * len(resources))
        rows = self.store.read(f"SELECT min(min_time) FROM blocks WHERE resource_id IN ({marks})", resources)
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def attribute_sets(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted(set(ids))
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), IDS_PER_STATEMENT):
            chunk = wanted[start : start + IDS_PER_STATEMENT]
            rows = self.store.read(f"SELECT id, attributes FROM attribute_sets WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((row[0], json.loads(row[1])) for row in rows)
        return found


def max_point_id(store: PointStore) -> int:
    """The newest point's id (0 for an empty store): the snapshot a client reads up to."""
    rows = store.read("SELECT max(id) FROM points")
    return int(rows[0][0] or 0)


def read_series(
    store: PointStore,
    catalog: RunCatalog,
    run: str | None,
    metric: str,
    *,
    until_id: int,
    after_id: int | None = None,
    max_points: int = 2000,
) -> Series:
    """The traces of ``metric`` in ``run`` with ids up to ``until_id`` (after ``after_id`` if given).

    Each trace holds at most ``max_points`` points (see the module docstring for how it is cut).
    """
    resources = catalog.run_resources(run)
    metric_ids = catalog.metric_ids.get(metric, [])
    series = Series(run=run, metric=metric, traces=[])
    if not resources or not metric_ids:
        return series
    # The traces whose rows were already cut inside SQLite (by resource and attribute set).
    bucketed: set[tuple[int, int]] = set()
    if after_id is not None:
        rows = _rows_after(store, metric_ids, resources, after_id, until_id)
        grouped = _group(rows)
    else:
        grouped = {}
        for resource_id in resources:
            for metric_id in metric_ids:
                rows, complete = _first_rows(store, metric_id, resource_id, until_id)
                if not complete:
                    seen = [row[_ATTRIBUTES] for row in rows]
                    histogram = metric_id in catalog.histogram_ids
                    rows = bucketed_rows(store, metric_id, resource_id, until_id, max_points, histogram=histogram, attribute_sets=seen)
                for key, trace_rows in _group(rows).items():
                    grouped.setdefault(key, []).extend(trace_rows)
                    if not complete:
                        bucketed.add(key)
    attribute_sets = catalog.attribute_sets(key[1] for key in grouped)
    for (resource_id, attributes_id), trace_rows in sorted(grouped.items()):
        trace_rows.sort(key=lambda r: (r[_TIME], -1 if r[_STEP] is None else r[_STEP], r[_ID]))
        trace = Trace(resource_id, attributes_id, catalog.resources.get(resource_id, {}), attribute_sets.get(attributes_id, {}))
        if (resource_id, attributes_id) in bucketed:
            series.mark_downsampled(trace)
        if len(trace_rows) > max_points:
            trace_rows = list(min_max_buckets(trace_rows, max_points, _VAL))  # noqa: PLW2901 - the kept rows replace the read ones
            series.mark_downsampled(trace)
        for row in trace_rows:
            trace.steps.append(row[_STEP])
            trace.times_unix_nano.append(row[_TIME])
            trace.values.append(row[_VAL])
        series.traces.append(trace)
    return series


def series_rows(store: PointStore, catalog: RunCatalog, run: str | None, metric: str, *, until_id: int) -> Iterator[list[Sequence[Any]]]:
    """Every point of ``metric`` in ``run`` up to ``until_id``, in chunks, nothing left out: per
    resource (rank) and metric id, in the order written. A row is ``(id, resource id, attribute
    set id, step, time, drawn value)``: :data:`~.downsample.ROW_SELECT`'s fields."""
    for resource_id in catalog.run_resources(run):
        for metric_id in catalog.metric_ids.get(metric, []):
            yield from store.read_chunks(f"{SERIES_ROWS} AND p.id <= ?3", (metric_id, resource_id, until_id), size=4096)


def _group(rows: Iterable[Sequence[Any]]) -> dict[tuple[int, int], list[Sequence[Any]]]:
    grouped: dict[tuple[int, int], list[Sequence[Any]]] = {}
    for row in rows:
        grouped.setdefault((row[_RESOURCE], row[_ATTRIBUTES]), []).append(row)
    return grouped


def _rows_after(store: PointStore, metric_ids: list[int], resources: list[int], after_id: int, until_id: int) -> list[Sequence[Any]]:
    # The rowid range is the path here, costing what was written since after_id, whatever the
    # history's length (the unary + keeps a store of an earlier version off its per-point index).
    sql = (
        f"{ROW_SELECT} WHERE id > ? AND id <= ? AND +metric_id IN ({','.join('?' * len(metric_ids))})"
        f" AND +resource_id IN ({','.join('?' * len(resources))})"
    )
    rows: list[Sequence[Any]] = []
    for chunk in store.read_chunks(sql, (after_id, until_id, *metric_ids, *resources), size=4096):
        rows.extend(chunk)
    return rows


def _first_rows(store: PointStore, metric_id: int, resource_id: int, until_id: int) -> tuple[list[Sequence[Any]], bool]:
    """Up to IN_MEMORY_MAX_ROWS rows of one metric and resource, through its blocks; False when
    there are more (then only the first ones, in the order they were written, come back)."""
    rows = store.read(
        f"{SERIES_ROWS} AND p.id <= ?3 LIMIT ?4",
        (metric_id, resource_id, until_id, IN_MEMORY_MAX_ROWS + 1),
    )
    return rows, len(rows) <= IN_MEMORY_MAX_ROWS


def last_values(store: PointStore, catalog: RunCatalog) -> dict[str | None, dict[str, LastValue]]:
    """The latest point (by time) of every metric of every run: ``{run: {metric: LastValue}}``.

    Per (metric, resource): its latest block (by time), then the latest row in that block's
    range; a metric several ranks log gives the latest of them.
    """
    probe = (
        "SELECT b.metric_id, b.resource_id, (SELECT p.id FROM points p WHERE p.id BETWEEN b.first_id AND b.last_id"
        " AND p.metric_id = b.metric_id AND p.resource_id = b.resource_id ORDER BY p.time_unix_nano DESC LIMIT 1)"
        " FROM (SELECT metric_id, resource_id, first_id, last_id, max(max_time) FROM blocks GROUP BY metric_id, resource_id) b"
    )
    names = {metric_id: name for name, ids in catalog.metric_ids.items() for metric_id in ids}
    latest_ids = [row[2] for row in store.read(probe) if row[2] is not None]
    out: dict[str | None, dict[str, LastValue]] = {}
    for start in range(0, len(latest_ids), IDS_PER_STATEMENT):
        chunk = latest_ids[start : start + IDS_PER_STATEMENT]
        sql = f"SELECT metric_id, resource_id, step, time_unix_nano, {DRAWN_VALUE} FROM points WHERE id IN ({','.join('?' * len(chunk))})"
        for metric_id, resource_id, step, time_unix_nano, value in store.read(sql, chunk):
            run = catalog.resources.get(resource_id, {}).get(RUN_ID_KEY)
            per_run = out.setdefault(None if run is None else str(run), {})
            name = names.get(metric_id, "?")
            known = per_run.get(name)
            if known is None or time_unix_nano > known.time_unix_nano:
                per_run[name] = LastValue(value, step, time_unix_nano)
    return out


def merge_series(held: Series, news: Series, max_points: int) -> Series:
    """``held`` (read up to some id) with ``news`` (what came after it) added: a new Series, the
    inputs untouched. A trace grown past ``max_points`` is cut back to it (min and max per bucket)."""
    merged = Series(run=held.run, metric=held.metric, traces=[], downsampled=held.downsampled or news.downsampled)
    traces = {trace.key: trace for trace in held.traces}
    for trace in news.traces:
        old = traces.get(trace.key)
        if old is None:
            traces[trace.key] = trace
            continue
        rows: list[Sequence[Any]] = list(zip(old.steps, old.times_unix_nano, old.values, strict=True))
        rows += zip(trace.steps, trace.times_unix_nano, trace.values, strict=True)
        rows.sort(key=lambda r: (r[1], -1 if r[0] is None else r[0]))
        grown = Trace(old.resource_id, old.attributes_id, old.resource, old.attributes, downsampled=old.downsampled or trace.downsampled)
        if len(rows) > max_points:
            rows = list(min_max_buckets(rows, max_points, 2))
            merged.mark_downsampled(grown)
        for step, time_unix_nano, value in rows:
            grown.steps.append(step)
            grown.times_unix_nano.append(time_unix_nano)
            grown.values.append(value)
        traces[trace.key] = grown
    merged.traces = [traces[key] for key in sorted(traces, key=lambda k: tuple(int(part) for part in k.split(":")))]
    return merged
