"""Telling whether a process still runs, across pid reuse. Private to the package.

A run's process is recorded with its pid, its host and a token (on Linux, the boot id and the
process's start time) so that a later, unrelated process that got the same pid is not taken for it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["process_alive", "process_token"]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_token(pid: int) -> str | None:
    """What tells this process apart from a later one with the same pid (Linux: boot id and start time)."""
    boot = _boot_id()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot}:{fields[19]}" if boot else None  # field 22, starttime


def process_alive(pid: int | None, token: str | None, host: str | None) -> bool | None:
    """Whether that process still runs; None when it cannot be told from here (another host)."""
    if pid is None or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if token is not None:
        return process_token(pid) == token
    return True
