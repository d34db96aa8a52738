"""Reading points back: :class:`StoredPoint`, and :class:`PointQuery`, the filters as SQL.

>>> PointQuery(metric="train.loss", run="run-1", step_min=100).sql()[0]
'SELECT ... WHERE p.metric_id IN (SELECT id FROM metrics WHERE name IN (?)) AND ... ORDER BY ...'
"""

from __future__ import annotations

import json
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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredPoint:
        """A point from a row of :data:`POINT_COLUMNS`."""
        return cls(
            metric=row[0],
            kind=row[1],
            unit=row[2],
            value=row[3],
            attributes=json.loads(row[4]),
            resource=json.loads(row[5]),
            scope=row[6],
            start_time_unix_nano=row[7],
            time_unix_nano=row[8],
            step=row[9],
            epoch=row[10],
            temporality=row[11],
            monotonic=bool(row[12]),
            histogram=None if row[13] is None else json.loads(row[13]),
            extra=None if row[14] is None else json.loads(row[14]),
            row_id=row[15],
        )


#: What a point query selects, in :meth:`StoredPoint.from_row`'s order.
POINT_COLUMNS = (
    "SELECT m.name, m.kind, m.unit, p.value, a.attributes, r.attributes, s.name,"
    " p.start_time_unix_nano, p.time_unix_nano, p.step, p.epoch, m.temporality, m.monotonic,"
    " p.histogram, p.extra, p.id"
    " FROM points p JOIN metrics m ON m.id = p.metric_id JOIN resources r ON r.id = p.resource_id"
    " JOIN scopes s ON s.id = p.scope_id JOIN attribute_sets a ON a.id = p.attributes_id"
)


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

    def parts(self) -> tuple[str, list[Any], str]:
        """``(" WHERE ...", params, " ORDER BY ...")`` over ``points p`` alone.

        Names and attributes are matched in their own small tables (a subquery each), so
        SQLite never parses a point's resource or attribute JSON: the filter costs the same
        whatever columns a caller selects.
        """
        where: list[str] = []
        params: list[Any] = []
        for field_name, subquery, sub_params in self.id_filters():
            where.append(f"p.{field_name} IN ({subquery})")
            params.extend(sub_params)
        for clause, value in (
            ("p.time_unix_nano >= ?", self.start_time_unix_nano),
            ("p.time_unix_nano <= ?", self.end_time_unix_nano),
            ("p.step >= ?", self.step_min),
            ("p.step <= ?", self.step_max),
            ("p.id > ?", self.after_row_id),
            ("p.id <= ?", self.max_row_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        return (" WHERE " + " AND ".join(where) if where else ""), params, " ORDER BY p.time_unix_nano, p.step, p.id"

    def sql(self, columns: str = "") -> tuple[str, list[Any]]:
        """The SELECT statement and its parameters.

        ``columns`` is the statement's head, ``SELECT ... FROM points p`` (joins allowed); the
        default selects :data:`POINT_COLUMNS`, what :meth:`StoredPoint.from_row` reads.
        """
        where, params, order = self.parts()
        head = columns or POINT_COLUMNS
        if self.last is not None:
            # The newest ``last`` rows of each series (numbered newest first within it), then in time order.
            newest = (
                "SELECT id FROM (SELECT p.id, row_number() OVER (PARTITION BY p.metric_id, p.resource_id, p.attributes_id"
                f" ORDER BY p.time_unix_nano DESC, p.step DESC, p.id DESC) AS newest_first FROM points p{where}) WHERE newest_first <= ?"
            )
            sql = f"{head} WHERE p.id IN ({newest}){order}"
            params.append(int(self.last))
        else:
            sql = head + where + order
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(int(self.limit))
        return sql, params


def json_path(key: str) -> str:
    """A JSON path selecting the top-level ``key`` (quoted: keys hold dots)."""
    return '$."' + key.replace('"', '\\"') + '"'
