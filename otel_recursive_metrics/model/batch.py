"""The point batch: the one shape every stage after the exporter works on.

A :class:`PointBatch` keeps the OpenTelemetry data model (resource, scope, metric, point) in a
compact, JSON-serialisable form. Resources, scopes, metric descriptions and point attribute sets
are stored once per batch and points refer to them by index, so a batch of 8,192 points from
one trainer repeats no strings, however long its attributes are. Point attributes are canonical
JSON text (sorted keys, no spaces): the same attributes always give the same text, which is what
the store's de-duplication key compares.

A point is a list read through the index constants of :mod:`.point` (``point[TIME]``, not
``point[5]``), which this module exports too, with the point's builders.

The tables are lists of named records (:mod:`.tables`): ``batch.metrics[i].kind``, a
:class:`~.kinds.MetricKind`.

On-disk formats. The durable queue's payload (:meth:`PointBatch.encode`) is the binary form of
:mod:`.batch_codec` (format version 3): the tables as JSON, the points as compressed
:class:`~.chunk.SeriesChunk` columns grouped by series. The dead-letter sidecar keeps :meth:`PointBatch.to_json`
(:meth:`PointBatch.encode_json` writes it as bytes): JSON format 2, an object with ``v`` (2),
``id`` (the batch's identity), ``resources`` ``[[attributes, schema_url], ...]``, ``scopes``
``[[name, version, attributes, schema_url], ...]``, ``metrics`` ``[[name, description, unit,
kind, temporality, monotonic], ...]``, ``attributes`` ``[canonical JSON text, ...]`` and
``points`` (lists in the point's field order). :meth:`PointBatch.decode` reads all three, and
format 1 (attributes written out in every point), which queues of earlier releases hold; it
tells them apart by the first bytes. Nothing is pickled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attributes import canonical_json
from .batch_codec import MAGIC, BatchFormatError, decode_points, encode_points, is_binary
from .kinds import MetricKind
from .point import (
    ATTRIBUTES,
    EPOCH,
    EXTRA,
    HISTOGRAM,
    INT64_MAX,
    INT64_MIN,
    METRIC,
    RESOURCE,
    SCOPE,
    START_TIME,
    STEP,
    TIME,
    VALUE,
    Point,
    explicit_histogram,
    exponential_histogram,
    new_point,
    wide_ints_as_float,
)
from .resource import RUN_METADATA_METRICS
from .tables import MetricEntry, ResourceEntry, ScopeEntry, tables_from_json

__all__ = [
    "ATTRIBUTES",
    "EPOCH",
    "EXTRA",
    "HISTOGRAM",
    "INT64_MAX",
    "INT64_MIN",
    "METRIC",
    "RESOURCE",
    "SCOPE",
    "START_TIME",
    "STEP",
    "TIME",
    "VALUE",
    "BatchBuilder",
    "MetricEntry",
    "Point",
    "PointBatch",
    "ResourceEntry",
    "ScopeEntry",
    "explicit_histogram",
    "exponential_histogram",
    "new_point",
    "wide_ints_as_float",
]

FORMAT_VERSION = 2

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_SLICE = 1024
_SHARE_TABLES_UP_TO = 256


def _scrub(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8 (lone surrogates become "?")."""
    if isinstance(value, MetricKind):
        return value  # ASCII, and a kind must stay a member
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, tuple):
        items = [_scrub(v) for v in value]
        # A table's record stays a record; JSON writes any tuple (a record's field) as an array.
        return type(value)(*items) if hasattr(value, "_fields") else items
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


# -- the batch -----------------------------------------------------------------------------------


@dataclass
class PointBatch:
    """Points with the resources, scopes, metric descriptions and attribute sets they refer to."""

    resources: list[ResourceEntry] = field(default_factory=list)
    scopes: list[ScopeEntry] = field(default_factory=list)
    metrics: list[MetricEntry] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    #: Identity of the batch, kept through the durable queue and dead letters.
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Point attribute sets as canonical JSON text; ``point[ATTRIBUTES]`` indexes this list.
    attributes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points)

    def data_points(self) -> int:
        """Points that are metric data: all but run metadata (parameters, run events).

        What the counters of ``get_stats()`` count: metadata rides along with the data but is not
        a logged point.
        """
        reserved = {i for i, m in enumerate(self.metrics) if m.name in RUN_METADATA_METRICS}
        if not reserved:
            return len(self.points)
        return sum(1 for p in self.points if p[METRIC] not in reserved)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "id": self.id,
            "resources": self.resources,
            "scopes": self.scopes,
            "metrics": self.metrics,
            "attributes": self.attributes,
            "points": self.points,
        }

    def encode(self) -> bytes:
        """The durable-queue payload: the binary form of :mod:`.batch_codec` (format version 3)."""
        head = {"id": self.id, "resources": self.resources, "scopes": self.scopes, "metrics": self.metrics, "attributes": self.attributes}
        try:
            return encode_points(head, self.points)
        except UnicodeEncodeError:
            self._scrub()
            return self.encode()

    def _scrub(self) -> None:
        # A string with a lone surrogate (not valid Unicode) would fail in every sink and in
        # the dead-letter file alike: replace such characters with "?" once, here.
        self.resources, self.scopes, self.metrics, self.attributes, self.points = _scrub(
            [self.resources, self.scopes, self.metrics, self.attributes, self.points]
        )

    def encode_json(self) -> bytes:
        """JSON format 2 as UTF-8 bytes (the same text as ``json.dumps(to_json())``), as earlier releases queued it.

        Points are encoded in slices: one ``json.dumps`` call holds the GIL from start to end, and
        a slice of 1,024 points keeps that under a millisecond for the training thread's sake.
        """
        head = _compact(
            {
                "v": FORMAT_VERSION,
                "id": self.id,
                "resources": self.resources,
                "scopes": self.scopes,
                "metrics": self.metrics,
                "attributes": self.attributes,
            }
        )
        points = self.points
        body = ",".join(_compact(points[i : i + _ENCODE_SLICE])[1:-1] for i in range(0, len(points), _ENCODE_SLICE))
        text = head[:-1] + ',"points":[' + body + "]}"
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            self._scrub()
            return self.encode_json()

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview | str) -> PointBatch:
        """A batch from :meth:`encode`'s output (format 3), or :meth:`encode_json`'s (format 2, or 1 of earlier releases).

        Raises :class:`~.batch_codec.BatchFormatError` (a ``ValueError``) naming what is wrong
        with a payload that is none of them, or damaged.
        """
        if not isinstance(payload, str) and is_binary(payload):
            head, points = decode_points(payload)
            data: Any = {**head, "v": 3, "points": points}
        else:
            try:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                data = json.loads(bytes(payload) if isinstance(payload, memoryview) else payload)
            except ValueError as exc:
                start = payload[:8] if isinstance(payload, str) else bytes(payload[:8])
                raise BatchFormatError(f"not a point batch: it starts {start!r}, neither binary ({MAGIC!r}) nor JSON ({exc})") from None
            if not isinstance(data, dict) or data.get("v") not in (1, 2):
                raise BatchFormatError("not a point batch (format 1 or 2)")
        try:
            return cls._from_json(data)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BatchFormatError(f"a damaged point batch: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> PointBatch:
        batch_id = str(data.get("id") or uuid.uuid4().hex)
        resources, scopes, metrics = tables_from_json(data["resources"], data["scopes"], data["metrics"])
        if data["v"] != 1:
            return cls(resources, scopes, metrics, data["points"], batch_id, data["attributes"])
        # Format 1 wrote each point's attribute text in the point: intern it.
        table: dict[str, int] = {}
        points = data["points"]
        for p in points:
            text = p[ATTRIBUTES]
            index = table.get(text)
            if index is None:
                index = table[text] = len(table)
            p[ATTRIBUTES] = index
        return cls(resources, scopes, metrics, points, batch_id, list(table))

    @staticmethod
    def merge(batches: Sequence[PointBatch], batch_id: str | None = None) -> PointBatch:
        """The points of ``batches`` as one batch (a lone batch as it is), named ``batch_id`` or anew."""
        if len(batches) == 1:
            return batches[0]
        builder = BatchBuilder()
        for batch in batches:
            for point in batch.points:
                builder.add_point_from(batch, point)
        merged = builder.build()
        merged.id = batch_id or merged.id
        return merged

    def split(self, max_points: int) -> list[PointBatch]:
        """Chunks of at most ``max_points`` points, each carrying only what its points use."""
        if len(self.points) <= max_points:
            return [self]
        tables = (self.resources, self.scopes, self.metrics, self.attributes)
        if sum(len(t) for t in tables) <= _SHARE_TABLES_UP_TO:
            # Small tables (the usual case: one resource, a few scopes, tens of metrics) are
            # shared by every chunk as they are; an entry a chunk does not use costs nothing.
            return [
                PointBatch(
                    self.resources, self.scopes, self.metrics, self.points[start : start + max_points], f"{self.id}.{i}", self.attributes
                )
                for i, start in enumerate(range(0, len(self.points), max_points))
            ]
        return [
            self.select(self.points[start : start + max_points], f"{self.id}.{i}")
            for i, start in enumerate(range(0, len(self.points), max_points))
        ]

    def halves(self) -> tuple[PointBatch, PointBatch]:
        """The first and second half of the points (to find the point a receiver refuses)."""
        middle = len(self.points) // 2
        return self.select(self.points[:middle], f"{self.id}.a"), self.select(self.points[middle:], f"{self.id}.b")

    def select(self, points: Sequence[Point], batch_id: str) -> PointBatch:
        """A batch of ``points`` (from this batch) with only the table entries they use."""
        maps: tuple[dict[int, int], ...] = ({}, {}, {}, {})
        sources = (self.resources, self.scopes, self.metrics, self.attributes)
        out = PointBatch(id=batch_id)
        targets: tuple[list[Any], ...] = (out.resources, out.scopes, out.metrics, out.attributes)
        for p in points:
            q = p.copy()
            for k in (RESOURCE, SCOPE, METRIC, ATTRIBUTES):
                index = maps[k].get(p[k])
                if index is None:
                    index = maps[k][p[k]] = len(targets[k])
                    targets[k].append(sources[k][p[k]])
                q[k] = index
            out.points.append(q)
        return out


class BatchBuilder:
    """Builds a :class:`PointBatch`, interning resources, scopes, metric descriptions and attribute sets."""

    def __init__(self) -> None:
        self._resources: dict[str, int] = {}
        self._scopes: dict[str, int] = {}
        self._metrics: dict[tuple[Any, ...], int] = {}
        self._attributes: dict[str, int] = {}
        # id(mapping) -> (mapping, index): a logging source passes the same resource object on
        # every call, so one identity check replaces serialising the resource per item.
        self._resource_objects: dict[int, tuple[Mapping[str, Any], int]] = {}
        self._plain_scopes: dict[tuple[str, str], int] = {}
        #: (prefix, unit) -> {logged name: metric index}: the gauges of TrainingMetrics.log, found by one lookup a value.
        self.gauge_names: dict[tuple[str, str], dict[str, int]] = {}
        self.batch = PointBatch()

    def resource(self, attributes: Mapping[str, Any], schema_url: str = "") -> int:
        key = canonical_json(attributes) + "\x00" + schema_url
        index = self._resources.get(key)
        if index is None:
            index = self._resources[key] = len(self.batch.resources)
            self.batch.resources.append(ResourceEntry(json.loads(canonical_json(attributes)), schema_url))
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
            self.batch.scopes.append(ScopeEntry(name, version or "", json.loads(canonical_json(attributes)), schema_url))
        return index

    def metric(self, name: str, description: str, unit: str, kind: MetricKind | str, temporality: int = 0, monotonic: bool = False) -> int:
        """The index of a metric description; ``ValueError`` for a ``kind`` that is not a :class:`MetricKind`."""
        # A kind's text finds its member's key (equal, and hashed alike): no conversion on a hit,
        # which is every logged value but a metric's first.
        key = (name, description or "", unit or "", kind, temporality, bool(monotonic))
        index = self._metrics.get(key)
        if index is None:
            entry = MetricEntry(name, key[1], key[2], MetricKind(kind), temporality, key[5])
            index = self._metrics[key] = len(self.batch.metrics)
            self.batch.metrics.append(entry)
        return index

    def attributes(self, text: str) -> int:
        """The index of a canonical-JSON attribute set (see :func:`canonical_json`)."""
        index = self._attributes.get(text)
        if index is None:
            index = self._attributes[text] = len(self.batch.attributes)
            self.batch.attributes.append(text)
        return index

    def add_point(
        self,
        resource: int,
        scope: int,
        metric: int,
        attributes_json: str,
        start_time_unix_nano: int,
        time_unix_nano: int,
        value: float | int | None,
        step: int | None = None,
        epoch: int | None = None,
        histogram: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Append one point; ``attributes_json`` is interned (see :meth:`attributes`)."""
        self.batch.points.append(
            new_point(
                resource,
                scope,
                metric,
                self.attributes(attributes_json),
                start_time_unix_nano,
                time_unix_nano,
                value,
                step,
                epoch,
                histogram,
                extra,
            )
        )

    def add_point_from(self, source: PointBatch, point: Point) -> None:
        """Copy one point of another batch, re-interning what it refers to."""
        resource, scope = source.resources[point[RESOURCE]], source.scopes[point[SCOPE]]
        new = list(point)
        new[RESOURCE] = self.resource(resource.attributes, resource.schema_url)
        new[SCOPE] = self.scope(scope.name, scope.version, scope.attributes, scope.schema_url)
        new[METRIC] = self.metric(*source.metrics[point[METRIC]])
        new[ATTRIBUTES] = self.attributes(source.attributes[point[ATTRIBUTES]])
        self.batch.points.append(new)

    def build(self) -> PointBatch:
        return self.batch
