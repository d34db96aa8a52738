"""Measure the faults of issues 9 and 18 the way they were reported, and print one Markdown table.

    python benchmarks/faults.py [--only sigterm,overload,disk,size,exit,seed-api,store-files,queue-files,web-view,sigterm-sdk] [--out FILE]
    python benchmarks/faults.py --only seed-api,store-files --against 982ba25   # before and after, side by side

``--against REV`` runs the same scenarios a second time with the package of commit ``REV`` (a
temporary git worktree; the scenarios, test programs and receivers stay this checkout's) and
prints one table with both: what a fix changed, measured the same way. Issue 18's scenarios
(``seed-api`` ... ``sigterm-sdk``) are in ``faults_r3_*.py``, one module per area.

Each scenario runs the package for real (a child training loop killed or stopped, a 24 MB tmpfs
filled, an endpoint that refuses) and reports what was logged, what arrived, what was counted
as dropped and what vanished uncounted. The tests in ``tests/`` assert the promises; this script
gives the figures for the record. ``disk`` needs root (it mounts a tmpfs) and is skipped without.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    if os.environ.get("ORM_FAULTS_PACKAGE_TREE"):  # --against: that tree's package, this checkout's scenarios
        sys.path.insert(0, os.environ["ORM_FAULTS_PACKAGE_TREE"])

from benchmarks.common import REPO as ROOT
from otel_recursive_metrics import PointStore, RecursiveMetricExporter, TrainingMetrics
from tests.programs import read_reports, start_log_loop, wait_ready

Row = dict[str, str]


def _row(scenario: str, note: str) -> Row:
    return {"scenario": scenario, "logged": "-", "delivered": "-", "counted as dropped": "-", "lost uncounted": "-", "note": note}


def _deliver(data_dir: Path) -> set[tuple[str, int]]:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.2, max_batch_points=65536)
    exporter.force_flush(600_000)
    exporter.shutdown()
    if not (data_dir / "metrics.db").exists():
        return set()
    return {(p.metric, p.step) for p in PointStore(data_dir / "metrics.db", readonly=True).query() if p.step is not None}


def sigterm(work: Path) -> list[Row]:
    rows = []
    for rate, after_s, values in ((2.0, 4.3, 10), (1000.0, 2.0, 1), (1000.0, 2.0, 1), (1000.0, 2.0, 1)):
        data = work / f"sigterm-{rate}-{time.monotonic_ns()}"
        report = data.parent / (data.name + ".jsonl")
        child = start_log_loop(data, "--rate-hz", str(rate), "--values", str(values), "--report", str(report))
        wait_ready(child)
        time.sleep(after_s)
        child.send_signal(signal.SIGTERM)
        child.wait(60)
        stored = _deliver(data)
        logged = 1 + max((s for _, s in stored), default=-1)
        last = read_reports(report)[-1]
        logged = max(logged, last["steps"])
        dropped = sum(last["stats"]["dropped_points"].values())  # the child's last report before the signal
        rows.append(
            {
                "scenario": f"SIGTERM at {after_s} s, {rate:g} steps/s, {values} value(s) a step, flush interval 5 s",
                "logged": str(logged * values),
                "delivered": str(len(stored)),
                "counted as dropped": str(dropped),
                "lost uncounted": str(max(0, logged * values - len(stored) - dropped)),
                "note": f"exit status {child.returncode}",
            }
        )
    return rows


def overload(work: Path, seconds: float = 8.0, flush_interval_s: float = 5.0) -> list[Row]:
    data = work / "overload"
    report = work / "overload.jsonl"
    child = start_log_loop(
        data,
        "--rate-hz",
        "0",
        "--values",
        "20",
        "--flush-interval-s",
        str(flush_interval_s),
        "--report",
        str(report),
        "--report-every-s",
        "0.05",
    )
    wait_ready(child)
    time.sleep(seconds)
    killed = time.time_ns()
    child.send_signal(signal.SIGKILL)
    child.wait(60)
    reports = read_reports(report)
    last = reports[-1]
    cutoff = killed - int((flush_interval_s + 1.0) * 1e9)
    old_steps = max((r["steps"] for r in reports if r["time_unix_nano"] <= cutoff), default=0)
    stored = _deliver(data)
    old = {(f"m{k}", s) for s in range(old_steps) for k in range(20)}
    missing = len(old - stored)
    counted = sum(last["stats"]["dropped_points"].values())
    rate = last["values"] / ((last["time_unix_nano"] - reports[0]["time_unix_nano"]) / 1e9)
    return [
        {
            "scenario": f"kill -9 after {seconds:g} s of a tight loop, 20 values a call ({rate / 1e6:.2f} M values/s), flush 5 s",
            "logged": f"{old_steps * 20:,} (more than {flush_interval_s + 1:g} s before the kill)",
            "delivered": f"{len(old & stored):,}",
            "counted as dropped": f"{counted:,} ({', '.join(sorted(last['stats']['dropped_points']))})",
            "lost uncounted": f"{max(0, missing - counted):,}",
            "note": (
                f"peak RSS {max(r['max_rss_kib'] for r in reports) / 1024:.0f} MiB;"
                f" max durability lag {max(r['stats']['durability_lag_s'] for r in reports):.2f} s"
            ),
        }
    ]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False).returncode == 0
    )


def full_disk(work: Path, seconds: int = 40, *, leave_free_mb: int | None = None, free_at_s: float = 20.0) -> list[Row]:
    """10,000 values/s into a 24 MB tmpfs; with ``leave_free_mb``, a ballast file first fills it
    to that much free space and is deleted ``free_at_s`` into the run (the disk fills, then frees)."""
    disk = work / ("disk" if leave_free_mb is None else "disk-filled")
    if not _mount_tmpfs(disk, "24m"):
        return [_row("full disk (24 MB tmpfs)", note="skipped: cannot mount a tmpfs (needs root)")]
    try:
        data = disk / "otel-metrics"
        report = work / f"{disk.name}.jsonl"
        ballast = disk / "ballast"
        if leave_free_mb is not None:
            free_b = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            with ballast.open("wb") as f:
                f.write(b"\0" * max(0, free_b - leave_free_mb * 2**20))
        child = start_log_loop(
            data, "--rate-hz", "1000", "--values", "10", "--steps", str(seconds * 1000), "--report", str(report), "--report-every-s", "0.2"
        )
        wait_ready(child)
        if leave_free_mb is not None:
            time.sleep(free_at_s)
            ballast.unlink()
        child.wait(seconds + 120)
        stderr = child.stderr.read() if child.stderr else ""
        reports = read_reports(report)
        final = reports[-1]
        stats = final["stats"]
        logged = final["values"]
        stored = len(_deliver_store_only(data))
        waiting = _pending_on_disk(data, "store")
        dropped = sum(stats["dropped_points"].values())
        queue_lines = sum(1 for line in stderr.splitlines() if "durable queue" in line)
        seen_error = next((r["stats"]["last_error"].get("queue", "") for r in reports if r["stats"]["last_error"].get("queue")), "")
        failing = sorted({r["stats"]["queue_failing"] for r in reports if r["stats"]["queue_failing"]})
        return [
            {
                "scenario": f"24 MB tmpfs, 10,000 values/s for {seconds} s (store and queue on it)"
                + ("" if leave_free_mb is None else f"; filled to {leave_free_mb} MB free, freed after {free_at_s:.0f} s"),
                "logged": f"{logged:,}",
                "delivered": f"{stored:,} (+ {waiting:,} waiting on disk for the store)",
                "counted as dropped": f"{dropped:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(stats['dropped_points'].items()))})",
                "lost uncounted": f"{max(0, logged - stored - waiting - dropped):,}",
                "note": (
                    f"queue failing: {', '.join(failing) or 'never'}; peak queue_size {max(r['stats']['queue_size'] for r in reports):,};"
                    f" peak RSS {max(r['max_rss_kib'] for r in reports) / 1024:.0f} MiB; {queue_lines} queue log line(s);"
                    f" last_error while running: {seen_error[:80] or '-'}; at the end: {stats['last_error'].get('queue', '-')[:40]}"
                ),
            }
        ]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def _pending_on_disk(data: Path, sink: str) -> int:
    """Points the durable queue in ``data`` still holds for ``sink`` (read-only)."""
    import sqlite3

    total = 0
    for db in (data / "queue").glob("slot-*.db"):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (done,) = conn.execute("SELECT done_id FROM cursors WHERE sink = ?", (sink,)).fetchone() or (0,)
            total += int(conn.execute("SELECT ifnull(sum(points), 0) FROM records WHERE id > ?", (done,)).fetchone()[0])
        finally:
            conn.close()
    return total


def _deliver_store_only(data: Path) -> set[tuple[str, int]]:
    if not (data / "metrics.db").exists():
        return set()
    return {(p.metric, p.step) for p in PointStore(data / "metrics.db", readonly=True).query() if p.step is not None}


_BIG_ATTRIBUTE = """
import resource, sys
from pathlib import Path
from otel_recursive_metrics import TrainingMetrics
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
metrics = TrainingMetrics(attributes={"big": "x" * 1_000_000}, dir=sys.argv[1], flush_interval_s=1.0)
for step in range(400):
    metrics.log({"loss": 1.0}, step=step)
metrics.close(60.0)
queue = sum(p.stat().st_size for p in (Path(sys.argv[1]) / "queue").glob("slot-*"))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, queue)
"""


def sizes(work: Path) -> list[Row]:
    data = work / "sizes"
    done = subprocess.run([sys.executable, "-c", _BIG_ATTRIBUTE, str(data)], capture_output=True, text=True, timeout=300, check=True)
    rss_kib, queue_after = (int(x) for x in done.stdout.split())
    stored = len(_deliver_store_only(data))
    big = work / "drain"
    metrics = TrainingMetrics(dir=big, flush_interval_s=60.0, max_buffer_items=1_000_000)
    names = [f"m{k}" for k in range(10)]
    for step in range(100_000):
        metrics.log(dict.fromkeys(names, 1.0), step=step)
    metrics.flush(600.0)
    metrics.pipeline.persist(10.0)
    time.sleep(0.5)
    drained = sum(p.stat().st_size for p in (big / "queue").glob("slot-*"))
    metrics.close(60.0)
    return [
        {
            "scenario": "TrainingMetrics(attributes={'big': 'x' * 1,000,000}), 400 values",
            "logged": "400",
            "delivered": f"{stored}",
            "counted as dropped": "0",
            "lost uncounted": f"{400 - stored}",
            "note": (
                f"peak RSS growth {rss_kib / 1024:.0f} MiB; queue files after delivery {queue_after / 1024:.0f} KiB;"
                " the attribute is cut to 4,096 characters"
            ),
        },
        {
            "scenario": "a drained queue after a 1 M-point run",
            "logged": "1,000,000",
            "delivered": "1,000,000",
            "counted as dropped": "0",
            "lost uncounted": "0",
            "note": f"queue files after draining: {drained / 1024:.0f} KiB",
        },
    ]


def exits(work: Path) -> list[Row]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_RECURSIVE_METRICS_SINKS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_numpy.py"), "--dir", str(work / "exit"), "--steps", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    took = time.monotonic() - started
    said = next((line for line in done.stderr.splitlines() if "wait on disk" in line), "(no line)")
    blocker = work / "a-file"
    blocker.write_text("x")
    t0 = time.monotonic()
    try:
        TrainingMetrics(dir=blocker)
        refused = "accepted (wrong)"
    except Exception as exc:
        refused = f"{type(exc).__name__} in {time.monotonic() - t0:.3f} s"
    return [
        {
            "scenario": "NumPy example, 100 steps, OTLP endpoint refused",
            "logged": "406",
            "delivered": "0 (all on disk)",
            "counted as dropped": "0",
            "lost uncounted": "0",
            "note": f"{done.stdout.strip().split(':')[0]}; process ran {took:.1f} s; stderr: {said[:160]}",
        },
        _row("TrainingMetrics(dir=<a file>)", note=refused),
    ]


def _round_three(module: str) -> Callable[[Path], list[Row]]:
    def run(work: Path) -> list[Row]:
        rows: list[Row] = importlib.import_module(f"benchmarks.{module}").rows(work)
        return rows

    return run


SCENARIOS: dict[str, Callable[[Path], list[Row]]] = {
    "sigterm": sigterm,
    "overload": overload,
    "disk": lambda work: full_disk(work) + full_disk(work, leave_free_mb=2),
    "size": sizes,
    "exit": exits,
    # Issue 18 (round three): one module per area.
    "seed-api": _round_three("faults_r3_seed"),
    "store-files": _round_three("faults_r3_store"),
    "queue-files": _round_three("faults_r3_queue"),
    "web-view": _round_three("faults_r3_webview"),
    "sigterm-sdk": _round_three("faults_r3_sigterm"),
}


def markdown(rows: list[Row]) -> str:
    keys = ["scenario", "logged", "delivered", "counted as dropped", "lost uncounted", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _outcome(row: Row) -> str:
    return " / ".join(row[k] for k in ("logged", "delivered", "counted as dropped", "lost uncounted"))


def side_by_side(before: list[Row], after: list[Row], rev: str) -> str:
    """One table: each scenario's outcome with ``rev``'s package and with this checkout's."""
    old = {r["scenario"]: r for r in before}
    lines = [
        f"| scenario | before ({rev}): logged / delivered / counted as dropped / lost uncounted | after | note (before) | note (after) |",
        "|---|---|---|---|---|",
    ]
    for row in after:
        was = old.pop(row["scenario"], None)
        was_outcome, was_note = (_outcome(was), was["note"]) if was else ("(not run)", "")
        lines.append(f"| {row['scenario']} | {was_outcome} | {_outcome(row)} | {was_note} | {row['note']} |")
    lines += [f"| {r['scenario']} | {_outcome(r)} | (not run) | {r['note']} | |" for r in old.values()]
    return "\n".join(lines) + "\n"


def rows_against(rev: str, only: str) -> list[Row]:
    """The scenarios in a child process whose package is commit ``rev``'s (a temporary worktree)."""
    with tempfile.TemporaryDirectory(prefix="orm-faults-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
        # Only the package comes from that commit: a folder holding a link to it goes first on
        # the path (this process's scenarios, and the child programs they start).
        package_only = Path(tmp) / "package"
        package_only.mkdir()
        (package_only / "otel_recursive_metrics").symlink_to(tree / "otel_recursive_metrics")
        try:
            out = Path(tmp) / "rows.json"
            env = {**os.environ, "ORM_FAULTS_PACKAGE_TREE": str(package_only), "PYTHONPATH": str(package_only)}
            # cwd: a folder without the package, so that `python -m otel_recursive_metrics` in the
            # scenarios' child processes cannot find this checkout's before the path's.
            subprocess.run([sys.executable, __file__, "--only", only, "--json", str(out)], check=True, env=env, cwd=tmp, timeout=3600)
            rows: list[Row] = json.loads(out.read_text())
            return rows
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--out")
    parser.add_argument("--against", metavar="REV", help="run the scenarios with commit REV's package too, and show both")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # rows for --against's parent process
    args = parser.parse_args()
    unknown = [name for name in args.only.split(",") if name not in SCENARIOS]
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orm-faults-") as tmp:
        for name in args.only.split(","):
            print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
            rows += SCENARIOS[name](Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
        return 0
    text = side_by_side(rows_against(args.against, args.only), rows, args.against) if args.against else markdown(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
