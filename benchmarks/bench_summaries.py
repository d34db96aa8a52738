"""The store's summaries on a sweep of runs: the runs page, ``runs``, ``compare``, a metric across runs, rank skew.

    python benchmarks/bench_summaries.py                      # 50 runs x 20 metrics x 10,000 steps (10 M points)
    python benchmarks/bench_summaries.py --against main       # the same with commit main's package too, side by side
    python benchmarks/bench_summaries.py --quick              # 5 runs x 4 metrics x 500 steps, one repetition

Method. A store is built in a temporary folder through the store's own write path
(:meth:`PointStore.write_batch`), one run after the other as a sweep would: each run one rank,
``--metrics`` gauges logged at every step, batches of 200 steps (what a second of logging at
200 steps/s gives), the store closed after each run as its process would. Then, on the store
opened read-only, each summary is timed ``--repeats`` times (after one untimed call; fewer,
once at least, past 30 s) and the median given:

- *runs page*: what ``GET /api/runs`` answers (:func:`~otel_recursive_metrics.ui.api.runs_payload`:
  the run summaries and the last value of every metric of every run);
- *runs CLI* and *runs CLI, last of 2 metrics*: ``otel-recursive-metrics runs [--metric M]`` in
  this process (output to /dev/null);
- *runs, last of every metric*: :meth:`PointStore.runs` with ``last_of`` every metric (what the
  runs page shows, through the run summaries alone);
- *compare 2 runs* and *compare every run*: :func:`~otel_recursive_metrics.store.run_compare.compare_runs`
  over every metric;
- *one metric across runs*: :func:`~otel_recursive_metrics.store.metric_summary.summarize_metric`
  (``GET /api/summary``'s first read), and its update after the last batch;
- *rank skew*: :meth:`PointStore.rank_skew` of one run.

``--against REV`` runs the same in a child process with commit ``REV``'s package (``git
archive`` into a temporary folder; the store is built anew there, in that version's format) and
prints both columns and their ratio. A summary a version cannot answer shows its error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    if os.environ.get("ORM_BENCH_PACKAGE_TREE"):  # --against: that tree's package, this checkout's benchmark
        sys.path.insert(0, os.environ["ORM_BENCH_PACKAGE_TREE"])

from benchmarks.common import REPO, commit, machine, markdown_table, say, versions_line

__all__ = ["build_store", "main", "measure"]

T0_NS = 1_800_000_000 * 10**9
STEP_NS = 10_000_000  # 100 steps/s
STEPS_PER_BATCH = 200


def build_store(path: Path, runs: int, metrics: int, steps: int) -> None:
    """A sweep of ``runs`` runs, each ``metrics`` gauges at every one of ``steps`` steps, written batch by batch."""
    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.model.batch import BatchBuilder

    for run in range(runs):
        store = PointStore(path, durable=False)
        start_ns = T0_NS + run * steps * STEP_NS
        for first in range(0, steps, STEPS_PER_BATCH):
            builder = BatchBuilder()
            resource = builder.resource({"service.name": "train", "training.run.id": f"run-{run:03d}", "training.rank": 0})
            scope = builder.plain_scope("bench", "")
            ids = [builder.metric(f"train.m{m:02d}", "", "", "gauge") for m in range(metrics)]
            for step in range(first, min(steps, first + STEPS_PER_BATCH)):
                for m, metric in enumerate(ids):
                    value = 1.0 / (step + 1) + m + run * 0.001
                    builder.add_point(resource, scope, metric, "{}", 0, start_ns + step * STEP_NS, value, step, None)
            store.write_batch(builder.build())
        store.close()


#: A summary slower than this (an earlier version's scan) is timed fewer times: once at least.
BUDGET_S = 30.0


def _timed(call: Callable[[], Any], repeats: int) -> str:
    """Median seconds of ``repeats`` calls after one untimed one (fewer past :data:`BUDGET_S`), or the error it raises."""
    try:
        started = time.perf_counter()
        call()
        spent = time.perf_counter() - started
        times: list[float] = []
        while len(times) < repeats and (not times or spent < BUDGET_S):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
            spent += times[-1]
    except Exception as exc:  # a version that cannot answer shows why
        return f"fails: {type(exc).__name__}: {str(exc)[:60]}"
    return f"{statistics.median(times):.4f}" + ("" if len(times) == repeats else f" (of {len(times)})")


def measure(path: Path, repeats: int) -> dict[str, str]:
    """Each summary's median seconds on the store at ``path`` (see the module docstring)."""
    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.cli import main as cli_main
    from otel_recursive_metrics.store.metric_summary import summarize_metric
    from otel_recursive_metrics.store.run_compare import compare_runs
    from otel_recursive_metrics.store.series import RunCatalog

    store = PointStore(path, readonly=True)
    names = store.metric_names()
    runs = [str(r["run"]) for r in store.runs()]
    newest = int(store.read("SELECT max(last_row_id) FROM chunks" if _has(store, "chunks") else "SELECT max(id) FROM points")[0][0])

    def cli(*args: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            cli_main(["runs", "--store", str(path), *args])

    def runs_page() -> None:
        from otel_recursive_metrics.ui.api import runs_payload

        runs_payload(store)

    catalog = RunCatalog(store)
    cases: dict[str, Callable[[], Any]] = {
        "runs page (/api/runs)": runs_page,
        "runs CLI": cli,
        "runs CLI, last of 2 metrics": lambda: cli("--metric", names[0], "--metric", names[-1]),
        "runs, last of every metric": lambda: store.runs(last_of=names),
        "compare 2 runs": lambda: compare_runs(store, runs[:2]),
        "compare every run": lambda: compare_runs(store, runs),
        "one metric across runs": lambda: summarize_metric(store, catalog, names[0], until_id=newest),
        "its update, last batch": lambda: summarize_metric(
            store, catalog, names[0], until_id=newest, after_id=newest - STEPS_PER_BATCH * len(names)
        ),
        "rank skew of one run": lambda: store.rank_skew(runs[-1]),
    }
    out = {}
    for label, call in cases.items():
        say(label)
        out[label] = _timed(call, repeats)
    store.close()
    return out


def _has(store: Any, table: str) -> bool:
    return bool(store.read("SELECT 1 FROM sqlite_master WHERE name = ?", [table]))


def _measure_here(args: argparse.Namespace) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="orm-bench-summaries-") as tmp:
        path = Path(tmp) / "metrics.db"
        say(f"building {args.runs} runs x {args.metrics} metrics x {args.steps} steps")
        started = time.perf_counter()
        build_store(path, args.runs, args.metrics, args.steps)
        say(f"built in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 2**20:.0f} MiB")
        return measure(path, args.repeats)


def _measure_against(rev: str, args: argparse.Namespace) -> dict[str, str]:
    """The same in a child process whose package is commit ``rev``'s."""
    with tempfile.TemporaryDirectory(prefix="orm-bench-summaries-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "otel_recursive_metrics"], check=True, capture_output=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        out = Path(tmp) / "figures.json"
        argv = ["--runs", str(args.runs), "--metrics", str(args.metrics), "--steps", str(args.steps), "--repeats", str(args.repeats)]
        env = {**os.environ, "ORM_BENCH_PACKAGE_TREE": tmp, "PYTHONPATH": tmp}
        subprocess.run([sys.executable, __file__, *argv, "--json", str(out)], check=True, env=env, cwd=tmp)
        figures: dict[str, str] = json.loads(out.read_text())
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5 runs x 4 metrics x 500 steps, one repetition")
    parser.add_argument("--against", metavar="REV", help="measure commit REV's package too, and show both")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # figures for --against's parent process
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.metrics, args.steps, args.repeats = 5, 4, 500, 1
    load_before = os.getloadavg()
    before = _measure_against(args.against, args) if args.against else None
    after = _measure_here(args)
    load_after = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(after))
        return 0
    points = args.runs * args.metrics * args.steps
    print(f"# Summaries of {args.runs} runs x {args.metrics} metrics x {args.steps:,} steps ({points:,} points)\n")
    print(f"Commit {commit()}; {machine()}.\n{versions_line('python', 'sqlite', 'numpy', 'pcodec')}")
    print(f"Load average (1 min) {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end.\n")
    columns = ["summary", "seconds (median)"]
    rows = []
    for label, figure in after.items():
        row = {"summary": label, "seconds (median)": figure}
        if before is not None:
            row[f"{args.against} (s)"] = before.get(label, "")
            row[f"{args.against} / this"] = _ratio(before.get(label, ""), figure)
        rows.append(row)
    if before is not None:
        columns += [f"{args.against} (s)", f"{args.against} / this"]
    print(markdown_table(rows, columns))
    return 0


def _ratio(before: str, after: str) -> str:
    try:
        return f"{float(before.split(maxsplit=1)[0]) / float(after.split(maxsplit=1)[0]):.1f}x"
    except (IndexError, ValueError, ZeroDivisionError):
        return "-"


if __name__ == "__main__":
    sys.exit(main())
