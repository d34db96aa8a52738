"""Ranks that start together open one new store at once: none of them fails with "database is locked".

Putting a new file in WAL mode takes an exclusive lock, and SQLite may answer "database is locked"
at once, without waiting, while another process is opening the same file; before the fix, about
one open in 25 failed that way here with 8 processes at a time.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from otel_recursive_metrics._files import connect

PROCESSES = 8
ROUNDS = 40


def _open_and_write(path: str, barrier: Any) -> None:
    barrier.wait(30)
    conn = connect(path, busy_timeout_s=20)
    conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def test_processes_opening_one_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    failed = []
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"m{round_}.db")
        barrier = ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        failed += [p.exitcode for p in procs if p.exitcode != 0]
    assert not failed, f"{len(failed)} of {PROCESSES * ROUNDS} opens failed (exit codes {failed})"
