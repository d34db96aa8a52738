"""Series chunks (``model/chunk.py``): every codec gives back what it was given, bit for bit, and damage is named.

- Round trips (Hypothesis): arbitrary int64 times, steps and epochs (with and without their
  masks), float64 values of any bit pattern (every NaN payload, infinities, ``-0.0``,
  subnormals) and int64 values up to the edges, 0 to 300 points, through every codec this
  installation offers.
- The format is what the docstring says: a chunk written by hand from the docstring alone reads
  back, and a raw chunk is read without the package.
- Damage: every truncation, every flipped bit, trailing bytes and hand-made wrong headers raise
  ``ChunkError`` naming what is wrong; bodies garbled behind a valid checksum never escape as
  another exception; a newer format version is refused with ``ChunkVersionError``.
- Without pcodec (a child process that cannot import it) zlib is the default, said once in the
  log, and a pcodec chunk is refused with the install command.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from otel_recursive_metrics.model.chunk import (
    FORMAT_VERSION,
    MAGIC,
    ChunkCodec,
    ChunkError,
    ChunkVersionError,
    SeriesChunk,
    available_codecs,
    concat,
    default_codec,
)

from .conftest import require_module

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CODECS = available_codecs()
# Bit patterns worth meeting every time: quiet, signalling and negative NaNs with payloads, the
# infinities, both zeros, the smallest and largest subnormals, the largest finite value.
SPECIAL_BITS = [
    0x7FF8000000000000,
    0x7FF8000000000001,
    0x7FF0000000000001,
    0xFFF8DEADBEEF0000,
    0xFFFFFFFFFFFFFFFF,
    0x7FF0000000000000,
    0xFFF0000000000000,
    0x0000000000000000,
    0x8000000000000000,
    0x0000000000000001,
    0x000FFFFFFFFFFFFF,
    0x800FFFFFFFFFFFFF,
    0x7FEFFFFFFFFFFFFF,
]
int64s = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]))


def bits(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64).view(np.float64)


@st.composite
def chunks(draw: Any) -> SeriesChunk:
    """A chunk of 0 to 300 points with any int64 columns, any float64 bit patterns or any int64 values."""
    rows = draw(st.integers(0, 300))

    def int_column() -> np.ndarray:
        if draw(st.booleans()):  # increasing, as times and steps usually are
            start = draw(st.integers(INT64_MIN // 2, INT64_MAX // 2))
            return start + np.cumsum(draw(hnp.arrays(np.int64, rows, elements=st.integers(0, 2**20))))
        return draw(hnp.arrays(np.int64, rows, elements=int64s))

    def mask() -> np.ndarray | None:
        return draw(st.one_of(st.none(), hnp.arrays(np.bool_, rows)))

    if draw(st.booleans()):
        patterns = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(SPECIAL_BITS))
        value = draw(hnp.arrays(np.uint64, rows, elements=patterns)).view(np.float64)
    else:
        value = draw(hnp.arrays(np.int64, rows, elements=int64s))
    return SeriesChunk(
        int_column(),
        value,
        start_time_unix_nano=draw(st.one_of(st.none(), st.just(int_column()))),
        step=draw(st.one_of(st.none(), st.just(int_column()))),
        step_missing=mask(),
        epoch=draw(st.one_of(st.none(), st.just(int_column()))),
        epoch_missing=mask(),
        value_missing=draw(st.one_of(st.none(), hnp.arrays(np.bool_, rows))),
        row_id=draw(st.one_of(st.none(), st.just(int_column()))),
        histogram=draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text()), min_size=rows, max_size=rows))),
        extra=draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text()), min_size=rows, max_size=rows))),
    )


def same_bits(a: Any, b: Any) -> bool:
    if a is None or isinstance(a, tuple):  # a text column: the same texts, None where None (or no column)
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(chunk: SeriesChunk, back: SeriesChunk) -> None:
    for name in SeriesChunk.__slots__:
        assert same_bits(getattr(chunk, name), getattr(back, name)), name
    assert back == chunk


def with_crc(data: bytes) -> bytes:
    """``data`` with its header's CRC-32 recomputed as the format defines it."""
    crc = zlib.crc32(data[16:], zlib.crc32(data[:12]))
    return data[:12] + struct.pack("<I", crc) + data[16:]


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunk=chunks())
def test_every_codec_gives_back_every_bit(chunk: SeriesChunk) -> None:
    for codec in CODECS:
        data = chunk.encode(codec)
        assert data[5] == codec
        assert_same(chunk, SeriesChunk.decode(data))
        assert_same(chunk, SeriesChunk.decode(memoryview(bytearray(data))))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("kind", [np.float64, np.int64])
def test_empty_and_one_point_chunks(codec: ChunkCodec, kind: type) -> None:
    empty = SeriesChunk(np.zeros(0, np.int64), np.zeros(0, kind))
    data = empty.encode(codec)
    assert len(data) == 16  # a header and no columns
    back = SeriesChunk.decode(data)
    assert_same(empty, back)
    assert back.value.dtype == kind
    assert back.stats().points == 0 and back.stats().min_time_unix_nano is None
    one = SeriesChunk([INT64_MAX], np.array([INT64_MIN]).astype(kind), step=[INT64_MIN], epoch=[7], start_time_unix_nano=[INT64_MIN])
    assert_same(one, SeriesChunk.decode(one.encode(codec)))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_nan_payloads_negative_zero_and_subnormals_survive(codec: ChunkCodec) -> None:
    value = bits(SPECIAL_BITS * 100)
    chunk = SeriesChunk(np.arange(len(value)), value, step=np.arange(len(value)))
    back = SeriesChunk.decode(chunk.encode(codec))
    assert back.value.view(np.uint64).tolist() == SPECIAL_BITS * 100


def test_integer_values_stay_integers_at_the_edges() -> None:
    chunk = SeriesChunk([1, 2, 3, 4], [INT64_MIN, INT64_MAX, 0, -1])
    assert chunk.value.dtype == np.int64
    for codec in CODECS:
        back = SeriesChunk.decode(chunk.encode(codec))
        assert back.value.dtype == np.int64
        assert back.value.tolist() == [INT64_MIN, INT64_MAX, 0, -1]
    # A Python int past int64 cannot stay an int64: the value kind becomes float64, as the batch keeps it.
    assert SeriesChunk([1], [2**64]).value.dtype == np.float64


def test_missing_steps_and_epochs() -> None:
    no_step = SeriesChunk([1, 2], [0.5, 0.5])
    assert no_step.step_missing.tolist() == [True, True] and no_step.epoch_missing.tolist() == [True, True]
    some = SeriesChunk([1, 2, 3], [1.0, 2.0, 3.0], step=[10, 0, 30], step_missing=[False, True, False], epoch=[1, 1, 1])
    assert some.epoch_missing.tolist() == [False, False, False]
    for codec in CODECS:
        assert_same(some, SeriesChunk.decode(some.encode(codec)))
        assert_same(no_step, SeriesChunk.decode(no_step.encode(codec)))
    stats = some.stats()
    assert (stats.min_step, stats.max_step) == (10, 30)
    # Step 0 everywhere is a step: kept apart from "no step" (a column of zeros, not left out).
    zeros = SeriesChunk([1, 2], [1.0, 2.0], step=[0, 0])
    for codec in CODECS:
        back = SeriesChunk.decode(zeros.encode(codec))
        assert back.step_missing.tolist() == [False, False] and back.epoch_missing.tolist() == [True, True]
        assert_same(zeros, back)


def test_stats_for_the_index() -> None:
    chunk = SeriesChunk([30, 10, 20], [np.nan, -np.inf, 2.5], step=[3, 1, 2])
    stats = chunk.stats()
    assert (stats.points, stats.min_time_unix_nano, stats.max_time_unix_nano) == (3, 10, 30)
    assert (stats.min_step, stats.max_step) == (1, 3)
    assert (stats.min_value, stats.max_value) == (-np.inf, 2.5)
    all_nan = SeriesChunk([1, 2], [np.nan, np.nan]).stats()
    assert (all_nan.min_value, all_nan.max_value, all_nan.min_step) == (None, None, None)
    ints = SeriesChunk([1, 2], [INT64_MAX, INT64_MIN]).stats()
    assert (ints.min_value, ints.max_value) == (INT64_MIN, INT64_MAX)
    assert type(ints.max_value) is int


def test_concat_joins_in_order_and_refuses_mixed_kinds() -> None:
    a = SeriesChunk([1, 2], [0.5, np.nan], step=[1, 2])
    b = SeriesChunk([3], [-0.0])
    joined = concat([a, b])
    assert joined.time_unix_nano.tolist() == [1, 2, 3]
    assert joined.step_missing.tolist() == [False, False, True]
    assert same_bits(joined.value, bits([0x3FE0000000000000, 0x7FF8000000000000, 0x8000000000000000]))
    assert concat([a]) is a
    with pytest.raises(ValueError, match="value kinds"):
        concat([a, SeriesChunk([4], [4])])
    with pytest.raises(ValueError, match="at least one"):
        concat([])


def test_columns_are_read_only_and_bad_columns_are_named() -> None:
    chunk = SeriesChunk(np.arange(3), np.ones(3))
    with pytest.raises(ValueError, match="read-only"):
        chunk.value[0] = 2.0
    with pytest.raises(ValueError, match="step: 2 values, but time_unix_nano has 3"):
        SeriesChunk([1, 2, 3], [1.0, 2.0, 3.0], step=[1, 2])
    with pytest.raises(ValueError, match=r"time_unix_nano: cannot be held as int64: expected integers, got float64"):
        SeriesChunk([1.5], [1.0])
    with pytest.raises(ValueError, match=r"time_unix_nano: .*9223372036854775808 is beyond int64"):
        SeriesChunk([2**63], [1.0])
    with pytest.raises(ValueError, match=r"value: .*None is not a number"):
        SeriesChunk([1], [None])
    with pytest.raises(ValueError, match=r"value: .*complex"):
        SeriesChunk([1], [1j])
    with pytest.raises(ValueError, match=r"epoch: expected a 1-D array, got shape \(1, 1\)"):
        SeriesChunk([1], [1.0], epoch=[[1]])


# --- the documented format ----------------------------------------------------------------------


def test_a_chunk_written_from_the_docstring_alone_reads_back() -> None:
    times = np.array([5, 7, 6], dtype="<i8")
    steps = np.array([0, 1, 2], dtype="<i8")
    values = np.array([0.5, np.nan, -1.0], dtype="<f8")
    missing = np.packbits(np.array([False, True, False]), bitorder="little").tobytes()

    def shuffled(column: np.ndarray) -> bytes:
        if column.dtype.kind == "i":
            column = np.diff(column, prepend=0)
        return zlib.compress(column.view(np.uint8).reshape(-1, 8).T.tobytes())

    bodies = [(1, shuffled(times)), (3, shuffled(steps)), (4, zlib.compress(missing)), (7, shuffled(values))]
    head = struct.pack("<4sBBBBI", b"ORMC", 1, 1, 1, len(bodies), 3)
    rest = b"".join(struct.pack("<BI", i, len(b)) for i, b in bodies) + b"".join(b for _, b in bodies)
    chunk = SeriesChunk.decode(with_crc(head + b"\0\0\0\0" + rest))
    assert chunk.time_unix_nano.tolist() == [5, 7, 6]
    assert chunk.step_missing.tolist() == [False, True, False]
    assert chunk.epoch_missing.tolist() == [True, True, True] and chunk.epoch.tolist() == [0, 0, 0]  # no epoch column: none has one
    assert chunk.start_time_unix_nano.tolist() == [0, 0, 0]
    assert same_bits(chunk.value, values)


def test_a_raw_chunk_reads_without_the_package() -> None:
    chunk = SeriesChunk([10, 20], [1.5, 2.5], step=[1, 2], start_time_unix_nano=[3, 3])
    data = chunk.encode(ChunkCodec.RAW)
    magic, version, codec, kind, count, rows, crc = struct.unpack_from("<4sBBBBII", data)
    assert (magic, version, codec, kind, count, rows) == (MAGIC, FORMAT_VERSION, 0, 1, 4, 2)
    assert crc == zlib.crc32(data[16:], zlib.crc32(data[:12]))
    offset, columns = 16 + 5 * count, {}
    for i in range(count):
        column_id, length = struct.unpack_from("<BI", data, 16 + 5 * i)
        columns[column_id] = data[offset : offset + length]
        offset += length
    assert sorted(columns) == [1, 2, 3, 7]  # the masks are at their default (every point has a step, none an epoch)
    assert np.frombuffer(columns[1], "<i8").tolist() == [10, 20]
    assert np.frombuffer(columns[2], "<i8").tolist() == [3, 3]
    assert np.frombuffer(columns[7], "<f8").tolist() == [1.5, 2.5]


# --- damage -------------------------------------------------------------------------------------


def sample() -> SeriesChunk:
    n = 64
    return SeriesChunk(
        1_796_083_200 * 10**9 + np.arange(n) * 300_000_000, np.linspace(3, 0.5, n), step=np.arange(n), step_missing=np.arange(n) % 9 == 0
    )


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_truncation_and_every_flipped_bit_is_named(codec: ChunkCodec) -> None:
    data = sample().encode(codec)
    for length in range(len(data)):
        with pytest.raises(ChunkError):
            SeriesChunk.decode(data[:length])
    for position in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            with pytest.raises(ChunkError) as caught:
                SeriesChunk.decode(bytes(damaged))
            assert any(word in str(caught.value) for word in ("magic", "version", "checksum", "shorter", "past", "after")), caught.value
    with pytest.raises(ChunkError, match="shorter than the 16-byte header"):
        SeriesChunk.decode(data[:10])
    with pytest.raises(ChunkError, match="checksum mismatch"):
        SeriesChunk.decode(data[:-1])
    with pytest.raises(ChunkError, match="3 bytes after its last column"):
        SeriesChunk.decode(with_crc(data + b"xyz"))
    with pytest.raises(ChunkError, match="not a chunk: magic b'PK"):
        SeriesChunk.decode(b"PK\x03\x04" + data[4:])


def test_wrong_headers_behind_a_valid_checksum_are_named() -> None:
    data = sample().encode(ChunkCodec.ZLIB)

    def header(**fields: int) -> bytes:
        magic, version, codec, kind, count, rows, _ = struct.unpack_from("<4sBBBBII", data)
        values = {"version": version, "codec": codec, "kind": kind, "count": count, "rows": rows, **fields}
        head = struct.pack("<4sBBBBII", magic, values["version"], values["codec"], values["kind"], values["count"], values["rows"], 0)
        return with_crc(head + data[16:])

    with pytest.raises(ChunkError, match="codec id 9: unknown"):
        SeriesChunk.decode(header(codec=9))
    with pytest.raises(ChunkError, match="value kind 3: unknown"):
        SeriesChunk.decode(header(kind=3))
    with pytest.raises(ChunkError, match="format version 0: there is no such version"):
        SeriesChunk.decode(header(version=0))
    with pytest.raises(ChunkError, match=r"column time_unix_nano: .* for 65 rows"):
        SeriesChunk.decode(header(rows=65))
    with pytest.raises(ChunkError, match="too short for its 200 column descriptors"):
        SeriesChunk.decode(header(count=200))
    with pytest.raises(ChunkError, match="value kind"):
        SeriesChunk.decode(header(kind=0))
    # A descriptor naming an unknown column, or the same column twice.
    unknown = bytearray(data)
    unknown[16] = 42
    with pytest.raises(ChunkError, match="column id 42 after 0: ids are 1 to 11, increasing, each at most once"):
        SeriesChunk.decode(with_crc(bytes(unknown)))
    twice = bytearray(data)
    twice[21] = twice[16]
    with pytest.raises(ChunkError, match="column id 1 after 1: ids are 1 to 11"):
        SeriesChunk.decode(with_crc(bytes(twice)))


def test_a_chunk_with_its_rows_but_no_time_column_is_refused() -> None:
    body = b"\0" * 8
    rest = struct.pack("<BI", 7, 8) + body
    data = with_crc(struct.pack("<4sBBBBII", MAGIC, 1, 0, 1, 1, 1, 0) + rest)
    with pytest.raises(ChunkError, match="without its time_unix_nano or value column"):
        SeriesChunk.decode(data)


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(CODECS), garbage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_garbled_bodies_behind_a_valid_checksum_never_escape(codec: ChunkCodec, garbage: list[tuple[int, int]]) -> None:
    data = bytearray(sample().encode(codec))
    start = 16 + 5 * data[7]
    for position, byte in garbage:
        data[start + position % (len(data) - start)] = byte
    try:
        back = SeriesChunk.decode(with_crc(bytes(data)))
    except ChunkError:
        return
    assert len(back) == 64  # read as something of the declared size, never a crash


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 255])
def test_a_newer_format_version_is_refused(version: int) -> None:
    data = bytearray(sample().encode(ChunkCodec.ZLIB))
    data[4] = version
    with pytest.raises(
        ChunkVersionError, match=f"chunk format version {version}; this otel-recursive-metrics reads up to version 1: upgrade"
    ):
        SeriesChunk.decode(bytes(data))  # refused before the checksum: a newer format may place it elsewhere


# --- codecs ------------------------------------------------------------------------------------


def test_pcodec_is_the_default_where_installed() -> None:
    require_module("pcodec", "chunks")
    assert default_codec() is ChunkCodec.PCODEC
    assert set(CODECS) == set(ChunkCodec)
    assert sample().encode()[5] == ChunkCodec.PCODEC


_WITHOUT_PCODEC = """
import logging, sys
sys.modules["pcodec"] = None  # import pcodec now raises ImportError, as where its wheel is missing
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from otel_recursive_metrics.model.chunk import ChunkCodec, ChunkError, SeriesChunk, available_codecs, default_codec
chunk = SeriesChunk([1, 2], [0.5, 1.5])
assert default_codec() is ChunkCodec.ZLIB, default_codec()
assert available_codecs() == (ChunkCodec.RAW, ChunkCodec.ZLIB), available_codecs()
for _ in range(3):
    assert SeriesChunk.decode(chunk.encode()) == chunk
    assert chunk.encode()[5] == ChunkCodec.ZLIB
for attempt in (lambda: SeriesChunk.decode(bytes.fromhex(sys.argv[1])), lambda: chunk.encode(ChunkCodec.PCODEC)):
    try:
        attempt()
    except ChunkError as exc:
        print("refused:", exc)
"""


def test_without_pcodec_zlib_is_the_default_said_once_and_pcodec_chunks_are_refused() -> None:
    require_module("pcodec", "chunks")  # to write the pcodec chunk the child is given
    pcodec_chunk = SeriesChunk([1, 2], [0.5, 1.5]).encode(ChunkCodec.PCODEC)
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PCODEC, pcodec_chunk.hex()], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "pcodec is not installed" in line]
    assert len(said) == 1, result.stderr
    assert "otel_recursive_metrics.model.chunk" in said[0] and "pip install -e '.[chunks]'" in said[0]
    refusals = result.stdout.splitlines()
    assert len(refusals) == 2, result.stdout
    assert "compressed with pcodec, which is not installed: install it from your clone: pip install -e '.[chunks]'" in refusals[0]
    assert "cannot encode with codec pcodec" in refusals[1]


def test_the_codec_benchmark_runs_and_decides(tmp_path: Path) -> None:
    """``benchmarks/bench_codecs.py --quick``: every codec's round trip passes its bit-for-bit check; no timing asserted."""
    out = tmp_path / "codecs.md"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_codecs.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    for row in ("| shuffle+zlib-1 | 1,000 |", "| chunk/zlib | 1,000 |", "| chunk/raw | 100 (first 2,000 of each) |", "## Decision"):
        assert row in text, row
