"""The point model, owned by no stage: what a point is, on every layer above.

- :mod:`.batch`: :class:`~.batch.PointBatch`, a batch of points with its interned metric,
  resource, scope and attribute tables; :class:`~.batch.BatchBuilder`.
- :mod:`.point`: the point's fields (``point[TIME]``) and the builders of its histogram field.
- :mod:`.tables`: the entries of a batch's tables as named records (``batch.metrics[i].kind``).
- :mod:`.kinds`: the closed vocabularies as ``str`` enums: metric kinds, run statuses, overflow
  policies, loss outcomes.
- :mod:`.attributes`: canonical attribute JSON (one text per attribute set) and the size limits.
- :mod:`.resource`: the run's resource attributes (``training.run.id``, rank, world size, read
  from torchrun and SLURM) and the names of the run-metadata metrics.
- :mod:`.otlp`: ``PointBatch`` to and from OTLP (protobuf ``ExportMetricsServiceRequest`` and
  its JSON Lines form, which dead letters use and a stock Collector replays).

This package imports nothing of ``otel_recursive_metrics`` but :mod:`~otel_recursive_metrics.errors`;
the store, the sinks, the queue and the pipeline import it (``tests/test_architecture.py``).
"""
