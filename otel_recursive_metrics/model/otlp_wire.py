"""OTLP request bytes for a batch, written without a protobuf message per point.

:func:`encode_request_bytes` returns exactly the bytes of
``encode_request(batch).SerializeToString()`` (:mod:`.otlp`), several times faster; the OTLP sinks
send them as they are. The points (gauges and sums) are written from NumPy columns by
:mod:`.otlp_points`, which says what makes that cheap; this module writes the few messages above
them. Their length prefixes need their bodies' sizes first, so each level is kept as a list of
pieces and its size (:func:`_nest`), and one ``join`` at the end copies every byte once.

The request has the slow path's shape exactly: a ``ResourceMetrics`` per resource, a
``ScopeMetrics`` per scope within it and a ``Metric`` per metric within that, each in the order of
its first point, and a metric's points in batch order. upb writes fields in field-number order and
so does this module, so the output is the same bytes, not merely an equal message
(``tests/test_otlp_wire.py`` checks both, and the error raised, on arbitrary batches). Step and
epoch are not sent, as in :func:`.otlp.encode_request`; points of store-only metrics are left out.

What is left to the protobuf classes (the slow path, :func:`.otlp.encode_request`):

- histogram and exponential-histogram metrics, encoded by them one metric at a time and spliced
  in (their points carry bucket lists, Python objects either way); a batch of histograms alone
  goes to them whole, as splicing would only add the columns' cost;
- a whole batch with anything the columns cannot hold as the slow path would: a value that is not
  an ``int`` or a ``float`` (a bool, text, a NumPy scalar), an integer past 64 bits, a time that
  is not an ``int`` in fixed64's range, a table index out of range, an unknown kind, text that is
  not UTF-8. Such a batch is encoded or refused by the slow path, with its error;
- everything, without NumPy.
"""

from __future__ import annotations

from typing import Any

from .batch import ATTRIBUTES, METRIC, RESOURCE, SCOPE, VALUE, PointBatch
from .kinds import MetricKind
from .otlp import encode_request
from .otlp_points import index_column, key_values, length_delimited, number_points, string_field, varint
from .resource import STORE_ONLY_METRICS

try:
    import numpy as np
except ImportError:  # pragma: no cover - NumPy is a core dependency; the slow path still works without it
    np = None  # type: ignore[assignment]

__all__ = ["encode_request_bytes", "encode_request_columnar"]

# A kind's code in the columns: number kinds are written here, histogram kinds by the protobuf classes.
_KIND_CODES = {MetricKind.GAUGE: 0, MetricKind.SUM: 1, MetricKind.HISTOGRAM: 2, MetricKind.EXPONENTIAL_HISTOGRAM: 3}
_NUMBER_KIND_CODES = 2  # codes below this are gauges and sums
_STORE_ONLY = -2  # the code of a store-only metric's points (run events), never sent; -1 is an unknown kind


def encode_request_bytes(batch: PointBatch) -> tuple[bytes, int]:
    """``(bytes of the OTLP request for batch, points in it)``: ``encode_request(batch)`` serialised, fast.

    Raises what :func:`.otlp.encode_request` raises for a batch OTLP cannot carry.
    """
    if np is not None:
        try:
            fast = encode_request_columnar(batch)
        except Exception:  # noqa: BLE001 - anything the columns cannot hold: the slow path decides
            fast = None
        if fast is not None:
            return fast
    request = encode_request(batch)
    store_only = {i for i, m in enumerate(batch.metrics) if m.name in STORE_ONLY_METRICS}
    sent = sum(1 for p in batch.points if p[METRIC] not in store_only) if store_only else len(batch.points)
    return request.SerializeToString(), sent


def _nest(tag: bytes, pieces: list[Any], size: int) -> tuple[list[Any], int]:
    """A length-delimited field around ``pieces`` (``size`` bytes in all), still as pieces."""
    head = tag + varint(size)
    return [head, *pieces], len(head) + size


def encode_request_columnar(batch: PointBatch) -> tuple[bytes, int] | None:
    """What :func:`encode_request_bytes` returns, from the columns; None for a batch they cannot
    hold as the slow path would (see the module docstring). It may raise for a batch OTLP cannot
    carry; :func:`encode_request_bytes` then lets the slow path decide, and raise its own error."""
    points, metrics = batch.points, batch.metrics
    if not points:
        return b"", 0
    if not any(_KIND_CODES.get(m.kind, -1) < _NUMBER_KIND_CODES for m in metrics if m.name not in STORE_ONLY_METRICS):
        return None  # histograms only (or no kind we know): nothing for the columns, the protobuf classes write it all
    columns = list(zip(*points, strict=True))  # the one walk over the points' lists
    if len(columns) <= VALUE:
        return None
    ids = [index_column(columns[k], len(t)) for k, t in ((RESOURCE, batch.resources), (SCOPE, batch.scopes), (METRIC, metrics))]
    attribute_ids = index_column(columns[ATTRIBUTES], len(batch.attributes))
    if attribute_ids is None or any(column is None for column in ids):
        return None
    resource_ids, scope_ids, metric_ids = ids
    kind_codes = np.array([_KIND_CODES.get(m.kind, -1) if m.name not in STORE_ONLY_METRICS else _STORE_ONLY for m in metrics])
    point_kinds = kind_codes[metric_ids]
    kept = np.flatnonzero(point_kinds != _STORE_ONLY)  # run events: kept in the store, never sent
    if not len(kept):
        return b"", 0
    if len(kept) < len(points):
        resource_ids, scope_ids, metric_ids, attribute_ids, point_kinds = (
            c[kept] for c in (resource_ids, scope_ids, metric_ids, attribute_ids, point_kinds)
        )
    if (point_kinds < 0).any():
        return None  # an unknown kind: the slow path names it
    nodes, node_counts, order = _request_order((resource_ids * len(batch.scopes) + scope_ids) * len(metrics) + metric_ids)
    node_kinds = kind_codes[nodes % len(metrics)]

    # The gauge and sum points, in request order, as one run of bytes; each such node's slice of it.
    is_number = point_kinds[order] < _NUMBER_KIND_CODES
    records, byte_ranges = memoryview(b""), [(0, 0)] * len(nodes)
    if is_number.any():
        part = number_points(batch, columns, kept[order[is_number]], attribute_ids[order[is_number]])
        if part is None:
            return None
        records, sizes = part
        ends = np.concatenate(([0], np.cumsum(sizes)))[np.cumsum(np.where(node_kinds < _NUMBER_KIND_CODES, node_counts, 0))]
        byte_ranges = list(zip(np.concatenate(([0], ends[:-1])).tolist(), ends.tolist(), strict=True))

    first_points = (np.cumsum(node_counts) - node_counts).tolist()
    metric_fields: list[tuple[list[Any], int]] = []
    for rank, (kind, (low, high)) in enumerate(zip(node_kinds.tolist(), byte_ranges, strict=True)):
        entry = metrics[int(nodes[rank] % len(metrics))]
        if kind < _NUMBER_KIND_CODES:
            metric_fields.append(_number_metric(entry, records[low:high]))
        else:  # a histogram metric: the protobuf classes encode it, its bytes are spliced in
            chosen = kept[order[first_points[rank] : first_points[rank] + int(node_counts[rank])]].tolist()
            sub = PointBatch(batch.resources, batch.scopes, metrics, [points[i] for i in chosen], batch.id, batch.attributes)
            encoded = encode_request(sub).resource_metrics[0].scope_metrics[0].metrics[0].SerializeToString()
            metric_fields.append(([encoded], len(encoded)))
    return b"".join(_above_the_metrics(batch, nodes.tolist(), metric_fields)), len(kept)


def _request_order(node_keys: Any) -> tuple[Any, Any, Any]:
    """The request's nodes and points from each point's node key (resource, scope, metric in one int).

    Returns the distinct keys in the order the slow path creates their messages (by first point),
    the points of each, and the request's point order: by node, then as in the batch (stable).
    """
    keys, first, node_of_point = np.unique(node_keys, return_index=True, return_inverse=True)
    created = np.argsort(first, kind="stable")
    rank = np.empty_like(created)
    rank[created] = np.arange(len(created))
    point_rank = rank[node_of_point.reshape(-1)]
    return keys[created], np.bincount(point_rank, minlength=len(created)), np.argsort(point_rank, kind="stable")


def _above_the_metrics(batch: PointBatch, nodes: list[int], metric_fields: list[tuple[list[Any], int]]) -> list[Any]:
    """The request's pieces: each resource's ``ResourceMetrics``, each scope's ``ScopeMetrics``
    within, around the metrics' bodies (``metric_fields``, one a node, in node order)."""
    n_scopes, n_metrics = len(batch.scopes), len(batch.metrics)
    tree: dict[int, dict[int, list[tuple[list[Any], int]]]] = {}  # resource -> scope -> metric bodies, by first point
    for key, body in zip(nodes, metric_fields, strict=True):
        resource_index, scope_index = divmod(key // n_metrics, n_scopes)
        tree.setdefault(resource_index, {}).setdefault(scope_index, []).append(body)
    request: list[Any] = []
    for resource_index, scopes in tree.items():
        resource = batch.resources[resource_index]
        rm_pieces: list[Any] = [length_delimited(b"\x0a", key_values(b"\x0a", resource.attributes))]  # ResourceMetrics.resource = 1
        rm_size = len(rm_pieces[0])
        for scope_index, bodies in scopes.items():
            scope = batch.scopes[scope_index]
            scope_body = string_field(b"\x0a", scope.name, "scope name") + string_field(b"\x12", scope.version or "", "scope version")
            scope_body += key_values(b"\x1a", scope.attributes)
            sm_pieces: list[Any] = [length_delimited(b"\x0a", scope_body)]  # ScopeMetrics.scope = 1
            sm_size = len(sm_pieces[0])
            for body_pieces, body_size in bodies:
                pieces, size = _nest(b"\x12", body_pieces, body_size)  # ScopeMetrics.metrics = 2
                sm_pieces += pieces
                sm_size += size
            schema = string_field(b"\x1a", scope.schema_url or "", "scope schema_url")  # ScopeMetrics.schema_url = 3
            pieces, size = _nest(b"\x12", [*sm_pieces, schema], sm_size + len(schema))  # ResourceMetrics.scope_metrics = 2
            rm_pieces += pieces
            rm_size += size
        schema = string_field(b"\x1a", resource.schema_url or "", "resource schema_url")  # ResourceMetrics.schema_url = 3
        pieces, _ = _nest(b"\x0a", [*rm_pieces, schema], rm_size + len(schema))  # resource_metrics = 1
        request += pieces
    return request


def _number_metric(entry: Any, data_points: Any) -> tuple[list[Any], int]:
    """A gauge or sum ``Metric`` body around its points' bytes, as pieces and their size."""
    head = string_field(b"\x0a", entry.name, "metric name") + string_field(b"\x12", entry.description or "", "metric description")
    head += string_field(b"\x1a", entry.unit or "", "metric unit")
    if entry.kind == MetricKind.GAUGE:
        pieces, size = _nest(b"\x2a", [data_points], len(data_points))  # Metric.gauge = 5
    else:
        temporality = entry.temporality
        if type(temporality) is not int or not -(2**31) <= temporality < 2**31:
            raise ValueError(f"aggregation temporality={temporality!r} of metric {entry.name!r}: expected an int32")
        tail = (b"\x10" + varint(int(temporality)) if temporality else b"") + (b"\x18\x01" if entry.monotonic else b"")
        pieces, size = _nest(b"\x3a", [data_points, tail], len(data_points) + len(tail))  # Metric.sum = 7
    return [head, *pieces], len(head) + size
