"""Every benchmark row in one run, printed as one Markdown document.

    python benchmarks/run.py                          # the full run (about 40 minutes; the outage 5, row 21 about 10)
    python benchmarks/run.py --out benchmarks/latest.md
    python benchmarks/run.py --only 1,2               # pick rows
    python benchmarks/run.py --only 21                # issue 21's targets table alone (about 10 minutes)
    python benchmarks/run.py --quick                  # tiny sizes, no peers: a smoke run (about two minutes)

The peers (tensorboardX, MLflow) are installed on first use into the benchmark's own virtualenv
(``bench_training.ensure_environment``: ``~/.cache/otel-recursive-metrics/bench-training-venv``,
which also sees this environment's packages), never into the environment you run this from;
the run then continues in that virtualenv's interpreter. ``--no-peers`` skips them.

Rows (each alternates runs between the paths it compares and reports medians and ratios):

1. cost per logged value on the training thread (``bench_training.py``);
2. slowdown of a ~2 ms NumPy training step logging 20 values a step (``bench_loop.py``);
3. sustained points/s into the store against raw SQLite ``executemany`` (``bench_core.py``) and
   over OTLP against the stock ``OTLPMetricExporter`` (``bench_otlp.py``);
4. background CPU per 1,000 points (``bench_worker.py``);
5. resident memory through an OTLP outage at 10,000 points/s (``bench_otlp.py``; 300 s by default);
6. ``force_flush`` and ``shutdown`` time with 100,000 points queued (``bench_worker.py``);
7. CPU of the system-metrics sampler, per sample and per hour (``bench_system.py``);
8. round two: the store against a plain 4-column SQLite table, bytes per point, sustained values/s
   before the first drop, ``query`` to CSV / JSON and ``to_dataframe`` (``bench_round2.py``);
21. issue 21's targets table: each of its figures at the issue's sizes, beside round two's figure
   and its baseline measured in the same run (``bench_targets.py``; ``--only 21`` runs it alone).

The web view's figures have their own command (``bench_ui.py``: a browser, about 3 minutes), and
so do the fleet (``fleet.py``) and the faults of the reliability table (``faults.py``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import bench_training
from benchmarks.common import REPO as ROOT
from benchmarks.common import machine, results_path, say, sqlite_insert_rate, version, versions_line

__all__ = ["main"]

ROWS = {
    1: "Cost per logged value on the training thread",
    2: "Slowdown of a training loop logging 20 values a step",
    3: "Sustained points/s into the store and over OTLP",
    4: "Background CPU per 1,000 points",
    5: "Resident memory through an OTLP outage",
    6: "force_flush and shutdown with 100,000 points queued",
    7: "CPU of the system-metrics sampler, per sample and per hour",
    8: "Round two: into the store against plain SQLite, store size, overload, reads",
    21: "Issue 21 targets",
}
PEER_MODULES = ("tensorboardX", "mlflow")


HERE = ROOT / "benchmarks"
_say = say
_version = version
_versions = versions_line
_machine = machine


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _source() -> str:
    """The commit measured, and whether the package had uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "otel_recursive_metrics"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    changes = len(dirty.stdout.splitlines())
    return f"commit {sha.stdout.strip()}" + (f" with uncommitted changes to {changes} package file(s)" if changes else "")


def _bench_otlp() -> Any:
    """``bench_otlp`` if it is there (it may be missing from a checkout); None otherwise."""
    if not (HERE / "bench_otlp.py").exists():
        return None
    from benchmarks import bench_otlp

    return bench_otlp


# -- the rows ----------------------------------------------------------------------------------


class Report:
    """Markdown sections plus the figures the targets table is computed from."""

    def __init__(self) -> None:
        self.sections: dict[int, str] = {}
        self.targets: list[tuple[str, str, str]] = []  # (target, measured, verdict)
        self.failed: list[int] = []


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def row1(args: argparse.Namespace, report: Report) -> str:
    result = bench_training.run(
        values_per_call=(1, 20),
        values_total=2_000 if args.quick else 20_000,
        mlflow_values=40 if args.quick else 400,
        repeats=2 if args.quick else args.repeats,
        peers=args.peers,
        install=False,
    )
    rows = {r["path"]: r for r in result["rows"]}
    ours = rows["TrainingMetrics.log"].get("us_per_value_k20")
    if ours is not None:
        report.targets.append(("`TrainingMetrics.log` ≤ 0.5 µs a value (20 values a call)", f"{ours:.3f} µs", _verdict(ours <= 0.5)))
        others = {
            name: r["us_per_value_k20"]
            for name, r in rows.items()
            if "us_per_value_k20" in r and not name.startswith("deque") and not name.startswith("TrainingMetrics")
        }
        if others:
            fastest = min(others, key=lambda name: others[name])
            report.targets.append(
                (
                    "`TrainingMetrics.log` the fastest path after the floor",
                    f"{ours:.3f} µs vs next {fastest} {others[fastest]:.3f} µs",
                    _verdict(ours < others[fastest]),
                )
            )
    text: str = result["markdown"]
    return text


def row2(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_loop

    # Many short pairs rather than a few long ones: the interval of the median narrows with
    # the number of pairs, and a short pair sees less of the machine's drift.
    result = bench_loop.run(
        steps=30 if args.quick else 250,
        repeats=2 if args.quick else max(args.repeats, 41),
        peers=args.peers,
        progress=_say,
    )
    for row in result["rows"]:
        if row["path"] == "TrainingMetrics.log → store" and "slowdown" in row:
            noise = result.get("noise_floor")
            measured = f"{row['slowdown']:+.2%}" + (f" (noise floor {noise:.2%})" if noise is not None else "")
            report.targets.append(
                (
                    "training-loop slowdown < 1% at 20 values a step (`TrainingMetrics.log`), noise floor < 1%",
                    measured,
                    _verdict(row["slowdown"] < 0.01 and noise is not None and noise < 0.01),
                )
            )
    text: str = result["markdown"]
    return text


_POINTS_TABLE = """CREATE TABLE points(
    id INTEGER PRIMARY KEY, metric_id INTEGER NOT NULL, resource_id INTEGER NOT NULL, scope_id INTEGER NOT NULL,
    attributes_id INTEGER NOT NULL, start_time_unix_nano INTEGER NOT NULL, time_unix_nano INTEGER NOT NULL,
    value, step INTEGER, epoch INTEGER, histogram TEXT, extra TEXT)"""
_POINTS_INDEX = """CREATE UNIQUE INDEX points_identity ON points(
    metric_id, resource_id, time_unix_nano, ifnull(step, -1), attributes_id, scope_id, start_time_unix_nano)"""


def raw_sqlite_indexed(series: int, exports: int, workdir: Path) -> float:
    """Rows/s of ``executemany`` into the store's points table with its unique identity index.

    A copy of ``otel_recursive_metrics/store.py``'s schema (version 1), so the ceiling shows what
    de-duplication costs on its own; rows shaped like row 3's SDK data (``exports`` collections
    of ``series`` series over 10 metrics, one timestamp a collection). Same pragmas and
    transaction size as bench_core's raw ceiling.
    """
    rows_total = series * exports
    now = time.time_ns()
    rows = [(i % 10 + 1, 1, 1, i % series + 1, now, now + i // series, float(i), None, None, None, None) for i in range(rows_total)]
    insert = (
        "INSERT OR IGNORE INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano,"
        " value, step, epoch, histogram, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    )
    schema = [_POINTS_TABLE, _POINTS_INDEX]
    return sqlite_insert_rate(workdir, schema, insert, rows, synchronous="FULL", per_transaction=8192, begin="BEGIN IMMEDIATE")


def row3(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_core

    otlp = _bench_otlp()
    repeats = 1 if args.quick else args.repeats
    series, exports = (2_000, 3) if args.quick else (10_000, 20)
    otlp_points, otlp_series = (10_000, 2_000) if args.quick else (200_000, 2_000)
    sdk: list[float] = []
    pipeline: list[float] = []
    raw: list[float] = []
    indexed: list[float] = []
    wire: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-row3-") as tmp:
        workdir = Path(tmp)
        for repeat in range(repeats):  # the paths alternate within each repeat
            sdk.append(bench_core.sdk_to_store(series, exports, workdir, collect_in_loop=True))
            raw.append(bench_core.raw_sqlite(series * exports, workdir))
            indexed.append(raw_sqlite_indexed(series, exports, workdir))
            pipeline.append(bench_core.sdk_to_store(series, exports, workdir, collect_in_loop=False))
            if otlp is not None:
                for protocol in otlp.PROTOCOLS:
                    for r in otlp.run_throughput(protocol, points=otlp_points, series=otlp_series):
                        wire.setdefault((protocol, r["exporter"]), []).append(r["points_per_s"])
            _say(f"row 3: repeat {repeat + 1}/{repeats} done")
    med = statistics.median
    ceiling = med(raw)
    lines = [
        "| path | points/s (median) | ratio | note |",
        "|---|---:|---:|---|",
        f"| raw SQLite `executemany` (ceiling) | {ceiling:,.0f} | 1.00 | plain table, WAL, synchronous=FULL, 8,192 rows a transaction |",
        f"| raw SQLite `executemany`, the store's `points` table and unique identity index | {med(indexed):,.0f} | "
        f"{med(indexed) / ceiling:.2f} | `INSERT OR IGNORE`, same pragmas: what the store's de-duplication costs by itself |",
        f"| `export()` → store, durable queue on | {med(pipeline):,.0f} | {med(pipeline) / ceiling:.2f} of raw SQLite | "
        f"{series:,} ready points an export, {exports} exports, until `force_flush` returns |",
        f"| SDK collection → `export()` → store | {med(sdk):,.0f} | {med(sdk) / ceiling:.2f} of raw SQLite "
        "| the same, SDK collection included |",
    ]
    into_store = med(pipeline) / ceiling
    report.targets.append(
        ("into the store ≥ 40% of raw SQLite", f"{into_store:.0%} ({med(pipeline):,.0f} points/s)", _verdict(into_store >= 0.4))
    )
    if otlp is None:
        lines.append("| OTLP | — | — | benchmarks/bench_otlp.py is not in this checkout |")
    for protocol in getattr(otlp, "PROTOCOLS", ()):
        stock = med(wire[(protocol, "stock OTLPMetricExporter")])
        ours = med(wire[(protocol, "otel-recursive-metrics")])
        ratio = ours / stock if stock else float("nan")
        lines.append(f"| stock `OTLPMetricExporter`, {protocol} | {stock:,.0f} | 1.00 | synchronous, no queue |")
        lines.append(
            f"| ours → OTLP {protocol}, durable queue on | {ours:,.0f} | {ratio:.2f} × stock | until the receiver has every point |"
        )
        report.targets.append(
            (
                f"over OTLP {protocol} ≥ 2 × the stock exporter, durable queue on (issue 13; round one: ≥ 1 ×)",
                f"{ratio:.2f} × stock ({ours:,.0f} points/s)",
                _verdict(ratio >= 2),
            )
        )
    lines.append("")
    lines.append(
        f"Median of {repeats} repeat(s), paths alternating. OTLP: {otlp_points:,} points a run in SDK exports of {otlp_series:,}, "
        "to the loopback receiver of tests/otlp_receiver.py in this process (its server threads share the GIL with both exporters)."
    )
    lines.append(
        _versions(
            "python",
            "sqlite",
            "otel-recursive-metrics",
            "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-grpc",
            "opentelemetry-exporter-otlp-proto-http",
            "grpcio",
            "protobuf",
        )
    )
    return "\n".join(lines)


def row4(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_worker

    result = bench_worker.run(
        cpu_points=2_000 if args.quick else 100_000,
        repeats=1 if args.quick else args.repeats,
        peers=args.peers,
        rows=(4,),
        progress=_say,
    )
    ours = next((r.get("cpu_s_per_1000") for r in result["cpu"] if r["path"] == "TrainingMetrics.log → store"), None)
    if ours is not None:
        report.targets.append(
            (
                "background CPU per 1,000 points, `TrainingMetrics.log` → store, 20 values a call ≤ 1.5 ms (issue 13)",
                f"{1000 * ours:.2f} ms",
                _verdict(ours <= 0.0015),
            )
        )
    return bench_worker.markdown_cpu(result) + "\n" + _versions(*result["versions"])


def row5(args: argparse.Namespace, report: Report) -> str:
    otlp = _bench_otlp()
    if otlp is None:
        return "| measure | value |\n|---|---|\n| outage | not run: benchmarks/bench_otlp.py is not in this checkout |"
    outage_s = args.outage_s if args.outage_s is not None else (3.0 if args.quick else 300.0)
    drain_timeout_s = 60.0 if args.quick else 900.0
    _say(f"row 5: endpoint down for {outage_s:g} s at {args.rate:,} points/s (in a fresh process)")
    # A fresh interpreter, so resident memory is not inflated by what earlier rows imported.
    command = [sys.executable, str(HERE / "bench_otlp.py"), "--skip-throughput", "--json"]
    command += ["--outage-s", str(outage_s), "--rate", str(args.rate), "--drain-timeout-s", str(drain_timeout_s)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=outage_s + drain_timeout_s + 600, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"bench_otlp.py exited with {done.returncode}: {done.stderr[-3000:]}")
    r = next(row for row in map(json.loads, done.stdout.splitlines()) if row.get("benchmark") == "outage")
    lines = [
        "| measure | value |",
        "|---|---:|",
        f"| points exported during the outage | {r['points_offered']:,} |",
        f"| resident memory at start | {r['rss_start_mib']} MiB |",
        f"| resident memory at end of the outage | {r['rss_end_of_outage_mib']} MiB |",
        f"| resident memory peak (outage and drain) | {r['rss_peak_mib']} MiB |",
        f"| durable queue at end of the outage | {r['queue_bytes_at_end_mib']} MiB ({r['disk_mib_at_end']} MiB on disk) |",
        f"| `reader.collect()` with export, median / max | {r['export_ms_p50']} / {r['export_ms_max']} ms |",
        f"| time to deliver the backlog after the endpoint returned | {r['drain_s']} s{'' if r['drained'] else ' (NOT drained)'} |",
        f"| delivered / dead-lettered / dropped | {r['points_delivered']:,} / {r['points_dead_lettered']:,} / {r['points_dropped']:,} |",
        "",
        f"Our exporter, OTLP {r['protocol']}, default settings (1 GiB byte cap on the durable queue), receiver down for "
        f"{r['outage_s']:g} s while the SDK exports {r['rate_points_per_s']:,} points/s. The stock exporter keeps nothing through an "
        "outage (about 10 s of in-memory retries per export, then the batch is dropped), so there is no peer figure to set beside these.",
        _versions("python", "otel-recursive-metrics", "opentelemetry-sdk", "grpcio", "psutil"),
    ]
    growth = r["rss_peak_mib"] - r["rss_start_mib"]
    report.targets.append(
        (
            f"resident memory bounded through a {r['outage_s']:g} s outage at {r['rate_points_per_s']:,} points/s, nothing dropped",
            f"+{growth:.0f} MiB peak for {r['queue_bytes_at_end_mib']} MiB queued; {r['points_delivered']:,} delivered, "
            f"{r['points_dead_lettered']:,} dead-lettered, {r['points_dropped']:,} dropped",
            _verdict(r["drained"] and r["points_dropped"] == 0 and growth < 256),
        )
    )
    return "\n".join(lines)


def row6(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_worker

    result = bench_worker.run(
        flush_points=2_000 if args.quick else 100_000,
        repeats=1 if args.quick else args.repeats,
        peers=args.peers,
        rows=(6,),
        progress=_say,
    )
    return bench_worker.markdown_flush(result) + "\n" + _versions(*result["versions"])


def row7(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_system

    result = bench_system.run(samples=20 if args.quick else 300)
    report.targets.append(
        (
            "system metrics well under 1% of a core at the default 10 s interval (issue 12)",
            f"{100 * result['core_share']:.3f}% of a core, {result['cpu_s_per_hour']:.2f} CPU s/hour"
            f" ({result['points_per_sample']:.0f} points a sample)",
            _verdict(result["core_share"] < 0.01),
        )
    )
    return (
        result["markdown"]
        + "\n\nOne sample is taken and flushed to the store at a time, as at a 10 s interval; the training thread takes no part"
        " (`bench_system.py` has the method).\n"
        + _versions("python", "otel-recursive-metrics", "opentelemetry-sdk", "opentelemetry-instrumentation-system-metrics", "psutil")
    )


def row8(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_round2

    r = bench_round2.run(quick=args.quick, repeats=args.repeats)
    report.targets += [
        (
            "store throughput ÷ plain SQLite (4 columns, WAL, NORMAL, 8,000 a transaction) ≥ 0.5",
            f"{r['store_ratio']:.2f}",
            _verdict(r["store_ratio"] >= 0.5),
        ),
        ("store size per point ≤ 40 B", f"{r['bytes_per_point']:.1f} B", _verdict(r["bytes_per_point"] <= 40)),
        (
            "sustained values/s before the first drop ≥ 500,000 (a paced loop, 20 values a call)",
            f"{r['sustained_values_per_s']:,.0f}",
            _verdict(r["sustained_values_per_s"] >= 500_000),
        ),
        (
            "`query` to CSV / JSON ≥ 500,000 rows/s",
            f"{r['csv_rows_per_s']:,.0f} / {r['json_rows_per_s']:,.0f}",
            _verdict(min(r["csv_rows_per_s"], r["json_rows_per_s"]) >= 500_000),
        ),
        (f"`to_dataframe()` of {r['points']:,} points < 1 s", f"{r['dataframe_s']:.2f} s", _verdict(r["dataframe_s"] < 1.0)),
    ]
    text: str = r["markdown"]
    return text


def row21(args: argparse.Namespace, report: Report) -> str:
    from benchmarks import bench_targets

    # Its table is the section; a figure that fails says so in its own row, so the row never fails.
    text: str = bench_targets.run(quick=args.quick, repeats=args.repeats, progress=_say)["markdown"]
    return text


RUNNERS: dict[int, Callable[[argparse.Namespace, Report], str]] = {
    1: row1,
    2: row2,
    3: row3,
    4: row4,
    5: row5,
    6: row6,
    7: row7,
    8: row8,
    21: row21,
}


# -- the document ------------------------------------------------------------------------------


def document(args: argparse.Namespace, report: Report, started: datetime.datetime, load_at_start: str, elapsed_s: float) -> str:
    mode = "quick (tiny sizes: figures are not meaningful)" if args.quick else "full-size"
    lines = [
        "# otel-recursive-metrics benchmarks",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; {mode} run, {elapsed_s / 60:.1f} min; "
        f"command: `python benchmarks/run.py {' '.join(args.argv)}`".rstrip(),
        f"- Code: {args.source}",
        f"- Machine: {_machine()}; load average at start {load_at_start}, at end {_load()}",
        "- "
        + _versions(
            "python",
            "sqlite",
            "otel-recursive-metrics",
            "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-grpc",
            "opentelemetry-exporter-otlp-proto-http",
            "grpcio",
            "protobuf",
            "numpy",
            "psutil",
            "tensorboardX",
            "mlflow-skinny",
        ),
        "",
    ]
    if report.targets:
        lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in report.targets]
        lines.append("")
    for number in sorted(report.sections):
        lines += [f"## {number}. {ROWS[number]}", "", report.sections[number], ""]
    return "\n".join(lines)


def _peers_importable() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in PEER_MODULES)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and no peers (unless --peers): a smoke run")
    parser.add_argument("--only", default=",".join(map(str, ROWS)), help="comma-separated rows to run (default all: 1 to 8 and 21)")
    parser.add_argument(
        "--out",
        type=Path,
        help="write the document to this file (default: benchmarks/results/<date>-<commit>[-rows-N-M].md; none with --quick)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip tensorboardX and MLflow (nothing is installed)")
    parser.add_argument("--peers", action="store_true", help="with --quick: include the peers anyway")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (row 2 uses at least 9)")
    parser.add_argument("--outage-s", type=float, default=None, help="row 5's outage length (default 300; 3 with --quick)")
    parser.add_argument("--rate", type=int, default=10_000, help="row 5's points per second (default 10000)")
    args = parser.parse_args(argv)
    args.argv = argv
    from benchmarks import bench_loop

    bench_loop.pin_blas()  # row 2's step on one core; before anything imports NumPy
    args.peers = not args.no_peers and (args.peers or not args.quick)
    try:
        rows = sorted({int(r) for r in args.only.split(",") if r.strip()})
    except ValueError:
        parser.error(f"--only={args.only!r}: expected comma-separated row numbers of {', '.join(map(str, RUNNERS))}")
    if not rows or any(r not in RUNNERS for r in rows):
        parser.error(f"--only={args.only!r}: expected comma-separated row numbers of {', '.join(map(str, RUNNERS))}")
    wants_peers = args.peers and any(r in (1, 2, 4, 6) for r in rows)
    in_venv = Path(sys.prefix).resolve() == bench_training.VENV.resolve()
    if wants_peers and not _peers_importable() and not in_venv:
        _say(f"installing the peers into {bench_training.VENV} (once) and running there")
        python = bench_training.ensure_environment()
        return subprocess.run([str(python), str(Path(__file__).resolve()), *argv], check=False).returncode
    started = datetime.datetime.now(datetime.timezone.utc)
    args.source = _source()  # at the start: the package is imported once, below
    load_at_start = _load()
    t0 = time.monotonic()
    report = Report()
    for number in rows:
        _say(f"row {number}: {ROWS[number]}")
        row_started = time.monotonic()
        try:
            report.sections[number] = RUNNERS[number](args, report)
        except Exception:  # one failing row must not lose the others
            report.failed.append(number)
            report.sections[number] = "**Failed:**\n\n```\n" + traceback.format_exc().strip() + "\n```"
            traceback.print_exc()
        _say(f"row {number}: {time.monotonic() - row_started:.0f} s")
    text = document(args, report, started, load_at_start, time.monotonic() - t0)
    print(text)
    if args.out is None and not args.quick:
        args.out = results_path("" if rows == sorted(RUNNERS) else "rows-" + "-".join(map(str, rows)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        _say(f"written to {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
