"""The durable queue: batches on disk until every sink has a final outcome for them.

Like the Collector's persistent queue it keeps a write index (records get increasing ids) and,
per sink, a read index (``cursors``: the last record that sink finished with). A record is
deleted once every configured sink's cursor has passed it. What a sink was sending when the
process died is simply the first record after its cursor, so it is sent again at restart:
at-least-once on the wire, exactly once in the store (which de-duplicates).

On disk: ``$DIR/queue/slot-N.db`` (SQLite, WAL), each guarded by ``slot-N.lock`` held with
``flock`` for the life of the process. A process takes the first free slot, so DDP ranks or a
forked DataLoader worker sharing one data folder never read each other's records; after a crash
the kernel frees the lock and the next process to start adopts the orphaned slot's records.
Writes commit with ``synchronous=NORMAL`` (safe against ``kill -9`` at any instant) and
:meth:`DurableQueue.sync` checkpoints with fsync, which the worker calls every flush interval.

Thread safety: one connection behind one lock; every method is safe from any thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .._files import connect, make_private_dir

__all__ = ["DurableQueue", "QueueFull", "QueueRecord"]

_log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY AUTOINCREMENT, created_unix_nano INTEGER NOT NULL,"
    " points INTEGER NOT NULL, bytes INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, done_id INTEGER NOT NULL)",
)

# Connections abandoned in a forked child: never closed there (closing would touch the
# parent's locks), kept referenced so the garbage collector does not close them either.
_abandoned: list[object] = []


class QueueFull(Exception):
    """The byte cap would be exceeded and the overflow policy refuses new records."""


@dataclass(frozen=True)
class QueueRecord:
    id: int
    points: int
    payload: bytes


class DurableQueue:
    """Batches on disk with one read position per sink; see the module docstring."""

    def __init__(self, folder: Path, sinks: tuple[str, ...], *, max_bytes: int, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.sinks = sinks
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        make_private_dir(self.folder)
        self._lock_fd, self.slot = self._take_slot()
        self.path = self.folder / f"slot-{self.slot}.db"
        self._conn = self._open(self.path)
        self._cursor: dict[str, int] = {}
        for sink in sinks:
            self._conn.execute("INSERT OR IGNORE INTO cursors(sink, done_id) VALUES (?, 0)", (sink,))
        for sink, done in self._conn.execute("SELECT sink, done_id FROM cursors"):
            if sink in sinks:
                self._cursor[sink] = int(done)
        self.bytes = int(self._conn.execute("SELECT ifnull(sum(bytes), 0) FROM records").fetchone()[0])
        self.adopted_records = self._adopt_orphans()
        self._delete_done()

    # -- opening -------------------------------------------------------------------------------

    def _take_slot(self) -> tuple[int, int]:
        for slot in range(4096):
            fd = os.open(self.folder / f"slot-{slot}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue
                raise
            return fd, slot
        raise RuntimeError(f"no free queue slot in {self.folder} (4096 taken)")

    def _open(self, path: Path) -> sqlite3.Connection:
        conn = connect(path)
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)
        return conn

    def _adopt_orphans(self) -> int:
        """Move undelivered records of slots no live process holds into ours."""
        moved = 0
        for lock_path in sorted(self.folder.glob("slot-*.lock")):
            try:
                slot = int(lock_path.stem.split("-", 1)[1])
            except ValueError:
                continue
            db_path = self.folder / f"slot-{slot}.db"
            if slot == self.slot or not db_path.exists():
                continue
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process owns it
                other = self._open(db_path)
                try:
                    cursors = {s: int(d) for s, d in other.execute("SELECT sink, done_id FROM cursors")}
                    floor = min((cursors.get(s, 0) for s in self.sinks), default=0)
                    rows = other.execute(
                        "SELECT created_unix_nano, points, bytes, payload FROM records WHERE id > ? ORDER BY id", (floor,)
                    ).fetchall()
                    if rows:
                        # Records another sink already finished are sent again: at-least-once.
                        self._conn.execute("BEGIN IMMEDIATE")
                        self._conn.executemany("INSERT INTO records(created_unix_nano, points, bytes, payload) VALUES (?,?,?,?)", rows)
                        self._conn.execute("COMMIT")
                        self.bytes += sum(r[2] for r in rows)
                        moved += len(rows)
                finally:
                    other.close()
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(str(db_path) + suffix)
                    except FileNotFoundError:
                        pass
                if moved:
                    _log.info("adopted %d undelivered record(s) from %s", len(rows), db_path)
            finally:
                os.close(fd)
        return moved

    # -- writing -------------------------------------------------------------------------------

    def append(self, payloads: list[tuple[int, int, bytes]], *, drop_oldest: bool) -> tuple[int, int]:
        """Append ``(created_unix_nano, points, payload)`` records in one transaction.

        Returns ``(last_id, points_dropped_to_make_room)``. Past the byte cap, with
        ``drop_oldest`` the oldest records are deleted first (their points are reported as
        dropped); otherwise :class:`QueueFull` is raised and nothing is written.
        """
        new_bytes = sum(len(p) for _, _, p in payloads)
        dropped = 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self.bytes + new_bytes > self.max_bytes:
                    if not drop_oldest:
                        raise QueueFull(f"durable queue at its byte cap ({self.max_bytes} bytes)")
                    need = self.bytes + new_bytes - self.max_bytes
                    freed = 0
                    victims: list[int] = []
                    for rid, points, size in conn.execute("SELECT id, points, bytes FROM records ORDER BY id"):
                        if freed >= need:
                            break
                        victims.append(rid)
                        dropped += points
                        freed += size
                    conn.executemany("DELETE FROM records WHERE id = ?", [(v,) for v in victims])
                    self.bytes -= freed
                cur = conn.executemany(
                    "INSERT INTO records(created_unix_nano, points, bytes, payload) VALUES (?,?,?,?)",
                    [(t, n, len(p), p) for t, n, p in payloads],
                )
                del cur
                last_id = int(conn.execute("SELECT ifnull(max(id), 0) FROM records").fetchone()[0])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.bytes += new_bytes
            return last_id, dropped

    def sync(self) -> None:
        """Make everything committed so far survive a power loss (fsync via checkpoint)."""
        if not self._fsync:
            return
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- reading -------------------------------------------------------------------------------

    def next_for(self, sink: str, *, with_payload: bool = True) -> QueueRecord | None:
        """The first record ``sink`` has not finished, or None (payload empty if not asked for)."""
        column = "payload" if with_payload else "x''"
        with self._lock:
            row = self._conn.execute(
                f"SELECT id, points, {column} FROM records WHERE id > ? ORDER BY id LIMIT 1", (self._cursor[sink],)
            ).fetchone()
        return None if row is None else QueueRecord(int(row[0]), int(row[1]), bytes(row[2]))

    def payload(self, record_id: int) -> bytes:
        """One record's payload (raises KeyError if it is gone)."""
        with self._lock:
            row = self._conn.execute("SELECT payload FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(record_id)
        return bytes(row[0])

    def done(self, sink: str, record_id: int) -> None:
        """Record that ``sink`` has a final outcome for every record up to ``record_id``."""
        with self._lock:
            self._cursor[sink] = max(self._cursor[sink], record_id)
            self._conn.execute("UPDATE cursors SET done_id = ? WHERE sink = ?", (self._cursor[sink], sink))
            self._delete_done_locked()

    def _delete_done(self) -> None:
        with self._lock:
            self._delete_done_locked()

    def _delete_done_locked(self) -> None:
        floor = min(self._cursor.values()) if self._cursor else 0
        row = self._conn.execute("SELECT ifnull(sum(bytes), 0), count(*) FROM records WHERE id <= ?", (floor,)).fetchone()
        if row[1]:
            self._conn.execute("DELETE FROM records WHERE id <= ?", (floor,))
            self.bytes -= int(row[0])

    def cursor(self, sink: str) -> int:
        return self._cursor[sink]

    def last_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return 0 if row is None else int(row[0])

    def pending(self, sink: str | None = None) -> tuple[int, int]:
        """``(records, points)`` not yet finished by ``sink`` (by the slowest sink if None)."""
        floor = self._cursor[sink] if sink is not None else (min(self._cursor.values()) if self._cursor else 0)
        with self._lock:
            row = self._conn.execute("SELECT count(*), ifnull(sum(points), 0) FROM records WHERE id > ?", (floor,)).fetchone()
        return int(row[0]), int(row[1])

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                if self._fsync:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._conn.close()
            finally:
                os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop this queue without touching the parent's files or locks."""
        _abandoned.append(self._conn)
        try:
            # Our copy of the lock's open file description; the parent keeps its own.
            os.close(self._lock_fd)
        except OSError:
            pass
