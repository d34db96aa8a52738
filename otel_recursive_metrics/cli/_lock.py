"""One ``sync``, and one ``dlq replay`` or ``purge``, at a time per data folder.

Each holds a lock file (an ``flock`` with its pid written in it, see
:func:`otel_recursive_metrics._files.hold_lock`) while it runs, so that two of them never send
the same points twice. A second one says which process holds the folder and exits with
:data:`BUSY_EXIT_CODE`, or with ``--wait SECONDS`` waits that long for it first: every wait has
a deadline. The kernel frees the lock when its holder ends, ``kill -9`` included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .._files import LockHeld, NotARegularFile, hold_lock
from ._output import CommandError

__all__ = ["BUSY_EXIT_CODE", "add_wait_arg", "busy_error", "check_wait", "one_at_a_time"]

#: The exit code of a command that found another one holding its folder.
BUSY_EXIT_CODE = 3


def add_wait_arg(parser: argparse.ArgumentParser, running: str) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"when {running} already runs on this folder, wait up to SECONDS for it (default: exit at once, code {BUSY_EXIT_CODE})",
    )


def busy_error(exc: LockHeld | NotARegularFile, *, running: str, folder: Path, wait_s: float) -> CommandError:
    """The error to end a command with when it cannot take its folder's lock."""
    if isinstance(exc, NotARegularFile):
        return CommandError(f"cannot take the lock: {exc}; move it out of the way")
    holder = f"process {exc.pid}" if exc.pid is not None else "another process"
    waited = f" (waited {wait_s:g} s)" if wait_s else ""
    return CommandError(
        f"{running} is running on {folder}: {holder} holds {exc.path}{waited}; let it finish, or pass --wait SECONDS to wait for it",
        code=BUSY_EXIT_CODE,
    )


def check_wait(wait_s: float) -> None:
    if wait_s < 0:
        raise CommandError(f"--wait must be >= 0 seconds, not {wait_s:g}")


@contextlib.contextmanager
def one_at_a_time(lock_path: Path, *, wait_s: float, running: str, folder: Path) -> Iterator[None]:
    """Hold ``lock_path`` for the block; :class:`CommandError` (code 3) naming the holder when
    ``running`` (e.g. "another dlq replay") still holds it after ``wait_s`` seconds."""
    check_wait(wait_s)
    try:
        fd = hold_lock(lock_path, wait_s=wait_s)
    except (LockHeld, NotARegularFile) as exc:
        raise busy_error(exc, running=running, folder=folder, wait_s=wait_s) from None
    try:
        yield
    finally:
        os.close(fd)
