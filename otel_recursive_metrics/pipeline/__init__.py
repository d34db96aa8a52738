"""The pipeline: everything between the caller's hand-off and a sink, on the worker's threads.

The stages, in the order a point meets them (one module each)::

    buffer       memory hand-off from the caller's thread (bounded, never blocks the caller)
    convert      SDK exports, log calls and records -> points (on the worker)
    ingest       memory -> durable queue, in batches (the batcher); ingest_loop runs it
    deliveries   one thread per sink over the durable queue (queue/), and how far they got
    delivery     one sink's loop: durable queue -> retry -> sink, or the dead-letter queue
    retry        backoff, budget and the classification of delivery errors
    telemetry    counters of every outcome (get_stats and OTel instruments)

Beside them: ``queue_faults`` (what the durable queue refuses or finds), ``recent`` (batches just
queued, so delivery need not decode them), ``producers`` (the system-metrics sampler's start and
stop), ``preemption`` (SIGTERM) and ``ending`` (SIGTERM, exit and fork for every pipeline, and
what one says it left). The point model is in :mod:`otel_recursive_metrics.model`, the durable
queue and the dead letters in :mod:`otel_recursive_metrics.queue`.

:class:`~otel_recursive_metrics.pipeline.worker.Pipeline` (in ``worker``) builds the stages and
runs their threads; :mod:`~otel_recursive_metrics.pipeline.default` holds the process's default one.
"""

from __future__ import annotations

from .worker import ErrorCallback, Pipeline

__all__ = ["ErrorCallback", "Pipeline"]
