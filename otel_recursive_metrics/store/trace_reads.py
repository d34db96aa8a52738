"""A metric's points read from chunks as traces: per resource and attribute set, NumPy columns in time order.

The chart readers (:mod:`.series`, :mod:`.first_load`, :mod:`.distributions`) read in two steps
where they can skip chunks: :func:`index_rows` reads the chunk index alone (no chunk data), the
reader decides which chunks it needs, and :func:`fetch` decodes just those (the points outside
the :class:`~.scan.Scan` masked off). Two statements see two states of the store: if a writer
compacted some of the chosen chunks in between (their points moved to a new chunk, the old ones
deleted), :func:`fetch` says so (None) and the reader plans again; :func:`~.scan.iter_chunks` and
:func:`decoded` (one statement, one snapshot) always succeed. :func:`collect` joins the chunks of
each trace into one :class:`TracePoints`.

Thread safety: nothing here holds state; use it from any thread that may use the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .downsample import drawn_values
from .scan import Reader, Scan

__all__ = ["IDS_PER_STATEMENT", "Store", "TraceKey", "TracePoints", "collect", "decoded", "fetch", "index_rows", "trace_key"]

#: Chunk or attribute-set ids named in one statement.
IDS_PER_STATEMENT = 500

TraceKey = tuple[int, ...]


class Store(Reader, Protocol):
    """What a trace read needs of a store (:class:`~.point_store.PointStore`)."""

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def trace_key(row: ChunkRow) -> TraceKey:
    """A chart's trace: one resource (a run's rank) and attribute set, whatever the metric id or scope."""
    return (row.resource_id, row.attributes_id)


@dataclass(frozen=True)
class TracePoints:
    """Points of one trace, one array per field.

    ``drawn`` is the number each point is drawn at (:func:`~.downsample.drawn_values`; NaN for
    a gap), or None where not asked for; ``int_value`` holds the exact integer of the points
    whose ``is_int`` is set. ``histogram`` is the points' JSON texts, where asked for.
    """

    row_id: np.ndarray
    time_unix_nano: np.ndarray
    start_time_unix_nano: np.ndarray
    step: np.ndarray
    step_missing: np.ndarray
    drawn: np.ndarray | None
    int_value: np.ndarray
    is_int: np.ndarray
    histogram: list[str | None] | None = None

    @classmethod
    def of(cls, chunk: SeriesChunk, *, drawn: bool = True, histograms: bool = False) -> TracePoints:
        """``chunk``'s points, in its order."""
        integer = chunk.value.dtype.kind == "i"
        return cls(
            row_id=chunk.row_id,
            time_unix_nano=chunk.time_unix_nano,
            start_time_unix_nano=chunk.start_time_unix_nano,
            step=chunk.step,
            step_missing=chunk.step_missing,
            drawn=drawn_values(chunk) if drawn else None,
            int_value=chunk.value if integer else np.zeros(len(chunk), np.int64),
            is_int=~chunk.value_missing if integer else np.zeros(len(chunk), bool),
            histogram=list(chunk.histogram) if histograms else None,
        )

    @classmethod
    def join(cls, parts: Sequence[TracePoints]) -> TracePoints:
        """The points of ``parts`` one after the other."""
        if len(parts) == 1:
            return parts[0]
        out: dict[str, Any] = {}
        for f in fields(cls):
            columns = [getattr(part, f.name) for part in parts]
            if columns[0] is None:
                out[f.name] = None
            elif isinstance(columns[0], np.ndarray):
                out[f.name] = np.concatenate(columns)
            else:
                out[f.name] = [text for column in columns for text in column]
        return cls(**out)

    def __len__(self) -> int:
        return len(self.row_id)

    def take(self, positions: np.ndarray) -> TracePoints:
        """The points at ``positions`` (indices), in that order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, np.ndarray):
                out[f.name] = column[positions]
            elif column is not None:
                out[f.name] = [column[i] for i in positions.tolist()]
            else:
                out[f.name] = None
        return TracePoints(**out)

    def cut(self, positions: np.ndarray) -> tuple[TracePoints, bool]:
        """The points at ``positions``, and whether any was left out."""
        return (self, False) if len(positions) == len(self) else (self.take(positions), True)

    def in_time_order(self) -> TracePoints:
        """The points by time, then step (points without one first), then as written."""
        time = self.time_unix_nano
        if len(time) < 2 or bool((time[1:] > time[:-1]).all()):
            return self  # the usual case: written in time order, no two points at one time
        step = np.where(self.step_missing, np.iinfo(np.int64).min, self.step)
        return self.take(np.lexsort((self.row_id, step, time)))

    def steps(self) -> list[int | None]:
        """Each point's step, None where it has none."""
        return [None if missing else step for step, missing in zip(self.step.tolist(), self.step_missing.tolist(), strict=True)]

    def drawn_values(self) -> np.ndarray:
        """``drawn``, which must have been read (``collect(..., drawn=True)``)."""
        if self.drawn is None:
            raise ValueError("TracePoints.drawn: not read (collect(..., drawn=True) reads it)")
        return self.drawn

    def values(self) -> list[float | int | None]:
        """Each point's drawn value as Python gives it: an int where stored as one, a float, or None (a gap)."""
        out: list[Any] = [None if math.isnan(v) else v for v in self.drawn_values().tolist()]
        for i in np.flatnonzero(self.is_int).tolist():
            out[i] = int(self.int_value[i])
        return out


def index_rows(store: Store, scan: Scan) -> list[ChunkRow]:
    """The index rows of the chunks that can hold points of ``scan``, in the order written."""
    where, params = scan.index_sql()
    return [ChunkRow(*row) for row in store.read(f"SELECT {CHUNK_COLUMNS} FROM chunks c{where} ORDER BY c.first_row_id", params)]


def fetch(store: Store, rows: Sequence[ChunkRow], scan: Scan) -> list[tuple[ChunkRow, SeriesChunk]] | None:
    """``rows``' chunks decoded, the points outside ``scan`` dropped, in the order written; None
    if any of them is gone (compacted since the index was read)."""
    unique = sorted({row.id: row for row in rows}.values(), key=lambda r: r.first_row_id)
    ids = sorted(row.id for row in unique)
    data: dict[int, bytes] = {}
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        part = ",".join(map(str, ids[start : start + IDS_PER_STATEMENT]))  # the store's own integers
        data.update((chunk_id, blob) for chunk_id, blob in store.read(f"SELECT chunk_id, data FROM chunk_data WHERE chunk_id IN ({part})"))
    if len(data) < len(ids):
        return None
    out: list[tuple[ChunkRow, SeriesChunk]] = []
    for row in unique:
        chunk = _masked(SeriesChunk.decode(data[row.id]), scan)
        if chunk is not None:
            out.append((row, chunk))
    return out


def decoded(store: Store, join: str, params: Sequence[Any] = ()) -> Iterator[tuple[ChunkRow, SeriesChunk]]:
    """The chunks ``join`` (SQL after ``FROM chunks c JOIN chunk_data d ...``: more joins, a WHERE
    on ``c``) selects, decoded, in the order written: one statement, so one state of the store."""
    sql = f"SELECT {CHUNK_COLUMNS}, d.data FROM chunks c JOIN chunk_data d ON d.chunk_id = c.id {join} ORDER BY c.first_row_id"
    for rows in store.read_chunks(sql, params, size=64):
        for row in rows:
            yield ChunkRow(*row[:-1]), SeriesChunk.decode(row[-1])


def _masked(chunk: SeriesChunk, scan: Scan) -> SeriesChunk | None:
    keep = scan.mask(chunk)
    if keep is None or keep.all():
        return chunk
    return chunk.take(keep) if keep.any() else None


def collect(
    pairs: Iterable[tuple[ChunkRow, SeriesChunk]],
    *,
    key: Callable[[ChunkRow], TraceKey] = trace_key,
    drawn: bool = True,
    histograms: bool = False,
) -> dict[TraceKey, TracePoints]:
    """The points of ``pairs`` (from :func:`fetch` or :func:`~.scan.iter_chunks`) per trace (``key``),
    each in time order; with ``drawn`` each point's drawn value, with ``histograms`` its JSON text."""
    parts: dict[TraceKey, list[TracePoints]] = {}
    for row, chunk in pairs:
        parts.setdefault(key(row), []).append(TracePoints.of(chunk, drawn=drawn, histograms=histograms))
    return {trace: TracePoints.join(points).in_time_order() for trace, points in parts.items()}
