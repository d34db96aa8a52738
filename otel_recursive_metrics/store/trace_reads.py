"""A metric's points read from chunks as traces: per resource and attribute set, NumPy columns in time order.

The chart readers (:mod:`.series`, :mod:`.first_load`, :mod:`.distributions`) read in two steps
where they can skip chunks: :func:`index_rows` reads the chunk index alone (no chunk data), the
reader decides which chunks it needs, and :func:`fetch` decodes just those (the points outside
the :class:`~.scan.Scan` masked off). Two statements see two states of the store: if a writer
compacted some of the chosen chunks in between (their points moved to a new chunk, the old ones
deleted), :func:`fetch` says so (None) and the reader plans again (:func:`read_planned`), until
it gives up and reads through :func:`~.scan.iter_chunks`, which always succeeds. :func:`collect`
joins the chunks of each trace into one :class:`~.trace_points.TraceParts`.

Thread safety: nothing here holds state; use it from any thread that may use the store. A large
read decodes on a few threads of its own, all joined before it returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .scan import Reader, Scan, iter_chunks
from .trace_points import TraceParts, TracePoints

__all__ = [
    "DECODERS",
    "IDS_PER_STATEMENT",
    "PARALLEL_BYTES",
    "PLAN_ATTEMPTS",
    "Store",
    "TraceKey",
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
#: Threads that decode one read's chunks, and the encoded bytes from which they are worth starting.
DECODERS = max(1, min(4, os.cpu_count() or 1))
PARALLEL_BYTES = 1 << 20

TraceKey = tuple[int, ...]


class Store(Reader, Protocol):
    """What a trace read needs of a store (:class:`~.point_store.PointStore`)."""

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def trace_key(row: ChunkRow) -> TraceKey:
    """A chart's trace: one resource (a run's rank) and attribute set, whatever the metric id or scope."""
    return (row.resource_id, row.attributes_id)


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
    out = [(row, chunk) for row, chunk in zip(stored, _decoded([data[row.id] for row in stored], scan), strict=True) if chunk is not None]
    head = [row for row in unique if row.level < 0]
    if head:
        out += _head(store, head, scan, seen=[chunk.row_id for _, chunk in out])
    return out


def _decoded(blobs: list[bytes], scan: Scan) -> list[SeriesChunk | None]:
    """Each chunk decoded and masked; on up to :data:`DECODERS` threads when there is much to decode
    (pcodec and NumPy let go of the GIL: two threads decode a 50-run chart's chunks in half the time)."""

    def one(blob: bytes) -> SeriesChunk | None:
        return _masked(SeriesChunk.decode(blob), scan)

    if DECODERS <= 1 or len(blobs) < 2 or sum(len(blob) for blob in blobs) < PARALLEL_BYTES:
        return [one(blob) for blob in blobs]
    with ThreadPoolExecutor(max_workers=min(DECODERS, len(blobs)), thread_name_prefix="otel-recursive-metrics-decode") as pool:
        return list(pool.map(one, blobs))


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
) -> dict[TraceKey, TraceParts]:
    """The points of ``pairs`` (from :func:`fetch` or :func:`~.scan.iter_chunks`) per trace (``key``),
    each in time order; with ``drawn`` each point's drawn value, with ``histograms`` its JSON text."""
    parts: dict[TraceKey, list[TracePoints]] = {}
    for row, chunk in pairs:
        parts.setdefault(key(row), []).append(TracePoints.of(chunk, drawn=drawn, histograms=histograms))
    return {trace: TraceParts(points) for trace, points in parts.items()}
