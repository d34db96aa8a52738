"""The store sink: batches into the embedded SQLite store, one transaction each.

The store re-creates its file when it is removed, replaced or truncated under the writer (see
:mod:`otel_recursive_metrics.store.file_watch`); :func:`store_file_stats` gives those events
for ``get_stats()``: ``store_recreated`` (how many times, by cause) and
``store_points_left_behind`` (points this process had stored in the files that went).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PermanentError, RetryableError
from ..model.batch import PointBatch, wide_ints_as_float
from ..store.point_store import PointStore

__all__ = ["StoreSink", "store_file_stats"]

_log = logging.getLogger(__name__)

# SQLite errors that a later attempt can get past: a lock held by another rank, a full or
# briefly unavailable disk.
_TRANSIENT = ("locked", "busy", "disk is full", "disk i/o", "unable to open")


class StoreSink:
    """Writes batches to a :class:`~otel_recursive_metrics.store.point_store.PointStore`, idempotently."""

    name = "store"
    #: The store is a file on this machine (see the Sink protocol).
    is_local = True
    #: The store refuses points only as a whole batch (see the Sink protocol).
    rejected_points = 0

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._store: PointStore | None = None
        #: Integer values past 64 bits stored as floats (batches queued or dead-lettered before
        #: the pipeline converted such values itself); a running count, like ``rejected_points``.
        self.values_as_float = 0
        # What the stores this sink closed saw (see store_file_stats).
        self._recreated: dict[str, int] = {}
        self._points_left_behind = 0

    def file_stats(self) -> dict[str, Any]:
        """``store_recreated`` (by cause) and ``store_points_left_behind``, over every store this sink opened."""
        recreated = dict(self._recreated)
        left = self._points_left_behind
        store = self._store
        if store is not None:
            for cause, n in dict(store.recreated).items():  # a copy: the worker thread may add to it
                recreated[cause] = recreated.get(cause, 0) + n
            left += store.points_left_behind
        return {"store_recreated": recreated, "store_points_left_behind": left}

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
        except ConfigError as exc:  # a store of a newer version at the path: every batch alike
            raise PermanentError(f"store {self.path}: {'; '.join(exc.problems)}") from exc
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
            stats = self.file_stats()
            self._recreated, self._points_left_behind = stats["store_recreated"], stats["store_points_left_behind"]
            self._store.close()
            self._store = None


def store_file_stats(sinks: Iterable[Any]) -> dict[str, Any]:
    """:meth:`StoreSink.file_stats` of the store sink among ``sinks`` (zeros without one)."""
    for sink in sinks:
        if isinstance(sink, StoreSink):
            return sink.file_stats()
    return {"store_recreated": {}, "store_points_left_behind": 0}
