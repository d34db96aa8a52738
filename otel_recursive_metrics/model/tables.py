"""A point batch's tables as named records: its resources, scopes and metric descriptions.

A batch keeps each resource, scope and metric description once, and its points refer to them
by index (``point[METRIC]``). Each entry is a ``NamedTuple``: read by name
(``batch.metrics[i].kind``, not ``batch.metrics[i][3]``), and still a tuple, which JSON writes
as an array. So the durable queue's payload and the dead letters' sidecar hold the arrays they
always held::

    resources  [attributes, schema_url]
    scopes     [name, version, attributes, schema_url]
    metrics    [name, description, unit, kind, temporality, monotonic]

>>> MetricEntry("train.loss", "", "1", MetricKind.GAUGE, 0, False).kind == "gauge"
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .kinds import MetricKind

__all__ = ["MetricEntry", "ResourceEntry", "ScopeEntry", "tables_from_json"]


class ResourceEntry(NamedTuple):
    """A resource: the attributes that say which process made the points (run, rank, host)."""

    attributes: dict[str, Any]
    schema_url: str


class ScopeEntry(NamedTuple):
    """An instrumentation scope: the library (or ``TrainingMetrics``) that made the points."""

    name: str
    version: str
    attributes: dict[str, Any]
    schema_url: str


class MetricEntry(NamedTuple):
    """A metric's description; the same name with another unit or kind is another entry."""

    name: str
    description: str
    unit: str
    kind: MetricKind
    #: OTLP's ``AggregationTemporality``: 0 unspecified (gauges), 1 delta, 2 cumulative.
    temporality: int
    #: Whether a sum only grows (a counter); False for every other kind.
    monotonic: bool


def tables_from_json(
    resources: Sequence[Sequence[Any]], scopes: Sequence[Sequence[Any]], metrics: Sequence[Sequence[Any]]
) -> tuple[list[ResourceEntry], list[ScopeEntry], list[MetricEntry]]:
    """A decoded payload's tables as records.

    Raises ``TypeError`` or ``ValueError`` for an entry of the wrong length, and ``ValueError``
    naming a kind that is not a :class:`MetricKind`.
    """
    metric_entries = []
    for name, description, unit, kind, temporality, monotonic in metrics:
        metric_entries.append(MetricEntry(name, description, unit, MetricKind(kind), temporality, monotonic))
    return [ResourceEntry(*r) for r in resources], [ScopeEntry(*s) for s in scopes], metric_entries
