"""A queue folder's slots opened from outside, to deliver what they hold (``otel-recursive-metrics sync``).

Two kinds of slot hold something that a process other than their owner may deliver:

- a slot no live process holds (its run ended before delivering everything: an endpoint down
  at exit, a ``kill -9``, a SIGTERM): every sink's share is ours. :func:`open_folder_slots`
  locks it (:func:`~.folder.claim_slot`) so that no starting process adopts it meanwhile, and
  :meth:`PendingSlot.release` deletes its files once nothing is pending in it;
- a slot a live offline run holds: only the sinks it leaves to ``sync`` (``meta.offline_sinks``)
  are ours; the others stay that run's business, and its files are left alone.

Nothing that is not a regular file is ever opened (a FIFO would block): in a slot no process
holds it is moved aside, as a run would; in a live one it is left to its process. What was found
and dealt with is told through ``on_note``, a slot that cannot be used through ``on_error``,
each as one sentence.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from .._files import NotARegularFile, connect_readonly, remove_sqlite_files
from .folder import claim_slot, folder_slots, slot_junk
from .slot import QueueSlot

__all__ = ["PendingSlot", "open_folder_slots"]

#: A slot opened from outside never refuses a record for its size: it only ever gives records up.
_NO_CAP_BYTES = 2**62


class PendingSlot:
    """One slot of a queue folder opened by a process that does not own it.

    ``slot`` is open delivering ``sinks`` (their cursors are ours to move); ``until_id`` is the
    last record it held when opened, so a live run's later records wait for the next sync.
    ``live`` says that a live process holds the slot (we deliver its offline sinks only).
    """

    def __init__(self, slot: QueueSlot, sinks: tuple[str, ...], lock_fd: int | None) -> None:
        self.slot = slot
        self.sinks = sinks
        self.live = lock_fd is None
        self.until_id = slot.last_id()
        self._lock_fd = lock_fd
        self._released = False

    def pending_points(self, sink: str) -> int:
        """Points up to :attr:`until_id` that ``sink`` has not finished."""
        return sum(r.points for r in self.slot.records_after(self.slot.cursor(sink), until_id=self.until_id))

    def release(self) -> None:
        """Checkpoint and close the slot; delete its files when nothing in it is pending and no
        live process holds it; then free its lock. Idempotent."""
        if self._released:
            return
        self._released = True
        try:
            try:
                drained = self.slot.pending()[1] == 0
                self.slot.sync()
            finally:
                self.slot.close()
            if drained and self._lock_fd is not None:
                remove_sqlite_files(self.slot.path)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)


def _sinks_in(db: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A slot file's sinks (one per cursor) and those its run leaves to ``sync``, read without writing."""
    conn = connect_readonly(db)
    try:
        sinks = tuple(s for (s,) in conn.execute("SELECT sink FROM cursors"))
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    return sinks, tuple(s for s in meta.get("offline_sinks", "").split(",") if s)


def _open(db: Path, lock_fd: int | None) -> PendingSlot | None:
    """The slot at ``db`` with the sinks we may deliver from it, or None when there are none."""
    sinks, offline = _sinks_in(db)
    ours = offline if lock_fd is None else sinks
    if not ours:
        return None
    # Opened as the owner of ``ours`` cursors; the others (a live run's own) stay its business.
    others = tuple(s for s in sinks if s not in ours)
    slot = QueueSlot(db, ours, max_bytes=_NO_CAP_BYTES, fsync=True, offline_sinks=others, claim=False)
    return PendingSlot(slot, ours, lock_fd)


def _open_slots(folder: Path, on_note: Callable[[str], None], on_error: Callable[[str], None]) -> Iterator[PendingSlot]:
    def moved(to: Path, error: NotARegularFile) -> None:
        on_note(f"{error}; moved aside to {to}")

    for number, db in folder_slots(folder):
        try:
            fd = claim_slot(folder, number, on_junk=moved)
        except NotARegularFile as exc:
            on_error(f"slot {number} cannot be used: {exc}")
            continue
        if fd is None:
            junk = slot_junk(db)
            if junk:
                on_note(f"{junk[0]}; left to the process that holds {db.name}")
                continue
        opened: PendingSlot | None = None
        try:
            if db.exists():
                opened = _open(db, fd)
        except sqlite3.DatabaseError as exc:
            on_error(f"{db}: cannot read it ({exc}); it is left as it is")
        finally:
            if opened is None and fd is not None:
                os.close(fd)
        if opened is not None:
            yield opened


@contextlib.contextmanager
def open_folder_slots(
    folder: Path, *, on_note: Callable[[str], None] | None = None, on_error: Callable[[str], None] | None = None
) -> Iterator[list[PendingSlot]]:
    """Open every slot of ``folder`` that holds sinks we may deliver (see the module docstring).

    The slots are released (:meth:`PendingSlot.release`) when the block ends, those not released
    before; release one as soon as it is done with, to free its lock early.
    """

    def ignore(_: str) -> None:
        pass

    slots: list[PendingSlot] = []
    try:
        slots.extend(_open_slots(Path(folder), on_note or ignore, on_error or ignore))
        yield slots
    finally:
        for pending in slots:
            pending.release()
