"""A chart's first load: every trace of a scan up to a snapshot, cut to what a chart can show.

Each trace (a resource and attribute set) is read whole and, past ``max_points``, cut by
:func:`~.downsample.keep_extremes`: equal time buckets over its span, each keeping its lowest and
highest point, and the trace's first and last points.

A long trace (more than ``plan_above`` points, by the index) is first planned from the chunk
index: its buckets come from the index's time ranges, the chunks that lie inside one bucket are
set aside (:func:`~.downsample.split_whole`), the rest decoded, and of those set aside only the
ones holding a bucket's extreme (:func:`~.downsample.winners`) are decoded after. A writer may
compact chunks between these reads; the plan is then made again (up to
:data:`~.trace_reads.PLAN_ATTEMPTS` times), and at last everything is read in one statement.

Thread safety: nothing here holds state; use it from any thread that may use the store.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .chunk_index import ChunkRow
from .downsample import TimeBuckets, buckets_for, keep_extremes, split_whole, winners
from .scan import Scan, iter_chunks
from .trace_points import TraceParts, TracePoints
from .trace_reads import PLAN_ATTEMPTS, Store, TraceKey, collect, fetch, index_rows, trace_key

__all__ = ["first_load"]

_Plans = dict[TraceKey, tuple[TimeBuckets, int]]


def first_load(
    store: Store, scan: Scan, max_points: int, *, plan_above: int, exact: Callable[[ChunkRow], bool]
) -> dict[TraceKey, tuple[TracePoints, bool]]:
    """Per trace of ``scan`` (whose ``max_row_id`` is the snapshot): its points, at most
    ``max_points`` of them, and whether some were left out. ``exact``: whether a chunk's points
    are drawn at their stored values (then its index's min and max stand for it)."""
    for _ in range(PLAN_ATTEMPTS):
        planned = _planned_read(store, scan, max_points, plan_above, exact)
        if planned is not None:
            found, plans = planned
            break
    else:  # a writer kept compacting under the plan: everything, in one statement (one snapshot)
        found, plans = collect(iter_chunks(store, scan)), {}
    out: dict[TraceKey, tuple[TracePoints, bool]] = {}
    for key, parts in found.items():
        buckets, not_read = plans.get(key, (None, 0))
        if len(parts) + not_read <= max_points:
            out[key] = (parts.points(), False)
            continue
        times = parts.time_unix_nano
        if buckets is None:
            buckets = TimeBuckets.over(int(times[0]), int(times[-1]), buckets_for(max_points))
        out[key] = (parts.points(keep_extremes(times, parts.drawn, buckets)), True)
    return out


def _planned_read(
    store: Store, scan: Scan, max_points: int, plan_above: int, exact: Callable[[ChunkRow], bool]
) -> tuple[dict[TraceKey, TraceParts], _Plans] | None:
    """The traces' points, with long traces' chunks read as planned; per planned trace its buckets
    and how many of its points were not read. None if a chosen chunk was compacted away."""
    until_id = scan.max_row_id if scan.max_row_id is not None else np.iinfo(np.int64).max
    by_trace: dict[TraceKey, list[ChunkRow]] = {}
    for row in index_rows(store, scan):
        by_trace.setdefault(trace_key(row), []).append(row)
    decode: list[ChunkRow] = []
    aside: dict[TraceKey, tuple[TimeBuckets, list[ChunkRow]]] = {}
    for key, rows in by_trace.items():
        if sum(row.points for row in rows if row.last_row_id <= until_id) <= max(max_points, plan_above):
            decode += rows
            continue
        buckets = TimeBuckets.over(min(r.min_time for r in rows), max(r.max_time for r in rows), buckets_for(max_points))
        now, later = split_whole(rows, buckets, until_id=until_id, exact=exact)
        decode += now
        aside[key] = (buckets, later)
    pairs = fetch(store, decode, scan)
    if pairs is None:
        return None
    found = collect(pairs)
    more: list[ChunkRow] = []
    empty = np.zeros(0, np.int64)
    for key, (buckets, later) in aside.items():
        parts = found.get(key)
        if later:
            times = empty if parts is None else parts.time_unix_nano
            drawn = empty.astype(np.float64) if parts is None else parts.drawn
            more += winners(later, buckets, times, drawn)
    if more:
        extra = fetch(store, more, scan)
        if extra is None:
            return None
        grown = {trace_key(row) for row, _ in extra}
        found.update(collect(pair for pair in pairs + extra if trace_key(pair[0]) in grown))
    read = {row.id for row in more}
    return found, {key: (buckets, sum(row.points for row in later if row.id not in read)) for key, (buckets, later) in aside.items()}
