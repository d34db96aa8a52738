"""Reads of a 1 M-point store on chunks: to_dataframe, query to CSV / JSON, export's memory (issue 21).

    python benchmarks/bench_reads.py             # 20 metrics x 50,000 steps, 3 repeats, a few minutes
    python benchmarks/bench_reads.py --quick     # 20 metrics x 2,000 steps, once: a smoke run
    python benchmarks/bench_reads.py --steps N --repeats R

The store is written through :meth:`PointStore.write_batch` the way ``TrainingMetrics.log``
fills it: 20 metrics logged together every step (one time shared by the 20 values, a step and
an epoch), floats with 17 significant digits, in batches of 5,000 steps, compacted as the writer
goes. Measured, each the median of ``--repeats`` (and the best, the machine being shared):

- ``to_dataframe()`` of every point, in this process (pandas imported before the clock starts);
- ``query --format csv`` and ``--format json`` of every point to ``/dev/null``: the CLI in a child
  process, start-up included (what a user waits for), and the same writer in this process;
- ``export --format csv|jsonl|parquet`` of the store, and of a store with a quarter of the steps:
  the child's peak resident memory (``VmHWM``, Linux), which stays flat as the store grows.

Targets (issue 21): ``to_dataframe`` of 1 M points <= 0.1 s; ``query`` to CSV / JSON >= 1 M rows/s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import REPO, machine, markdown_table, say, versions_line

__all__ = ["main", "run", "write_store"]

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC
METRICS = 20
BATCH_STEPS = 5_000

#: Runs the CLI in a child and prints its peak resident memory in KiB on stderr's last line: VmHWM,
#: the high-water mark of the child's own memory (getrusage's ru_maxrss would count the parent's
#: at the fork).
_MEASURED_CHILD = (
    "import runpy, sys\n"
    "sys.argv = ['otel-recursive-metrics', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('otel_recursive_metrics', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "print(status.split()[0], file=sys.stderr)\n"
)


def write_store(path: Path, steps: int) -> int:
    """``METRICS`` metrics x ``steps`` steps into a new store at ``path``; the points written."""
    import numpy as np

    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.model.batch import BatchBuilder

    rng = np.random.default_rng(7)
    store = PointStore(path, durable=False)
    try:
        for first in range(0, steps, BATCH_STEPS):
            builder = BatchBuilder()
            resource = builder.resource({"training.run.id": "bench-reads", "training.rank": 0, "service.name": "bench_reads"})
            scope = builder.plain_scope("otel_recursive_metrics.training")
            ids = [builder.metric(f"train.m{i:02d}", "", "", "gauge") for i in range(METRICS)]
            last = min(steps, first + BATCH_STEPS)
            values = rng.random((last - first, METRICS)) / (1 + np.arange(first, last)[:, None] / 1000)
            for row, step in enumerate(range(first, last)):
                time_unix_nano = T0 + step * 300_000_000  # a step every 300 ms, its values sharing the time
                for i, metric in enumerate(ids):
                    builder.add_point(resource, scope, metric, "{}", 0, time_unix_nano, float(values[row, i]), step, step // 1000)
            store.write_batch(builder.build())
    finally:
        store.close()
    return steps * METRICS


def _timed(action: Callable[[], Any], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def _cli(*args: str) -> tuple[float, int]:
    """Run the CLI in a child with stdout to /dev/null: (seconds, peak resident KiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURED_CHILD, *args], stdout=sink, stderr=subprocess.PIPE, text=True, env=env, check=False
        )
    seconds = time.perf_counter() - started
    lines = done.stderr.strip().splitlines()
    if not lines or not lines[-1].isdigit():
        raise RuntimeError(f"otel-recursive-metrics {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds, int(lines[-1])


def _spread(values: Sequence[float], fmt: str, *, higher_is_better: bool = False) -> str:
    best = max(values) if higher_is_better else min(values)
    return f"{fmt.format(statistics.median(values))} (best {fmt.format(best)})"


def run(*, quick: bool = False, repeats: int = 3, steps: int | None = None) -> dict[str, Any]:
    import pandas  # noqa: F401 - imported before any clock starts

    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.store.export import PointWriter
    from otel_recursive_metrics.store.points import PointQuery

    steps = steps or (2_000 if quick else 50_000)
    repeats = 1 if quick else repeats
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        workdir = Path(tmp)
        say(f"writing {METRICS} x {steps} points")
        big, small = workdir / "reads.db", workdir / "quarter.db"
        points = write_store(big, steps)
        small_points = write_store(small, max(1, steps // 4))
        store = PointStore(big, readonly=True)
        try:
            say("to_dataframe")
            seconds = _timed(store.to_dataframe, repeats + 2)[2:] if not quick else _timed(store.to_dataframe, 1)
            rows.append({"what": f"to_dataframe() of {points:,} points", "measured": _spread(seconds, "{:.3f} s"), "target": "<= 0.1 s"})
            for fmt in ("csv", "json"):
                say(f"query --format {fmt}")
                child = [points / _cli("query", "--store", str(big), "--format", fmt)[0] for _ in range(repeats)]
                rows.append(
                    {
                        "what": f"query --format {fmt}, rows/s (child process, start-up included)",
                        "measured": _spread(child, "{:,.0f}", higher_is_better=True),
                        "target": ">= 1,000,000",
                    }
                )
                with open(os.devnull, "w") as sink:
                    own = [points / s for s in _timed(lambda: PointWriter(store, fmt, sink).write(PointQuery()), repeats)]  # noqa: B023
                measured = _spread(own, "{:,.0f}", higher_is_better=True)
                rows.append({"what": f"query --format {fmt}, rows/s (the writer in this process)", "measured": measured})
        finally:
            store.close()
        for fmt in ("csv", "jsonl", "parquet"):
            say(f"export --format {fmt}")
            peaks = []
            for path, count in ((small, small_points), (big, points)):
                out = workdir / f"out.{fmt}"
                seconds, peak_kib = _cli("export", "--store", str(path), "--format", fmt, "--out", str(out))
                out.unlink()
                peaks.append(f"{count:,} points: {peak_kib / 1024:.0f} MiB in {seconds:.1f} s")
            rows.append({"what": f"export --format {fmt}: peak resident memory", "measured": "; ".join(peaks)})
    load_after = os.getloadavg()[0]
    markdown = "\n".join(
        [
            f"# Reads on chunks: {METRICS} metrics x {steps:,} steps",
            "",
            f"Machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after.",
            versions_line("numpy", "pandas", "pyarrow", "pcodec"),
            f"Medians of {repeats} (best in brackets).",
            "",
            markdown_table(rows, ["what", "measured", "target"]),
        ]
    )
    return {"rows": rows, "markdown": markdown}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 steps, once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, help="steps per metric (default 50,000: 1 M points)")
    args = parser.parse_args(argv)
    print(run(quick=args.quick, repeats=args.repeats, steps=args.steps)["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
