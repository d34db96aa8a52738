"""The head: a batch's small series as rows, until enough of them make chunks worth their cost.

See :mod:`.chunk_index` for why (a chunk's fixed costs) and the table. :class:`HeadPart` is the
part of one batch bound for the head: its points as flat columns, sorted by series, and the
series' segments; :func:`head_rows` turns it into rows for one ``executemany``. The identity
check of :mod:`.chunk_write` reads the head's stored points of a series through
:func:`stored_head_chunks`, and :func:`head_chunks` reads rows back as chunks for :mod:`.scan` and
for :func:`~.compaction.move_head`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import SeriesKey

__all__ = [
    "HEAD_COLUMNS",
    "HEAD_ORDER",
    "HEAD_TABLE",
    "HeadPart",
    "as_chunks",
    "chunk_of_rows",
    "head_chunks",
    "head_rows",
    "rows_of_chunk",
    "stored_head_chunks",
]

#: The head's table and columns, for :func:`~.chunk_index.insert_rows`.
HEAD_TABLE = (
    "head_points(id, metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value,"
    " step, epoch, histogram, extra)"
)
HEAD_COLUMNS = (
    "id, metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra"
)

#: Head rows in the order :func:`as_chunks` needs: by series, then as written.
HEAD_ORDER = " ORDER BY metric_id, resource_id, scope_id, attributes_id, id"


@dataclass
class HeadPart:
    """The points of a batch bound for the head: one list per field, grouped by series (segments)."""

    keys: list[SeriesKey]  # per segment
    bounds: list[int]  # segment i is rows bounds[i]:bounds[i + 1]
    min_time: list[int]  # per segment
    max_time: list[int]
    increasing: list[bool]  # per segment: times strictly increase (no identity can repeat within it)
    start: list[int]
    time: list[int]
    value: list[Any]  # int, float or None
    step: list[int | None]
    epoch: list[int | None]
    histogram: list[str | None] | None
    extra: list[str | None] | None

    def segment_chunks(self, index: int) -> list[SeriesChunk]:
        """Segment ``index`` as chunks, one per value kind (for the identity check of a series that overlaps the store)."""
        lo, hi = self.bounds[index], self.bounds[index + 1]
        rows = head_rows(self, [index], 0)
        assert len(rows) == hi - lo
        return [chunk for _, chunk in as_chunks(rows)]


def chunk_of_rows(
    start: Sequence[int],
    time: Sequence[int],
    value: Sequence[Any],
    step: Sequence[int | None],
    epoch: Sequence[int | None],
    histogram: Sequence[str | None] | None,
    extra: Sequence[str | None] | None,
    row_id: Sequence[int] | None = None,
) -> SeriesChunk:
    """One series' row fields as a chunk: None values and steps become masks; integers stay exact."""
    missing = [v is None for v in value]
    numbers = [0 if v is None else v for v in value]
    integer = all(type(v) is not float for v in numbers)
    return SeriesChunk(
        np.array(time, dtype=np.int64),
        np.array(numbers, dtype=np.int64 if integer else np.float64),
        start_time_unix_nano=np.array(start, dtype=np.int64),
        step=np.array([0 if s is None else s for s in step], dtype=np.int64),
        step_missing=np.array([s is None for s in step], dtype=bool),
        epoch=np.array([0 if e is None else e for e in epoch], dtype=np.int64),
        epoch_missing=np.array([e is None for e in epoch], dtype=bool),
        value_missing=np.array(missing, dtype=bool) if any(missing) else None,
        row_id=None if row_id is None else np.array(row_id, dtype=np.int64),
        histogram=histogram,
        extra=extra,
    )


def rows_of_chunk(key: SeriesKey, chunk: SeriesChunk, first_row_id: int) -> list[tuple[Any, ...]]:
    """A chunk's points as head rows, numbered from ``first_row_id``."""
    values: list[Any] = chunk.value.tolist()
    missing = chunk.value_missing.tolist()
    steps = [None if m else s for s, m in zip(chunk.step.tolist(), chunk.step_missing.tolist(), strict=True)]
    epochs = [None if m else e for e, m in zip(chunk.epoch.tolist(), chunk.epoch_missing.tolist(), strict=True)]
    n = len(chunk)
    return list(
        zip(
            range(first_row_id, first_row_id + n),
            [key.metric_id] * n,
            [key.resource_id] * n,
            [key.scope_id] * n,
            [key.attributes_id] * n,
            chunk.start_time_unix_nano.tolist(),
            chunk.time_unix_nano.tolist(),
            [None if m else v for v, m in zip(values, missing, strict=True)],
            steps,
            epochs,
            chunk.histogram or [None] * n,
            chunk.extra or [None] * n,
            strict=True,
        )
    )


def head_rows(part: HeadPart, segments: Sequence[int], first_row_id: int) -> list[tuple[Any, ...]]:
    """The rows of ``segments`` of ``part``, numbered from ``first_row_id`` in their order.

    Built column by column over every point at once (a batch of 1,000 one-point series is one
    ``zip``, not a thousand).
    """
    if not segments:
        return []
    every = len(segments) == len(part.keys)
    if every:
        picked = None
        lengths = np.diff(part.bounds)
        keys = part.keys
    else:
        lengths = np.array([part.bounds[i + 1] - part.bounds[i] for i in segments], dtype=np.int64)
        picked = np.concatenate([np.arange(part.bounds[i], part.bounds[i + 1]) for i in segments]).tolist()
        keys = [part.keys[i] for i in segments]
    n = int(lengths.sum())
    key_columns = np.repeat(np.array(keys, dtype=np.int64).reshape(-1, 4), lengths, axis=0).T.tolist()

    def column(values: Sequence[Any] | None) -> Sequence[Any]:
        if values is None:
            return [None] * n
        return values if picked is None else [values[i] for i in picked]

    return list(
        zip(
            range(first_row_id, first_row_id + n),
            *key_columns,
            column(part.start),
            column(part.time),
            column(part.value),
            column(part.step),
            column(part.epoch),
            column(part.histogram),
            column(part.extra),
            strict=True,
        )
    )


def as_chunks(rows: Sequence[Sequence[Any]]) -> Iterator[tuple[SeriesKey, SeriesChunk]]:
    """Head rows (in :data:`HEAD_COLUMNS` order, sorted by series then id) as chunks: one per series and value kind."""
    lo = 0
    while lo < len(rows):
        key = SeriesKey(*rows[lo][1:5])
        hi = lo
        while hi < len(rows) and tuple(rows[hi][1:5]) == key:
            hi += 1
        series = rows[lo:hi]
        floats = [row for row in series if type(row[7]) is float]
        kinds = [series] if len(floats) in (0, len(series)) else [floats, [row for row in series if type(row[7]) is not float]]
        for part in kinds:
            columns = list(zip(*part, strict=True))
            histogram = list(columns[10]) if any(columns[10]) else None
            extra = list(columns[11]) if any(columns[11]) else None
            yield key, chunk_of_rows(columns[5], columns[6], columns[7], columns[8], columns[9], histogram, extra, row_id=columns[0])
        lo = hi


def head_chunks(conn: Any, where: str = "", params: Sequence[Any] = ()) -> Iterator[tuple[SeriesKey, SeriesChunk]]:
    """The head's rows matching ``where`` (SQL over ``head_points``) as chunks: one per series and value kind.

    ``conn`` is a connection or anything with ``execute``; points keep their order (row id).
    """
    rows = conn.execute(f"SELECT {HEAD_COLUMNS} FROM head_points{where}{HEAD_ORDER}", params).fetchall()
    yield from as_chunks(rows)


def stored_head_chunks(conn: sqlite3.Connection, key: SeriesKey, min_time: int, max_time: int) -> list[SeriesChunk]:
    """The head's stored points of one series between two times, as chunks."""
    where = " WHERE metric_id = ? AND resource_id = ? AND scope_id = ? AND attributes_id = ? AND time_unix_nano BETWEEN ? AND ?"
    return [chunk for _, chunk in head_chunks(conn, where, (*key, min_time, max_time))]
