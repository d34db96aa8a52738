"""System metrics beside the training metrics: host, process and GPU, sampled on their own thread.

    >>> from otel_recursive_metrics.system import start_system_metrics
    >>> sampler = start_system_metrics(pipeline, interval_s=10.0)     # one sampler per pipeline
    >>> ...                                                             # train
    >>> sampler.shutdown(timeout_s=5.0)                                 # before the pipeline's own shutdown

How the samples travel: a private SDK ``MeterProvider`` whose resource is the pipeline's (the run,
the rank, ``service.instance.id``: the training metrics' resource, attribute for attribute), read
by a ``PeriodicExportingMetricReader`` over a small exporter of its own that offers to that same
pipeline, as ours does.
So the samples take the training metrics' road: memory buffer, durable queue, store and/or OTLP,
dead letters. Being private, the provider never meets the application's global one, whose
exporter may be something else entirely.

What is sampled (:mod:`otel_recursive_metrics.metric_set`): host and process metrics from OpenTelemetry's own
system-metrics instrumentation (:mod:`.host`), GPU metrics from NVML under ``hw.gpu.*`` names for
the devices this rank uses (:mod:`.gpu`, :mod:`.nvml`). ``process.*`` and ``hw.*`` come from every
rank, ``system.*`` (the same for every rank on a host) only from each node's local rank 0 unless
``host_metrics_every_rank``. Either part may be missing (no ``system`` extra, no GPU): the other
still runs, and a log line says why.

The thread: ``otel-recursive-metrics-system`` (daemon) collects the provider every ``interval_s``
(default 10 s) on a fixed schedule; the training thread never takes a sample. The reader's own
ticker is off (``export_interval_millis=inf``) because the SDK restarts that one in every forked
child, so DataLoader workers would sample ``psutil`` and NVML for nothing (and their exports are
ignored anyway); ours is not restarted after a fork. What one sample costs is measured by
``benchmarks/bench_system.py``.

Lifecycle: :meth:`SystemMetrics.start` is idempotent, and a second sampler on a pipeline that
already has a running one declines to start (a warning says so) rather than doubling every
series. :meth:`SystemMetrics.shutdown` has the thread take a last sample and end, then releases
NVML, all within its deadline; it never shuts the pipeline down, which belongs to its owner (the
main exporter, ``TrainingMetrics``, ``configure()``: they start the sampler, and the pipeline
never imports this package); that is why the private exporter's ``shutdown`` is a no-op. If the
pipeline is shut down first, the sampler notices at its next tick and stops.

Thread safety: ``start``, ``sample_now`` and ``shutdown`` may be called from any thread;
collections are serialised (one at a time, each waiting with a deadline).
"""

from __future__ import annotations

from ..metric_set import DEFAULT_METRIC_SET, GPU_METRICS, parse_metric_set
from .gpu import GpuDevice, GpuSource
from .sampler import (
    DEFAULT_INTERVAL_S,
    THREAD_NAME,
    SystemMetrics,
    start_configured_now,
    start_system_metrics,
    start_when_configured,
)

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_METRIC_SET",
    "GPU_METRICS",
    "THREAD_NAME",
    "GpuDevice",
    "GpuSource",
    "SystemMetrics",
    "parse_metric_set",
    "start_configured_now",
    "start_system_metrics",
    "start_when_configured",
]
