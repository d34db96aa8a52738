"""The durable queue: batches on disk until every sink has a final outcome for them.

Like the Collector's persistent queue it keeps a write index (records get increasing ids) and,
per sink, a read index (``cursors``: the last record that sink finished with). A record is
deleted once every sink's cursor has passed it. What a sink was sending when the process died
is simply the first record after its cursor, so it is sent again at restart: at-least-once on
the wire, exactly once in the store (which de-duplicates).

On disk: ``$DIR/queue/slot-N.db`` (SQLite, WAL), each guarded by ``slot-N.lock`` held with
``flock`` for the life of the process. A process takes the first free slot, so DDP ranks or a
forked DataLoader worker sharing one data folder never read each other's records; after a crash
the kernel frees the lock and the next process to start adopts the orphaned slot's records
(under its own byte cap: an orphan whose records do not fit stays where it is, for a later start
or ``otel-recursive-metrics sync``). Writes commit with ``synchronous=NORMAL`` (safe against
``kill -9`` at any instant) and :meth:`QueueSlot.sync` checkpoints with fsync, which the worker
calls every flush interval.

A slot's tables and its cursors are described in :mod:`.slot`. What a sink's cursor says is
owned by whoever delivers to it: the process itself for the sinks it sends to,
``otel-recursive-metrics sync`` for the sinks an offline run leaves alone
(``meta.offline_sinks``), which may therefore advance them while the run goes on.

Faults are handled here, never lost silently:

- a slot SQLite cannot read (damaged) is moved aside to ``slot-N.db.corrupt-<time>``, its
  pending points are counted (as far as they can be read) through ``on_corrupt``, its lock is
  released, and a fresh slot takes its place;
- something that is not a regular file where a slot's file belongs (a folder, a FIFO, a
  dangling link as ``slot-N.db``, its ``-wal`` or ``-shm``, or ``slot-N.lock``) is never opened:
  it is moved aside to ``<name>.junk-<time>``, reported through ``on_corrupt`` (with 0 points:
  none of ours can be in it) and a fresh file takes its place (see :func:`lock_slot`);
- a cursor for a sink no longer configured, with records still pending for it, is handed to
  ``on_foreign`` (the worker dead-letters those records for that sink) before anything is
  deleted; in an adopted slot too;
- a drained slot gives its space back (see :mod:`.slot`).

The folder's files are handled here for the worker and ``sync`` (:mod:`.pending`) alike:
:func:`folder_slots` lists the slots, :func:`claim_slot` takes one no live process holds.

Thread safety: one connection behind one lock; every method is safe from any thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._files import SQLITE_SUFFIXES, NotARegularFile, file_kind, is_damage, make_private_dir, open_regular, remove_sqlite_files, set_aside
from .slot import QueueFull, QueueRecord, QueueSlot, count_pending, quarantine

__all__ = [
    "CorruptSlot",
    "DurableQueue",
    "ForeignRecords",
    "JunkFile",
    "QueueFull",
    "QueueRecord",
    "QueueSlot",
    "UnusableQueue",
    "abandoned",
    "claim_slot",
    "clear_slot_junk",
    "folder_slots",
    "lock_slot",
    "slot_junk",
]

_log = logging.getLogger(__name__)

# Connections and descriptors abandoned in a forked child: never closed there (closing would
# touch the parent's locks), kept referenced so the garbage collector does not close them either.
abandoned: list[object] = []

#: ``on_foreign(sink, records)``: records still pending for a sink no longer configured. Must
#: keep them (dead-letter them) or raise; they are deleted only after it returns.
ForeignRecords = Callable[[str, list[QueueRecord]], None]
#: ``on_corrupt(moved_to, points or None if unknown, error)``.
CorruptSlot = Callable[[Path, "int | None", BaseException], None]
#: ``on_junk(moved_to, error)``: something not a regular file was moved aside (``error`` says what).
JunkFile = Callable[[Path, NotARegularFile], None]

#: How long a process waits for the folder's own lock to move junk aside (a rename takes less).
_FOLDER_LOCK_WAIT_S = 10.0
_SLOTS = 4096


def _move_junk(path: Path, error: NotARegularFile, on_junk: JunkFile | None) -> None:
    try:
        moved = set_aside(path, "junk")
    except OSError as exc:
        raise NotARegularFile(path, f"{error.kind} (and it cannot be moved aside: {exc.strerror or exc})") from exc
    if on_junk is not None:
        on_junk(moved, error)


def _clear_junk_lock(folder: Path, path: Path, on_junk: JunkFile | None) -> None:
    """Move junk at a lock's path aside, holding the folder's own ``flock`` meanwhile.

    Two processes that both find the junk must not move each other's fresh lock file aside: the
    second one, once it has the folder's lock, finds a regular file there and leaves it.
    """
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + _FOLDER_LOCK_WAIT_S
        pause = threading.Event()
        while True:
            try:
                fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
            pause.wait(0.01)
        kind = file_kind(path)
        if kind is not None:
            _move_junk(path, NotARegularFile(path, kind), on_junk)
    finally:
        os.close(dir_fd)  # frees the folder's lock


def lock_slot(folder: Path, slot: int, *, on_junk: JunkFile | None = None) -> int | None:
    """Lock ``slot-N.lock`` for this process without waiting: its descriptor, or None when a
    live process holds it.

    The lock file is made if missing. Something else than a regular file at its path (a folder,
    a FIFO, a dangling link) is never opened: it is moved aside (``on_junk`` is told) and a fresh
    lock file takes its place. :class:`NotARegularFile` if it cannot be moved aside.
    """
    path = folder / f"slot-{slot}.lock"
    try:
        fd = open_regular(path, os.O_CREAT | os.O_RDWR)
    except NotARegularFile:
        _clear_junk_lock(folder, path, on_junk)
        fd = open_regular(path, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def slot_junk(db_path: Path) -> list[NotARegularFile]:
    """What is not a regular file among a slot's ``.db``, ``-wal`` and ``-shm`` (nothing is opened)."""
    out = []
    for suffix in SQLITE_SUFFIXES:
        path = Path(str(db_path) + suffix)
        kind = file_kind(path)
        if kind is not None:
            out.append(NotARegularFile(path, kind))
    return out


def clear_slot_junk(db_path: Path, *, on_junk: JunkFile | None = None) -> None:
    """Move aside whatever :func:`slot_junk` finds; only while holding the slot's lock.

    :class:`NotARegularFile` if something cannot be moved aside.
    """
    for error in slot_junk(db_path):
        _move_junk(error.path, error, on_junk)


def claim_slot(folder: Path, slot: int, *, on_junk: JunkFile | None = None) -> int | None:
    """Lock slot ``slot`` of ``folder`` and clear its junk (:func:`lock_slot`, then
    :func:`clear_slot_junk`): the lock's descriptor, or None when a live process holds it.

    :class:`NotARegularFile` (the lock released) if something cannot be moved aside.
    """
    fd = lock_slot(folder, slot, on_junk=on_junk)
    if fd is None:
        return None
    try:
        clear_slot_junk(folder / f"slot-{slot}.db", on_junk=on_junk)
    except BaseException:
        os.close(fd)
        raise
    return fd


def folder_slots(folder: Path) -> list[tuple[int, Path]]:
    """Every slot of ``folder`` that has a lock file and a ``.db`` (whatever it is): ``(number, db path)``."""
    out = []
    for lock_path in sorted(Path(folder).glob("slot-*.lock")):
        try:
            number = int(lock_path.stem.split("-", 1)[1])
        except ValueError:
            continue
        db_path = lock_path.with_suffix(".db")
        if os.path.lexists(db_path):
            out.append((number, db_path))
    return out


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
        for slot in range(_SLOTS):
            try:
                fd = claim_slot(self.folder, slot, on_junk=self._junk)
            except NotARegularFile as exc:
                _log.error("otel-recursive-metrics: queue slot %d cannot be used: %s; trying the next one", slot, exc)
                continue
            if fd is not None:  # else a live process holds it
                return fd, slot
        raise RuntimeError(f"no usable queue slot in {self.folder} ({_SLOTS} taken or unusable)")

    def _junk(self, moved: Path, error: NotARegularFile) -> None:
        _log.error("otel-recursive-metrics: %s; moved aside to %s, and a fresh file takes its place", error, moved)
        if self._on_corrupt is not None:
            self._on_corrupt(moved, 0, error)

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
        for slot, db_path in folder_slots(self.folder):
            if slot == self.slot:
                continue
            try:
                fd = claim_slot(self.folder, slot, on_junk=self._junk)
            except NotARegularFile as exc:
                _log.error("otel-recursive-metrics: queue slot %d cannot be adopted: %s", slot, exc)
                continue
            if fd is None:
                continue  # a live process owns it
            try:
                if db_path.exists():
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
            rows = list(other.records_after(floor))
            if rows:
                # Records another sink already finished are sent again: at-least-once. Nothing
                # of ours is evicted to make room: what does not fit stays in the orphan.
                try:
                    self.append_records(rows, drop_oldest=False)
                except QueueFull as exc:
                    _log.warning(
                        "otel-recursive-metrics: %d undelivered record(s) stay in %s (%s); a later start or"
                        " `otel-recursive-metrics sync` delivers them",
                        len(rows),
                        db_path,
                        exc,
                    )
                    return 0
            moved = len(rows)
        finally:
            other.close()
        remove_sqlite_files(db_path)
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


class UnusableQueue(QueueSlot):
    """Stands in for a durable queue that cannot be opened, when the store is the only sink.

    The store then takes every batch directly: it is the durable log (see the pipeline's
    store-direct write, :mod:`otel_recursive_metrics.pipeline.ingest`), so points still reach the disk. This stand-in holds
    no records (an in-memory SQLite database) and refuses every append with the error that kept
    the queue from opening: a batch the store does not take directly is held in memory and
    retried, and past the time bound counted as dropped for that reason, as it would be without
    the stand-in. The condition stays in ``get_stats()["queue_failing"]``.
    """

    usable = False

    def __init__(self, folder: Path, sinks: tuple[str, ...], error: BaseException) -> None:
        self.folder = Path(folder)
        self.error = error
        super().__init__(Path(":memory:"), sinks, max_bytes=0, fsync=False)

    def append(self, payloads: list[tuple[int, int, bytes]], *, drop_oldest: bool) -> tuple[int, dict[str, int]]:
        raise self.error.with_traceback(None)

    def abandon_after_fork(self) -> None:
        abandoned.append(self._conn)
