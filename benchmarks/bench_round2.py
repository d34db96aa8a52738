"""Round two's figures (issue 13): the store against plain SQLite, overload, store size, reads.

    python benchmarks/bench_round2.py            # every figure (about 3 minutes)
    python benchmarks/bench_round2.py --quick    # tiny sizes: a smoke run

Each figure is measured the way the issue's table words it, side by side in one run:

- **Into the store ÷ plain SQLite.** ``TrainingMetrics.log`` of 20 values a call, ``--points``
  points in all, into a fresh store (the package's defaults: the store is the only sink, fsync
  on; ``overflow="block"``, so a loop faster than the store waits instead of dropping), timed
  from the first call until ``flush()`` returns; against ``executemany`` of the same
  values as 4 columns (name, step, value, time) into a plain table, WAL, ``synchronous=NORMAL``,
  8,000 rows a transaction. Alternated ``--repeats`` times; medians and their ratio.
- **Store size per point**: the store file (and its WAL) after that, over the points.
- **Sustained values/s before the first drop**: a loop logging 20 values a call at a set rate
  for ``--window-s`` seconds (a fresh pipeline each time, ``flush_interval_s`` 1 s); the rate is
  raised while nothing is dropped and the bracket is halved until it is within 10%. The loop
  paces itself in slices of 10 ms (it logs a slice's calls, then sleeps to the slice's end), so
  the worker competes with it for the GIL as a real loop would, between its steps.
- **Reads**: ``query --format csv`` and ``--format json`` of a 1,000,000-point metric into
  ``/dev/null`` (the command line, in a child process, start-up included), rows/s; and
  ``PointStore.to_dataframe()`` of the same metric (in this process, pandas imported
  beforehand), seconds.

``run(...)`` returns the figures and ``markdown``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import machine, sqlite_insert_rate, versions_line

__all__ = ["main", "markdown", "query_seconds", "raw_sqlite_4_columns", "run", "store_throughput", "sustained_rate"]

VALUES_PER_CALL = 20
NAMES = [f"v{i:02d}" for i in range(VALUES_PER_CALL)]


def store_throughput(points: int, workdir: Path, *, flush_interval_s: float | None = None) -> dict[str, float]:
    """Points/s of ``TrainingMetrics.log`` into the store until ``flush()``, and bytes a point.

    ``flush_interval_s``: the pipeline's (the package's default when None). It also bounds how
    long a point may wait in memory: a store slower than ``points`` a flush interval has its
    oldest points counted as dropped (``overload``) and this raises; a longer interval times the
    store's pace whatever it is.
    """
    from otel_recursive_metrics import TrainingMetrics

    folder = Path(tempfile.mkdtemp(dir=workdir))
    calls = points // VALUES_PER_CALL
    # ``block``: the loop waits for room instead of dropping, so this times the store's pace, not
    # the overload policy (with the default ``drop_oldest`` a loop this fast meets the buffer's
    # time bound and its oldest calls are counted as dropped).
    options: dict[str, Any] = {} if flush_interval_s is None else {"flush_interval_s": flush_interval_s}
    metrics = TrainingMetrics(prefix="train.", dir=folder, overflow="block", block_timeout_s=60.0, **options)
    values = dict.fromkeys(NAMES, 0.0)
    started = time.perf_counter()
    for step in range(calls):
        values["v00"] = step * 1e-3
        metrics.log(values, step=step)
    flushed = metrics.flush(600.0)
    elapsed = time.perf_counter() - started
    stats = metrics.get_stats()
    metrics.close(60.0)
    stored = stats["sent_points"].get("store", 0)
    if not flushed or stored != calls * VALUES_PER_CALL:
        raise RuntimeError(
            f"{stored:,} of {calls * VALUES_PER_CALL:,} points stored (flush returned {flushed}); dropped: {stats['dropped_points']}"
        )
    size = sum(p.stat().st_size for p in folder.glob("metrics.db*"))
    return {"points_per_s": stored / elapsed, "bytes_per_point": size / stored}


def raw_sqlite_4_columns(points: int, workdir: Path) -> float:
    """Rows/s of ``executemany`` of (name, step, value, time), WAL, synchronous=NORMAL, 8,000 a transaction."""
    now = time.time_ns()
    rows = [("train." + NAMES[i % VALUES_PER_CALL], i // VALUES_PER_CALL, i * 1e-3, now + i // VALUES_PER_CALL) for i in range(points)]
    schema = ["CREATE TABLE t(name TEXT, step INTEGER, value REAL, time INTEGER)"]
    return sqlite_insert_rate(workdir, schema, "INSERT INTO t VALUES (?,?,?,?)", rows, synchronous="NORMAL", per_transaction=8000)


def _drops_at(rate_values_per_s: float, window_s: float, workdir: Path) -> int:
    """Points dropped by a loop logging ``rate`` values/s for ``window_s``, counted after a flush."""
    from otel_recursive_metrics import TrainingMetrics

    folder = Path(tempfile.mkdtemp(dir=workdir))
    metrics = TrainingMetrics(prefix="train.", dir=folder, flush_interval_s=1.0)
    values = dict.fromkeys(NAMES, 0.0)
    calls_per_slice = max(1, round(rate_values_per_s / VALUES_PER_CALL * 0.01))
    started = time.perf_counter()
    step = 0
    while (now := time.perf_counter()) - started < window_s:
        for _ in range(calls_per_slice):
            metrics.log(values, step=step)
            step += 1
        next_slice = started + step / calls_per_slice * 0.01
        if next_slice > now:
            time.sleep(next_slice - now)
    metrics.flush(120.0)
    dropped = sum(metrics.get_stats()["dropped_points"].values())
    metrics.close(60.0)
    return int(dropped)


def sustained_rate(window_s: float, workdir: Path, *, low: float = 50_000.0, high: float = 3_200_000.0) -> dict[str, Any]:
    """The highest rate (values/s) with no drop over ``window_s``: doubling, then bisection to 10%."""
    trials: list[tuple[float, int]] = []
    rate = low
    best = 0.0
    while rate <= high:
        dropped = _drops_at(rate, window_s, workdir)
        trials.append((rate, dropped))
        if dropped:
            break
        best, rate = rate, rate * 2
    upper = rate if trials and trials[-1][1] else high
    while best and upper / best > 1.1:
        middle = (best + upper) / 2
        dropped = _drops_at(middle, window_s, workdir)
        trials.append((middle, dropped))
        if dropped:
            upper = middle
        else:
            best = middle
    return {"values_per_s": best, "trials": trials}


def _read_store(points: int, workdir: Path) -> Path:
    """A store holding one metric of ``points`` points (one run, one rank), written by the package."""
    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.model.batch import BatchBuilder

    path = workdir / "reads.db"
    store = PointStore(path)
    t0 = time.time_ns()
    for first in range(0, points, 8192):
        builder = BatchBuilder()
        resource = builder.resource({"training.run.id": "reads", "training.rank": 0, "service.name": "bench"})
        scope = builder.plain_scope("otel_recursive_metrics.training")
        metric = builder.metric("train.loss", "", "", "gauge")
        for step in range(first, min(points, first + 8192)):
            builder.add_point(resource, scope, metric, "{}", 0, t0 + step * 1000, 1.0 / (step + 1), step, step // 1000)
        store.write_batch(builder.build())
    store.close()
    return path


def query_seconds(path: Path, fmt: str, metrics: Sequence[str] = ()) -> float:
    """Seconds of ``otel-recursive-metrics query --format fmt`` of ``metrics`` (all when empty) to
    /dev/null: the command line in a child process, start-up included.

    A failed query raises :class:`RuntimeError` with the end of what it wrote to stderr.
    """
    command = [sys.executable, "-m", "otel_recursive_metrics", "query", "--store", str(path), "--format", fmt]
    for metric in metrics:
        command += ["--metric", metric]
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise RuntimeError(f"query --format {fmt} exited with {done.returncode}: {last[:300]}")
    return elapsed


def reads(points: int, workdir: Path, repeats: int) -> dict[str, float]:
    """Rows/s of ``query --format csv|json`` to /dev/null, and seconds of ``to_dataframe()``."""
    import pandas  # noqa: F401 - imported before the clock starts

    from otel_recursive_metrics import PointStore

    path = _read_store(points, workdir)
    out: dict[str, list[float]] = {"csv": [], "json": [], "dataframe": []}
    for _ in range(repeats):
        for fmt in ("csv", "json"):
            out[fmt].append(points / query_seconds(path, fmt, ["train.loss"]))
        store = PointStore(path, readonly=True)
        started = time.perf_counter()
        frame = store.to_dataframe("train.loss")
        out["dataframe"].append(time.perf_counter() - started)
        assert len(frame) == points
        store.close()
    return {key: statistics.median(values) for key, values in out.items()}


def run(*, quick: bool = False, repeats: int = 3, points: int | None = None, window_s: float | None = None) -> dict[str, Any]:
    points = points or (40_000 if quick else 1_000_000)
    window_s = window_s or (1.0 if quick else 5.0)
    repeats = 1 if quick else repeats
    with tempfile.TemporaryDirectory(prefix="bench-round2-") as tmp:
        workdir = Path(tmp)
        ours: list[dict[str, float]] = []
        raw: list[float] = []
        for _ in range(repeats):  # alternated
            ours.append(store_throughput(points, workdir))
            raw.append(raw_sqlite_4_columns(points, workdir))
        overload = sustained_rate(window_s, workdir, high=400_000.0 if quick else 3_200_000.0)
        read = reads(points, workdir, repeats)
    result = {
        "points": points,
        "store_points_per_s": statistics.median(r["points_per_s"] for r in ours),
        "raw_points_per_s": statistics.median(raw),
        "bytes_per_point": statistics.median(r["bytes_per_point"] for r in ours),
        "sustained_values_per_s": overload["values_per_s"],
        "trials": overload["trials"],
        "window_s": window_s,
        "csv_rows_per_s": read["csv"],
        "json_rows_per_s": read["json"],
        "dataframe_s": read["dataframe"],
        "machine": machine(),
    }
    result["store_ratio"] = result["store_points_per_s"] / result["raw_points_per_s"]
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict[str, Any]) -> str:
    trials = ", ".join(f"{rate / 1000:,.0f}k {'dropped' if dropped else 'ok'}" for rate, dropped in r["trials"])
    rows = [
        (
            "`TrainingMetrics.log` → store, points/s",
            f"{r['store_points_per_s']:,.0f}",
            f"{r['points']:,} points, 20 values a call, until `flush()`",
        ),
        (
            "plain SQLite `executemany`, points/s",
            f"{r['raw_points_per_s']:,.0f}",
            "(name, step, value, time), WAL, synchronous=NORMAL, 8,000 rows a transaction",
        ),
        ("store ÷ plain SQLite", f"{r['store_ratio']:.2f}", "medians of the same run"),
        ("store size per point", f"{r['bytes_per_point']:.1f} B", "store file and WAL after the run above"),
        (
            "sustained values/s before the first drop",
            f"{r['sustained_values_per_s']:,.0f}",
            f"20 values a call, {r['window_s']:g} s a trial: {trials}",
        ),
        (
            "`query --format csv`, rows/s",
            f"{r['csv_rows_per_s']:,.0f}",
            f"a {r['points']:,}-point metric to /dev/null, process start included",
        ),
        ("`query --format json`, rows/s", f"{r['json_rows_per_s']:,.0f}", "the same"),
        (f"`to_dataframe()` of {r['points']:,} points", f"{r['dataframe_s']:.2f} s", "in process, pandas already imported"),
    ]
    lines = ["| figure | measured | how |", "|---|---:|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    lines += [
        "",
        f"Machine: {r['machine']}.",
        versions_line("python", "sqlite", "otel-recursive-metrics", "opentelemetry-sdk", "pandas", "numpy"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int)
    parser.add_argument("--window-s", type=float)
    args = parser.parse_args(argv)
    print(run(quick=args.quick, repeats=args.repeats, points=args.points, window_s=args.window_s)["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
