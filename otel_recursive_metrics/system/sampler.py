"""The sampler: its thread, its private provider and exporter, and how a pipeline gets one (see the package docstring)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ..config import setting_default
from ..metric_set import parse_metric_set, split_metric_set
from ..model.resource import LOCAL_RANK_KEY
from ..pipeline import Pipeline
from ..pipeline.buffer import ExportItem
from ..sdk_preferences import temporality_from_env
from .gpu import GpuDevice, GpuMetrics, GpuSource, start_gpu_metrics
from .host import host_scope, instrument_host

__all__ = [
    "DEFAULT_INTERVAL_S",
    "THREAD_NAME",
    "SystemMetrics",
    "start_configured_now",
    "start_system_metrics",
    "start_when_configured",
]

_log = logging.getLogger(__name__)

#: The ``system_metrics_interval_s`` setting's default, written once in the config.
DEFAULT_INTERVAL_S: float = setting_default("system_metrics_interval_s")
THREAD_NAME = "otel-recursive-metrics-system"
METER_NAME = "otel_recursive_metrics.system"

# The running sampler of each pipeline, by id(pipeline): a sampler holds its pipeline, so the id
# cannot be reused while the entry lives; the entry goes when the sampler does.
_samplers: weakref.WeakValueDictionary[int, SystemMetrics] = weakref.WeakValueDictionary()
_samplers_lock = threading.Lock()
# Serialises start_system_metrics (check, create, start); re-entrant because starting builds a
# RecursiveMetricExporter, whose constructor may be wired to ask for system metrics again.
_start_lock = threading.RLock()


def _pipeline_closed(pipeline: Any) -> bool:
    return bool(getattr(pipeline, "closed", False))


def _first_int(*values: Any) -> int | None:
    for value in values:
        text = str(value).strip() if value is not None else ""
        digits = ""
        for char in text:  # SLURM_NTASKS_PER_NODE may read "4(x2)"
            if not char.isdigit():
                break
            digits += char
        if digits:
            return int(digits)
    return None


class SystemMetrics:
    """Samples host, process and GPU metrics into a pipeline; see the module docstring.

    - ``pipeline``: the :class:`~otel_recursive_metrics.worker.Pipeline` the samples go through
      (``exporter.pipeline`` or ``training_metrics.pipeline`` give it).
    - ``interval_s``: seconds between samples (default 10).
    - ``gpu``: False leaves the GPU metrics out (and NVML unopened).
    - ``metrics``: the metric set, as :func:`~.metric_set.parse_metric_set` reads it (a mapping,
      a JSON object, ``"default,-system.*"``, ...); default :data:`DEFAULT_METRIC_SET`.
    - ``host_metrics_every_rank``: report ``system.*`` from every rank, not only local rank 0.
    - ``gpu_source``: a :class:`~.gpu.GpuSource` to read instead of NVML (another vendor, tests).
    - ``environ``: where ``CUDA_VISIBLE_DEVICES``, ``LOCAL_WORLD_SIZE`` and the exclusion variable
      are read (default ``os.environ``); the local rank comes from the pipeline's resource.

    A bad ``metrics`` or ``interval_s`` raises :class:`ValueError` here, not in the thread.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        gpu: bool = True,
        metrics: str | Mapping[str, Sequence[str] | None] | None = None,
        host_metrics_every_rank: bool = False,
        gpu_source: GpuSource | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or not math.isfinite(interval_s) or interval_s <= 0:
            raise ValueError(f"interval_s={interval_s!r}: expected a number of seconds > 0")
        self.pipeline = pipeline
        self.interval_s = float(interval_s)
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        metric_set = parse_metric_set(metrics, environ=self._environ)
        self._host_config, gpu_names = split_metric_set(metric_set)
        self._gpu_names = gpu_names if gpu else []
        self._every_rank = bool(host_metrics_every_rank)
        self._gpu_source = gpu_source
        self._lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self._stop = threading.Event()
        self._final_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._provider: MeterProvider | None = None
        self._reader: PeriodicExportingMetricReader | None = None
        self._gpu: GpuMetrics | None = None
        self._host_metrics: list[str] = []
        self._started = False
        self._starting = False
        self._closed = False
        self._pid = os.getpid()
        self.samples = 0
        self.failed_samples = 0
        self._failure_logged = False

    # -- what is sampled ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the sampling thread of this process runs."""
        thread = self._thread
        return self._started and not self._closed and thread is not None and thread.is_alive() and os.getpid() == self._pid

    @property
    def active(self) -> bool:
        """True while starting or running: a second sampler on the pipeline would double its series."""
        return self._starting or self.running

    @property
    def metric_names(self) -> list[str]:
        """The metrics being sampled: the host config keys in effect, then the GPU metrics (after start)."""
        return [*self._host_metrics, *(self._gpu.names if self._gpu is not None else [])]

    @property
    def gpu_devices(self) -> list[GpuDevice]:
        """The GPUs this rank samples (after start); empty without GPU metrics."""
        return list(self._gpu.devices) if self._gpu is not None else []

    def stats(self) -> dict[str, Any]:
        """Samples taken and failed, the interval, the metrics and GPUs sampled."""
        return {
            "samples": self.samples,
            "failed_samples": self.failed_samples,
            "interval_s": self.interval_s,
            "metrics": self.metric_names,
            "gpu_devices": [d.uuid for d in self.gpu_devices],
            "running": self.running,
        }

    # -- start ---------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Build the provider and start the thread; True if this sampler runs (idempotent)."""
        with self._lock:
            if self._started or self._closed:
                return self._started and not self._closed
            if _pipeline_closed(self.pipeline):
                _log.warning("otel-recursive-metrics: system metrics not started: the pipeline is shut down")
                return False
            with _samplers_lock:
                other = _samplers.get(id(self.pipeline))
                if other is not None and other is not self and other.active:
                    _log.warning("otel-recursive-metrics: this pipeline already has a system metrics sampler; a second one is not started")
                    return False
                _samplers[id(self.pipeline)] = self
                self._starting = True
            try:
                self._build()
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._started = True
                self._thread.start()
            except Exception:  # noqa: BLE001 - system metrics must never cost the training run
                _log.exception("otel-recursive-metrics: system metrics did not start")
                self._abandon()
                return False
            finally:
                self._starting = False
        _log.debug("otel-recursive-metrics: system metrics every %g s: %s", self.interval_s, ", ".join(self.metric_names) or "none")
        return True

    def _abandon(self) -> None:
        self._started = False
        self._closed = True
        if self._gpu is not None:
            self._gpu.close()
        if self._provider is not None:
            try:
                self._provider.shutdown(timeout_millis=1000.0)
            except Exception:  # noqa: BLE001
                _log.debug("shutting the system metrics provider down failed", exc_info=True)
        with _samplers_lock:
            if _samplers.get(id(self.pipeline)) is self:
                del _samplers[id(self.pipeline)]

    def _build(self) -> None:
        from .._version import __version__

        attributes = dict(self.pipeline.resource_attributes)
        local_rank = _first_int(attributes.get(LOCAL_RANK_KEY))
        self._reader = PeriodicExportingMetricReader(_OfferingExporter(self.pipeline), export_interval_millis=math.inf)
        # Resource(...) rather than Resource.create(...): exactly the pipeline's attributes, so
        # samples and training points share one resource (one row in the store, one target_info).
        # shutdown_on_exit=False: at exit the pipeline's owner flushes; this provider must not
        # reach the pipeline first.
        self._provider = MeterProvider(resource=Resource(attributes), metric_readers=[self._reader], shutdown_on_exit=False)
        host_config = host_scope(self._host_config, local_rank=local_rank, every_rank=self._every_rank)
        self._host_metrics = instrument_host(self._provider, host_config)
        self._gpu = start_gpu_metrics(
            self._provider.get_meter(METER_NAME, __version__),
            self._gpu_names,
            environ=self._environ,
            local_rank=local_rank,
            local_world_size=_first_int(self._environ.get("LOCAL_WORLD_SIZE"), self._environ.get("SLURM_NTASKS_PER_NODE")),
            source=self._gpu_source,
        )

    # -- sampling ------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            if _pipeline_closed(self.pipeline):
                _log.info("otel-recursive-metrics: the pipeline was shut down; system metrics stop")
                return
            self._collect(deadline=time.monotonic() + min(self.interval_s, 30.0))
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # a sample overran (a hung driver call): skip the missed ticks
                next_at = now + self.interval_s
        # Stopping: one last sample (the energy total, say), here rather than on the thread that
        # called shutdown, which may be the training thread at exit.
        if not _pipeline_closed(self.pipeline):
            self._collect(deadline=self._final_deadline)

    def _collect(self, deadline: float) -> bool:
        reader = self._reader
        if reader is None or not self._collect_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            reader.collect(timeout_millis=max(1.0, (deadline - time.monotonic()) * 1000.0))
            self.samples += 1
            return True
        except Exception as exc:  # noqa: BLE001 - a failed sample must not end the thread
            self.failed_samples += 1
            if not self._failure_logged:
                self._failure_logged = True
                _log.warning("otel-recursive-metrics: a system metrics sample failed: %s (further failures are counted)", exc)
            return False
        finally:
            self._collect_lock.release()

    def sample_now(self, timeout_s: float = 10.0) -> bool:
        """Take one sample on the calling thread (tests, benchmarks); True if it was handed to the pipeline."""
        if not self._started or self._closed or os.getpid() != self._pid:
            return False
        return self._collect(deadline=time.monotonic() + max(0.0, timeout_s))

    # -- shutdown ------------------------------------------------------------------------------------

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Stop sampling within ``timeout_s``, after one last sample taken on the sampler thread.

        True if the thread ended in time (False: it was stuck in a driver call; it is a daemon
        and the vendor library stays open under it).

        Idempotent. The pipeline is left running (flush or shut it down afterwards).
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            started = self._started
        if not started:
            return True
        self._final_deadline = deadline
        self._stop.set()  # the thread takes its last sample and ends
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = thread is None or not thread.is_alive()
        if self._gpu is not None and stopped:
            self._gpu.close()  # not while the thread may still be inside a driver call
        if self._provider is not None:
            try:
                self._provider.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000.0)
            except Exception:  # noqa: BLE001
                _log.debug("shutting the system metrics provider down failed", exc_info=True)
        with _samplers_lock:
            if _samplers.get(id(self.pipeline)) is self:
                del _samplers[id(self.pipeline)]
        if not stopped:
            _log.warning("otel-recursive-metrics: the system metrics thread was still sampling at the shutdown deadline")
        return stopped


class _OfferingExporter(MetricExporter):
    """The sampler's own door into the pipeline: offers each sample, as our exporter does, and owns nothing.

    Its shutdown leaves the pipeline running: the pipeline belongs to whoever built it.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(preferred_temporality=temporality_from_env())
        self._pipeline = pipeline

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            ok = self._pipeline.offer(ExportItem(time.monotonic_ns(), metrics_data))
        except Exception:  # noqa: BLE001 - the SDK's reader must never see us raise
            _log.debug("otel-recursive-metrics: a system metrics sample could not be offered", exc_info=True)
            ok = False
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def _configured_options(pipeline: Pipeline) -> dict[str, Any]:
    cfg = pipeline.config
    return {"interval_s": cfg.system_metrics_interval_s, "gpu": cfg.system_metrics_gpu, "metrics": cfg.system_metrics_set}


def start_configured_now(pipeline: Pipeline) -> SystemMetrics | None:
    """Start the pipeline's sampler now with the config's ``system_metrics_*`` settings; never raises.

    ``configure(system_metrics=True)`` and ``TrainingMetrics(system_metrics=True)``: the sampler
    starts at once, with the resource they set. None after shutdown, in a forked child, or when
    it could not start (logged).
    """
    if pipeline.closed or pipeline.in_forked_child:
        return None
    try:
        return start_system_metrics(pipeline, **_configured_options(pipeline))
    except Exception:  # noqa: BLE001 - system metrics must never cost the run
        _log.exception("otel-recursive-metrics: system metrics did not start")
        return None


def start_when_configured(pipeline: Pipeline) -> None:
    """With ``system_metrics`` in the pipeline's config, start its sampler on the worker once it is set up.

    What the faces (the exporter, ``TrainingMetrics``, the seed's collector) call for a pipeline
    they build or use: the pipeline itself knows nothing of samplers. Idempotent.
    """
    if pipeline.config.system_metrics:

        def start() -> None:
            start_configured_now(pipeline)

        pipeline.on_setup(start)


def start_system_metrics(pipeline: Pipeline, **options: Any) -> SystemMetrics:
    """The running sampler of ``pipeline``, started with ``options`` if there is none yet.

    Idempotent: ``configure(system_metrics=True)`` and ``TrainingMetrics(system_metrics=True)`` on
    one pipeline share one sampler (the first one's options win). ``options`` are
    :class:`SystemMetrics`' keyword arguments.
    """
    with _start_lock:
        with _samplers_lock:
            current = _samplers.get(id(pipeline))
        if current is not None and current.active:
            return current
        sampler = SystemMetrics(pipeline, **options)
        if sampler.start():
            pipeline.add_producer(sampler)  # stopped first at the pipeline's shutdown
        return sampler
