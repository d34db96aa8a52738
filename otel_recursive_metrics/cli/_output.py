"""What every subcommand shares: the store argument, opening the store, errors, tables, times.

Errors go to stderr as ``otel-recursive-metrics: error: <what was wrong and what would work>``
and end the command with exit code 2 (:class:`CommandError`). A damaged store is one such error,
naming the file and how to recover what it holds, never a traceback. Every cell of a table and
every error passes through :func:`~._terminal.terminal_text`: text from the store reaches the
terminal as printable characters only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._files import is_damage
from ..config import Config, env_setting
from ..errors import ConfigError, StoreVersionError
from ..store import PointStore
from ..store.messages import damaged_store_message
from ._terminal import display_width, pad, terminal_text

__all__ = [
    "CommandError",
    "Progress",
    "add_store_arg",
    "damaged_store_message",
    "default_store",
    "fail",
    "format_duration",
    "format_time",
    "open_store",
    "positive_int",
    "render_table",
    "require_subcommand",
    "store_file",
]


class CommandError(Exception):
    """A usage or input error: its message is printed and the command exits with ``code`` (2).

    ``code=1`` for "nothing matched" with a hint (a misspelt metric or run).
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str) -> int:
    """Print ``message`` as the command's error (one line, control characters escaped) and return exit code 2."""
    print(f"otel-recursive-metrics: error: {terminal_text(message)}", file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of 1 or more (argparse's error names the option).

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of 1 or more")
    return value


def require_subcommand(parser: argparse.ArgumentParser, **options: Any) -> Any:
    """``parser.add_subparsers(**options)``; run without one, the command lists its subcommands.

    argparse's own error for a missing subcommand names the internal ``dest``
    (``the following arguments are required: dlq_command``); this prints the command's help,
    which lists every subcommand with what it does, and an error line, and exits with code 2.
    """
    sub = parser.add_subparsers(metavar="SUBCOMMAND", **options)

    def no_subcommand(_args: argparse.Namespace) -> int:
        sys.stderr.write(parser.format_help())
        names = list(sub.choices)
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
        print(f"{parser.prog}: error: a subcommand is needed: {listed}", file=sys.stderr)
        return 2

    parser.set_defaults(handler=no_subcommand)
    return sub


def default_store() -> str:
    """The store file the exporter would use in this environment."""
    try:
        return str(Config(dir=env_setting("dir"), store_path=env_setting("store_path")).resolved_store_path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", default=None, help="SQLite store file (default: $OTEL_RECURSIVE_METRICS_STORE or ./otel-metrics/metrics.db)"
    )


def store_file(path: str | None) -> str:
    """The store file ``--store path`` names: the file, or the ``metrics.db`` of a data folder.

    None is the default store. CommandError for a path that does not exist, or a folder with no
    store in it.
    """
    path = path or default_store()
    given = Path(path)
    if given.is_dir():
        inside = Config(dir=given).resolved_store_path
        if not inside.is_file():
            raise CommandError(
                f"--store {path!r} is a folder with no {inside.name} in it: pass a store file, or the data folder a run wrote"
            )
        return str(inside)
    if not given.exists():
        raise CommandError(f"--store {path!r}: no such file (train with OTEL_METRICS_EXPORTER=recursive first, or pass --store)")
    return path


def open_store(path: str | None) -> PointStore:
    """The store at ``path`` (see :func:`store_file`), opened read-only; CommandError if it cannot be."""
    path = store_file(path)
    try:
        return PointStore(path, readonly=True)
    except StoreVersionError as exc:  # a newer release's store: the one line names the file and both versions
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        raise CommandError(f"--store {path!r}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise CommandError(damaged_store_message(path, exc) if is_damage(exc) else f"--store {path!r}: {exc}") from None


def format_time(time_unix_nano: int, *, milliseconds: bool = False) -> str:
    """``time_unix_nano`` as UTC text, ``2026-01-01 12:00:00`` (``.123`` with milliseconds)."""
    if not time_unix_nano:
        return "?"
    when = dt.datetime.fromtimestamp(time_unix_nano / 1e9, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if milliseconds else when.strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float) -> str:
    """``190`` as ``3m10s``; ``4000`` as ``1h06m``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def render_table(rows: Sequence[Sequence[str]], out: TextIO, *, right: Sequence[int] = (), free_last: bool = False) -> None:
    """Print ``rows`` (the first is the header) as aligned columns with a rule under the header.

    Columns whose index is in ``right`` are right-aligned (numbers). With ``free_last`` the last
    column is not padded (long free text such as a reason). Cells are shown through
    :func:`~._terminal.terminal_text` and aligned by display width.
    """
    if not rows:
        return
    rows = [[terminal_text(cell) for cell in row] for row in rows]
    padded = len(rows[0]) - (1 if free_last else 0)
    widths = [max(display_width(r[i]) for r in rows) for i in range(padded)]
    for i, row in enumerate(rows):
        cells = [pad(cell, w, right=j in right) for j, (cell, w) in enumerate(zip(row[:padded], widths, strict=True))]
        if free_last:
            cells.append(row[-1])
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            rule = ["-" * w for w in widths] + (["-" * 6] if free_last else [])
            out.write("  ".join(rule) + "\n")


class Progress:
    """Progress of a long command on stderr: a bar on a terminal, one line per step otherwise.

    ``total_points`` and, when the work comes in entries (dead letters), ``total_entries``;
    :meth:`advance` records one step: the points it finished (0 if it failed) and what it was
    (shown in the line-per-step form, which is what a log file or CI keeps).
    """

    def __init__(self, label: str, total_points: int, *, total_entries: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total_points, self.points = total_points, 0
        self.total_entries, self.entries = total_entries, 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def advance(self, points: int, what: str) -> None:
        self.points += points
        self.entries += 1
        count = f"{self.points}/{self.total_points} points"
        if self.total_entries is not None:
            count = f"{self.entries}/{self.total_entries} entries, {count}"
        if self.tty:
            width = 30
            share = self.entries / max(1, self.total_entries) if self.total_entries is not None else self.points / max(1, self.total_points)
            filled = int(width * share)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {count}")
            self._drawn = True
        else:
            self.stream.write(f"{self.label}: {what}: {count}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (before anything else is printed)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
