"""The store sink: batches into the embedded SQLite store, one transaction each."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..errors import PermanentError, RetryableError
from ..model.batch import PointBatch
from ..store.point_store import PointStore

__all__ = ["StoreSink"]

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
            store.write_batch(batch, steps_unknown=steps_unknown)
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

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
