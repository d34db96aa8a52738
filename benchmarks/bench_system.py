"""CPU cost of the system-metrics sampler: per sample, and per hour at the default 10 s interval.

    python benchmarks/bench_system.py                  # 300 samples of the default set, into the store
    python benchmarks/bench_system.py --samples 20     # a smoke run
    python benchmarks/bench_system.py --metrics "default,-system.*"

Method. A pipeline into the store (the package's defaults otherwise: fsync on, 5 s flush
interval) and a :class:`~otel_recursive_metrics.system.SystemMetrics` with the chosen set (GPU
metrics too where NVML sees a GPU). After a few warm-up samples, each iteration takes one sample
(``sample_now()``, on the main thread) and then flushes the pipeline, so every sample is
converted, queued on disk and written to the store on its own, as it is at a 10 s interval where
each sample lands in a batch of its own. Two CPU clocks frame the loop:

- *sampling*: the main thread's CPU time (``time.thread_time``) inside ``sample_now``: the
  instrumentation's ``psutil`` reads, NVML, the SDK's collection, the hand-off to the pipeline;
  in production this runs on the ``otel-recursive-metrics-system`` thread;
- *pipeline*: the process's CPU time (``getrusage``, every thread) minus the main thread's over the
  whole loop: the worker threads converting, queueing and storing the points.

Per hour at interval ``T`` seconds is ``3600 / T`` samples; the share of one core is the CPU time
per sample over ``T``. The flush wait is not CPU and not counted. Nothing else runs in the process.

``run(...)`` returns a dict with the figures and ``markdown`` (one table row, with header).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import machine

__all__ = ["main", "markdown", "run"]

HEADER = (
    "| metric set | GPUs | points/sample | sampling ms/sample | pipeline ms/sample | total ms/sample (p50 / p90 of one sample) "
    "| CPU s/hour at 10 s | share of a core at 10 s |"
)


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(*, samples: int = 300, warmup: int = 5, metrics: str = "default", interval_s: float = 10.0) -> dict[str, Any]:
    from otel_recursive_metrics import PointStore
    from otel_recursive_metrics.config import load_config
    from otel_recursive_metrics.pipeline import Pipeline
    from otel_recursive_metrics.system import SystemMetrics

    with tempfile.TemporaryDirectory(prefix="bench-system-") as folder:
        pipeline = Pipeline(load_config(dir=folder, sinks="store"))
        sampler = SystemMetrics(pipeline, interval_s=3600.0, metrics=metrics)
        try:
            assert sampler.start(), "the sampler did not start"
            for _ in range(warmup):
                sampler.sample_now(30.0)
            assert pipeline.flush(60.0), pipeline.get_stats()
            points_before = sum(pipeline.get_stats()["sent_points"].values())
            per_sample_s: list[float] = []
            sampling_s = 0.0
            main_before = time.thread_time()
            process_before = _process_cpu_s()
            for _ in range(samples):
                thread_start = time.thread_time()
                process_start = _process_cpu_s()
                assert sampler.sample_now(30.0)
                sampling_s += time.thread_time() - thread_start
                assert pipeline.flush(60.0), pipeline.get_stats()
                per_sample_s.append(_process_cpu_s() - process_start)
            process_s = _process_cpu_s() - process_before
            main_s = time.thread_time() - main_before
            points = sum(pipeline.get_stats()["sent_points"].values()) - points_before
            gpus = len(sampler.gpu_devices)
            names = sampler.metric_names
        finally:
            sampler.shutdown(10.0)
            pipeline.shutdown(10.0)
        store = PointStore(Path(folder) / "metrics.db")
        stored = store.count()
        store.close()

    total_s = sampling_s + (process_s - main_s)
    per_sample = total_s / samples
    per_sample_s.sort()
    result = {
        "metrics": metrics,
        "metric_names": names,
        "gpus": gpus,
        "samples": samples,
        "points_per_sample": points / samples,
        "stored_points": stored,
        "sampling_ms": sampling_s / samples * 1e3,
        "pipeline_ms": (process_s - main_s) / samples * 1e3,
        "total_ms": per_sample * 1e3,
        "p50_ms": statistics.median(per_sample_s) * 1e3,
        "p90_ms": per_sample_s[int(0.9 * (len(per_sample_s) - 1))] * 1e3,
        "cpu_s_per_hour": per_sample * 3600.0 / interval_s,
        "core_share": per_sample / interval_s,
        "interval_s": interval_s,
        "machine": machine(),
    }
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict[str, Any]) -> str:
    row = (
        f"| `{r['metrics']}` | {r['gpus']} | {r['points_per_sample']:.0f} | {r['sampling_ms']:.2f} | {r['pipeline_ms']:.2f} "
        f"| {r['total_ms']:.2f} ({r['p50_ms']:.2f} / {r['p90_ms']:.2f}) | {r['cpu_s_per_hour']:.2f} | {100 * r['core_share']:.3f}% |"
    )
    separator = "|" + "---|" * (HEADER.count("|") - 1)
    return "\n".join(
        [f"Machine: {r['machine']}; {r['samples']} samples, each flushed to the sinks on its own.", "", HEADER, separator, row]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--metrics", default="default", help="a metric set, as OTEL_RECURSIVE_METRICS_SYSTEM_METRICS_SET takes it")
    args = parser.parse_args(argv)
    result = run(samples=args.samples, metrics=args.metrics)
    print(result["markdown"])
    print(f"\nMetrics sampled: {', '.join(result['metric_names'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
