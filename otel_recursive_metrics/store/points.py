"""Reading points back: :class:`StoredPoint`, and :class:`PointQuery`, the filters as SQL.

>>> PointQuery(metric="train.loss", run="run-1", step_min=100).sql()[0]
'SELECT ... WHERE m.name IN (?) AND json_extract(r.attributes, ?) = ? AND p.step >= ? ORDER BY ...'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..resource import RANK_KEY, RUN_ID_KEY

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
    #: Only the last ``last`` points (still returned oldest first).
    last: int | None = None
    #: Only points written after the point with this row id (:attr:`StoredPoint.row_id`).
    after_row_id: int | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """The SELECT statement and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.metric is not None:
            names = [self.metric] if isinstance(self.metric, str) else list(self.metric)
            where.append(f"m.name IN ({','.join('?' * len(names))})")
            params.extend(names)
        res_filter = dict(self.resource or {})
        if isinstance(self.run, str):
            res_filter[RUN_ID_KEY] = self.run
        elif self.run is not None:
            runs = list(self.run)
            where.append(f"json_extract(r.attributes, ?) IN ({','.join('?' * len(runs))})")
            params.extend([json_path(RUN_ID_KEY), *runs])
        if self.rank is not None:
            res_filter[RANK_KEY] = self.rank
        for key, value in res_filter.items():
            where.append("json_extract(r.attributes, ?) = ?")
            params.extend([json_path(key), value])
        for key, value in (self.attributes or {}).items():
            where.append("json_extract(a.attributes, ?) = ?")
            params.extend([json_path(key), value])
        for clause, value in (
            ("p.time_unix_nano >= ?", self.start_time_unix_nano),
            ("p.time_unix_nano <= ?", self.end_time_unix_nano),
            ("p.step >= ?", self.step_min),
            ("p.step <= ?", self.step_max),
            ("p.id > ?", self.after_row_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = POINT_COLUMNS
        if where:
            sql += " WHERE " + " AND ".join(where)
        if self.last is not None:
            # The newest ``last`` rows, then put back in time order.
            sql = f"SELECT * FROM ({sql} ORDER BY p.time_unix_nano DESC, p.step DESC, p.id DESC LIMIT ?)"
            params.append(int(self.last))
            sql += " ORDER BY 9, 10, 16"  # time_unix_nano, step, id: the columns' positions
        else:
            sql += " ORDER BY p.time_unix_nano, p.step, p.id"
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(int(self.limit))
        return sql, params


def json_path(key: str) -> str:
    """A JSON path selecting the top-level ``key`` (quoted: keys hold dots)."""
    return '$."' + key.replace('"', '\\"') + '"'
