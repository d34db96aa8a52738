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
later windows is decoded once and kept, in time order, until its last window
(:data:`CACHE_POINTS` points of such chunks at most; past that, a chunk is decoded again in each
window it reaches). Each point belongs to exactly one window (time ranges ``(lo, hi]``, the first
unbounded below and the last above), so a chunk compacted between two windows is neither missed
nor read twice.

``last`` (the newest points of each series) keeps at most that many points of each chunk as the
chunks are read (:func:`~.scan.iter_chunks`), then sorts them as one window; ``limit`` ends the
windows early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow, SeriesKey
from .point_reads import query_scan
from .points import PointQuery
from .scan import Columns, Reader, Scan, iter_chunks

__all__ = ["CACHE_POINTS", "WINDOW_POINTS", "OrderedPoints", "SeriesCodes", "ordered_points", "ordered_windows"]

#: Points a window holds, about (its time range is estimated from the chunk index).
WINDOW_POINTS = 1 << 16
#: Points of decoded chunks kept for later windows, at most (about 60 bytes each).
CACHE_POINTS = 1 << 21
#: A step-less point's step, as a sort key: before every step, as SQL sorted NULL.
_NO_STEP = np.iinfo(np.int64).min
#: The chunk format's column ids of the histogram and extra texts (model/chunk.py).
_TEXT_COLUMN_IDS = (10, 11)


class _Store(Reader, Protocol):
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class SeriesCodes:
    """Small integer codes for the series met during one read: ``series[code]`` is the series' key."""

    def __init__(self) -> None:
        self.series: list[SeriesKey] = []
        self._codes: dict[SeriesKey, int] = {}

    def code(self, key: SeriesKey) -> int:
        found = self._codes.get(key)
        if found is None:
            found = self._codes[key] = len(self.series)
            self.series.append(key)
        return found

    def table(self) -> np.ndarray:
        """The series' ids as a (series, 4) array: metric, resource, scope, attribute set."""
        return np.array(self.series, dtype=np.int64).reshape(-1, 4)


class _Part(NamedTuple):
    """Points of one chunk: the arrays a window is joined from (texts: None where the chunk has none)."""

    code: int
    time: np.ndarray
    start: np.ndarray
    step: np.ndarray  # _NO_STEP where the point has none
    epoch: np.ndarray
    epoch_missing: np.ndarray
    value: np.ndarray  # int64 or float64, as the chunk holds it
    value_missing: np.ndarray
    row_id: np.ndarray
    histogram: np.ndarray | None
    extra: np.ndarray | None

    def pick(self, rows: Any) -> _Part:
        """The points at ``rows`` (a slice, indices or a mask)."""
        picked: list[Any] = [None if a is None else a[rows] for a in self[1:]]
        return _Part(self.code, *picked)


def _text_columns(data: bytes) -> set[int]:
    """Which of the text columns an encoded chunk holds (read from its column descriptors, see model/chunk.py)."""
    count = data[7]
    ids = {data[16 + 5 * i] for i in range(count)} if len(data) >= 16 + 5 * count else set(_TEXT_COLUMN_IDS)
    return ids & set(_TEXT_COLUMN_IDS)


def _texts(texts: tuple[str | None, ...], held: bool) -> np.ndarray | None:
    if not held or texts.count(None) == len(texts):
        return None
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def _part(code: int, chunk: SeriesChunk, *, texts: bool, text_columns: set[int] | None = None, keep: np.ndarray | None = None) -> _Part:
    """``chunk``'s points (those ``keep`` marks, if given) as a :class:`_Part`, in time order (a stable sort if they are not)."""
    step = np.where(chunk.step_missing, _NO_STEP, chunk.step) if chunk.step_missing.any() else chunk.step
    held = set(_TEXT_COLUMN_IDS) if text_columns is None else text_columns
    part = _Part(
        code,
        chunk.time_unix_nano,
        chunk.start_time_unix_nano,
        step,
        chunk.epoch,
        chunk.epoch_missing,
        chunk.value,
        chunk.value_missing,
        chunk.row_id,
        _texts(chunk.histogram, texts and 10 in held),
        _texts(chunk.extra, texts and 11 in held),
    )
    if keep is not None and not keep.all():
        part = part.pick(keep)
    times = part.time
    if len(times) > 1 and not (times[1:] >= times[:-1]).all():
        part = part.pick(np.argsort(times, kind="stable"))
    return part


class OrderedPoints:
    """Points in time order (then step, step-less first, then row id); each column is made when first asked for.

    ``codes`` gives each point's series as an index into ``series`` (the keys of a
    :class:`SeriesCodes`). ``value`` is float64 (NaN where a point has none); ``is_int`` /
    ``int_value`` hold integer values exactly; ``histogram`` / ``extra`` are lists of JSON
    texts or None, or None if no point has one.
    """

    def __init__(self, parts: Sequence[_Part], series: Sequence[SeriesKey], order: np.ndarray | None = None) -> None:
        # Parts in row-id order: each key of the sort is then a few increasing runs, which the
        # stable sorts merge quickly.
        self._parts = sorted(parts, key=lambda p: int(p.row_id[0])) if len(parts) > 1 else list(parts)
        self.series = series
        self.order = self._order() if order is None else order

    def _order(self) -> np.ndarray:
        times = self._joined(1)
        if len(self._parts) <= 1 and (len(times) < 2 or (times[1:] > times[:-1]).all()):
            return np.arange(len(times))  # one chunk, no time twice: already in order
        return np.lexsort((self._joined(8), self._joined(3), times))

    def _size(self) -> int:
        return sum(len(p.time) for p in self._parts)

    def __len__(self) -> int:
        return len(self.order)

    def _joined(self, index: int) -> np.ndarray:
        arrays: list[np.ndarray] = [p[index] for p in self._parts]  # type: ignore[misc]
        if not arrays:
            return np.zeros(0, bool if index in (5, 7) else object if index > 8 else np.int64)
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    def _sorted(self, index: int) -> np.ndarray:
        joined = self._joined(index)
        return joined if len(joined) == len(self.order) and self._is_identity else joined[self.order]

    @cached_property
    def _is_identity(self) -> bool:
        return len(self._parts) <= 1 and bool(len(self.order) == self._size() and (np.diff(self.order) == 1).all())

    def take(self, rows: Any) -> OrderedPoints:
        """The points at ``rows`` (indices, a slice or a mask of this order), in that order."""
        return OrderedPoints(self._parts, self.series, self.order[rows])

    @cached_property
    def codes(self) -> np.ndarray:
        sizes = [len(p.time) for p in self._parts]
        codes: np.ndarray = np.repeat(np.array([p.code for p in self._parts], dtype=np.int64), sizes)[self.order]
        return codes

    @cached_property
    def time_unix_nano(self) -> np.ndarray:
        return self._sorted(1)

    @cached_property
    def start_time_unix_nano(self) -> np.ndarray:
        return self._sorted(2)

    @cached_property
    def _step_key(self) -> np.ndarray:
        return self._sorted(3)

    @cached_property
    def step_missing(self) -> np.ndarray:
        missing: np.ndarray = self._step_key == _NO_STEP
        return missing

    @cached_property
    def step(self) -> np.ndarray:
        """Each point's step (0 where it has none: see ``step_missing``)."""
        return np.where(self.step_missing, 0, self._step_key) if self.step_missing.any() else self._step_key

    @cached_property
    def epoch(self) -> np.ndarray:
        return self._sorted(4)

    @cached_property
    def epoch_missing(self) -> np.ndarray:
        return self._sorted(5)

    @cached_property
    def value_missing(self) -> np.ndarray:
        return self._sorted(7)

    @cached_property
    def row_id(self) -> np.ndarray:
        return self._sorted(8)

    @cached_property
    def is_int(self) -> np.ndarray:
        sizes = [len(p.time) for p in self._parts]
        kinds = np.array([p.value.dtype.kind == "i" for p in self._parts], dtype=bool)
        is_int: np.ndarray = np.repeat(kinds, sizes)[self.order]
        return is_int

    @cached_property
    def value(self) -> np.ndarray:
        """Every value as float64, NaN where a point has none."""
        arrays = [p.value.astype(np.float64, copy=False) for p in self._parts]
        values = (arrays[0] if len(arrays) == 1 else np.concatenate(arrays)) if arrays else np.zeros(0)
        ordered: np.ndarray = values[self.order]
        if self.value_missing.any():
            ordered[self.value_missing] = np.nan
        return ordered

    @cached_property
    def int_value(self) -> np.ndarray:
        """Integer values exactly (0 where ``is_int`` is False)."""
        if not self.is_int.any():
            return np.zeros(len(self), np.int64)
        ints = np.concatenate([p.value if p.value.dtype.kind == "i" else np.zeros(len(p.value), np.int64) for p in self._parts])
        ordered: np.ndarray = ints[self.order]
        return ordered

    def _text(self, index: int) -> list[str | None] | None:
        if all(p[index] is None for p in self._parts):
            return None
        column = np.concatenate([np.full(len(p.time), None, dtype=object) if p[index] is None else p[index] for p in self._parts])
        texts: list[str | None] = column[self.order].tolist()
        return texts

    @cached_property
    def histogram(self) -> list[str | None] | None:
        return self._text(9)

    @cached_property
    def extra(self) -> list[str | None] | None:
        return self._text(10)

    def columns(self) -> Columns:
        """All the columns, as :func:`~.scan.gather` gives them (every array made)."""
        table = np.array(self.series, dtype=np.int64).reshape(-1, 4)[self.codes] if len(self) else np.zeros((0, 4), np.int64)
        return Columns(
            metric_id=table[:, 0],
            resource_id=table[:, 1],
            scope_id=table[:, 2],
            attributes_id=table[:, 3],
            row_id=self.row_id,
            time_unix_nano=self.time_unix_nano,
            start_time_unix_nano=self.start_time_unix_nano,
            step=self.step,
            step_missing=self.step_missing,
            epoch=self.epoch,
            epoch_missing=self.epoch_missing,
            value=self.value,
            value_missing=self.value_missing,
            is_int=self.is_int,
            int_value=self.int_value,
            histogram=self.histogram,
            extra=self.extra,
        )


def _edges(rows: Sequence[ChunkRow], scan: Scan, window_points: int) -> list[int]:
    """Times that cut the chunks' points into windows of about ``window_points`` (a window ends at one, inclusive).

    Each chunk's points are taken as spread evenly over its time range (clipped to the scan's):
    eight markers per window's worth of points, sorted by time, and a cut every ``window_points``.
    """
    if sum(row.points for row in rows) <= window_points:
        return []
    lo = np.array([row.min_time for row in rows], dtype=np.int64)
    hi = np.array([row.max_time for row in rows], dtype=np.int64)
    if scan.min_time is not None:
        lo = np.maximum(lo, scan.min_time)
    if scan.max_time is not None:
        hi = np.minimum(hi, scan.max_time)
    hi = np.maximum(hi, lo)
    points = np.array([row.points for row in rows], dtype=np.float64)
    markers = np.maximum(1, np.ceil(points * 8 / window_points)).astype(np.int64)
    chunk = np.repeat(np.arange(len(rows)), markers)
    first = np.cumsum(markers) - markers
    fraction = (np.arange(len(chunk)) - first[chunk] + 1) / markers[chunk]
    # The span as a float (times are int64 nanoseconds): a marker may land a little off, never past its chunk's end.
    at = np.minimum(lo[chunk] + ((hi - lo)[chunk] * fraction).astype(np.int64), hi[chunk])
    order = np.argsort(at, kind="stable")
    weight = np.cumsum((points / markers)[chunk][order])
    crossing = np.flatnonzero(np.diff(np.floor(weight / window_points)) > 0)
    cuts = np.unique(at[order][crossing])
    return [int(t) for t in cuts[cuts < at.max()]]


_CacheKey = tuple[int, int, int, int]


def _cache_key(row: ChunkRow) -> _CacheKey:
    """What names a chunk's points: its id with its row-id range (an id SQLite gives again after a deletion holds others)."""
    return (row.id, row.first_row_id, row.last_row_id, row.points)


def _window_sql(scan: Scan, kept: Sequence[_CacheKey]) -> tuple[str, list[Any]]:
    """One window's statement: the index rows of its chunks, and the data of those not kept from before."""
    where, params = scan.index_sql()
    data = "d.data"
    if kept:
        values = ",".join(f"({chunk_id},{first},{last},{points})" for chunk_id, first, last, points in kept)
        data = f"CASE WHEN (c.id, c.first_row_id, c.last_row_id, c.points) IN (VALUES {values}) THEN NULL ELSE d.data END"
    return f"SELECT {CHUNK_COLUMNS}, {data} FROM chunks c JOIN chunk_data d ON d.chunk_id = c.id{where}", params


def _bounded(scan: Scan, lo: int | None, hi: int | None) -> Scan:
    """``scan`` narrowed to the times ``(lo, hi]`` (None: unbounded)."""
    min_time, max_time = scan.min_time, scan.max_time
    if lo is not None and (min_time is None or lo + 1 > min_time):
        min_time = lo + 1
    if hi is not None and (max_time is None or hi < max_time):
        max_time = hi
    return dataclasses.replace(scan, min_time=min_time, max_time=max_time)


def _windows(store: Reader, scan: Scan, *, window_points: int | None, texts: bool, codes: SeriesCodes) -> Iterator[OrderedPoints]:
    """The windows of :func:`ordered_windows` (``last`` and ``limit`` aside)."""
    rows: list[ChunkRow] = []
    if window_points is not None:
        where, params = scan.index_sql()
        for batch in store.read_chunks(f"SELECT {CHUNK_COLUMNS} FROM chunks c{where}", params, size=4096):
            rows.extend(ChunkRow(*row) for row in batch)
    edges = [] if window_points is None else _edges(rows, scan, window_points)
    bounds: list[tuple[int | None, int | None]] = list(zip([None, *edges], [*edges, None], strict=True))
    cache: dict[_CacheKey, _Part] = {}
    for lo, hi in bounds:
        kept: dict[_CacheKey, _Part] = {}
        kept_points = 0
        parts: list[_Part] = []
        sql, params = _window_sql(_bounded(scan, lo, hi), list(cache))
        for batch in store.read_chunks(sql, params, size=64):
            for raw in batch:
                row, data = ChunkRow(*raw[:-1]), raw[-1]
                key = _cache_key(row)
                part = cache.get(key) if data is None else None
                if part is None:
                    chunk = SeriesChunk.decode(data)
                    keep = scan.mask(chunk)
                    part = _part(codes.code(row.series), chunk, texts=texts, text_columns=_text_columns(data), keep=keep)
                times = part.time
                first = 0 if lo is None else int(np.searchsorted(times, lo, side="right"))
                end = len(times) if hi is None else int(np.searchsorted(times, hi, side="right"))
                if end > first:
                    parts.append(part if first == 0 and end == len(times) else part.pick(slice(first, end)))
                if end < len(times) and kept_points + len(times) <= CACHE_POINTS:
                    kept[key] = part
                    kept_points += len(times)
        cache = kept
        if parts or len(bounds) == 1:
            yield OrderedPoints(parts, codes.series)


def _newest(store: Reader, scan: Scan, count: int, *, texts: bool, codes: SeriesCodes) -> OrderedPoints:
    """The newest ``count`` points of each series (metric, resource, attribute set), in time order.

    Memory: at most ``count`` points of each chunk, the newest of each as it is read.
    """
    parts: list[_Part] = []
    for row, chunk in iter_chunks(store, scan):
        part = _part(codes.code(row.series), chunk, texts=texts)
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
