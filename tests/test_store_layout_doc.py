"""The store can be read without this package, from docs/store.md alone.

A child process that cannot import ``otel_recursive_metrics`` reads a store the package wrote
(compacted pcodec chunks, raw level-0 chunks, head rows, integers, missing values and steps, a
record's extra fields) with ``sqlite3``, NumPy and pcodec, following the layout section of
docs/store.md, and must find exactly what ``PointStore.query`` gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder

from .conftest import require_module

T0 = 1_800_000_000_000_000_000

# Written from docs/store.md's "The layout" section, not from the package's code.
_READER = r"""
import json, sqlite3, struct, sys, zlib
sys.modules["otel_recursive_metrics"] = None  # this reader must not lean on the package
import numpy as np
from pcodec import standalone

COLUMNS = {1: "time_unix_nano", 2: "start_time_unix_nano", 3: "step", 4: "step_missing", 5: "epoch",
           6: "epoch_missing", 7: "value", 8: "value_missing", 9: "row_id", 10: "histogram", 11: "extra"}

def numbers(body, codec, dtype, n):
    if codec == 0:
        return np.frombuffer(body, "<" + dtype, n)
    if codec == 2:
        return np.asarray(standalone.simple_decompress(body))
    raw = np.frombuffer(zlib.decompress(body), np.uint8).reshape(8, n).T.copy().view("<" + dtype).reshape(n)
    return np.cumsum(raw, dtype=np.int64) if dtype == "i8" else raw

def mask(body, codec, n):
    bits = body if codec == 0 else zlib.decompress(body)
    return np.unpackbits(np.frombuffer(bits, np.uint8), count=n, bitorder="little").astype(bool)

def texts(body, codec, n):
    raw = body if codec == 0 else zlib.decompress(body)
    lengths = np.frombuffer(raw, "<u4", n)
    out, at = [], 4 * n
    for length in lengths.tolist():
        if length == 0xFFFFFFFF:
            out.append(None)
        else:
            out.append(raw[at:at + length].decode("utf-8")); at += length
    return out

def chunk(data):
    magic, version, codec, kind, count, n, crc = struct.unpack_from("<4sBBBBII", data)
    assert magic == b"ORMC" and version == 1
    assert zlib.crc32(data[16:], zlib.crc32(data[:12])) == crc
    at, cols = 16 + 5 * count, {}
    for i in range(count):
        cid, length = struct.unpack_from("<BI", data, 16 + 5 * i)
        body, name = data[at:at + length], COLUMNS[cid]
        at += length
        if name in ("histogram", "extra"):
            cols[name] = texts(body, codec, n)
        elif name.endswith("_missing"):
            cols[name] = mask(body, codec, n)
        else:
            cols[name] = numbers(body, codec, "f8" if name == "value" and kind == 1 else "i8", n)
    for name in ("start_time_unix_nano", "step", "epoch", "row_id"):
        cols.setdefault(name, np.zeros(n, np.int64))
    for name in ("step", "epoch"):
        cols.setdefault(name + "_missing", np.full(n, name not in cols or not cols[name].any()))
    cols.setdefault("value_missing", np.zeros(n, bool))
    for name in ("histogram", "extra"):
        cols.setdefault(name, [None] * n)
    return cols

conn = sqlite3.connect(sys.argv[1])
names = dict(conn.execute("SELECT id, name FROM metrics"))
points = []
for m, data in conn.execute("SELECT c.metric_id, d.data FROM chunk_index c JOIN chunk_data d ON d.chunk_id = c.id"):
    c = chunk(data)
    for i in range(len(c["time_unix_nano"])):
        value = None if c["value_missing"][i] else c["value"][i].item()
        points.append([names[m], int(c["time_unix_nano"][i]), None if c["step_missing"][i] else int(c["step"][i]),
                       value, c["extra"][i] and json.loads(c["extra"][i]), int(c["row_id"][i])])
for m, t, step, value, extra, row_id in conn.execute(
        "SELECT metric_id, time_unix_nano, step, value, extra, id FROM head_points"):
    points.append([names[m], t, step, value, extra and json.loads(extra), row_id])
points.sort(key=lambda p: p[-1])
print(json.dumps(points))
"""


def test_a_store_reads_without_the_package_from_the_documented_layout(tmp_path: Path) -> None:
    require_module("pcodec", "chunks")
    path = tmp_path / "m.db"
    store = PointStore(path)
    for start in range(0, 40 * 20, 40):  # 20 batches of 40 steps: compacted chunks and raw ones
        b = BatchBuilder()
        res, scope = b.resource({"training.run.id": "r"}), b.plain_scope("s")
        loss, count = b.metric("loss", "", "", "gauge"), b.metric("seen", "", "", "sum", 2, True)
        for step in range(start, start + 40):
            b.add_point(res, scope, loss, "{}", 0, T0 + step, None if step % 17 == 0 else 1 / (step + 1), step)
            b.add_point(res, scope, count, "{}", T0, T0 + step, 2**60 + step, None)
        store.write_batch(b.build())
    b = BatchBuilder()  # a few points of their own series: the head
    res, scope = b.resource({"training.run.id": "r"}), b.plain_scope("s")
    rec = b.metric("record", "", "", "gauge")
    for i in range(5):
        b.add_point(res, scope, rec, "{}", 0, T0 + i, i * 0.5, None, extra={"id": f"rec-{i}"})
    store.write_batch(b.build())
    assert store.read("SELECT count(*) FROM head_points") == [(5,)]
    assert {row[0] for row in store.read("SELECT level FROM chunk_index")} >= {0, 1}
    expected = [[p.metric, p.time_unix_nano, p.step, p.value, p.extra, p.row_id] for p in sorted(store.query(), key=lambda p: p.row_id)]
    store._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    result = subprocess.run([sys.executable, "-c", _READER, str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    store.close()
