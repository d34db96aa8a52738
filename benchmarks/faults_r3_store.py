"""Issue 18, defects 2 and 5: a store removed or truncated under a running writer, and a store of a newer version.

    python benchmarks/faults_r3_store.py

Each scenario runs the package for real on files under a temporary folder: a ``TrainingMetrics``
logs 40 values a step, the store file is removed or truncated (``os.truncate``, as
``truncate -s``) after 200,000 points, 200,000 more are logged and the writer closed. "logged"
counts the points logged after the fault, "delivered" those of them that a reader finds in the
store at the path afterwards. The newer-version rows set ``schema_version`` to 99 and run the
read commands (``query``, ``runs``, ``metrics``, ``ui``) and a writer against the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import otel_recursive_metrics
from otel_recursive_metrics import PointStore, TrainingMetrics

Row = dict[str, str]

_KEYS = [f"k{i}" for i in range(40)]
_STEPS = 5000  # before the fault, and as many after: 200,000 points each


def _log(metrics: TrainingMetrics, steps: range) -> None:
    for step in steps:
        metrics.log(dict.fromkeys(_KEYS, step * 0.5), step=step)


def _stored_after(db: Path) -> tuple[int, str]:
    """Points of the steps logged after the fault that a reader finds at ``db``, and what it said."""
    try:
        store = PointStore(db, readonly=True)
        try:
            count = sum(1 for p in store.iter_query(step_min=_STEPS))
        finally:
            store.close()
        return count, "readable"
    except Exception as exc:  # what a reader meets is the figure
        return 0, f"unreadable: {type(exc).__name__}: {exc}"


def _store_fault(work: Path, fault: str, *, store_direct: bool) -> Row:
    data = work / f"{fault}-{'direct' if store_direct else 'queued'}"
    db = data / "metrics.db"
    metrics = TrainingMetrics(dir=data, flush_interval_s=5.0, store_direct=store_direct)
    _log(metrics, range(_STEPS))
    metrics.flush(120.0)
    if fault == "removed":
        db.unlink()
    elif fault == "truncated to 0":
        os.truncate(db, 0)
    else:
        os.truncate(db, db.stat().st_size // 2)
    _log(metrics, range(_STEPS, 2 * _STEPS))
    closed = metrics.close(120.0)
    stats = metrics.get_stats()
    logged = _STEPS * len(_KEYS)
    delivered, readable = _stored_after(db)
    counted = sum(stats["dropped_points"].values()) + sum(stats["dead_lettered_points"].values())
    aside = sorted(p.name for p in data.glob("metrics.db.*") if not p.name.endswith(("-wal", "-shm")))
    note = (
        f"close() {closed}; sent_points {stats['sent_points'].get('store', 0)}; store_recreated"
        f" {stats.get('store_recreated', 'n/a')}; points left behind {stats.get('store_points_left_behind', 'n/a')};"
        f" the store at the path is {readable}; moved aside: {', '.join(aside) or 'nothing'}"
    )
    return {
        "scenario": f"store {fault} mid-run ({'store-direct' if store_direct else 'queued'}), 200,000 points before",
        "logged": str(logged),
        "delivered": str(delivered),
        "counted as dropped": str(counted),
        "lost uncounted": str(max(0, logged - delivered - counted)),
        "note": note,
    }


def store_faults(work: Path) -> list[Row]:
    rows = [_store_fault(work, "removed", store_direct=True), _store_fault(work, "removed", store_direct=False)]
    rows += [_store_fault(work, fault, store_direct=True) for fault in ("truncated to 0", "truncated to half")]
    return rows


def _newer_store(work: Path, name: str) -> Path:
    data = work / name
    with TrainingMetrics(dir=data, flush_interval_s=0.05) as metrics:
        _log(metrics, range(5))
    db = data / "metrics.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    return db


def _version(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def _cli(*args: str) -> tuple[int, str]:
    from otel_recursive_metrics.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    said = (err.getvalue().strip() or out.getvalue().strip()).splitlines()
    return code, (said[0] if said else "")[:200]


def newer_version(work: Path) -> list[Row]:
    db = _newer_store(work, "newer")
    rows = []
    for command in ("query", "runs", "metrics"):
        code, said = _cli(command, "--store", str(db))
        rows.append(_row(f"`{command}` on a store with schema_version 99", f"exit {code}; {said!r}"))
    env = {**os.environ, "PYTHONPATH": str(Path(otel_recursive_metrics.__file__).resolve().parents[1])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "otel_recursive_metrics", "ui", "--store", str(db), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=15,
            env=env,
            check=False,
        )
        ui = f"exit {done.returncode}; {(done.stderr.strip() or done.stdout.strip()).splitlines()[0][:200]!r}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        ui = f"still serving after 15 s: {out.strip()[:160]!r}"
    rows.append(_row("`ui` on a store with schema_version 99", ui))
    db = _newer_store(work, "newer-writer")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    try:
        with TrainingMetrics(dir=db.parent, flush_interval_s=0.05) as metrics:
            _log(metrics, range(100, 110))
        what = "constructed and wrote"
    except Exception as exc:  # the refusal is the figure
        what = f"refused: {type(exc).__name__}: {str(exc).splitlines()[-1].strip()[:160]}"
    changed = hashlib.sha256(db.read_bytes()).hexdigest() != before
    note = f"{what}; file changed: {changed}; version now {_version(db)}"
    rows.append(_row("TrainingMetrics writing a store with schema_version 99", note))
    return rows


def _row(scenario: str, note: str) -> Row:
    return {"scenario": scenario, "logged": "-", "delivered": "-", "counted as dropped": "-", "lost uncounted": "-", "note": note}


def rows(work: Path) -> list[Row]:
    """Every scenario's row, run under ``work``."""
    return store_faults(work) + newer_version(work)


def markdown(table: list[Row]) -> str:
    keys = ["scenario", "logged", "delivered", "counted as dropped", "lost uncounted", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k].replace("|", "\\|") for k in keys) + " |" for r in table]
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="orm-faults-r3-store-") as tmp:
        table = rows(Path(tmp))
    print(markdown(table))
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
