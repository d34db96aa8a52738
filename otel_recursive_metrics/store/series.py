"""Series for charts: one run's metric as traces, only the points added since a row id, downsampled.

A chart needs three reads that :class:`~.points.PointQuery` is not shaped for, and this module
answers them from the chunk index and the chunks (:mod:`.chunk_index`, decoded with NumPy;
read-only, no schema of its own):

- **Everything up to a snapshot** (``until_id``): a chart's first load. A trace is one resource
  (a run's rank, per restart) and one attribute set. Its chunks are decoded and, past
  ``max_points``, its time span is cut into equal buckets, each keeping its lowest and highest
  point, and the trace's first and last points are kept (see :mod:`.downsample`), so a spike
  survives however long the run. A trace of more than ``IN_MEMORY_MAX_ROWS`` points is first
  planned from the chunk index: a chunk that lies inside one bucket is decoded only if it
  holds that bucket's lowest or highest value.
- **What was added since** (``after_id``): a live update. Every point has a row id from one
  counter of the store, growing as points are written, so the points in ``(after_id, until_id]``
  are exactly what a client has not seen. The index's ``last_row_id`` finds the chunks that hold
  some (the newest ones), which costs what was written since, never the history. A large
  increment is downsampled too (buckets of consecutive points).
- **The last point of every metric of every run**, for the runs table: per (metric, resource)
  pair, the chunk with the latest time (from the index), decoded alone.

``until_id`` is the snapshot: a client takes :func:`max_point_id` once, reads everything up to it
and later asks for what lies after it, so no point is sent twice or missed.

Values: a histogram point is shown as its mean (sum / count); ``NaN`` comes back as ``None`` (a
gap), an integer value as an int. Nothing here holds state: the functions are safe from any
thread that may use the store (:class:`PointStore` serialises its own calls).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.chunk import SeriesChunk
from ..model.kinds import HISTOGRAM_KINDS
from ..model.resource import RANK_KEY, RESTART_COUNT_KEY, RUN_ID_KEY
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .downsample import drawn_value, min_max_buckets, min_max_positions
from .first_load import first_load
from .scan import Scan, iter_chunks
from .trace_points import TraceParts, TracePoints
from .trace_reads import IDS_PER_STATEMENT, collect, read_planned

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = [
    "HELD_LAST_POINTS",
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

#: Above this many points a trace's first load is planned from the chunk index (chunks inside one
#: bucket that cannot hold its extremes are not decoded); up to it, every chunk is decoded.
IN_MEMORY_MAX_ROWS = 20_000
#: Chunks' latest points :func:`last_values` keeps for its caller before it starts afresh.
HELD_LAST_POINTS = 100_000

#: OTLP's AggregationTemporality.CUMULATIVE, as the metrics table stores it.
_CUMULATIVE = 2


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
        """The names of the metrics that have points in ``run``, sorted (from the chunk index)."""
        resources = self.run_resources(run)
        if not resources:
            return []
        marks = ",".join("?" * len(resources))
        present = {row[0] for row in self.store.read(f"SELECT DISTINCT metric_id FROM chunks WHERE resource_id IN ({marks})", resources)}
        return sorted(name for name, ids in self.metric_ids.items() if present.intersection(ids))

    def start_time_unix_nano(self, run: str | None) -> int | None:
        """The time of the run's first point (from the chunk index)."""
        resources = self.run_resources(run)
        if not resources:
            return None
        marks = ",".join("?" * len(resources))
        rows = self.store.read(f"SELECT min(min_time) FROM chunks WHERE resource_id IN ({marks})", resources)
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
    """The newest point's row id (0 for an empty store): the snapshot a client reads up to."""
    rows = store.read("SELECT ifnull(max(last_row_id), 0) FROM chunks")
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
    """The traces of ``metric`` in ``run`` with row ids up to ``until_id`` (after ``after_id`` if given).

    Each trace holds at most ``max_points`` points (see the module docstring for how it is cut).
    """
    resources = catalog.run_resources(run)
    metric_ids = catalog.metric_ids.get(metric, [])
    series = Series(run=run, metric=metric, traces=[])
    if not resources or not metric_ids:
        return series
    if after_id is not None:
        scan = Scan(metric_ids=metric_ids, resource_ids=resources, after_row_id=after_id, max_row_id=until_id)
        kept = {key: _cut(parts, min_max_positions(parts.drawn, max_points)) for key, parts in collect(iter_chunks(store, scan)).items()}
    else:
        scan = Scan(metric_ids=metric_ids, resource_ids=resources, max_row_id=until_id)
        histograms = catalog.histogram_ids
        kept = first_load(store, scan, max_points, plan_above=IN_MEMORY_MAX_ROWS, exact=lambda row: row.metric_id not in histograms)
    attribute_sets = catalog.attribute_sets(key[1] for key in kept)
    for (resource_id, attributes_id), (points, cut) in sorted(kept.items()):
        trace = Trace(resource_id, attributes_id, catalog.resources.get(resource_id, {}), attribute_sets.get(attributes_id, {}))
        if cut:
            series.mark_downsampled(trace)
        trace.steps = points.steps()
        trace.times_unix_nano = points.time_unix_nano.tolist()
        trace.values = points.values()
        series.traces.append(trace)
    return series


def _cut(parts: TraceParts, positions: np.ndarray) -> tuple[TracePoints, bool]:
    """The points at ``positions``, and whether any was left out."""
    return (parts.points(), False) if len(positions) == len(parts) else (parts.points(positions), True)


def series_rows(store: PointStore, catalog: RunCatalog, run: str | None, metric: str, *, until_id: int) -> Iterator[list[Sequence[Any]]]:
    """Every point of ``metric`` in ``run`` up to ``until_id``, a chunk at a time, nothing left out:
    per resource (rank) and metric id, in the order written. A row is ``(row id, resource id,
    attribute set id, step, time, drawn value)``."""
    for resource_id in catalog.run_resources(run):
        for metric_id in catalog.metric_ids.get(metric, []):
            for row, chunk in iter_chunks(store, Scan(metric_ids=(metric_id,), resource_ids=(resource_id,), max_row_id=until_id)):
                points = TracePoints.of(chunk)
                count = len(points)
                columns = (points.row_id.tolist(), [resource_id] * count, [row.attributes_id] * count, points.steps())
                yield list(zip(*columns, points.time_unix_nano.tolist(), points.values(), strict=True))


def last_values(
    store: PointStore, catalog: RunCatalog, held: dict[tuple[int, ...], LastValue] | None = None
) -> dict[str | None, dict[str, LastValue]]:
    """The latest point (by time) of every metric of every run: ``{run: {metric: LastValue}}``.

    Per (metric, resource): its chunk with the latest time (from the index), decoded alone, and
    the latest point in it; a metric several ranks log gives the latest of them. ``held``, kept
    by the caller from one call to the next (the web view's runs table asks again every few
    seconds), remembers each stored chunk's latest point: a chunk never changes (compaction makes
    new ones), so only chunks written since are decoded again. It is cleared past
    :data:`HELD_LAST_POINTS` entries; a dict's own operations are atomic, so threads may share it
    (two threads may decode a chunk both, nothing worse).
    """
    names = {metric_id: name for name, ids in catalog.metric_ids.items() for metric_id in ids}
    memo: dict[tuple[int, ...], LastValue] = {} if held is None else held
    # One max() in the group: SQLite fills the bare column (the chunk id) from the row that gave it.
    latest = (
        f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN (SELECT id, max(max_time) FROM chunks GROUP BY metric_id, resource_id) l ON l.id = c.id"
    )
    found: list[tuple[ChunkRow, LastValue]] = []

    def unknown() -> list[ChunkRow]:
        found.clear()
        rows = []
        for row in (ChunkRow(*r) for r in store.read(latest)):
            known = memo.get(_identity(row)) if row.level >= 0 else None
            if known is None:
                rows.append(row)
            else:
                found.append((row, known))
        return rows

    if len(memo) > HELD_LAST_POINTS:
        memo.clear()
    for row, chunk in read_planned(store, unknown, Scan()):
        at = _latest(chunk)
        step = None if chunk.step_missing[at] else int(chunk.step[at])
        point = LastValue(drawn_value(chunk, at), step, int(chunk.time_unix_nano[at]))
        if row.level >= 0 and len(chunk) == row.points:  # a whole stored chunk: its latest point for good
            memo[_identity(row)] = point
        found.append((row, point))
    out: dict[str | None, dict[str, LastValue]] = {}
    for row, point in found:
        run = catalog.resources.get(row.resource_id, {}).get(RUN_ID_KEY)
        per_run = out.setdefault(None if run is None else str(run), {})
        name = names.get(row.metric_id, "?")
        known = per_run.get(name)
        if known is None or point.time_unix_nano > known.time_unix_nano:
            per_run[name] = point
    return out


def _latest(chunk: SeriesChunk) -> int:
    """The position of ``chunk``'s latest point: the latest time, then the highest step, then the last written."""
    times = chunk.time_unix_nano
    tied = np.flatnonzero(times == times.max())
    if len(tied) == 1:
        return int(tied[0])
    steps = np.where(chunk.step_missing[tied], np.iinfo(np.int64).min, chunk.step[tied])
    return int(tied[np.lexsort((chunk.row_id[tied], steps))[-1]])


def _identity(row: ChunkRow) -> tuple[int, ...]:
    """What names a stored chunk's points for good: its id, and its row ids and count (a point's
    row id is the store's alone, never given twice)."""
    return (row.id, row.first_row_id, row.last_row_id, row.points)


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
