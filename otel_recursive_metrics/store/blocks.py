"""Blocks: where each series' points lie in the store, and how a batch delivered twice is stored once.

The store keeps no index per point (an index over a point's identity cost a third of the write
speed and 25 bytes a point). Instead a batch's points are written grouped by series (metric and
resource), so each series of a batch occupies one contiguous run of row ids, and that run is
summarised in one row of ``blocks``::

    blocks(metric_id, resource_id, first_id, last_id, points, min_time, max_time, min_step, max_step)

A batch of 8,192 points over 20 metrics adds 20 rows: a few hundredths of a byte per point.
They serve two purposes.

**Reading a series** (a chart, a query for one metric of one run) joins ``blocks`` to
``points`` on the row-id range (``p.id BETWEEN b.first_id AND b.last_id``): SQLite seeks to each
range and reads only that series' rows, in the order they were written, as an index would,
while a time range can skip whole blocks by their ``min_time`` / ``max_time``.

**Idempotence.** A point's identity is its metric, resource, time, step, attribute set, scope,
start time, value and extra fields (a submitted record's ``id``): records that share a time but
differ in value, step or id are distinct points. A batch the store already holds (delivered
again after a crash, a dead letter replayed twice) must add nothing. Training data comes in
time order, so for each series a new
batch's earliest point is normally later than anything stored: nothing of it can be a duplicate
and the check costs nothing (the writer remembers each series' latest time; a series it has
not written yet costs one indexed lookup in ``blocks``). Only a series that overlaps in time
what it already holds, or repeats a time within the batch, is compared point by point
(:func:`_drop_duplicates`): the stored identities in the overlapping blocks' time range go into
a temporary table, and the new rows found there, or repeated within the batch, are deleted
before the transaction commits. The outcome is what a unique index gave: each identity once.

Stores written before blocks existed (schema version 2, with the per-point index) get theirs
when first opened for writing: one block per series over its whole row range (correct, only
less selective), and the old index goes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import NamedTuple

from .statements import RowInsert

__all__ = ["BLOCKS_SCHEMA", "SeriesRun", "add_blocks", "blocks_from_points", "temporary_blocks"]

BLOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks(
    metric_id INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    points INTEGER NOT NULL,
    min_time INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    min_step INTEGER,
    max_step INTEGER);
CREATE INDEX IF NOT EXISTS blocks_by_series ON blocks(metric_id, resource_id, max_time);
"""


class SeriesRun(NamedTuple):
    """The rows of one series (metric, resource) a batch wrote: one block."""

    metric_id: int
    resource_id: int
    first_id: int
    last_id: int
    points: int
    min_time: int
    max_time: int
    min_step: int | None
    max_step: int | None
    #: Its times strictly increase, so no two of its points can share an identity.
    distinct: bool = True

    def shifted(self, offset: int) -> SeriesRun:
        """The same run with its row ids moved by ``offset``."""
        return self._replace(first_id=self.first_id + offset, last_id=self.last_id + offset)


_BLOCK_INSERT = RowInsert(
    "INSERT INTO blocks(metric_id, resource_id, first_id, last_id, points, min_time, max_time, min_step, max_step)",
    "(?,?,?,?,?,?,?,?,?)",
    9,
    256,
)
_EVERY_SERIES = (
    "SELECT metric_id, resource_id, min(id) AS first_id, max(id) AS last_id, count(*) AS points, min(time_unix_nano) AS min_time,"
    " max(time_unix_nano) AS max_time, min(step) AS min_step, max(step) AS max_step FROM points GROUP BY metric_id, resource_id"
)
_ONE_SERIES = (
    "SELECT metric_id, resource_id, min(id), max(id), count(*), min(time_unix_nano), max(time_unix_nano), min(step), max(step)"
    " FROM points WHERE id BETWEEN ? AND ? AND metric_id = ? AND resource_id = ?"
)


def add_blocks(
    conn: sqlite3.Connection,
    before_id: int,
    runs: list[SeriesRun],
    latest: Mapping[tuple[int, int], int],
    *,
    steps_unknown: bool = False,
) -> tuple[int, list[SeriesRun]]:
    """Record ``runs`` (the rows this transaction wrote after ``before_id``) as blocks; drop duplicates.

    ``latest`` holds, per (metric id, resource id), the latest time the caller itself stored: a
    run that starts after it cannot repeat anything the caller wrote, and a batch delivered
    again comes from the process that wrote it or from one that adopted its queue, which starts
    without that knowledge. Runs not settled that way are looked up in ``blocks``, all in one
    statement. A run whose times do not strictly increase (a metric with several attribute sets
    collected at one time, a point logged twice) is compared too, within itself. In the usual
    case this is one statement, the insert (each statement hands the GIL over once, which is
    what a busy training thread waits on). Returns the number of points added, and the blocks.
    """
    unsettled = [
        run for run in runs if (run.metric_id, run.resource_id) not in latest or run.min_time <= latest[(run.metric_id, run.resource_id)]
    ]

    stored: dict[tuple[int, int], int | None] = {}
    if unsettled:
        series = ",".join(["(?,?)"] * len(unsettled))
        rows = conn.execute(
            f"WITH s(m, r) AS (VALUES {series})"
            " SELECT m, r, (SELECT max(max_time) FROM blocks WHERE metric_id = s.m AND resource_id = s.r) FROM s",
            [v for run in unsettled for v in (run.metric_id, run.resource_id)],
        ).fetchall()
        stored = {(m, r): t for m, r, t in rows}
    kept: list[SeriesRun] = []
    for run in runs:
        stored_max = stored.get((run.metric_id, run.resource_id))
        if (stored_max is None or stored_max < run.min_time) and run.distinct:
            kept.append(run)  # later than anything the series holds, no time twice: nothing to compare
            continue
        # Overlaps what the series holds: compare identities, then summarise what is left.
        _drop_duplicates(conn, before_id, run.metric_id, run.resource_id, run.min_time, run.max_time, steps_unknown=steps_unknown)
        rest = conn.execute(_ONE_SERIES, (run.first_id, run.last_id, run.metric_id, run.resource_id)).fetchone()
        if rest[4]:
            kept.append(SeriesRun(*rest))
    if kept:
        _BLOCK_INSERT.insert(conn, (v for block in kept for v in block[:9]))
    return sum(block.points for block in kept), kept


def _identity(*, steps_unknown: bool) -> str:
    """A point's identity within its series, as SQL over ``points``: no column of it is NULL.

    The value and the extra fields (a submitted record's ``id``, ...) belong to it: two records
    of one metric at one time that differ in value or id are two points, not one delivered twice.
    ``steps_unknown``: a batch back from OTLP, which carries neither steps nor extra fields, so
    those two are left out of the comparison (each is one constant for every row).
    """
    # (An expression, not a bare -1: in GROUP BY an integer constant names a result column.)
    step, extra = ("ifnull(NULL, -1)", "ifnull(NULL, '')") if steps_unknown else ("ifnull(step, -1)", "ifnull(extra, '')")
    # A NULL value (a histogram's, or a NaN, which SQLite stores as NULL) is text, unlike any number.
    return f"time_unix_nano, {step}, attributes_id, scope_id, start_time_unix_nano, ifnull(value, 'null'), {extra}"


def _drop_duplicates(
    conn: sqlite3.Connection, before_id: int, metric_id: int, resource_id: int, min_time: int, max_time: int, *, steps_unknown: bool
) -> None:
    """Delete this transaction's rows of one series whose identity is stored already, or repeated.

    ``steps_unknown`` (a batch back from OTLP, without steps): identities are compared without
    the step, as such a point may be one stored earlier with its step.
    """
    identity = _identity(steps_unknown=steps_unknown)
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stored_points(t INTEGER, s INTEGER, a INTEGER, sc INTEGER, st INTEGER, v, x TEXT,"
        " PRIMARY KEY(t, s, a, sc, st, v, x)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.stored_points")
    ranges = conn.execute(
        "SELECT first_id, last_id FROM blocks WHERE metric_id = ? AND resource_id = ? AND max_time >= ? AND min_time <= ?",
        (metric_id, resource_id, min_time, max_time),
    ).fetchall()
    for first_id, last_id in ranges:
        conn.execute(
            f"INSERT OR IGNORE INTO temp.stored_points SELECT {identity} FROM points"
            " WHERE id BETWEEN ? AND ? AND metric_id = ? AND resource_id = ? AND time_unix_nano BETWEEN ? AND ?",
            (first_id, min(last_id, before_id), metric_id, resource_id, min_time, max_time),
        )
    series = "id > ? AND metric_id = ? AND resource_id = ?"
    conn.execute(
        f"DELETE FROM points WHERE {series} AND ({identity}) IN (SELECT t, s, a, sc, st, v, x FROM temp.stored_points)",
        (before_id, metric_id, resource_id),
    )
    conn.execute(
        f"DELETE FROM points WHERE {series} AND id NOT IN (SELECT min(id) FROM points WHERE {series} GROUP BY {identity})",
        (before_id, metric_id, resource_id, before_id, metric_id, resource_id),
    )
    conn.execute("DELETE FROM temp.stored_points")


def blocks_from_points(conn: sqlite3.Connection) -> None:
    """Blocks for a store written without them: one per series, over its whole row range."""
    conn.execute("DELETE FROM blocks")
    conn.execute(f"INSERT INTO blocks {_EVERY_SERIES}")


def temporary_blocks(conn: sqlite3.Connection) -> None:
    """For a reader of a store written before blocks existed: ``blocks`` as a temporary table.

    One per series over its whole row range, computed at open (the file is not changed); readers
    then use one shape of query whatever the store's version. It does not follow points an
    older writer adds later: the next open sees them.
    """
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS blocks AS {_EVERY_SERIES}")
    conn.execute("CREATE INDEX IF NOT EXISTS temp.blocks_by_series ON blocks(metric_id, resource_id, max_time)")
