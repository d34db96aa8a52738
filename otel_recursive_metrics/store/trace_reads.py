"""A metric's points read from chunks as traces: per resource and attribute set, NumPy columns in time order.

The chart readers (:mod:`.series`, :mod:`.first_load`, :mod:`.distributions`) read in two steps
where they can skip chunks: :func:`index_rows` reads the chunk index alone (no chunk data), the
reader decides which chunks it needs, and :func:`fetch` decodes just those (the points outside
the :class:`~.scan.Scan` masked off). Two statements see two states of the store: if a writer
compacted some of the chosen chunks in between (their points moved to a new chunk, the old ones
deleted), :func:`fetch` says so (None) and the reader plans again (:func:`read_planned`), until
it gives up and reads through :func:`~.scan.iter_chunks`, which always succeeds. :func:`collect`
joins the chunks of each trace into one :class:`TracePoints`.

Thread safety: nothing here holds state; use it from any thread that may use the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .downsample import drawn_values
from .scan import Reader, Scan, iter_chunks

__all__ = [
    "IDS_PER_STATEMENT",
    "PLAN_ATTEMPTS",
    "Store",
    "TraceKey",
    "TracePoints",
    "collect",
    "fetch",
    "index_rows",
    "read_planned",
    "trace_key",
]

#: Chunk or attribute-set ids named in one statement.
IDS_PER_STATEMENT = 500
#: Times a read plans again when a writer compacted its chunks between the index and the data.
PLAN_ATTEMPTS = 3

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
            histogram=_texts(chunk.histogram, len(chunk)) if histograms else None,
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


def _texts(texts: Sequence[str | None] | None, count: int) -> list[str | None]:
    """A chunk's text column as a list (a chunk may hold None for a column no point has)."""
    return [None] * count if texts is None else list(texts)


def index_rows(store: Store, scan: Scan) -> list[ChunkRow]:
    """The index rows of the chunks that can hold points of ``scan``, in the order written."""
    where, params = scan.index_sql()
    return [ChunkRow(*row) for row in store.read(f"SELECT {CHUNK_COLUMNS} FROM chunks c{where} ORDER BY c.first_row_id", params)]


def fetch(store: Store, rows: Sequence[ChunkRow], scan: Scan) -> list[tuple[ChunkRow, SeriesChunk]] | None:
    """``rows``' points that ``scan`` keeps, chunk by chunk; None if a chunk is gone (compacted
    since the index was read: read the index again).

    A stored chunk (``level`` 0 or more) is read from ``chunk_data`` by its id. A row of the
    head (``level`` -1, points not yet in a chunk, where the store has one) is read through
    :func:`~.scan.iter_chunks`, from the series' first head row id on: if the head was moved
    into chunks meanwhile, its points come from those chunks (row ids seen twice are dropped).
    """
    unique = sorted({row.id: row for row in rows}.values(), key=lambda r: r.first_row_id)
    stored = [row for row in unique if row.level >= 0]
    data: dict[int, bytes] = {}
    for start in range(0, len(stored), IDS_PER_STATEMENT):
        part = ",".join(str(row.id) for row in stored[start : start + IDS_PER_STATEMENT])  # the store's own integers
        data.update((chunk_id, blob) for chunk_id, blob in store.read(f"SELECT chunk_id, data FROM chunk_data WHERE chunk_id IN ({part})"))
    if len(data) < len(stored):
        return None
    out: list[tuple[ChunkRow, SeriesChunk]] = []
    for row in stored:
        chunk = _masked(SeriesChunk.decode(data[row.id]), scan)
        if chunk is not None:
            out.append((row, chunk))
    head = [row for row in unique if row.level < 0]
    if head:
        out += _head(store, head, scan, seen=[chunk.row_id for _, chunk in out])
    return out


def read_planned(store: Store, plan: Callable[[], Sequence[ChunkRow]], scan: Scan) -> list[tuple[ChunkRow, SeriesChunk]]:
    """:func:`fetch` of the chunks ``plan()`` picks from the index, planned again while a writer
    compacts them away under it (up to :data:`PLAN_ATTEMPTS` times); then every chunk ``scan``
    names, through :func:`~.scan.iter_chunks`."""
    for _ in range(PLAN_ATTEMPTS):
        pairs = fetch(store, plan(), scan)
        if pairs is not None:
            return pairs
    return list(iter_chunks(store, scan))


def _head(store: Store, head: Sequence[ChunkRow], scan: Scan, *, seen: list[np.ndarray]) -> list[tuple[ChunkRow, SeriesChunk]]:
    """The points of the head's series ``head`` that ``scan`` keeps, none of the row ids ``seen``."""
    first = {row.series: row.first_row_id for row in head}
    narrow = replace(
        scan,
        metric_ids=sorted({row.metric_id for row in head}),
        resource_ids=sorted({row.resource_id for row in head}),
        attributes_ids=sorted({row.attributes_id for row in head}),
        after_row_id=max(min(first.values()) - 1, -1 if scan.after_row_id is None else scan.after_row_id),
    )
    known = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    out: list[tuple[ChunkRow, SeriesChunk]] = []
    for row, chunk in iter_chunks(store, narrow):
        if row.series not in first:
            continue
        # From the series' first head row on (a chunk a reader set aside ends before it), each
        # point once: a head moved into chunks since the index was read shows up here.
        keep = (chunk.row_id >= first[row.series]) & ~np.isin(chunk.row_id, known)
        if keep.any():
            out.append((row, chunk if keep.all() else chunk.take(keep)))
    return out


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
