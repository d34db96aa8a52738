"""Lossless codecs for per-series columns of training curves: bytes a point and points/s (issue 21).

    python benchmarks/bench_codecs.py              # 20 curves x 50,000 steps, about a minute
    python benchmarks/bench_codecs.py --quick      # 20 curves x 2,000 steps, once: a smoke run
    python benchmarks/bench_codecs.py --out FILE   # default: results/<date>-codecs.md

The data: :func:`training_curves` makes 20 series the way a training run logs them,
deterministic from ``--seed``. Each series has its own time column (Unix nanoseconds, a step about
every 300 ms with about 1 ms of jitter, as ``time.time_ns()`` reads it) and its own steps
(increasing by 1, or by 500 for the eval metrics, and going back twice where the run resumed
from a checkpoint, its clock jumping forward by minutes). The values: a noisy loss (float32
precision, as ``loss.item()`` gives it) and its EMA, accuracy over a 256-sample batch, a cosine
learning rate with linear warmup, grad norm with spikes, throughput, eval loss and accuracy,
counters and constants as int64, a loss with NaN and inf gaps (NaNs of several payloads),
``-0.0``, GPU memory and utilisation, perplexity, the epoch as a fraction.

Each codec encodes every series cut into chunks of 1,000, 10,000 and 50,000 points, three
columns a chunk (times, steps, values). Every chunk is decoded and compared bit for bit (NaN
payloads included; a mismatch stops the run). Reported per codec and chunk size: bytes a point
(the three columns together), and encode and decode throughput in points/s, the best of
``--repeats`` passes over the whole data (the machine is shared; the best pass is the one least
disturbed). The codecs:

- ``zlib-6``: each column's raw bytes through zlib level 6 (the standard library's baseline);
- ``shuffle+zlib-N``: int64 columns delta-coded (wrapping), every column byte-shuffled (the
  first bytes of all values, then the second bytes, ...), then zlib level N;
- ``shuffle+zstd-N``: the same, then Zstandard level N (``zstandard``);
- ``pcodec-N``: each column through pcodec's standalone format at compression level N;
- ``chunk/<codec>``: :class:`otel_recursive_metrics.model.chunk.SeriesChunk` ``encode()``,
  the whole chunk (header, descriptors and CRC included), with each codec it offers.

Reference: the same points as rows of a 4-column SQLite table ``(name, step, value, time)``
(WAL, ``synchronous=NORMAL``, 8,000 rows a transaction), file bytes a point after a checkpoint.
"""

from __future__ import annotations

import datetime
import sqlite3
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import RESULTS, commit, machine, markdown_table, say, versions_line

__all__ = ["Series", "main", "run", "training_curves"]

#: 2026-12-01T00:00:00Z, where the generated run starts.
_START_UNIX_NANO = 1_796_083_200 * 10**9
CHUNK_SIZES = (1_000, 10_000, 50_000)


@dataclass(frozen=True)
class Series:
    """One generated series: its name and three columns of equal length."""

    name: str
    time_unix_nano: np.ndarray  # int64
    step: np.ndarray  # int64
    value: np.ndarray  # float64 or int64


def _float32(values: np.ndarray) -> np.ndarray:
    """Values at float32 precision, as ``tensor.item()`` hands a float32 tensor's value to Python."""
    return values.astype(np.float32).astype(np.float64)


def _ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """The exponential moving average a training script keeps in Python floats."""
    out = np.empty_like(values)
    acc = float(values[0])
    for i, v in enumerate(values.tolist()):
        acc = acc + alpha * (v - acc)
        out[i] = acc
    return out


def _clock(rng: np.random.Generator, n: int, stride: int, resumes: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps and times of ``n`` points logged every ``stride`` steps; at each ``(index, back, pause_s)``
    of ``resumes`` the run restarted from a checkpoint ``back`` points earlier after ``pause_s``."""
    step_increment = np.full(n, stride, dtype=np.int64)
    step_increment[0] = 0
    # About 300 ms a step with about 1 ms of jitter, in whole nanoseconds.
    time_increment = np.rint(stride * 300e6 + rng.normal(0.0, 1e6, n)).astype(np.int64)
    time_increment[0] = 0
    for index, back, pause_s in resumes:
        step_increment[index] = stride - back * stride  # re-logs the steps since the checkpoint
        time_increment[index] = pause_s * 10**9
    return np.cumsum(step_increment), _START_UNIX_NANO + np.cumsum(time_increment)


def training_curves(seed: int = 7, steps: int = 50_000) -> list[Series]:
    """Twenty series of one training run of ``steps`` points each, deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    n = steps
    resumes = [(int(n * f), int(rng.integers(1, max(n // 25, 2))), int(rng.integers(120, 600))) for f in (0.34, 0.76)]
    run_steps, run_times = _clock(rng, n, 1, resumes)
    eval_steps, eval_times = _clock(rng, n, 500, [(i, max(back // 500, 1), pause) for i, back, pause in resumes])

    def own_clock(steps: np.ndarray, times: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
        # The values of one step are stamped one after the other, some microseconds apart.
        return steps.copy(), times + order * 15_000 + np.rint(rng.exponential(5_000.0, n)).astype(np.int64)

    clocks = [own_clock(run_steps, run_times, i) for i in range(18)]
    eval_clocks = [own_clock(eval_steps, eval_times, i) for i in range(2)]
    step = run_steps.astype(np.float64)
    progress = np.clip(step / max(n, 1), 0.0, 1.0)

    loss_level = 0.45 + 2.2 * np.exp(-step / (n / 6 + 1))
    loss = _float32(loss_level * rng.lognormal(0.0, 0.08, n))
    warmup = max(n // 25, 1)
    lr = np.where(step < warmup, 3e-4 * (step + 1) / warmup, 3e-5 + 0.5 * (3e-4 - 3e-5) * (1 + np.cos(np.pi * progress)))
    accuracy = rng.binomial(256, 0.1 + 0.8 * (1 - np.exp(-step / (n / 5 + 1)))) / 256.0
    grad_norm = _float32(np.exp(-step / n) * rng.lognormal(0.0, 0.3, n) * np.where(rng.random(n) < 0.002, 20.0, 1.0))
    seconds_per_step = np.diff(clocks[5][1], prepend=clocks[5][1][0] - 300_000_000) / 1e9
    seconds_per_step[seconds_per_step <= 0] = 0.3
    throughput = 256.0 / seconds_per_step
    tokens_per_s = 256 * 2048 / np.clip(np.diff(clocks[6][1], prepend=clocks[6][1][0] - 300_000_000) / 1e9, 0.01, None)
    eval_step = eval_clocks[0][0].astype(np.float64)
    eval_loss = _float32(0.5 + 2.1 * np.exp(-eval_step / (n * 500 / 6 + 1)) + rng.normal(0.0, 0.004, n))
    eval_accuracy = rng.binomial(10_000, 0.1 + 0.78 * (1 - np.exp(-eval_step / (n * 100 + 1)))) / 10_000.0
    tokens_seen = (clocks[9][0] + 1) * 256 * 2048
    world_size = np.full(n, 8, dtype=np.int64)
    overflow = rng.random(n) < 0.0005
    loss_scale = np.empty(n)
    scale, clean = 65536.0, 0
    for i in range(n):
        if overflow[i]:
            scale, clean = scale / 2, 0
        else:
            clean += 1
            if clean == 2_000:
                scale, clean = scale * 2, 0
        loss_scale[i] = scale
    fp16_loss = loss.copy()
    for start in rng.integers(0, n, 6):  # divergence: a run of NaN, then a recovery
        fp16_loss[start : start + int(rng.integers(5, 200))] = np.nan
    fp16_loss[rng.integers(0, n, 20)] = np.inf
    payloads = np.array([0x7FF8000000000001, 0xFFF8000000000000, 0x7FF4000000000000, 0x8000000000000000], dtype=np.uint64)
    fp16_loss[rng.integers(0, n, 8)] = payloads.view(np.float64)[rng.integers(0, 4, 8)]  # odd NaNs and -0.0
    gpu_memory = 40 * 2**30 + np.cumsum(np.where(rng.random(n) < 0.01, rng.integers(-64, 65, n) * 2**20, 0)).astype(np.int64)
    gpu_utilization = np.clip(np.rint(rng.normal(96.0, 2.5, n)), 0, 100)
    weight_decay = np.full(n, 0.01)
    perplexity = np.exp(loss)
    epoch_fraction = step / 2_500.0
    data_time = np.abs(rng.normal(0.002, 0.0005, n)) + rng.exponential(0.0002, n)
    grad_clips = np.cumsum(rng.random(n) < 0.01).astype(np.int64)
    ema = _ema(loss, 0.01)

    values: list[tuple[str, np.ndarray]] = [
        ("train/loss", loss),
        ("train/loss_ema", ema),
        ("train/accuracy", accuracy),
        ("train/learning_rate", lr),
        ("train/grad_norm", grad_norm),
        ("train/samples_per_s", throughput),
        ("train/tokens_per_s", tokens_per_s),
        ("train/tokens_seen", tokens_seen),
        ("train/world_size", world_size),
        ("train/loss_scale", loss_scale),
        ("train/loss_fp16", fp16_loss),
        ("system/gpu_memory_bytes", gpu_memory),
        ("system/gpu_utilization_percent", gpu_utilization),
        ("train/weight_decay", weight_decay),
        ("train/perplexity", perplexity),
        ("train/epoch", epoch_fraction),
        ("train/data_time_s", data_time),
        ("train/grad_clip_count", grad_clips),
    ]
    series = [Series(name, clocks[i][1], clocks[i][0], v) for i, (name, v) in enumerate(values)]
    series.append(Series("eval/loss", eval_clocks[0][1], eval_clocks[0][0], eval_loss))
    series.append(Series("eval/accuracy", eval_clocks[1][1], eval_clocks[1][0], eval_accuracy))
    return series


# --- the codecs compared -----------------------------------------------------------------------

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Codec:
    """A way to turn a chunk's three columns into bytes and back."""

    name: str
    encode: Callable[[Columns], Any]
    decode: Callable[[Any], Columns]
    size: Callable[[Any], int]


def _shuffle(column: np.ndarray) -> bytes:
    """Byte-shuffle: the first byte of every value, then the second, ... (int64 columns delta-coded first)."""
    if column.dtype == np.int64:
        column = np.diff(column, prepend=np.int64(0))  # wraps modulo 2**64, as its inverse cumsum does
    return np.ascontiguousarray(column.view(np.uint8).reshape(-1, 8).T).tobytes()


def _unshuffle(data: bytes, dtype: np.dtype[Any]) -> np.ndarray:
    column = np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(8, -1).T).view(dtype).ravel()
    return np.cumsum(column, dtype=np.int64) if dtype == np.int64 else column


def _columnwise(name: str, pack: Callable[[np.ndarray], bytes], unpack: Callable[[bytes, np.dtype[Any]], np.ndarray]) -> Codec:
    def encode(columns: Columns) -> tuple[list[bytes], list[np.dtype[Any]]]:
        return [pack(c) for c in columns], [c.dtype for c in columns]

    def decode(encoded: tuple[list[bytes], list[np.dtype[Any]]]) -> Columns:
        parts, dtypes = encoded
        t, s, v = (unpack(p, d) for p, d in zip(parts, dtypes, strict=True))
        return t, s, v

    return Codec(name, encode, decode, lambda encoded: sum(len(p) for p in encoded[0]))


def _codecs() -> list[Codec]:
    codecs = [
        _columnwise("zlib-6", lambda c: zlib.compress(c.tobytes(), 6), lambda b, d: np.frombuffer(zlib.decompress(b), d)),
    ]
    for level in (1, 6):
        codecs.append(
            _columnwise(
                f"shuffle+zlib-{level}",
                lambda c, level=level: zlib.compress(_shuffle(c), level),  # type: ignore[misc]
                lambda b, d: _unshuffle(zlib.decompress(b), d),
            )
        )
    try:
        import zstandard
    except ImportError:
        say("zstandard is not installed: its rows are left out (pip install zstandard)")
    else:
        decompressor = zstandard.ZstdDecompressor()
        for level in (1, 3, 9):
            compressor = zstandard.ZstdCompressor(level=level)
            codecs.append(
                _columnwise(
                    f"shuffle+zstd-{level}",
                    lambda c, z=compressor: z.compress(_shuffle(c)),  # type: ignore[misc]
                    lambda b, d: _unshuffle(decompressor.decompress(b), d),
                )
            )
    try:
        import pcodec
    except ImportError:
        say("pcodec is not installed: its rows are left out (pip install pcodec)")
    else:
        for level in (4, 8):
            config = pcodec.ChunkConfig(compression_level=level)
            codecs.append(
                _columnwise(
                    f"pcodec-{level}",
                    lambda c, config=config: pcodec.standalone.simple_compress(c, config),  # type: ignore[misc]
                    lambda b, d: pcodec.standalone.simple_decompress(b),
                )
            )
    try:
        from otel_recursive_metrics.model import chunk
    except ImportError:
        say("otel_recursive_metrics.model.chunk does not import: the chunk/* rows are left out")
        return codecs
    for codec_name in chunk.available_codecs():

        def encode(columns: Columns, codec_name: str = codec_name) -> bytes:
            t, s, v = columns
            return chunk.SeriesChunk(t, v, step=s).encode(codec=codec_name)

        def decode(data: bytes) -> Columns:
            decoded = chunk.SeriesChunk.decode(data)
            return decoded.time_unix_nano, decoded.step, decoded.value

        codecs.append(Codec(f"chunk/{codec_name.name.lower()}", encode, decode, len))
    return codecs


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def measure(codec: Codec, series: Sequence[Series], chunk_points: int, repeats: int) -> dict[str, Any]:
    """Bytes a point and encode/decode points/s of ``codec`` on ``series`` cut into ``chunk_points``."""
    pieces = [
        (s.time_unix_nano[i : i + chunk_points].copy(), s.step[i : i + chunk_points].copy(), s.value[i : i + chunk_points].copy())
        for s in series
        for i in range(0, len(s.value), chunk_points)
    ]
    points = sum(len(p[2]) for p in pieces)
    encode_s, decode_s = [], []
    encoded: list[Any] = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoded = [codec.encode(p) for p in pieces]
        encode_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        decoded = [codec.decode(e) for e in encoded]
        decode_s.append(time.perf_counter() - started)
    for piece, back in zip(pieces, decoded, strict=True):
        for column, name in zip(range(3), ("times", "steps", "values"), strict=True):
            if not _same_bits(piece[column], np.asarray(back[column])):
                raise AssertionError(f"{codec.name} at {chunk_points} points a chunk: {name} did not come back bit for bit")
    size = sum(codec.size(e) for e in encoded)
    return {
        "codec": codec.name,
        "points a chunk": f"{chunk_points:,}",
        "B a point": f"{size / points:.2f}",
        "encode, M points/s": f"{points / min(encode_s) / 1e6:.1f}",
        "decode, M points/s": f"{points / min(decode_s) / 1e6:.1f}",
        "_bytes_per_point": size / points,
        "_encode": points / min(encode_s),
        "_decode": points / min(decode_s),
    }


def sqlite_rows(series: Sequence[Series]) -> dict[str, float]:
    """File bytes a point of the points as rows of a plain 4-column table, and rows/s inserted."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t(name TEXT, step INTEGER, value REAL, time INTEGER)")
        rows = []
        for s in series:
            rows += [(s.name, *point) for point in zip(s.step.tolist(), s.value.tolist(), s.time_unix_nano.tolist(), strict=True)]
        started = time.perf_counter()
        for start in range(0, len(rows), 8_000):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t VALUES (?,?,?,?)", rows[start : start + 8_000])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    return {"bytes_per_point": size / len(rows), "rows_per_s": len(rows) / elapsed}


# --- the run and its document --------------------------------------------------------------------

#: The bars a codec must clear to be chosen, from issue 21's targets. Encoding: a point is encoded
#: about three times on its way into the store (its flush's chunk, then compaction), and all of it
#: should take at most 0.2 µs (a fifth of the 1 ms per 1,000 points of background CPU allowed from
#: ``log`` to the store): 15 M points/s. Decoding: 1 M points in at most 50 ms (half of
#: ``to_dataframe``'s 0.1 s).
MIN_ENCODE_POINTS_PER_S = 15e6
MIN_DECODE_POINTS_PER_S = 20e6
#: The chunk size the choice is made at: what compaction writes (a flush writes smaller ones).
DECIDE_AT = 10_000
#: A flush's chunk: measured on the first ``_FLUSH_PREFIX`` points of each series only, to keep the run short.
FLUSH_CHUNK = 100
_FLUSH_PREFIX = 10_000


def run(*, quick: bool = False, repeats: int = 3, steps: int | None = None, seed: int = 7) -> dict[str, Any]:
    """Every codec at every chunk size; returns the rows and the Markdown document."""
    import os

    steps = steps or (2_000 if quick else 50_000)
    repeats = 1 if quick else repeats
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"generating 20 series x {steps:,} points (seed {seed})")
    series = training_curves(seed, steps)
    prefix = [Series(s.name, s.time_unix_nano[:_FLUSH_PREFIX], s.step[:_FLUSH_PREFIX], s.value[:_FLUSH_PREFIX]) for s in series]
    # Where the choice is made: DECIDE_AT, or the largest measured size a short run reaches.
    decide_at = DECIDE_AT if steps >= DECIDE_AT else max([s for s in CHUNK_SIZES if s <= steps], default=FLUSH_CHUNK)
    rows: list[dict[str, Any]] = []
    by_column: list[dict[str, Any]] = []
    for codec in _codecs():
        for size in (FLUSH_CHUNK, *CHUNK_SIZES):
            if size > steps:
                continue
            say(f"{codec.name}, {size:,} points a chunk")
            row = measure(codec, prefix if size == FLUSH_CHUNK else series, size, repeats)
            if size == FLUSH_CHUNK:
                row["points a chunk"] = f"{size:,} (first {min(_FLUSH_PREFIX, steps):,} of each)"
            rows.append(row)
        if not codec.name.startswith("chunk/"):
            by_column.append(_column_sizes(codec, series, decide_at))
    say("SQLite rows")
    sqlite = sqlite_rows(series)
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    result = {
        "rows": rows,
        "by_column": by_column,
        "sqlite": sqlite,
        "points": sum(len(s.value) for s in series),
        "series": len(series),
        "steps": steps,
        "seed": seed,
        "repeats": repeats,
        "load": (load_before, load_after),
    }
    result["decision"] = decide(rows, decide_at)
    result["markdown"] = markdown(result)
    return result


def _column_sizes(codec: Codec, series: Sequence[Series], chunk_points: int) -> dict[str, Any]:
    """Bytes a point of each column alone, for a columnwise codec."""
    totals = [0, 0, 0]
    points = 0
    for s in series:
        for i in range(0, len(s.value), chunk_points):
            parts, _ = codec.encode((s.time_unix_nano[i : i + chunk_points], s.step[i : i + chunk_points], s.value[i : i + chunk_points]))
            for column, part in enumerate(parts):
                totals[column] += len(part)
            points += len(s.value[i : i + chunk_points])
    return {
        "codec": codec.name,
        "times, B": f"{totals[0] / points:.2f}",
        "steps, B": f"{totals[1] / points:.2f}",
        "values, B": f"{totals[2] / points:.2f}",
    }


def decide(rows: Sequence[dict[str, Any]], at: int) -> dict[str, Any]:
    """The smallest codec at ``at`` points a chunk that clears both speed bars, and the smallest stdlib-only one."""
    label = f"{at:,}"
    candidates = [r for r in rows if r["points a chunk"] == label and not r["codec"].startswith("chunk/")]
    fast = [r for r in candidates if r["_encode"] >= MIN_ENCODE_POINTS_PER_S and r["_decode"] >= MIN_DECODE_POINTS_PER_S]
    best = min(fast or candidates, key=lambda r: r["_bytes_per_point"])
    # The fallback, zlib alone: the smallest that clears the encode bar, or if none does, the cheapest to encode.
    stdlib = [r for r in candidates if "zlib" in r["codec"]]
    cheap = [r for r in stdlib if r["_encode"] >= MIN_ENCODE_POINTS_PER_S]
    fallback = min(cheap, key=lambda r: r["_bytes_per_point"]) if cheap else max(stdlib, key=lambda r: r["_encode"], default=None)
    return {"best": best, "fallback": fallback, "fast": [r["codec"] for r in fast], "at": label}


def _zlib_version() -> str:
    return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


def _find(rows: Sequence[dict[str, Any]], codec: str, at: str) -> dict[str, Any] | None:
    return next((x for x in rows if x["codec"] == codec and x["points a chunk"] == at), None)


def _compare(rows: Sequence[dict[str, Any]], at: str, first: str, second: str) -> str:
    """``first`` against ``second`` at ``at`` points a chunk, in words (empty if either is missing)."""
    a, b = _find(rows, first, at), _find(rows, second, at)
    if not a or not b:
        return ""
    return (
        f"{first} {a['B a point']} B a point ({a['_bytes_per_point'] / b['_bytes_per_point']:.2f} x {second}'s {b['B a point']} B), "
        f"encoding {a['encode, M points/s']} M points/s (vs {b['encode, M points/s']}) "
        f"and decoding {a['decode, M points/s']} (vs {b['decode, M points/s']})"
    )


def markdown(r: dict[str, Any]) -> str:
    """The results document: data, tables, the SQLite reference, the decision."""
    d = r["decision"]
    best, fallback, at, rows = d["best"], d["fallback"], d["at"], r["rows"]
    columns = ["codec", "points a chunk", "B a point", "encode, M points/s", "decode, M points/s"]
    lines = [
        f"# Codecs for per-series chunks ({datetime.date.today().isoformat()}, commit {commit()})",
        "",
        f"`python benchmarks/bench_codecs.py` (issue 21). {r['series']} series x {r['steps']:,} points "
        f"({r['points']:,} points, seed {r['seed']}), each series with its own times and steps: the curves are described "
        "in the script's docstring. Bytes a point count the three columns (times, steps, values) together; `chunk/*` rows "
        "are the whole encoded `SeriesChunk` (16-byte header, 5 bytes a column, CRC). Every chunk was decoded and compared "
        f"bit for bit (NaN payloads included). Throughput: the best of {r['repeats']} passes over all the data, one thread.",
        "",
        f"Machine: {machine()}; load average (1/5/15 min) {r['load'][0]} at the start, {r['load'][1]} at the end "
        "(shared with other work: speeds vary by tens of percent between runs; sizes do not).",
        "",
        versions_line("python", "numpy", "pcodec", "zstandard", "sqlite") + f" {_zlib_version()}.",
        "",
        "## Bytes a point and throughput",
        "",
        markdown_table(rows, columns),
        f"Reference: the same points as rows of a 4-column SQLite table `(name, step, value, time)`: "
        f"**{r['sqlite']['bytes_per_point']:.1f} B a point** (file after a checkpoint; "
        f"{r['sqlite']['rows_per_s'] / 1e6:.2f} M rows/s inserted, WAL, `synchronous=NORMAL`, 8,000 rows a transaction; "
        "SQLite stores a NaN as NULL, so the table does not even hold them losslessly). "
        "Uncompressed, the three columns are 24 B a point.",
        "",
        f"## Each column alone, {at} points a chunk",
        "",
        markdown_table(r["by_column"], ["codec", "times, B", "steps, B", "values, B"]),
        "## Decision",
        "",
        f"The rule, from issue 21's targets: at {at} points a chunk (what compaction writes), among the codecs that encode "
        f"at least {MIN_ENCODE_POINTS_PER_S / 1e6:.0f} M points/s (a point is encoded about three times on its way into the "
        "store, its flush's chunk and then compaction, and all of it should take at most 0.2 µs, a fifth of the 1 ms per "
        f"1,000 points of background CPU allowed from `log()` to the store) and decode at least "
        f"{MIN_DECODE_POINTS_PER_S / 1e6:.0f} M points/s (1 M points in 50 ms, half of `to_dataframe`'s 0.1 s), the smallest. "
        f"Cleared both bars in this run: {', '.join(d['fast']) or 'none'}. Chosen: **{best['codec']}**, "
        f"{best['B a point']} B a point, encoding {best['encode, M points/s']} and decoding {best['decode, M points/s']} M points/s.",
        "",
    ]
    if best["codec"] != "pcodec-4":
        lines += [
            f"**This run's choice is not pcodec-4, which `model/chunk.py` writes**: {_compare(rows, at, 'pcodec-4', best['codec'])}. "
            "Sizes do not change between runs, speeds do on a shared machine: re-run on a quiet one before changing the codec.",
            "",
        ]
    if fallback:
        lines += [
            "With the standard library alone (the fallback): the smallest that clears the encode bar, or if none does, the "
            f"cheapest to encode: **{fallback['codec']}**, "
            f"{fallback['B a point']} B a point ({fallback['_bytes_per_point'] / best['_bytes_per_point']:.2f} x), encoding "
            f"{fallback['encode, M points/s']} and decoding {fallback['decode, M points/s']} M points/s "
            f"({_compare(rows, at, 'shuffle+zlib-6', 'shuffle+zlib-1')}); no zlib codec reaches the decode bar either.",
            "",
        ]
    lines += [
        "What `model/chunk.py` does: pcodec at level 4 (codec id 2) where its wheel is installed, and delta + byte-shuffle "
        "+ zlib level 1 (codec id 1: NumPy and the standard library only; the level is not part of the format) "
        "where it is not; codec id 0 (raw) costs the least "
        "CPU for chunks that live briefly (a flush's, on the queue). Why:",
        "",
        f"- pcodec is the smallest at every chunk size from 1,000 points and decodes fastest. Level 4 against the default 8: "
        f"{_compare(rows, at, 'pcodec-4', 'pcodec-8')}.",
        f"- Zstandard buys speed, not size, on these columns: {_compare(rows, at, 'shuffle+zstd-3', 'shuffle+zlib-6')}. "
        "It is a compiled wheel too: with pcodec for size and speed and zlib as the fallback that is always there, "
        "it has no place left.",
        "- A plain install must deliver to every sink, so the fallback needs nothing compiled. pcodec stays an extra "
        "(`pip install -e '.[chunks]'` in the clone): 1.1 ships wheels for CPython 3.11 to 3.14 on manylinux x86-64 and "
        "aarch64, macOS and Windows, but none for musl (Alpine) and none for 3.10 (1.0.4 has them); where no wheel fits, "
        "pip builds it from source, which needs Rust, and the whole install would fail. pcodec 1.0.4 and 1.1.0 read "
        "each other's chunks (checked both ways), so the extra asks for `pcodec>=1.0,<2`.",
        "- The cost of the extra: a store written with pcodec cannot be read where pcodec is missing (a `ChunkError` "
        "naming the extra). NumPy itself must become a core dependency when the store moves to chunks (it has wheels "
        "everywhere, musl included).",
        "- Small chunks cost more: see the 100-point rows (a flush's chunk) against the 10,000-point ones. Compaction "
        "is what brings the store down to the 10,000-point figure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 steps, one pass, no file unless --out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="where the document goes (default: results/<date>-codecs.md)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, repeats=args.repeats, steps=args.steps, seed=args.seed)
    print(result["markdown"])
    if args.out or not args.quick:
        out = Path(args.out) if args.out else RESULTS / f"{datetime.date.today().isoformat()}-codecs.md"
        out.write_text(result["markdown"])
        say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
