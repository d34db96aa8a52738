"""One slot of the durable queue: a SQLite file of records, a read position per sink, metadata.

Tables::

    records(id, created_unix_nano, points, bytes, payload)   -- payload: PointBatch.encode()
                                                             -- (binary; JSON from earlier releases)
    cursors(sink, done_id)                                   -- one row per sink
    meta(key, value)                                         -- offline_sinks, pid

Records get increasing ids; a sink's cursor is the last record it has a final outcome for; a
record is deleted once every cursor has passed it. The cursors of the sinks this process
delivers are kept in memory (and written through); the others (a sink left to ``sync`` by an
offline run, a sink no longer configured) are re-read from the file, since another process may
move them. A drained slot gives its space back (incremental vacuum; the WAL cut back after each
checkpoint). :class:`~.folder.DurableQueue` is the slot a running process holds; ``sync`` opens
another process's slot with ``claim=False`` (see :mod:`.pending`).

Past the byte cap, ``drop_oldest`` evicts the oldest records, but never one a sink of this
process is sending (read with :meth:`QueueSlot.next_for`, not yet finished): its delivery ends
it, exactly once. An evicted record is lost only for the sinks whose cursor had not passed it,
and :meth:`QueueSlot.append` reports it for those alone. :meth:`QueueSlot.append_records` takes
records read from another slot (an orphan adopted) under the same cap.

Thread safety: one connection behind one lock; every method is safe from any thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import SQLITE_SUFFIXES, connect

__all__ = ["QueueFull", "QueueRecord", "QueueSlot", "count_pending", "quarantine"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY AUTOINCREMENT, created_unix_nano INTEGER NOT NULL,"
    " points INTEGER NOT NULL, bytes INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, done_id INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

#: Free pages (4 KiB each) past which a sync gives space back to the file system.
_VACUUM_FREE_PAGES = 256
#: The WAL is cut back to this after a checkpoint.
_WAL_LIMIT_BYTES = 4 * 1024 * 1024


class QueueFull(Exception):
    """The byte cap would be exceeded and the overflow policy refuses new records."""


@dataclass(frozen=True)
class QueueRecord:
    id: int
    points: int
    payload: bytes


def quarantine(path: Path) -> Path:
    """Move a damaged SQLite file (and its WAL and index) aside; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in SQLITE_SUFFIXES:
        try:
            os.replace(str(path) + suffix, str(target) + suffix)
        except FileNotFoundError:
            pass
    return target


def count_pending(path: Path) -> int | None:
    """Points still pending in a (maybe damaged) slot file, or None if unreadable."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            cursors = [int(d) for (d,) in conn.execute("SELECT done_id FROM cursors")]
            floor = min(cursors, default=0)
            return int(conn.execute("SELECT ifnull(sum(points), 0) FROM records WHERE id > ?", (floor,)).fetchone()[0])
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - damaged: say "unknown" rather than guess
        return None


class QueueSlot:
    """One slot file: records, a cursor per sink, and the process's metadata.

    ``sinks`` are the sinks this process delivers itself (their cursors are kept in memory);
    ``offline_sinks`` the ones it leaves to ``sync``. ``claim=False`` opens a slot another
    process owns (``sync``): its cursors and metadata are read, not written. Opening raises
    ``sqlite3.DatabaseError`` if the file is damaged (see :func:`quarantine`).
    """

    #: False for a stand-in that can hold nothing (see :class:`~.folder.UnusableQueue`).
    usable = True

    def __init__(
        self,
        path: Path,
        sinks: tuple[str, ...],
        *,
        max_bytes: int,
        fsync: bool = True,
        offline_sinks: tuple[str, ...] = (),
        claim: bool = True,
    ) -> None:
        self.path = Path(path)
        self.sinks = sinks
        self.offline_sinks = offline_sinks
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._conn = self._open(self.path)
        try:
            if claim:
                for sink in (*sinks, *offline_sinks):
                    self._conn.execute("INSERT OR IGNORE INTO cursors(sink, done_id) VALUES (?, 0)", (sink,))
                self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('offline_sinks', ?)", (",".join(offline_sinks),))
                self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('pid', ?)", (str(os.getpid()),))
            self._cursor: dict[str, int] = {}
            self._external: dict[str, int] = {}
            #: The record each sink read with next_for and has not finished: never evicted.
            self._sending: dict[str, int] = {}
            self._read_cursors()
            self.bytes = int(self._conn.execute("SELECT ifnull(sum(bytes), 0) FROM records").fetchone()[0])
        except BaseException:
            self._conn.close()
            raise

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        new = not path.exists() or path.stat().st_size == 0
        conn = connect(path)
        try:
            if new:
                # Must precede the first table: lets a drained slot give pages back.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read_cursors(self) -> None:
        rows = self._conn.execute("SELECT sink, done_id FROM cursors").fetchall()
        for sink, done in rows:
            if sink in self.sinks:
                self._cursor.setdefault(sink, int(done))
            else:
                self._external[sink] = int(done)

    # -- writing -------------------------------------------------------------------------------

    def append(self, payloads: list[tuple[int, int, bytes]], *, drop_oldest: bool) -> tuple[int, dict[str, int]]:
        """Append ``(created_unix_nano, points, payload)`` records in one transaction.

        Returns ``(last_id, evicted)``: ``evicted`` maps each sink (with a cursor here) to the
        points it lost to make room, empty if nothing was evicted. Past the byte cap, with
        ``drop_oldest`` the oldest records are deleted first, except those a sink is sending;
        otherwise, or when evicting every other record would not make room, :class:`QueueFull`
        is raised and nothing is written or deleted.
        """
        new_bytes = sum(len(p) for _, _, p in payloads)
        evicted: dict[str, int] = {}
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                freed = 0
                need = self.bytes + new_bytes - self.max_bytes
                if need > 0:
                    if not drop_oldest:
                        raise QueueFull(f"durable queue at its byte cap ({self.max_bytes} bytes)")
                    victims, freed = self._victims_locked(need, evicted)
                    if freed < need:
                        raise QueueFull(
                            f"durable queue at its byte cap ({self.max_bytes} bytes): {new_bytes} new bytes need {need}"
                            f" freed, and only {freed} are not being sent"
                        )
                    conn.executemany("DELETE FROM records WHERE id = ?", [(v,) for v in victims])
                conn.executemany(
                    "INSERT INTO records(created_unix_nano, points, bytes, payload) VALUES (?,?,?,?)",
                    [(t, n, len(p), p) for t, n, p in payloads],
                )
                last_id = int(conn.execute("SELECT ifnull(max(id), 0) FROM records").fetchone()[0])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.bytes += new_bytes - freed
            return last_id, evicted

    def append_records(self, records: Sequence[QueueRecord], *, drop_oldest: bool) -> tuple[int, dict[str, int]]:
        """Append records read from another slot, stamped now: :meth:`append`, byte cap included."""
        now = time.time_ns()
        return self.append([(now, r.points, r.payload) for r in records], drop_oldest=drop_oldest)

    def _victims_locked(self, need: int, evicted: dict[str, int]) -> tuple[list[int], int]:
        """The oldest records not being sent, up to ``need`` bytes (or all of them), and the bytes
        they free; adds what each sink loses to ``evicted`` (a sink past a record loses nothing)."""
        self._refresh_external_locked()  # sync may have moved an offline sink's cursor
        cursors = {**self._external, **self._cursor}
        sending = set(self._sending.values())
        victims: list[int] = []
        freed = 0
        for rid, points, size in self._conn.execute("SELECT id, points, bytes FROM records ORDER BY id"):
            if freed >= need:
                break
            if rid in sending:
                continue
            victims.append(rid)
            freed += size
            for sink, done in cursors.items():
                if done < rid:
                    evicted[sink] = evicted.get(sink, 0) + points
        return victims, freed

    def sync(self) -> None:
        """Make what is committed survive a power loss (fsync via checkpoint), and give drained space back."""
        with self._lock:
            conn = self._conn
            self._refresh_external_locked()
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free > _VACUUM_FREE_PAGES:
                conn.execute("PRAGMA incremental_vacuum").fetchall()
            empty = conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None
            if empty and free > _VACUUM_FREE_PAGES and int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 0:
                # A slot file made before incremental vacuum: rewriting an empty one is cheap.
                conn.execute("VACUUM")
            if self._fsync or empty:
                conn.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if empty else 'PASSIVE'})").fetchall()
            self.bytes = int(conn.execute("SELECT ifnull(sum(bytes), 0) FROM records").fetchone()[0])

    # -- reading -------------------------------------------------------------------------------

    def next_for(self, sink: str, *, with_payload: bool = True) -> QueueRecord | None:
        """The first record ``sink`` has not finished, or None (payload empty if not asked for).

        The record counts as being sent by ``sink`` (it is not evicted) until :meth:`done`
        passes it.
        """
        column = "payload" if with_payload else "x''"
        with self._lock:
            row = self._conn.execute(
                f"SELECT id, points, {column} FROM records WHERE id > ? ORDER BY id LIMIT 1", (self._cursor_locked(sink),)
            ).fetchone()
            if row is None:
                return None
            self._sending[sink] = int(row[0])
        return QueueRecord(int(row[0]), int(row[1]), bytes(row[2]))

    def payload(self, record_id: int) -> bytes:
        """One record's payload (raises KeyError if it is gone)."""
        with self._lock:
            row = self._conn.execute("SELECT payload FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(record_id)
        return bytes(row[0])

    def records_after(self, record_id: int, *, until_id: int | None = None) -> Iterator[QueueRecord]:
        """Every record after ``record_id`` (up to ``until_id``), in order, read in small groups."""
        last = record_id
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT id, points, payload FROM records WHERE id > ? AND id <= ? ORDER BY id LIMIT 16",
                    (last, until_id if until_id is not None else 2**63 - 1),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield QueueRecord(int(row[0]), int(row[1]), bytes(row[2]))
            last = int(rows[-1][0])

    def done(self, sink: str, record_id: int) -> None:
        """Record that ``sink`` has a final outcome for every record up to ``record_id``."""
        with self._lock:
            if sink in self._cursor:
                self._cursor[sink] = max(self._cursor[sink], record_id)
                value = self._cursor[sink]
            else:
                value = max(self._external.get(sink, 0), record_id)
                self._external[sink] = value
            self._conn.execute("UPDATE cursors SET done_id = max(done_id, ?) WHERE sink = ?", (value, sink))
            if self._sending.get(sink, 0) <= value:
                self._sending.pop(sink, None)
            self._delete_done_locked()

    def forget_sink(self, sink: str) -> None:
        """Drop a sink's cursor (its pending records were dead-lettered); deletes what nobody needs."""
        with self._lock:
            self._conn.execute("DELETE FROM cursors WHERE sink = ?", (sink,))
            self._external.pop(sink, None)
            self._sending.pop(sink, None)
            self._delete_done_locked()

    def delete_done(self) -> None:
        with self._lock:
            self._delete_done_locked()

    def _refresh_external_locked(self) -> None:
        for sink, done in self._conn.execute("SELECT sink, done_id FROM cursors").fetchall():
            if sink not in self._cursor:
                self._external[sink] = int(done)

    def _floor_locked(self) -> int:
        values = [*self._cursor.values(), *self._external.values()]
        return min(values) if values else 0

    def _delete_done_locked(self) -> None:
        floor = self._floor_locked()
        row = self._conn.execute("SELECT ifnull(sum(bytes), 0), count(*) FROM records WHERE id <= ?", (floor,)).fetchone()
        if row[1]:
            self._conn.execute("DELETE FROM records WHERE id <= ?", (floor,))
            self.bytes -= int(row[0])

    def _cursor_locked(self, sink: str) -> int:
        if sink in self._cursor:
            return self._cursor[sink]
        return self._external.get(sink, 0)

    def cursor(self, sink: str) -> int:
        with self._lock:
            return self._cursor_locked(sink)

    def foreign_sinks(self) -> dict[str, int]:
        """Sinks with a cursor here that this process neither delivers nor leaves to ``sync``."""
        with self._lock:
            self._refresh_external_locked()
            return {s: c for s, c in self._external.items() if s not in self.offline_sinks}

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def last_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return 0 if row is None else int(row[0])

    def pending(self, sink: str | None = None) -> tuple[int, int]:
        """``(records, points)`` not yet finished by ``sink`` (by the slowest sink if None)."""
        with self._lock:
            floor = self._cursor_locked(sink) if sink is not None else self._floor_locked()
            row = self._conn.execute("SELECT count(*), ifnull(sum(points), 0) FROM records WHERE id > ?", (floor,)).fetchone()
        return int(row[0]), int(row[1])

    def pending_by_sink(self) -> dict[str, int]:
        """Points not yet finished, per sink with a cursor here."""
        with self._lock:
            self._refresh_external_locked()
            cursors = {**self._external, **self._cursor}
            out = {}
            for sink, done in cursors.items():
                out[sink] = int(self._conn.execute("SELECT ifnull(sum(points), 0) FROM records WHERE id > ?", (done,)).fetchone()[0])
        return out

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                if self._fsync:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self._conn.close()
