"""Sample system metrics for a while beside one training value, through the pipeline the environment sets up.

    OTEL_RECURSIVE_METRICS_SINKS=store,otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \\
        python tests/collector/sample_system.py --seconds 2 --interval-s 0.2

The host and process metrics are real (OpenTelemetry's system-metrics instrumentation). The GPU
metrics come from a stand-in source (one device, fixed readings) so that the ``hw.*`` names make
the trip to Prometheus on machines without a GPU too; the NVML side is tested in
``tests/test_gpu_metrics.py``. Prints one JSON line (``delivered``, ``samples``) and exits 0 only
if everything reached every sink.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from otel_recursive_metrics import TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline import Pipeline
from otel_recursive_metrics.system import GpuDevice, SystemMetrics

READINGS = {
    "hw.gpu.utilization": 0.75,
    "hw.gpu.memory.usage": 30 << 30,
    "hw.gpu.memory.limit": 80 << 30,
    "hw.power": 300.0,
    "hw.temperature": 55.0,
    "hw.gpu.speed": 1.98e9,
}


class StandInGpu:
    """One GPU with fixed readings; its energy grows by 300 J a call."""

    vendor = "NVIDIA"
    visible_devices_variable = "CUDA_VISIBLE_DEVICES"

    def __init__(self, rank: int) -> None:
        self.device = GpuDevice(rank, f"GPU-{rank:08d}-0000-0000-0000-000000000000", "Stand-in GPU")
        self.energy_j = 0.0

    def devices(self) -> Sequence[GpuDevice]:
        return [self.device]

    def read(self, device: GpuDevice, metric: str) -> float | int | None:
        if metric == "hw.energy":
            self.energy_j += 300.0
            return self.energy_j
        return READINGS.get(metric)

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--interval-s", type=float, default=0.2)
    parser.add_argument("--rank", type=int, default=0, help="only names the stand-in GPU")
    args = parser.parse_args(argv)

    pipeline = Pipeline(load_config())
    sampler = SystemMetrics(pipeline, interval_s=args.interval_s, gpu_source=StandInGpu(args.rank))
    sampler.start()
    TrainingMetrics(pipeline=pipeline, prefix="train.").log({"loss": 0.5}, step=1)
    time.sleep(args.seconds)
    sampler.shutdown(10.0)
    delivered = pipeline.shutdown(60.0)
    print(json.dumps({"delivered": delivered, "samples": sampler.samples, "metrics": sampler.metric_names}), flush=True)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
