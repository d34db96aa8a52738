"""The chunk index: one row per chunk of one series, the chunk's bytes beside it, and the head.

Schema version 4 keeps points as compressed per-series chunks (:mod:`otel_recursive_metrics.model.chunk`),
not one row a point::

    chunk_index(id, metric_id, resource_id, scope_id, attributes_id,   -- the series
                points, first_row_id, last_row_id,                     -- how many, which row ids
                min_time, max_time, min_step, max_step,                -- ranges, for skipping chunks
                min_value, max_value, level, bytes)                    -- level: 0 as written, n after compaction
    chunk_data(chunk_id, data)                                         -- the chunk's bytes (its binary format)
    head_points(id, metric_id, resource_id, scope_id, attributes_id,  -- points not in a chunk yet:
                start_time_unix_nano, time_unix_nano, value,           -- a row each, as before version 4
                step, epoch, histogram, extra)
    chunks                                                             -- a view: chunk_index, and the head
                                                                       -- summarised per series (level -1)

A series is one metric, resource, scope and attribute set. Every point has a row id, a number
from one counter of the whole store (``meta.next_row_id``) given as points are written: a chunk
holds them in its ``row_id`` column, and ``first_row_id`` / ``last_row_id`` bound them, which is
what "points written after row id N" (``query --follow``, the web view's live update) reads.
``min_step`` / ``max_step`` range over points that have a step (NULL if none has);
``min_value`` / ``max_value`` ignore NaN and points without a value (NULL if none is left).

**The head.** A chunk has fixed costs (tens of microseconds to build and encode, a hundred bytes
or so), which a series of a few points per batch cannot carry: an SDK collection of 1,000 series
gives each one point. A batch's series of fewer than :data:`HEAD_BELOW` points go to
``head_points`` as rows (the id is the row id); when the head holds :data:`HEAD_MAX_POINTS`
rows, they are moved into chunks, every series at once, in one transaction
(:mod:`.compaction`). The head's rows keep the row store's conventions: ``value`` is NULL for a
histogram (and for NaN, which SQLite stores as NULL), ``histogram`` and ``extra`` are JSON.

The ``chunks`` view is what readers ask about ranges and counts: the index rows, and one row per
series of the head (``id`` the negative of its first row id, ``level`` -1, ``bytes`` 0, no
``chunk_data``). The index is small (a row per chunk, about 60 bytes, for hundreds to a million
points) and kept apart from the bytes, so a scan of it reads no chunk data. ``chunk_index_by_series``
serves the two questions asked of it: a series' chunks in a time range, and the latest time a
series holds. Points are read through :mod:`.scan`, which reads chunks and head rows alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ..model.chunk import ChunkCodec, SeriesChunk, default_codec

__all__ = [
    "CHUNK_COLUMNS",
    "CHUNK_SCHEMA",
    "HEAD_BELOW",
    "HEAD_MAX_POINTS",
    "ChunkRow",
    "SeriesKey",
    "delete_chunks",
    "insert_chunks",
    "insert_rows",
    "take_row_ids",
    "temporary_schema",
]

#: Points of a series in one batch below which they go to the head, not a chunk of their own.
HEAD_BELOW = 32
#: Head rows at which the head is moved into chunks.
HEAD_MAX_POINTS = 65_536

CHUNK_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_index(
    id INTEGER PRIMARY KEY,
    metric_id INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    scope_id INTEGER NOT NULL,
    attributes_id INTEGER NOT NULL,
    points INTEGER NOT NULL,
    first_row_id INTEGER NOT NULL,
    last_row_id INTEGER NOT NULL,
    min_time INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    min_step INTEGER,
    max_step INTEGER,
    min_value,
    max_value,
    level INTEGER NOT NULL,
    bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunk_index_by_series ON chunk_index(metric_id, resource_id, max_time);
CREATE TABLE IF NOT EXISTS chunk_data(chunk_id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS head_points(
    id INTEGER PRIMARY KEY,
    metric_id INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    scope_id INTEGER NOT NULL,
    attributes_id INTEGER NOT NULL,
    start_time_unix_nano INTEGER NOT NULL,
    time_unix_nano INTEGER NOT NULL,
    value,
    step INTEGER,
    epoch INTEGER,
    histogram TEXT,
    extra TEXT);
CREATE VIEW IF NOT EXISTS chunks AS
    SELECT id, metric_id, resource_id, scope_id, attributes_id, points, first_row_id, last_row_id, min_time, max_time,
        min_step, max_step, min_value, max_value, level, bytes FROM chunk_index
    UNION ALL
    SELECT -min(id), metric_id, resource_id, scope_id, attributes_id, count(*), min(id), max(id), min(time_unix_nano),
        max(time_unix_nano), min(step), max(step), min(value), max(value), -1, 0
    FROM head_points GROUP BY metric_id, resource_id, scope_id, attributes_id;
"""


def temporary_schema() -> str:
    """:data:`CHUNK_SCHEMA` as TEMP tables and view: for a read-only connection to a store without them."""
    return (
        CHUNK_SCHEMA.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TEMP TABLE IF NOT EXISTS ")
        .replace("CREATE INDEX IF NOT EXISTS ", "CREATE INDEX IF NOT EXISTS temp.")
        .replace("CREATE VIEW IF NOT EXISTS ", "CREATE TEMP VIEW IF NOT EXISTS ")
    )


#: The index's columns, in :class:`ChunkRow`'s order (``c.`` is ``chunks`` or ``chunk_index`` in a query).
CHUNK_COLUMNS = (
    "c.id, c.metric_id, c.resource_id, c.scope_id, c.attributes_id, c.points, c.first_row_id, c.last_row_id,"
    " c.min_time, c.max_time, c.min_step, c.max_step, c.min_value, c.max_value, c.level, c.bytes"
)


class SeriesKey(NamedTuple):
    """What one series is, as the store's ids."""

    metric_id: int
    resource_id: int
    scope_id: int
    attributes_id: int


class ChunkRow(NamedTuple):
    """One row of the chunk index (see the module docstring)."""

    id: int
    metric_id: int
    resource_id: int
    scope_id: int
    attributes_id: int
    points: int
    first_row_id: int
    last_row_id: int
    min_time: int
    max_time: int
    min_step: int | None
    max_step: int | None
    min_value: float | int | None
    max_value: float | int | None
    level: int
    bytes: int

    @property
    def series(self) -> SeriesKey:
        return SeriesKey(self.metric_id, self.resource_id, self.scope_id, self.attributes_id)


def take_row_ids(conn: sqlite3.Connection, count: int) -> int:
    """Reserve ``count`` row ids inside the caller's write transaction; the first of them."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_row_id'").fetchone()
    first = int(row[0]) if row is not None else 1
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_row_id', ?)", (str(first + count),))
    return first


def insert_chunks(conn: sqlite3.Connection, items: Iterable[tuple[SeriesKey, SeriesChunk]], *, level: int = 0) -> list[ChunkRow]:
    """Encode and insert chunks whose ``row_id`` columns are set; their index rows.

    Level 0 (as written) is stored raw, every later level with :func:`~otel_recursive_metrics.model.chunk.default_codec`.
    """
    rows: list[ChunkRow] = []
    data: list[tuple[int, bytes]] = []
    # Level 0 is short-lived (compaction joins it soon): stored raw, it costs nothing to encode
    # or to decode for the join; the joined chunks are compressed.
    codec = ChunkCodec.RAW if level == 0 else default_codec()
    # Ids given here (the caller holds the write transaction): two statements for any number of
    # chunks, not two a chunk. Each statement may hand the GIL over, and a busy training thread
    # makes every hand-over cost up to 5 ms.
    next_id = int(conn.execute("SELECT ifnull(max(id), 0) FROM chunk_index").fetchone()[0]) + 1
    for key, chunk in items:
        if not len(chunk):
            continue
        body = chunk.encode(codec)
        stats = chunk.stats()
        row = ChunkRow(
            next_id,
            *key,
            len(chunk),
            int(chunk.row_id.min()),
            int(chunk.row_id.max()),
            int(chunk.time_unix_nano.min()),
            int(chunk.time_unix_nano.max()),
            stats.min_step,
            stats.max_step,
            stats.min_value,
            stats.max_value,
            level,
            len(body),
        )
        rows.append(row)
        data.append((next_id, body))
        next_id += 1
    insert_rows(
        conn,
        "chunk_index(id, metric_id, resource_id, scope_id, attributes_id, points, first_row_id, last_row_id,"
        " min_time, max_time, min_step, max_step, min_value, max_value, level, bytes)",
        rows,
    )
    insert_rows(conn, "chunk_data(chunk_id, data)", data)
    return rows


#: Rows per INSERT statement, at most (a few thousand bound values: far below SQLite's limit).
_ROWS_PER_STATEMENT = 256


def insert_rows(conn: sqlite3.Connection, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` into ``table`` (``name(columns)``) with a few many-row statements.

    ``executemany`` steps SQLite once a row and hands the GIL over at each step; a training
    thread that never releases the GIL makes every hand-over cost up to the interpreter's switch
    interval (5 ms), so a batch of 1,000 head rows took seconds. One statement of 256 rows hands
    it over once. Statement texts are cached by the sqlite3 module: the texts here are one per
    row count up to 256, each small.
    """
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        part = rows[start : start + _ROWS_PER_STATEMENT]
        width = len(part[0])
        row = "(" + ",".join("?" * width) + ")"
        conn.execute(f"INSERT INTO {table} VALUES " + ",".join([row] * len(part)), [value for r in part for value in r])


def delete_chunks(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Remove chunks (index row and bytes) inside the caller's transaction."""
    for start in range(0, len(ids), 500):
        part = list(ids[start : start + 500])
        marks = ",".join("?" * len(part))
        conn.execute(f"DELETE FROM chunk_data WHERE chunk_id IN ({marks})", part)
        conn.execute(f"DELETE FROM chunk_index WHERE id IN ({marks})", part)
