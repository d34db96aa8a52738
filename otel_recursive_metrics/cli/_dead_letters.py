"""Which dead letters a ``dlq`` command works on, and how its messages count them.

The data folder is ``--dir``, else ``$OTEL_RECURSIVE_METRICS_DIR``, else the default one; its
dead letters and its store are those a run with that folder uses (:func:`folder_config`), so
``dlq replay --dir D --to store`` writes into ``D``'s store.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, env_setting
from ..errors import ConfigError
from ..queue.dead_letter import DeadLetterEntry, DeadLetterQueue
from ._lock import check_wait, one_at_a_time
from ._output import CommandError
from ._terminal import terminal_text

__all__ = ["entries_text", "folder_config", "lock_folder", "one_line", "open_dead_letters", "select", "size_text"]

#: A command reads and removes dead letters; it never adds one, so the folder's cap is not its concern.
_UNLIMITED_BYTES = 1 << 62


def folder_config(args: argparse.Namespace, *, store: bool = False) -> Config:
    """The paths of the data folder: ``--dir``, else the environment's folder.

    With ``store``, also the store file a run would use there (``$OTEL_RECURSIVE_METRICS_STORE``
    if set, else the folder's ``metrics.db``, see :attr:`Config.resolved_store_path`).
    """
    try:
        folder = Path(args.dir).expanduser() if args.dir else env_setting("dir")
        return Config(dir=folder, store_path=env_setting("store_path") if store else None)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def open_dead_letters(args: argparse.Namespace) -> DeadLetterQueue:
    """The dead letters of the data folder; CommandError when that folder does not exist.

    A folder without a ``dead-letter`` folder has no dead letters; a data folder that is not
    there is a mistyped ``--dir`` (or a command run from the wrong place), not an empty one.
    """
    config = folder_config(args)
    if not config.dir.is_dir():
        what = "the folder does not exist" if not config.dir.exists() else "not a folder"
        if args.dir:
            raise CommandError(f"--dir {args.dir!r}: {what}; pass the data folder a run wrote (it holds dead-letter/ and queue/)")
        raise CommandError(f"data folder {str(config.dir)!r}: {what}; pass --dir (or set $OTEL_RECURSIVE_METRICS_DIR)")
    return DeadLetterQueue(config.dead_letter_dir, max_bytes=_UNLIMITED_BYTES)


def lock_folder(dlq: DeadLetterQueue, args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """The folder's replay lock (see :attr:`DeadLetterQueue.lock_path`), when there is a folder."""
    check_wait(args.wait)
    if not dlq.folder.is_dir():
        return contextlib.nullcontext()  # nothing to replay or purge, nothing to lock
    return one_at_a_time(dlq.lock_path, wait_s=args.wait, running="another dlq replay or purge", folder=dlq.folder)


def select(dlq: DeadLetterQueue, ids: Sequence[str], sink: str | None) -> list[DeadLetterEntry]:
    """Entries matching ``ids`` (names or unique prefixes; all when empty) and ``sink``.

    :class:`LookupError` for an id that matches no entry, or several.
    """
    entries = [e for e in dlq.entries() if sink is None or e.sink == sink]
    if not ids:
        return entries
    chosen: dict[str, DeadLetterEntry] = {}
    for wanted in ids:
        key = wanted[: -len(".jsonl")] if wanted.endswith(".jsonl") else wanted
        exact = [e for e in entries if e.id == key]
        matches = exact or [e for e in entries if e.id.startswith(key)]
        if not matches:
            raise LookupError(f"no dead-letter entry {wanted!r} in {dlq.folder}")
        if len(matches) > 1:
            raise LookupError(f"{wanted!r} matches {len(matches)} entries in {dlq.folder}; give more of the name")
        chosen[matches[0].id] = matches[0]
    return sorted(chosen.values(), key=lambda e: e.path.name)


def entries_text(n: int) -> str:
    """``1 entry``, ``2 entries``."""
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def one_line(text: str) -> str:
    """``text`` (a reason, perhaps a receiver's) on one line, safe to print (see :func:`~._terminal.terminal_text`)."""
    return terminal_text(" ".join(text.split()))


def size_text(n_bytes: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ... ``GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"  # pragma: no cover
