"""A query's points in time order, window by window, with memory bounded whatever the store's size.

The exports (``query --format csv|json``, ``export``) and :meth:`PointStore.to_dataframe` read
through :func:`ordered_windows`: each window is the points of a time range in
:class:`~.points.PointQuery`'s order (time, then step with step-less points first, then as
written), as :class:`OrderedPoints`: NumPy columns made on demand, each point's series a small
code (:class:`SeriesCodes`), so a reader makes only the columns it writes.

Chunks hold one series each and overlap in time, so time order cannot come from reading them one
after the other. The chunk index (a row a chunk, no data) gives each chunk's time range and size;
from it the time line is cut into windows of about :data:`WINDOW_POINTS` points. A window is one
statement over the index and the data (a consistent snapshot, even while a writer compacts), its
chunks' points in its time range joined and sorted with one ``lexsort``. A chunk that reaches into
later windows is decoded once and kept, in time order, for them: whole if the chunks reaching past
the window fit in :data:`CACHE_POINTS` together, else a copy of its next points (its share of that
room), the chunk being decoded again when they run out. Memory is a window, the kept points, and
one decoded chunk, whatever the store's size. Each point belongs to exactly one window (time
ranges ``(lo, hi]``, the first unbounded below and the last above), so a chunk compacted between
two windows is neither missed nor read twice.

``last`` (the newest points of each series) keeps at most that many points of each chunk as the
chunks are read (:func:`~.scan.iter_chunks`), then sorts them as one window; ``limit`` ends the
windows early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow, SeriesKey
from .head import HEAD_COLUMNS, as_chunks
from .ordered_points import ChunkPart, OrderedPoints, SeriesCodes, chunk_part
from .point_reads import query_scan
from .points import PointQuery
from .scan import Reader, Scan, iter_chunks

__all__ = ["CACHE_POINTS", "WINDOW_POINTS", "OrderedPoints", "SeriesCodes", "ordered_points", "ordered_windows"]

#: Points a window holds, about (its time range is estimated from the chunk index).
WINDOW_POINTS = 1 << 16
#: Points of decoded chunks kept for later windows, at most (about 50 bytes each).
CACHE_POINTS = 1 << 20
#: Points kept of a chunk at least, when the chunks reaching past a window are too many to keep whole.
_LEAST_KEPT = 1 << 13


class _Store(Reader, Protocol):
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def _edges(rows: Sequence[ChunkRow], scan: Scan, window_points: int) -> list[int]:
    """Times that cut the chunks' points into windows of about ``window_points`` (a window ends at one, inclusive).

    Each chunk's points are taken as spread evenly over its time range (clipped to the scan's),
    so the number of points up to a time is piecewise linear in it: its slope changes where a
    chunk starts or ends (a chunk of one instant adds all its points there). The cuts are where
    that count passes each multiple of ``window_points``, whatever the number of series side by side.
    """
    total = sum(row.points for row in rows)
    if total <= window_points:
        return []
    lo = np.array([row.min_time for row in rows], dtype=np.int64)
    hi = np.array([row.max_time for row in rows], dtype=np.int64)
    if scan.min_time is not None:
        lo = np.maximum(lo, scan.min_time)
    if scan.max_time is not None:
        hi = np.minimum(hi, scan.max_time)
    hi = np.maximum(hi, lo)
    points = np.array([row.points for row in rows], dtype=np.float64)
    instant = hi == lo
    rate = points[~instant] / (hi - lo)[~instant].astype(np.float64)
    times = np.concatenate([lo[~instant], hi[~instant], lo[instant]])
    slope_change = np.concatenate([rate, -rate, np.zeros(int(instant.sum()))])
    jump = np.concatenate([np.zeros(2 * len(rate)), points[instant]])
    order = np.argsort(times, kind="stable")
    times, slope_change, jump = times[order], slope_change[order], jump[order]
    slope_before = np.concatenate([[0.0], np.cumsum(slope_change)[:-1]])
    elapsed = np.diff(times, prepend=times[0]).astype(np.float64)
    counted = np.cumsum(slope_before * elapsed + jump)  # points up to each event's time, itself included
    targets = window_points * np.arange(1, int(counted[-1] // window_points) + 1, dtype=np.float64)
    at = np.searchsorted(counted, targets)  # the first event by whose time the target is reached
    at = np.minimum(at, len(times) - 1)
    previous = np.maximum(at - 1, 0)
    # Reached between two events: where the line crosses it; reached by a jump: at the jump's time.
    reached_before = counted[previous] + slope_before[at] * elapsed[at]
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = times[previous] + (targets - counted[previous]) / slope_before[at]
    cut = np.where((targets <= reached_before) & (slope_before[at] > 0), crossing, times[at])
    cuts = np.unique(np.clip(cut, times[0], times[-1]).astype(np.int64))
    return [int(t) for t in cuts[cuts < times[-1]]]


_CacheKey = tuple[int, int, int, int]
#: Columns of an index row and of a head row, in a window's statement.
_INDEX_WIDTH = len(CHUNK_COLUMNS.split(","))
_HEAD_WIDTH = len(HEAD_COLUMNS.split(","))


def _cache_key(row: ChunkRow) -> _CacheKey:
    """What names a chunk's points: its id with its row-id range (an id SQLite gives again after a deletion holds others)."""
    return (row.id, row.first_row_id, row.last_row_id, row.points)


def _window_sql(scan: Scan, kept: Sequence[_CacheKey]) -> tuple[str, list[Any]]:
    """One window's statement: its chunks (index row, and data unless kept from before), then its head rows.

    One statement, so one snapshot: a move of the head into chunks can neither hide nor repeat a
    point. A row is ``(0, index row..., data, NULL...)`` for a chunk, ``(1, NULL..., head row...)``
    for a point of the head.
    """
    where, params = scan.index_sql()
    head_where, head_params = scan.head_sql()
    data = "d.data"
    if kept:
        values = ",".join(f"({chunk_id},{first},{last},{points})" for chunk_id, first, last, points in kept)
        data = f"CASE WHEN (c.id, c.first_row_id, c.last_row_id, c.points) IN (VALUES {values}) THEN NULL ELSE d.data END"
    sql = (
        f"SELECT 0, {CHUNK_COLUMNS}, {data}{', NULL' * _HEAD_WIDTH} FROM chunk_index c JOIN chunk_data d ON d.chunk_id = c.id{where}"
        f" UNION ALL SELECT 1{', NULL' * (_INDEX_WIDTH + 1)}, {HEAD_COLUMNS} FROM head_points{head_where}"
    )
    return sql, [*params, *head_params]


def _bounded(scan: Scan, lo: int | None, hi: int | None) -> Scan:
    """``scan`` narrowed to the times ``(lo, hi]`` (None: unbounded)."""
    min_time, max_time = scan.min_time, scan.max_time
    if lo is not None and (min_time is None or lo + 1 > min_time):
        min_time = lo + 1
    if hi is not None and (max_time is None or hi < max_time):
        max_time = hi
    return dataclasses.replace(scan, min_time=min_time, max_time=max_time)


class _Kept(NamedTuple):
    """A chunk's points kept for later windows: all from some time on, up to ``covered`` (None: to the chunk's end)."""

    part: ChunkPart
    covered: int | None


def _kept(part: ChunkPart, first: int, covered: int | None, share: int) -> _Kept:
    """What to keep of a chunk that reaches past a window, from its point ``first`` on: itself if within ``share`` points.

    Else a copy of its next ``share`` points and every point at the last one's time (a window
    ends after a time, never inside it), so the decoded chunk can go: it is decoded again only
    when the points kept of it run out.
    """
    if len(part.time) <= share:
        return _Kept(part, covered)
    stop = len(part.time)
    if first + share < stop:
        stop = int(np.searchsorted(part.time, part.time[first + share - 1], side="right"))
    return _Kept(part.pick(slice(first, stop)).copy(), covered if stop == len(part.time) else int(part.time[stop - 1]))


def _windows(store: Reader, scan: Scan, *, window_points: int | None, texts: bool, codes: SeriesCodes) -> Iterator[OrderedPoints]:
    """The windows of :func:`ordered_windows` (``last`` and ``limit`` aside)."""
    rows: list[ChunkRow] = []
    if window_points is not None:
        where, params = scan.index_sql()
        for batch in store.read_chunks(f"SELECT {CHUNK_COLUMNS} FROM chunks c{where}", params, size=4096):
            rows.extend(ChunkRow(*row) for row in batch)
    edges = [] if window_points is None else _edges(rows, scan, window_points)
    bounds: list[tuple[int | None, int | None]] = list(zip([None, *edges], [*edges, None], strict=True))
    starts = np.array([row.min_time for row in rows], dtype=np.int64)
    ends = np.array([row.max_time for row in rows], dtype=np.int64)
    cache: dict[_CacheKey, _Kept] = {}
    for lo, hi in bounds:
        # Kept points serve a window they cover to its end; other chunks are read (and decoded) again.
        usable = {key: kept for key, kept in cache.items() if kept.covered is None or (hi is not None and kept.covered >= hi)}
        # The room for later windows, shared by the chunks that reach past this one (as the index said at the start).
        reaching = int(np.count_nonzero((starts <= hi) & (ends > hi))) if hi is not None else 0
        share = max(_LEAST_KEPT, CACHE_POINTS // max(1, reaching))
        cache = {}
        parts: list[ChunkPart] = []
        sql, params = _window_sql(_bounded(scan, lo, hi), list(usable))
        head: list[Sequence[Any]] = []
        for batch in store.read_chunks(sql, params, size=64):
            for raw in batch:
                if raw[0] == 1:
                    head.append(raw[_INDEX_WIDTH + 2 :])
                    continue
                row, data = ChunkRow(*raw[1 : _INDEX_WIDTH + 1]), raw[_INDEX_WIDTH + 1]
                key = _cache_key(row)
                covered: int | None = None
                if data is None:
                    part, covered = usable[key]
                else:
                    chunk = SeriesChunk.decode(data)
                    keep = scan.mask(chunk)
                    part = chunk_part(codes.code(row.series), chunk, texts=texts, keep=keep)
                times = part.time
                first = 0 if lo is None else int(np.searchsorted(times, lo, side="right"))
                end = len(times) if hi is None else int(np.searchsorted(times, hi, side="right"))
                if end > first:
                    window_part = part if first == 0 and end == len(times) else part.pick(slice(first, end))
                    # A few points of a large chunk are copied: the chunk's arrays need not stay for them.
                    parts.append(window_part.copy() if data is not None and len(times) > share else window_part)
                if end < len(times):
                    cache[key] = _kept(part, end, covered, share)
        del usable
        # The head's points of the window (its statement kept only those): as chunks, by series then row id.
        head.sort(key=lambda r: (*r[1:5], r[0]))
        for series, chunk in as_chunks(head):
            parts.append(chunk_part(codes.code(SeriesKey(*series)), chunk, texts=texts))
        if parts or len(bounds) == 1:
            yield OrderedPoints(parts, codes.series)


def _newest(store: Reader, scan: Scan, count: int, *, texts: bool, codes: SeriesCodes) -> OrderedPoints:
    """The newest ``count`` points of each series (metric, resource, attribute set), in time order.

    Memory: at most ``count`` points of each chunk, the newest of each as it is read.
    """
    parts: list[ChunkPart] = []
    for row, chunk in iter_chunks(store, scan):
        part = chunk_part(codes.code(row.series), chunk, texts=texts)
        if len(part.time) > count:
            part = part.pick(np.lexsort((part.row_id, part.step, part.time))[-count:])
        parts.append(part)
    points = OrderedPoints(parts, codes.series)
    if not len(points):
        return points
    # Series that differ only by scope count as one, as in the SQL's PARTITION BY before chunks.
    _, group = np.unique(codes.table()[:, [0, 1, 3]], axis=0, return_inverse=True)
    group = group.reshape(-1)[points.codes]
    order = np.argsort(group, kind="stable")  # each series' points together, still in time order
    ends = np.searchsorted(group[order], group[order], side="right")
    keep = np.zeros(len(order), bool)
    keep[order[ends - np.arange(len(order)) - 1 < count]] = True
    return points.take(keep)


def ordered_windows(
    store: _Store, query: PointQuery, *, window_points: int | None = WINDOW_POINTS, texts: bool = True, codes: SeriesCodes | None = None
) -> Iterator[OrderedPoints]:
    """The points of ``query`` in its order, windows of about ``window_points`` (None: one window of all).

    ``texts=False`` leaves the histogram and extra columns out (None). ``codes`` numbers the
    series: pass one :class:`SeriesCodes` to several calls (``--follow``) to keep the numbers.
    Empty windows are left out, except that a read of nothing yields one empty window.
    """
    codes = SeriesCodes() if codes is None else codes
    scan = query_scan(store, query)
    if query.last is not None:
        windows: Iterator[OrderedPoints] = iter([_newest(store, scan, int(query.last), texts=texts, codes=codes)])
    else:
        windows = _windows(store, scan, window_points=window_points, texts=texts, codes=codes)
    remaining = None if query.limit is None else max(0, int(query.limit))
    any_yielded = False
    for window in windows:
        if remaining is not None and len(window) >= remaining:
            yield window.take(slice(0, remaining))
            return
        if remaining is not None:
            remaining -= len(window)
        any_yielded = True
        yield window
    if not any_yielded:
        yield OrderedPoints([], codes.series)


def ordered_points(store: _Store, query: PointQuery, *, texts: bool = True) -> OrderedPoints:
    """Every point of ``query`` in its order as one :class:`OrderedPoints` (memory: all of them)."""
    (points,) = ordered_windows(store, query, window_points=None, texts=texts)
    return points
