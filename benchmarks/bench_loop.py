"""Slowdown of a training loop that logs 20 values a step, against the same loop logging nothing.

    python benchmarks/bench_loop.py             # every path whose package is importable
    python benchmarks/bench_loop.py --quick     # tiny sizes: a smoke run

The step is a NumPy matmul of two float64 matrices sized (at start) to take about 2 ms. BLAS
releases the GIL for the whole product, as a real step does while NumPy, PyTorch or a GPU works,
so background threads (our worker, the SDK's reader, tensorboardX's writer, MLflow's pool) may
run in the meantime and the loop pays only when one of them holds the GIL as the step wants it
back, plus the logging calls themselves. BLAS is pinned to one thread (``OPENBLAS_NUM_THREADS``
and friends default to 1 unless already set) so the step occupies one core, as a GPU step's
host thread would, and the others are left to the background threads.

Each path runs ``--steps`` steps; each run of a path is paired with a run of the plain loop
right before or after it (the order alternates), and the slowdown is the median over
``--repeats`` pairs of ``path / plain - 1``. Pairing cancels most of the drift of a shared
machine; the spread of the plain loop's runs is printed beside the table as the noise floor.

Paths (20 values a step; names ``m0`` .. ``m19``):

- ``TrainingMetrics.log(values, step=)``, one call a step, into the store and over OTLP gRPC;
- OpenTelemetry ``gauge.set(value, attributes)`` (three attributes) through a
  ``PeriodicExportingMetricReader`` and our ``RecursiveMetricExporter`` into the store;
- ``AsyncMetricsCollector.submit_metric(record)``, one record a value;
- OpenTelemetry ``gauge.set`` through the stock ``PeriodicExportingMetricReader`` +
  ``OTLPMetricExporter`` (gRPC) to a loopback receiver;
- tensorboardX ``SummaryWriter.add_scalar``, one call a value;
- MLflow ``log_metrics(values, step=, synchronous=False)``, one call a step (its batch call).

Both OpenTelemetry readers export every second (the SDK default is 60 s), so exports happen
inside each run. The OTLP receiver (``tests/otlp_receiver.py``) runs in a separate process so
its server threads do not compete with the loop for this process's GIL.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from math import comb
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import REPO as _ROOT
from benchmarks.common import version

__all__ = ["PATHS", "ReceiverProcess", "calibrate", "main", "markdown", "run"]

VALUES_PER_STEP = 20
ATTRIBUTES = {"run": "bench", "split": "train", "host": "node-0"}
OTEL_EXPORT_INTERVAL_MS = 1_000

# A path: factory(workdir, endpoint) -> (log_step(step, values), flush(), close()).
Logger = tuple[Callable[[int, dict[str, float]], None], Callable[[], Any], Callable[[], Any]]
Factory = Callable[[Path, str], Logger]


BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas(threads: int = 1) -> None:
    """Default BLAS to ``threads`` threads; effective only before NumPy is first imported."""
    if "numpy" in sys.modules:
        return
    for variable in BLAS_VARIABLES:
        os.environ.setdefault(variable, str(threads))


# -- a loopback OTLP receiver in its own process -----------------------------------------------

_RECEIVER_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.otlp_receiver import GrpcReceiver, HttpReceiver
receiver = (GrpcReceiver if sys.argv[2] == "grpc" else HttpReceiver)(keep_requests=False).start()
print(receiver.endpoint, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(receiver.points_accepted, flush=True)
    else:
        break
receiver.down()
"""


class ReceiverProcess:
    """``tests/otlp_receiver.py``'s receiver in a child process: ``endpoint``, ``points()``, ``close()``."""

    def __init__(self, protocol: str = "grpc") -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER_SCRIPT, str(_ROOT), protocol],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.endpoint = self._process.stdout.readline().strip()
        if not self.endpoint:
            self.close()
            raise RuntimeError("the OTLP receiver process did not start")

    def points(self) -> int:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("count\n")
        self._process.stdin.flush()
        return int(self._process.stdout.readline())

    def wait_points(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.points() < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
                self._process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait(10)

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the paths ---------------------------------------------------------------------------------


def _nothing(workdir: Path, endpoint: str) -> Logger:
    def log_step(step: int, values: dict[str, float]) -> None:
        pass

    return log_step, lambda: None, lambda: None


def _training_metrics(workdir: Path, endpoint: str, sink: str = "store", deferred: bool = False) -> Logger:
    from otel_recursive_metrics.training import TrainingMetrics

    options: dict[str, Any] = {"sinks": sink}
    if deferred:  # the worker sleeps through the run and does its work at the (untimed) flush
        options.update(batch_size=1_000_000_000, flush_interval_s=3600.0, max_buffer_items=10_000_000)
    if sink == "otlp":
        options.update(otlp_endpoint=endpoint, otlp_insecure=True)
    metrics = TrainingMetrics(prefix="train.", dir=workdir / f"tm-{sink}-{deferred}", **options)
    log = metrics.log

    def log_step(step: int, values: dict[str, float]) -> None:
        log(values, step=step)

    return log_step, lambda: metrics.flush(300), metrics.close


def _otel(exporter: Any) -> Logger:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=OTEL_EXPORT_INTERVAL_MS)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    gauges = [meter.create_gauge(f"train.m{i}") for i in range(VALUES_PER_STEP)]
    sets = [gauge.set for gauge in gauges]

    def log_step(step: int, values: dict[str, float]) -> None:
        for set_, value in zip(sets, values.values(), strict=True):
            set_(value, ATTRIBUTES)

    return log_step, lambda: provider.force_flush(300_000), provider.shutdown


def _otel_ours(workdir: Path, endpoint: str) -> Logger:
    from otel_recursive_metrics import RecursiveMetricExporter

    return _otel(RecursiveMetricExporter(dir=workdir / "otel-ours"))


def _otel_stock(workdir: Path, endpoint: str) -> Logger:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return _otel(OTLPMetricExporter(endpoint=endpoint, insecure=True))


def _submit_metric(workdir: Path, endpoint: str) -> Logger:
    from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector

    collector = AsyncMetricsCollector({"dir": str(workdir / "seed")})
    submit = collector.submit_metric

    def log_step(step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            submit({"metric_name": name, "value": value, "step": step})

    return log_step, lambda: collector.flush(300), collector.stop


def _tensorboardx(workdir: Path, endpoint: str) -> Logger:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(workdir / "tbx"))
    add = writer.add_scalar

    def log_step(step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            add(name, value, step)

    return log_step, writer.flush, writer.close


def _mlflow(workdir: Path, endpoint: str) -> Logger:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.start_run()
    log_metrics = mlflow.log_metrics

    def log_step(step: int, values: dict[str, float]) -> None:
        log_metrics(values, step=step, synchronous=False)

    return log_step, mlflow.flush_async_logging, mlflow.end_run


PLAIN = "plain loop (logs nothing)"
PATHS: dict[str, tuple[Factory, str]] = {
    PLAIN: (_nothing, ""),
    "TrainingMetrics.log → store": (_training_metrics, "one call a step, default settings"),
    "TrainingMetrics.log → store, worker deferred": (
        lambda w, e: _training_metrics(w, e, deferred=True),
        "diagnostic: the call alone, the worker asleep until the untimed flush",
    ),
    "TrainingMetrics.log → OTLP gRPC": (
        lambda w, e: _training_metrics(w, e, "otlp"),
        "one call a step, durable queue on, loopback receiver",
    ),
    "OTel gauge.set → RecursiveMetricExporter → store": (_otel_ours, "three attributes, export every 1 s"),
    "submit_metric → store": (_submit_metric, "one record a value, default settings"),
    "OTel gauge.set → stock OTLPMetricExporter gRPC": (_otel_stock, "peer: three attributes, export every 1 s, loopback receiver"),
    "tensorboardX add_scalar": (_tensorboardx, "peer: one call a value"),
    "MLflow log_metrics(synchronous=False)": (_mlflow, "peer: one call a step, SQLite tracking store"),
}
PEERS = {"tensorboardX add_scalar": "tensorboardX", "MLflow log_metrics(synchronous=False)": "mlflow"}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# -- the step ----------------------------------------------------------------------------------


def calibrate(target_ms: float = 2.0) -> tuple[Callable[[], None], int, float]:
    """A step function (a NumPy matmul), its matrix size and its median time in ms, near ``target_ms``."""
    import numpy as np

    rng = np.random.default_rng(0)

    def make(n: int) -> Callable[[], None]:
        a, b, out = rng.random((n, n)), rng.random((n, n)), np.empty((n, n))
        matmul = np.matmul

        def step() -> None:
            matmul(a, b, out=out)

        return step

    def median_ms(step: Callable[[], None], runs: int = 60) -> float:
        for _ in range(5):
            step()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    n = 256
    for _ in range(4):  # the cost grows as n**3: rescale a few times
        ms = median_ms(make(n))
        n = max(16, round(n * (target_ms / ms) ** (1 / 3)))
    step = make(n)
    return step, n, median_ms(step)


# -- measuring ---------------------------------------------------------------------------------


def _values(step: int) -> dict[str, float]:
    base = 1.0 / (step + 1)
    return {f"m{i}": base + i for i in range(VALUES_PER_STEP)}


def timed_run(
    train_step: Callable[[], None],
    log_step: Callable[[int, dict[str, float]], Any],
    first: int,
    steps: int,
    values: Callable[[int], dict[str, float]] = _values,
) -> float:
    """Seconds for ``steps`` steps of the loop: the step, then the step's 20 values logged."""
    gc.collect()
    perf = time.perf_counter
    started = perf()
    for step in range(first, first + steps):
        train_step()
        log_step(step, values(step))
    return perf() - started


def run(
    *,
    steps: int = 500,
    repeats: int = 9,
    peers: bool = True,
    target_ms: float = 2.0,
    progress: Callable[[str], None] | None = None,
    paths: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure every available path (or only ``paths``, names of :data:`PATHS`, beside the plain
    loop); returns rows, the step's size, versions and the Markdown."""
    say = progress or (lambda _: None)
    unknown = sorted(set(paths or ()) - set(PATHS))
    if unknown:
        raise ValueError(f"paths={unknown!r}: not paths of bench_loop (expected names of PATHS: {sorted(PATHS)!r})")
    train_step, n, step_ms = calibrate(target_ms)
    say(f"row 2: step = {n}x{n} float64 matmul, {step_ms:.2f} ms")
    names = [name for name in PATHS if name not in PEERS or (peers and _importable(PEERS[name]))]
    if paths is not None:
        names = [name for name in names if name == PLAIN or name in paths]
    workdir = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    per_step: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names if name != PLAIN}
    with ReceiverProcess("grpc") as receiver:
        loggers = {name: PATHS[name][0](workdir, receiver.endpoint) for name in names}
        next_step = 0
        for name in names:  # warm-up: thread starts, files, connections, first export
            log_step, flush, _ = loggers[name]
            timed_run(train_step, log_step, next_step, min(steps, 20))
            flush()
            next_step += steps
        others = [name for name in names if name != PLAIN]
        plain = loggers[PLAIN][0]
        for repeat in range(repeats):
            order = others[repeat % len(others) :] + others[: repeat % len(others)] if others else []
            for i, name in enumerate(order):
                log_step, flush, _ = loggers[name]
                plain_first = (repeat + i) % 2 == 0  # alternate which of the pair runs first
                if plain_first:
                    base = timed_run(train_step, plain, next_step, steps)
                took = timed_run(train_step, log_step, next_step, steps)
                flush()  # untimed: no backlog leaks into the next run
                if not plain_first:
                    base = timed_run(train_step, plain, next_step, steps)
                next_step += steps
                per_step[PLAIN].append(base / steps * 1000)
                per_step[name].append(took / steps * 1000)
                ratios[name].append(took / base)
            say(f"row 2: repeat {repeat + 1}/{repeats} done")
        for _, _, close in loggers.values():
            close()
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    plain_ms = statistics.median(per_step[PLAIN]) if per_step[PLAIN] else float("nan")
    for name in PATHS:
        row: dict[str, Any] = {"path": name, "note": PATHS[name][1]}
        if name not in names:
            row["note"] = "not installed here (run without --no-peers)" if paths is None or name in paths else "not measured in this run"
        elif per_step[name]:
            row["ms_per_step"] = statistics.median(per_step[name])
            if name != PLAIN:
                ratio = statistics.median(ratios[name])
                row["slowdown"] = ratio - 1
                low, high = median_interval(ratios[name])
                row["interval"] = (low - 1, high - 1)
                row["added_us_per_value"] = (ratio - 1) * plain_ms * 1000 / VALUES_PER_STEP
                row["ratios"] = ratios[name]
        rows.append(row)
    plain_runs = per_step[PLAIN]
    spread = None
    if len(plain_runs) >= 4:
        quartiles = statistics.quantiles(plain_runs, n=4)
        spread = (quartiles[2] - quartiles[0]) / plain_ms
    # The noise floor of a slowdown: half the width of its 95% interval (see median_interval),
    # the widest over the paths measured, so one figure bounds what any row can resolve.
    widths = [(row["interval"][1] - row["interval"][0]) / 2 for row in rows if "interval" in row]
    result = {
        "rows": rows,
        "matrix": n,
        "step_ms": step_ms,
        "steps": steps,
        "repeats": repeats,
        "plain_iqr": spread,
        "noise_floor": max(widths) if widths else None,
        "versions": versions(),
    }
    result["markdown"] = markdown(result)
    return result


def median_interval(ratios: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``ratios`` (the order statistics whose ranks
    the binomial distribution gives: no assumption about the shape of the noise)."""
    values = sorted(ratios)
    n = len(values)
    if n < 6:
        return values[0], values[-1]
    # The largest k with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2.
    tail, k, cumulative = (1 - confidence) / 2, 0, 0.0
    while True:
        cumulative += comb(n, k) / 2**n
        if cumulative > tail:
            break
        k += 1
    k = max(1, k)
    return values[k - 1], values[n - k]


def versions() -> dict[str, str]:
    out = {
        name: version(name)
        for name in (
            "otel-recursive-metrics",
            "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-grpc",
            "numpy",
            "tensorboardX",
            "mlflow-skinny",
        )
    }
    out["BLAS threads"] = os.environ.get("OPENBLAS_NUM_THREADS", "NumPy's default")
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| path | ms/step (median) | slowdown vs plain loop | 95% interval | added µs per value | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        if "ms_per_step" not in row:
            lines.append(f"| {row['path']} | — | — | — | — | {row['note']} |")
            continue
        slowdown = row.get("slowdown")
        added = row.get("added_us_per_value")
        interval = row.get("interval")
        span = "—" if interval is None else f"{interval[0]:+.1%} to {interval[1]:+.1%}"
        lines.append(
            f"| {row['path']} | {row['ms_per_step']:.3f} | {'—' if slowdown is None else f'{slowdown:+.2%}'} | {span} "
            f"| {'—' if added is None else f'{added:.2f}'} | {row['note']} |"
        )
    lines.append("")
    iqr = result.get("plain_iqr")
    lines.append(
        f"Step: a {result['matrix']}×{result['matrix']} float64 NumPy matmul ({result['step_ms']:.2f} ms alone), then 20 values logged; "
        f"{result['steps']} steps a run; slowdown is the median over {result['repeats']} runs of each path paired with a plain run "
        f"(order alternating); the interval is the median's 95% interval from the pairs' order statistics."
        + (f" Noise floor (the widest interval's half-width): {result['noise_floor']:.2%}." if result.get("noise_floor") else "")
        + (f" The plain loop's runs spread {iqr:.1%} (interquartile range / median) over the whole session." if iqr else "")
    )
    lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in result["versions"].items()) + ".")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--no-peers", action="store_true", help="skip tensorboardX and MLflow")
    parser.add_argument("--steps", type=int, default=500, help="steps a run (default 500, about 1 s)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    pin_blas()
    if args.quick:
        args.steps, args.repeats = 30, 2
    result = run(steps=args.steps, repeats=args.repeats, peers=not args.no_peers, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result) if args.json else result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
