"""The durable queue: batches on disk until every sink has a final outcome for them.

Like the Collector's persistent queue it keeps a write index (records get increasing ids) and,
per sink, a read index (``cursors``: the last record that sink finished with). A record is
deleted once every sink's cursor has passed it. What a sink was sending when the process died
is simply the first record after its cursor, so it is sent again at restart: at-least-once on
the wire, exactly once in the store (which de-duplicates).

On disk: ``$DIR/queue/slot-N.db`` (SQLite, WAL), each guarded by ``slot-N.lock`` held with
``flock`` for the life of the process. A process takes the first free slot, so DDP ranks or a
forked DataLoader worker sharing one data folder never read each other's records; after a crash
the kernel frees the lock and the next process to start adopts the orphaned slot's records.
Writes commit with ``synchronous=NORMAL`` (safe against ``kill -9`` at any instant) and
:meth:`QueueSlot.sync` checkpoints with fsync, which the worker calls every flush interval.

A slot's tables and its cursors are described in :mod:`.slot`. What a sink's cursor says is
owned by whoever delivers to it: the process itself for the sinks it sends to,
``otel-recursive-metrics sync`` for the sinks an offline run leaves alone
(``meta.offline_sinks``), which may therefore advance them while the run goes on.

Faults are handled here, never lost silently:

- a slot SQLite cannot read (damaged) is moved aside to ``slot-N.db.corrupt-<time>``, its
  pending points are counted (as far as they can be read) through ``on_corrupt``, its lock is
  released, and a fresh slot takes its place;
- a cursor for a sink no longer configured, with records still pending for it, is handed to
  ``on_foreign`` (the worker dead-letters those records for that sink) before anything is
  deleted; in an adopted slot too;
- a drained slot gives its space back (see :mod:`.slot`).

Thread safety: one connection behind one lock; every method is safe from any thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .._files import is_damage, make_private_dir
from .slot import QueueFull, QueueRecord, QueueSlot, count_pending, quarantine

__all__ = ["CorruptSlot", "DurableQueue", "ForeignRecords", "QueueFull", "QueueRecord", "QueueSlot", "abandoned"]

_log = logging.getLogger(__name__)

# Connections and descriptors abandoned in a forked child: never closed there (closing would
# touch the parent's locks), kept referenced so the garbage collector does not close them either.
abandoned: list[object] = []

#: ``on_foreign(sink, records)``: records still pending for a sink no longer configured. Must
#: keep them (dead-letter them) or raise; they are deleted only after it returns.
ForeignRecords = Callable[[str, list[QueueRecord]], None]
#: ``on_corrupt(moved_to, points or None if unknown, error)``.
CorruptSlot = Callable[[Path, "int | None", BaseException], None]


class DurableQueue(QueueSlot):
    """The first free slot of ``folder``, locked for this process, with orphaned slots adopted.

    See the module docstring for ``on_foreign`` and ``on_corrupt``.
    """

    def __init__(
        self,
        folder: Path,
        sinks: tuple[str, ...],
        *,
        max_bytes: int,
        fsync: bool = True,
        offline_sinks: tuple[str, ...] = (),
        on_foreign: ForeignRecords | None = None,
        on_corrupt: CorruptSlot | None = None,
    ) -> None:
        self.folder = Path(folder)
        self._on_foreign = on_foreign
        self._on_corrupt = on_corrupt
        make_private_dir(self.folder)
        self._lock_fd, self.slot = self._take_slot()
        path = self.folder / f"slot-{self.slot}.db"
        try:
            try:
                super().__init__(path, sinks, max_bytes=max_bytes, fsync=fsync, offline_sinks=offline_sinks)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                self._quarantine(path, exc)
                super().__init__(path, sinks, max_bytes=max_bytes, fsync=fsync, offline_sinks=offline_sinks)
            self.handle_foreign(self)
            self.adopted_records = self._adopt_orphans()
            self.delete_done()
        except BaseException:
            os.close(self._lock_fd)
            raise

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

    def _quarantine(self, path: Path, exc: BaseException) -> None:
        points = count_pending(path)
        moved = quarantine(path)
        _log.error(
            "otel-recursive-metrics: queue slot %s is damaged (%s); moved aside to %s; %s point(s) in it are lost",
            path,
            exc,
            moved,
            "an unknown number of" if points is None else points,
        )
        if self._on_corrupt is not None:
            self._on_corrupt(moved, points, exc)

    def handle_foreign(self, slot: QueueSlot) -> bool:
        """Hand what ``slot`` holds for sinks no longer configured to ``on_foreign``; True if all went."""
        for sink, done in slot.foreign_sinks().items():
            records = list(slot.records_after(done))
            if records and self._on_foreign is not None:
                try:
                    self._on_foreign(sink, records)
                except Exception as exc:  # noqa: BLE001 - keep them on disk for the next start
                    _log.error(
                        "otel-recursive-metrics: keeping %d record(s) pending for removed sink %s in %s: %s",
                        len(records),
                        sink,
                        slot.path,
                        exc,
                    )
                    return False
            elif records:
                return False
            slot.forget_sink(sink)
        return True

    def _adopt_orphans(self) -> int:
        """Move undelivered records of slots no live process holds into ours."""
        adopted = 0
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
                adopted += self._adopt(db_path)
            finally:
                os.close(fd)
        return adopted

    def _adopt(self, db_path: Path) -> int:
        try:
            # The orphan's own sinks are ours plus whatever it had: open it delivering ours.
            other = QueueSlot(db_path, self.sinks, max_bytes=2**62, fsync=False, offline_sinks=self.offline_sinks)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            self._quarantine(db_path, exc)
            return 0
        try:
            if not self.handle_foreign(other):
                return 0  # leave it for a later start
            floor = min((other.cursor(s) for s in (*self.sinks, *self.offline_sinks)), default=0)
            moved = 0
            rows = list(other.records_after(floor))
            if rows:
                # Records another sink already finished are sent again: at-least-once.
                with self._lock:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.executemany(
                        "INSERT INTO records(created_unix_nano, points, bytes, payload) VALUES (?,?,?,?)",
                        [(time.time_ns(), r.points, len(r.payload), r.payload) for r in rows],
                    )
                    self._conn.execute("COMMIT")
                    self.bytes += sum(len(r.payload) for r in rows)
                moved = len(rows)
        finally:
            other.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(str(db_path) + suffix)
            except FileNotFoundError:
                pass
        if moved:
            _log.info("otel-recursive-metrics: adopted %d undelivered record(s) from %s", moved, db_path)
        return moved

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            super().close()
        finally:
            os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop this queue without touching the parent's files or locks."""
        abandoned.append(self._conn)
        try:
            # Our copy of the lock's open file description; the parent keeps its own.
            os.close(self._lock_fd)
        except OSError:
            pass
