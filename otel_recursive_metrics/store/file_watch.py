"""Notices the store file removed, replaced or truncated under a running writer.

SQLite keeps writing through the file descriptor it holds: a store deleted mid-run (``rm``, a
cleanup script) takes every later commit with it, and a store truncated (``truncate -s 0``, a
copy over it) becomes malformed while each commit still succeeds. :class:`StoreFileWatch` tells
the writer (:class:`~.point_store.PointStore`) when that happened, from one ``stat`` of the path
per check, compared with what it saw last:

- ``removed``: nothing at the path any more;
- ``replaced``: another file at the path (another device or inode);
- ``truncated``: the same file, and its SQLite header says it should be longer than it is (or
  the header itself is gone). The header is read only when the size changed since the last
  check. A file shorter than this writer saw it is judged at once: the store never shrinks its
  file (it never vacuums), and a file shrunk by someone's ``VACUUM`` has a header that matches
  its size. A file that grew (another process's checkpoint) may be caught half-way, its header
  written and its pages still coming: it is taken for truncated only if it stays short of its
  header, without growing, for :data:`SETTLE_S`.

:func:`move_aside` renames a damaged file, with its ``-wal`` and ``-shm``, to
``<name>.damaged-<UTC time>`` so that a fresh store can take its place and SQLite's ``.recover``
can still read what it holds. :func:`recreate_lock` serialises that between processes writing
one store (DDP ranks): one of them moves the file aside and creates the new one, the others
then find a ``replaced`` file and open it.

SQLite leaves a moved file's ``-wal`` and ``-shm`` at the path, and would read them as the new
file's own (mixing the old file's pages into it). So whoever creates or takes over a file at the
path writes its identity to ``.<name>.identity`` (:func:`write_identity_mark`): another writer
that finds a replaced file and that mark opens it as it is; without the mark (a file someone
else put there) it moves the leftovers aside first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SETTLE_S",
    "FileChange",
    "StoreFileWatch",
    "change_message",
    "clear_the_path",
    "file_identity",
    "header_problem",
    "identity_mark",
    "move_aside",
    "recreate_lock",
    "write_identity_mark",
]

_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
#: How long a grown file may stay shorter than its header says, without growing, before it is
#: taken for truncated (a checkpoint copies pages in order, the header's first).
SETTLE_S = 3.0
_SETTLE_POLL_S = 0.05


@dataclass(frozen=True)
class FileChange:
    """What happened to the store file: ``cause`` (removed, replaced, truncated) and ``detail``."""

    cause: str
    detail: str


def header_problem(path: Path, size: int) -> str | None:
    """Why the SQLite file at ``path`` (``size`` bytes) cannot be whole, judged by its header; or None."""
    if size < _HEADER_BYTES:
        return f"{size} bytes, shorter than a SQLite header"
    try:
        with open(path, "rb") as f:
            header = f.read(_HEADER_BYTES)
    except OSError as exc:
        return f"its header cannot be read ({exc.strerror or exc})"
    if len(header) < _HEADER_BYTES or not header.startswith(_MAGIC):
        return "its SQLite header is gone"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = header[24:28]
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only while "version-valid-for" matches the change counter.
    if header[92:96] == change_counter and pages * page_size > size:
        return f"{size} bytes where its header counts {pages} pages of {page_size} bytes"
    return None


class StoreFileWatch:
    """Remembers the identity and largest size of the store file; :meth:`change` compares.

    Not thread-safe: the writer calls it under its own lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._max_size = 0
        self._last_size = 0

    def reset(self) -> None:
        """Take the file now at the path as the one this writer writes."""
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._max_size = self._last_size = st.st_size

    @property
    def identity(self) -> tuple[int, int] | None:
        return self._identity

    def change(self) -> FileChange | None:
        """What happened to the file since :meth:`reset` or the last check, or None if nothing."""
        if self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return FileChange("removed", "nothing at that path any more")
        except OSError:
            return None  # cannot tell (a folder we may no longer read): SQLite will say
        if (st.st_dev, st.st_ino) != self._identity:
            return FileChange("replaced", "another file is at that path now")
        size = st.st_size
        problem = None
        if size < self._max_size:
            problem = header_problem(self.path, size)
        elif size != self._last_size:
            problem, size = self._settled_problem(size)
        if problem is not None:
            return FileChange("truncated", f"{problem}; this writer saw it at {max(self._max_size, self._last_size)} bytes")
        self._max_size = self._last_size = size  # grown, or shrunk whole (someone's VACUUM)
        return None

    def _settled_problem(self, size: int) -> tuple[str | None, int]:
        """:func:`header_problem` of a grown file, once it is whole or has stopped growing for SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        pause = threading.Event()
        while True:
            problem = header_problem(self.path, size)
            if problem is None or time.monotonic() >= deadline:
                return problem, size
            pause.wait(_SETTLE_POLL_S)
            try:
                now = os.stat(self.path).st_size
            except OSError:
                return None, size
            if now != size:  # still being written: a checkpoint under way
                deadline = time.monotonic() + SETTLE_S
            size = now


def _free_name(base: Path) -> Path:
    candidate, n = base, 1
    while any(Path(str(candidate) + suffix).exists() for suffix in ("", "-wal", "-shm")):
        candidate = Path(f"{base}-{n}")
        n += 1
    return candidate


def move_aside(path: Path, label: str, *, main_file: bool = True) -> Path | None:
    """Rename ``path`` and its ``-wal`` / ``-shm`` to ``<path>.<label>-<UTC time>``; the new name.

    ``main_file=False`` moves only the ``-wal`` / ``-shm`` left behind by a removed file (a
    fresh store must not read them as its own). None if there was nothing to move.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = _free_name(path.with_name(f"{path.name}.{label}-{stamp}"))
    moved = False
    for suffix in ("", "-wal", "-shm") if main_file else ("-wal", "-shm"):
        try:
            os.rename(str(path) + suffix, str(target) + suffix)
            moved = True
        except FileNotFoundError:
            continue
    return target if moved else None


@contextlib.contextmanager
def recreate_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` while one process replaces the store file in it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _mark_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.identity")


def identity_mark(path: Path) -> tuple[int, int] | None:
    """The identity a writer of ours last created or took over at ``path`` (see the module docstring)."""
    try:
        device, inode = _mark_path(path).read_text().split()
        return (int(device), int(inode))
    except (OSError, ValueError):
        return None


def write_identity_mark(path: Path, identity: tuple[int, int]) -> None:
    """Record that the file of ``identity`` at ``path`` is ours, its ``-wal`` / ``-shm`` live."""
    tmp = _mark_path(path).with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{identity[0]} {identity[1]}\n")
    os.replace(tmp, _mark_path(path))


def clear_the_path(path: Path, change: FileChange, old_identity: tuple[int, int] | None) -> Path | None:
    """Ready ``path`` for a writer after ``change`` (under :func:`recreate_lock`); where a damaged file went.

    A truncated file still there is moved aside whole. A removed file's ``-wal`` / ``-shm``, and
    those at a file someone else put there (no identity mark), are the old file's: moved aside
    too, so that SQLite does not read them as the new file's. A file another writer of ours
    created or took over (its identity marked) is left as it is.
    """
    now = file_identity(path)
    if change.cause == "truncated" and now == old_identity:
        return move_aside(path, "damaged")
    if now is None:
        move_aside(path, "removed", main_file=False)
    elif now != identity_mark(path):
        move_aside(path, "replaced", main_file=False)
    return None


def change_message(path: Path, change: FileChange, left: int, moved_to: Path | None) -> str:
    """The one line logged when the store file changed under a writer that then went on."""
    if change.cause == "removed":
        return (
            f"store {path} was removed while this process wrote to it; created a new store there and went on writing"
            f" ({left} point(s) this process had stored went with the removed file; run metadata written again)"
        )
    if change.cause == "replaced":
        return (
            f"store {path} was replaced by another file while this process wrote to it; writing to that file from now on"
            f" ({left} point(s) this process had stored stay in the file that was replaced; run metadata written again)"
        )
    where = f"moved it aside to {moved_to}" if moved_to is not None else "another process moved it aside"
    recover = f"; recover what it holds with: sqlite3 {moved_to} '.recover'" if moved_to is not None else ""
    return (
        f"store {path} was truncated while this process wrote to it ({change.detail}): {where} and created a new store"
        f" there; everything from now on goes to the new store ({left} point(s) this process had stored are in the damaged"
        f" file{recover})"
    )
