"""A :class:`~.points.PointQuery` answered from chunks: NumPy columns, then points if asked for.

:func:`query_columns` resolves the query's names and attributes to ids in the small tables,
reads the matching chunks (:mod:`.scan`), puts the points in time order (then step, then as
written) and applies ``last`` and ``limit``, all with NumPy. :func:`stored_points` turns columns
into :class:`~.points.StoredPoint` objects, looking each label up once per series.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .points import PointQuery, StoredPoint
from .scan import Columns, Reader, Scan, gather, iter_chunks

__all__ = ["Labels", "points_with_extra", "query_columns", "query_scan", "stored_points"]


class _Store(Reader, Protocol):
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def query_scan(store: _Store, query: PointQuery) -> Scan:
    """The :class:`~.scan.Scan` for ``query``: its names and attributes resolved to the store's ids."""
    ids: dict[str, list[int]] = {}
    for field_name, subquery, params in query.id_filters():
        ids[field_name.removesuffix("_id") + "_ids"] = [int(row[0]) for row in store.read(subquery, params)]
    return Scan(
        metric_ids=ids.get("metric_ids"),
        resource_ids=ids.get("resource_ids"),
        attributes_ids=ids.get("attributes_ids"),
        min_time=query.start_time_unix_nano,
        max_time=query.end_time_unix_nano,
        min_step=query.step_min,
        max_step=query.step_max,
        after_row_id=query.after_row_id,
        max_row_id=query.max_row_id,
    )


def _newest(columns: Columns, count: int) -> np.ndarray:
    """Of time-ordered ``columns``, the positions of the newest ``count`` points of each series (metric, resource, attributes)."""
    series = np.stack([columns.metric_id, columns.resource_id, columns.attributes_id])
    _, group = np.unique(series, axis=1, return_inverse=True)
    group = group.reshape(-1)
    # Stable sort by series keeps time order within each; number each point from its series' end.
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    ends = np.searchsorted(sorted_groups, sorted_groups, side="right")
    from_end = ends - np.arange(len(order)) - 1
    keep = np.zeros(len(order), bool)
    keep[order[from_end < count]] = True
    return np.flatnonzero(keep)


def query_columns(store: _Store, query: PointQuery) -> Columns:
    """The points ``query`` selects as columns, in time order (then step, then as written)."""
    columns = gather(iter_chunks(store, query_scan(store, query))).sorted_by_time()
    if query.last is not None:
        columns = columns.take(_newest(columns, int(query.last)))
    if query.limit is not None:
        columns = columns.take(slice(0, max(0, int(query.limit))))
    return columns


class Labels:
    """The store's small tables as dicts, read once: what a point's ids stand for."""

    def __init__(self, store: _Store) -> None:
        self.metrics = {row[0]: row[1:] for row in store.read("SELECT id, name, kind, unit, temporality, monotonic FROM metrics")}
        self._store = store
        self._resources: dict[int, dict[str, Any]] = {}
        self._scopes: dict[int, str] = {}
        self._attributes: dict[int, str] = {}

    def resource(self, resource_id: int) -> dict[str, Any]:
        if resource_id not in self._resources:
            ((text,),) = self._store.read("SELECT attributes FROM resources WHERE id = ?", (resource_id,))
            self._resources[resource_id] = json.loads(text)
        return self._resources[resource_id]

    def scope(self, scope_id: int) -> str:
        if scope_id not in self._scopes:
            ((name,),) = self._store.read("SELECT name FROM scopes WHERE id = ?", (scope_id,))
            self._scopes[scope_id] = name
        return self._scopes[scope_id]

    def attributes(self, attributes_id: int) -> str:
        if attributes_id not in self._attributes:
            ((text,),) = self._store.read("SELECT attributes FROM attribute_sets WHERE id = ?", (attributes_id,))
            self._attributes[attributes_id] = text
        return self._attributes[attributes_id]


def stored_points(store: _Store, columns: Columns) -> Iterator[StoredPoint]:
    """Each point of ``columns`` as a :class:`~.points.StoredPoint`, in their order."""
    labels = Labels(store)
    values = columns.values()
    fields = zip(
        columns.metric_id.tolist(),
        columns.resource_id.tolist(),
        columns.scope_id.tolist(),
        columns.attributes_id.tolist(),
        columns.start_time_unix_nano.tolist(),
        columns.time_unix_nano.tolist(),
        columns.step.tolist(),
        columns.step_missing.tolist(),
        columns.epoch.tolist(),
        columns.epoch_missing.tolist(),
        columns.row_id.tolist(),
        strict=True,
    )
    histograms = columns.histogram or [None] * len(columns)
    extras = columns.extra or [None] * len(columns)
    attribute_dicts: dict[int, dict[str, Any]] = {}
    for index, (metric_id, resource_id, scope_id, attributes_id, start, time, step, no_step, epoch, no_epoch, row_id) in enumerate(fields):
        name, kind, unit, temporality, monotonic = labels.metrics[metric_id]
        if attributes_id not in attribute_dicts:
            attribute_dicts[attributes_id] = json.loads(labels.attributes(attributes_id))
        histogram, extra = histograms[index], extras[index]
        yield StoredPoint(
            metric=name,
            kind=kind,
            unit=unit,
            value=values[index],
            attributes=dict(attribute_dicts[attributes_id]),
            resource=dict(labels.resource(resource_id)),
            scope=labels.scope(scope_id),
            start_time_unix_nano=start,
            time_unix_nano=time,
            step=None if no_step else step,
            epoch=None if no_epoch else epoch,
            temporality=temporality,
            monotonic=bool(monotonic),
            histogram=None if histogram is None else json.loads(histogram),
            extra=None if extra is None else json.loads(extra),
            row_id=row_id,
        )


def points_with_extra(store: _Store, key: str, value: Any, *, limit: int | None = None) -> list[StoredPoint]:
    """Points whose ``extra`` field ``key`` equals ``value`` (a submitted record's ``id``, say)."""
    columns = query_columns(store, PointQuery())
    if columns.extra is None:
        return []
    # A cheap text test first (the key and the value appear in the JSON), then the exact one.
    needle, wanted = json.dumps(key), json.dumps(value)
    rows = [i for i, text in enumerate(columns.extra) if text is not None and needle in text and wanted in text]
    found = [p for p in stored_points(store, columns.take(np.array(rows, dtype=np.int64))) if p.extra and p.extra.get(key) == value]
    return found if limit is None else found[: int(limit)]
