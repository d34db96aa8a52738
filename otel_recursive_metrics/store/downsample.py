"""Downsampling a trace to what a chart can show, keeping its spikes: min and max per bucket.

A chart ``W`` pixels wide shows at most about ``2 W`` points: a lowest and a highest per pixel
column. So a trace is cut into ``max_points // 2`` buckets and each bucket keeps its lowest and
its highest point (in their order; once if they are the same point). Unlike keeping every n-th
point, this never loses a spike, however short. Two ways, the same rule:

- :func:`min_max_buckets`, in Python, over rows already read (buckets of consecutive rows): a
  short trace, or a live update;
- :func:`bucketed_rows`, inside SQLite, for a long trace's first load: the trace's time span is
  cut into equal buckets, and one statement per extreme (and slice of the span) reads the
  trace's rows once, through the blocks whose time span meets the slice (see :mod:`.blocks`: a
  block is a row-id range of one series), groups them by bucket and returns the id of each
  bucket's lowest (highest) row; only those rows are then read. SQLite fills a bare column
  (``id``) from the row that gave the group's only ``min()`` or ``max()``.

Cost of the second: every row of the trace is visited twice inside SQLite (once a pass, min and
max), nothing is built in Python; a 1,000,000-point trace takes about 0.3 s on the 2-core machine
of ``benchmarks/bench_ui.py``. The passes run on up to ``READERS`` threads, each with its own
read-only connection: SQLite releases the GIL while it steps a statement, and WAL lets readers
run beside a writer. A trace nearly always has one attribute set; the min pass counts the rows
of any other set as it goes, and only when there are some is each set read apart.

Thread safety: the functions hold no state; each worker thread opens and closes its own store.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["DRAWN_VALUE", "READERS", "ROW_SELECT", "SERIES_ROWS", "bucketed_rows", "min_max_buckets", "value_sql"]

#: Threads (each a connection) a long trace's first load is spread over.
READERS = max(1, min(4, os.cpu_count() or 1))
PARALLEL_DEADLINE_S = 120.0
IDS_PER_STATEMENT = 500

_T = TypeVar("_T")
_R = TypeVar("_R")


def value_sql(histogram: bool) -> str:
    """The number a point is drawn at: its value, or a histogram's mean (sum / count).

    The sum is made REAL before dividing: SQLite divides two integers as integers, so a histogram
    of whole milliseconds (count 450, sum 38) would be drawn at 0 instead of 0.0844.
    """
    if histogram:
        return "CAST(json_extract(histogram, '$.sum') AS REAL) / nullif(json_extract(histogram, '$.count'), 0)"
    return "value"


#: The number any point is drawn at, whatever its metric's kind.
DRAWN_VALUE = f"coalesce(value, {value_sql(True)})"
#: A row as the series readers use it: id, resource, attribute set, step, time, drawn value.
ROW_SELECT = f"SELECT id, resource_id, attributes_id, step, time_unix_nano, {DRAWN_VALUE} FROM points"
#: The rows of one metric (?1) and resource (?2), through the blocks that hold them (see
#: :mod:`.blocks`), in the order they were written; add ``AND ...`` conditions on ``p``.
SERIES_ROWS = (
    f"SELECT p.id, p.resource_id, p.attributes_id, p.step, p.time_unix_nano, {DRAWN_VALUE}"
    " FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
    " WHERE b.metric_id = ?1 AND b.resource_id = ?2 AND p.metric_id = ?1 AND p.resource_id = ?2"
)


def min_max_buckets(rows: Sequence[Sequence[Any]], max_points: int, value_index: int) -> list[Sequence[Any]]:
    """At most ``max_points`` of ``rows`` (in their order): each of ``max_points // 2`` buckets of
    consecutive rows keeps its lowest and its highest value, in the order they came.

    A bucket with no value at all (every value ``None``) keeps its first row, so a gap stays a gap.
    """
    if len(rows) <= max_points:
        return list(rows)
    buckets = max(1, max_points // 2)
    size = math.ceil(len(rows) / buckets)
    kept: list[Sequence[Any]] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        low = high = -1
        for i, row in enumerate(chunk):
            value = row[value_index]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if low < 0 or value < chunk[low][value_index]:
                low = i
            if high < 0 or value > chunk[high][value_index]:
                high = i
        if low < 0:
            kept.append(chunk[0])
        else:
            kept.extend(chunk[i] for i in sorted({low, high}))
    return kept


def bucketed_rows(
    store: PointStore,
    metric_id: int,
    resource_id: int,
    until_id: int,
    max_points: int,
    *,
    histogram: bool,
    attribute_sets: Sequence[int],
) -> list[Sequence[Any]]:
    """The lowest and highest row (:data:`ROW_SELECT`) of each of ``max_points // 2`` equal time
    buckets of one metric and resource, ids up to ``until_id``, per attribute set.

    ``attribute_sets``: the sets seen in the first rows. With one, the buckets are read without
    filtering on it and the min pass counts rows of any other set; only if there are some (or
    the first rows showed several) is every set listed and read apart.
    """
    rows = store.read(
        "SELECT min(min_time), max(max_time) FROM blocks WHERE metric_id = ? AND resource_id = ? AND first_id <= ?",
        (metric_id, resource_id, until_id),
    )
    if not rows or rows[0][0] is None:
        return []
    first, last = int(rows[0][0]), int(rows[0][1])
    buckets = max(1, max_points // 2)
    width = max(1, -(-(last - first + 1) // buckets))
    distinct = (
        "SELECT DISTINCT p.attributes_id FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
        " WHERE b.metric_id = ?1 AND b.resource_id = ?2 AND p.metric_id = ?1 AND p.resource_id = ?2 AND p.id <= ?3"
    )
    # The span is read in a few slices of whole buckets, one statement each (a slice per reader).
    slice_buckets = -(-buckets // max(1, READERS // 2))
    slices = [(first + k * width, min(last + 1, first + (k + slice_buckets) * width)) for k in range(0, buckets, slice_buckets)]

    def statement(aggregate: str, only: bool) -> str:
        # ``only``: the rows of one attribute set (?6) alone. Otherwise the bucket's rows whatever
        # their set, and (in the min pass) a count of the rows of any set but ?6, which tells
        # whether the trace has one set (nearly always) for a tenth of what a scan for it costs.
        # One pass over the slice's rows (through the blocks whose time span meets it), grouped
        # by bucket: ?7 is the bucket width, counted from ?8, the trace's first time.
        where = " AND p.attributes_id = ?6" if only else ""
        other = ", total(p.attributes_id <> ?6)" if not only and aggregate == "min" else ""
        return (
            f"SELECT p.id, {aggregate}({value_sql(histogram)}){other} FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
            " WHERE b.metric_id = ?1 AND b.resource_id = ?2 AND b.max_time >= ?3 AND b.min_time < ?4 AND b.first_id <= ?5"
            f" AND p.metric_id = ?1 AND p.resource_id = ?2 AND p.time_unix_nano >= ?3 AND p.time_unix_nano < ?4 AND p.id <= ?5{where}"
            " GROUP BY (p.time_unix_nano - ?8) / ?7"
        )

    def run(task: tuple[str, int, tuple[int, int]], reader: PointStore) -> tuple[set[int], bool]:
        sql, attributes_id, (low, high) = task
        if sql == distinct:
            return {row[0] for row in reader.read(sql, (metric_id, resource_id, until_id))}, False
        found, others = set(), False
        keep_gaps = "min(" in sql
        counting = "total(" in sql
        params = (metric_id, resource_id, low, high, until_id, attributes_id, width, first)
        for row in reader.read(sql, params):
            # A bucket of gaps (every value NULL) keeps one row (a gap) in the min pass.
            if row[0] is not None and (row[1] is not None or keep_gaps):
                found.add(row[0])
            others = others or (counting and bool(row[2]))
        return found, others

    def tasks(sets: Sequence[int], only: bool) -> list[tuple[str, int, tuple[int, int]]]:
        return [(statement(aggregate, only), a, span) for a in sets for aggregate in ("min", "max") for span in slices]

    known = sorted(set(attribute_sets))
    ids: set[int] = set()
    if len(known) == 1:
        results = _in_parallel(store, tasks(known, only=False), run)
        ids = set().union(*(found for found, _ in results))
        if not any(others for _, others in results):
            known = []  # one attribute set: done
        else:
            ids = set()
    if known:
        every_set = run((distinct, 0, (0, 0)), store)[0]
        ids = set().union(*(found for found, _ in _in_parallel(store, tasks(sorted(every_set), only=True), run)))
    wanted = sorted(ids)
    found_rows: list[Sequence[Any]] = []
    for start in range(0, len(wanted), IDS_PER_STATEMENT):
        chunk = wanted[start : start + IDS_PER_STATEMENT]
        found_rows.extend(store.read(f"{ROW_SELECT} WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return found_rows


def _in_parallel(store: PointStore, tasks: list[_T], run: Callable[[_T, PointStore], _R]) -> list[_R]:
    """``run(task, reader)`` for every task, on up to ``READERS`` threads with a reader each."""
    if len(tasks) <= 1 or READERS <= 1:
        return [run(task, store) for task in tasks]
    from .point_store import PointStore

    def work(task: _T) -> _R:
        reader = PointStore(store.path, readonly=True)
        try:
            return run(task, reader)
        finally:
            reader.close()

    with ThreadPoolExecutor(max_workers=min(READERS, len(tasks)), thread_name_prefix="otel-recursive-metrics-series") as pool:
        futures = [pool.submit(work, task) for task in tasks]
        return [future.result(timeout=PARALLEL_DEADLINE_S) for future in futures]
