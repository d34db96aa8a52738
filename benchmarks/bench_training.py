"""Cost per logged value on the training thread: our paths against tensorboardX and MLflow.

    python benchmarks/bench_training.py            # installs the peers on first use, prints a Markdown table
    python benchmarks/bench_training.py --quick    # small sizes (a smoke run)
    python benchmarks/bench_training.py --no-peers # our paths and the floor only

Rows, each measured as wall time of a tight loop on the calling thread divided by the values it
logged (so the time background threads take the GIL from the loop is included, as a training
loop would feel it), median over ``repeats`` runs, paths alternating within each repeat:

- ``deque.append`` of one tuple per value: the floor;
- ``TrainingMetrics.log(values, step=)``: one call per step with all the step's values;
- ``AsyncMetricsCollector.submit_metric(record)``: one record per value;
- OpenTelemetry ``gauge.set(value, attributes)`` with three attributes, through a
  ``PeriodicExportingMetricReader`` and our ``RecursiveMetricExporter``;
- tensorboardX ``SummaryWriter.add_scalar``;
- MLflow ``log_metric(..., synchronous=False)`` into a SQLite tracking store (MLflow's default
  backend), with fewer values since each costs about a millisecond.

Between runs every path is flushed (untimed), so no backlog leaks into the next measurement.
The peers are installed into the benchmark's own environment, a virtualenv under
``~/.cache/otel-recursive-metrics/bench-training-venv`` that also sees this package; when they
are not importable here, :func:`run` re-runs itself with that environment's interpreter.

``run(...)`` returns ``{"rows": [...], "versions": {...}, "machine": {...}, "markdown": str}``
for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import platform
import shutil
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

from benchmarks.common import cpu_model, version

VENV = Path.home() / ".cache" / "otel-recursive-metrics" / "bench-training-venv"
PEER_PACKAGES = ("tensorboardX", "mlflow-skinny", "sqlalchemy", "alembic")
ATTRIBUTES = {"run": "bench", "split": "train", "host": "node-0"}

# A path: name -> factory(k, workdir) -> (log_step(step), flush(), close()).
Steps = tuple[Callable[[int], None], Callable[[], Any], Callable[[], Any]]
Factory = Callable[[int, Path], Steps]


def _names(k: int) -> list[str]:
    return [f"m{i}" for i in range(k)]


def _floor(k: int, workdir: Path) -> Steps:
    queue: collections.deque[tuple[str, float, int]] = collections.deque()
    names = _names(k)
    append = queue.append

    def log_step(step: int) -> None:
        for name in names:
            append((name, 0.5, step))

    return log_step, queue.clear, queue.clear


# The worker wakes every batch_size items; "idle" keeps it asleep during the timed loop (its work
# happens at the untimed flush), which isolates the call's own cost from the worker's GIL use.
_IDLE = {"batch_size": 1_000_000_000, "flush_interval_s": 3600.0}


def _training_metrics(k: int, workdir: Path, idle: bool = False) -> Steps:
    from otel_recursive_metrics.training import TrainingMetrics

    extra = _IDLE if idle else {}
    metrics = TrainingMetrics(prefix="bench.", dir=workdir / f"ours-{k}-{idle}", max_buffer_items=1_000_000, **extra)
    values = dict.fromkeys(_names(k), 0.5)
    log = metrics.log

    def log_step(step: int) -> None:
        log(values, step=step)

    def flush() -> None:
        metrics.flush(300)

    return log_step, flush, metrics.close


def _submit_metric(k: int, workdir: Path, idle: bool = False) -> Steps:
    from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector

    config: dict[str, Any] = {"dir": str(workdir / f"seed-{k}-{idle}"), "max_buffer_items": 1_000_000}
    collector = AsyncMetricsCollector({**config, **(_IDLE if idle else {})})
    names = _names(k)
    submit = collector.submit_metric

    def log_step(step: int) -> None:
        for name in names:
            submit({"metric_name": name, "value": 0.5, "step": step})

    def flush() -> None:
        collector.flush(300)

    return log_step, flush, collector.stop


def _otel_gauge(k: int, workdir: Path) -> Steps:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_recursive_metrics import RecursiveMetricExporter

    exporter = RecursiveMetricExporter(dir=workdir / f"otel-{k}")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    gauges = [meter.create_gauge(name) for name in _names(k)]

    def log_step(step: int) -> None:
        for gauge in gauges:
            gauge.set(0.5, ATTRIBUTES)

    def flush() -> None:
        provider.force_flush(300_000)

    return log_step, flush, provider.shutdown


def _tensorboardx(k: int, workdir: Path) -> Steps:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(workdir / f"tbx-{k}"))
    names = _names(k)
    add = writer.add_scalar

    def log_step(step: int) -> None:
        for name in names:
            add(name, 0.5, step)

    return log_step, writer.flush, writer.close


def _mlflow(k: int, workdir: Path) -> Steps:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    if mlflow.active_run() is None:
        mlflow.start_run()
    names = _names(k)
    log_metric = mlflow.log_metric

    def log_step(step: int) -> None:
        for name in names:
            log_metric(name, 0.5, step=step, synchronous=False)

    return log_step, mlflow.flush_async_logging, mlflow.end_run


PATHS: dict[str, tuple[Factory, str]] = {
    "deque.append (floor)": (_floor, ""),
    "TrainingMetrics.log": (_training_metrics, "default settings: the worker converts while the loop runs"),
    "TrainingMetrics.log, worker idle": (
        lambda k, w: _training_metrics(k, w, idle=True),
        "the call alone: worker asleep during the loop, converts at flush",
    ),
    "submit_metric": (_submit_metric, "default settings"),
    "submit_metric, worker idle": (lambda k, w: _submit_metric(k, w, idle=True), "the call alone"),
    "OTel gauge.set → RecursiveMetricExporter": (_otel_gauge, "three attributes"),
    "tensorboardX add_scalar": (_tensorboardx, "peer"),
    "MLflow log_metric(synchronous=False)": (_mlflow, "peer"),
}
PEERS = {"tensorboardX add_scalar": "tensorboardX", "MLflow log_metric(synchronous=False)": "mlflow"}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _versions() -> dict[str, str]:
    return {
        name: version(name)
        for name in ("otel-recursive-metrics", "opentelemetry-sdk", "tensorboardX", "mlflow-skinny", "mlflow", "numpy")
        if name != "mlflow" or version("mlflow") != "not installed"
    }


def _measure(paths: Sequence[str], k: int, values_total: int, mlflow_values: int, repeats: int, workdir: Path) -> dict[str, list[float]]:
    """Per-value microseconds of each path, one sample per repeat, paths alternating."""
    loggers = {name: PATHS[name][0](k, workdir) for name in paths}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(repeats):
        order = list(paths[repeat % len(paths) :]) + list(paths[: repeat % len(paths)])
        for name in order:
            log_step, flush, _ = loggers[name]
            total = mlflow_values if name.startswith("MLflow") else values_total
            steps = max(1, total // k)
            base = repeat * steps
            gc.collect()
            started = time.perf_counter()
            for step in range(base, base + steps):
                log_step(step)
            elapsed = time.perf_counter() - started
            flush()
            samples[name].append(elapsed / (steps * k) * 1e6)
    for _, _, close in loggers.values():
        close()
    return samples


def run(
    *,
    values_per_call: Sequence[int] = (1, 20),
    values_total: int = 20_000,
    mlflow_values: int = 400,
    repeats: int = 5,
    peers: bool = True,
    install: bool = True,
) -> dict[str, Any]:
    """Measure every path and return rows, versions, machine and the Markdown table."""
    missing = [module for module in PEERS.values() if not _importable(module)]
    if peers and missing and install and Path(sys.prefix).resolve() != VENV.resolve():
        python = ensure_environment()
        args = [
            "--json",
            "--values-total",
            str(values_total),
            "--mlflow-values",
            str(mlflow_values),
            "--repeats",
            str(repeats),
            "--values-per-call",
            ",".join(str(k) for k in values_per_call),
        ]
        done = subprocess.run([str(python), __file__, *args], check=True, capture_output=True, text=True, timeout=3600)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    paths = [name for name in PATHS if name not in PEERS or (peers and _importable(PEERS[name]))]
    workdir = Path(tempfile.mkdtemp(prefix="bench-training-"))
    rows = []
    try:
        per_k = {k: _measure(paths, k, values_total, mlflow_values, repeats, workdir) for k in values_per_call}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for name in PATHS:
        row: dict[str, Any] = {"path": name, "note": PATHS[name][1]}
        if name not in paths:
            row["note"] = "not installed (run without --no-peers)"
        for k in values_per_call:
            if name in paths:
                row[f"us_per_value_k{k}"] = statistics.median(per_k[k][name])
                row[f"samples_k{k}"] = per_k[k][name]
        rows.append(row)
    result = {"rows": rows, "values_per_call": list(values_per_call), "versions": _versions(), "machine": _machine()}
    result["markdown"] = markdown(result)
    return result


def markdown(result: dict[str, Any]) -> str:
    ks = result["values_per_call"]
    floor = next(r for r in result["rows"] if r["path"].startswith("deque"))
    head = ["path"] + [f"µs/value, {k} value{'s' if k > 1 else ''}/call" for k in ks] + [f"× floor ({ks[-1]}/call)", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(ks) + 1) + ["---"]) + "|"]
    for row in result["rows"]:
        cells = [row["path"]]
        for k in ks:
            value = row.get(f"us_per_value_k{k}")
            cells.append("—" if value is None else f"{value:.3f}" if value < 10 else f"{value:.0f}")
        last = row.get(f"us_per_value_k{ks[-1]}")
        base = floor.get(f"us_per_value_k{ks[-1]}")
        cells.append("—" if last is None or not base else f"{last / base:.1f}")
        cells.append(row["note"])
        lines.append("| " + " | ".join(cells) + " |")
    machine, versions = result["machine"], result["versions"]
    lines.append("")
    lines.append(f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}.")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    lines.append("Median of the repeats; wall time on the calling thread per logged value, background threads included.")
    return "\n".join(lines)


def ensure_environment() -> Path:
    """The benchmark's own virtualenv with the peers; created and filled on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True, timeout=600)
    probe = subprocess.run(
        [str(python), "-c", "import tensorboardX, mlflow, sqlalchemy, otel_recursive_metrics"],
        check=False,
        capture_output=True,
        timeout=300,
    )
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_PACKAGES], check=True, timeout=1800)
    return python


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-peers", action="store_true", help="skip tensorboardX and MLflow")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--values-total", type=int, default=20_000, help="values per path per repeat")
    parser.add_argument("--mlflow-values", type=int, default=400, help="values for MLflow per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--values-per-call", default="1,20", help="comma-separated values logged per call")
    args = parser.parse_args(argv)
    if args.quick:
        args.values_total, args.mlflow_values, args.repeats = 2_000, 40, 2
    result = run(
        values_per_call=[int(k) for k in args.values_per_call.split(",")],
        values_total=args.values_total,
        mlflow_values=args.mlflow_values,
        repeats=args.repeats,
        peers=not args.no_peers,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
