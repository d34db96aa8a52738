"""The point model, owned by no stage: what a point is, on every layer above.

- :mod:`.batch`: :class:`~.batch.PointBatch`, a batch of points in columns-by-name form with
  its interned metric, resource, scope and attribute tables; :class:`~.batch.BatchBuilder`; the
  point's fields.
- :mod:`.attributes`: canonical attribute JSON (one text per attribute set) and the size limits.
- :mod:`.resource`: the run's resource attributes (``training.run.id``, rank, world size, read
  from torchrun and SLURM) and the names of the run-metadata metrics.
- :mod:`.otlp`: ``PointBatch`` to and from OTLP (protobuf ``ExportMetricsServiceRequest`` and
  its JSON Lines form, which dead letters use and a stock Collector replays).

This package imports nothing of ``otel_recursive_metrics`` but :mod:`~otel_recursive_metrics.errors`;
the store, the sinks, the queue and the pipeline import it (``tests/test_architecture.py``).
"""
