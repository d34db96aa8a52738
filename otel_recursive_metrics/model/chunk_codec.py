"""The codecs of a chunk's column bodies: how one column becomes bytes and back.

The format these bodies sit in is described in :mod:`.chunk`; this module holds what each codec
does to one column (numbers, masks and texts), and which codecs this installation has:
:func:`default_codec` is pcodec where its wheel is installed, else zlib (NumPy and the standard
library only: larger, slower to decode), with one log line saying so.
"""

from __future__ import annotations

import enum
import functools
import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "PCODEC_LEVEL",
    "ZLIB_LEVEL",
    "ChunkCodec",
    "ChunkError",
    "ChunkVersionError",
    "available_codecs",
    "default_codec",
    "pack",
    "pack_text",
    "pcodec_module",
    "unpack",
    "unpack_text",
]

# Named as the chunk module: the one place a user meets the chunk format.
logger = logging.getLogger(__package__ + ".chunk")

#: pcodec's compression level: 4 is within 3 % of the default 8's size and encodes several times faster.
PCODEC_LEVEL = 4
#: zlib's level (not part of the format): 1 is within 2 % of 6's size here and encodes about 1.6 times faster.
ZLIB_LEVEL = 1
INSTALL_HINT = "install it from your clone: pip install -e '.[chunks]'"
#: A text column's length for "no text" (None), as opposed to the empty text.
_NO_TEXT = 0xFFFFFFFF


class ChunkCodec(enum.IntEnum):
    """How a chunk's columns are compressed; the value is the codec id in the header."""

    RAW = 0
    ZLIB = 1
    PCODEC = 2


class ChunkError(ValueError):
    """Bytes that are not a readable chunk; the message says what is wrong with them."""


class ChunkVersionError(ChunkError):
    """A chunk written in a newer format version than this package reads."""


@functools.cache
def pcodec_module() -> tuple[Any, Any] | None:
    """pcodec's ``standalone`` module and our ``ChunkConfig``, or None (said once in the log) where it is missing."""
    try:
        # Imported by name: pcodec 1.0 (the last with CPython 3.10 wheels) has no ``pcodec.standalone`` attribute.
        from pcodec import ChunkConfig, standalone  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        logger.info("pcodec is not installed: chunks are written with the zlib codec, larger and slower to read (%s)", INSTALL_HINT)
        return None
    return standalone, ChunkConfig(compression_level=PCODEC_LEVEL)


def available_codecs() -> tuple[ChunkCodec, ...]:
    """The codecs this installation can write and read."""
    return tuple(c for c in ChunkCodec if c is not ChunkCodec.PCODEC or pcodec_module() is not None)


def default_codec() -> ChunkCodec:
    """pcodec where it is installed, else zlib: the codec :meth:`SeriesChunk.encode` uses by default."""
    return ChunkCodec.PCODEC if pcodec_module() is not None else ChunkCodec.ZLIB


def pack(array: np.ndarray, codec: ChunkCodec) -> bytes:
    """One numeric or mask column's body (see :mod:`.chunk`)."""
    if array.dtype == np.bool_:
        bits = np.packbits(array, bitorder="little").tobytes()
        return bits if codec is ChunkCodec.RAW else zlib.compress(bits, ZLIB_LEVEL)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    if codec is ChunkCodec.RAW:
        return little.tobytes()
    if codec is ChunkCodec.PCODEC:
        standalone, config = pcodec_module() or (None, None)
        assert standalone is not None  # encode checked
        return bytes(standalone.simple_compress(np.ascontiguousarray(array), config))
    if array.dtype.kind == "i":
        little = np.diff(little, prepend=little.dtype.type(0))  # wraps modulo 2**64, as the cumulative sum undoes
    return zlib.compress(np.ascontiguousarray(little.view(np.uint8).reshape(-1, 8).T).tobytes(), ZLIB_LEVEL)


def pack_text(texts: Sequence[str | None], codec: ChunkCodec) -> bytes:
    """A text column's body: N uint32 lengths (0xFFFFFFFF for None), then the UTF-8 texts; zlib unless raw."""
    encoded = [b"" if t is None else t.encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter((_NO_TEXT if t is None else len(e) for t, e in zip(texts, encoded, strict=True)), "<u4", len(encoded))
    body = lengths.tobytes() + b"".join(encoded)
    return body if codec is ChunkCodec.RAW else zlib.compress(body, ZLIB_LEVEL)


def unpack_text(body: memoryview, codec: ChunkCodec, rows: int, name: str) -> tuple[str | None, ...]:
    """A text column's values; :class:`ChunkError` unless the body holds exactly ``rows`` texts."""
    try:
        raw = bytes(body) if codec is ChunkCodec.RAW else zlib.decompress(body)
    except zlib.error as exc:
        raise ChunkError(f"chunk column {name}: its zlib body does not decode ({exc})") from None
    if len(raw) < 4 * rows:
        raise ChunkError(f"chunk column {name}: {len(raw)} bytes, too short for {rows} text lengths")
    lengths = np.frombuffer(raw, "<u4", rows)
    present = lengths != _NO_TEXT
    ends = np.cumsum(np.where(present, lengths, 0), dtype=np.int64) + 4 * rows
    if (rows and int(ends[-1]) != len(raw)) or (not rows and len(raw) != 0):
        raise ChunkError(f"chunk column {name}: text lengths add up to {int(ends[-1]) if rows else 0} bytes, the body has {len(raw)}")
    out: list[str | None] = []
    start = 4 * rows
    try:
        for has, end in zip(present.tolist(), ends.tolist(), strict=True):
            out.append(raw[start:end].decode("utf-8", "surrogatepass") if has else None)
            start = end
    except UnicodeDecodeError as exc:
        raise ChunkError(f"chunk column {name}: a text is not UTF-8 ({exc})") from None
    return tuple(out)


def unpack(body: memoryview, codec: ChunkCodec, dtype: str, rows: int, name: str) -> np.ndarray:
    """One column's values from its body; :class:`ChunkError` unless that is exactly ``rows`` of ``dtype``."""
    try:
        if dtype == "bool":
            # Inflated to one byte past what the rows need, at most: a bad length is caught without the memory.
            bits = bytes(body) if codec is ChunkCodec.RAW else zlib.decompressobj().decompress(body, (rows + 7) // 8 + 1)
            if len(bits) != (rows + 7) // 8:
                raise ChunkError(f"chunk column {name}: {len(bits)} bytes of mask for {rows} rows")
            return np.unpackbits(np.frombuffer(bits, np.uint8), count=rows, bitorder="little").astype(bool)
        if codec is ChunkCodec.PCODEC:
            if (pcodec := pcodec_module()) is None:
                raise ChunkError(f"chunk column {name} is compressed with pcodec, which is not installed: {INSTALL_HINT}")
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
