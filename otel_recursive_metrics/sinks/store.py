"""The store sink: batches into the embedded SQLite store, one transaction each."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path

from ..errors import PermanentError, RetryableError
from ..pipeline.batch import PointBatch, wide_ints_as_float
from ..store.point_store import PointStore

__all__ = ["StoreSink"]

_log = logging.getLogger(__name__)

# SQLite errors that a later attempt can get past: a lock held by another rank, a full or
# briefly unavailable disk.
_TRANSIENT = ("locked", "busy", "disk is full", "disk i/o", "unable to open")


class StoreSink:
    """Writes batches to a :class:`~otel_recursive_metrics.store.point_store.PointStore`, idempotently."""

    name = "store"
    #: The store refuses points only as a whole batch (see the Sink protocol).
    rejected_points = 0

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._store: PointStore | None = None
        #: Integer values past 64 bits stored as floats (batches queued or dead-lettered before
        #: the pipeline converted such values itself); a running count, like ``rejected_points``.
        self.values_as_float = 0

    @property
    def store(self) -> PointStore:
        if self._store is None:
            self._store = PointStore(self.path)
        return self._store

    def send(self, batch: PointBatch, deadline: float, *, steps_unknown: bool = False) -> None:
        """Write ``batch`` in one transaction; ``steps_unknown`` as in :meth:`PointStore.write_batch`."""
        try:
            store = self.store
            store.set_busy_timeout(deadline - time.monotonic())
            try:
                store.write_batch(batch, steps_unknown=steps_unknown)
            except OverflowError:
                points, changed = wide_ints_as_float(batch.points)
                if not changed:
                    raise  # a time or step past 64 bits: about one point, found by delivery's split
                store.write_batch(dataclasses.replace(batch, points=points), steps_unknown=steps_unknown)
                self._stored_as_float(changed)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc).lower() for word in _TRANSIENT):
                raise RetryableError(f"store {self.path}: {exc}") from exc
            raise PermanentError(f"store {self.path}: {exc}") from exc
        except (sqlite3.DatabaseError, OverflowError, TypeError, ValueError, KeyError, IndexError) as exc:
            if (
                isinstance(exc, sqlite3.DatabaseError)
                and "malformed" not in str(exc).lower()
                and not isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError))
            ):
                raise RetryableError(f"store {self.path}: {exc}") from exc
            # A value SQLite cannot hold is about one point: let delivery find it. A damaged file
            # ("malformed") refuses everything alike.
            splittable = "malformed" not in str(exc).lower()
            raise PermanentError(f"store {self.path}: cannot store this batch: {type(exc).__name__}: {exc}", splittable=splittable) from exc

    def _stored_as_float(self, changed: int) -> None:
        if not self.values_as_float:
            _log.warning(
                "otel-recursive-metrics: %d integer value(s) past 64 bits stored in %s as floats (SQLite holds 64-bit"
                " integers); further ones are counted in get_stats()['values_as_float']",
                changed,
                self.path,
            )
        self.values_as_float += changed

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
