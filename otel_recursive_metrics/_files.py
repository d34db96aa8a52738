"""File helpers every on-disk part shares (store, durable queue, dead letters). Private.

Everything we write is owner-only: folders 0700, files 0600, created with those modes rather
than changed afterwards, so there is no moment at which another user could open them.
SQLite files are opened in WAL mode with a busy timeout; a read-only open never creates,
changes or locks anything beyond what a reader needs (see :func:`connect_readonly`).

Users and systems leave other things where our files belong: a folder, a FIFO, a dangling link.
:func:`file_kind` says what is there without opening it, :func:`open_regular` refuses anything
but a regular file (and never blocks on a FIFO), and :func:`set_aside` moves it out of the way.
:func:`hold_lock` is the one-process-at-a-time lock of the command-line tools.

A SQLite file in WAL mode is three files (:data:`SQLITE_SUFFIXES`); :func:`remove_sqlite_files`
deletes all three, so that a new file at that path never meets an old log.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "SQLITE_SUFFIXES",
    "LockHeld",
    "NotARegularFile",
    "connect",
    "connect_readonly",
    "file_kind",
    "folder_problem",
    "hold_lock",
    "is_damage",
    "make_private_dir",
    "open_regular",
    "remove_sqlite_files",
    "set_aside",
    "write_private",
]

#: A SQLite file in WAL mode, as the file system sees it: the database, its log and the log's index.
SQLITE_SUFFIXES = ("", "-wal", "-shm")


def is_damage(exc: BaseException) -> bool:
    """A file SQLite cannot read as a database (not a lock, a full disk or a bad statement)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "file is encrypted" in text or "corrupt" in text


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents readable by the owner only (mode 0700)."""
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass


#: Never set: a wait on it with a timeout is a pause (threads here sleep only on Event.wait).
_PAUSE = threading.Event()


def connect(path: Path | str, *, busy_timeout_s: float = 30.0, incremental_vacuum: bool = False) -> sqlite3.Connection:
    """Open (creating it owner-only if missing) a SQLite file in WAL mode with a busy timeout.

    ``incremental_vacuum``: a new (empty) file is set to ``auto_vacuum = INCREMENTAL``, so that
    ``PRAGMA incremental_vacuum`` can give freed pages back to the file system later; the setting
    only takes before the file's first table and before WAL mode, hence here.
    """
    path = Path(path)
    if str(path) != ":memory:":
        make_private_dir(path.parent)
        if not path.exists():
            # Create the file owner-readable only before SQLite opens it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        if incremental_vacuum and str(path) != ":memory:" and path.stat().st_size == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _enter_wal(conn, time.monotonic() + busy_timeout_s)
    except BaseException:
        conn.close()
        raise
    return conn


def _enter_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Put the file in WAL mode, waiting (until ``deadline``, monotonic) for other processes' locks.

    Changing the journal mode takes an exclusive lock, and SQLite may answer "database is locked"
    at once, without its busy handler, while another process opens the same new file: several
    ranks starting together. A file already in WAL mode needs no change (and no lock).
    """
    pause_s = 0.005
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() + pause_s >= deadline:
                raise
        _PAUSE.wait(pause_s)
        pause_s = min(pause_s * 2, 0.2)


def connect_readonly(path: Path | str, *, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """Open an existing SQLite file for reading only.

    ``mode=ro`` first: it sees what a live writer has committed. On a read-only file system
    (or a folder we may not write), a WAL-mode file cannot be opened that way when its ``-shm``
    index is missing, so the fallback is ``immutable=1``: SQLite then reads the file as it is,
    which is right there, since nobody can be writing it.
    """
    if not Path(path).is_file():
        raise sqlite3.OperationalError(f"unable to open database file: {path} does not exist")
    uri = "file:" + quote(str(Path(path).resolve()))
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "readonly" not in text and "unable to open" not in text and "read-only" not in text:
            raise
    conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def remove_sqlite_files(path: Path | str) -> None:
    """Delete the SQLite file ``path`` with its ``-wal`` and ``-shm`` (any that are missing are skipped).

    All three go: SQLite would read a log left behind as the log of a new file at that path.
    """
    for suffix in SQLITE_SUFFIXES:
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` owner-only, atomically (a temporary name, fsync, rename)."""
    tmp = path.with_name("." + path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def folder_problem(folder: Path) -> str | None:
    """Why we cannot write files in ``folder`` (made if missing), or None; writes one probe file."""
    try:
        make_private_dir(folder)
        if not folder.is_dir():
            return "not a folder"
        probe = folder / f".probe-{os.getpid()}-{time.time_ns()}"
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


# -- junk where a file of ours belongs -----------------------------------------------------------


class NotARegularFile(OSError):
    """A path where one of our files belongs holds something else (``kind``: "a folder", "a FIFO", ...)."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{path} is {kind}, not a regular file")
        self.path = Path(path)
        self.kind = kind

    def __str__(self) -> str:
        return str(self.strerror)


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind_of(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_kind(path: Path | str) -> str | None:
    """What ``path`` holds if it is not a regular file ("a folder", "a FIFO", "a dangling symbolic
    link", ...), or None when it is a regular file (symbolic links followed) or nothing at all.

    Only ``stat`` is called: nothing is opened, so a FIFO cannot block the caller.
    """
    try:
        return _kind_of(os.stat(path).st_mode)
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else None
    except OSError as exc:  # a symbolic link loop, a path through a file, ...
        return f"unusable ({exc.strerror or exc})"


def open_regular(path: Path | str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a regular file only: :class:`NotARegularFile` for anything else.

    Checked before opening (a device is never opened) and again on the descriptor (something
    swapped in meanwhile); opened with ``O_NONBLOCK``, so a FIFO never blocks. The descriptor is
    close-on-exec.
    """
    kind = file_kind(path)
    if kind is not None:
        raise NotARegularFile(path, kind)
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        kind = _kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotARegularFile(path, kind)
    except BaseException:
        os.close(fd)
        raise
    return fd


def set_aside(path: Path, label: str) -> Path:
    """Rename ``path`` (whatever it is) to ``<name>.<label>-<UTC time>`` beside it; the new name.

    A number is added when that name is taken. Raises ``OSError`` if it cannot be renamed.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 0
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    os.rename(path, target)
    return target


# -- one process at a time -----------------------------------------------------------------------


class LockHeld(Exception):
    """Another process holds a lock file; ``pid`` is the one written in it (None if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{holder} holds {path}")
        self.path = path
        self.pid = pid


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def hold_lock(path: Path, *, wait_s: float = 0.0, poll_s: float = 0.1) -> int:
    """Take an exclusive ``flock`` on ``path`` (made owner-only if missing) and write our pid in it.

    Returns the descriptor: the lock lasts until it is closed, or the process ends (the kernel
    frees it even after ``kill -9``). When another process holds it, waits up to ``wait_s``
    seconds, then raises :class:`LockHeld` naming that process. :class:`NotARegularFile` if
    ``path`` holds something else than a file.
    """
    make_private_dir(path.parent)
    fd = open_regular(path, os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + max(0.0, wait_s)
    pause = threading.Event()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockHeld(path, _holder(fd))
            pause.wait(min(poll_s, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
