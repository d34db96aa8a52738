"""OTLP benchmarks: throughput against the stock exporter, and memory through an outage.

Two measurements, against the loopback receivers of ``tests/otlp_receiver.py`` (real grpcio and
http.server OTLP servers on 127.0.0.1):

1. **Throughput** (per protocol): the same SDK ``MetricsData`` snapshot (``--series`` points) is
   exported ``--points / --series`` times, by our ``RecursiveMetricExporter`` (durable queue,
   default settings) and by the stock ``OTLPMetricExporter``; the clock stops when the receiver
   has every point. Points/s and the ratio ours/stock.
2. **Outage** (gRPC): the receiver is down for ``--outage-s`` seconds while the SDK exports
   ``--rate`` points/s through our exporter (default byte cap); resident memory is sampled every
   second. Then the receiver comes back and the time to deliver the backlog is measured, with
   how many points were delivered, dead-lettered and dropped.

Run ``python benchmarks/bench_otlp.py`` (about a minute) or, for the issue's 5-minute outage,
``python benchmarks/bench_otlp.py --outage-s 300``. ``run(args)`` returns the rows as dicts and
``markdown(rows)`` renders them, for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import version

__all__ = ["add_arguments", "main", "markdown", "run", "run_outage", "run_throughput", "versions"]

PROTOCOLS = ("grpc", "http/protobuf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=200_000, help="points per throughput run (default 200000)")
    parser.add_argument("--series", type=int, default=2_000, help="points in one SDK export (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per exporter; the median is reported (default 3)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated: grpc,http/protobuf")
    parser.add_argument("--outage-s", type=float, default=30.0, help="outage length in seconds (default 30; the issue asks for 300)")
    parser.add_argument("--rate", type=int, default=10_000, help="points per second exported during the outage (default 10000)")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0, help="longest wait for the backlog after the outage")
    parser.add_argument(
        "--receiver-process", action="store_true", help="throughput: the receiver in a child process (default: in this process, as row 3)"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-outage", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON Lines instead of Markdown")


def versions() -> dict[str, str]:
    names = (
        "python",
        "otel-recursive-metrics",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
        "opentelemetry-exporter-otlp-proto-http",
        "grpcio",
        "protobuf",
    )
    return {"platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs", **{n: version(n) for n in names}}


# -- helpers -----------------------------------------------------------------------------------


def _snapshot(series: int) -> Any:
    """One SDK ``MetricsData`` with ``series`` counter points (distinct attribute sets, 1,000 per instrument)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    counters = [meter.create_counter(f"train.tokens.{n}", unit="{token}") for n in range((series + 999) // 1000)]
    for i in range(series):
        counters[i // 1000].add(i + 1, {"layer": i % 64, "rank": i // 64, "phase": "train"})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def _receiver(protocol: str) -> Any:
    from tests.otlp_receiver import GrpcReceiver, HttpReceiver

    return GrpcReceiver(keep_requests=False) if protocol == "grpc" else HttpReceiver(keep_requests=False)


def _wait_points(receiver: Any, n: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while receiver.points_accepted < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _stock_exporter(protocol: str, endpoint: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(endpoint=endpoint)


# -- throughput --------------------------------------------------------------------------------


class _ChildReceiver:
    """The receiver in a child process (``bench_loop.ReceiverProcess``), with the in-process
    receiver's attributes: its decoding then shares no GIL with the exporters."""

    def __init__(self, protocol: str) -> None:
        from benchmarks.bench_loop import ReceiverProcess

        self._process = ReceiverProcess(protocol)
        self.endpoint = self._process.endpoint
        self.requests_accepted = None

        self._final: int | None = None

    @property
    def points_accepted(self) -> int:
        return self._final if self._final is not None else self._process.points()

    def down(self) -> None:
        self._final = self._process.points()
        self._process.close()


def _one_throughput_run(which: str, protocol: str, data: Any, exports: int, total: int, receiver_process: bool = False) -> dict[str, Any]:
    from otel_recursive_metrics import RecursiveMetricExporter

    receiver = _ChildReceiver(protocol) if receiver_process else _receiver(protocol).start()
    try:
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="bench-otlp-") as folder:
            if which == "ours":
                exporter: Any = RecursiveMetricExporter(
                    sinks="otlp", dir=folder, otlp_endpoint=receiver.endpoint, otlp_protocol=protocol, flush_interval_s=60.0
                )
            else:
                exporter = _stock_exporter(protocol, receiver.endpoint)
            started = time.perf_counter()
            failures = 0
            for _ in range(exports):
                if exporter.export(data).name != "SUCCESS":
                    failures += 1
            if which == "ours":
                exporter.force_flush(600_000)
            complete = _wait_points(receiver, total, 600.0)
            elapsed = time.perf_counter() - started
            exporter.shutdown()
    finally:
        receiver.down()
    return {
        "seconds": elapsed,
        "points_per_s": total / elapsed if complete else 0.0,
        "requests": receiver.requests_accepted,
        "points_received": receiver.points_accepted,
        "failed_exports": failures,
    }


def run_throughput(protocol: str, *, points: int, series: int, repeat: int = 1, receiver_process: bool = False) -> list[dict[str, Any]]:
    """Points/s for the stock exporter and ours over ``protocol`` (median of ``repeat`` alternating runs); two rows.

    ``receiver_process``: the receiver in a child process instead of this one (a check that its
    decoding, which costs both exporters alike, is not what bounds the ratio).
    """
    from otel_recursive_metrics.pipeline.buffer import metrics_data_points as item_points

    data = _snapshot(series)
    per_export = item_points(data)
    exports = max(1, points // per_export)
    total = exports * per_export
    runs: dict[str, list[dict[str, Any]]] = {"stock": [], "ours": []}
    for _ in range(max(1, repeat)):
        for which in ("stock", "ours"):  # alternating, so background load hits both alike
            runs[which].append(_one_throughput_run(which, protocol, data, exports, total, receiver_process))
    rows: list[dict[str, Any]] = []
    for which in ("stock", "ours"):
        rates = sorted(r["points_per_s"] for r in runs[which])
        median = rates[len(rates) // 2]
        rows.append(
            {
                "benchmark": "throughput",
                "protocol": protocol + (" (receiver in a child process)" if receiver_process else ""),
                "exporter": "otel-recursive-metrics" if which == "ours" else "stock OTLPMetricExporter",
                "points": total,
                "runs": len(rates),
                "requests": runs[which][-1]["requests"],
                "points_per_s": round(median),
                "points_per_s_min": round(rates[0]),
                "points_per_s_max": round(rates[-1]),
                "failed_exports": sum(r["failed_exports"] for r in runs[which]),
                "incomplete_runs": sum(1 for r in runs[which] if r["points_received"] < total),
            }
        )
    stock, ours = rows
    ratio = ours["points_per_s"] / stock["points_per_s"] if stock["points_per_s"] else float("nan")
    ours["ratio_vs_stock"] = stock["ratio_vs_stock"] = round(ratio, 2)
    return rows


# -- outage ------------------------------------------------------------------------------------


def _counting_exporter_class() -> Any:
    from otel_recursive_metrics import RecursiveMetricExporter
    from otel_recursive_metrics.pipeline.buffer import metrics_data_points as item_points

    class CountingExporter(RecursiveMetricExporter):
        """Our exporter, counting the points the SDK hands it."""

        points_handed = 0

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            self.points_handed += item_points(metrics_data)
            return super().export(metrics_data, timeout_millis, **kwargs)

    return CountingExporter


def _counting_exporter(**options: Any) -> Any:
    return _counting_exporter_class()(**options)


def run_outage(*, outage_s: float, rate: int, drain_timeout_s: float, protocol: str = "grpc") -> dict[str, Any]:
    """Resident memory while the endpoint is down and ``rate`` points/s are exported; then the drain."""
    import psutil
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    process = psutil.Process()
    receiver = _receiver(protocol).start()
    receiver.down()
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as folder:
        exporter = _counting_exporter(sinks="otlp", dir=folder, otlp_endpoint=receiver.endpoint, otlp_protocol=protocol)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("bench")
        # The SDK keeps at most 2,000 series per instrument (cardinality limit): spread the
        # `rate` series over instruments of 1,000 each.
        per_instrument = 1_000
        work = []
        for n, first in enumerate(range(0, rate, per_instrument)):
            series = [{"layer": i % 64, "rank": i // 64} for i in range(min(per_instrument, rate - first))]
            work.append((meter.create_counter(f"train.tokens.{n}"), series))
        gc.collect()
        rss_start = process.memory_info().rss
        rss_samples: list[int] = []
        export_seconds: list[float] = []
        started = time.monotonic()
        tick = 0
        # Each second: one value for each of `rate` series, one SDK collection -> `rate` points.
        while time.monotonic() - started < outage_s:
            for counter, attribute_sets in work:
                for attrs in attribute_sets:
                    counter.add(1, attrs)
            t0 = time.perf_counter()
            reader.collect()
            export_seconds.append(time.perf_counter() - t0)
            tick += 1
            rss_samples.append(process.memory_info().rss)
            sleep_until = started + tick
            time.sleep(max(0.0, sleep_until - time.monotonic()))
        points_offered = exporter.points_handed
        stats_at_end = exporter.get_stats()
        disk_bytes = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        receiver.up()
        back = time.monotonic()
        drained = False
        stats: dict[str, Any] = {}
        while time.monotonic() - back < drain_timeout_s:
            stats = exporter.get_stats()
            done = stats["sent_points"].get("otlp", 0) + sum(stats["dead_lettered_points"].values()) + sum(stats["dropped_points"].values())
            if done >= points_offered and stats["received_points"] >= points_offered:
                drained = True
                break
            rss_samples.append(process.memory_info().rss)
            time.sleep(0.2)
        drain_s = time.monotonic() - back
        rss_peak = max(rss_samples)
        exporter.shutdown()
        provider.shutdown(timeout_millis=1_000)
    receiver.down()
    return {
        "benchmark": "outage",
        "protocol": protocol,
        "exporter": "otel-recursive-metrics",
        "outage_s": outage_s,
        "rate_points_per_s": rate,
        "points_offered": points_offered,
        "rss_start_mib": round(rss_start / 2**20, 1),
        "rss_peak_mib": round(rss_peak / 2**20, 1),
        # Resident memory at each fifth of the outage: flat means bounded, a slope means growth.
        "rss_outage_fifths_mib": [round(rss_samples[max(0, min(tick, len(rss_samples)) * k // 5 - 1)] / 2**20, 1) for k in range(1, 6)]
        if tick
        else [],
        "rss_end_of_outage_mib": round(rss_samples[min(tick, len(rss_samples)) - 1] / 2**20, 1) if tick else 0.0,
        "queue_bytes_at_end_mib": round(stats_at_end.get("queue_bytes", 0) / 2**20, 1),
        "disk_mib_at_end": round(disk_bytes / 2**20, 1),
        "export_ms_p50": round(sorted(export_seconds)[len(export_seconds) // 2] * 1000, 2) if export_seconds else 0.0,
        "export_ms_max": round(max(export_seconds) * 1000, 2) if export_seconds else 0.0,
        "drained": drained,
        "drain_s": round(drain_s, 1),
        "points_delivered": stats.get("sent_points", {}).get("otlp", 0),
        "points_received_by_receiver": receiver.points_accepted,
        "points_dead_lettered": sum(stats.get("dead_lettered_points", {}).values()),
        "points_dropped": sum(stats.get("dropped_points", {}).values()),
    }


# -- entry points ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement ``args`` asks for (see :func:`add_arguments`), as rows."""
    rows: list[dict[str, Any]] = []
    if not args.skip_throughput:
        for protocol in [p.strip() for p in args.protocols.split(",") if p.strip()]:
            rows.extend(
                run_throughput(protocol, points=args.points, series=args.series, repeat=args.repeat, receiver_process=args.receiver_process)
            )
    if not args.skip_outage:
        rows.append(run_outage(outage_s=args.outage_s, rate=args.rate, drain_timeout_s=args.drain_timeout_s))
    return rows


def markdown(rows: Sequence[dict[str, Any]], versions_: dict[str, str] | None = None) -> str:
    """The rows as Markdown tables, with the versions they were measured with."""
    out: list[str] = []
    throughput = [r for r in rows if r["benchmark"] == "throughput"]
    if throughput:
        out += [
            "### OTLP throughput (loopback receiver, end to end until the receiver has every point)",
            "",
            "| protocol | exporter | points per run | runs | points/s (median) | min - max | ours / stock |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in throughput:
            out.append(
                f"| {r['protocol']} | {r['exporter']} | {r['points']:,} | {r['runs']} | {r['points_per_s']:,} "
                f"| {r['points_per_s_min']:,} - {r['points_per_s_max']:,} | {r['ratio_vs_stock']:.2f} |"
            )
        out.append("")
    for r in (r for r in rows if r["benchmark"] == "outage"):
        out += [
            f"### Outage: OTLP {r['protocol']} endpoint down {r['outage_s']:g} s at {r['rate_points_per_s']:,} points/s (default byte cap)",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| points exported during the outage | {r['points_offered']:,} |",
            f"| resident memory at start | {r['rss_start_mib']} MiB |",
            f"| resident memory at end of outage | {r['rss_end_of_outage_mib']} MiB |",
            f"| resident memory at each fifth of the outage | {' / '.join(str(x) for x in r['rss_outage_fifths_mib'])} MiB |",
            f"| resident memory peak (outage + drain) | {r['rss_peak_mib']} MiB |",
            f"| durable queue on disk at end of outage | {r['queue_bytes_at_end_mib']} MiB |",
            f"| `reader.collect()` incl. export, median / max | {r['export_ms_p50']} / {r['export_ms_max']} ms |",
            f"| drain time after the endpoint returned | {r['drain_s']} s{'' if r['drained'] else ' (NOT drained)'} |",
            "| delivered / dead-lettered / dropped | "
            f"{r['points_delivered']:,} / {r['points_dead_lettered']:,} / {r['points_dropped']:,} |",
            "",
        ]
    v = versions_ or versions()
    out.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    rows = run(args)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench-otlp"
    sys.exit(main())
