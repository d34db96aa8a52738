"""GPU metrics: OpenTelemetry names and units, the rank's devices only, no error without a GPU.

The NVML binding is replaced by :mod:`tests.fake_pynvml`, injected at its import
(``sys.modules["pynvml"]``); everything else is real: the sampler, the SDK provider, our exporter,
the pipeline and the store the points are read back from. The expected names, units and
attributes below are written from the hardware semantic conventions, not from our code.
The last test samples real GPUs wherever ``nvidia-smi`` works.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, StoredPoint
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline import Pipeline
from otel_recursive_metrics.system import THREAD_NAME, GpuDevice, SystemMetrics

from .conftest import require_module
from .fake_pynvml import NVML_ERROR_GPU_IS_LOST, NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, FakeMig, FakeNvml, mig_uuid, uuid

#: The GPU metrics of the conventions (plus the SM clock), each with (store kind, monotonic, unit).
CONVENTION = {
    "hw.gpu.utilization": ("gauge", False, "1"),
    "hw.gpu.memory.usage": ("sum", False, "By"),
    "hw.gpu.memory.limit": ("sum", False, "By"),
    "hw.power": ("gauge", False, "W"),
    "hw.energy": ("sum", True, "J"),
    "hw.temperature": ("gauge", False, "Cel"),
    "hw.gpu.speed": ("gauge", False, "Hz"),
}
GPU_ONLY = ",".join(CONVENTION)
RANK_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "LOCAL_RANK",
    "SLURM_LOCALID",
    "LOCAL_WORLD_SIZE",
    "SLURM_NTASKS_PER_NODE",
    "RANK",
    "SLURM_PROCID",
    "OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS",
)


@pytest.fixture(autouse=True)
def _no_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeNvml]:
    def install(gpus: list[FakeGpu], **options: Any) -> FakeNvml:
        fake = FakeNvml(gpus, **options)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        return fake

    return install


def four_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid(i)) for i in range(4)]


def mig_node() -> list[FakeGpu]:
    """GPU 0 in MIG mode with two MIG devices, GPU 1 plain, GPU 2 MIG-capable with MIG off."""
    return [
        FakeGpu(uuid(0), mig_capable=True, migs=[FakeMig(mig_uuid(1), gpu_instance=1), FakeMig(mig_uuid(2), gpu_instance=2)]),
        FakeGpu(uuid(1)),
        FakeGpu(uuid(2), mig_capable=True),
    ]


class Sampled:
    """What one sampler run produced: its devices, the stored GPU points, the log records."""

    def __init__(self, devices: list[GpuDevice], points: list[StoredPoint], started: bool) -> None:
        self.devices = devices
        self.points = points
        self.started = started

    def ids(self, metric: str = "hw.gpu.memory.limit") -> list[str]:
        return sorted({p.attributes["hw.id"] for p in self.points if p.metric == metric})

    def metrics(self) -> set[str]:
        return {p.metric for p in self.points}


@pytest.fixture
def sample(data_dir: Path) -> Iterator[Callable[..., Sampled]]:
    pipelines: list[Pipeline] = []

    def run(metrics: str = GPU_ONLY, samples: int = 1, **options: Any) -> Sampled:
        pipeline = Pipeline(load_config(dir=data_dir, sinks="store", flush_interval_s=0.05, fsync=False))
        pipelines.append(pipeline)
        sampler = SystemMetrics(pipeline, interval_s=3600, metrics=metrics, **options)
        started = sampler.start()
        for _ in range(samples):
            assert sampler.sample_now(10.0)
        devices = sampler.gpu_devices
        assert sampler.shutdown(10.0)  # takes one last sample
        assert pipeline.flush(20.0)
        store = PointStore(pipeline.config.resolved_store_path)
        try:
            points = [p for p in store.query() if p.metric.startswith("hw.")]
        finally:
            store.close()
        return Sampled(devices, points, started)

    yield run
    for pipeline in pipelines:
        pipeline.shutdown(5.0)


# -- mapping: names, units, values, attributes ----------------------------------------------------


def test_gpu_metrics_have_the_conventions_names_units_and_attributes(
    nvml: Callable[..., FakeNvml], sample: Callable[..., Sampled], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "run-gpu")
    monkeypatch.setenv("RANK", "5")
    fake = nvml([FakeGpu(uuid(0)), FakeGpu(uuid(1), name="NVIDIA H200", uuid_as_bytes=True, utilization_percent=7)])
    got = sample()
    assert got.metrics() == set(CONVENTION)
    expected_values = {
        "hw.gpu.utilization": 0.42,  # 42 %
        "hw.gpu.memory.usage": 3 << 30,
        "hw.gpu.memory.limit": 80 << 30,
        "hw.power": 250.5,  # 250,500 mW
        "hw.energy": 7200.0,  # 7,200,000 mJ
        "hw.temperature": 61.0,
        "hw.gpu.speed": 1.98e9,  # 1,980 MHz
    }
    for point in got.points:
        kind, monotonic, unit = CONVENTION[point.metric]
        assert (point.kind, point.monotonic, point.unit) == (kind, monotonic, unit), point
        assert point.resource["training.run.id"] == "run-gpu"
        assert point.resource["training.rank"] == 5
        index = 0 if point.attributes["hw.id"] == uuid(0) else 1
        expected_attributes = {
            "hw.id": uuid(index),
            "hw.name": "NVIDIA H100 80GB HBM3" if index == 0 else "NVIDIA H200",
            "hw.type": "gpu",
            "hw.vendor": "NVIDIA",
            "gpu.index": index,
        }
        if point.metric == "hw.gpu.utilization":
            expected_attributes["hw.gpu.task"] = "general"
        assert point.attributes == expected_attributes
        if point.metric == "hw.gpu.utilization" and index == 1:
            assert point.value == pytest.approx(0.07)
        else:
            assert point.value == pytest.approx(expected_values[point.metric]), point
    # Two samples (one asked for, one at shutdown), seven metrics, two GPUs.
    assert len(got.points) == 2 * 7 * 2
    assert fake.inits == 1 and fake.shutdowns == 1


def test_a_metric_the_device_cannot_report_is_left_out_and_not_asked_again(
    nvml: Callable[..., FakeNvml], sample: Callable[..., Sampled], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mig_uuid(2))
    fake = nvml(mig_node())
    got = sample(samples=3)
    assert got.ids() == [mig_uuid(2)]
    # A MIG device has its own memory; utilisation, power, energy, temperature and clock are the GPU's.
    assert got.metrics() == {"hw.gpu.memory.usage", "hw.gpu.memory.limit"}
    point = next(p for p in got.points if p.metric == "hw.gpu.memory.limit")
    assert point.attributes == {
        "hw.id": mig_uuid(2),
        "hw.name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "hw.type": "gpu",
        "hw.vendor": "NVIDIA",
        "gpu.index": 0,
        "hw.parent": uuid(0),
    }
    assert point.value == 10 << 30
    for function in ("nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetClockInfo"):
        assert fake.calls_to(function, mig_uuid(2)) == 1, function  # 4 samples, asked once
    assert fake.calls_to("nvmlDeviceGetMemoryInfo", mig_uuid(2)) == 2 * 4


def test_an_nvml_failure_costs_that_reading_only_is_logged_once_and_retried(
    nvml: Callable[..., FakeNvml], sample: Callable[..., Sampled], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_recursive_metrics")
    fake = nvml([FakeGpu(uuid(0), failing={"nvmlDeviceGetPowerUsage": NVML_ERROR_GPU_IS_LOST})])
    got = sample(samples=2)
    assert got.metrics() == set(CONVENTION) - {"hw.power"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "hw.power" in warnings[0] and "GPU is lost" in warnings[0], warnings
    assert fake.calls_to("nvmlDeviceGetPowerUsage") == 3  # retried at every sample


# -- which devices: CUDA_VISIBLE_DEVICES, LOCAL_RANK, MIG ------------------------------------------

CASES: list[tuple[str, dict[str, str], Callable[[], list[FakeGpu]], list[str]]] = [
    ("no launcher: every GPU", {}, four_gpus, [uuid(i) for i in range(4)]),
    ("CVD index", {"CUDA_VISIBLE_DEVICES": "2"}, four_gpus, [uuid(2)]),
    ("CVD indices + LOCAL_RANK picks in list order", {"CUDA_VISIBLE_DEVICES": "3,1", "LOCAL_RANK": "0"}, four_gpus, [uuid(3)]),
    ("CVD indices + LOCAL_RANK=1", {"CUDA_VISIBLE_DEVICES": "1,3", "LOCAL_RANK": "1"}, four_gpus, [uuid(3)]),
    ("CVD UUID", {"CUDA_VISIBLE_DEVICES": uuid(2)}, four_gpus, [uuid(2)]),
    ("CVD UUID prefix", {"CUDA_VISIBLE_DEVICES": "GPU-3333"}, four_gpus, [uuid(3)]),
    ("CVD UUIDs + LOCAL_RANK", {"CUDA_VISIBLE_DEVICES": f"{uuid(3)},{uuid(0)}", "LOCAL_RANK": "1"}, four_gpus, [uuid(0)]),
    ("CVD stops at the first unknown entry", {"CUDA_VISIBLE_DEVICES": "0,7,1"}, four_gpus, [uuid(0)]),
    ("LOCAL_RANK alone", {"LOCAL_RANK": "2"}, four_gpus, [uuid(2)]),
    ("SLURM_LOCALID", {"SLURM_LOCALID": "3"}, four_gpus, [uuid(3)]),
    ("LOCAL_RANK beyond the GPUs wraps", {"LOCAL_RANK": "5"}, four_gpus, [uuid(1)]),
    ("two ranks split four GPUs", {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, four_gpus, [uuid(2), uuid(3)]),
    ("one process per node keeps them all", {"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}, four_gpus, [uuid(i) for i in range(4)]),
    ("MIG UUID", {"CUDA_VISIBLE_DEVICES": mig_uuid(2)}, mig_node, [mig_uuid(2)]),
    ("MIG legacy form", {"CUDA_VISIBLE_DEVICES": f"MIG-{uuid(0)}/1/0"}, mig_node, [mig_uuid(1)]),
    ("a GPU in MIG mode stands for its MIG devices", {"CUDA_VISIBLE_DEVICES": "0"}, mig_node, [mig_uuid(1), mig_uuid(2)]),
    ("MIG-capable GPU with MIG off", {"CUDA_VISIBLE_DEVICES": "2"}, mig_node, [uuid(2)]),
    ("LOCAL_RANK over MIG devices then GPUs", {"LOCAL_RANK": "2"}, mig_node, [uuid(1)]),
]


@pytest.mark.parametrize(("environment", "gpus", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_only_the_devices_this_rank_uses_are_sampled(
    environment: dict[str, str],
    gpus: Callable[[], list[FakeGpu]],
    expected: list[str],
    nvml: Callable[..., FakeNvml],
    sample: Callable[..., Sampled],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    fake = nvml(gpus())
    got = sample(metrics="hw.gpu.memory.limit,hw.gpu.memory.usage")
    assert got.ids() == sorted(expected)
    assert got.ids("hw.gpu.memory.usage") == sorted(expected)
    assert sorted(d.uuid for d in got.devices) == sorted(expected)
    # Devices this rank does not use are never read.
    read = {u for f, u, _ in fake.calls if f == "nvmlDeviceGetMemoryInfo"}
    assert read == set(expected)


def test_an_empty_cuda_visible_devices_means_no_gpu_metrics_and_says_why(
    nvml: Callable[..., FakeNvml], sample: Callable[..., Sampled], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_recursive_metrics")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    fake = nvml(four_gpus())
    got = sample()
    assert got.started and got.points == [] and got.devices == []
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name.startswith("otel_recursive_metrics.system")]
    assert len(infos) == 1 and "no GPU metrics" in infos[0] and "CUDA_VISIBLE_DEVICES=''" in infos[0], infos
    assert fake.shutdowns == fake.inits == 1  # NVML released at once


# -- no binding, no driver, no GPU ----------------------------------------------------------------


def test_without_the_nvml_binding_there_is_no_error_and_one_info_line(
    monkeypatch: pytest.MonkeyPatch, sample: Callable[..., Sampled], caplog: pytest.LogCaptureFixture, data_dir: Path
) -> None:
    require_module("opentelemetry.instrumentation.system_metrics", "system")
    caplog.set_level(logging.INFO)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    got = sample(metrics="default")  # host metrics too: they go on without the GPU ones
    assert got.started and got.points == []
    ours = [r for r in caplog.records if r.name.startswith("otel_recursive_metrics") and r.levelno >= logging.INFO]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    assert ours[0].levelno == logging.INFO
    message = ours[0].getMessage()
    assert "no GPU metrics" in message and "not installed" in message and "pip install -e '.[gpu]' in your clone" in message
    store = PointStore(data_dir / "metrics.db")
    try:
        assert store.query("process.memory.usage"), "host and process metrics should still be sampled"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (FakeNvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND), "NVML did not start (NVML Shared Library Not Found)"),
        (FakeNvml([]), "the driver lists no GPU"),
    ],
    ids=["no driver", "no GPU"],
)
def test_without_a_driver_or_a_gpu_there_is_no_error_and_one_info_line(
    fake: FakeNvml, reason: str, monkeypatch: pytest.MonkeyPatch, sample: Callable[..., Sampled], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    got = sample()
    assert got.started and got.points == []
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("otel_recursive_metrics") and r.levelno >= logging.INFO]
    assert len(ours) == 1 and reason in ours[0], ours


def test_gpu_false_leaves_nvml_unopened(nvml: Callable[..., FakeNvml], sample: Callable[..., Sampled]) -> None:
    fake = nvml(four_gpus())
    got = sample(metrics="default", gpu=False)
    assert got.points == [] and fake.inits == 0


# -- fork, and the seam for other vendors ---------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_neither_samples_nor_calls_nvml(nvml: Callable[..., FakeNvml], data_dir: Path) -> None:
    fake = nvml([FakeGpu(uuid(0))])
    pipeline = Pipeline(load_config(dir=data_dir, sinks="store", flush_interval_s=0.05, fsync=False))
    sampler = SystemMetrics(pipeline, interval_s=0.05, metrics=GPU_ONLY)
    try:
        assert sampler.start()
        deadline = time.monotonic() + 20
        while sampler.samples < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:  # a DataLoader worker
            code = 1
            try:
                time.sleep(0.3)  # six of the parent's intervals
                no_thread = not any(t.name == THREAD_NAME for t in threading.enumerate())
                declined = not sampler.running and not sampler.sample_now(1.0)
                sampler.shutdown(2.0)
                mine = [c for c in fake.calls if c[2] == os.getpid()]
                code = 0 if (no_thread and declined and not mine and fake.shutdowns == 0) else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sampler.running  # the parent goes on sampling
    finally:
        assert sampler.shutdown(10.0)
        pipeline.shutdown(5.0)
    assert fake.shutdowns == 1


class TableSource:
    """A second vendor behind the GpuSource seam (as amdsmi would be): two devices, two readings."""

    vendor = "AMD"
    visible_devices_variable = "HIP_VISIBLE_DEVICES"

    def __init__(self) -> None:
        self.closed = 0

    def devices(self) -> Sequence[GpuDevice]:
        return [GpuDevice(i, f"amd-gpu-{i}", "AMD Instinct MI300X") for i in range(2)]

    def read(self, device: GpuDevice, metric: str) -> float | int | None:
        return {"hw.gpu.utilization": 0.5, "hw.gpu.memory.usage": 1024 * (device.index + 1)}.get(metric)

    def close(self) -> None:
        self.closed += 1


def test_another_vendor_plugs_in_through_the_gpu_source_seam(sample: Callable[..., Sampled], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML is never asked
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    source = TableSource()
    got = sample(gpu_source=source)
    assert got.metrics() == {"hw.gpu.utilization", "hw.gpu.memory.usage"}
    assert got.ids("hw.gpu.memory.usage") == ["amd-gpu-1"]
    assert {p.attributes["hw.vendor"] for p in got.points} == {"AMD"}
    assert {p.value for p in got.points if p.metric == "hw.gpu.memory.usage"} == {2048}
    assert source.closed == 1


# -- the real thing -------------------------------------------------------------------------------


def _nvidia_smi_listing() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and "UUID" in done.stdout else None


def _expected_ids(listing: str) -> list[str]:
    """The devices `nvidia-smi -L` lists: each GPU's UUID, or its MIG devices' when it has some."""
    ids: list[str] = []
    gpu: str | None = None
    migs: list[str] = []
    for line in [*listing.splitlines(), "GPU end"]:
        found = re.search(r"\(UUID: ((?:GPU|MIG)-[^)]+)\)", line)
        if line.startswith("GPU"):
            if gpu is not None:
                ids.extend(migs or [gpu])
            gpu, migs = (found.group(1) if found else None), []
        elif found and found.group(1).startswith("MIG-"):
            migs.append(found.group(1))
    return sorted(ids)


def test_real_gpus_are_sampled_through_nvml(sample: Callable[..., Sampled]) -> None:
    listing = _nvidia_smi_listing()
    if listing is None:
        pytest.skip("nvidia-smi is not installed or lists no GPU here: no real GPU to sample")
    require_module("pynvml", "gpu")
    got = sample(samples=2)
    assert got.ids() == _expected_ids(listing)
    by_metric: dict[str, list[StoredPoint]] = {}
    for point in got.points:
        by_metric.setdefault(point.metric, []).append(point)
        assert point.attributes["hw.type"] == "gpu" and point.attributes["hw.vendor"] == "NVIDIA"
    for point in by_metric["hw.gpu.memory.limit"]:
        assert point.value is not None and point.value > 0
    for metric, low, high in (
        ("hw.gpu.utilization", 0.0, 1.0),
        ("hw.temperature", 0.0, 130.0),
        ("hw.power", 0.0, 5000.0),
        ("hw.gpu.speed", 1e7, 1e10),
    ):
        for point in by_metric.get(metric, []):
            assert point.value is not None and low <= point.value <= high, point
    print("\nreal GPU sample (last value per device):")
    for metric in sorted(by_metric):
        last = {p.attributes["hw.id"]: p.value for p in by_metric[metric]}
        print(f"  {metric} [{by_metric[metric][0].unit}]: {last}")
