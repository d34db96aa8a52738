"""File helpers every on-disk part shares (store, durable queue, dead letters). Private.

Everything we write is owner-only: folders 0700, files 0600, created with those modes rather
than changed afterwards, so there is no moment at which another user could open them.
SQLite files are opened in WAL mode with a busy timeout; a read-only open never creates,
changes or locks anything beyond what a reader needs (see :func:`connect_readonly`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["connect", "connect_readonly", "folder_problem", "is_damage", "make_private_dir", "write_private"]


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


def connect(path: Path | str, *, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """Open (creating it owner-only if missing) a SQLite file in WAL mode with a busy timeout."""
    path = Path(path)
    if str(path) != ":memory:":
        make_private_dir(path.parent)
        if not path.exists():
            # Create the file owner-readable only before SQLite opens it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        conn.close()
        raise
    return conn


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
