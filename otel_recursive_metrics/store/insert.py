"""Points into the store's table, column by column: the hot part of :meth:`PointStore.write_batch`.

A batch's points are sorted by series (metric, resource) and each series' rows are put
together from columns with C-level iterators (``map``, ``itemgetter``, ``zip``): no Python code
runs per point unless a point carries a histogram or extra fields (JSON). The rows go in
statements of up to ``rows_per_statement`` rows; SQLite inserts a statement with the GIL
released, so a batch hands the GIL over a handful of times (a training thread that never
releases the GIL makes every hand-over cost up to 5 ms). Each series gets one contiguous run of
row ids, which :mod:`.blocks` records.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..model.batch import ATTRIBUTES, EPOCH, EXTRA, HISTOGRAM, METRIC, RESOURCE, SCOPE, START_TIME, STEP, TIME, VALUE
from .blocks import SeriesRun
from .statements import RowInsert

__all__ = ["insert_points", "rows_per_statement"]

#: Rows per INSERT statement, at most: SQLite inserts a whole statement with the GIL released,
#: so a batch of 8,192 points hands the GIL over a handful of times, not once per row (a
#: training thread that never releases the GIL makes every hand-over cost up to 5 ms).
_MAX_ROWS_PER_STATEMENT = 2048


_FULL_HEAD = (
    "INSERT INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano,"
    " time_unix_nano, value, step, epoch, histogram, extra)"
)
_FULL_ROW = "(?,?,?,?,ifnull(?,0),?,?,?,?,?,?)"  # a start time of None is stored as 0
_FULL_COLUMNS = 11
# A series of plain points (gauges from log(): start time 0, no histogram, no extra fields): the
# columns SQLite would otherwise bind and check for nothing, a third of its work, left out.
_PLAIN_HEAD = (
    "INSERT INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value, step, epoch)"
)
_PLAIN_ROW = "(?,?,?,?,0,?,?,?,?)"
_PLAIN_COLUMNS = 8


@functools.lru_cache(maxsize=8)
def _shapes(size: int) -> tuple[RowInsert, RowInsert]:
    """The full and the plain insert, ``size`` rows a statement."""
    return RowInsert(_FULL_HEAD, _FULL_ROW, _FULL_COLUMNS, size), RowInsert(_PLAIN_HEAD, _PLAIN_ROW, _PLAIN_COLUMNS, size)


def rows_per_statement(conn: sqlite3.Connection) -> int:
    """As many rows as the SQLite build takes bound variables for (11 a row), up to the maximum."""
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    if getlimit is not None:
        variables = int(getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9)))
    else:
        variables = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    return max(1, min(_MAX_ROWS_PER_STATEMENT, variables // _FULL_COLUMNS))


_TIME, _STEP, _SCOPE, _ATTRIBUTES = (operator.itemgetter(i) for i in (TIME, STEP, SCOPE, ATTRIBUTES))
_START_TIME, _VALUE, _EPOCH, _HISTOGRAM, _EXTRA = (operator.itemgetter(i) for i in (START_TIME, VALUE, EPOCH, HISTOGRAM, EXTRA))


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def insert_points(
    conn: sqlite3.Connection,
    size: int,
    points: Sequence[list[Any]],
    res_ids: list[int],
    scope_ids: list[int],
    metric_ids: list[int],
    attr_ids: list[int],
) -> tuple[int, list[SeriesRun]]:
    """Insert ``points`` grouped by series (metric, resource): the last row id before them, and
    the row-id run of each series.

    The rows are put together column by column with C-level iterators (``map``,
    ``itemgetter``, ``zip``): no Python code runs per point unless the points carry a
    histogram or extra fields, which are JSON. They go in statements of many rows: SQLite
    inserts each with the GIL released, so a batch hands the GIL over a handful of times.
    """
    # sorted() is stable: within a series the points keep their (time) order.
    key: Callable[[Any], Any] = operator.itemgetter(METRIC) if len(res_ids) == 1 else operator.itemgetter(RESOURCE, METRIC)
    ordered = sorted(points, key=key)
    runs: list[SeriesRun] = []
    # Consecutive series of one shape share statements: [(shape, row iterators)].
    full_insert, plain_insert = _shapes(size)
    segments: list[tuple[RowInsert, list[Iterator[tuple[Any, ...]]]]] = []
    next_id = 1  # relative to the row before the first inserted, known once they are in
    for _, group in itertools.groupby(ordered, key):
        chunk = list(group)
        first = chunk[0]
        n = len(chunk)
        times = list(map(_TIME, chunk))
        steps = [s for s in map(_STEP, chunk) if s is not None]
        runs.append(
            SeriesRun(
                metric_ids[first[METRIC]],
                res_ids[first[RESOURCE]],
                next_id,
                next_id + n - 1,
                n,
                min(times),
                max(times),
                min(steps) if steps else None,
                max(steps) if steps else None,
                all(map(operator.lt, times, itertools.islice(times, 1, None))),
            )
        )
        next_id += n
        head = (itertools.repeat(metric_ids[first[METRIC]], n), itertools.repeat(res_ids[first[RESOURCE]], n))
        ids = (map(scope_ids.__getitem__, map(_SCOPE, chunk)), map(attr_ids.__getitem__, map(_ATTRIBUTES, chunk)))
        plain = not any(map(_HISTOGRAM, chunk)) and not any(map(_EXTRA, chunk)) and not any(map(_START_TIME, chunk))
        if plain:
            shape, rows = plain_insert, zip(*head, *ids, times, map(_VALUE, chunk), map(_STEP, chunk), map(_EPOCH, chunk), strict=True)
        else:
            shape, rows = (
                full_insert,
                zip(
                    *head,
                    *ids,
                    map(_START_TIME, chunk),
                    times,
                    map(_VALUE, chunk),
                    map(_STEP, chunk),
                    map(_EPOCH, chunk),
                    map(_json_or_none, map(_HISTOGRAM, chunk)),
                    map(_json_or_none, map(_EXTRA, chunk)),
                    strict=True,
                ),
            )
        if segments and segments[-1][0] is shape:
            segments[-1][1].append(rows)
        else:
            segments.append((shape, [rows]))
    last_id = 0
    for shape, parts in segments:
        last_id = shape.insert(conn, itertools.chain.from_iterable(itertools.chain.from_iterable(parts))) or last_id
    # One writer inside the transaction: the rows got consecutive ids ending at last_id.
    before = last_id - (next_id - 1)
    return before, [run.shifted(before) for run in runs]
