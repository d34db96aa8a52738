"""What every benchmark shares: the machine and versions it reports, progress lines, tables, results files.

Each benchmark is a module of this package, runnable as a script (``python benchmarks/run.py``)
or as a module (``python -m benchmarks.run``). A script begins with the same two lines, which
put the repository root first on ``sys.path`` so that ``benchmarks`` and ``tests`` import::

    if __package__ in (None, ""):  # run as a file: import the package from the repository root
        sys.path[0] = str(Path(__file__).resolve().parents[1])

Results go to dated files, ``benchmarks/results/<date>-<commit>[-<what>].md``
(:func:`results_path`), one per run, never edited afterwards: comparing two runs is comparing
two files.
"""

from __future__ import annotations

import datetime
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "REPO",
    "RESULTS",
    "commit",
    "cpu_model",
    "machine",
    "markdown_table",
    "results_path",
    "say",
    "sqlite_insert_rate",
    "version",
    "versions_line",
]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """Cores, CPU, memory and OS of this machine, in one line."""
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    except ImportError:
        pass
    return f"{os.cpu_count()} cores, {cpu_model()}{memory}, {platform.system()} {platform.release()} ({platform.machine()})"


def version(distribution: str) -> str:
    """An installed distribution's version, or "not installed"."""
    if distribution == "python":
        return platform.python_version()
    if distribution == "sqlite":
        return sqlite3.sqlite_version
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions_line(*names: str) -> str:
    """``Versions: Python 3.11.7, opentelemetry-sdk 1.45.2, ...`` for the results header."""
    shown = []
    for name in names:
        label = {"python": "Python", "sqlite": "SQLite"}.get(name, name)
        shown.append(f"{label} {version(name)}")
    return "Versions: " + ", ".join(shown) + "."


def commit() -> str:
    """The checked-out commit (short), with ``+dirty`` when the work tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout
        return head + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def results_path(what: str = "") -> Path:
    """``benchmarks/results/<date>-<commit>[-<what>].md`` for this run (not created)."""
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    name = f"{day}-{commit().replace('+', '-')}" + (f"-{what}" if what else "")
    return RESULTS / f"{name}.md"


def say(message: str) -> None:
    """One progress line on stderr, with the time (results go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` with these ``columns`` (missing cells empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def sqlite_insert_rate(
    workdir: Path,
    schema: Sequence[str],
    insert: str,
    rows: Sequence[tuple[Any, ...]],
    *,
    synchronous: str,
    per_transaction: int,
    begin: str = "BEGIN",
) -> float:
    """Rows/s of plain ``executemany`` into a fresh WAL database in ``workdir``: the ceiling the
    store is compared with. ``schema``: its ``CREATE`` statements; ``rows`` go in
    ``per_transaction`` at a time, timed from the first ``BEGIN`` to the last ``COMMIT``; the
    files are removed afterwards."""
    path = workdir / f"raw-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    for statement in schema:
        conn.execute(statement)
    started = time.perf_counter()
    for start in range(0, len(rows), per_transaction):
        conn.execute(begin)
        conn.executemany(insert, rows[start : start + per_transaction])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    # Imported here, not at the top: faults.py --against runs this module with another commit's package.
    from otel_recursive_metrics._files import remove_sqlite_files

    remove_sqlite_files(path)
    return len(rows) / elapsed
