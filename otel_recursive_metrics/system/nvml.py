"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``): a :class:`~.gpu.GpuSource`.

NVML is the library ``nvidia-smi`` is built on; it reads the driver without a CUDA context, so it
costs the training process no GPU memory and never synchronises a stream. Install the binding
with ``pip install -e '.[gpu]'`` in your clone; the library itself comes with the driver.

Readings and their NVML calls (converted to the units of :data:`~.gpu.GPU_METRICS`):

========================  =====================================================  ==============
metric                    NVML                                                   conversion
========================  =====================================================  ==============
``hw.gpu.utilization``    ``nvmlDeviceGetUtilizationRates(h).gpu``               percent / 100
``hw.gpu.memory.usage``   ``nvmlDeviceGetMemoryInfo(h).used``                    bytes
``hw.gpu.memory.limit``   ``nvmlDeviceGetMemoryInfo(h).total``                   bytes
``hw.power``              ``nvmlDeviceGetPowerUsage(h)``                         mW / 1000
``hw.energy``             ``nvmlDeviceGetTotalEnergyConsumption(h)``             mJ / 1000
``hw.temperature``        ``nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU)``  degrees C
``hw.gpu.speed``          ``nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM)``           MHz * 1e6
========================  =====================================================  ==============

A call that answers ``NVML_ERROR_NOT_SUPPORTED`` (most of them on a MIG device) is not made again
for that device. Any other NVML error leaves that reading out, is logged once per device and
metric at WARNING, and is tried again at the next collection (a GPU that fell off the bus may
come back after a reset).

Thread safety: NVML itself is thread-safe; this object's bookkeeping (the sets of unsupported
and reported readings) is only touched by the sampler thread that collects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .gpu import GpuDevice, GpuUnavailableError

__all__ = ["NvmlSource"]

_log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlSource:
    """NVML opened once (``nvmlInit``), closed once (``nvmlShutdown``); see the module docstring."""

    vendor = "NVIDIA"
    visible_devices_variable = "CUDA_VISIBLE_DEVICES"

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._unsupported: set[tuple[str, str]] = set()
        self._reported: set[tuple[str, str]] = set()
        self._closed = False
        self._readers: dict[str, Callable[[Any], float | int]] = {
            "hw.gpu.utilization": lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0,
            "hw.gpu.memory.usage": lambda h: int(nvml.nvmlDeviceGetMemoryInfo(h).used),
            "hw.gpu.memory.limit": lambda h: int(nvml.nvmlDeviceGetMemoryInfo(h).total),
            "hw.power": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "hw.energy": lambda h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0,
            "hw.temperature": lambda h: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
            "hw.gpu.speed": lambda h: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM) * 1e6,
        }

    @classmethod
    def open(cls) -> NvmlSource:
        """Import the binding and start NVML, or :class:`GpuUnavailableError` saying why not."""
        try:
            import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type information
        except ImportError as exc:
            raise GpuUnavailableError(
                f"the NVML binding is not installed ({exc});"
                " install it with pip install -e '.[gpu]' in your clone of otel-recursive-metrics"
            ) from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailableError(f"NVML did not start ({exc}): no NVIDIA driver on this machine?") from None
        except OSError as exc:  # a broken libnvidia-ml can fail to load outside NVML's own error codes
            raise GpuUnavailableError(f"NVML did not load ({exc})") from None
        return cls(pynvml)

    # -- GpuSource ---------------------------------------------------------------------------------

    def devices(self) -> list[GpuDevice]:
        nvml = self._nvml
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
            out.append(GpuDevice(index, uuid, name, mig_devices=tuple(self._mig_devices(index, uuid, handle)), handle=handle))
        return out

    def _mig_devices(self, index: int, gpu_uuid: str, handle: Any) -> list[GpuDevice]:
        nvml = self._nvml
        try:
            current_mode, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:
            return []  # not a MIG-capable GPU
        if current_mode != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        out = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:
                continue  # an empty slot
            ids = (int(nvml.nvmlDeviceGetGpuInstanceId(mig)), int(nvml.nvmlDeviceGetComputeInstanceId(mig)))
            out.append(
                GpuDevice(
                    index,
                    _text(nvml.nvmlDeviceGetUUID(mig)),
                    _text(nvml.nvmlDeviceGetName(mig)),
                    parent_uuid=gpu_uuid,
                    mig_ids=ids,
                    handle=mig,
                )
            )
        return out

    def read(self, device: GpuDevice, metric: str) -> float | int | None:
        key = (device.uuid, metric)
        reader = self._readers.get(metric)
        if reader is None or key in self._unsupported or self._closed:
            return None
        nvml = self._nvml
        try:
            return reader(device.handle)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                self._unsupported.add(key)
                _log.debug("%s: %s not supported by %s", device.uuid, metric, device.name)
                return None
            self._report(key, exc)
        except Exception as exc:  # noqa: BLE001 - the SDK would log a traceback every interval
            self._report(key, exc)
        return None

    def _report(self, key: tuple[str, str], exc: BaseException) -> None:
        if key in self._reported:
            _log.debug("NVML read of %s on %s failed again: %s", key[1], key[0], exc)
            return
        self._reported.add(key)
        _log.warning("otel-recursive-metrics: NVML could not read %s on %s: %s (left out; retried every interval)", key[1], key[0], exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - NVML keeps a reference count; an unbalanced shutdown is harmless
            _log.debug("nvmlShutdown failed", exc_info=True)
