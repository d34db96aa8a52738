"""The point batch's binary form: its tables as JSON, its points as columns grouped by series.

What :meth:`PointBatch.encode() <.batch.PointBatch.encode>` writes (the durable queue's payload)
and :meth:`PointBatch.decode() <.batch.PointBatch.decode>` reads, beside the JSON forms of
earlier releases (format versions 1 and 2, told apart by the first bytes). The points are sorted
by value kind, then by series (metric, resource, scope, attribute set), each series' points
staying in batch order, and held as :class:`~.chunk.SeriesChunk` columns: one chunk for the
float values, one for the integer values (so integers stay exact; a series that logs both is two
runs, one in each), and a table of runs saying which rows are which series. A chunk's ``row_id``
column holds each point's index in the batch: decoding puts every point back where it was.

Two chunks a batch rather than one a series: the chunk's fixed cost (its header, and above all
one zlib stream a column) is tens of microseconds, more than a 50-point series costs to encode
as JSON; measured by ``benchmarks/bench_queue_payload.py``.

Format version 3 (every integer little-endian)::

    offset      size   field
    0           4      magic b"ORMB"
    4           1      format version (3); a reader refuses a version above its own
    5           3      reserved, zero
    8           4      point count N (uint32)
    12          4      series run count S (uint32)
    16          4      head length H (uint32)
    20          4      CRC-32 (zlib.crc32) of bytes 0-19 followed by bytes 24 to the end
    24          H      head: UTF-8 JSON object (below)
    24+H        24*S   runs: metric, resource, scope, attributes (indexes into the head's
                       tables), value kind (1 float64, 2 int64, as in a chunk's header) and
                       row count (uint32 each); the float runs first, then the int runs
    24+H+24S    8      byte lengths of the float chunk and of the int chunk (uint32 each; 0:
                       no such chunk, when no run is of that kind)
    32+H+24S    ...    the float chunk, then the int chunk (:mod:`.chunk`'s format), back to back

The head holds what JSON format 2 holds but the points: ``id``, ``resources``, ``scopes``,
``metrics``, ``attributes``, and ``rest``, ``[[index, point], ...]``, the points no chunk holds
exactly (a value that is neither an int64 nor a float, such as an integer past 64 bits or a
bool; a time, step or epoch that is not an int64), written as JSON format 2 writes a point (so
such a point keeps all JSON keeps: all but a NaN value's payload bits). The
chunks' columns: ``time_unix_nano``, ``start_time_unix_nano``, ``step``/``step_missing``,
``epoch``/``epoch_missing``, ``value``, ``value_missing`` (a None value), ``row_id`` (the
point's index in the batch) and ``histogram`` and ``extra`` (the point's dicts as compact JSON
text, None where the point has none). A chunk's rows are its runs' rows, in run order; the
``row_id`` values and the ``rest`` indexes together are each of 0 to N - 1 exactly once.

Damage is never read as data: a wrong magic, a short buffer, a failed CRC, a head, run table or
chunk that does not parse, or row ids that do not cover the batch raise :class:`BatchFormatError`
naming what is wrong; a newer format version raises :class:`BatchVersionError`.

The chunks are written with :data:`QUEUE_CODEC`, zlib, which NumPy and the standard library
read: a queue must stay readable by whichever installation drains it, pcodec or not.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from .batch_columns import columns_of
from .chunk import ChunkCodec, SeriesChunk
from .point import Point

__all__ = ["FORMAT_VERSION", "MAGIC", "QUEUE_CODEC", "BatchFormatError", "BatchVersionError", "decode_points", "encode_points", "is_binary"]

MAGIC = b"ORMB"
FORMAT_VERSION = 3
#: The codec of the queue's chunks (see the module docstring for why not pcodec).
QUEUE_CODEC = ChunkCodec.ZLIB
_HEADER = struct.Struct("<4sB3sIIII")
_LENGTHS = struct.Struct("<II")
_RUN_FIELDS = 6
_FLOAT_KIND, _INT_KIND = 1, 2
_UINT32_MAX = 0xFFFFFFFF
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TEXT_SLICE = 256
_CHUNK_COLUMNS = ("start_time_unix_nano", "step", "step_missing", "epoch", "epoch_missing", "value_missing")


class BatchFormatError(ValueError):
    """Bytes that are not a readable point batch; the message says what is wrong with them."""


class BatchVersionError(BatchFormatError):
    """A point batch written in a newer format version than this package reads."""


def is_binary(payload: bytes | bytearray | memoryview | str) -> bool:
    """Whether ``payload`` is this module's form (by its magic), rather than JSON format 1 or 2."""
    return not isinstance(payload, str) and bytes(payload[:4]) == MAGIC


# -- encoding ------------------------------------------------------------------------------------


def encode_points(head: dict[str, Any], points: Sequence[Point], codec: ChunkCodec = QUEUE_CODEC) -> bytes:
    """The binary form of ``points`` and ``head`` (the batch's id and tables, as JSON format 2 writes them).

    Raises ``UnicodeEncodeError`` for a string that is not valid Unicode (a lone surrogate),
    wherever it is, so that the caller can replace such characters and try again.
    """
    count = len(points)
    if count > _UINT32_MAX:
        raise ValueError(f"a point batch holds at most {_UINT32_MAX} points, got {count}")
    index, columns = columns_of(points)
    rest: list[list[Any]] = []
    if len(index) < count:  # rare: points that only JSON holds exactly
        held = set(index.tolist())
        rest = [[i, p] for i, p in enumerate(points) if i not in held]
    head_bytes = _compact({**head, "rest": rest} if rest else head).encode("utf-8")
    runs, chunks = _runs_and_chunks(index, columns, codec)
    body = runs.astype("<u4").tobytes() + _LENGTHS.pack(*map(len, chunks)) + b"".join(chunks)
    start = _HEADER.pack(MAGIC, FORMAT_VERSION, b"\0\0\0", count, len(runs), len(head_bytes), 0)[:20]
    crc = zlib.crc32(body, zlib.crc32(head_bytes, zlib.crc32(start)))
    return start + struct.pack("<I", crc) + head_bytes + body


def _runs_and_chunks(index: np.ndarray, columns: dict[str, Any], codec: ChunkCodec) -> tuple[np.ndarray, tuple[bytes, bytes]]:
    """The run table (S x 6) and the float and int chunks (empty bytes for none) of the points at ``index``."""
    if not len(index):
        return np.zeros((0, _RUN_FIELDS), np.int64), (b"", b"")
    kind = np.where(columns["is_float"], _FLOAT_KIND, _INT_KIND)
    keys = [kind, columns["metric"], columns["resource"], columns["scope"], columns["attributes"]]
    # One stable sort: each series' points stay in batch order, so its row ids increase (and
    # cost next to nothing delta-coded). The keys as one number where it fits in 63 bits.
    sizes = [int(k.max()) + 1 for k in keys]
    if float(np.prod(sizes, dtype=np.float64)) < 2.0**62:
        combined = keys[0]
        for key, size in zip(keys[1:], sizes[1:], strict=True):
            combined = combined * size + key
        order = np.argsort(combined, kind="stable")
    else:
        order = np.lexsort(keys[::-1])
    sorted_keys = np.stack([k[order] for k in keys])
    starts = np.flatnonzero(np.concatenate(([True], (sorted_keys[:, 1:] != sorted_keys[:, :-1]).any(axis=0))))
    runs = np.empty((len(starts), _RUN_FIELDS), np.int64)
    runs[:, :4] = sorted_keys[1:, starts].T
    runs[:, 4] = sorted_keys[0, starts]
    runs[:, 5] = np.diff(np.append(starts, len(order)))
    # Sorted by kind first: the float rows, then the int rows.
    floats = int(columns["is_float"].sum())
    parts = (slice(0, floats), slice(floats, len(order)))
    ordered = {name: columns[name][order] for name in ("time_unix_nano", *_CHUNK_COLUMNS)}
    row_id = index[order]
    texts = {name: None if columns[name] is None else [columns[name][i] for i in order.tolist()] for name in ("histogram", "extra")}
    chunks = []
    for part, value in zip(parts, (columns["value_float"], columns["value_int"]), strict=True):
        if part.start == part.stop:
            chunks.append(b"")
            continue
        chunk = SeriesChunk(
            ordered["time_unix_nano"][part],
            value[order[part]],
            **{name: ordered[name][part] for name in _CHUNK_COLUMNS},
            row_id=row_id[part],
            **{name: None if text is None else text[part] for name, text in texts.items()},
        )
        chunks.append(chunk.encode(codec))
    return runs, (chunks[0], chunks[1])


# -- decoding ------------------------------------------------------------------------------------


def decode_points(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], list[Point]]:
    """The head (the JSON object of the module docstring, ``rest`` taken out) and the points of ``data``."""
    view = memoryview(data).cast("B")
    if len(view) < _HEADER.size:
        raise BatchFormatError(f"point batch of {len(view)} bytes: shorter than the {_HEADER.size}-byte header")
    magic, version, reserved, count, run_count, head_length, crc = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise BatchFormatError(f"not a binary point batch: magic {magic!r}, expected {MAGIC!r}")
    if version > FORMAT_VERSION:
        raise BatchVersionError(
            f"point batch format version {version}; this otel-recursive-metrics reads up to version {FORMAT_VERSION}:"
            " upgrade the package (in your clone: git pull, then pip install -e .)"
        )
    computed = zlib.crc32(view[_HEADER.size :], zlib.crc32(view[:20]))
    if computed != crc:
        raise BatchFormatError(f"point batch checksum mismatch (stored {crc:#010x}, computed {computed:#010x}): the payload is damaged")
    if version != FORMAT_VERSION or reserved != b"\0\0\0":
        raise BatchFormatError(f"point batch header: version {version}, reserved bytes {reserved!r}; expected 3 and zeros")
    try:
        return _decode(view, count, run_count, head_length)
    except BatchFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise BatchFormatError(f"a damaged point batch: {type(exc).__name__}: {exc}") from None


def _decode(view: memoryview, count: int, run_count: int, head_length: int) -> tuple[dict[str, Any], list[Point]]:
    runs_at = _HEADER.size + head_length
    chunks_at = runs_at + run_count * 4 * _RUN_FIELDS + _LENGTHS.size
    if chunks_at > len(view):
        raise BatchFormatError(f"point batch of {len(view)} bytes: too short for its head and {run_count} runs")
    head = json.loads(bytes(view[_HEADER.size : runs_at]))
    if not isinstance(head, dict):
        raise BatchFormatError(f"point batch head: a JSON {type(head).__name__}, expected an object")
    rest = head.pop("rest", [])
    if not isinstance(rest, list) or not all(isinstance(r, list) and len(r) == 2 and type(r[0]) is int for r in rest):
        raise BatchFormatError("point batch head: rest is not a list of [index, point]")
    runs = np.frombuffer(view, "<u4", run_count * _RUN_FIELDS, runs_at).reshape(-1, _RUN_FIELDS).astype(np.int64)
    lengths = _LENGTHS.unpack_from(view, chunks_at - _LENGTHS.size)
    if chunks_at + sum(lengths) != len(view):
        raise BatchFormatError(f"point batch: its chunks end at byte {chunks_at + sum(lengths)}, the payload has {len(view)}")
    chunks: list[SeriesChunk] = []
    start = chunks_at
    for kind, length in zip((_FLOAT_KIND, _INT_KIND), lengths, strict=True):
        of_kind = runs[:, 4] == kind
        rows = int(runs[of_kind, 5].sum())
        if length == 0:
            if rows:
                raise BatchFormatError(f"point batch: runs of {rows} rows of value kind {kind}, but no chunk of that kind")
            continue
        try:
            chunk = SeriesChunk.decode(view[start : start + length])
        except ValueError as exc:
            raise BatchFormatError(f"point batch: the {'float' if kind == _FLOAT_KIND else 'int'} chunk: {exc}") from None
        if len(chunk) != rows or chunk.value.dtype != (np.float64 if kind == _FLOAT_KIND else np.int64):
            raise BatchFormatError(f"point batch: a chunk of {len(chunk)} {chunk.value.dtype} rows, its runs say {rows} of kind {kind}")
        chunks.append(chunk)
        start += length
    if not np.array_equal(runs[:, 4], np.sort(runs[:, 4])) or not set(runs[:, 4].tolist()) <= {_FLOAT_KIND, _INT_KIND}:
        raise BatchFormatError(f"point batch: run value kinds {sorted(set(runs[:, 4].tolist()))}, expected 1 (float) runs then 2 (int)")
    row_id = np.concatenate([c.row_id for c in chunks]) if chunks else np.zeros(0, np.int64)
    places = np.concatenate([row_id, np.array([i for i, _ in rest], np.int64)])
    if len(places) != count or not _covers(places, count):
        raise BatchFormatError(f"point batch: {len(row_id)} row ids and {len(rest)} rest indexes are not each of 0 to {count - 1} once")
    points = _points(runs, chunks, row_id)
    if not rest:
        return head, points
    out: list[Point] = [[]] * count  # every place is filled: _covers said so
    for i, point in zip(np.sort(row_id).tolist(), points, strict=True):
        out[i] = point
    for i, point in rest:
        out[i] = point
    return head, out


def _covers(places: np.ndarray, count: int) -> bool:
    """Whether ``places`` (``count`` of them) holds each of 0 to ``count - 1``."""
    if count == 0:
        return True
    if places.min() < 0 or places.max() >= count:
        return False
    seen = np.zeros(count, bool)
    seen[places] = True
    return bool(seen.all())


def _points(runs: np.ndarray, chunks: list[SeriesChunk], row_id: np.ndarray) -> list[Point]:
    """The chunks' points as lists, ordered by row id."""
    if not chunks:
        return []
    order = np.argsort(row_id, kind="stable")

    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in chunks])[order]

    metric, resource, scope, attributes = (np.repeat(runs[:, k], runs[:, 5])[order].tolist() for k in range(4))
    fields = (
        resource,
        scope,
        metric,
        attributes,
        column("start_time_unix_nano").tolist(),
        column("time_unix_nano").tolist(),
        _values(chunks, order),
        _optional(column("step"), column("step_missing")),
        _optional(column("epoch"), column("epoch_missing")),
        _parsed(list(chain.from_iterable(c.histogram or (None,) * len(c) for c in chunks)), order),
        _parsed(list(chain.from_iterable(c.extra or (None,) * len(c) for c in chunks)), order),
    )
    return list(map(list, zip(*fields, strict=True)))


def _values(chunks: list[SeriesChunk], order: np.ndarray) -> list[Any]:
    """The value column as Python floats and ints (by the chunk's kind), None where missing."""
    missing = np.concatenate([c.value_missing for c in chunks])
    if len(chunks) == 1:
        if not missing.any():
            return chunks[0].value[order].tolist()  # type: ignore[no-any-return]
        array = chunks[0].value.astype(object)
    else:  # NumPy keeps each value of an object array as a Python int or float of its dtype
        array = np.concatenate([c.value.astype(object) for c in chunks])
    array[missing] = None
    return array[order].tolist()  # type: ignore[no-any-return]


def _optional(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    """An int64 column as Python ints, None where ``missing``."""
    if not missing.any():
        return values.tolist()  # type: ignore[no-any-return]
    if missing.all():
        return [None] * len(values)
    array = values.astype(object)
    array[missing] = None
    return array.tolist()  # type: ignore[no-any-return]


def _parsed(texts: list[str | None], order: np.ndarray) -> list[Any]:
    """A text column's JSON values, ordered by ``order``; None where there is no text.

    One ``json.loads`` for each slice of 256 texts: fewer calls than one a text, and none that
    holds the GIL for long (a slice of histograms takes about a millisecond).
    """
    nones = texts.count(None)
    if nones == len(texts):
        return texts
    ordered = [texts[i] for i in order.tolist()]
    present = [t for t in ordered if t is not None]
    values: list[Any] = []
    for start in range(0, len(present), _TEXT_SLICE):
        part = present[start : start + _TEXT_SLICE]
        parsed = json.loads("[" + ",".join(part) + "]")
        if len(parsed) != len(part):
            raise BatchFormatError(f"point batch: {len(part)} histogram or extra texts parse as {len(parsed)} JSON values")
        values += parsed
    if nones == 0:
        return values  # type: ignore[no-any-return]
    found = iter(values)
    return [None if t is None else next(found) for t in ordered]
