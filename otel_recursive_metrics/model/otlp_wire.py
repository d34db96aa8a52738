"""OTLP request bytes written straight from NumPy columns: no protobuf message per point.

:func:`encode_request_bytes` returns exactly the bytes of
``encode_request(batch).SerializeToString()`` (:mod:`.otlp`), at a fraction of the cost. What
makes it cheap:

- **A point's fields are fixed-width.** A ``NumberDataPoint`` is its attributes, then up to
  three 9-byte fields (a tag byte and 8 little-endian bytes: ``start_time_unix_nano`` and
  ``time_unix_nano`` as fixed64, the value as a double or an sfixed64), behind a tag and a
  length. NumPy writes those fields for every point at once into one row per point, and a mask
  over the rows drops the fields a point leaves out (a zero time, as protobuf omits it).
- **Attributes are encoded once per series,** not once per point: an attribute set's
  ``KeyValue`` bytes are cached by its canonical JSON text (the batch already interns it) and
  copied into place by one NumPy gather for the whole batch.
- **Lengths come from sums.** A nested message's length prefix needs its body's size first;
  every point's size is known from its columns, so a metric's size is a sum, and the few
  resources, scopes and metrics above the points are written in Python.

upb (the protobuf runtime) writes fields in field-number order, and so does this module, so the
output is the same bytes, not merely an equal message (``tests/test_otlp_wire.py`` checks both
on arbitrary batches). Step and epoch are not sent, as in :func:`.otlp.encode_request`; points
of store-only metrics are left out.

What is left to the protobuf classes (:func:`.otlp.encode_request`, the slow path): histogram
and exponential-histogram metrics are encoded by them one metric at a time and spliced in
(their points carry bucket lists, Python objects either way); and a batch with anything the
columns cannot hold as the slow path would (a value that is not an ``int`` or a ``float``, a
time that is not an ``int``, an integer past 64 bits, a table index out of range, an unknown
kind, text that is not UTF-8) is encoded by them whole, so it is refused with their error.
Without NumPy everything takes that path.

Reading the points of today's list-of-lists batch into columns (:func:`_number_columns`) is the
one step that still walks Python objects; a columnar batch hands the arrays over directly.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .batch import ATTRIBUTES, METRIC, RESOURCE, SCOPE, START_TIME, TIME, VALUE, PointBatch
from .kinds import MetricKind
from .otlp import encode_request
from .point import INT64_MAX, INT64_MIN
from .resource import STORE_ONLY_METRICS

try:
    import numpy as np
except ImportError:  # pragma: no cover - NumPy is a core dependency; the slow path still works without it
    np = None  # type: ignore[assignment]

__all__ = ["encode_request_bytes", "encode_request_columnar"]

_DOUBLE = struct.Struct("<d")
# A kind's code in the columns: number kinds are written here, histogram kinds by the protobuf classes.
_KIND_CODES = {MetricKind.GAUGE: 0, MetricKind.SUM: 1, MetricKind.HISTOGRAM: 2, MetricKind.EXPONENTIAL_HISTOGRAM: 3}
_NUMBER_KIND_CODES = 2  # codes below this are gauges and sums

# Attribute text -> the encoded KeyValue fields of a NumberDataPoint (field 7), kept across
# requests like the slow path's cache: the same series come back in every export. Bounded;
# only the encoding thread of each sink touches it, and a lost race merely rebuilds an entry.
_ATTRIBUTE_BYTES: dict[str, bytes] = {}
_ATTRIBUTE_BYTES_MAX = 50_000
# The widest attribute set (bytes) the row-per-point layout pads every point to; wider ones are scattered.
_PADDED_ATTRIBUTES_MAX = 256


# -- protobuf wire format: the few pieces a request needs ----------------------------------------


def _varint(value: int) -> bytes:
    """``value`` as a base-128 varint; a negative one as its 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the body's length, the body."""
    return tag + _varint(len(body)) + body


def _text(tag: bytes, value: Any, name: str) -> bytes:
    """A proto3 string field (left out when empty); ``TypeError`` naming ``name`` for a non-string."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r}: expected a string")
    return _field(tag, value.encode("utf-8")) if value else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` body, by the same rules as the slow path's ``_any_value`` (bool before int)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"attribute value={value}: beyond OTLP's 64-bit int_value")
        return b"\x18" + _varint(int(value))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, (list, tuple)):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, dict):
        return _field(b"\x32", _key_values(b"\x0a", value))
    return _field(b"\x0a", str(value).encode("utf-8"))


def _key_values(tag: bytes, attributes: dict[str, Any]) -> bytes:
    """Repeated ``KeyValue`` fields under ``tag``, in the mapping's order."""
    return b"".join(_field(tag, _text(b"\x0a", k, "attribute key") + _field(b"\x12", _any_value(v))) for k, v in attributes.items())


def _point_attributes(text: str) -> bytes:
    """The ``attributes`` fields of a NumberDataPoint for a canonical JSON attribute text, cached."""
    encoded = _ATTRIBUTE_BYTES.get(text)
    if encoded is None:
        if len(_ATTRIBUTE_BYTES) >= _ATTRIBUTE_BYTES_MAX:
            _ATTRIBUTE_BYTES.clear()
        encoded = _ATTRIBUTE_BYTES[text] = _key_values(b"\x3a", json.loads(text))
    return encoded


# -- the points as columns -----------------------------------------------------------------------


def _index_column(values: tuple[Any, ...], size: int) -> Any:
    """A table-index column as int64, or None where one is not an int in ``range(size)``.

    For a table of one entry (one resource, one scope: the usual batch) a count of zeros stands
    in for converting and checking the column: there, every index must be 0.
    """
    if size == 1 and values.count(0) == len(values):
        return np.zeros(len(values), dtype=np.int64)
    array = np.array(values)
    if array.dtype.kind != "i" or (len(array) and (array.min() < 0 or array.max() >= size)):
        return None
    return array.astype(np.int64, copy=False)


def _time_column(values: Any) -> Any:
    """Unix nanoseconds as uint64 (None is 0, as the slow path's ``or 0`` makes it); None where a
    time is not an int in OTLP's fixed64 range (upb refuses a bool there too)."""
    types = set(map(type, values))
    if type(None) in types:
        values = [0 if v is None else v for v in values]
        types.discard(type(None))
    if types - {int}:
        return None
    array = np.array(values)
    if array.dtype.kind == "i":
        return None if (array < 0).any() else array.view(np.uint64)  # a negative time: the slow path refuses it
    if array.dtype.kind == "f" and min(values) >= 0 and max(values) < 1 << 64:
        return np.array(values, dtype=np.uint64)  # ints on both sides of 2**63, which NumPy reads as float64
    return array if array.dtype.kind == "u" else None  # every time past 2**63, or beyond 64 bits


def _value_columns(values: Any) -> tuple[Any, Any] | None:
    """``(bits, is_int)``: each value's 8 wire bytes as uint64 (a double's bits, an int64's two's
    complement) and whether it is an ``as_int``; None for a value that is not an int or a float."""
    n = len(values)
    types = set(map(type, values))
    if types == {float}:
        return np.array(values, dtype=np.float64).view(np.uint64), np.zeros(n, dtype=bool)
    if types == {int}:
        return np.array(values, dtype=np.int64).view(np.uint64), np.ones(n, dtype=bool)
    if types != {int, float}:
        return None  # bools, None, text, NumPy scalars: the slow path's float() decides
    is_int = np.fromiter(map(type, values), dtype=object, count=n) == int  # noqa: E721 - elementwise, on arrays
    objects = np.asarray(values, dtype=object)
    bits = np.empty(n, dtype=np.uint64)
    bits[is_int] = objects[is_int].astype(np.int64).view(np.uint64)
    bits[~is_int] = objects[~is_int].astype(np.float64).view(np.uint64)
    return bits, is_int


def _number_records(attribute_blobs: list[bytes], attribute_ids: Any, start: Any, time: Any, bits: Any, is_int: Any) -> tuple[Any, Any]:
    """Every point's ``data_points`` field (a NumberDataPoint), back to back, and each one's length.

    ``attribute_ids`` index ``attribute_blobs`` (each the encoded attribute fields of a point).
    Each point is one record of a structured array, its fields in wire order: the tag and the
    length varint, start, time and value (a tag byte and 8 little-endian bytes each), then its
    attributes padded to the widest set. Where every point has every byte (one attribute size,
    one varint size, a start and a time on all or none), the array's memory is the answer; else
    a mask of the bytes each point has picks them out, in order.
    """
    n = len(time)
    blob_sizes = np.fromiter(map(len, attribute_blobs), dtype=np.int64, count=len(attribute_blobs))
    attribute_sizes = blob_sizes[attribute_ids]
    has_start, has_time = start != 0, time != 0
    body = attribute_sizes + 9 * has_start + 9 * has_time + 9
    if int(body.max()) >= 1 << 28:
        raise ValueError(f"a data point of {int(body.max())} bytes: beyond the 4-byte length this encoder writes")
    length_sizes = 1 + (body >= 1 << 7) + (body >= 1 << 14) + (body >= 1 << 21)
    sizes = 1 + length_sizes + body
    widest = int(blob_sizes.max())
    width = widest if widest <= _PADDED_ATTRIBUTES_MAX else 0  # wider sets are scattered in after
    longest = int(length_sizes.max())
    any_start, any_time = bool(has_start.any()), bool(has_time.any())
    layout: list[tuple[str, str, int]] = [("tag", "u1", 1), ("length", "u1", longest)]
    layout += [("start_tag", "u1", 1), ("start", "<u8", 1)] if any_start else []
    layout += [("time_tag", "u1", 1), ("time", "<u8", 1)] if any_time else []
    layout += [("value_tag", "u1", 1), ("value", "<u8", 1)]
    layout += [("attributes", f"V{width}", 1)] if width else []
    record = np.empty(n, dtype=np.dtype([(name, kind) if count == 1 else (name, kind, (count,)) for name, kind, count in layout]))
    record["tag"] = 0x0A  # data_points = 1, length-delimited
    lengths = record["length"].reshape(n, longest)
    for k in range(longest):  # the body's length as a varint
        lengths[:, k] = ((body >> (7 * k)) & 0x7F) | ((body >= 1 << (7 * (k + 1))) << 7)
    if any_start:
        record["start_tag"], record["start"] = 0x11, start  # start_time_unix_nano = 2, fixed64
    if any_time:
        record["time_tag"], record["time"] = 0x19, time  # time_unix_nano = 3, fixed64
    record["value_tag"] = np.where(is_int, 0x31, 0x21)  # as_int = 6 (sfixed64), as_double = 4 (double); set even when 0
    record["value"] = bits
    if width:  # attributes = 7, last: each set's bytes from a table of the sets, padded
        record["attributes"] = np.frombuffer(b"".join([b.ljust(width, b"\0") for b in attribute_blobs]), dtype=f"V{width}")[attribute_ids]
    rows = record.view(np.uint8).reshape(n, record.itemsize)
    uniform = (
        bool((length_sizes == longest).all())
        and bool((has_start == any_start).all())
        and bool((has_time == any_time).all())
        and bool((attribute_sizes == width).all())
    )
    if uniform:
        return rows.reshape(-1), sizes
    keep = np.empty((n, record.itemsize), dtype=bool)
    keep[:, 0] = True
    keep[:, 1 : 1 + longest] = np.arange(longest) < length_sizes[:, None]
    column = 1 + longest
    for present, wanted in ((has_start, any_start), (has_time, any_time)):
        if wanted:
            keep[:, column : column + 9] = present[:, None]
            column += 9
    keep[:, column : column + 9] = True
    if width:
        masks = np.frombuffer(b"".join([b"\1" * len(b) + bytes(width - len(b)) for b in attribute_blobs]), dtype=f"V{width}")
        keep[:, column + 9 :] = masks[attribute_ids].view(bool).reshape(n, width)
    fixed = rows[keep]
    if width or not widest:
        return fixed, sizes
    # Attribute sets too wide to pad: the fixed fields and the attributes are written apart,
    # then scattered into place with one index per byte.
    fixed_sizes = sizes - attribute_sizes
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    record_starts = np.cumsum(sizes) - sizes
    out[np.repeat(record_starts - (np.cumsum(fixed_sizes) - fixed_sizes), fixed_sizes) + np.arange(len(fixed))] = fixed
    blob = np.frombuffer(b"".join(attribute_blobs), dtype=np.uint8)
    before = np.cumsum(attribute_sizes) - attribute_sizes
    along = np.arange(int(attribute_sizes.sum()))
    source = np.repeat((np.cumsum(blob_sizes) - blob_sizes)[attribute_ids] - before, attribute_sizes) + along
    out[np.repeat(record_starts + fixed_sizes - before, attribute_sizes) + along] = blob[source]
    return out, sizes


# -- the request --------------------------------------------------------------------------------


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


def _number_part(batch: PointBatch, columns: list[tuple[Any, ...]], chosen: Any, attribute_ids: Any) -> tuple[memoryview, Any] | None:
    """The gauge and sum points at ``chosen`` (indexes into ``batch.points``, in request order,
    with their attribute-set indexes) as their ``data_points`` fields back to back, and each
    one's length; None where the columns cannot hold a field as the slow path would."""
    whole = len(chosen) == len(batch.points)  # every point, as on the common path: whole columns, then reordered

    def pick(column: tuple[Any, ...]) -> Any:
        return column if whole else np.asarray(column, dtype=object)[chosen].tolist()

    start, time, value = _time_column(pick(columns[START_TIME])), _time_column(pick(columns[TIME])), _value_columns(pick(columns[VALUE]))
    if start is None or time is None or value is None:
        return None
    bits, is_int = value
    if whole:
        start, time, bits, is_int = start[chosen], time[chosen], bits[chosen], is_int[chosen]
    used, blob_ids = np.unique(attribute_ids, return_inverse=True)
    texts = batch.attributes
    blobs = [_ATTRIBUTE_BYTES.get(texts[i]) or _point_attributes(texts[i]) for i in used.tolist()]
    records, sizes = _number_records(blobs, blob_ids.reshape(-1), start, time, bits, is_int)
    return memoryview(records), sizes


def _nest(tag: bytes, pieces: list[Any], size: int) -> tuple[list[Any], int]:
    """A length-delimited field around ``pieces`` (``size`` bytes in all), still as pieces."""
    head = tag + _varint(size)
    return [head, *pieces], len(head) + size


def encode_request_columnar(batch: PointBatch) -> tuple[bytes, int] | None:
    """What :func:`encode_request_bytes` returns, from the columns; None for a batch they cannot
    hold as the slow path would (see the module docstring). Raises nothing of its own for a
    batch OTLP cannot carry: it returns None, and the slow path raises."""
    points, metrics = batch.points, batch.metrics
    if not points:
        return b"", 0
    columns = list(zip(*points, strict=True))
    if len(columns) <= VALUE:
        return None
    index = [_index_column(columns[k], len(table)) for k, table in ((RESOURCE, batch.resources), (SCOPE, batch.scopes), (METRIC, metrics))]
    attribute_ids = _index_column(columns[ATTRIBUTES], len(batch.attributes))
    if attribute_ids is None or any(column is None for column in index):
        return None
    resource_ids, scope_ids, metric_ids = index
    kind_codes = np.array([_KIND_CODES.get(m.kind, -1) if m.name not in STORE_ONLY_METRICS else -2 for m in metrics], dtype=np.int64)
    point_kinds = kind_codes[metric_ids]
    kept = np.flatnonzero(point_kinds != -2)  # run events: kept in the store, never sent
    if len(kept) < len(points):
        resource_ids, scope_ids, metric_ids, attribute_ids, point_kinds = (
            c[kept] for c in (resource_ids, scope_ids, metric_ids, attribute_ids, point_kinds)
        )
    if not len(kept):
        return b"", 0
    if (point_kinds < 0).any():
        return None  # an unknown kind: the slow path names it

    # Nodes (resource, scope, metric) in the order the slow path creates them: by first point.
    n_scopes, n_metrics = len(batch.scopes), len(metrics)
    node_keys, first, node_of_point = np.unique(
        (resource_ids * n_scopes + scope_ids) * n_metrics + metric_ids, return_index=True, return_inverse=True
    )
    created = np.argsort(first, kind="stable")
    rank = np.empty_like(created)
    rank[created] = np.arange(len(created))
    point_rank = rank[node_of_point.reshape(-1)]
    order = np.argsort(point_rank, kind="stable")  # the request's point order: by node, then as given
    node_counts = np.bincount(point_rank, minlength=len(created))
    node_starts = np.cumsum(node_counts) - node_counts
    node_kinds = kind_codes[node_keys[created] % n_metrics]

    is_number = point_kinds[order] < _NUMBER_KIND_CODES
    number_points = kept[order[is_number]]  # indexes into batch.points, in request order
    records, byte_ranges = memoryview(b""), [(0, 0)] * len(created)
    if len(number_points):
        part = _number_part(batch, columns, number_points, attribute_ids[order[is_number]])
        if part is None:
            return None
        records, sizes = part
        # Each number node's bytes: its points are consecutive records (nodes hold one kind).
        ends = np.concatenate(([0], np.cumsum(sizes)))[np.cumsum(np.where(node_kinds < _NUMBER_KIND_CODES, node_counts, 0))]
        byte_ranges = list(zip(np.concatenate(([0], ends[:-1])).tolist(), ends.tolist(), strict=True))

    # The tree above the points, in creation order: {resource: {scope: [(metric, node rank)]}}.
    tree: dict[int, dict[int, list[tuple[int, int]]]] = {}
    node_info = (node_keys[created]).tolist()
    for node_rank, key in enumerate(node_info):
        resource_scope, metric = divmod(key, n_metrics)
        resource, scope = divmod(resource_scope, n_scopes)
        tree.setdefault(resource, {}).setdefault(scope, []).append((metric, node_rank))

    counts, starts = node_counts.tolist(), node_starts.tolist()
    request: list[Any] = []
    request_size = 0
    for resource_index, scopes in tree.items():
        resource = batch.resources[resource_index]
        rm_pieces: list[Any] = [_field(b"\x0a", _key_values(b"\x0a", resource.attributes))]
        rm_size = len(rm_pieces[0])
        for scope_index, nodes in scopes.items():
            scope = batch.scopes[scope_index]
            scope_body = _text(b"\x0a", scope.name, "scope name") + _text(b"\x12", scope.version or "", "scope version")
            scope_body += _key_values(b"\x1a", scope.attributes)
            sm_pieces: list[Any] = [_field(b"\x0a", scope_body)]
            sm_size = len(sm_pieces[0])
            for metric_index, node_rank in nodes:
                entry = metrics[metric_index]
                first_point, count = starts[node_rank], counts[node_rank]
                if entry.kind in (MetricKind.GAUGE, MetricKind.SUM):
                    low, high = byte_ranges[node_rank]
                    pieces, size = _number_metric(entry, records[low:high])
                else:
                    chosen = [points[i] for i in kept[order[first_point : first_point + count]].tolist()]
                    sub = PointBatch(batch.resources, batch.scopes, metrics, chosen, batch.id, batch.attributes)
                    encoded = encode_request(sub).resource_metrics[0].scope_metrics[0].metrics[0].SerializeToString()
                    pieces, size = [encoded], len(encoded)
                pieces, size = _nest(b"\x12", pieces, size)  # ScopeMetrics.metrics = 2
                sm_pieces += pieces
                sm_size += size
            schema = _text(b"\x1a", scope.schema_url or "", "scope schema_url")
            pieces, size = _nest(b"\x12", [*sm_pieces, schema], sm_size + len(schema))  # ResourceMetrics.scope_metrics = 2
            rm_pieces += pieces
            rm_size += size
        schema = _text(b"\x1a", resource.schema_url or "", "resource schema_url")
        pieces, size = _nest(b"\x0a", [*rm_pieces, schema], rm_size + len(schema))  # resource_metrics = 1
        request += pieces
        request_size += size
    return b"".join(request), len(kept)


def _number_metric(entry: Any, data_points: Any) -> tuple[list[Any], int]:
    """A gauge or sum ``Metric`` body around its points' bytes, as pieces and their size."""
    head = _text(b"\x0a", entry.name, "metric name") + _text(b"\x12", entry.description or "", "metric description")
    head += _text(b"\x1a", entry.unit or "", "metric unit")
    if entry.kind == MetricKind.GAUGE:
        pieces, size = _nest(b"\x2a", [data_points], len(data_points))  # Metric.gauge = 5
    else:
        temporality = entry.temporality
        if type(temporality) is not int or not -(2**31) <= temporality < 2**31:
            raise ValueError(f"aggregation temporality={temporality!r} of metric {entry.name!r}: expected an int32")
        tail = (b"\x10" + _varint(int(temporality)) if temporality else b"") + (b"\x18\x01" if entry.monotonic else b"")
        pieces, size = _nest(b"\x3a", [data_points, tail], len(data_points) + len(tail))  # Metric.sum = 7
    return [head, *pieces], len(head) + size
