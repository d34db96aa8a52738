"""System metrics through our exporter, the built Collector and remote write, into Prometheus.

Checks the Prometheus names docs/system-metrics.md gives (the gateway translates with
``UnderscoreEscapingWithSuffixes``: units become suffixes, counters get ``_total``, unit ``1``
gauges get ``_ratio``) and runs that page's per-rank PromQL against two ranks of one run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import require_module

from .stack import REPO, Prometheus, StartCollector, TrainingRun, training_env, wait_for
from .test_prometheus_e2e import otlp_env, per_rank

pytestmark = [pytest.mark.collector, pytest.mark.prometheus, pytest.mark.slow]

DRIVER = "tests/collector/sample_system.py"

#: OpenTelemetry name -> Prometheus name after the gateway's translation.
PROMETHEUS_NAMES = {
    "process.cpu.time": "process_cpu_time_seconds_total",
    "process.cpu.utilization": "process_cpu_utilization_ratio",
    "process.memory.usage": "process_memory_usage_bytes",
    "process.memory.virtual": "process_memory_virtual_bytes",
    "system.cpu.utilization": "system_cpu_utilization_ratio",
    "system.memory.usage": "system_memory_usage_bytes",
    "system.memory.utilization": "system_memory_utilization_ratio",
    "system.network.io": "system_network_io_bytes_total",
    "hw.gpu.utilization": "hw_gpu_utilization_ratio",
    "hw.gpu.memory.usage": "hw_gpu_memory_usage_bytes",
    "hw.gpu.memory.limit": "hw_gpu_memory_limit_bytes",
    "hw.power": "hw_power_watts",
    "hw.energy": "hw_energy_joules_total",
    "hw.temperature": "hw_temperature_celsius",
    "hw.gpu.speed": "hw_gpu_speed_hertz",
}


def test_system_metrics_reach_prometheus_under_the_readme_names_per_rank(
    start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun
) -> None:
    require_module("opentelemetry.instrumentation.system_metrics", "system")
    collector = start_collector("gateway.yaml", BATCH_TIMEOUT="200ms")
    samplers = []
    for rank in (0, 1):
        env = training_env(
            training_run,
            **otlp_env(collector, "grpc"),
            OTEL_RECURSIVE_METRICS_DIR=str(training_run.dir.with_name(f"rank{rank}")),
            OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S="0.2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
        )
        argv = [sys.executable, DRIVER, "--seconds", "2", "--interval-s", "0.2", "--rank", str(rank)]
        samplers.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for sampler in samplers:
        try:
            output, _ = sampler.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            sampler.kill()
            output, _ = sampler.communicate()
        assert sampler.returncode == 0, output[-3000:]

    info = f'target_info{{training_run_id="{training_run.run_id}"}}'
    wait_for(lambda: len(prometheus.query(info)) == 2, 30, "target_info of both ranks")
    by_rank = f"* on (job, instance) group_left (training_rank) {info}"

    def ranks_of(name: str) -> set[str]:
        return set(per_rank(prometheus, f"max by (training_rank) ({name} {by_rank})"))

    # Host (system.*) from the node's first rank only; process and GPU metrics from both.
    for otel_name, prometheus_name in PROMETHEUS_NAMES.items():
        expected = {"0"} if otel_name.startswith("system.") else {"0", "1"}
        wait_for(lambda n=prometheus_name, e=expected: ranks_of(n) == e, 30, f"{prometheus_name} for ranks {expected}")

    # docs/system-metrics.md's per-rank queries.
    utilization = per_rank(prometheus, f"avg by (training_rank) (hw_gpu_utilization_ratio {by_rank})")
    assert utilization == {"0": 0.75, "1": 0.75}
    series = prometheus.query(f"hw_gpu_memory_usage_bytes {by_rank}")
    assert {s["metric"]["hw_id"] for s in series} == {f"GPU-{r:08d}-0000-0000-0000-000000000000" for r in (0, 1)}
    assert {s["metric"]["gpu_index"] for s in series} == {"0", "1"} and {s["metric"]["hw_type"] for s in series} == {"gpu"}
    power = per_rank(prometheus, f"sum by (training_rank) (rate(hw_energy_joules_total[1m]) {by_rank})")
    assert set(power) == {"0", "1"} and all(w > 0 for w in power.values()), power
    cpu = per_rank(prometheus, f"sum by (training_rank) (rate(process_cpu_time_seconds_total[1m]) {by_rank})")
    assert set(cpu) == {"0", "1"} and all(c >= 0 for c in cpu.values()), cpu
    memory = per_rank(prometheus, f"max by (training_rank) (process_memory_usage_bytes {by_rank})")
    assert set(memory) == {"0", "1"} and all(m > 1 << 20 for m in memory.values()), memory
    busy = per_rank(prometheus, f'1 - avg by (training_rank) (system_cpu_utilization_ratio{{state="idle"}} {by_rank})')
    assert set(busy) == {"0"} and 0.0 <= busy["0"] <= 1.0, busy
