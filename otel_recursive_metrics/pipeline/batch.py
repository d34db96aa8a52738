"""The point batch: the one shape every stage after the exporter works on.

A :class:`PointBatch` keeps the OpenTelemetry data model (resource, scope, metric, point) in a
compact, JSON-serialisable form. Resources, scopes and metric descriptions are stored once per
batch and points refer to them by index, so a batch of 8,192 points from one trainer repeats no
strings. Point attributes are canonical JSON text (sorted keys, no spaces): the same attributes
always give the same text, which is what the store's de-duplication key compares.

On-disk format (the durable queue's payload) is ``json.dumps(batch.to_json())``: an object with
``v`` (format version, 1), ``id`` (the batch's identity), ``resources`` ``[[attributes, schema_url], ...]``, ``scopes``
``[[name, version, attributes, schema_url], ...]``, ``metrics``
``[[name, description, unit, kind, temporality, monotonic], ...]`` and ``points`` (see
:data:`POINT_FIELDS`). Nothing is pickled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KINDS",
    "POINT_FIELDS",
    "BatchBuilder",
    "PointBatch",
    "Temporality",
    "canonical_json",
    "canonical_json_of_immutable",
    "explicit_histogram",
    "exponential_histogram",
]

#: Metric kinds, after the OTLP ``Metric.data`` oneof.
KINDS = ("gauge", "sum", "histogram", "exponential_histogram")


class Temporality:
    """OTLP AggregationTemporality values."""

    UNSPECIFIED = 0
    DELTA = 1
    CUMULATIVE = 2


#: Fields of one point, in order. ``extra`` holds a submitted record's other fields (its id,
#: free-form keys), kept in the store and never sent to OTLP as attributes. ``value`` is the number for gauges and sums and ``None`` for
#: histograms, whose buckets are in ``histogram``: ``{"count", "sum", "min", "max", "bounds",
#: "counts"}`` for explicit buckets, ``{"count", "sum", "min", "max", "scale", "zero_count",
#: "positive": [offset, counts], "negative": [offset, counts], "flags"}`` for exponential ones.
POINT_FIELDS = (
    "resource",
    "scope",
    "metric",
    "attributes",
    "start_time_unix_nano",
    "time_unix_nano",
    "value",
    "step",
    "epoch",
    "histogram",
    "extra",
)

Point = list[Any]

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


# id(attributes) -> (attributes, text). The SDK hands out the same immutable attributes object
# for a series in every collection, so a hit needs only an identity check; holding the object
# keeps its id from being reused while it is cached.
_cache: dict[int, tuple[Mapping[str, Any], str]] = {}
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_SLICE = 1024
_SHARE_TABLES_UP_TO = 256
_CACHE_MAX = 100_000


def _scrub(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8 (lone surrogates become "?")."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def canonical_json(attributes: Mapping[str, Any] | None) -> str:
    """Attributes as canonical JSON text: sorted keys, compact, sequences as lists."""
    if not attributes:
        return "{}"
    return _dumps({k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()})


def canonical_json_of_immutable(attributes: Mapping[str, Any] | None) -> str:
    """:func:`canonical_json` for attribute objects that are never mutated (the SDK's), cached."""
    if not attributes:
        return "{}"
    hit = _cache.get(id(attributes))
    if hit is not None and hit[0] is attributes:
        return hit[1]
    text = _dumps({k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()})
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[id(attributes)] = (attributes, text)
    return text


@dataclass
class PointBatch:
    """Points with the resources, scopes and metric descriptions they refer to by index."""

    resources: list[list[Any]] = field(default_factory=list)
    scopes: list[list[Any]] = field(default_factory=list)
    metrics: list[list[Any]] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    #: Identity of the batch, kept through the durable queue and dead letters.
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __len__(self) -> int:
        return len(self.points)

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "id": self.id, "resources": self.resources, "scopes": self.scopes, "metrics": self.metrics, "points": self.points}

    def encode(self) -> bytes:
        """The durable-queue payload: UTF-8 JSON (the same text as ``json.dumps(to_json())``).

        Points are encoded in slices: one ``json.dumps`` call holds the GIL from start to end, and
        a slice of 1,024 points keeps that under a millisecond for the training thread's sake.
        """
        head = _compact({"v": 1, "id": self.id, "resources": self.resources, "scopes": self.scopes, "metrics": self.metrics})
        points = self.points
        body = ",".join(_compact(points[i : i + _ENCODE_SLICE])[1:-1] for i in range(0, len(points), _ENCODE_SLICE))
        text = head[:-1] + ',"points":[' + body + "]}"
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # A string with a lone surrogate (not valid Unicode) would fail in every sink and in
            # the dead-letter file alike: replace such characters with "?" once, here.
            self.resources, self.scopes, self.metrics, self.points = _scrub([self.resources, self.scopes, self.metrics, self.points])
            return self.encode()

    @classmethod
    def decode(cls, payload: bytes | str) -> PointBatch:
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("not a version-1 point batch")
        return cls(data["resources"], data["scopes"], data["metrics"], data["points"], str(data.get("id") or uuid.uuid4().hex))

    def split(self, max_points: int) -> list[PointBatch]:
        """Chunks of at most ``max_points`` points, each carrying only what its points use."""
        if len(self.points) <= max_points:
            return [self]
        if len(self.resources) + len(self.scopes) + len(self.metrics) <= _SHARE_TABLES_UP_TO:
            # Small tables (the usual case: one resource, a few scopes, tens of metrics) are
            # shared by every chunk as they are; an entry a chunk does not use costs nothing.
            return [
                PointBatch(self.resources, self.scopes, self.metrics, self.points[start : start + max_points], f"{self.id}.{i}")
                for i, start in enumerate(range(0, len(self.points), max_points))
            ]
        out = []
        for chunk_index, start in enumerate(range(0, len(self.points), max_points)):
            maps: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
            tables: tuple[list[list[Any]], list[list[Any]], list[list[Any]]] = ([], [], [])
            sources = (self.resources, self.scopes, self.metrics)
            points = []
            for p in self.points[start : start + max_points]:
                q = p.copy()
                for k in (0, 1, 2):
                    index = maps[k].get(p[k])
                    if index is None:
                        index = maps[k][p[k]] = len(tables[k])
                        tables[k].append(sources[k][p[k]])
                    q[k] = index
                points.append(q)
            out.append(PointBatch(tables[0], tables[1], tables[2], points, f"{self.id}.{chunk_index}"))
        return out


def explicit_histogram(
    count: int, total: float, minimum: float | None, maximum: float | None, bounds: Sequence[float], counts: Sequence[int]
) -> dict[str, Any]:
    """The ``histogram`` field of an explicit-bucket histogram point."""
    return {"count": count, "sum": total, "min": minimum, "max": maximum, "bounds": list(bounds), "counts": list(counts)}


def exponential_histogram(
    count: int,
    total: float,
    minimum: float | None,
    maximum: float | None,
    scale: int,
    zero_count: int,
    positive: tuple[int, Sequence[int]],
    negative: tuple[int, Sequence[int]],
    flags: int = 0,
) -> dict[str, Any]:
    """The ``histogram`` field of an exponential histogram point; buckets as ``(offset, counts)``."""
    return {
        "count": count,
        "sum": total,
        "min": minimum,
        "max": maximum,
        "scale": scale,
        "zero_count": zero_count,
        "positive": [positive[0], list(positive[1])],
        "negative": [negative[0], list(negative[1])],
        "flags": flags,
    }


class BatchBuilder:
    """Builds a :class:`PointBatch`, interning resources, scopes and metric descriptions."""

    def __init__(self) -> None:
        self._resources: dict[str, int] = {}
        self._scopes: dict[str, int] = {}
        self._metrics: dict[tuple[Any, ...], int] = {}
        # id(mapping) -> (mapping, index): a logging source passes the same resource object on
        # every call, so one identity check replaces serialising the resource per item.
        self._resource_objects: dict[int, tuple[Mapping[str, Any], int]] = {}
        self._plain_scopes: dict[tuple[str, str], int] = {}
        self.batch = PointBatch()

    def resource(self, attributes: Mapping[str, Any], schema_url: str = "") -> int:
        key = canonical_json(attributes) + "\x00" + schema_url
        index = self._resources.get(key)
        if index is None:
            index = self._resources[key] = len(self.batch.resources)
            self.batch.resources.append([json.loads(canonical_json(attributes)), schema_url])
        return index

    def resource_object(self, attributes: Mapping[str, Any]) -> int:
        """:meth:`resource` for a mapping that is never mutated, cached by identity."""
        hit = self._resource_objects.get(id(attributes))
        if hit is not None and hit[0] is attributes:
            return hit[1]
        index = self.resource(attributes)
        self._resource_objects[id(attributes)] = (attributes, index)
        return index

    def plain_scope(self, name: str, version: str = "") -> int:
        """:meth:`scope` for a scope with no attributes or schema URL, cached."""
        index = self._plain_scopes.get((name, version))
        if index is None:
            index = self._plain_scopes[(name, version)] = self.scope(name, version)
        return index

    def scope(self, name: str, version: str | None = None, attributes: Mapping[str, Any] | None = None, schema_url: str = "") -> int:
        key = json.dumps([name, version or "", canonical_json(attributes), schema_url])
        index = self._scopes.get(key)
        if index is None:
            index = self._scopes[key] = len(self.batch.scopes)
            self.batch.scopes.append([name, version or "", json.loads(canonical_json(attributes)), schema_url])
        return index

    def metric(self, name: str, description: str, unit: str, kind: str, temporality: int = 0, monotonic: bool = False) -> int:
        key = (name, description or "", unit or "", kind, temporality, bool(monotonic))
        index = self._metrics.get(key)
        if index is None:
            index = self._metrics[key] = len(self.batch.metrics)
            self.batch.metrics.append(list(key))
        return index

    def add_point_from(self, source: PointBatch, point: Point) -> None:
        """Copy one point of another batch, re-interning what it refers to."""
        res_attrs, res_schema = source.resources[point[0]]
        sc_name, sc_version, sc_attrs, sc_schema = source.scopes[point[1]]
        m = source.metrics[point[2]]
        new = list(point)
        new[0] = self.resource(res_attrs, res_schema)
        new[1] = self.scope(sc_name, sc_version, sc_attrs, sc_schema)
        new[2] = self.metric(*m)
        self.batch.points.append(new)

    def build(self) -> PointBatch:
        return self.batch
