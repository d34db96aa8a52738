"""Per-series columnar chunks: a series' points as NumPy columns, and their compact binary form.

A :class:`SeriesChunk` holds the points of one series (one metric, resource, scope and
attribute set) as equal-length columns::

    time_unix_nano        int64    when the value was recorded
    start_time_unix_nano  int64    start of a sum's or histogram's interval; 0 for gauges
    step, epoch           int64    from TrainingMetrics.log; with step_missing / epoch_missing,
                                   bool, True where the point has none (its step means nothing)
    value                 float64, or int64 for an integer series (kept exact to the last bit)

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
5 ``epoch``, 6 ``epoch_missing``, 7 ``value``; each at most once, in increasing order. A chunk of
one or more rows always has columns 1 and 7; any other column left out is all zeros, except a
mask: all True if its step (epoch) column is left out too (no point has one), else all False. A
chunk of no rows has no columns. Each body decodes to N values:

- codec 0 (raw): int64 and float64 columns are N little-endian 8-byte values;
- codec 1 (zlib): int64 columns are first delta-coded (the first value, then each value minus
  the one before, wrapping modulo 2**64, so a cumulative sum modulo 2**64 restores them); every
  column's little-endian bytes are then shuffled (byte 0 of every value, then byte 1, ..., then
  byte 7: 8 rows of N bytes) and compressed with zlib (RFC 1950; any level);
- codec 2 (pcodec): int64 and float64 columns are pcodec's standalone format (pcodec >= 1.0,
  ``pcodec.standalone.simple_decompress``; its dtype must match the column's);
- masks, in every codec: ``numpy.packbits(mask, bitorder="little")`` (bit i of byte i // 8 is
  row i; ceil(N / 8) bytes), then zlib in codecs 1 and 2 (raw in codec 0).

Damage is never read as data: a wrong magic, a short or long buffer, a failed CRC, an unknown
codec, kind or column, or a body that does not decode to N values raises :class:`ChunkError`
naming what is wrong; a newer format version raises :class:`ChunkVersionError`.

Codecs (measured by ``benchmarks/bench_codecs.py``): :func:`default_codec` is pcodec where its
wheel is installed (``pip install -e '.[chunks]'`` in the clone), else zlib, which needs only
NumPy and the standard library (larger, slower to decode), with one log line saying so. Reading
a pcodec chunk needs pcodec; without it the error says how to install it.
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

logger = logging.getLogger(__name__)

MAGIC = b"ORMC"
FORMAT_VERSION = 1
#: pcodec's compression level: 4 is within 3 % of the default 8's size and encodes several times faster.
PCODEC_LEVEL = 4
#: zlib's level (not part of the format): 1 is within 2 % of 6's size here and encodes about 1.6 times faster.
ZLIB_LEVEL = 1
_HEADER = struct.Struct("<4sBBBBII")
_DESCRIPTOR = struct.Struct("<BI")
_INSTALL_HINT = "install it from your clone: pip install -e '.[chunks]'"


class ChunkCodec(enum.IntEnum):
    """How a chunk's columns are compressed; the value is the codec id in the header."""

    RAW = 0
    ZLIB = 1
    PCODEC = 2


class ChunkError(ValueError):
    """Bytes that are not a readable chunk; the message says what is wrong with them."""


class ChunkVersionError(ChunkError):
    """A chunk written in a newer format version than this package reads."""


# Column id -> (attribute, dtype); bool columns are masks.
_COLUMNS: dict[int, tuple[str, str]] = {
    1: ("time_unix_nano", "int64"),
    2: ("start_time_unix_nano", "int64"),
    3: ("step", "int64"),
    4: ("step_missing", "bool"),
    5: ("epoch", "int64"),
    6: ("epoch_missing", "bool"),
    7: ("value", ""),  # the value kind says which
}
_VALUE_KINDS = {1: "float64", 2: "int64"}
_VALUE_KIND_IDS = {np.dtype(dtype): kind for kind, dtype in _VALUE_KINDS.items()}
_CODEC_IDS = frozenset(ChunkCodec)
# Native dtypes taken as they are (compared as objects: ``dtype.name`` costs microseconds).
_EXACT = {"int64": (np.dtype(np.int64),), "bool": (np.dtype(np.bool_),), "value": (np.dtype(np.int64), np.dtype(np.float64))}


@functools.cache
def _pcodec() -> tuple[Any, Any] | None:
    """pcodec's ``standalone`` module and our ``ChunkConfig``, or None (said once in the log) where it is missing."""
    try:
        # Imported by name: pcodec 1.0 (the last with CPython 3.10 wheels) has no ``pcodec.standalone`` attribute.
        from pcodec import ChunkConfig, standalone  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        logger.info("pcodec is not installed: chunks are written with the zlib codec, larger and slower to read (%s)", _INSTALL_HINT)
        return None
    return standalone, ChunkConfig(compression_level=PCODEC_LEVEL)


def available_codecs() -> tuple[ChunkCodec, ...]:
    """The codecs this installation can write and read."""
    return tuple(c for c in ChunkCodec if c is not ChunkCodec.PCODEC or _pcodec() is not None)


def default_codec() -> ChunkCodec:
    """pcodec where it is installed, else zlib: the codec :meth:`SeriesChunk.encode` uses by default."""
    return ChunkCodec.PCODEC if _pcodec() is not None else ChunkCodec.ZLIB


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

    __slots__ = ("epoch", "epoch_missing", "start_time_unix_nano", "step", "step_missing", "time_unix_nano", "value")

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

    def __len__(self) -> int:
        return len(self.time_unix_nano)

    def __repr__(self) -> str:
        return f"SeriesChunk(points={len(self)}, value={self.value.dtype})"

    def __eq__(self, other: object) -> bool:
        """Bit for bit: NaNs with the same payload are equal, ``0.0`` and ``-0.0`` are not."""
        if not isinstance(other, SeriesChunk):
            return NotImplemented
        pairs = [(getattr(self, name), getattr(other, name)) for name in self.__slots__]
        return all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]

    def stats(self) -> ChunkStats:
        """Row count and min/max of time, step (points with a step) and value (NaN ignored)."""
        values = self.value[~np.isnan(self.value)] if self.value.dtype.kind == "f" else self.value
        return ChunkStats(len(self), *_range(self.time_unix_nano), *_range(self.step[~self.step_missing]), *_range(values))

    def encode(self, codec: ChunkCodec | None = None) -> bytes:
        """The chunk in the binary format above, compressed with ``codec`` (default: :func:`default_codec`)."""
        codec = default_codec() if codec is None else ChunkCodec(codec)
        if codec is ChunkCodec.PCODEC and _pcodec() is None:
            raise ChunkError(f"cannot encode with codec pcodec: pcodec is not installed ({_INSTALL_HINT})")
        rows = len(self)  # at most 2**32 - 1: struct refuses more
        # Columns at their default are left out; time and value are always there (if any rows are).
        left_out = set(_COLUMNS) if rows == 0 else set() if self.start_time_unix_nano.any() else {2}
        for number_id, number, missing in ((3, self.step, self.step_missing), (5, self.epoch, self.epoch_missing)):
            if missing.all() and not number.any():
                left_out |= {number_id, number_id + 1}  # no point has one
            elif not missing.any():
                left_out.add(number_id + 1)
        descriptors, bodies = [], []
        for column_id, (name, _) in _COLUMNS.items():
            if column_id not in left_out:
                bodies.append(_pack(getattr(self, name), codec))
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
        columns: dict[str, np.ndarray] = {}
        previous_id = 0
        for index in range(column_count):
            column_id, length = _DESCRIPTOR.unpack_from(view, _HEADER.size + index * _DESCRIPTOR.size)
            if column_id not in _COLUMNS or column_id <= previous_id:
                raise ChunkError(f"chunk column id {column_id} after {previous_id}: ids are 1 to 7, increasing, each at most once")
            previous_id = column_id
            if offset + length > len(view):
                raise ChunkError(f"chunk column {_COLUMNS[column_id][0]}: {length} bytes past the chunk's end ({len(view)} bytes)")
            name, dtype = _COLUMNS[column_id]
            columns[name] = _unpack(view[offset : offset + length], codec, dtype or value_dtype, rows, name)
            offset += length
        if offset != len(view):
            raise ChunkError(f"chunk has {len(view) - offset} bytes after its last column")
        if rows and ("time_unix_nano" not in columns or "value" not in columns):
            raise ChunkError(f"chunk of {rows} rows without its time_unix_nano or value column")

        def default(name: str, dtype: str) -> np.ndarray:
            if dtype == "bool":  # all True (no point has a step) if the step column is left out too
                return np.full(rows, name.removesuffix("_missing") not in columns)
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
    joined = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in SeriesChunk.__slots__}
    return SeriesChunk(**joined)


def _pack(array: np.ndarray, codec: ChunkCodec) -> bytes:
    """One column's body (see the module's docstring)."""
    if array.dtype == np.bool_:
        bits = np.packbits(array, bitorder="little").tobytes()
        return bits if codec is ChunkCodec.RAW else zlib.compress(bits, ZLIB_LEVEL)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    if codec is ChunkCodec.RAW:
        return little.tobytes()
    if codec is ChunkCodec.PCODEC:
        standalone, config = _pcodec() or (None, None)
        assert standalone is not None  # encode checked
        return bytes(standalone.simple_compress(np.ascontiguousarray(array), config))
    if array.dtype.kind == "i":
        little = np.diff(little, prepend=little.dtype.type(0))  # wraps modulo 2**64, as the cumulative sum undoes
    return zlib.compress(np.ascontiguousarray(little.view(np.uint8).reshape(-1, 8).T).tobytes(), ZLIB_LEVEL)


def _unpack(body: memoryview, codec: ChunkCodec, dtype: str, rows: int, name: str) -> np.ndarray:
    """One column's values from its body; :class:`ChunkError` unless that is exactly ``rows`` of ``dtype``."""
    try:
        if dtype == "bool":
            # Inflated to one byte past what the rows need, at most: a bad length is caught without the memory.
            bits = bytes(body) if codec is ChunkCodec.RAW else zlib.decompressobj().decompress(body, (rows + 7) // 8 + 1)
            if len(bits) != (rows + 7) // 8:
                raise ChunkError(f"chunk column {name}: {len(bits)} bytes of mask for {rows} rows")
            return np.unpackbits(np.frombuffer(bits, np.uint8), count=rows, bitorder="little").astype(bool)
        if codec is ChunkCodec.PCODEC:
            if (pcodec := _pcodec()) is None:
                raise ChunkError(f"chunk column {name} is compressed with pcodec, which is not installed: {_INSTALL_HINT}")
            decoded = pcodec[0].simple_decompress(bytes(body))
            array = np.zeros(0, dtype) if decoded is None else np.asarray(decoded)
            if array.dtype != np.dtype(dtype):
                raise ChunkError(f"chunk column {name}: pcodec data of dtype {array.dtype}, expected {dtype}")
        else:
            raw = bytes(body) if codec is ChunkCodec.RAW else zlib.decompressobj().decompress(body, rows * 8 + 1)
            if len(raw) != rows * 8:
                raise ChunkError(f"chunk column {name}: {len(raw)} bytes for {rows} rows of 8 bytes")
            if codec is ChunkCodec.ZLIB:  # unshuffle: 8 rows of N bytes back to N values of 8 bytes
                raw = np.ascontiguousarray(np.frombuffer(raw, np.uint8).reshape(8, rows).T).tobytes()
            array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False)
            if codec is ChunkCodec.ZLIB and array.dtype.kind == "i":
                array = np.cumsum(array, dtype=np.int64)
    except BaseException as exc:
        # zlib.error, pcodec's RuntimeError or a Rust panic (a BaseException): damage, whichever it is.
        if isinstance(exc, (ChunkError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise ChunkError(f"chunk column {name}: its {codec.name.lower()} body does not decode ({type(exc).__name__}: {exc})") from None
    if len(array) != rows:
        raise ChunkError(f"chunk column {name}: {len(array)} values for {rows} rows")
    return array
