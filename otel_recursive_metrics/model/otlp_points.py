"""A batch's gauge and sum points as OTLP ``NumberDataPoint`` bytes, written from NumPy columns.

The request around them is :mod:`.otlp_wire`'s; this module holds what makes the points cheap:

- **A point's fields are fixed-width.** A ``NumberDataPoint`` is a tag and a length varint, then
  up to three 9-byte fields (a tag byte and 8 little-endian bytes: ``start_time_unix_nano`` and
  ``time_unix_nano`` as fixed64, the value as a double or an sfixed64), then its attributes.
  :func:`number_data_points` makes one record of a NumPy structured array per point, its fields
  in that order, and writes each field for every point at once. Where all points have the same
  layout the array's memory is the bytes; else a mask of the bytes each point has picks them out.
- **Attributes are encoded once per series,** not once per point: an attribute set's
  ``KeyValue`` bytes are cached by its canonical JSON text (:func:`point_attributes`; the batch
  interns that text already) and copied into the records by one gather for the whole batch.
- **Nothing is a protobuf object.** The few wire-format pieces a request needs (varints,
  length-delimited fields, strings, ``AnyValue``) are written here, in field-number order as upb
  writes them, so the bytes equal the protobuf classes' bytes, not merely an equal message.

:func:`number_points` reads today's list-of-lists batch into those columns; it is the one step
that still walks a Python object per point (the ``zip`` of the points), and the one a columnar
batch removes: it hands its arrays to :func:`number_data_points` directly.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .batch import START_TIME, TIME, VALUE, PointBatch
from .point import INT64_MAX, INT64_MIN

try:
    import numpy as np
except ImportError:  # pragma: no cover - without NumPy the request takes the protobuf classes' path
    np = None  # type: ignore[assignment]

__all__ = [
    "index_column",
    "key_values",
    "length_delimited",
    "number_data_points",
    "number_points",
    "point_attributes",
    "string_field",
    "varint",
]

_DOUBLE = struct.Struct("<d")

# Attribute text -> the encoded KeyValue fields of a NumberDataPoint (field 7), kept across
# requests like the slow path's cache: the same series come back in every export. Bounded;
# only the encoding thread of each sink touches it, and a lost race merely rebuilds an entry.
_ATTRIBUTE_BYTES: dict[str, bytes] = {}
_ATTRIBUTE_BYTES_MAX = 50_000
# The widest attribute set (bytes) a record pads every point to; wider ones are scattered in.
_PADDED_ATTRIBUTES_MAX = 256
# Points a structured array holds at once; a larger batch is written in slices of this many.
_SLICE_POINTS = 16_384


# -- protobuf wire format: the few pieces a request needs ----------------------------------------


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint; a negative one as its 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the body's length, the body."""
    return tag + varint(len(body)) + body


def string_field(tag: bytes, value: Any, name: str) -> bytes:
    """A proto3 string field (left out when empty); ``TypeError`` naming ``name`` for a non-string."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r}: expected a string")
    return length_delimited(tag, value.encode("utf-8")) if value else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` body, by the same rules as the slow path's ``_any_value`` (bool before int)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"attribute value={value}: beyond OTLP's 64-bit int_value")
        return b"\x18" + varint(int(value))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, str):
        return length_delimited(b"\x0a", value.encode("utf-8"))
    if isinstance(value, (list, tuple)):
        return length_delimited(b"\x2a", b"".join(length_delimited(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, dict):
        return length_delimited(b"\x32", key_values(b"\x0a", value))
    return length_delimited(b"\x0a", str(value).encode("utf-8"))


def key_values(tag: bytes, attributes: dict[str, Any]) -> bytes:
    """Repeated ``KeyValue`` fields under ``tag``, in the mapping's order."""
    return b"".join(
        length_delimited(tag, string_field(b"\x0a", k, "attribute key") + length_delimited(b"\x12", _any_value(v)))
        for k, v in attributes.items()
    )


def point_attributes(text: str) -> bytes:
    """The ``attributes`` fields of a NumberDataPoint for a canonical JSON attribute text, cached."""
    encoded = _ATTRIBUTE_BYTES.get(text)
    if encoded is None:
        if len(_ATTRIBUTE_BYTES) >= _ATTRIBUTE_BYTES_MAX:
            _ATTRIBUTE_BYTES.clear()
        encoded = _ATTRIBUTE_BYTES[text] = key_values(b"\x3a", json.loads(text))
    return encoded


# -- the points as columns -----------------------------------------------------------------------


def index_column(values: tuple[Any, ...], size: int) -> Any:
    """A table-index column as int64, or None where one is not an int in ``range(size)``.

    For a table of one entry (one resource, one scope: the usual batch) a count of zeros stands
    in for converting and checking the column, where every index must be 0. (The count would take
    a float 0.0 too, which the slow path refuses; no batch holds one: the builder and the queue's
    decoder write ints.)
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


def number_data_points(attribute_blobs: list[bytes], attribute_ids: Any, start: Any, time: Any, bits: Any, is_int: Any) -> tuple[Any, Any]:
    """Every point's ``data_points`` field (a NumberDataPoint), back to back, and each one's length.

    ``attribute_ids`` index ``attribute_blobs`` (each the encoded attribute fields of a point).
    Each point is one record of a structured array, its fields in wire order: the tag and the
    length varint, start, time and value (a tag byte and 8 little-endian bytes each), then its
    attributes padded to the widest set. Where every point has every byte (one attribute size,
    one varint size, a start and a time on all or none), the array's memory is the answer; else
    a mask of the bytes each point has picks them out, in order.
    """
    n = len(time)
    if n > _SLICE_POINTS:  # bounds the rows and the mask (up to 2 x 288 bytes a point) for a large batch
        parts = [
            number_data_points(attribute_blobs, *(c[i : i + _SLICE_POINTS] for c in (attribute_ids, start, time, bits, is_int)))
            for i in range(0, n, _SLICE_POINTS)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
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


def number_points(batch: PointBatch, columns: list[tuple[Any, ...]], chosen: Any, attribute_ids: Any) -> tuple[memoryview, Any] | None:
    """The gauge and sum points at ``chosen`` as their ``data_points`` fields back to back, and each one's length.

    ``columns`` are the batch's point fields (``list(zip(*batch.points))``); ``chosen`` indexes the
    points to write, in request order, and ``attribute_ids`` their attribute sets. None where a
    time or a value is not what the columns hold as the slow path would (see :mod:`.otlp_wire`).
    """
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
    blobs = [_ATTRIBUTE_BYTES.get(texts[i]) or point_attributes(texts[i]) for i in used.tolist()]
    records, sizes = number_data_points(blobs, blob_ids.reshape(-1), start, time, bits, is_int)
    return memoryview(records), sizes
