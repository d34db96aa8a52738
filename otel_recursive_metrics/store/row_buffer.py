"""A version 1-3 store's ``points`` rows as per-series chunks: pages of rows into NumPy columns, buffered per series.

:mod:`.migrate` reads ``points`` in id order, :data:`PAGE_ROWS` rows a statement
(:func:`pages`); :func:`page_parts` turns a page into NumPy columns (no Python code per
point: the per-point tests run as C callables inside ``np.fromiter``) split by series, and a
:class:`SeriesBuffer` keeps them until a series holds :data:`SERIES_POINTS` points or the whole
buffer passes :data:`BUFFER_BYTES`; then :meth:`SeriesBuffer.pop` makes the due series'
:class:`~otel_recursive_metrics.model.chunk.SeriesChunk` objects.

A part's fixed cost (its arrays, about 1.5 KB) counts in the bound, and a series' parts are
joined once it has eight, so a store of thousands of series stays bounded too; its chunks are
shorter then (10,000 series interleaved: about 35 points a chunk within the 64 MB).

A row's value is an integer, a float or NULL (no value, a histogram's; or NaN, which SQLite
stores as NULL). A buffered value is an int64, holding a float's bits where the point is a
float, so a point costs 52 bytes in the buffer. A series whose values mix integers and floats
becomes a chunk per kind; a point without a value goes with the floats if its series has any,
else with the integers, and is marked ``value_missing``. Every point keeps its row id.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import SeriesKey

__all__ = ["BUFFER_BYTES", "PAGE_ROWS", "SERIES_POINTS", "SeriesBuffer", "page_parts", "pages", "runs"]

#: A series is written as a chunk once this many of its points are buffered.
SERIES_POINTS = 1 << 16
#: Every buffered series is written once the buffer holds about this many bytes.
BUFFER_BYTES = 64 << 20
#: Rows read per statement at most (their Python tuples are what a page costs while it is read)...
PAGE_ROWS = 1 << 15
#: ... and about this many bytes: pages of long texts (histograms) have fewer rows.
PAGE_BYTES = 16 << 20
_ROW_TUPLE_BYTES = 250
_FIRST_PAGE_ROWS = 1024
_TEXT_COLUMNS = (operator.itemgetter(10), operator.itemgetter(11))  # histogram, extra in _SELECT_PAGE
_SELECT_PAGE = (
    "SELECT id, metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value, step, epoch,"
    " histogram, extra FROM main.points WHERE id > ? ORDER BY id LIMIT ?"
)
_NUMBERS = ("row_id", "start_time_unix_nano", "time_unix_nano", "step", "epoch", "value")
_MASKS = ("step_missing", "epoch_missing", "value_missing", "is_float")
# What a buffered point costs: six int64 columns and four masks, plus a text's object.
_POINT_BYTES = 8 * len(_NUMBERS) + len(_MASKS)
_TEXT_OBJECT_BYTES = 56
# What a part costs apart from its points: ten small arrays, their dict, the part itself. A store
# of thousands of series gives parts of a few points each, where this is most of the buffer.
_PART_BYTES = 1_500
#: A series' parts are joined into one when it has this many (its buffer's overhead stays small).
_JOIN_PARTS = 8


def pages(conn: sqlite3.Connection) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``points`` in id order, a page at a time, as :func:`page_parts` takes them.

    A page is :data:`PAGE_ROWS` rows, or fewer where the last page's texts made it larger than
    :data:`PAGE_BYTES` (the first page is small: its rows say how long they are).
    """
    after, limit = 0, min(PAGE_ROWS, _FIRST_PAGE_ROWS)
    while True:
        rows = conn.execute(_SELECT_PAGE, (after, limit)).fetchall()
        if not rows:
            return
        after = int(rows[-1][0])
        text_bytes = sum(sum(map(len, filter(None, map(column, rows)))) for column in _TEXT_COLUMNS)
        limit = min(PAGE_ROWS, max(256, PAGE_BYTES * len(rows) // (len(rows) * _ROW_TUPLE_BYTES + text_bytes)))
        yield rows


@dataclass
class _Part:
    """Points of one series from one page: NumPy columns (``value`` holds a float's bits where ``is_float``)."""

    columns: dict[str, np.ndarray]
    histogram: list[str | None] | None
    extra: list[str | None] | None
    nbytes: int = 0

    def __post_init__(self) -> None:
        texts = [t for column in (self.histogram, self.extra) if column is not None for t in filter(None, column)]
        self.nbytes = _PART_BYTES + len(self) * _POINT_BYTES + sum(map(len, texts)) + len(texts) * _TEXT_OBJECT_BYTES

    def __len__(self) -> int:
        return len(self.columns["row_id"])


# Per-point tests run as C callables inside np.fromiter: no Python code per point.
_IS_NONE, _IS_FLOAT = type(None).__instancecheck__, float.__instancecheck__


def _mask(test: Callable[[Any], bool], column: Sequence[Any]) -> np.ndarray:
    return np.fromiter(map(test, column), bool, len(column))


def _optional(column: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Integers that may be NULL: the numbers (0 where NULL) and where they are NULL."""
    if None not in column:
        return np.array(column, dtype=np.int64), np.zeros(len(column), bool)
    missing = _mask(_IS_NONE, column)
    if missing.all():
        return np.zeros(len(column), np.int64), missing
    objects = np.array(column, dtype=object)
    objects[missing] = 0
    return objects.astype(np.int64), missing


def _values(column: Sequence[Any], row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The value column as int64 (a float's bits where it is one), where it is a float, and where it is NULL."""
    n = len(column)
    kinds = set(map(type, column))
    if not kinds <= {int, float, type(None)}:
        bad = next(i for i, v in enumerate(column) if type(v) not in (int, float, type(None)))
        raise ValueError(
            f"points row id {int(row_ids[bad])}: value {column[bad]!r} ({type(column[bad]).__name__}) is not a number;"
            " a store of an earlier version holds integers, floats or NULL there"
        )
    if kinds == {float}:
        return np.array(column, dtype=np.float64).view(np.int64), np.ones(n, bool), np.zeros(n, bool)
    if kinds == {int}:
        return np.array(column, dtype=np.int64), np.zeros(n, bool), np.zeros(n, bool)
    missing = _mask(_IS_NONE, column) if type(None) in kinds else np.zeros(n, bool)
    is_float = _mask(_IS_FLOAT, column) if float in kinds else np.zeros(n, bool)
    is_int = ~(is_float | missing)
    objects = np.array(column, dtype=object)
    bits = np.zeros(n, np.int64)
    if is_float.any():
        bits[is_float] = objects[is_float].astype(np.float64).view(np.int64)
    if is_int.any():
        bits[is_int] = objects[is_int].astype(np.int64)
    return bits, is_float, missing


def _texts(column: Sequence[str | None]) -> list[str | None] | None:
    return None if column.count(None) == len(column) else list(column)


def page_parts(rows: list[tuple[Any, ...]]) -> Iterator[tuple[SeriesKey, _Part]]:
    """A page of ``points`` rows as one part per series, points in id order within each."""
    (row_ids, metric_ids, resource_ids, scope_ids, attributes_ids, starts, times, values, steps, epochs, histograms, extras) = zip(
        *rows, strict=True
    )
    ids = np.array(row_ids, dtype=np.int64)
    columns: dict[str, np.ndarray] = {"row_id": ids}
    columns["start_time_unix_nano"] = np.array(starts, dtype=np.int64)
    columns["time_unix_nano"] = np.array(times, dtype=np.int64)
    columns["step"], columns["step_missing"] = _optional(steps)
    columns["epoch"], columns["epoch_missing"] = _optional(epochs)
    columns["value"], columns["is_float"], columns["value_missing"] = _values(values, ids)
    histogram, extra = _texts(histograms), _texts(extras)
    keys = [np.array(k, dtype=np.int64) for k in (metric_ids, resource_ids, scope_ids, attributes_ids)]
    order = np.lexsort(keys[::-1])  # stable: id order within a series
    sorted_keys = np.stack([k[order] for k in keys])
    bounds = [0, *(np.flatnonzero(np.any(sorted_keys[:, 1:] != sorted_keys[:, :-1], axis=0)) + 1).tolist(), len(ids)]
    for lo, hi in itertools.pairwise(bounds):
        index = order[lo:hi]
        taken = index.tolist() if histogram is not None or extra is not None else []
        yield (
            SeriesKey(*(int(k[lo]) for k in sorted_keys)),
            _Part(
                {name: column[index] for name, column in columns.items()},
                None if histogram is None else [histogram[i] for i in taken],
                None if extra is None else [extra[i] for i in taken],
            ),
        )


def _joined(parts: list[_Part]) -> _Part:
    """One part of a series' parts, in their order."""
    if len(parts) == 1:
        return parts[0]
    columns = {name: np.concatenate([p.columns[name] for p in parts]) for name in parts[0].columns}
    texts: dict[str, list[str | None] | None] = {}
    for name in ("histogram", "extra"):
        if any(getattr(p, name) is not None for p in parts):
            texts[name] = [t for p in parts for t in (getattr(p, name) or [None] * len(p))]
        else:
            texts[name] = None
    return _Part(columns, texts["histogram"], texts["extra"])


def _chunks(part: _Part) -> list[SeriesChunk]:
    """One series' buffered points as chunks: one per value kind (points without a value go with the floats, if any)."""
    columns = part.columns
    texts = {"histogram": part.histogram, "extra": part.extra}
    is_float, missing = columns["is_float"], columns["value_missing"]
    floats = (is_float | missing) if is_float.any() else np.zeros(len(is_float), bool)
    if not floats.any():
        return [_chunk(columns, texts, np.int64)]
    if floats.all():
        return [_chunk(columns, texts, np.float64)]
    chunks = []
    for rows, dtype in ((~floats, np.int64), (floats, np.float64)):
        index = np.flatnonzero(rows)
        taken = index.tolist()
        picked = {name: None if column is None else [column[i] for i in taken] for name, column in texts.items()}
        chunks.append(_chunk({name: column[index] for name, column in columns.items()}, picked, dtype))
    return chunks


def _chunk(columns: dict[str, np.ndarray], texts: dict[str, list[str | None] | None], dtype: type) -> SeriesChunk:
    """A chunk of buffered columns whose values are all of ``dtype`` (int64, or float64 kept as its bits)."""
    return SeriesChunk(
        columns["time_unix_nano"],
        columns["value"].view(dtype),
        start_time_unix_nano=columns["start_time_unix_nano"],
        step=columns["step"],
        step_missing=columns["step_missing"],
        epoch=columns["epoch"],
        epoch_missing=columns["epoch_missing"],
        value_missing=columns["value_missing"],
        row_id=columns["row_id"],
        histogram=texts["histogram"],
        extra=texts["extra"],
    )


class SeriesBuffer:
    """Parts buffered per series, and which series are due to be written."""

    def __init__(self) -> None:
        self._parts: dict[SeriesKey, list[_Part]] = {}
        self._points: dict[SeriesKey, int] = {}
        self.nbytes = 0

    def add(self, key: SeriesKey, part: _Part) -> None:
        parts = self._parts.setdefault(key, [])
        parts.append(part)
        self._points[key] = self._points.get(key, 0) + len(part)
        self.nbytes += part.nbytes
        if len(parts) >= _JOIN_PARTS:
            joined = _joined(parts)
            self.nbytes += joined.nbytes - sum(p.nbytes for p in parts)
            parts[:] = [joined]

    def due(self, *, everything: bool = False) -> list[SeriesKey]:
        """The series to write now: full ones, or every one if the buffer is past its bound (or ``everything``)."""
        if everything or self.nbytes > BUFFER_BYTES:
            return list(self._parts)
        return [key for key, n in self._points.items() if n >= SERIES_POINTS]

    def row_ids(self, keys: Sequence[SeriesKey]) -> np.ndarray:
        return np.concatenate([p.columns["row_id"] for key in keys for p in self._parts[key]])

    def pop(self, keys: Sequence[SeriesKey]) -> Iterator[tuple[SeriesKey, SeriesChunk]]:
        """The chunks of ``keys``, each series' buffer freed as it is encoded."""
        for key in keys:
            parts = self._parts.pop(key)
            del self._points[key]
            self.nbytes -= sum(p.nbytes for p in parts)
            for chunk in _chunks(_joined(parts)):
                yield key, chunk


def runs(row_ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ``row_ids`` as runs of consecutive ids ``(first, last)``."""
    breaks = np.flatnonzero(np.diff(row_ids) != 1)
    firsts = row_ids[np.concatenate(([0], breaks + 1))]
    lasts = row_ids[np.concatenate((breaks, [len(row_ids) - 1]))]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))
