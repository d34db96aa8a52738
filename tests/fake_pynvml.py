"""A fake ``pynvml`` module: the NVML seam of the GPU tests, with the binding's names and behaviour.

Only what :mod:`otel_recursive_metrics.system.nvml` may call exists, with NVML's units (percent,
bytes, milliwatts, millijoules, degrees, MHz) and its error model (``NVMLError`` with ``.value``;
``NVML_ERROR_NOT_SUPPORTED`` for what a MIG device cannot report). Every call is logged with the
device's UUID and the calling pid, so tests can check what was read and from which process::

    fake = FakeNvml([FakeGpu("GPU-aaaa"), FakeGpu("GPU-bbbb")])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    """As in the binding: one class, told apart by ``.value`` (an NVML return code)."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 6: "Not Found", 12: "NVML Shared Library Not Found", 15: "GPU is lost"}.get(self.value, "Unknown Error")


@dataclass
class FakeMig:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    gpu_instance: int = 1
    compute_instance: int = 0
    memory_used: int = 1 << 30
    memory_total: int = 10 << 30


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    utilization_percent: int = 42
    memory_used: int = 3 << 30
    memory_total: int = 80 << 30
    power_mw: int = 250_500
    energy_mj: int = 7_200_000
    temperature_c: int = 61
    sm_clock_mhz: int = 1980
    mig_capable: bool = False
    migs: list[FakeMig] = field(default_factory=list)  # MIG mode is on when this is not empty
    uuid_as_bytes: bool = False  # old bindings answered bytes
    failing: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code


class FakeNvml:
    """The state behind one fake module: devices, the call log, init/shutdown counts."""

    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.calls: list[tuple[str, str, int]] = []
        self.inits = 0
        self.shutdowns = 0

    def _log(self, function: str, device: Any) -> None:
        self.calls.append((function, getattr(device, "uuid", ""), os.getpid()))

    def calls_to(self, function: str, uuid: str | None = None) -> int:
        return sum(1 for f, u, _ in self.calls if f == function and (uuid is None or u == uuid))

    def module(self) -> types.ModuleType:
        fake = self
        m = types.ModuleType("pynvml")
        m.__dict__.update(
            NVMLError=NVMLError,
            NVML_SUCCESS=NVML_SUCCESS,
            NVML_ERROR_NOT_SUPPORTED=NVML_ERROR_NOT_SUPPORTED,
            NVML_ERROR_NOT_FOUND=NVML_ERROR_NOT_FOUND,
            NVML_TEMPERATURE_GPU=NVML_TEMPERATURE_GPU,
            NVML_CLOCK_SM=NVML_CLOCK_SM,
            NVML_DEVICE_MIG_DISABLE=NVML_DEVICE_MIG_DISABLE,
            NVML_DEVICE_MIG_ENABLE=NVML_DEVICE_MIG_ENABLE,
        )

        def check(function: str, device: Any) -> None:
            fake._log(function, device)
            code = getattr(device, "failing", {}).get(function)
            if code is not None:
                raise NVMLError(code)

        def gpu_only(function: str, device: Any) -> FakeGpu:
            check(function, device)
            if isinstance(device, FakeMig):
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            return device

        def nvmlInit() -> None:
            fake.inits += 1
            if fake.init_error is not None:
                raise NVMLError(fake.init_error)

        def nvmlShutdown() -> None:
            fake.shutdowns += 1

        def nvmlDeviceGetCount() -> int:
            return len(fake.gpus)

        def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
            if not 0 <= index < len(fake.gpus):
                raise NVMLError(NVML_ERROR_NOT_FOUND)
            return fake.gpus[index]

        def nvmlDeviceGetUUID(device: Any) -> str | bytes:
            check("nvmlDeviceGetUUID", device)
            return device.uuid.encode() if getattr(device, "uuid_as_bytes", False) else device.uuid

        def nvmlDeviceGetName(device: Any) -> str:
            check("nvmlDeviceGetName", device)
            return str(device.name)

        def nvmlDeviceGetMigMode(device: Any) -> tuple[int, int]:
            gpu = gpu_only("nvmlDeviceGetMigMode", device)
            if not gpu.mig_capable:
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            mode = NVML_DEVICE_MIG_ENABLE if gpu.migs else NVML_DEVICE_MIG_DISABLE
            return mode, mode

        def nvmlDeviceGetMaxMigDeviceCount(device: Any) -> int:
            gpu_only("nvmlDeviceGetMaxMigDeviceCount", device)
            return 7

        def nvmlDeviceGetMigDeviceHandleByIndex(device: Any, slot: int) -> FakeMig:
            gpu = gpu_only("nvmlDeviceGetMigDeviceHandleByIndex", device)
            if slot >= len(gpu.migs):
                raise NVMLError(NVML_ERROR_NOT_FOUND)
            return gpu.migs[slot]

        def nvmlDeviceGetGpuInstanceId(device: Any) -> int:
            return int(device.gpu_instance)

        def nvmlDeviceGetComputeInstanceId(device: Any) -> int:
            return int(device.compute_instance)

        def nvmlDeviceGetUtilizationRates(device: Any) -> Any:
            gpu = gpu_only("nvmlDeviceGetUtilizationRates", device)
            return types.SimpleNamespace(gpu=gpu.utilization_percent, memory=10)

        def nvmlDeviceGetMemoryInfo(device: Any) -> Any:
            check("nvmlDeviceGetMemoryInfo", device)
            return types.SimpleNamespace(total=device.memory_total, used=device.memory_used, free=device.memory_total - device.memory_used)

        def nvmlDeviceGetPowerUsage(device: Any) -> int:
            return gpu_only("nvmlDeviceGetPowerUsage", device).power_mw

        def nvmlDeviceGetTotalEnergyConsumption(device: Any) -> int:
            return gpu_only("nvmlDeviceGetTotalEnergyConsumption", device).energy_mj

        def nvmlDeviceGetTemperature(device: Any, sensor: int) -> int:
            assert sensor == NVML_TEMPERATURE_GPU
            return gpu_only("nvmlDeviceGetTemperature", device).temperature_c

        def nvmlDeviceGetClockInfo(device: Any, clock: int) -> int:
            assert clock == NVML_CLOCK_SM
            return gpu_only("nvmlDeviceGetClockInfo", device).sm_clock_mhz

        for function in (
            nvmlInit,
            nvmlShutdown,
            nvmlDeviceGetCount,
            nvmlDeviceGetHandleByIndex,
            nvmlDeviceGetUUID,
            nvmlDeviceGetName,
            nvmlDeviceGetMigMode,
            nvmlDeviceGetMaxMigDeviceCount,
            nvmlDeviceGetMigDeviceHandleByIndex,
            nvmlDeviceGetGpuInstanceId,
            nvmlDeviceGetComputeInstanceId,
            nvmlDeviceGetUtilizationRates,
            nvmlDeviceGetMemoryInfo,
            nvmlDeviceGetPowerUsage,
            nvmlDeviceGetTotalEnergyConsumption,
            nvmlDeviceGetTemperature,
            nvmlDeviceGetClockInfo,
        ):
            setattr(m, function.__name__, function)
        return m


def uuid(n: int) -> str:
    """A GPU UUID in NVML's format, distinct per ``n`` from its first hex digits."""
    return f"GPU-{n:x}{n:x}{n:x}{n:x}0000-1111-2222-3333-444455556666"


def mig_uuid(n: int) -> str:
    return f"MIG-{n:x}{n:x}{n:x}{n:x}aaaa-bbbb-cccc-dddd-eeeeffff0000"
