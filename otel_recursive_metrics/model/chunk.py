"""Per-series columnar chunks: a series' points as NumPy columns, and their compact binary form.

A :class:`SeriesChunk` holds the points of one series (one metric, resource, scope and
attribute set) as equal-length columns::

    time_unix_nano        int64    when the value was recorded
    start_time_unix_nano  int64    start of a sum's or histogram's interval; 0 for gauges
    step, epoch           int64    from TrainingMetrics.log; with step_missing / epoch_missing,
                                   bool, True where the point has none (its step means nothing)
    value                 float64, or int64 for an integer series (kept exact to the last bit)
    value_missing         bool, True where the point has no value (a histogram's); its value is 0
    row_id                int64, the point's place in its store (increasing as points are written)
    histogram, extra      texts (JSON) or None: a histogram point's buckets, a record's other fields;
                          the attribute is None when no point of the chunk has one

``encode()`` packs it into bytes, ``SeriesChunk.decode()`` reads them back bit for bit (NaN
payloads, ``-0.0`` and subnormals included); ``stats()`` gives what a chunk index keeps, and
:func:`concat` joins chunks for compaction. A chunk takes its arrays without copying and makes
them read-only, so sinks can share it between threads: don't modify an array once handed over.

Binary format, version 1 (every integer little-endian)::

    offset  size  field
    0       4     magic b"ORMC"
    4       1     format version (1); a reader refuses a version above its own
    5       1     codec id: 0 raw, 1 zlib, 2 pcodec (below)
    6       1     value kind: 1 float64, 2 int64
    7       1     column count C
    8       4     row count N (uint32)
    12      4     CRC-32 (zlib.crc32) of bytes 0-11 followed by bytes 16 to the end
    16      5*C   column descriptors: column id (uint8), body length in bytes (uint32)
    16+5C   ...   the column bodies, in descriptor order, back to back to the end

Column ids: 1 ``time_unix_nano``, 2 ``start_time_unix_nano``, 3 ``step``, 4 ``step_missing``,
5 ``epoch``, 6 ``epoch_missing``, 7 ``value``, 8 ``value_missing``, 9 ``row_id``, 10
``histogram``, 11 ``extra``; each at most once, in increasing order. A chunk of one or more rows
always has columns 1 and 7; any other column left out is all zeros (texts: all None), except a
mask: all True if its step (epoch) column is left out too (no point has one), else all False
(``value_missing``: all False). A chunk of no rows has no columns. Each body decodes to N values:

- codec 0 (raw): int64 and float64 columns are N little-endian 8-byte values;
- codec 1 (zlib): int64 columns are first delta-coded (the first value, then each value minus
  the one before, wrapping modulo 2**64, so a cumulative sum modulo 2**64 restores them); every
  column's little-endian bytes are then shuffled (byte 0 of every value, then byte 1, ..., then
  byte 7: 8 rows of N bytes) and compressed with zlib (RFC 1950; any level);
- codec 2 (pcodec): int64 and float64 columns are pcodec's standalone format (pcodec >= 1.0,
  ``pcodec.standalone.simple_decompress``; its dtype must match the column's);
- masks, in every codec: ``numpy.packbits(mask, bitorder="little")`` (bit i of byte i // 8 is
  row i; ceil(N / 8) bytes), then zlib in codecs 1 and 2 (raw in codec 0);
- texts, in every codec: N uint32 byte lengths (0xFFFFFFFF for None), then the texts' UTF-8
  bytes back to back; then zlib in codecs 1 and 2 (raw in codec 0).

Damage is never read as data: a wrong magic, a short or long buffer, a failed CRC, an unknown
codec, kind or column, or a body that does not decode to N values raises :class:`ChunkError`
naming what is wrong; a newer format version raises :class:`ChunkVersionError`.

Codecs (measured by ``benchmarks/bench_codecs.py``): :func:`default_codec` is pcodec where its
wheel is installed (``pip install -e '.[chunks]'`` in the clone), else zlib, which needs only
NumPy and the standard library (larger, slower to decode), with one log line saying so. Reading
a pcodec chunk needs pcodec; without it the error says how to install it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunk_codec import INSTALL_HINT as _INSTALL_HINT
from .chunk_codec import (
    ChunkCodec,
    ChunkError,
    ChunkVersionError,
    available_codecs,
    default_codec,
    pack,
    pack_text,
    pcodec_module,
    unpack,
    unpack_text,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ChunkCodec",
    "ChunkError",
    "ChunkStats",
    "ChunkVersionError",
    "SeriesChunk",
    "available_codecs",
    "concat",
    "default_codec",
]

MAGIC = b"ORMC"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBBBII")
_DESCRIPTOR = struct.Struct("<BI")

# Column id -> (attribute, dtype); bool columns are masks, "text" columns tuples of str or None.
_COLUMNS: dict[int, tuple[str, str]] = {
    1: ("time_unix_nano", "int64"),
    2: ("start_time_unix_nano", "int64"),
    3: ("step", "int64"),
    4: ("step_missing", "bool"),
    5: ("epoch", "int64"),
    6: ("epoch_missing", "bool"),
    7: ("value", ""),  # the value kind says which
    8: ("value_missing", "bool"),
    9: ("row_id", "int64"),
    10: ("histogram", "text"),
    11: ("extra", "text"),
}
_VALUE_KINDS = {1: "float64", 2: "int64"}
_VALUE_KIND_IDS = {np.dtype(dtype): kind for kind, dtype in _VALUE_KINDS.items()}
_CODEC_IDS = frozenset(ChunkCodec)
# Native dtypes taken as they are (compared as objects: ``dtype.name`` costs microseconds).
_EXACT = {"int64": (np.dtype(np.int64),), "bool": (np.dtype(np.bool_),), "value": (np.dtype(np.int64), np.dtype(np.float64))}


@dataclass(frozen=True)
class ChunkStats:
    """What a chunk index keeps of a chunk: its size and ranges (None where there is nothing to range over)."""

    points: int
    min_time_unix_nano: int | None
    max_time_unix_nano: int | None
    min_step: int | None  # over the points that have a step
    max_step: int | None
    min_value: float | int | None  # NaN ignored; None if every value is NaN
    max_value: float | int | None


def _range(array: np.ndarray) -> tuple[Any, Any]:
    """The smallest and largest value as Python numbers, or (None, None) for no values."""
    return (array.min().item(), array.max().item()) if len(array) else (None, None)


def _column(name: str, data: Any, dtype: str, rows: int | None) -> np.ndarray:
    """``data`` as a read-only 1-D array of ``dtype`` ("value": int64 or float64), not copied if it is one.

    Refused (``ValueError`` naming the column): integers beyond int64 or floats for an int64
    column, and None. Integer values beyond int64 become floats, as the batch keeps them.
    """
    if isinstance(data, np.ndarray) and data.dtype in _EXACT[dtype]:
        array = data  # the usual case, cheaply: what the batch and the decoder hand over
    else:
        try:
            source = np.asarray(data)
            if dtype == "value":  # integers stay exact as int64; past int64 (as in the batch) and all else: float64
                wide = source.dtype.kind == "u" and source.size and source.max() > np.iinfo(np.int64).max
                dtype = "int64" if source.dtype.kind in "iu" and not wide else "float64"
            if dtype == "int64" and source.size and source.dtype.kind not in "iuO":
                raise TypeError(f"expected integers, got {source.dtype}")
            if dtype == "float64" and source.dtype.kind not in "biufO":
                raise TypeError(f"expected real numbers, got {source.dtype}")
            if source.dtype.kind == "u" and source.size and source.max() > np.iinfo(np.int64).max:
                raise OverflowError(f"{source.max()} is beyond int64")
            if source.dtype.kind == "O" and any(v is None for v in source.flat):  # NumPy would make it NaN
                raise TypeError("None is not a number")
            array = source.astype(dtype, copy=False)
        except (OverflowError, TypeError, ValueError) as exc:
            raise ValueError(f"SeriesChunk {name}: cannot be held as {dtype}: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"SeriesChunk {name}: expected a 1-D array, got shape {array.shape}")
    if rows is not None and len(array) != rows:
        raise ValueError(f"SeriesChunk {name}: {len(array)} values, but time_unix_nano has {rows}")
    view: np.ndarray = array.view()
    view.flags.writeable = False
    return view


class SeriesChunk:
    """The points of one series as NumPy columns (see the module's docstring for each column).

    ``value``'s dtype is the value kind: an array of integers stays int64 (exact), anything
    else becomes float64. ``step=None`` means no point has a step (``step_missing`` all True);
    a given ``step`` with ``step_missing=None`` means every point has one. Likewise ``epoch``.

    >>> chunk = SeriesChunk([10, 20], [0.5, 0.25], step=[1, 2])
    >>> SeriesChunk.decode(chunk.encode()) == chunk
    True
    """

    __slots__ = (
        "epoch",
        "epoch_missing",
        "extra",
        "histogram",
        "row_id",
        "start_time_unix_nano",
        "step",
        "step_missing",
        "time_unix_nano",
        "value",
        "value_missing",
    )

    def __init__(
        self,
        time_unix_nano: Any,
        value: Any,
        *,
        start_time_unix_nano: Any = None,
        step: Any = None,
        step_missing: Any = None,
        epoch: Any = None,
        epoch_missing: Any = None,
        value_missing: Any = None,
        row_id: Any = None,
        histogram: Sequence[str | None] | None = None,
        extra: Sequence[str | None] | None = None,
    ) -> None:
        self.time_unix_nano = _column("time_unix_nano", time_unix_nano, "int64", None)
        rows = len(self.time_unix_nano)
        self.value = _column("value", value, "value", rows)

        def optional(name: str, data: Any, dtype: str, default: bool) -> np.ndarray:
            if data is None:
                return _column(name, np.full(rows, default, dtype=dtype), dtype, rows)
            return _column(name, data, dtype, rows)

        self.start_time_unix_nano = optional("start_time_unix_nano", start_time_unix_nano, "int64", False)
        self.step = optional("step", step, "int64", False)
        self.step_missing = optional("step_missing", step_missing, "bool", step is None)
        self.epoch = optional("epoch", epoch, "int64", False)
        self.epoch_missing = optional("epoch_missing", epoch_missing, "bool", epoch is None)
        self.value_missing = optional("value_missing", value_missing, "bool", False)
        self.row_id = optional("row_id", row_id, "int64", False)
        self.histogram = _texts("histogram", histogram, rows)
        self.extra = _texts("extra", extra, rows)

    def __len__(self) -> int:
        return len(self.time_unix_nano)

    def __repr__(self) -> str:
        return f"SeriesChunk(points={len(self)}, value={self.value.dtype})"

    def __eq__(self, other: object) -> bool:
        """Bit for bit: NaNs with the same payload are equal, ``0.0`` and ``-0.0`` are not."""
        if not isinstance(other, SeriesChunk):
            return NotImplemented
        if self.histogram != other.histogram or self.extra != other.extra:
            return False
        pairs = [(getattr(self, name), getattr(other, name)) for name in self.__slots__ if name not in _TEXT_NAMES]
        return all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]

    def stats(self) -> ChunkStats:
        """Row count and min/max of time, step (points with a step) and value (NaN ignored)."""
        values = self.value[~self.value_missing] if self.value_missing.any() else self.value
        values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
        return ChunkStats(len(self), *_range(self.time_unix_nano), *_range(self.step[~self.step_missing]), *_range(values))

    def take(self, rows: Any) -> SeriesChunk:
        """The points at ``rows`` (indices, or a boolean mask), in that order, as a new chunk."""
        picked: dict[str, Any] = {name: getattr(self, name)[rows] for name in _ARRAY_NAMES}
        if self.histogram is not None or self.extra is not None:
            index = np.arange(len(self))[rows].tolist()
            for name in _TEXT_NAMES:
                texts = getattr(self, name)
                picked[name] = None if texts is None else [texts[i] for i in index]
        return SeriesChunk(**picked)

    def with_row_ids(self, first: int) -> SeriesChunk:
        """The same points numbered ``first``, ``first + 1``, ... in their ``row_id`` column."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        fields["row_id"] = np.arange(first, first + len(self), dtype=np.int64)
        return SeriesChunk(**fields)

    def encode(self, codec: ChunkCodec | None = None) -> bytes:
        """The chunk in the binary format above, compressed with ``codec`` (default: :func:`default_codec`)."""
        codec = default_codec() if codec is None else ChunkCodec(codec)
        if codec is ChunkCodec.PCODEC and pcodec_module() is None:
            raise ChunkError(f"cannot encode with codec pcodec: pcodec is not installed ({_INSTALL_HINT})")
        rows = len(self)  # at most 2**32 - 1: struct refuses more
        # Columns at their default are left out; time and value are always there (if any rows are).
        left_out = set(_COLUMNS) if rows == 0 else set() if self.start_time_unix_nano.any() else {2}
        for column_id, array in ((8, self.value_missing), (9, self.row_id)):
            if not array.any():
                left_out.add(column_id)
        for column_id, texts in ((10, self.histogram), (11, self.extra)):
            if texts is None:
                left_out.add(column_id)
        for number_id, number, missing in ((3, self.step, self.step_missing), (5, self.epoch, self.epoch_missing)):
            if missing.all() and not number.any():
                left_out |= {number_id, number_id + 1}  # no point has one
            elif not missing.any():
                left_out.add(number_id + 1)
        descriptors, bodies = [], []
        for column_id, (name, _) in _COLUMNS.items():
            if column_id not in left_out:
                data = getattr(self, name)
                bodies.append(pack_text(data, codec) if name in _TEXT_NAMES else pack(data, codec))
                descriptors.append(_DESCRIPTOR.pack(column_id, len(bodies[-1])))
        rest = b"".join(descriptors) + b"".join(bodies)
        head = _HEADER.pack(MAGIC, FORMAT_VERSION, codec, _VALUE_KIND_IDS[self.value.dtype], len(bodies), rows, 0)[:12]
        crc = zlib.crc32(rest, zlib.crc32(head))
        return head + struct.pack("<I", crc) + rest

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> SeriesChunk:
        """The chunk ``data`` holds; :class:`ChunkError` if it is damaged, :class:`ChunkVersionError` if newer."""
        view = memoryview(data).cast("B")
        if len(view) < _HEADER.size:
            raise ChunkError(f"chunk of {len(view)} bytes: shorter than the {_HEADER.size}-byte header")
        magic, version, codec_id, kind_id, column_count, rows, crc = _HEADER.unpack_from(view)
        if magic != MAGIC:
            raise ChunkError(f"not a chunk: magic {magic!r}, expected {MAGIC!r}")
        if version > FORMAT_VERSION:
            raise ChunkVersionError(
                f"chunk format version {version}; this otel-recursive-metrics reads up to version {FORMAT_VERSION}:"
                " upgrade the package (in your clone: git pull, then pip install -e .)"
            )
        if version < 1:
            raise ChunkError(f"chunk format version {version}: there is no such version (damaged header)")
        computed = zlib.crc32(view[_HEADER.size :], zlib.crc32(view[:12]))
        if computed != crc:
            raise ChunkError(f"chunk checksum mismatch (stored {crc:#010x}, computed {computed:#010x}): the chunk is damaged")
        if codec_id not in _CODEC_IDS:
            raise ChunkError(f"chunk codec id {codec_id}: unknown (known: 0 raw, 1 zlib, 2 pcodec)")
        if kind_id not in _VALUE_KINDS:
            raise ChunkError(f"chunk value kind {kind_id}: unknown (known: 1 float64, 2 int64)")
        codec, value_dtype = ChunkCodec(codec_id), _VALUE_KINDS[kind_id]
        offset = _HEADER.size + column_count * _DESCRIPTOR.size
        if offset > len(view):
            raise ChunkError(f"chunk of {len(view)} bytes is too short for its {column_count} column descriptors")
        columns: dict[str, Any] = {}
        previous_id = 0
        for index in range(column_count):
            column_id, length = _DESCRIPTOR.unpack_from(view, _HEADER.size + index * _DESCRIPTOR.size)
            if column_id not in _COLUMNS or column_id <= previous_id:
                raise ChunkError(f"chunk column id {column_id} after {previous_id}: ids are 1 to 11, increasing, each at most once")
            previous_id = column_id
            if offset + length > len(view):
                raise ChunkError(f"chunk column {_COLUMNS[column_id][0]}: {length} bytes past the chunk's end ({len(view)} bytes)")
            name, dtype = _COLUMNS[column_id]
            body = view[offset : offset + length]
            columns[name] = (
                unpack_text(body, codec, rows, name) if dtype == "text" else unpack(body, codec, dtype or value_dtype, rows, name)
            )
            offset += length
        if offset != len(view):
            raise ChunkError(f"chunk has {len(view) - offset} bytes after its last column")
        if rows and ("time_unix_nano" not in columns or "value" not in columns):
            raise ChunkError(f"chunk of {rows} rows without its time_unix_nano or value column")

        def default(name: str, dtype: str) -> Any:
            if dtype == "text":
                return None
            if dtype == "bool":  # all True (no point has a step) if the step column is left out too
                return np.full(rows, name != "value_missing" and name.removesuffix("_missing") not in columns)
            return np.zeros(rows, dtype or value_dtype)

        return cls(**{name: columns[name] if name in columns else default(name, dtype) for name, dtype in _COLUMNS.values()})


def concat(chunks: Sequence[SeriesChunk]) -> SeriesChunk:
    """One chunk of ``chunks``' points, in the order given (compaction); all must have one value kind."""
    if not chunks:
        raise ValueError("concat: no chunks given; it needs at least one")
    kinds = {c.value.dtype for c in chunks}
    if len(kinds) > 1:
        raise ValueError(f"concat: chunks of value kinds {sorted(str(k) for k in kinds)}; join chunks of one value kind only")
    if len(chunks) == 1:
        return chunks[0]
    joined: dict[str, Any] = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in _ARRAY_NAMES}
    for name in _TEXT_NAMES:
        parts = [getattr(c, name) for c in chunks]
        if any(part is not None for part in parts):
            joined[name] = [t for c, part in zip(chunks, parts, strict=True) for t in (part or (None,) * len(c))]
    return SeriesChunk(**joined)


def _texts(name: str, data: Sequence[str | None] | None, rows: int) -> tuple[str | None, ...] | None:
    """A text column as a tuple of ``rows`` texts or None; None for the whole column if no point has one."""
    if data is None:
        return None
    texts = tuple(data)
    if not any(t is not None for t in texts):
        if len(texts) != rows:
            raise ValueError(f"SeriesChunk {name}: {len(texts)} values, but time_unix_nano has {rows}")
        return None
    if len(texts) != rows:
        raise ValueError(f"SeriesChunk {name}: {len(texts)} values, but time_unix_nano has {rows}")
    for text in texts:
        if text is not None and not isinstance(text, str):
            raise ValueError(f"SeriesChunk {name}: expected text (JSON) or None, got {type(text).__name__}")
    return texts


_TEXT_NAMES = frozenset(("histogram", "extra"))
_ARRAY_NAMES = tuple(name for name in SeriesChunk.__slots__ if name not in _TEXT_NAMES)
