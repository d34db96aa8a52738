"""Reading points back: :class:`StoredPoint`, and :class:`PointQuery`, the filters a read takes.

The points themselves are read from chunks (:mod:`.point_reads`, :mod:`.ordered_reads`); a query's
names and attributes are matched in the small tables (:meth:`PointQuery.id_filters`):

>>> PointQuery(metric="train.loss", run="run-1").id_filters()[0]
('metric_id', 'SELECT id FROM metrics WHERE name IN (?)', ['train.loss'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.resource import RANK_KEY, RUN_ID_KEY

__all__ = ["PointQuery", "StoredPoint", "json_path"]


@dataclass(frozen=True)
class StoredPoint:
    """One point read back from the store."""

    metric: str
    kind: str
    unit: str
    value: float | int | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    time_unix_nano: int
    step: int | None
    epoch: int | None
    temporality: int
    monotonic: bool
    histogram: dict[str, Any] | None
    extra: dict[str, Any] | None
    #: The store's row id: increases as points are written (what ``--follow`` and the web view
    #: ask "since"); not part of :meth:`to_json`.
    row_id: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "unit": self.unit,
            "value": self.value,
            "attributes": self.attributes,
            "resource": self.resource,
            "scope": self.scope,
            "start_time_unix_nano": self.start_time_unix_nano,
            "time_unix_nano": self.time_unix_nano,
            "step": self.step,
            "epoch": self.epoch,
            "temporality": self.temporality,
            "monotonic": self.monotonic,
            "histogram": self.histogram,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class PointQuery:
    """Filters on points; every one given must match.

    ``metric`` is a name or several; ``run`` and ``rank`` match the resource attributes
    ``training.run.id`` and ``training.rank``; ``resource`` and ``attributes`` match any other
    keys exactly. Times are inclusive bounds in Unix nanoseconds, steps inclusive bounds.
    Points come ordered by time, then step.
    """

    metric: str | Sequence[str] | None = None
    run: str | Sequence[str] | None = None
    rank: int | None = None
    resource: Mapping[str, Any] | None = field(default=None, hash=False)
    attributes: Mapping[str, Any] | None = field(default=None, hash=False)
    start_time_unix_nano: int | None = None
    end_time_unix_nano: int | None = None
    step_min: int | None = None
    step_max: int | None = None
    limit: int | None = None
    #: Only the last ``last`` points of each series: a metric of one resource (a run's rank,
    #: restart) and one attribute set (still returned oldest first).
    last: int | None = None
    #: Only points written after the point with this row id (:attr:`StoredPoint.row_id`).
    after_row_id: int | None = None
    #: Only points up to this row id (a snapshot: what was in the store at one moment).
    max_row_id: int | None = None

    def id_filters(self) -> list[tuple[str, str, list[Any]]]:
        """The name and attribute filters: ``(point field, "SELECT id FROM <small table> WHERE ...", params)``.

        Names and attributes are matched in their own small tables, so neither SQLite nor a
        chunk reader parses a point's resource or attribute JSON.
        """
        out: list[tuple[str, str, list[Any]]] = []
        if self.metric is not None:
            names = [self.metric] if isinstance(self.metric, str) else list(self.metric)
            out.append(("metric_id", f"SELECT id FROM metrics WHERE name IN ({','.join('?' * len(names))})", names))
        res_where: list[str] = []
        res_params: list[Any] = []
        res_filter = dict(self.resource or {})
        if isinstance(self.run, str):
            res_filter[RUN_ID_KEY] = self.run
        elif self.run is not None:
            runs = list(self.run)
            res_where.append(f"json_extract(attributes, ?) IN ({','.join('?' * len(runs))})")
            res_params.extend([json_path(RUN_ID_KEY), *runs])
        if self.rank is not None:
            res_filter[RANK_KEY] = self.rank
        for key, value in res_filter.items():
            res_where.append("json_extract(attributes, ?) = ?")
            res_params.extend([json_path(key), value])
        if res_where:
            out.append(("resource_id", "SELECT id FROM resources WHERE " + " AND ".join(res_where), res_params))
        if self.attributes:
            attr_where, attr_params = [], []
            for key, value in self.attributes.items():
                attr_where.append("json_extract(attributes, ?) = ?")
                attr_params.extend([json_path(key), value])
            out.append(("attributes_id", "SELECT id FROM attribute_sets WHERE " + " AND ".join(attr_where), attr_params))
        return out


def json_path(key: str) -> str:
    """A JSON path selecting the top-level ``key`` (quoted: keys hold dots)."""
    return '$."' + key.replace('"', '\\"') + '"'
