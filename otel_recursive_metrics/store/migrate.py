"""Converting a store of version 1 to 3 (a row a point) into version 4 (chunks), and reading one as it is.

Versions 1 to 3 kept a row a point in ``points``::

    points(id, metric_id, resource_id, scope_id, attributes_id,
           start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra)

``value`` an integer, a float, or NULL (no value, a histogram's, or NaN, which SQLite stores as
NULL); ``histogram`` and ``extra`` JSON text. :func:`convert_rows` moves them into chunks in the
same file when it is opened for writing; :func:`readable_rows` lets a read-only connection see
them as chunks without writing the file.

**Streaming.** Rows are read in id order, a page at a time, into NumPy columns and buffered per
series (metric, resource, scope, attribute set). A series is written as a chunk once it holds
:data:`SERIES_POINTS` points, and every series is written when the buffer passes
:data:`BUFFER_BYTES`, so memory stays bounded whatever the store's size (about 200 MB of RSS for
10 M points) and a series logged rarely still gets long chunks. A series whose values mix
integers and floats gets a chunk per kind; a point without a value goes with the floats if its
series has any, else with the integers, and is marked ``value_missing``. Every point keeps its
old id as its row id, and ``meta.next_row_id`` is set past the largest.

**Safe to kill, resumable.** Each write of chunks is one transaction that also deletes exactly
those points' rows from ``points`` (by runs of consecutive ids) and counts them in
``meta.converted_points``: a point is always in exactly one place, rows or chunk. Killed at any
moment, the conversion starts again at the next writable open and reads what is left. If the
delete finds fewer rows than it expects, another process (a second rank opening the same store)
has moved some of them: the transaction is rolled back and the reading starts again. When
``points`` is empty it is dropped with ``blocks`` (and version 1-2's ``points_identity``), the
version becomes 4, and the file is vacuumed: the rows' pages (38 to 50 bytes a point) would
otherwise stay in it as free pages.

**Reading an earlier version.** A read-only connection gets TEMP tables ``chunks`` and
``chunk_data`` (which SQLite finds before the file's own for unqualified names): the file's
chunks, if a conversion had begun, and the remaining rows made into chunks by the same code,
all read in one snapshot. The file is never written; the work is redone at every read-only open,
so converting the store (opening it for writing once) makes reading it fast.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import CHUNK_COLUMNS, CHUNK_SCHEMA, SeriesKey, insert_chunks

__all__ = ["BUFFER_BYTES", "SERIES_POINTS", "convert_rows", "readable_rows"]

_log = logging.getLogger(__name__)

#: A series is written as a chunk once this many of its points are buffered.
SERIES_POINTS = 1 << 16
#: Every buffered series is written once the buffer holds about this many bytes.
BUFFER_BYTES = 64 << 20
#: Rows read per statement (their Python tuples are what a page costs while it is read).
PAGE_ROWS = 1 << 15
#: Seconds between two progress lines of a long conversion.
PROGRESS_INTERVAL_S = 10.0
#: Chunks written by the conversion count as compacted once: a writer that goes on with the
#: series does not join (decode and encode again) the converted chunks when it closes.
CONVERTED_LEVEL = 1

_SELECT = (
    "SELECT id, metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value, step, epoch,"
    " histogram, extra FROM main.points WHERE id > ? ORDER BY id LIMIT ?"
)
_NUMBERS = ("row_id", "start_time_unix_nano", "time_unix_nano", "step", "epoch", "value")
_MASKS = ("step_missing", "epoch_missing", "value_missing", "is_float")
# What a buffered point costs: six int64 columns and four masks, plus a text's object.
_POINT_BYTES = 8 * len(_NUMBERS) + len(_MASKS)
_TEXT_OBJECT_BYTES = 56
_PROGRESS_KEY = "converted_points"


@dataclass
class _Part:
    """Points of one series from one page: NumPy columns (``value`` holds a float's bits where ``is_float``)."""

    columns: dict[str, np.ndarray]
    histogram: list[str | None] | None
    extra: list[str | None] | None

    def __len__(self) -> int:
        return len(self.columns["row_id"])

    def nbytes(self) -> int:
        texts = (t for column in (self.histogram, self.extra) if column is not None for t in column if t is not None)
        return len(self) * _POINT_BYTES + sum(len(t) + _TEXT_OBJECT_BYTES for t in texts)


# Per-point tests run as C callables inside np.fromiter: no Python code per point.
_IS_NONE, _IS_FLOAT = type(None).__instancecheck__, float.__instancecheck__


def _mask(test: Callable[[Any], bool], column: Sequence[Any]) -> np.ndarray:
    return np.fromiter(map(test, column), bool, len(column))


def _optional(column: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Integers that may be NULL: the numbers (0 where NULL) and where they are NULL."""
    if None not in column:
        return np.array(column, dtype=np.int64), np.zeros(len(column), bool)
    missing = _mask(_IS_NONE, column)
    if missing.all():
        return np.zeros(len(column), np.int64), missing
    objects = np.array(column, dtype=object)
    objects[missing] = 0
    return objects.astype(np.int64), missing


def _values(column: Sequence[Any], row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The value column as int64 (a float's bits where it is one), where it is a float, and where it is NULL."""
    n = len(column)
    kinds = set(map(type, column))
    if not kinds <= {int, float, type(None)}:
        bad = next(i for i, v in enumerate(column) if type(v) not in (int, float, type(None)))
        raise ValueError(
            f"points row id {int(row_ids[bad])}: value {column[bad]!r} ({type(column[bad]).__name__}) is not a number;"
            " a store of an earlier version holds integers, floats or NULL there"
        )
    if kinds == {float}:
        return np.array(column, dtype=np.float64).view(np.int64), np.ones(n, bool), np.zeros(n, bool)
    if kinds == {int}:
        return np.array(column, dtype=np.int64), np.zeros(n, bool), np.zeros(n, bool)
    missing = _mask(_IS_NONE, column) if type(None) in kinds else np.zeros(n, bool)
    is_float = _mask(_IS_FLOAT, column) if float in kinds else np.zeros(n, bool)
    is_int = ~(is_float | missing)
    objects = np.array(column, dtype=object)
    bits = np.zeros(n, np.int64)
    if is_float.any():
        bits[is_float] = objects[is_float].astype(np.float64).view(np.int64)
    if is_int.any():
        bits[is_int] = objects[is_int].astype(np.int64)
    return bits, is_float, missing


def _texts(column: Sequence[str | None]) -> list[str | None] | None:
    return None if column.count(None) == len(column) else list(column)


def _page_parts(rows: list[tuple[Any, ...]]) -> Iterator[tuple[SeriesKey, _Part]]:
    """A page of ``points`` rows as one part per series, points in id order within each."""
    (row_ids, metric_ids, resource_ids, scope_ids, attributes_ids, starts, times, values, steps, epochs, histograms, extras) = zip(
        *rows, strict=True
    )
    ids = np.array(row_ids, dtype=np.int64)
    columns: dict[str, np.ndarray] = {"row_id": ids}
    columns["start_time_unix_nano"] = np.array(starts, dtype=np.int64)
    columns["time_unix_nano"] = np.array(times, dtype=np.int64)
    columns["step"], columns["step_missing"] = _optional(steps)
    columns["epoch"], columns["epoch_missing"] = _optional(epochs)
    columns["value"], columns["is_float"], columns["value_missing"] = _values(values, ids)
    histogram, extra = _texts(histograms), _texts(extras)
    keys = [np.array(k, dtype=np.int64) for k in (metric_ids, resource_ids, scope_ids, attributes_ids)]
    order = np.lexsort(keys[::-1])  # stable: id order within a series
    sorted_keys = np.stack([k[order] for k in keys])
    bounds = [0, *(np.flatnonzero(np.any(sorted_keys[:, 1:] != sorted_keys[:, :-1], axis=0)) + 1).tolist(), len(ids)]
    for lo, hi in itertools.pairwise(bounds):
        index = order[lo:hi]
        taken = index.tolist() if histogram is not None or extra is not None else []
        yield (
            SeriesKey(*(int(k[lo]) for k in sorted_keys)),
            _Part(
                {name: column[index] for name, column in columns.items()},
                None if histogram is None else [histogram[i] for i in taken],
                None if extra is None else [extra[i] for i in taken],
            ),
        )


def _chunks(parts: list[_Part]) -> list[SeriesChunk]:
    """One series' buffered parts as chunks: one per value kind (points without a value go with the floats, if any)."""
    columns = {name: np.concatenate([p.columns[name] for p in parts]) for name in parts[0].columns}
    texts: dict[str, list[str | None] | None] = {}
    for name in ("histogram", "extra"):
        if any(getattr(p, name) is not None for p in parts):
            texts[name] = [t for p in parts for t in (getattr(p, name) or [None] * len(p))]
        else:
            texts[name] = None
    is_float, missing = columns["is_float"], columns["value_missing"]
    floats = (is_float | missing) if is_float.any() else np.zeros(len(is_float), bool)
    if not floats.any():
        return [_chunk(columns, texts, np.int64)]
    if floats.all():
        return [_chunk(columns, texts, np.float64)]
    chunks = []
    for rows, dtype in ((~floats, np.int64), (floats, np.float64)):
        index = np.flatnonzero(rows)
        taken = index.tolist()
        picked = {name: None if column is None else [column[i] for i in taken] for name, column in texts.items()}
        chunks.append(_chunk({name: column[index] for name, column in columns.items()}, picked, dtype))
    return chunks


def _chunk(columns: dict[str, np.ndarray], texts: dict[str, list[str | None] | None], dtype: type) -> SeriesChunk:
    """A chunk of buffered columns whose values are all of ``dtype`` (int64, or float64 kept as its bits)."""
    return SeriesChunk(
        columns["time_unix_nano"],
        columns["value"].view(dtype),
        start_time_unix_nano=columns["start_time_unix_nano"],
        step=columns["step"],
        step_missing=columns["step_missing"],
        epoch=columns["epoch"],
        epoch_missing=columns["epoch_missing"],
        value_missing=columns["value_missing"],
        row_id=columns["row_id"],
        histogram=texts["histogram"],
        extra=texts["extra"],
    )


class _SeriesBuffer:
    """Parts buffered per series, and which series are due to be written."""

    def __init__(self) -> None:
        self._parts: dict[SeriesKey, list[_Part]] = {}
        self._points: dict[SeriesKey, int] = {}
        self.nbytes = 0

    def add(self, key: SeriesKey, part: _Part) -> None:
        self._parts.setdefault(key, []).append(part)
        self._points[key] = self._points.get(key, 0) + len(part)
        self.nbytes += part.nbytes()

    def due(self, *, everything: bool = False) -> list[SeriesKey]:
        """The series to write now: full ones, or every one if the buffer is past its bound (or ``everything``)."""
        if everything or self.nbytes > BUFFER_BYTES:
            return list(self._parts)
        return [key for key, n in self._points.items() if n >= SERIES_POINTS]

    def row_ids(self, keys: Sequence[SeriesKey]) -> np.ndarray:
        return np.concatenate([p.columns["row_id"] for key in keys for p in self._parts[key]])

    def pop(self, keys: Sequence[SeriesKey]) -> Iterator[tuple[SeriesKey, SeriesChunk]]:
        """The chunks of ``keys``, each series' buffer freed as it is encoded."""
        for key in keys:
            parts = self._parts.pop(key)
            del self._points[key]
            self.nbytes -= sum(p.nbytes() for p in parts)
            for chunk in _chunks(parts):
                yield key, chunk


#: Writes the due series of a buffer: (conn, buffer, keys) -> points written.
_Sink = Callable[[sqlite3.Connection, _SeriesBuffer, Sequence[SeriesKey]], int]


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
    buffer = _SeriesBuffer()
    after = 0
    while True:
        rows = conn.execute(_SELECT, (after, PAGE_ROWS)).fetchall()
        if not rows:
            break
        after = int(rows[-1][0])
        for key, part in _page_parts(rows):
            buffer.add(key, part)
        del rows
        due = buffer.due()
        if due:
            progress.add(sink(conn, buffer, due))
    due = buffer.due(everything=True)
    if due:
        progress.add(sink(conn, buffer, due))


class _Moved(Exception):
    """Some rows to convert were gone: another process converted them."""


def _runs(row_ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ``row_ids`` as runs of consecutive ids ``(first, last)``."""
    breaks = np.flatnonzero(np.diff(row_ids) != 1)
    firsts = row_ids[np.concatenate(([0], breaks + 1))]
    lasts = row_ids[np.concatenate((breaks, [len(row_ids) - 1]))]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def _move(conn: sqlite3.Connection, buffer: _SeriesBuffer, keys: Sequence[SeriesKey]) -> int:
    """One transaction: the rows of ``keys`` deleted from ``points``, their chunks inserted, the count in meta."""
    row_ids = np.sort(buffer.row_ids(keys))
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = conn.executemany("DELETE FROM main.points WHERE id BETWEEN ? AND ?", _runs(row_ids)).rowcount
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


def _insert(conn: sqlite3.Connection, buffer: _SeriesBuffer, keys: Sequence[SeriesKey]) -> int:
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


def _begin(conn: sqlite3.Connection) -> int:
    """Before moving rows: the old unique index goes (it only slows the deletes) and next_row_id passes every id; rows left."""
    conn.execute("BEGIN IMMEDIATE")
    try:
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


def _finish(conn: sqlite3.Connection) -> bool:
    """If ``points`` is empty: drop the old tables and set version 4, in one transaction; False if rows are left."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _has_table(conn, "points"):
            if conn.execute("SELECT 1 FROM main.points LIMIT 1").fetchone() is not None:
                conn.execute("COMMIT")
                return False
            conn.execute("DROP TABLE main.points")  # its points_identity index (versions 1-2) goes with it
        conn.execute("DROP TABLE IF EXISTS main.blocks")
        conn.execute("DELETE FROM main.meta WHERE key = ?", (_PROGRESS_KEY,))
        conn.execute("INSERT OR REPLACE INTO main.meta(key, value) VALUES ('schema_version', '4')")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def convert_rows(conn: sqlite3.Connection) -> None:
    """Move every row of ``points`` into chunks, then make the file version 4 (see the module docstring).

    ``conn`` is a writable connection in autocommit mode (``isolation_level=None``) whose schema
    has the chunk tables (:func:`~.schema.create_schema`). Safe to kill at any moment: the next
    call goes on where this one stopped. Safe to run in several processes at once: the rows
    one of them moved are never moved again.
    """
    if not _has_table(conn, "points"):
        _finish(conn)  # a conversion that another process completed (or one killed before vacuuming)
        return
    path, version = _path(conn), _version(conn)
    left = _begin(conn)
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
    while True:
        try:
            _stream(conn, _move, progress)
        except _Moved:
            _log.info("otel-recursive-metrics: store %s: another process is converting it too; reading what is left again", path)
            continue
        if _finish(conn):
            break
    vacuumed = _vacuum(conn, path)
    _log.info(
        "otel-recursive-metrics: store %s converted to schema version 4: %d points in %.1f s; file %.1f MB -> %.1f MB%s",
        path,
        progress.done,
        time.monotonic() - started,
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
    if not free or free < pages // 4:
        return True
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        _log.info("otel-recursive-metrics: store %s: not vacuumed after its conversion (%s); its free pages are reused", path, exc)
        return False
    return True


def _temporary_schema() -> list[str]:
    """CHUNK_SCHEMA's statements made TEMP: the same columns, in the connection's temporary database."""
    text = CHUNK_SCHEMA.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TEMP TABLE ").replace(
        "CREATE INDEX IF NOT EXISTS ", "CREATE INDEX temp."
    )
    statements = [s.strip() for s in text.split(";") if s.strip()]
    if any("IF NOT EXISTS" in s for s in statements):
        raise AssertionError(f"chunk_index.CHUNK_SCHEMA has a statement readable_rows does not make TEMP: {statements}")
    return statements


def readable_rows(conn: sqlite3.Connection) -> None:
    """Make a read-only connection to an earlier version's store see its points as chunks (TEMP tables; see the module docstring)."""
    columns = ", ".join(name.strip().removeprefix("c.") for name in CHUNK_COLUMNS.split(","))
    conn.execute("BEGIN")  # one snapshot: a conversion committing meanwhile moves nothing twice, loses nothing
    try:
        for statement in _temporary_schema():
            conn.execute(statement)
        if _has_table(conn, "chunks"):
            conn.execute(f"INSERT INTO temp.chunks({columns}) SELECT {columns} FROM main.chunks")
            conn.execute("INSERT INTO temp.chunk_data(chunk_id, data) SELECT chunk_id, data FROM main.chunk_data")
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
