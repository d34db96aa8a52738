"""The latest point of a group of series, found through the chunk index, decoding only the chunks that can hold it.

"The last value of a metric in a run" is the point that sorts last among a few series' points:
by time, then step (a point without a step first), then row id, the order SQL gave with
``ORDER BY time_unix_nano, step, id``. The chunk index keeps each chunk's latest time
(``max_time``), so that point lies in a chunk whose ``max_time`` is the greatest of its group:

- :func:`latest_chunks` asks the index, per (metric, resource), for the chunks that reach its
  latest time (one lookup each in ``chunks_by_series``), reading no chunk data;
- :func:`latest_points` keeps, per group (a run and a metric name, say), those of its chunks that
  reach the group's latest time, decodes them (one per series as a rule) and picks the last point.

Nothing here holds state; safe from any thread that may use the store.

    >>> rows = latest_chunks(store, metric_ids=[3])
    >>> latest_points(store, {"loss": rows})["loss"].value
    0.25
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .scan import decode_rows

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["LatestPoint", "last_index", "latest_chunks", "latest_point", "latest_points", "point_value"]

#: Chunk ids (and so bound parameters) per statement.
_IDS_PER_STATEMENT = 500

_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True)
class LatestPoint:
    """One point, as a summary shows it: its series' metric and resource, its times, step and value."""

    metric_id: int
    resource_id: int
    time_unix_nano: int
    step: int | None
    row_id: int
    #: As SQL gave it: an int for an integer series, else a float; None for no value (a histogram's) or NaN.
    value: float | int | None
    #: A histogram point's JSON text (``count``, ``sum``, ...), else None.
    histogram: str | None

    @property
    def order(self) -> tuple[int, int, int, int]:
        """The key it sorts by: time, then step (none first), then row id."""
        return (self.time_unix_nano, self.step is not None, self.step or 0, self.row_id)


def point_value(chunk: SeriesChunk, index: int) -> float | int | None:
    """The value of ``chunk``'s point ``index`` as SQLite kept it: int, float, or None (no value, or NaN)."""
    if chunk.value_missing[index]:
        return None
    value = chunk.value[index].item()
    return None if isinstance(value, float) and math.isnan(value) else value  # SQLite kept NaN as NULL


def last_index(chunk: SeriesChunk, keep: np.ndarray | None = None) -> int | None:
    """The position of ``chunk``'s point that sorts last (see the module docstring), among ``keep`` if given."""
    candidates = np.flatnonzero(keep) if keep is not None else np.arange(len(chunk))
    if not len(candidates):
        return None
    times = chunk.time_unix_nano[candidates]
    tied = candidates[times == times.max()]  # nearly always one point
    if len(tied) > 1:
        has_step = ~chunk.step_missing[tied]
        order = np.lexsort((chunk.row_id[tied], np.where(has_step, chunk.step[tied], 0), has_step))
        tied = tied[order]
    return int(tied[-1])


def latest_point(row: ChunkRow, chunk: SeriesChunk, index: int) -> LatestPoint:
    """``chunk``'s point ``index`` (of the series ``row`` indexes) as a :class:`LatestPoint`."""
    return LatestPoint(
        metric_id=row.metric_id,
        resource_id=row.resource_id,
        time_unix_nano=int(chunk.time_unix_nano[index]),
        step=None if chunk.step_missing[index] else int(chunk.step[index]),
        row_id=int(chunk.row_id[index]),
        value=point_value(chunk, index),
        histogram=None if chunk.histogram is None else chunk.histogram[index],
    )


def latest_chunks(store: PointStore, metric_ids: Sequence[int], resource_ids: Sequence[int] | None = None) -> list[ChunkRow]:
    """Per (metric, resource) of ``metric_ids`` (and ``resource_ids`` if given), the chunks that reach its latest time."""
    if not metric_ids or (resource_ids is not None and not resource_ids):
        return []
    where = f"c.metric_id IN ({','.join(str(int(i)) for i in sorted(set(metric_ids)))})"
    if resource_ids is not None:
        where += f" AND c.resource_id IN ({','.join(str(int(i)) for i in sorted(set(resource_ids)))})"
    # The subquery is one seek in chunks_by_series(metric_id, resource_id, max_time).
    sql = (
        f"SELECT {CHUNK_COLUMNS} FROM chunks c WHERE {where} AND c.max_time ="
        " (SELECT max(x.max_time) FROM chunks x WHERE x.metric_id = c.metric_id AND x.resource_id = c.resource_id)"
    )
    return [ChunkRow(*row) for row in store.read(sql)]


def latest_points(store: PointStore, groups: Mapping[_K, Sequence[ChunkRow]]) -> dict[_K, LatestPoint]:
    """Per group of chunk index rows, the point that sorts last among their chunks' points (groups without chunks left out)."""
    wanted: dict[_K, list[ChunkRow]] = {}
    for key, rows in groups.items():
        if rows:
            latest = max(row.max_time for row in rows)
            wanted[key] = [row for row in rows if row.max_time == latest]
    chunks = _decode(store, [row for rows in wanted.values() for row in rows])
    for key, group in wanted.items():
        if any(row.id not in chunks for row in group):
            wanted[key] = _replaced(store, group, chunks)
    out: dict[_K, LatestPoint] = {}
    for key, rows in wanted.items():
        best: LatestPoint | None = None
        for row in rows:
            chunk = chunks.get(row.id)
            if chunk is None:
                continue  # joined twice since the index was read: the next read finds it
            index = last_index(chunk)
            if index is not None:
                point = latest_point(row, chunk, index)
                if best is None or point.order > best.order:
                    best = point
        if best is not None:
            out[key] = best
    return out


def _replaced(store: PointStore, rows: Sequence[ChunkRow], chunks: dict[int, SeriesChunk]) -> list[ChunkRow]:
    """``rows`` with those whose chunk is gone (a writer joined it, or moved the head, since the
    index was read) replaced by the chunks of their series that now reach the same latest time;
    those are decoded into ``chunks``."""
    kept = [row for row in rows if row.id in chunks]
    found: list[ChunkRow] = []
    for row in rows:
        if row.id not in chunks:
            sql = (
                f"SELECT {CHUNK_COLUMNS} FROM chunks c WHERE c.metric_id = ? AND c.resource_id = ? AND c.scope_id = ?"
                " AND c.attributes_id = ? AND c.max_time = ?"
            )
            found += [ChunkRow(*r) for r in store.read(sql, (*row.series, row.max_time))]
    chunks.update(_decode(store, found))
    return kept + found


def _decode(store: PointStore, rows: Sequence[ChunkRow]) -> dict[int, SeriesChunk]:
    """The chunks of ``rows`` (head series included, see :func:`~.scan.decode_rows`), decoded, by id."""
    return {row.id: chunk for row, chunk in decode_rows(store, rows)}
