"""Ranks that start together open one new store at once: none of them fails with "database is locked".

Putting a new file in WAL mode takes an exclusive lock, and SQLite may answer "database is locked"
at once, without waiting, while another process is opening the same file; before the fix, about
one open in 25 failed that way here with 8 processes at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROCESSES = 8
ROUNDS = 40

# The ranks are forked by a fresh interpreter, not by pytest's process: that one may hold threads
# left by earlier tests (gRPC's, a server's), and a child forked while another thread holds a lock
# (SQLite's, an import's) can wait on it forever.
_RANKS = r"""
import json, multiprocessing, sys
from otel_recursive_metrics._files import connect

def open_and_write(path, barrier):
    barrier.wait(30)
    conn = connect(path, busy_timeout_s=20)
    conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()

if __name__ == "__main__":
    folder, processes, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = multiprocessing.get_context("fork")
    failed = []
    for round_ in range(rounds):
        path = f"{folder}/m{round_}.db"
        barrier = ctx.Barrier(processes)
        procs = [ctx.Process(target=open_and_write, args=(path, barrier)) for _ in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        failed += [p.exitcode for p in procs if p.exitcode != 0]
    print(json.dumps(failed))
"""


def test_processes_opening_one_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(_RANKS)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(PROCESSES), str(ROUNDS)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failed, f"{len(failed)} of {PROCESSES * ROUNDS} opens failed (exit codes {failed})"
