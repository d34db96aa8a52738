"""Core figures: export() latency with every sink down, SDK-to-store throughput, the SQLite ceiling.

Run ``python benchmarks/bench_core.py`` (``--quick`` for a smoke run). It prints one Markdown
table. Each measurement is repeated ``--repeats`` times, alternating between the paths compared,
and the median is reported; the ratio compares medians taken in the same run on the same machine.

1. ``export()`` latency (p50, p99, max) with every sink down: the OTLP sink points at a closed
   loopback port, so every delivery fails and is retried while we call ``export()``.
2. Sustained points/s from the OpenTelemetry SDK into the store with the durable queue on:
   ``--series`` counter series collected by the SDK ``--exports`` times, each collection handed to
   ``export()``, timed until ``force_flush`` says every point is in the store.
3. The same points offered to the pipeline as ready ``MetricsData`` (no SDK collection cost).
4. Raw SQLite ``executemany`` into a plain table of the same row shape (WAL, one transaction per
   8,192 rows, ``synchronous=FULL`` like the store): the ceiling.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from benchmarks.common import machine, sqlite_insert_rate, version
from otel_recursive_metrics import RecursiveMetricExporter


def versions() -> dict[str, str]:
    return {name: version(name) for name in ("python", "otel-recursive-metrics", "opentelemetry-sdk", "sqlite")}


def _collections(series: int, exports: int) -> list[MetricsData]:
    """``exports`` SDK collections of ``series`` cumulative counter series (10 instruments)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    counters = [meter.create_counter(f"bench.c{k}") for k in range(10)]  # stay under the SDK's 2,000-series limit
    for i in range(series):
        counters[i % 10].add(1, {"series": i, "rank": 0, "split": "train"})
    data = [reader.get_metrics_data() for _ in range(exports)]
    provider.shutdown()
    return [d for d in data if d is not None]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_latency(calls: int, points_per_export: int, workdir: Path) -> dict[str, float]:
    """export() call times (microseconds) while the only sink is unreachable."""
    data = _collections(points_per_export, 1)[0]
    port = _closed_port()  # bound then released: nothing listens there
    exporter = RecursiveMetricExporter(
        dir=workdir / "latency",
        sinks="otlp",
        otlp_endpoint=f"http://127.0.0.1:{port}",
        otlp_insecure=True,
        retry_delay_s=0.05,
        max_buffer_items=calls + 10,
    )
    times = []
    perf = time.perf_counter_ns
    for _ in range(calls):
        t0 = perf()
        exporter.export(data)
        times.append(perf() - t0)
    stats = exporter.get_stats()
    exporter.shutdown(timeout_millis=1000)
    times.sort()
    return {
        "p50_us": times[len(times) // 2] / 1000,
        "p99_us": times[int(len(times) * 0.99)] / 1000,
        "max_us": times[-1] / 1000,
        "retries": float(sum(stats["retries"].values())),
    }


def sdk_to_store(series: int, exports: int, workdir: Path, *, collect_in_loop: bool) -> float:
    """Points per second from export() (or from SDK collection) until all are in the store."""
    folder = workdir / f"store-{time.monotonic_ns()}"
    # A burst bigger than the worker writes in a few seconds: give it the time (flush_interval_s
    # also bounds how far behind the worker may fall before the overflow policy applies).
    exporter = RecursiveMetricExporter(dir=folder, flush_interval_s=60.0, batch_size=1)
    if collect_in_loop:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("bench")
        counters = [meter.create_counter(f"bench.c{k}") for k in range(10)]
        for i in range(series):
            counters[i % 10].add(1, {"series": i, "rank": 0, "split": "train"})
        started = time.perf_counter()
        for _ in range(exports):
            data = reader.get_metrics_data()
            assert data is not None
            exporter.export(data)
        provider.shutdown()
    else:
        batches = _collections(series, exports)
        started = time.perf_counter()
        for data in batches:
            exporter.export(data)
    if not exporter.force_flush(600_000):
        raise RuntimeError("force_flush did not finish")
    elapsed = time.perf_counter() - started
    sent = exporter.get_stats()["sent_points"].get("store", 0)
    exporter.shutdown()
    shutil.rmtree(folder, ignore_errors=True)
    if sent != series * exports:
        raise RuntimeError(f"expected {series * exports} points in the store, got {sent}")
    return sent / elapsed


def raw_sqlite(rows_total: int, workdir: Path) -> float:
    now = time.time_ns()
    rows = [
        (i % 10 + 1, 1, 1, f'{{"rank":0,"series":{i},"split":"train"}}', now, now + i, float(i), None, None, None, None)
        for i in range(rows_total)
    ]
    schema = ["CREATE TABLE p(metric, resource, scope, attributes, start, time, value, step, epoch, histogram, extra)"]
    insert = "INSERT INTO p VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    return sqlite_insert_rate(workdir, schema, insert, rows, synchronous="FULL", per_transaction=8192, begin="BEGIN IMMEDIATE")


def run(*, quick: bool = False, repeats: int = 3) -> list[dict[str, Any]]:
    series, exports = (2_000, 3) if quick else (10_000, 20)
    calls = 2_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="orm-bench-") as tmp:
        workdir = Path(tmp)
        latency = [export_latency(calls, 100, workdir) for _ in range(1 if quick else repeats)]
        sdk, pipeline, raw = [], [], []
        for _ in range(repeats):  # alternate the paths compared
            sdk.append(sdk_to_store(series, exports, workdir, collect_in_loop=True))
            pipeline.append(sdk_to_store(series, exports, workdir, collect_in_loop=False))
            raw.append(raw_sqlite(series * exports, workdir))
    med = statistics.median
    ceiling = med(raw)
    return [
        {
            "measure": "export() with every sink down, p50",
            "value": f"{med(x['p50_us'] for x in latency):.1f} µs",
            "note": "100-point export, OTLP endpoint refused",
        },
        {
            "measure": "export() with every sink down, p99",
            "value": f"{med(x['p99_us'] for x in latency):.1f} µs",
            "note": f"{calls:,} calls",
        },
        {"measure": "export() with every sink down, max", "value": f"{med(x['max_us'] for x in latency):.1f} µs", "note": ""},
        {
            "measure": "SDK collect -> store, durable queue on",
            "value": f"{med(sdk):,.0f} points/s",
            "note": f"{med(sdk) / ceiling:.0%} of raw SQLite",
        },
        {
            "measure": "export() -> store, durable queue on",
            "value": f"{med(pipeline):,.0f} points/s",
            "note": f"{med(pipeline) / ceiling:.0%} of raw SQLite",
        },
        {
            "measure": "raw SQLite executemany (ceiling)",
            "value": f"{ceiling:,.0f} rows/s",
            "note": "plain table, WAL, 8,192 rows a transaction",
        },
    ]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measure | median | note |", "|---|---:|---|"]
    lines += [f"| {r['measure']} | {r['value']} | {r['note']} |" for r in rows]
    lines.append("")
    lines.append("Machine: " + machine() + "; " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick, repeats=1 if args.quick else args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
