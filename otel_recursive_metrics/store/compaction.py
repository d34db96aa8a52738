"""Compaction: a series' small chunks joined into large ones, crash-safely.

A writer stores one chunk per series per batch (level 0, uncompressed: it is joined soon, and
costs nothing to encode or decode): a few hundred points, each carrying a chunk's fixed costs
(its header, an index row).
When a series has :data:`FAN_IN` chunks of one level, they are joined into one chunk of the next
level, up to :data:`MAX_POINTS` points: a long run ends with a handful of large chunks per
series, and each point is re-encoded a few times over the run (once per level).

Each join is one transaction: the new chunk is inserted, the index switched to it and the old
chunks deleted together, so a process killed at any moment leaves either the old chunks or the
new one, never both or neither. Points keep their row ids (chunks are joined in row-id order) and
their order within the series. Chunks of different value kinds (integers, floats) are joined
separately: a chunk has one kind.

The writer compacts a series right after a batch that gave it its :data:`FAN_IN`-th small chunk
(on the worker thread, never the training thread), and at close joins each series' level-0
chunks it left behind (:func:`compact_series` with ``closing=True``). The head's rows (see
:mod:`.chunk_index`) become level-0 chunks the same way, all at once (:func:`move_head`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chunk_write import Written

from ..model.chunk import SeriesChunk, concat
from .chunk_index import CHUNK_COLUMNS, HEAD_BELOW, HEAD_MAX_POINTS, ChunkRow, SeriesKey, delete_chunks, insert_chunks
from .head import head_chunks

__all__ = ["FAN_IN", "MAX_POINTS", "Compactor", "compact_series", "move_head"]

#: Points re-encoded by the joins that follow one batch, at most (a series' joins are never cut).
BACKGROUND_BUDGET_POINTS = 65_536
#: Series joined after one batch, at most, while the GIL is contended. pcodec releases the GIL for each column it encodes,
#: and a training thread that never releases it makes each such hand-over cost up to the
#: interpreter's switch interval (5 ms): 20 series joined at once held the writer's thread, and
#: the batches behind it, for over a second. Two a batch keep up with 20 series (16 batches
#: make 20 series due at most once), at about 50 ms a batch in the worst case.
BACKGROUND_BUDGET_SERIES = 1
#: The share of the writer's time background joins may take; the rest is left to writing
#: batches, which is what keeps the durability lag within its bound while a loop logs flat out.
#: Joins left undone wait (their level-0 chunks are raw, larger on disk) and close finishes them.
JOIN_SHARE = 0.1
#: Wall time beyond three times the CPU time that is not contention (a commit's fsync).
CONTENTION_SLACK_S = 0.03
#: Chunks of one level joined at once.
FAN_IN = 16
#: The most points a joined chunk holds: large enough that a chunk's fixed costs vanish, small
#: enough that reading a short time range decodes little more than it needs.
MAX_POINTS = 1 << 18


def _series_chunks(conn: sqlite3.Connection, key: SeriesKey) -> list[ChunkRow]:
    rows = conn.execute(
        f"SELECT {CHUNK_COLUMNS} FROM chunk_index c WHERE c.metric_id = ? AND c.resource_id = ? AND c.scope_id = ?"
        " AND c.attributes_id = ? ORDER BY c.first_row_id",
        key,
    ).fetchall()
    return [ChunkRow(*row) for row in rows]


def _groups(rows: Sequence[ChunkRow], *, closing: bool) -> list[list[ChunkRow]]:
    """The runs of chunks to join: per level, consecutive chunks up to MAX_POINTS, FAN_IN or more (closing: any at level 0)."""
    groups: list[list[ChunkRow]] = []
    for level in sorted({row.level for row in rows}):
        candidates = [row for row in rows if row.level == level and row.points < MAX_POINTS]
        least = 1 if closing and level == 0 else FAN_IN  # closing: even one raw level-0 chunk gets compressed
        if len(candidates) < least:
            continue
        group: list[ChunkRow] = []
        total = 0
        for row in candidates:
            if group and total + row.points > MAX_POINTS:
                if len(group) >= least:
                    groups.append(group)
                group, total = [], 0
            group.append(row)
            total += row.points
        if len(group) >= least:
            groups.append(group)
    return groups


def _join(conn: sqlite3.Connection, key: SeriesKey, group: Sequence[ChunkRow]) -> int:
    """Replace ``group`` by one chunk per value kind; the chunks written."""
    ids = [row.id for row in group]
    data = dict(conn.execute(f"SELECT chunk_id, data FROM chunk_data WHERE chunk_id IN ({','.join('?' * len(ids))})", ids).fetchall())
    decoded = [SeriesChunk.decode(data[i]) for i in ids]
    by_kind: dict[str, list[SeriesChunk]] = {}
    for chunk in decoded:
        by_kind.setdefault(chunk.value.dtype.str, []).append(chunk)
    level = max(row.level for row in group) + 1
    written = insert_chunks(conn, [(key, concat(parts)) for parts in by_kind.values()], level=level)
    delete_chunks(conn, ids)
    return len(written)


def compact_series(
    conn: sqlite3.Connection,
    keys: Sequence[SeriesKey],
    *,
    closing: bool = False,
    budget_points: int | None = None,
    budget_series: int | None = None,
) -> list[SeriesKey]:
    """Join the small chunks of each series in ``keys`` as the module docstring says, in one transaction; the series done.

    ``closing``: the writer is closing, so its level-0 chunks are joined (compressed) even if
    fewer than :data:`FAN_IN`, even one. One transaction (one commit, one fsync) for every series: a
    batch of 20 metrics makes 20 series due at once. ``budget_points``: stop once joins have
    re-encoded that many points (each series' joins are whole; the series not reached are left
    due), or once ``budget_series`` series are done: the writer's thread is also the one that
    takes new batches, and must not be held long.
    """
    done: list[SeriesKey] = []
    spent = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for key in keys:
            if (budget_points is not None and spent >= budget_points) or (budget_series is not None and len(done) >= budget_series):
                break
            while groups := _groups(_series_chunks(conn, key), closing=closing):
                _join(conn, key, groups[0])
                spent += sum(row.points for row in groups[0])
            done.append(key)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def move_head(conn: sqlite3.Connection, *, min_points: int = 0) -> list[SeriesKey]:
    """Move head rows into level-0 chunks (one per series and value kind) in one transaction; their series.

    ``min_points``: only the series with at least that many rows in the head (a writer closing
    moves those worth a chunk, and leaves a series of two points as rows). Points keep their row
    ids; the rows are deleted in the transaction that writes the chunks, so a kill at any moment
    leaves each point in exactly one of the two places.
    """
    series = "(metric_id, resource_id, scope_id, attributes_id)"
    where = ""
    if min_points > 1:
        where = f" WHERE {series} IN (SELECT {series[1:-1]} FROM head_points GROUP BY 1, 2, 3, 4 HAVING count(*) >= {int(min_points)})"
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = insert_chunks(conn, list(head_chunks(conn, where)), level=0)
        conn.execute(f"DELETE FROM head_points{where}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return list(dict.fromkeys(row.series for row in rows))


class Compactor:
    """One writer's view of what is due: its series' new small chunks, and the head's size.

    :meth:`wrote` after each committed batch, :meth:`run` after it (the caller's lock held; a
    failure raises, and the next run tries again) and with ``closing=True`` at close.
    """

    def __init__(self) -> None:
        #: Series -> level-0 chunks written since they were last compacted.
        self.small_chunks: dict[SeriesKey, int] = {}
        #: Rows in the head, as far as this writer knows: at HEAD_MAX_POINTS they become chunks.
        self.head_points = 0
        #: When (monotonic s) background joins may run again (see :data:`JOIN_SHARE`).
        self.next_join_s = 0.0
        #: The last joins waited on the GIL far longer than they worked (assumed until measured:
        #: the first joins are one series, so that a busy loop is never held long).
        self.contended = True

    def opened(self, conn: sqlite3.Connection) -> None:
        """A new connection: what the head holds already (other writers', a previous run's)."""
        self.head_points = int(conn.execute("SELECT count(*) FROM head_points").fetchone()[0])

    def wrote(self, written: Written) -> None:
        for row in written.chunks:
            self.small_chunks[row.series] = self.small_chunks.get(row.series, 0) + 1
        self.head_points += sum(count for _, _, count in written.head)

    def run(self, conn: sqlite3.Connection, *, closing: bool = False) -> None:
        """Move the head when full (closing: its series worth a chunk), then join what is due."""
        if self.head_points >= HEAD_MAX_POINTS or (closing and self.head_points):
            for key in move_head(conn, min_points=HEAD_BELOW if closing else 0):
                self.small_chunks[key] = self.small_chunks.get(key, 0) + 1
            self.head_points = int(conn.execute("SELECT count(*) FROM head_points").fetchone()[0])
        due = [key for key, n in self.small_chunks.items() if n >= (1 if closing else FAN_IN)]
        if not due or (not closing and time.monotonic() < self.next_join_s):
            return  # nothing due, or the last joins' share of the writer's time is not spent yet
        started, cpu_started = time.monotonic(), time.thread_time()
        if closing:
            done = compact_series(conn, due, closing=True)
        else:
            # About a batch's worth of points re-encoded per batch written; one series while
            # the GIL is contended.
            series = BACKGROUND_BUDGET_SERIES if self.contended else None
            done = compact_series(conn, due, budget_points=BACKGROUND_BUDGET_POINTS, budget_series=series)
        for key in done:
            del self.small_chunks[key]
        wall_s, cpu_s = time.monotonic() - started, time.thread_time() - cpu_started
        # Contended: the joins waited far longer than they worked (pcodec and SQLite hand the GIL
        # over, and a training thread that never releases it makes each hand-over cost up to the
        # 5 ms switch interval). Then joins take at most JOIN_SHARE of the writer's time: d
        # seconds of joins are followed by d * (1 / JOIN_SHARE - 1) seconds of writes alone.
        self.contended = wall_s > 3 * cpu_s + CONTENTION_SLACK_S
        self.next_join_s = time.monotonic() + wall_s * (1 / JOIN_SHARE - 1) if self.contended else 0.0
