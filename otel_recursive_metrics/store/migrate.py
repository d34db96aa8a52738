"""Converting a store of version 1 to 3 (a row a point) into version 4 (chunks), and reading one as it is.

Versions 1 to 3 kept a row a point in ``points``::

    points(id, metric_id, resource_id, scope_id, attributes_id,
           start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra)

``value`` an integer, a float, or NULL (no value, a histogram's, or NaN, which SQLite stores as
NULL); ``histogram`` and ``extra`` JSON text. :func:`convert_rows` moves them into chunks in the
same file when it is opened for writing; :func:`readable_rows` lets a read-only connection see
them as chunks without writing the file.

**Streaming.** Rows are read in id order, a page at a time, and buffered per series (metric,
resource, scope, attribute set) in NumPy columns (:mod:`.row_buffer`). A series is written as a
chunk once it holds :data:`~.row_buffer.SERIES_POINTS` points, and every series is written when
the buffer passes :data:`~.row_buffer.BUFFER_BYTES`, so memory stays bounded whatever the
store's size (10 M points: a peak RSS of 165 MB, about 30 CPU seconds; see
``benchmarks/bench_migrate.py``) and a series logged rarely still gets long chunks. Every point
keeps its old id as its row id, and ``meta.next_row_id`` is set past the largest.

**Safe to kill, resumable.** Each write of chunks is one transaction that also deletes exactly
those points' rows from ``points`` (by runs of consecutive ids) and counts them in
``meta.converted_points``: a point is always in exactly one place, rows or chunk. Killed at any
moment, the conversion starts again at the next writable open and reads what is left. If the
delete finds fewer rows than it expects, another process (a second rank opening the same store)
has moved some of them: the transaction is rolled back and the reading starts again. When
``points`` is empty, version 3's ``blocks`` goes (version 1-2's ``points_identity`` went before
the first move: it only slowed the deletes) and the file is vacuumed, into
``auto_vacuum=INCREMENTAL`` as new stores are made: the rows' pages (about 40 bytes a point)
would otherwise stay in it as free pages. Then ``points`` goes and the version becomes 4, in
one transaction; killed in the VACUUM, the next writable open finds an empty ``points`` and
vacuums again.

**Reading an earlier version.** A read-only connection gets TEMP copies of the chunk tables (every
table, index and view of :data:`~.chunk_index.CHUNK_SCHEMA`; SQLite finds them before the file's
own for unqualified names): the file's chunks, if a conversion had begun, and the remaining rows
made into chunks by the same code, all read in one snapshot. The file is never written; the work
is redone at every read-only open, so converting the store (opening it for writing once) makes
reading it fast.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

import numpy as np

from .chunk_index import CHUNK_SCHEMA, SeriesKey, insert_chunks
from .row_buffer import SeriesBuffer, page_parts, pages, runs

__all__ = ["convert_rows", "readable_rows"]

_log = logging.getLogger(__name__)

#: Seconds between two progress lines of a long conversion.
PROGRESS_INTERVAL_S = 10.0
#: Chunks written by the conversion count as compacted once: a writer that goes on with the
#: series does not join (decode and encode again) the converted chunks when it closes.
CONVERTED_LEVEL = 1

_PROGRESS_KEY = "converted_points"

#: Writes the due series of a buffer: (conn, buffer, keys) -> points written.
_Sink = Callable[[sqlite3.Connection, SeriesBuffer, Sequence[SeriesKey]], int]


class _Progress:
    """Progress lines of a long pass: at most one per :data:`PROGRESS_INTERVAL_S`."""

    def __init__(self, what: str, path: str, done: int, total: int) -> None:
        self.what, self.path, self.done, self.total = what, path, done, total
        self.started = self._last = time.monotonic()

    def add(self, points: int) -> None:
        self.done += points
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            share = 100.0 * self.done / self.total if self.total else 100.0
            _log.info("otel-recursive-metrics: %s %s: %d of %d points (%.0f%%)", self.what, self.path, self.done, self.total, share)


def _stream(conn: sqlite3.Connection, sink: _Sink, progress: _Progress) -> None:
    """Every row of ``points`` through the buffer into ``sink`` (see the module docstring)."""
    buffer = SeriesBuffer()
    for rows in pages(conn):
        for key, part in page_parts(rows):
            buffer.add(key, part)
        due = buffer.due()
        if due:
            progress.add(sink(conn, buffer, due))
    due = buffer.due(everything=True)
    if due:
        progress.add(sink(conn, buffer, due))


class _Moved(Exception):
    """Some rows to convert were gone: another process converted them."""


def _move(conn: sqlite3.Connection, buffer: SeriesBuffer, keys: Sequence[SeriesKey]) -> int:
    """One transaction: the rows of ``keys`` deleted from ``points``, their chunks inserted, the count in meta."""
    row_ids = np.sort(buffer.row_ids(keys))
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_table(conn, "points"):
            raise _Moved  # another process has converted the rest, and dropped the table
        deleted = conn.executemany("DELETE FROM main.points WHERE id BETWEEN ? AND ?", runs(row_ids)).rowcount
        if deleted != len(row_ids):
            raise _Moved
        insert_chunks(conn, buffer.pop(keys), level=CONVERTED_LEVEL)
        conn.execute("INSERT OR REPLACE INTO main.meta(key, value) VALUES (?, ?)", (_PROGRESS_KEY, str(_converted(conn) + len(row_ids))))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(row_ids)


def _insert(conn: sqlite3.Connection, buffer: SeriesBuffer, keys: Sequence[SeriesKey]) -> int:
    """The chunks of ``keys`` into the caller's transaction (the TEMP tables of :func:`readable_rows`)."""
    return sum(row.points for row in insert_chunks(conn, buffer.pop(keys), level=CONVERTED_LEVEL))


def _converted(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM main.meta WHERE key = ?", (_PROGRESS_KEY,)).fetchone()
    return int(row[0]) if row is not None else 0


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _path(conn: sqlite3.Connection) -> str:
    return next((str(row[2]) for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "?")


def _version(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM main.meta WHERE key = 'schema_version'").fetchone()
    return "?" if row is None else str(row[0])


def _begin(conn: sqlite3.Connection) -> int | None:
    """Before moving rows: the old unique index goes (it only slows the deletes) and next_row_id passes every id.

    Returns how many rows are left, or None if ``points`` is gone (another process converted it).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_table(conn, "points"):
            conn.execute("COMMIT")
            return None
        conn.execute("DROP INDEX IF EXISTS main.points_identity")
        (largest,) = conn.execute(
            "SELECT max(ifnull((SELECT max(id) FROM main.points), 0), ifnull(max(last_row_id), 0)) FROM main.chunks"
        ).fetchone()
        row = conn.execute("SELECT value FROM main.meta WHERE key = 'next_row_id'").fetchone()
        following = max(int(largest) + 1, int(row[0]) if row is not None else 1)
        conn.execute("INSERT OR REPLACE INTO main.meta(key, value) VALUES ('next_row_id', ?)", (str(following),))
        (left,) = conn.execute("SELECT count(*) FROM main.points").fetchone()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(left)


def _emptied(conn: sqlite3.Connection) -> bool:
    """Whether every row is moved (``points`` empty or gone); if so, version 3's ``blocks`` go."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _has_table(conn, "points") and conn.execute("SELECT 1 FROM main.points LIMIT 1").fetchone() is not None:
            conn.execute("COMMIT")
            return False
        conn.execute("DROP TABLE IF EXISTS main.blocks")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _finish(conn: sqlite3.Connection) -> None:
    """The empty ``points`` goes (its ``points_identity`` with it) and the version becomes 4, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP TABLE IF EXISTS main.points")
        conn.execute("DELETE FROM main.meta WHERE key = ?", (_PROGRESS_KEY,))
        conn.execute("INSERT OR REPLACE INTO main.meta(key, value) VALUES ('schema_version', '4')")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def convert_rows(conn: sqlite3.Connection) -> None:
    """Move every row of ``points`` into chunks, then make the file version 4 (see the module docstring).

    ``conn`` is a writable connection in autocommit mode (``isolation_level=None``) whose schema
    has the chunk tables (:func:`~.schema.create_schema`). Safe to kill at any moment: the next
    call goes on where this one stopped. Safe to run in several processes at once: the rows
    one of them moved are never moved again.
    """
    path, version = _path(conn), _version(conn)
    left = _begin(conn)
    if left is None:
        return  # another process converted it
    earlier = _converted(conn)
    started = time.monotonic()
    size_before = _file_bytes(conn)
    if earlier:
        _log.info(
            "otel-recursive-metrics: store %s (schema version %s): resuming its conversion to version 4, %d points moved"
            " into chunks before, %d left",
            path,
            version,
            earlier,
            left,
        )
    else:
        _log.info("otel-recursive-metrics: store %s (schema version %s): converting %d points to version 4 (chunks)", path, version, left)
    progress = _Progress("converting store", path, earlier, earlier + left)
    shared = False
    while True:
        try:
            _stream(conn, _move, progress)
        except _Moved:
            if not shared:
                _log.info("otel-recursive-metrics: store %s: another process is converting it too; reading what is left", path)
                shared = True
            continue
        except sqlite3.OperationalError:
            if _has_table(conn, "points"):
                raise
            # (no such table: the other process finished while this one read)
        if _emptied(conn):
            break
    # Vacuumed while the empty points table is there: killed in the VACUUM, the next writable open
    # comes back here (a store whose rows are all moved) and vacuums it.
    vacuumed = _vacuum(conn, path)
    _finish(conn)
    (held,) = conn.execute("SELECT ifnull(sum(points), 0) FROM main.chunks").fetchone()
    _log.info(
        "otel-recursive-metrics: store %s converted to schema version 4 in %.1f s (%d points moved by this process, %d in"
        " the store); file %.1f MB -> %.1f MB%s",
        path,
        time.monotonic() - started,
        progress.done - earlier,
        held,
        size_before / 1e6,
        _file_bytes(conn) / 1e6,
        "" if vacuumed else " (not vacuumed)",
    )


def _file_bytes(conn: sqlite3.Connection) -> int:
    (pages,) = conn.execute("PRAGMA main.page_count").fetchone()
    (page_bytes,) = conn.execute("PRAGMA main.page_size").fetchone()
    return int(pages) * int(page_bytes)


def _vacuum(conn: sqlite3.Connection, path: str) -> bool:
    """Give the rows' pages back to the file system; False if another process holds the file busy (a later open may)."""
    (free,) = conn.execute("PRAGMA main.freelist_count").fetchone()
    (pages,) = conn.execute("PRAGMA main.page_count").fetchone()
    if free < pages // 4:  # a store of a few points, or one vacuumed already (a second rank's conversion)
        return True
    try:
        # As a new store is made: what compaction frees later goes back to the file system too.
        conn.execute("PRAGMA main.auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        _log.info("otel-recursive-metrics: store %s: not vacuumed after its conversion (%s); its free pages are reused", path, exc)
        return False
    return True


def _temporary_statements() -> list[str]:
    """:data:`~.chunk_index.CHUNK_SCHEMA` made TEMP: its tables, indexes and views, in the connection's temporary database."""
    text = (
        CHUNK_SCHEMA.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TEMP TABLE ")
        .replace("CREATE INDEX IF NOT EXISTS ", "CREATE INDEX temp.")
        .replace("CREATE VIEW IF NOT EXISTS ", "CREATE TEMP VIEW ")
    )
    statements = [s.strip() for s in text.split(";") if s.strip()]
    if any("IF NOT EXISTS" in s for s in statements):
        raise AssertionError(f"chunk_index.CHUNK_SCHEMA has a statement readable_rows does not make TEMP: {statements}")
    return statements


def readable_rows(conn: sqlite3.Connection) -> None:
    """Make a read-only connection to an earlier version's store see its points as chunks (TEMP tables; see the module docstring)."""
    conn.execute("BEGIN")  # one snapshot: a conversion committing meanwhile moves nothing twice, loses nothing
    try:
        for statement in _temporary_statements():
            conn.execute(statement)
        for (table,) in conn.execute("SELECT name FROM temp.sqlite_master WHERE type = 'table'").fetchall():
            if _has_table(conn, table):  # a conversion had begun: its chunks so far
                columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA temp.table_info({table})"))
                conn.execute(f"INSERT INTO temp.{table}({columns}) SELECT {columns} FROM main.{table}")
        (left,) = conn.execute("SELECT count(*) FROM main.points").fetchone()
        path = _path(conn)
        started = time.monotonic()
        if left:
            _log.info(
                "otel-recursive-metrics: store %s (schema version %s) opened read-only: reading its %d points as chunks"
                " (open it for writing once to convert it, and read it faster)",
                path,
                _version(conn),
                left,
            )
        progress = _Progress("reading store", path, 0, int(left))
        _stream(conn, _insert, progress)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if left:
        _log.info("otel-recursive-metrics: store %s: %d points read as chunks in %.1f s", path, progress.done, time.monotonic() - started)
