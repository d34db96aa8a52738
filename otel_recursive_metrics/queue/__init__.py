"""The files a run keeps on disk between the worker and the sinks: the durable queue and the dead letters.

- :mod:`.slot`: one queue file (SQLite, one row a batch), held by one process at a time.
- :mod:`.folder`: :class:`~.folder.DurableQueue`, the slot this process holds plus the orphans
  it adopts, with one cursor per sink; the folder-level operations ``sync`` shares with the worker.
- :mod:`.pending`: :func:`~.pending.open_folder_slots`, the slots of a folder opened from outside
  (``otel-recursive-metrics sync``) to deliver what they hold, then deleted once drained.
- :mod:`.dead_letter`: :class:`~.dead_letter.DeadLetterQueue`, OTLP JSON Lines with a sidecar,
  replayable by the CLI or a stock Collector.

Below the pipeline, beside the sinks: it imports the model and :mod:`~otel_recursive_metrics._files`.
"""
