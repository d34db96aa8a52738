"""Issue 18, defects 1, 6, 7 and 11a, reproduced as reported; one Markdown table of what happens.

    python benchmarks/faults_r3_seed.py

Each scenario runs the package in this process for real (the seed API, the OTel SDK, a real
store, the real ``dlq replay`` command, an OTLP endpoint nobody listens on) and reports what was
logged, what the store holds, what the stats count as dropped or dead-lettered, and what is gone
without a count. ``rows(work)`` is what ``benchmarks/faults.py`` takes; it runs in well under a
minute. Run against another tree with ``PYTHONPATH=<tree> python <a copy of this file>``.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from otel_recursive_metrics import PointStore, RecursiveMetricExporter, TrainingMetrics
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.cli import main as cli
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.metrics_store import MetricsStore
from otel_recursive_metrics.pipeline.worker import Pipeline

Row = dict[str, str]

__all__ = ["rows"]


def _row(scenario: str, logged: int, delivered: Any, dropped: int, note: str) -> Row:
    stored = int(str(delivered).split()[0])
    return {
        "scenario": scenario,
        "logged": str(logged),
        "delivered": str(delivered),
        "counted as dropped": str(dropped),
        "lost uncounted": str(max(0, logged - stored - dropped)),
        "note": note,
    }


def _losses(stats: dict[str, Any]) -> int:
    return int(sum(stats["dropped_points"].values()) + sum(stats["dead_lettered_points"].values()))


def shared_timestamps(work: Path) -> list[Row]:
    """100 submit_metric records over 10 timestamps; 30 store_metric records at one timestamp."""
    data = work / "shared-timestamps"
    collector = AsyncMetricsCollector(pipeline=Pipeline(load_config(dir=data, flush_interval_s=0.05)))
    for i in range(100):
        collector.submit_metric({"metric_name": "replayed.loss", "value": float(i), "timestamp": 1_700_000_000 + i % 10})
    collector.stop(wait_for_completion=True, timeout=30)
    stats = collector.get_stats()
    stored = len(PointStore(data / "metrics.db", readonly=True).query("replayed.loss"))
    store = MetricsStore(path=work / "store-metric.db")
    for i in range(30):
        store.store_metric({"metric_name": "m", "value": float(i), "timestamp": "2025-03-01T12:00:00Z"})
    again = {"metric_name": "m", "value": 7.0, "timestamp": "2025-03-01T12:00:00Z", "id": "fixed"}
    store.store_metric(dict(again))
    store.store_metric(dict(again))
    kept = len(store.store.query("m"))
    store.close()
    return [
        _row(
            "submit_metric: 100 records cycling over 10 timestamps",
            100,
            f"{stored} stored",
            _losses(stats),
            f"stats: sent {stats['sent_points'].get('store', 0)}, metrics_processed {stats['metrics_processed']}",
        ),
        _row(
            "store_metric: 30 records at one timestamp, then one record (same id) twice",
            31,
            f"{kept} stored",
            0,
            "31 distinct records; the repeat of id 'fixed' must be stored once",
        ),
    ]


def counter_past_int64(work: Path) -> list[Row]:
    """A counter passing 2**63 beside 210 gauge points, five exports in one batch; then replay."""
    data = work / "int64"
    exporter = RecursiveMetricExporter(dir=data, flush_interval_s=60.0, batch_size=1_000_000)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("trainer")
    tokens, gauge = meter.create_counter("tokens"), meter.create_gauge("shard.load")
    for _ in range(5):
        tokens.add(2**62)
        for shard in range(42):
            gauge.set(float(shard), {"shard": shard})
        reader.collect()
    exporter.force_flush(60_000)
    stats = exporter.pipeline.get_stats()
    exporter.pipeline.shutdown(10.0)
    store_path = data / "metrics.db"

    def stored() -> tuple[int, int]:
        if not store_path.exists():
            return 0, 0
        store = PointStore(store_path, readonly=True)
        return len(store.query("shard.load")), len(store.query("tokens"))

    gauges, counters = stored()
    dead = sum(stats["dead_lettered_points"].values())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli(["dlq", "replay", "--dir", str(data), "--to", "store", "--store", str(store_path)])
    after_gauges, after_counters = stored()
    replay = "nothing to replay" if "no dead letters" in err.getvalue() else f"exit {code}"
    return [
        _row(
            "OTel counter passing 2**63 beside 210 gauge points (5 exports, one batch)",
            215,
            f"{gauges + counters} stored ({gauges} gauge, {counters} counter)",
            _losses(stats),
            f"dead-lettered {dead}; values_as_float {stats.get('values_as_float', 'n/a')};"
            f" then `dlq replay --to store`: {replay}, the store holds {after_gauges} gauge + {after_counters} counter",
        )
    ]


@contextlib.contextmanager
def _wall_clock_jump(by_ns: int) -> Iterator[None]:
    real = time.time_ns
    time.time_ns = lambda: real() + by_ns  # the seam the issue names
    try:
        yield
    finally:
        time.time_ns = real


def wall_clock_step(work: Path) -> list[Row]:
    """240,000 values (20 a call), batch_size 5,000; the wall clock jumps +1 h a third of the way in."""
    data = work / "clock"
    pipeline = Pipeline(load_config(dir=data, flush_interval_s=5.0, batch_size=5000))
    metrics = TrainingMetrics(pipeline=pipeline)
    values = {f"v{k}": float(k) for k in range(20)}
    for step in range(4000):
        metrics.log(values, step=step)
    with _wall_clock_jump(3600 * 10**9):
        for step in range(4000, 12_000):
            metrics.log(values, step=step)
        pipeline.flush(120.0)
        stats = pipeline.get_stats()
        pipeline.shutdown(10.0)
    stored = PointStore(data / "metrics.db", readonly=True).count() if (data / "metrics.db").exists() else 0
    return [
        _row(
            "wall clock +1 h (NTP step) while logging 240,000 values, batch_size 5,000",
            240_000,
            f"{stored} stored",
            _losses(stats),
            f"dropped {stats['dropped_points'] or 'nothing'}",
        )
    ]


def _refused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def queue_points_after_close(work: Path) -> list[Row]:
    """200 values to store + OTLP with the endpoint down at exit; get_stats() after close()."""
    data = work / "after-close"
    metrics = TrainingMetrics(dir=data, sinks="store,otlp", otlp_endpoint=_refused_endpoint(), shutdown_grace_s=0.5, flush_interval_s=0.1)
    for step in range(100):
        metrics.log({"loss": 1.0, "acc": 0.5}, step=step)
    metrics.close(30.0)
    stats = metrics.get_stats()
    return [
        _row(
            "get_stats() after close(), OTLP endpoint down: 200 points wait on disk for otlp",
            200,
            f"{stats['sent_points'].get('store', 0)} stored (otlp: {stats['sent_points'].get('otlp', 0)})",
            _losses(stats),
            f"queue_points after close: {stats['queue_points']} (200 on disk); queue_size {stats['queue_size']}",
        )
    ]


SCENARIOS: tuple[Callable[[Path], list[Row]], ...] = (shared_timestamps, counter_past_int64, wall_clock_step, queue_points_after_close)


def rows(work: Path) -> list[Row]:
    """Every scenario's rows, each run in a folder of its own under ``work``."""
    out: list[Row] = []
    for scenario in SCENARIOS:
        folder = work / scenario.__name__
        folder.mkdir(parents=True, exist_ok=True)
        out += scenario(folder)
    return out


def markdown(table: list[Row]) -> str:
    keys = ["scenario", "logged", "delivered", "counted as dropped", "lost uncounted", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in table]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="orm-faults-r3-seed-") as tmp:
        print(markdown(rows(Path(tmp))))
