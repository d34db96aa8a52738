"""Background CPU per 1,000 points, and force_flush / shutdown time with 100,000 points queued.

    python benchmarks/bench_worker.py            # both tables, every path whose package is importable
    python benchmarks/bench_worker.py --quick    # tiny sizes: a smoke run

**Worker CPU** (issue 6, row 4). The worker competes with the training thread for the GIL, so
what matters is the CPU time it spends per point. A thread's CPU time cannot be read with
``time.thread_time`` from outside it, so each measurement takes the process's CPU time
(``resource.getrusage``: every thread, including those that ended) minus the main thread's
(``time.thread_time``) over a window that starts before the first value and ends when the
path's flush returns. Nothing else runs in this process meanwhile: the OTLP receiver is a child
process (:class:`bench_loop.ReceiverProcess`). Our own threads (``otel-recursive-metrics-*``)
are also read one by one with ``psutil`` to show which stage costs what. Paths:

- values logged on the main thread: ``TrainingMetrics.log`` (20 values a call) and
  ``submit_metric`` into the store, ``TrainingMetrics.log`` over OTLP gRPC; the peers
  tensorboardX ``add_scalar`` and MLflow ``log_metrics(synchronous=False)``;
- SDK collections of 1,000 counter series made by a bench thread (as the SDK's reader thread
  would), handed to our exporter (store, OTLP gRPC), to the stock ``OTLPMetricExporter`` (gRPC),
  and to an exporter that does nothing: the SDK's own share, included in the other three.

**Flush and shutdown** (row 6): 100,000 points queued, then one call timed. Our paths are set so
the worker stays asleep while they queue (``batch_size`` and ``flush_interval_s`` huge), so all
100,000 points are still in memory when the call starts: the worst case. tensorboardX's writer
thread works while values are queued, so part of its backlog may already be written; MLflow
likewise.

``run(...)`` returns ``{"cpu": [...], "flush": [...], "versions": {...}, "markdown": str}``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.bench_loop import ReceiverProcess
from benchmarks.common import version

__all__ = ["main", "markdown", "run", "run_cpu", "run_flush"]

VALUES_PER_CALL = 20
SERIES = 1_000
THREAD_PREFIX = "otel-recursive-metrics-"
_IDLE = {"batch_size": 1_000_000_000, "flush_interval_s": 3600.0, "max_buffer_items": 10_000_000}

# A CPU path: (workdir, endpoint, points) -> (produce(), finish(), close(), points_done()).
#   produce() runs on the main thread (its CPU is not counted), finish() waits for delivery.
CpuPath = Callable[[Path, str, int], tuple[Callable[[], None], Callable[[], Any], Callable[[], Any], Callable[[], int]]]


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _our_threads_cpu_s() -> dict[str, float]:
    """CPU seconds of each live ``otel-recursive-metrics-*`` thread, by name (psutil)."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)}
    out: dict[str, float] = {}
    for thread in psutil.Process().threads():
        name = names.get(thread.id)
        if name is not None:
            stage = name[len(THREAD_PREFIX) :]
            out[stage] = out.get(stage, 0.0) + thread.user_time + thread.system_time
    return out


# -- values logged on the main thread ----------------------------------------------------------


def _names() -> list[str]:
    return [f"m{i}" for i in range(VALUES_PER_CALL)]


def _cpu_training(workdir: Path, endpoint: str, points: int, sink: str = "store") -> Any:
    from otel_recursive_metrics.training import TrainingMetrics

    options: dict[str, Any] = {"sinks": sink}
    if sink == "otlp":
        options.update(otlp_endpoint=endpoint, otlp_insecure=True)
    metrics = TrainingMetrics(prefix="train.", dir=workdir / f"tm-{sink}-{time.monotonic_ns()}", max_buffer_items=1_000_000, **options)
    values = dict.fromkeys(_names(), 0.5)
    log = metrics.log

    def produce() -> None:
        for step in range(points // VALUES_PER_CALL):
            log(values, step=step)

    def sent() -> int:
        return int(metrics.get_stats()["sent_points"].get(sink, 0))

    return produce, lambda: metrics.flush(600), metrics.close, sent


def _cpu_submit(workdir: Path, endpoint: str, points: int) -> Any:
    from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector

    collector = AsyncMetricsCollector({"dir": str(workdir / f"seed-{time.monotonic_ns()}"), "max_buffer_items": 1_000_000})
    names = _names()
    submit = collector.submit_metric

    def produce() -> None:
        for step in range(points // VALUES_PER_CALL):
            for name in names:
                submit({"metric_name": name, "value": 0.5, "step": step})

    def sent() -> int:
        return int(collector.get_stats()["metrics_processed"])

    return produce, lambda: collector.flush(600), collector.stop, sent


def _cpu_tensorboardx(workdir: Path, endpoint: str, points: int) -> Any:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(workdir / f"tbx-{time.monotonic_ns()}"))
    names = _names()
    add = writer.add_scalar

    def produce() -> None:
        for step in range(points // VALUES_PER_CALL):
            for name in names:
                add(name, 0.5, step)

    return produce, writer.flush, writer.close, lambda: points // VALUES_PER_CALL * VALUES_PER_CALL


def _cpu_mlflow(workdir: Path, endpoint: str, points: int) -> Any:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.start_run()
    values = dict.fromkeys(_names(), 0.5)

    def produce() -> None:
        for step in range(points // VALUES_PER_CALL):
            mlflow.log_metrics(values, step=step, synchronous=False)

    return produce, mlflow.flush_async_logging, mlflow.end_run, lambda: points // VALUES_PER_CALL * VALUES_PER_CALL


# -- SDK collections made by a bench thread ----------------------------------------------------


def _sdk(exporter: Any, points: int, count: Callable[[], int]) -> Any:
    """``points / SERIES`` collections of SERIES counter series, made on a bench thread."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    counters = [meter.create_counter(f"train.tokens.{k}") for k in range(10)]
    for i in range(SERIES):
        counters[i % 10].add(1, {"layer": i % 64, "rank": i // 64, "split": "train"})
    collections = max(1, points // SERIES)
    error: list[BaseException] = []

    def collect_all() -> None:
        try:
            for _ in range(collections):
                reader.collect()
        except BaseException as exc:  # reported on the main thread
            error.append(exc)

    thread = threading.Thread(target=collect_all, name="bench-sdk-collections")

    def produce() -> None:
        thread.start()

    def finish() -> Any:
        thread.join()
        if error:
            raise error[0]
        return exporter.force_flush(600_000)

    def close() -> None:
        provider.shutdown(timeout_millis=30_000)

    return produce, finish, close, count


class _Counting:
    """Wraps an exporter's ``export`` to count the points handed to it."""

    def __init__(self, exporter: Any) -> None:
        from otel_recursive_metrics.pipeline.buffer import metrics_data_points as item_points

        self.exporter = exporter
        self.points = 0
        self._item_points = item_points
        original = exporter.export

        def export(metrics_data: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(metrics_data, *args, **kwargs)
            if result.name == "SUCCESS":
                self.points += self._item_points(metrics_data)
            return result

        exporter.export = export


def _cpu_sdk_ours(workdir: Path, endpoint: str, points: int, sink: str = "store") -> Any:
    from otel_recursive_metrics import RecursiveMetricExporter

    options: dict[str, Any] = {"sinks": sink}
    if sink == "otlp":
        options.update(otlp_endpoint=endpoint, otlp_insecure=True)
    exporter = RecursiveMetricExporter(dir=workdir / f"sdk-{sink}-{time.monotonic_ns()}", **options)
    return _sdk(exporter, points, lambda: int(exporter.get_stats()["sent_points"].get(sink, 0)))


def _cpu_sdk_stock(workdir: Path, endpoint: str, points: int) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    counting = _Counting(OTLPMetricExporter(endpoint=endpoint, insecure=True))
    return _sdk(counting.exporter, points, lambda: counting.points)


def _cpu_sdk_only(workdir: Path, endpoint: str, points: int) -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    counting = _Counting(ConsoleMetricExporter(out=_Null(), formatter=lambda data: ""))
    return _sdk(counting.exporter, points, lambda: counting.points)


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


CPU_PATHS: dict[str, tuple[Any, str]] = {
    "TrainingMetrics.log → store": (_cpu_training, "20 values a call"),
    "submit_metric → store": (_cpu_submit, "one record a value"),
    "TrainingMetrics.log → OTLP gRPC": (lambda w, e, n: _cpu_training(w, e, n, "otlp"), "durable queue on"),
    "SDK collections → RecursiveMetricExporter → store": (_cpu_sdk_ours, "1,000 series a collection; SDK share included"),
    "SDK collections → RecursiveMetricExporter → OTLP gRPC": (
        lambda w, e, n: _cpu_sdk_ours(w, e, n, "otlp"),
        "durable queue on; SDK share included",
    ),
    "SDK collections → stock OTLPMetricExporter gRPC": (_cpu_sdk_stock, "peer; SDK share included"),
    "SDK collections → no-op exporter": (_cpu_sdk_only, "the SDK's own share of the three rows above"),
    "tensorboardX add_scalar": (_cpu_tensorboardx, "peer: its writer thread"),
    "MLflow log_metrics(synchronous=False)": (_cpu_mlflow, "peer: its async logging threads; 1/10 of the points"),
}
PEERS = {"tensorboardX add_scalar": "tensorboardX", "MLflow log_metrics(synchronous=False)": "mlflow"}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cpu_once(factory: Any, workdir: Path, endpoint: str, points: int) -> dict[str, Any]:
    produce, finish, close, done = factory(workdir, endpoint, points)
    gc.collect()
    process0, main0, wall0 = _process_cpu_s(), time.thread_time(), time.perf_counter()
    produce()
    flushed = finish()
    process1, main1, wall1 = _process_cpu_s(), time.thread_time(), time.perf_counter()
    stages = _our_threads_cpu_s()
    delivered = done()
    close()
    background = (process1 - process0) - (main1 - main0)
    return {
        "points": delivered,
        "background_cpu_s": background,
        "main_cpu_s": main1 - main0,
        "wall_s": wall1 - wall0,
        "stages": stages,
        "flushed": flushed is not False,
    }


def run_cpu(*, points: int, repeats: int, peers: bool, endpoint: str, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Background CPU seconds per 1,000 points for every available path; paths alternate."""
    names = [name for name in CPU_PATHS if name not in PEERS or (peers and _importable(PEERS[name]))]
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    try:
        for repeat in range(repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                n = points // 10 if name.startswith("MLflow") else points
                samples[name].append(_cpu_once(CPU_PATHS[name][0], workdir, endpoint, n))
            progress(f"row 4: repeat {repeat + 1}/{repeats} done")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for name in CPU_PATHS:
        row: dict[str, Any] = {"path": name, "note": CPU_PATHS[name][1]}
        runs = samples.get(name)
        if not runs:
            row["note"] = "not installed here (run without --no-peers)"
        else:
            per_k = [r["background_cpu_s"] / r["points"] * 1000 for r in runs if r["points"]]
            row["cpu_s_per_1000"] = statistics.median(per_k) if per_k else float("nan")
            row["points"] = runs[-1]["points"]
            row["samples"] = per_k
            stages: dict[str, list[float]] = {}
            for r in runs:
                for stage, cpu in r["stages"].items():
                    stages.setdefault(stage, []).append(cpu / r["points"] * 1000 if r["points"] else 0.0)
            row["stages"] = {stage: statistics.median(v) for stage, v in sorted(stages.items())}
            row["flushed"] = all(r["flushed"] for r in runs)
        rows.append(row)
    return rows


# -- force_flush and shutdown with 100,000 points queued ----------------------------------------

# A flush path: (workdir, endpoint, points, call) -> (queue(), timed(), cleanup()); call is "flush" or "shutdown".
FlushPath = Callable[[Path, str, int, str], tuple[Callable[[], None], Callable[[], Any], Callable[[], Any]]]


def _flush_training(workdir: Path, endpoint: str, points: int, call: str, sink: str = "store") -> Any:
    from otel_recursive_metrics.training import TrainingMetrics

    options: dict[str, Any] = {"sinks": sink, **_IDLE}
    if sink == "otlp":
        options.update(otlp_endpoint=endpoint, otlp_insecure=True)
    metrics = TrainingMetrics(prefix="train.", dir=workdir / f"ftm-{sink}-{time.monotonic_ns()}", **options)
    values = dict.fromkeys(_names(), 0.5)

    def queue() -> None:
        before = len(metrics.pipeline.buffer)  # the run's start event may wait there already
        for step in range(points // VALUES_PER_CALL):
            metrics.log(values, step=step)
        if len(metrics.pipeline.buffer) - before != points // VALUES_PER_CALL:
            raise RuntimeError("the worker took items before the timed call")

    timed = (lambda: metrics.flush(600)) if call == "flush" else (lambda: metrics.close(600))
    return queue, timed, metrics.close


def _flush_exporter(workdir: Path, endpoint: str, points: int, call: str) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_recursive_metrics import RecursiveMetricExporter

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    counters = [meter.create_counter(f"train.tokens.{k}") for k in range(10)]
    for i in range(SERIES):
        counters[i % 10].add(1, {"layer": i % 64, "rank": i // 64, "split": "train"})
    snapshots = [reader.get_metrics_data() for _ in range(max(1, points // SERIES))]
    provider.shutdown()
    exporter = RecursiveMetricExporter(dir=workdir / f"fexp-{time.monotonic_ns()}", **_IDLE)

    def queue() -> None:
        for data in snapshots:
            exporter.export(data)

    def timed() -> Any:
        if call == "flush":
            return exporter.force_flush(600_000)
        exporter.shutdown(timeout_millis=600_000)
        return exporter.get_stats()["sent_points"].get("store", 0) == len(snapshots) * SERIES

    return queue, timed, lambda: exporter.shutdown(timeout_millis=30_000)


def _flush_tensorboardx(workdir: Path, endpoint: str, points: int, call: str) -> Any:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(workdir / f"ftbx-{time.monotonic_ns()}"))
    names = _names()

    def queue() -> None:
        for step in range(points // VALUES_PER_CALL):
            for name in names:
                writer.add_scalar(name, 0.5, step)

    return queue, (writer.flush if call == "flush" else writer.close), writer.close


def _flush_mlflow(workdir: Path, endpoint: str, points: int, call: str) -> Any:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.start_run()
    values = dict.fromkeys(_names(), 0.5)

    def queue() -> None:
        for step in range(points // VALUES_PER_CALL):
            mlflow.log_metrics(values, step=step, synchronous=False)

    def cleanup() -> None:
        if mlflow.active_run() is not None:
            mlflow.end_run()

    return queue, (mlflow.flush_async_logging if call == "flush" else mlflow.end_run), cleanup


FLUSH_PATHS: dict[str, tuple[Any, str]] = {
    "TrainingMetrics → store": (_flush_training, "100% still in memory when the call starts"),
    "TrainingMetrics → OTLP gRPC": (lambda w, e, n, c: _flush_training(w, e, n, c, "otlp"), "loopback receiver, durable queue on"),
    "SDK exports → RecursiveMetricExporter → store": (_flush_exporter, "1,000-point MetricsData each"),
    "tensorboardX SummaryWriter": (_flush_tensorboardx, "peer: flush() / close(); its thread writes while values are queued"),
    "MLflow async logging": (_flush_mlflow, "peer: flush_async_logging() / end_run(); 1/10 of the points"),
}
FLUSH_PEERS = {"tensorboardX SummaryWriter": "tensorboardX", "MLflow async logging": "mlflow"}


def run_flush(*, points: int, repeats: int, peers: bool, endpoint: str, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Seconds for force_flush and for shutdown with ``points`` queued; paths and calls alternate."""
    names = [name for name in FLUSH_PATHS if name not in FLUSH_PEERS or (peers and _importable(FLUSH_PEERS[name]))]
    cases = [(name, call) for name in names for call in ("flush", "shutdown")]
    samples: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    queue_s: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    complete: dict[tuple[str, str], bool] = dict.fromkeys(cases, True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-flush-"))
    try:
        for repeat in range(repeats):
            order = cases[repeat % len(cases) :] + cases[: repeat % len(cases)]
            for name, call in order:
                n = points // 10 if name.startswith("MLflow") else points  # about 0.5 s of its CPU per 1,000
                queue, timed, cleanup = FLUSH_PATHS[name][0](workdir, endpoint, n, call)
                t0 = time.perf_counter()
                queue()
                t1 = time.perf_counter()
                result = timed()
                t2 = time.perf_counter()
                cleanup()
                samples[(name, call)].append(t2 - t1)
                queue_s[(name, call)].append(t1 - t0)
                if result is False:
                    complete[(name, call)] = False
            progress(f"row 6: repeat {repeat + 1}/{repeats} done")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for name in FLUSH_PATHS:
        row: dict[str, Any] = {"path": name, "note": FLUSH_PATHS[name][1], "points": points}
        if name not in names:
            row["note"] = "not installed here (run without --no-peers)"
        else:
            for call in ("flush", "shutdown"):
                row[f"{call}_s"] = statistics.median(samples[(name, call)])
                row[f"{call}_complete"] = complete[(name, call)]
            row["queue_s"] = statistics.median(queue_s[(name, "flush")] + queue_s[(name, "shutdown")])
        rows.append(row)
    return rows


# -- entry points ------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    names = (
        "otel-recursive-metrics",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
        "grpcio",
        "tensorboardX",
        "mlflow-skinny",
        "psutil",
    )
    return {name: version(name) for name in names}


def run(
    *,
    cpu_points: int = 100_000,
    flush_points: int = 100_000,
    repeats: int = 3,
    peers: bool = True,
    rows: Sequence[int] = (4, 6),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _: None)
    result: dict[str, Any] = {"cpu": [], "flush": [], "versions": versions(), "cpu_points": cpu_points, "flush_points": flush_points}
    with ReceiverProcess("grpc") as receiver:
        if 4 in rows:
            result["cpu"] = run_cpu(points=cpu_points, repeats=repeats, peers=peers, endpoint=receiver.endpoint, progress=say)
        if 6 in rows:
            result["flush"] = run_flush(points=flush_points, repeats=repeats, peers=peers, endpoint=receiver.endpoint, progress=say)
    result["markdown"] = markdown(result)
    return result


def markdown_cpu(result: dict[str, Any]) -> str:
    lines = [
        "| path | background CPU s per 1,000 points (median) | × TrainingMetrics → store | of which our threads, by stage | note |",
        "|---|---:|---:|---|---|",
    ]
    ref = next((r.get("cpu_s_per_1000") for r in result["cpu"] if r["path"] == "TrainingMetrics.log → store"), None)
    for row in result["cpu"]:
        value = row.get("cpu_s_per_1000")
        if value is None:
            lines.append(f"| {row['path']} | — | — | — | {row['note']} |")
            continue
        stages = ", ".join(f"{stage} {cpu * 1000:.1f} ms" for stage, cpu in row["stages"].items()) or "—"
        ratio = f"{value / ref:.2f}" if ref else "—"
        note = row["note"] + ("" if row.get("flushed", True) else "; flush did NOT complete")
        lines.append(f"| {row['path']} | {value * 1000:.2f} ms | {ratio} | {stages} | {note} |")
    lines.append("")
    lines.append(
        f"{result['cpu_points']:,} points a run (MLflow {result['cpu_points'] // 10:,}). Background CPU = process CPU (getrusage) "
        "minus the main thread's (thread_time), from the first value until flush returned; per-stage figures are psutil's per-thread "
        "times (10 ms ticks). The OTLP receiver runs in another process."
    )
    return "\n".join(lines)


def markdown_flush(result: dict[str, Any]) -> str:
    lines = [
        f"| path | force_flush, {result['flush_points']:,} points queued | shutdown, {result['flush_points']:,} points queued "
        "| time to queue them | note |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["flush"]:
        if "flush_s" not in row:
            lines.append(f"| {row['path']} | — | — | — | {row['note']} |")
            continue
        cells = []
        for call in ("flush", "shutdown"):
            cells.append(f"{row[f'{call}_s']:.3f} s" + ("" if row[f"{call}_complete"] else " (incomplete)"))
        lines.append(f"| {row['path']} | {cells[0]} | {cells[1]} | {row['queue_s']:.3f} s | {row['note']} |")
    lines.append("")
    lines.append(
        "Median over the repeats; each call on a fresh instance, the order of paths and calls alternating. Our pipeline's worker "
        "is kept asleep while the points are queued (batch_size and flush_interval_s huge), so the whole backlog is converted, "
        "written to the durable queue (fsync) and delivered inside the timed call."
    )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    parts = []
    if result["cpu"]:
        parts.append(markdown_cpu(result))
    if result["flush"]:
        parts.append(markdown_flush(result))
    parts.append("Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--no-peers", action="store_true", help="skip tensorboardX and MLflow")
    parser.add_argument("--cpu-points", type=int, default=100_000)
    parser.add_argument("--flush-points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="4,6", help="rows of issue 6 to run: 4 (CPU), 6 (flush/shutdown)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    if args.quick:
        args.cpu_points, args.flush_points, args.repeats = 2_000, 2_000, 1
    result = run(
        cpu_points=args.cpu_points,
        flush_points=args.flush_points,
        repeats=args.repeats,
        peers=not args.no_peers,
        rows=[int(r) for r in args.only.split(",")],
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result) if args.json else result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
