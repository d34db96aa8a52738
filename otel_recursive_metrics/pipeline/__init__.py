"""The pipeline: everything between the caller's hand-off and a sink, on the worker's threads.

The stages, in the order a point meets them (one module each)::

    buffer      memory hand-off from the caller's thread (bounded, never blocks the caller)
    convert     SDK exports, log calls and records -> points (on the worker)
    batch       the point model: PointBatch, BatchBuilder
    ingest      memory -> durable queue, in batches (the batcher)
    queue       the durable on-disk queue, one read position per sink
    delivery    durable queue -> retry -> sink, or the dead-letter queue
    retry       backoff, budget and the classification of delivery errors
    dead_letter what can never be delivered, as replayable OTLP JSON Lines
    telemetry   counters of every outcome (get_stats and OTel instruments)

:class:`~otel_recursive_metrics.pipeline.worker.Pipeline` (in ``worker``) assembles them and runs
their threads; :mod:`~otel_recursive_metrics.pipeline.default` holds the process's default one.
"""

from __future__ import annotations

from .worker import ErrorCallback, Pipeline

__all__ = ["ErrorCallback", "Pipeline"]
