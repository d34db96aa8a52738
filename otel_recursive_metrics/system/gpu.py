"""GPU metrics under OpenTelemetry's ``hw.*`` names, for the devices this rank uses.

What is recorded, one point per selected device per collection (names and units from the
hardware semantic conventions, where ``hw.type`` is ``gpu``):

=======================  ===============  =======  ====================================================
metric                   instrument       unit     value
=======================  ===============  =======  ====================================================
``hw.gpu.utilization``   gauge            ``1``    fraction of the last sample period in which a kernel
                                                   ran (``hw.gpu.task="general"``)
``hw.gpu.memory.usage``  up-down counter  ``By``   device memory in use
``hw.gpu.memory.limit``  up-down counter  ``By``   device memory size
``hw.power``             gauge            ``W``    power drawn now
``hw.energy``            counter          ``J``    energy used since the driver loaded
``hw.temperature``       gauge            ``Cel``  die temperature
``hw.gpu.speed``         gauge            ``Hz``   SM clock; not in the conventions yet, named after
                                                   ``hw.cpu.speed``
=======================  ===============  =======  ====================================================

Attributes on every point: ``hw.id`` (the device UUID, ``GPU-...`` or ``MIG-...``), ``hw.name``
(the product name), ``hw.type="gpu"``, ``hw.vendor``, ``gpu.index`` (the driver's index, as
``nvidia-smi`` shows it) and, for a MIG device, ``hw.parent`` (its GPU's UUID). A metric the
device does not support (power, energy, temperature and clock of a MIG device; energy before
Volta) is left out for that device, not reported as zero.

Which devices (:func:`select_devices`), in CUDA's terms:

1. ``CUDA_VISIBLE_DEVICES`` unset: every GPU. Set: its entries in order, each an index
   (``3``), a GPU UUID or a unique prefix of one (``GPU-8932f937``), a MIG device UUID
   (``MIG-...``) or the older ``MIG-GPU-<uuid>/<gi>/<ci>``; as in CUDA, the first entry that
   names no device ends the list (``""`` leaves none). A GPU in MIG mode stands for its MIG
   devices. Indices are the driver's (PCI bus) order, which is CUDA's order when
   ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or all GPUs are the same model; UUIDs are exact.
2. Of those, the rank's share: with a local rank (``LOCAL_RANK``, ``SLURM_LOCALID``) and more
   than one device, ``LOCAL_WORLD_SIZE`` ranks split them in equal consecutive blocks (one
   process per node keeps them all); without a local world size, or with more ranks than
   devices, rank ``r`` takes device ``r % n``, as ``torch.cuda.set_device(local_rank % n)`` would.

The seam for other vendors is :class:`GpuSource`: NVML (:mod:`.nvml`) is the one implemented; AMD
(``amdsmi``, visibility in ``HIP_VISIBLE_DEVICES``) would be a second module with the same three
methods, listed in :func:`open_gpu_source`.

Thread safety: :class:`GpuMetrics`' callbacks run on whichever thread collects the
MeterProvider (the sampler's); they read the device list, fixed at start, and the source, which
must tolerate calls from that one thread. In a forked child (a DataLoader worker) the callbacks
report nothing and never call the vendor library the parent opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..metric_set import GPU_METRIC_NAMES, GPU_METRICS, GpuMetricSpec

__all__ = [
    "GPU_METRICS",
    "GPU_METRIC_NAMES",
    "GpuDevice",
    "GpuMetricSpec",
    "GpuMetrics",
    "GpuSource",
    "GpuUnavailableError",
    "open_gpu_source",
    "select_devices",
    "start_gpu_metrics",
]

_log = logging.getLogger(__name__)


#: Attribute carrying the driver's device index (no semantic convention covers it).
GPU_INDEX_KEY = "gpu.index"


class GpuUnavailableError(Exception):
    """No GPU metrics can be read; the message says why, for the one INFO line."""


@dataclass(frozen=True)
class GpuDevice:
    """One device a vendor library can read: a whole GPU or a MIG device.

    ``index`` is the driver's index (a MIG device carries its GPU's); ``mig_ids`` are a MIG
    device's (GPU instance, compute instance); ``mig_devices`` are the MIG devices of a GPU in
    MIG mode; ``handle`` is the vendor library's own handle, opaque here.
    """

    index: int
    uuid: str
    name: str
    parent_uuid: str | None = None
    mig_ids: tuple[int, int] | None = None
    mig_devices: tuple[GpuDevice, ...] = ()
    handle: Any = field(default=None, compare=False, repr=False)

    def attributes(self, vendor: str) -> dict[str, Any]:
        """The point attributes of this device (see the module docstring)."""
        attrs: dict[str, Any] = {"hw.id": self.uuid, "hw.name": self.name, "hw.type": "gpu", "hw.vendor": vendor, GPU_INDEX_KEY: self.index}
        if self.parent_uuid is not None:
            attrs["hw.parent"] = self.parent_uuid
        return attrs

    def describe(self) -> str:
        return f"{self.uuid} ({self.name}, index {self.index})"


class GpuSource(Protocol):
    """A vendor library that lists GPUs and reads their metrics: the seam for NVML, amdsmi, fakes."""

    #: ``hw.vendor`` of every point ("NVIDIA").
    vendor: str
    #: The variable that restricts the devices a process sees ("CUDA_VISIBLE_DEVICES").
    visible_devices_variable: str

    def devices(self) -> Sequence[GpuDevice]:
        """Every whole GPU the library sees, in index order, each with its MIG devices if in MIG mode."""
        ...

    def read(self, device: GpuDevice, metric: str) -> float | int | None:
        """``metric`` (a key of :data:`GPU_METRICS`) in its unit, or None if unavailable; never raises."""
        ...

    def close(self) -> None:
        """Release the library; called once, from the process that opened it."""
        ...


def open_gpu_source() -> GpuSource:
    """The first vendor library that starts; :class:`GpuUnavailableError` with every reason if none does."""
    from .nvml import NvmlSource

    return NvmlSource.open()


# -- which devices ---------------------------------------------------------------------------------


def _whole(gpu: GpuDevice) -> list[GpuDevice]:
    return list(gpu.mig_devices) if gpu.mig_devices else [gpu]


def _by_prefix(devices: Iterable[GpuDevice], prefix: str) -> GpuDevice | None:
    prefix = prefix.lower()
    found = [d for d in devices if d.uuid.lower().startswith(prefix)]
    exact = [d for d in found if d.uuid.lower() == prefix]
    if exact:
        return exact[0]
    return found[0] if len(found) == 1 else None


def _match(gpus: Sequence[GpuDevice], entry: str) -> list[GpuDevice] | None:
    """The devices one ``CUDA_VISIBLE_DEVICES`` entry names, or None if it names none."""
    if entry.isdigit():
        gpu = next((g for g in gpus if g.index == int(entry)), None)
        return _whole(gpu) if gpu is not None else None
    if entry.startswith("MIG-GPU-"):  # the pre-R470 form: MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance>
        parts = entry[len("MIG-") :].split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        gpu = _by_prefix(gpus, parts[0])
        ids = (int(parts[1]), int(parts[2]))
        mig = next((m for m in gpu.mig_devices if m.mig_ids == ids), None) if gpu is not None else None
        return [mig] if mig is not None else None
    if entry.startswith("MIG-"):
        mig = _by_prefix((m for g in gpus for m in g.mig_devices), entry)
        return [mig] if mig is not None else None
    if entry.startswith("GPU-"):
        gpu = _by_prefix(gpus, entry)
        return _whole(gpu) if gpu is not None else None
    return None


def visible_devices(gpus: Sequence[GpuDevice], visible: str | None) -> list[GpuDevice]:
    """The devices a CUDA-style visibility list leaves to the process, in its order (rule 1)."""
    if visible is None:
        return [d for g in gpus for d in _whole(g)]
    out: list[GpuDevice] = []
    for raw in visible.split(","):
        found = _match(gpus, raw.strip())
        if found is None:
            break  # CUDA ignores the rest of the list from the first entry it cannot use
        out.extend(d for d in found if d not in out)
    return out


def rank_share(candidates: Sequence[GpuDevice], local_rank: int | None, local_world_size: int | None) -> list[GpuDevice]:
    """The devices of one local rank among ``candidates`` (rule 2)."""
    n = len(candidates)
    if n <= 1 or local_rank is None or local_rank < 0:
        return list(candidates)
    if local_world_size is not None and 0 < local_world_size <= n and local_rank < local_world_size:
        per_rank = n // local_world_size
        return list(candidates[local_rank * per_rank : (local_rank + 1) * per_rank])
    return [candidates[local_rank % n]]


def select_devices(
    gpus: Sequence[GpuDevice],
    *,
    visible: str | None,
    local_rank: int | None,
    local_world_size: int | None = None,
    visible_variable: str = "CUDA_VISIBLE_DEVICES",
) -> tuple[list[GpuDevice], str]:
    """``(devices this rank uses, why none)``; the reason is empty when devices were found."""
    if not gpus:
        return [], "the driver lists no GPU"
    candidates = visible_devices(gpus, visible)
    if not candidates:
        return [], f"{visible_variable}={visible!r} names none of the GPUs here ({', '.join(g.uuid for g in gpus)})"
    return rank_share(candidates, local_rank, local_world_size), ""


# -- instruments ----------------------------------------------------------------------------------


class GpuMetrics:
    """Observable ``hw.*`` instruments over the selected devices of one :class:`GpuSource`."""

    def __init__(self, source: GpuSource, devices: Sequence[GpuDevice], names: Iterable[str]) -> None:
        self.source = source
        self.devices = list(devices)
        self.names = [n for n in names if n in GPU_METRICS]
        self._pid = os.getpid()
        self._closed = False

    def register(self, meter: Meter) -> None:
        """Create one observable instrument per metric on ``meter``."""
        for name in self.names:
            spec = GPU_METRICS[name]
            callbacks = [self._observer(name)]
            if spec.kind == "gauge":
                meter.create_observable_gauge(name, callbacks=callbacks, unit=spec.unit, description=spec.description)
            elif spec.kind == "counter":
                meter.create_observable_counter(name, callbacks=callbacks, unit=spec.unit, description=spec.description)
            else:
                meter.create_observable_up_down_counter(name, callbacks=callbacks, unit=spec.unit, description=spec.description)

    def _observer(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        extra = {"hw.gpu.task": "general"} if name == "hw.gpu.utilization" else {}
        # Attribute dicts built once: the callback runs every interval for the whole run.
        pairs = [(device, {**device.attributes(self.source.vendor), **extra}) for device in self.devices]
        read = self.source.read

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._closed or os.getpid() != self._pid:
                return []
            out = []
            for device, attributes in pairs:
                value = read(device, name)
                if value is not None:
                    out.append(Observation(value, attributes))
            return out

        return observe

    def close(self) -> None:
        """Stop observing and release the vendor library (only in the process that opened it)."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001 - releasing a library must not fail a shutdown
                _log.debug("closing the GPU source failed", exc_info=True)


def start_gpu_metrics(
    meter: Meter,
    names: Sequence[str],
    *,
    environ: Mapping[str, str],
    local_rank: int | None,
    local_world_size: int | None,
    source: GpuSource | None = None,
) -> GpuMetrics | None:
    """Register the GPU instruments for this rank's devices, or log one INFO line saying why not."""
    if not names:
        return None
    if source is None:
        try:
            source = open_gpu_source()
        except GpuUnavailableError as exc:
            _log.info("otel-recursive-metrics: no GPU metrics: %s", exc)
            return None
    try:
        gpus = source.devices()
        variable = source.visible_devices_variable
        devices, why = select_devices(
            gpus, visible=environ.get(variable), local_rank=local_rank, local_world_size=local_world_size, visible_variable=variable
        )
    except Exception as exc:  # noqa: BLE001 - a broken driver costs the GPU metrics, never the run
        devices, why = [], f"listing the GPUs failed: {exc}"
    if not devices:
        _log.info("otel-recursive-metrics: no GPU metrics: %s", why)
        try:
            source.close()
        except Exception:  # noqa: BLE001
            _log.debug("closing the GPU source failed", exc_info=True)
        return None
    metrics = GpuMetrics(source, devices, names)
    metrics.register(meter)
    _log.info("otel-recursive-metrics: GPU metrics for %s", ", ".join(d.describe() for d in devices))
    return metrics
