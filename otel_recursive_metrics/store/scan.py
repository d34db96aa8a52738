"""Reading points back as NumPy columns: the one way every reader of the store gets at points.

A reader names what it wants (:class:`Scan`: series ids, time, step and row-id bounds); the
chunk index picks the chunks that can hold such points (by their ranges, without touching chunk
data), each is decoded, and the points outside the bounds are dropped with NumPy masks.
:func:`iter_chunks` yields chunk by chunk (bounded memory, for exports); :func:`gather` joins
them into one :class:`Columns`, one array per field, which readers sort, group and reduce with
NumPy (no Python object per point).

    >>> cols = gather(iter_chunks(store, Scan(metric_ids=(3,), min_time=t0)))
    >>> cols.sorted_by_time().value
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from ..model.chunk import SeriesChunk, concat
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .head import HEAD_COLUMNS, HEAD_ORDER, as_chunks

__all__ = ["Columns", "Reader", "Scan", "decode_rows", "gather", "iter_chunks"]


class Reader(Protocol):
    """What a scan needs of a store: :meth:`PointStore.read_chunks` and :meth:`PointStore.read`."""

    def read_chunks(self, sql: str, params: Sequence[Any] = (), size: int = 1024) -> Iterator[list[Any]]: ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


@dataclass(frozen=True)
class Scan:
    """Which points to read; every bound given must hold (inclusive, like SQL's BETWEEN).

    Id filters are the store's ids (from its small tables: metrics, resources, scopes,
    attribute_sets). A step bound leaves out points without a step, as SQL's comparisons with
    NULL do. ``after_row_id`` is exclusive: points written after that one.
    """

    metric_ids: Sequence[int] | None = None
    resource_ids: Sequence[int] | None = None
    attributes_ids: Sequence[int] | None = None
    min_time: int | None = None
    max_time: int | None = None
    min_step: int | None = None
    max_step: int | None = None
    after_row_id: int | None = None
    max_row_id: int | None = None

    def index_sql(self) -> tuple[str, list[Any]]:
        """``(" WHERE ...", params)`` over the chunk index ``c``: the chunks that can hold matching points."""
        where: list[str] = []
        params: list[Any] = []
        for column, ids in (("metric_id", self.metric_ids), ("resource_id", self.resource_ids), ("attributes_id", self.attributes_ids)):
            if ids is not None:
                wanted = sorted({int(i) for i in ids})
                where.append(f"c.{column} IN ({','.join(map(str, wanted))})" if wanted else "0")
        for clause, value in (
            ("c.max_time >= ?", self.min_time),
            ("c.min_time <= ?", self.max_time),
            ("c.max_step >= ?", self.min_step),
            ("c.min_step <= ?", self.max_step),
            ("c.last_row_id > ?", self.after_row_id),
            ("c.first_row_id <= ?", self.max_row_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(int(value))
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def head_sql(self) -> tuple[str, list[Any]]:
        """``(" WHERE ...", params)`` over ``head_points``: its rows that match every bound, point by point."""
        where: list[str] = []
        params: list[Any] = []
        for column, ids in (("metric_id", self.metric_ids), ("resource_id", self.resource_ids), ("attributes_id", self.attributes_ids)):
            if ids is not None:
                wanted = sorted({int(i) for i in ids})
                where.append(f"{column} IN ({','.join(map(str, wanted))})" if wanted else "0")
        for clause, value in (
            ("time_unix_nano >= ?", self.min_time),
            ("time_unix_nano <= ?", self.max_time),
            ("step >= ?", self.min_step),
            ("step <= ?", self.max_step),
            ("id > ?", self.after_row_id),
            ("id <= ?", self.max_row_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(int(value))
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def mask(self, chunk: SeriesChunk) -> np.ndarray | None:
        """Which of ``chunk``'s points match the bounds; None if all do (no bound given)."""
        keep: np.ndarray | None = None

        def both(more: np.ndarray) -> None:
            nonlocal keep
            keep = more if keep is None else keep & more

        if self.min_time is not None:
            both(chunk.time_unix_nano >= self.min_time)
        if self.max_time is not None:
            both(chunk.time_unix_nano <= self.max_time)
        if self.min_step is not None:
            both((chunk.step >= self.min_step) & ~chunk.step_missing)
        if self.max_step is not None:
            both((chunk.step <= self.max_step) & ~chunk.step_missing)
        if self.after_row_id is not None:
            both(chunk.row_id > self.after_row_id)
        if self.max_row_id is not None:
            both(chunk.row_id <= self.max_row_id)
        return keep


# The other part's columns of iter_chunks' one statement: 16 index columns and the data; 12 head columns.
_NO_CHUNK = ", ".join(["NULL"] * 17)
_NO_HEAD = ", ".join(["NULL"] * 12)


def iter_chunks(store: Reader, scan: Scan = Scan(), *, size: int = 64) -> Iterator[tuple[ChunkRow, SeriesChunk]]:
    """The matching points chunk by chunk: the chunks in the order they were written (row id), then the head's series.

    Empty ones are left out. A head series comes as a chunk with a :class:`ChunkRow` of level
    -1 (``id`` the negative of its first row id, ``bytes`` 0), as the ``chunks`` view lists it.
    """
    where, params = scan.index_sql()
    head_where, head_params = scan.head_sql()
    # One statement, so one snapshot: a head moved into chunks (or chunks joined) by a writer
    # between two statements would otherwise be read twice or not at all.
    chunk_part = f"SELECT 0, {CHUNK_COLUMNS}, d.data, {_NO_HEAD} FROM chunk_index c JOIN chunk_data d ON d.chunk_id = c.id{where}"
    head_part = f"SELECT 1, {_NO_CHUNK}, {HEAD_COLUMNS} FROM head_points{head_where}"
    sql = f"{chunk_part} UNION ALL {head_part} ORDER BY 1, 8, 20, 21, 22, 23, 19"
    head_rows: list[Any] = []
    for rows in store.read_chunks(sql, [*params, *head_params], size=size):
        for row in rows:
            if row[0]:
                head_rows.append(row[18:])
                continue
            chunk = _matching(scan, SeriesChunk.decode(row[17]))
            if chunk is not None:
                yield ChunkRow(*row[1:17]), chunk
    for key, chunk in as_chunks(head_rows):
        stats = chunk.stats()
        first, last = int(chunk.row_id.min()), int(chunk.row_id.max())
        min_time, max_time = int(chunk.time_unix_nano.min()), int(chunk.time_unix_nano.max())
        row = ChunkRow(
            -first,
            *key,
            len(chunk),
            first,
            last,
            min_time,
            max_time,
            stats.min_step,
            stats.max_step,
            stats.min_value,
            stats.max_value,
            -1,
            0,
        )
        yield row, chunk


def decode_rows(store: Reader, rows: Sequence[ChunkRow]) -> Iterator[tuple[ChunkRow, SeriesChunk]]:
    """Each row of the ``chunks`` view with its points: a chunk's decoded data, or a head series' rows.

    A head series (``id`` <= 0, see :mod:`.chunk_index`) comes as one chunk; where its values mix
    integers and floats, as floats.
    """
    real = sorted({row.id: row for row in rows if row.id > 0}.items())
    for start in range(0, len(real), 500):
        part = dict(real[start : start + 500])
        found = store.read(f"SELECT chunk_id, data FROM chunk_data WHERE chunk_id IN ({','.join(map(str, part))})")
        for chunk_id, data in found:
            yield part[chunk_id], SeriesChunk.decode(data)
    head = {row.series: row for row in rows if row.id <= 0}
    if not head:
        return
    series = ",".join("(" + ",".join(str(int(v)) for v in key) + ")" for key in head)
    where = f" WHERE (metric_id, resource_id, scope_id, attributes_id) IN (VALUES {series})"
    parts: dict[Any, list[SeriesChunk]] = {}
    for key, chunk in as_chunks(store.read(f"SELECT {HEAD_COLUMNS} FROM head_points{where}{HEAD_ORDER}")):
        parts.setdefault(key, []).append(chunk)
    for key, kinds in parts.items():
        if len(kinds) == 1:
            yield head[key], kinds[0]
        else:  # integers and floats: one chunk of floats, in row-id order
            joined = concat([_as_floats(c) for c in kinds])
            yield head[key], joined.take(np.argsort(joined.row_id, kind="stable"))


def _as_floats(chunk: SeriesChunk) -> SeriesChunk:
    if chunk.value.dtype.kind == "f":
        return chunk
    fields = {name: getattr(chunk, name) for name in SeriesChunk.__slots__}
    fields["value"] = chunk.value.astype(np.float64)
    return SeriesChunk(**fields)


def _matching(scan: Scan, chunk: SeriesChunk) -> SeriesChunk | None:
    """``chunk``'s points that ``scan``'s bounds keep; None if none does."""
    keep = scan.mask(chunk)
    if keep is None or keep.all():
        return chunk
    return chunk.take(keep) if keep.any() else None


@dataclass(frozen=True)
class Columns:
    """Points as one array per field (see :class:`~otel_recursive_metrics.model.chunk.SeriesChunk`).

    ``value`` is float64 for every point (NaN where it has none, ``value_missing``); integer
    values are also in ``int_value`` exactly (``is_int`` says which points have one).
    ``histogram`` and ``extra`` are JSON texts (None where a point has none), or None if no
    point has any.
    """

    metric_id: np.ndarray
    resource_id: np.ndarray
    scope_id: np.ndarray
    attributes_id: np.ndarray
    row_id: np.ndarray
    time_unix_nano: np.ndarray
    start_time_unix_nano: np.ndarray
    step: np.ndarray
    step_missing: np.ndarray
    epoch: np.ndarray
    epoch_missing: np.ndarray
    value: np.ndarray
    value_missing: np.ndarray
    is_int: np.ndarray
    int_value: np.ndarray
    histogram: list[str | None] | None = None
    extra: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.row_id)

    def take(self, rows: Any) -> Columns:
        """The points at ``rows`` (indices or a boolean mask), in that order."""
        index = np.arange(len(self))[rows] if self.histogram is not None or self.extra is not None else None
        out: dict[str, Any] = {}
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, np.ndarray):
                out[f.name] = column[rows]
            elif column is not None and index is not None:
                out[f.name] = [column[i] for i in index.tolist()]
            else:
                out[f.name] = None
        return Columns(**out)

    def sorted_by_time(self) -> Columns:
        """The points in time order, then step (points without one first), then as written."""
        step = np.where(self.step_missing, np.iinfo(np.int64).min, self.step)
        return self.take(np.lexsort((self.row_id, step, self.time_unix_nano)))

    def values(self) -> list[float | int | None]:
        """Each point's value as Python gives it back: an int, a float, or None (no value, or NaN, as SQLite kept it)."""
        floats: list[Any] = self.value.tolist()
        out: list[Any] = [None if math.isnan(v) else v for v in floats]
        if self.is_int.any():
            for i in np.flatnonzero(self.is_int & ~self.value_missing).tolist():
                out[i] = int(self.int_value[i])
        return out


_ID_NAMES = ("metric_id", "resource_id", "scope_id", "attributes_id")


def gather(pairs: Iterable[tuple[ChunkRow, SeriesChunk]]) -> Columns:
    """One :class:`Columns` of every point ``pairs`` (from :func:`iter_chunks`) holds, in their order."""
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(Columns) if f.name not in ("histogram", "extra")}
    texts: dict[str, list[str | None]] = {"histogram": [], "extra": []}
    any_text = False
    for row, chunk in pairs:
        n = len(chunk)
        for name, series_id in zip(_ID_NAMES, row.series, strict=True):
            parts[name].append(np.full(n, series_id, np.int64))
        for name in ("row_id", "time_unix_nano", "start_time_unix_nano", "step", "step_missing", "epoch", "epoch_missing", "value_missing"):
            parts[name].append(getattr(chunk, name))
        integer = chunk.value.dtype.kind == "i"
        floats = chunk.value.astype(np.float64) if integer else chunk.value
        if chunk.value_missing.any():
            floats = np.where(chunk.value_missing, np.nan, floats)
        parts["value"].append(floats)
        parts["is_int"].append(np.full(n, integer))
        parts["int_value"].append(chunk.value if integer else np.zeros(n, np.int64))
        for name in ("histogram", "extra"):
            given = getattr(chunk, name)
            texts[name].extend(given if given is not None else (None,) * n)
            any_text = any_text or given is not None
    arrays: dict[str, Any] = {}
    for f in fields(Columns):
        if f.name in texts:
            continue
        dtype = (
            bool
            if f.name in ("step_missing", "epoch_missing", "value_missing", "is_int")
            else np.float64
            if f.name == "value"
            else np.int64
        )
        arrays[f.name] = np.concatenate(parts[f.name]) if parts[f.name] else np.zeros(0, dtype)
    if any_text:
        arrays["histogram"] = texts["histogram"] if any(t is not None for t in texts["histogram"]) else None
        arrays["extra"] = texts["extra"] if any(t is not None for t in texts["extra"]) else None
    return Columns(**arrays)
