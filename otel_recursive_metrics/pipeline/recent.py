"""Batches just queued, kept in memory by record id for a little while.

Ingest adds each batch it appends to the durable queue; a sink's delivery takes it from here
rather than decoding the record's payload again. Thread safety: one lock; any thread.
"""

from __future__ import annotations

import collections
import threading

from ..model.batch import PointBatch

__all__ = ["RecentBatches"]


class RecentBatches:
    """Batches just queued, by record id, so a sink need not decode what ingest just encoded."""

    def __init__(self, max_records: int = 64) -> None:
        self.max_records = max_records
        self._lock = threading.Lock()
        self._batches: collections.OrderedDict[int, PointBatch] = collections.OrderedDict()

    def add(self, first_id: int, batches: list[PointBatch]) -> None:
        with self._lock:
            for offset, batch in enumerate(batches):
                self._batches[first_id + offset] = batch
            while len(self._batches) > self.max_records:
                self._batches.popitem(last=False)

    def get(self, record_id: int) -> PointBatch | None:
        with self._lock:
            return self._batches.get(record_id)

    def forget_through(self, record_id: int) -> None:
        """Drop every batch up to ``record_id`` (every sink is done with them)."""
        with self._lock:
            while self._batches and next(iter(self._batches)) <= record_id:
                self._batches.popitem(last=False)
