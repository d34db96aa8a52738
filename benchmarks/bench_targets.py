"""Issue 21's targets table, every figure measured in one run beside its round-two baseline.

    python benchmarks/run.py --only 21                  # as a row of the benchmark document
    python benchmarks/bench_targets.py                  # the table alone (about 15 minutes)
    python benchmarks/bench_targets.py --quick          # tiny sizes: a smoke run (figures mean nothing)
    python benchmarks/bench_targets.py --figures bytes,dataframe

One table: figure | round two | target | measured now | met?. Each figure is measured by the
benchmark that measured it in round two, called with the sizes the issue names, its baseline
measured in the same run; a figure that fails says ``failed: <reason>`` in its row and the
others still run. The figures (``--figures`` names them):

- ``bytes``: 20 training curves x 50,000 steps (``bench_codecs.training_curves``: 1,000,000
  points with their own times, steps and values), written through ``PointStore.write_batch`` in
  the batches a run logging a step every 300 ms delivers at the default 5 s flush interval
  (17 steps a batch), the store then closed (compacted); the files' bytes ÷ points, with the
  free pages SQLite keeps in the file after compaction shown apart. Beside it, the same points
  as rows of a plain 4-column SQLite table (name, step, value, time), after a checkpoint.
- ``dataframe``: ``PointStore.to_dataframe()`` of that store (every point) against
  ``pandas.read_sql`` of the same points from that 4-column table; alternating, medians.
- ``query``: ``otel-recursive-metrics query --format csv|json`` of that store (every point) to
  /dev/null, the command in a child process, start-up included (``bench_round2.query_seconds``).
- ``throughput``: ``bench_round2.store_throughput`` (``TrainingMetrics.log``, 20 values a call,
  1,000,000 points, until ``flush()``, ``flush_interval_s`` 600 s so that no point outlives the
  interval in memory while the store works through them) against
  ``bench_round2.raw_sqlite_4_columns``; alternating.
- ``cpu``: ``bench_worker``'s ``TrainingMetrics.log`` → store path, 100,000 points: process CPU
  minus the training thread's, first value to ``flush()`` (round two's method); and to
  ``close()``, the close's own work counted (it compacts what is left).
- ``sustained``: ``bench_round2.sustained_rate``, 5 s trials.
- ``loop``: ``bench_loop.run`` (the plain loop and ``TrainingMetrics.log → store``), 250-step
  runs, at least 41 pairs; the median's 95% interval.
- ``otlp``: ``bench_otlp.run_throughput`` for gRPC and HTTP, 200,000 points, alternating.
- ``first_chart``: a 1,000,000-point run (``bench_ui.write_run``, one metric), closed; the run
  page in Chromium until its first chart, Plotly cached, a fresh server each time
  (``bench_ui``'s "run opened" case); the server read: ``/api/series`` as the page asks, alone.
- ``compare``: ``bench_compare.run``, 50 runs x 200,000 points (4 metrics x 50,000 steps).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import bench_compare, bench_loop, bench_round2, bench_ui, bench_worker
from benchmarks.common import commit, machine, say, versions_line

__all__ = ["FIGURES", "main", "markdown", "run"]

#: The store's flush interval by default, over the curves' 300 ms a step: the steps of a batch.
STEPS_PER_BATCH = round(5.0 / 0.3)
LOOP_PATH = "TrainingMetrics.log → store"
#: ``throughput``'s flush interval: long enough that a million points logged at once never wait
#: past it in memory (at the default 5 s, a store slower than 200,000 points/s has its oldest
#: points dropped as ``overload``, by design), so the figure is the store's pace.
FLUSH_INTERVAL_S = 600.0


@dataclass
class Context:
    """The sizes of one run, its folder, and what the figures share (the curves store)."""

    quick: bool
    repeats: int
    workdir: Path
    chromium: str
    progress: Callable[[str], None]
    shared: dict[str, Any] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# A figure's measurement: (measured now, met: True / False / None when it cannot be judged).
Measured = tuple[str, bool | None]


def _curves_store(ctx: Context) -> dict[str, Any]:
    """The training curves as a closed store and as a 4-column SQLite table, built once a run
    (a failure too: the figures after the first say why the store is missing, not what a
    second build tripped on)."""
    if "curves" not in ctx.shared:
        try:
            ctx.shared["curves"] = _build_curves_store(ctx)
        except Exception as exc:
            ctx.shared["curves"] = exc
    built = ctx.shared["curves"]
    if isinstance(built, Exception):
        raise RuntimeError(f"the curves store was not built: {type(built).__name__}: {built}") from built
    return dict(built)


def _build_curves_store(ctx: Context) -> dict[str, Any]:
    from benchmarks.bench_codecs import training_curves
    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.model.batch import BatchBuilder

    steps = ctx.size(50_000, 2_000)
    series = training_curves(steps=steps)
    ctx.progress(f"targets: writing {len(series)} curves x {steps:,} steps, {STEPS_PER_BATCH} steps a batch")
    columns = [(s.name, s.time_unix_nano.tolist(), s.step.tolist(), s.value.tolist()) for s in series]
    path = ctx.workdir / "curves" / "metrics.db"
    path.parent.mkdir()
    store = PointStore(path)
    started = time.perf_counter()
    for first in range(0, steps, STEPS_PER_BATCH):
        builder = BatchBuilder()
        resource = builder.resource({"training.run.id": "curves", "training.rank": 0, "service.name": "bench_targets"})
        scope = builder.plain_scope("otel_recursive_metrics.training")
        for name, times, step_column, values in columns:
            metric = builder.metric(name, "", "", "gauge")
            for i in range(first, min(steps, first + STEPS_PER_BATCH)):
                builder.add_point(resource, scope, metric, "{}", 0, times[i], values[i], step_column[i], None)
        store.write_batch(builder.build())
    store.close()
    write_s = time.perf_counter() - started
    points = steps * len(series)
    store_bytes = sum(p.stat().st_size for p in path.parent.glob("metrics.db*"))
    # Pages SQLite keeps for reuse (what compaction freed and no vacuum returned): part of the
    # file, shown apart so a reader sees what the chunks themselves take.
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        free_bytes = conn.execute("PRAGMA freelist_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
    table = ctx.workdir / "rows.db"
    conn = sqlite3.connect(table, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t(name TEXT, step INTEGER, value REAL, time INTEGER)")
    rows = [(name, *point) for name, times, step_column, values in columns for point in zip(step_column, values, times, strict=True)]
    for start in range(0, len(rows), 8_000):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?,?,?,?)", rows[start : start + 8_000])
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    table_bytes = sum(p.stat().st_size for p in ctx.workdir.glob("rows.db*"))
    return {
        "path": path,
        "table": table,
        "points": points,
        "write_s": write_s,
        "store_bytes": store_bytes,
        "free_bytes": free_bytes,
        "table_bytes": table_bytes,
    }


def bytes_per_point(ctx: Context) -> Measured:
    c = _curves_store(ctx)
    ours, plain, free = (c[key] / c["points"] for key in ("store_bytes", "table_bytes", "free_bytes"))
    measured = f"{ours:.2f} B, of which free pages {free:.2f} B ({c['points']:,} points; plain 4-column SQLite {plain:.1f} B)"
    return measured, ours <= 8.0


def dataframe(ctx: Context) -> Measured:
    import pandas

    from otel_recursive_metrics import PointStore

    c = _curves_store(ctx)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(ctx.repeats):  # alternating
        store = PointStore(c["path"], readonly=True)
        try:
            gc.collect()
            started = time.perf_counter()
            frame = store.to_dataframe()
            ours.append(time.perf_counter() - started)
        finally:
            store.close()
        if len(frame) != c["points"]:
            raise RuntimeError(f"to_dataframe() gave {len(frame):,} rows, {c['points']:,} stored")
        del frame
        conn = sqlite3.connect(c["table"])
        try:
            gc.collect()
            started = time.perf_counter()
            frame = pandas.read_sql("SELECT name, step, value, time FROM t", conn)
            plain.append(time.perf_counter() - started)
        finally:
            conn.close()
        del frame
    seconds, baseline = statistics.median(ours), statistics.median(plain)
    ratio = seconds / baseline
    measured = f"{seconds:.3f} s = {ratio:.2f} × `pandas.read_sql` ({baseline:.2f} s), {c['points']:,} points"
    return measured, seconds <= 0.1 and ratio <= 0.15


def query(ctx: Context) -> Measured:
    c = _curves_store(ctx)
    rates: dict[str, float] = {}
    for fmt in ("csv", "json"):
        rates[fmt] = c["points"] / statistics.median(bench_round2.query_seconds(c["path"], fmt) for _ in range(ctx.repeats))
    measured = f"{rates['csv'] / 1000:,.0f} k / {rates['json'] / 1000:,.0f} k rows/s ({c['points']:,} rows, start-up included)"
    return measured, min(rates.values()) >= 1_000_000


def throughput(ctx: Context) -> Measured:
    points = ctx.size(1_000_000, 40_000)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(ctx.repeats):  # alternating
        ours.append(bench_round2.store_throughput(points, ctx.workdir, flush_interval_s=FLUSH_INTERVAL_S)["points_per_s"])
        plain.append(bench_round2.raw_sqlite_4_columns(points, ctx.workdir))
    ratio = statistics.median(ours) / statistics.median(plain)
    measured = f"{ratio:.2f} (store {statistics.median(ours):,.0f}, SQLite {statistics.median(plain):,.0f} points/s; {points:,} points)"
    return measured, ratio >= 2


def _cpu_once(workdir: Path, points: int) -> tuple[float, float]:
    """Background CPU seconds of ``TrainingMetrics.log`` → store until ``flush()``, and until ``close()``."""
    produce, finish, close, done = bench_worker._cpu_training(workdir, "", points)
    gc.collect()
    process0, main0 = bench_worker._process_cpu_s(), time.thread_time()
    produce()
    main_produced = time.thread_time()
    flushed = finish()
    process1, main1 = bench_worker._process_cpu_s(), time.thread_time()
    delivered = done()
    close()
    process2 = bench_worker._process_cpu_s()
    if flushed is False or delivered != points:
        raise RuntimeError(f"{delivered:,} of {points:,} points stored (flush returned {flushed!r})")
    # To close(): everything but the logging calls themselves (close() runs on the training thread).
    return (process1 - process0) - (main1 - main0), (process2 - process0) - (main_produced - main0)


def cpu(ctx: Context) -> Measured:
    points = ctx.size(100_000, 2_000)
    runs = [_cpu_once(ctx.workdir, points) for _ in range(ctx.repeats)]
    to_flush = statistics.median(r[0] for r in runs) / points * 1e6
    to_close = statistics.median(r[1] for r in runs) / points * 1e6
    return f"{to_flush:.2f} ms to `flush()`; {to_close:.2f} ms to `close()` ({points:,} points)", to_flush <= 1.0


def sustained(ctx: Context) -> Measured:
    window_s = 1.0 if ctx.quick else 5.0
    found = bench_round2.sustained_rate(window_s, ctx.workdir, high=400_000.0 if ctx.quick else 3_200_000.0)
    dropped = [rate for rate, drops in found["trials"] if drops]
    first_drop = f"drops at {min(dropped):,.0f}" if dropped else "no drop up to the highest rate tried"
    return f"{found['values_per_s']:,.0f} values/s ({first_drop}; {window_s:g} s trials)", found["values_per_s"] >= 1_000_000


def loop(ctx: Context) -> Measured:
    steps, pairs = (30, 2) if ctx.quick else (250, max(ctx.repeats, 41))
    result = bench_loop.run(steps=steps, repeats=pairs, peers=False, progress=ctx.progress, paths=[LOOP_PATH])
    row = next(r for r in result["rows"] if r["path"] == LOOP_PATH)
    low, high = row["interval"]
    measured = (
        f"{row['slowdown']:+.2%} (interval {low:+.2%} to {high:+.2%}; {pairs} pairs of {steps} steps, {result['step_ms']:.2f} ms a step)"
    )
    return measured, row["slowdown"] < 0.01 and high < 0.015


def otlp(ctx: Context) -> Measured:
    from benchmarks import bench_otlp

    points, series = ctx.size(200_000, 10_000), 2_000
    parts: list[str] = []
    verdicts: list[bool | None] = []
    for protocol in bench_otlp.PROTOCOLS:  # each protocol fails alone
        try:
            stock, ours = bench_otlp.run_throughput(protocol, points=points, series=series, repeat=ctx.repeats)
        except Exception as exc:
            parts.append(f"{protocol} {bench_compare.failure(exc)}")
            verdicts.append(None)
            continue
        incomplete = stock["incomplete_runs"] + ours["incomplete_runs"]
        ratio = ours["points_per_s"] / stock["points_per_s"] if stock["points_per_s"] else float("nan")
        parts.append(
            f"{protocol} {ratio:.2f} × (ours {ours['points_per_s']:,}, stock {stock['points_per_s']:,} points/s"
            + (f"; {incomplete} run(s) incomplete" if incomplete else "")
            + ")"
        )
        verdicts.append(ratio >= 2 and not incomplete)
    met = False if False in verdicts else (None if None in verdicts else True)
    return "; ".join(parts) + f"; {points:,} points a run", met


def first_chart(ctx: Context) -> Measured:
    from otel_recursive_metrics.store import PointStore
    from otel_recursive_metrics.ui import UIServer

    points = ctx.size(1_000_000, 20_000)
    path = ctx.workdir / "one-run.db"
    ctx.progress(f"targets: writing a {points:,}-point run")
    store = PointStore(path, durable=False)
    try:
        bench_ui.write_run(store, "one-metric", ["train.loss"], points)
    finally:
        store.close()
    repeats = ctx.repeats
    max_points, browser_s, browser_error = bench_compare.PAGE_MIN_POINTS, None, ""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = bench_compare.launch(playwright, ctx.chromium)
            try:
                visits = [bench_compare.first_chart(browser, path, "run?run=one-metric&refresh=0") for _ in range(repeats)]
            finally:
                browser.close()
        browser_s, max_points = statistics.median(v["first_s"] for v in visits), visits[-1]["max_points"]
    except Exception as exc:  # the server's figure is still worth having
        browser_error = bench_compare.failure(exc)
    reads = []
    query_text = urllib.parse.urlencode({"run": "one-metric", "metric": "train.loss", "max_points": max_points})
    for _ in range(repeats):
        with UIServer(path, port=0) as server:  # a fresh server: the series read from the store
            reads.append(bench_ui._get(f"{server.url}api/series?{query_text}")[1])
    server_s = statistics.median(reads)
    shown = f"{browser_s:.2f} s" if browser_s is not None else f"browser {browser_error}"
    measured = f"{shown} (server read {server_s:.3f} s; {points:,} points, max_points {max_points:,})"
    met = None if browser_s is None else browser_s <= 0.3 and server_s <= 0.1
    return measured, (False if server_s > 0.1 else met)


def compare(ctx: Context) -> Measured:
    runs, steps = (50, 50_000) if not ctx.quick else (3, 500)
    r = bench_compare.run(runs=runs, steps=steps, repeats=ctx.repeats, chromium=ctx.chromium, progress=ctx.progress)
    if "server" not in r and "browser" not in r:  # one row that starts "failed:", naming both reasons
        reasons = (r.get(key, "not measured").removeprefix("failed: ") for key in ("browser_error", "server_error"))
        return "failed: browser: {}; server: {}".format(*reasons), None
    server = (
        f"server {r['server']['sequential_s']:.2f} s for `/api/runs` + the first metric's `/api/series`"
        if "server" in r
        else f"server {r['server_error']}"
    )
    shape = f"{runs} runs x {r['points_per_run']:,} points"
    if "browser" not in r:
        over = "server" in r and r["server"]["sequential_s"] > 1.0
        return f"browser {r['browser_error']}; {server}; {shape}", (False if over else None)
    first = r["browser"]["first_chart_s"]
    return f"first chart {first:.2f} s ({server}; {shape})", first <= 1.0


@dataclass(frozen=True)
class Figure:
    """A row of the issue's table: what it is, round two's figure, the target, how to measure it now."""

    key: str
    figure: str
    round_two: str
    target: str
    measure: Callable[[Context], Measured]


FIGURES = [
    Figure("bytes", "store bytes per point, long run of training curves (after compaction)", "40.0 B", "≤ 8 B", bytes_per_point),
    Figure(
        "dataframe",
        "`to_dataframe()` of 1 M points",
        "1.86–2.33 s",
        "≤ 0.1 s, and ≤ 0.15 × `pandas.read_sql` on a plain 4-column table",
        dataframe,
    ),
    Figure("query", "`query` to CSV / JSON", "250 k / 210 k rows/s", "≥ 1 M rows/s", query),
    Figure("throughput", "store throughput ÷ plain 4-column SQLite `executemany`", "0.35–0.48", "≥ 2", throughput),
    Figure("cpu", "background CPU per 1,000 points, `log` → store", "4–5 ms", "≤ 1 ms", cpu),
    Figure("sustained", "sustained values/s before the first drop", "300 k", "≥ 1 M", sustained),
    Figure("loop", "training-loop slowdown, 20 values a step", "+2.5 %", "< 1 %, the interval's upper end < 1.5 %", loop),
    Figure("otlp", "over OTLP ÷ the stock exporter (gRPC and HTTP)", "1.5 ×", "≥ 2 ×", otlp),
    Figure("first_chart", "web view, first chart of a 1 M-point run (server read)", "0.99 s (0.80 s)", "≤ 0.3 s (≤ 0.1 s)", first_chart),
    Figure("compare", "web view, compare 50 runs × 200 k points", "not measured", "first chart ≤ 1 s", compare),
]


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("met" if met else "**not met**")


def run(
    *,
    quick: bool = False,
    repeats: int = 3,
    figures: Sequence[str] | None = None,
    chromium: str = "/usr/bin/chromium",
    progress: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Measure ``figures`` (keys of :data:`FIGURES`; all by default); each fails alone. Returns rows and ``markdown``."""
    known = [f.key for f in FIGURES]
    unknown = sorted(set(figures or ()) - set(known))
    if unknown:
        raise ValueError(f"figures={unknown!r}: not figures of the targets table (expected some of {known!r})")
    chosen = [f for f in FIGURES if figures is None or f.key in figures]
    rows: list[dict[str, str]] = []
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-targets-") as folder:
        ctx = Context(quick=quick, repeats=1 if quick else repeats, workdir=Path(folder), chromium=chromium, progress=progress)
        for figure in chosen:
            progress(f"targets: {figure.key}")
            started = time.monotonic()
            try:
                measured, met = figure.measure(ctx)
            except Exception as exc:  # one figure failing must not lose the others
                measured, met = bench_compare.failure(exc), None
            progress(f"targets: {figure.key}: {measured} ({time.monotonic() - started:.0f} s)")
            rows.append(
                {
                    "figure": figure.figure,
                    "round two": figure.round_two,
                    "target": figure.target,
                    "measured now": measured,
                    "met?": _verdict(met),
                }
            )
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    result: dict[str, Any] = {
        "rows": rows,
        "quick": quick,
        "repeats": ctx.repeats,
        "load": f"{load_before} at the start, {load_after} at the end",
    }
    result["markdown"] = markdown(result)
    return result


def markdown(result: dict[str, Any]) -> str:
    columns = ["figure", "round two", "target", "measured now", "met?"]
    lines = ["| " + " | ".join(columns) + " |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in result["rows"]]
    lines += [
        "",
        ("Quick run: tiny sizes, the figures mean nothing. " if result["quick"] else "")
        + f"Medians of {result['repeats']} repetition(s), each figure's paths alternating; how each is measured: "
        "`benchmarks/bench_targets.py`. Round two's figures are issue 21's table (2 shared cores). "
        f"Load average {result['load']}. Commit {commit()}; {machine()}.",
        versions_line(
            "python", "sqlite", "otel-recursive-metrics", "numpy", "pcodec", "pandas", "opentelemetry-sdk", "grpcio", "playwright"
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--figures", default="", help=f"comma-separated, some of: {', '.join(f.key for f in FIGURES)} (default all)")
    parser.add_argument("--chromium", default=os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    figures = [f.strip() for f in args.figures.split(",") if f.strip()] or None
    if figures and any(f not in {x.key for x in FIGURES} for f in figures):
        parser.error(f"--figures={args.figures!r}: expected some of {', '.join(f.key for f in FIGURES)}")
    bench_loop.pin_blas()  # the loop's step on one core; before anything imports NumPy
    print(run(quick=args.quick, repeats=args.repeats, figures=figures, chromium=args.chromium)["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
