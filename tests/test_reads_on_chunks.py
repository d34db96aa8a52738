"""The readers over chunks: time order by windows, ``--follow`` across compaction, and text as Python prints it.

The store is written through :meth:`PointStore.write_batch` (the pipeline's batches) with what
makes time order hard: series that overlap in time, times shared across series, step-less points,
a late batch older than what its series holds (few points a series: rows of the head), and enough
batches for compaction to join chunks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.attributes import canonical_json
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch
from otel_recursive_metrics.store import ordered_reads
from otel_recursive_metrics.store.chunk_index import HEAD_BELOW
from otel_recursive_metrics.store.compaction import FAN_IN, move_head
from otel_recursive_metrics.store.export import PointWriter
from otel_recursive_metrics.store.number_text import float_pieces, int_field, join_rows
from otel_recursive_metrics.store.ordered_reads import ordered_points, ordered_windows
from otel_recursive_metrics.store.point_reads import query_columns
from otel_recursive_metrics.store.points import PointQuery, StoredPoint
from otel_recursive_metrics.store.scan import Columns

T0 = 1_767_225_600_000_000_000
RUNS = ("r,1", 'q"2')


def _batch(first_step: int, steps: int, *, time_offset: int = 0, seed: int = 0) -> PointBatch:
    """``steps`` steps of three metrics for two runs; the metrics of one step share its time."""
    rng = np.random.default_rng(first_step + seed)
    builder = BatchBuilder()
    for rank, run in enumerate(RUNS):
        resource = builder.resource({"training.run.id": run, "training.rank": rank})
        scope = builder.plain_scope("trainer")
        loss, tokens, lr = (builder.metric(name, "", "", "gauge") for name in ("train.loss", "train.tokens", "train.lr"))
        for step in range(first_step, first_step + steps):
            time = T0 + step * 1_000_000 + time_offset
            stepless = step % 11 == 0
            builder.add_point(
                resource, scope, loss, '{"split":"tr,\\"ain\\""}', 0, time, float(rng.random()), None if stepless else step, step // 50
            )
            builder.add_point(resource, scope, tokens, "{}", 0, time, 2**60 + step, step, None)
            builder.add_point(resource, scope, lr, "{}", 0, time, 10.0 ** -int(rng.integers(1, 6)), step, None)
    return builder.build()


def _write(path: Path, batches: list[PointBatch]) -> None:
    store = PointStore(path)
    try:
        for batch in batches:
            store.write_batch(batch)
    finally:
        store.close()


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.db"
    batches = [_batch(step, 40) for step in range(0, 20 * 40, 40)]
    batches.append(_batch(100, 10, time_offset=7, seed=1))  # late (older than what its series holds), and rows of the head
    _write(path, batches)
    return path


@pytest.fixture
def store(store_file: Path) -> Iterator[PointStore]:
    opened = PointStore(store_file, readonly=True)
    yield opened
    opened.close()


def _assert_same_columns(got: Columns, expected: Columns) -> None:
    for f in fields(Columns):
        a, b = getattr(got, f.name), getattr(expected, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f.name
        else:
            assert a == b, f.name


def _joined(windows: list[ordered_reads.OrderedPoints]) -> Columns:
    parts = [w.columns() for w in windows]
    out: dict[str, Any] = {}
    for f in fields(Columns):
        values = [getattr(c, f.name) for c in parts]
        if isinstance(values[0], np.ndarray):
            out[f.name] = np.concatenate(values)
        else:
            out[f.name] = (
                None if all(v is None for v in values) else [t for v, c in zip(values, parts, strict=True) for t in (v or [None] * len(c))]
            )
    return Columns(**out)


@pytest.mark.parametrize(
    "query", [PointQuery(), PointQuery("train.loss", step_min=5, step_max=600), PointQuery(run="r,1", last=7), PointQuery(limit=333)]
)
def test_windows_give_the_points_in_query_order_whatever_their_size(
    store: PointStore, query: PointQuery, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = query_columns(store, query)
    assert len(expected) > 0
    _assert_same_columns(ordered_points(store, query).columns(), expected)
    levels = {row[0] for row in store.read("SELECT DISTINCT level FROM chunks")}
    assert levels != {0}, "compaction joined chunks: some span many windows"
    # As they are; then too little room: chunks kept in part (16 points), and decoded again when those run out.
    for cache_points, least_kept in ((ordered_reads.CACHE_POINTS, ordered_reads._LEAST_KEPT), (50, 16)):
        monkeypatch.setattr(ordered_reads, "CACHE_POINTS", cache_points)
        monkeypatch.setattr(ordered_reads, "_LEAST_KEPT", least_kept)
        for window_points in (100, 997):
            windows = list(ordered_windows(store, query, window_points=window_points))
            assert query.last is not None or query.limit is not None or len(windows) > 1
            _assert_same_columns(_joined(windows), expected)


def test_a_compaction_between_two_windows_misses_no_point_and_repeats_none(store_file: Path, store: PointStore) -> None:
    snapshot = int(store.read("SELECT max(last_row_id) FROM chunks")[0][0])
    query = PointQuery(max_row_id=snapshot)
    expected = query_columns(store, query)
    windows = ordered_windows(store, query, window_points=200)
    first = next(windows)
    before = {row[0] for row in store.read("SELECT id FROM chunks")}
    # FAN_IN**2 more batches: each series gets FAN_IN new chunks of level 1, joined with the ones the read is in.
    _write(store_file, [_batch(step, HEAD_BELOW, seed=2) for step in range(5000, 5000 + HEAD_BELOW * FAN_IN**2, HEAD_BELOW)])
    after = {row[0] for row in store.read("SELECT id FROM chunks")}
    assert before - after, "chunks the read had not reached yet were joined into others"
    _assert_same_columns(_joined([first, *windows]), expected)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_follow_prints_each_point_once_across_compactions_and_head_moves(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    writer = PointStore(path)
    reader = PointStore(path, readonly=True)
    try:
        followed = io.StringIO()
        follow = PointWriter(reader, "csv", followed)
        step = 0

        def write(batches: int, steps: int) -> None:
            nonlocal step
            for _ in range(batches):
                writer.write_batch(_batch(step, steps))
                step += steps

        def chunk_ids() -> set[int]:
            return {row[0] for row in reader.read("SELECT id FROM chunk_index")}

        query = PointQuery()
        write(3, HEAD_BELOW)  # series of HEAD_BELOW points a batch: chunks
        _, last = follow.write(query)
        printed = [follow.written]
        write(2, 3)  # three points a series: rows of the head
        assert reader.read("SELECT count(*) FROM head_points")[0][0] > 0
        _, last = follow.write(query, after_row_id=last)
        printed.append(follow.written)
        # The head's rows, printed from the head, become chunks (as when it fills up).
        with sqlite3.connect(path, isolation_level=None) as conn:
            move_head(conn)
        assert reader.read("SELECT count(*) FROM head_points")[0][0] == 0
        joined = []
        for batches in (FAN_IN, FAN_IN + 1):
            before = chunk_ids()
            write(batches, HEAD_BELOW)  # FAN_IN new chunks in a series: joined with the ones printed before
            joined.append(bool(before - chunk_ids()))
            _, last = follow.write(query, after_row_id=last)
            printed.append(follow.written)
        assert joined == [True, True], "chunks with points printed before were joined with new ones"
        everything = io.StringIO()
        assert PointWriter(reader, "csv", everything).write(query)[0] == follow.written == reader.count()
        assert printed == sorted(set(printed)), "every poll found new points"
        assert _lines(followed.getvalue()) == _lines(everything.getvalue())
    finally:
        reader.close()
        writer.close()


def _csv_cells(*cells: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()[:-2]


def _csv_line(p: StoredPoint) -> str:
    """A point's CSV line as the per-point writer made it (f-strings over StoredPoint's fields)."""
    head = _csv_cells(p.metric, p.kind, p.resource.get("training.run.id", ""), p.resource.get("training.rank", ""))
    step = "" if p.step is None else p.step
    epoch = "" if p.epoch is None else p.epoch
    if p.histogram is not None:
        value: Any = _csv_cells(f"count={p.histogram['count']} sum={p.histogram['sum']!r}")
    else:
        value = "" if p.value is None else p.value
    return f"{head},{step},{epoch},{value},{p.time_unix_nano},{_csv_cells(canonical_json(p.attributes))}\r\n"


def _json_line(p: StoredPoint) -> str:
    """A point's JSON line as the per-point writer made it."""
    value = "null" if p.value is None else "Infinity" if p.value == math.inf else "-Infinity" if p.value == -math.inf else p.value
    null = "null"
    return (
        f'{{"metric":{json.dumps(p.metric)},"kind":{json.dumps(p.kind)},"unit":{json.dumps(p.unit)},"value":{value},'
        f'"attributes":{canonical_json(p.attributes)},"resource":{canonical_json(p.resource)},"scope":{json.dumps(p.scope)},'
        f'"start_time_unix_nano":{p.start_time_unix_nano},"time_unix_nano":{p.time_unix_nano},'
        f'"step":{null if p.step is None else p.step},"epoch":{null if p.epoch is None else p.epoch},'
        f'"temporality":{p.temporality},"monotonic":{"true" if p.monotonic else "false"},'
        f'"histogram":{null if p.histogram is None else json.dumps(p.histogram)},'
        f'"extra":{null if p.extra is None else json.dumps(p.extra)}}}\n'
    )


def test_csv_and_json_are_byte_for_byte_the_per_point_text(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": "r,1", "training.rank": "3", "é": 'ü"'})
    bare = builder.resource({"service.name": "no run"})
    scope = builder.scope('sc"ope é')
    gauge = builder.metric("ünï.loss", "", "", "gauge")
    counter = builder.metric("tokens", "", "1", "sum", 2, True)
    histogram = builder.metric("lat", "", "ms", "histogram", 2)
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e16, 1e15, 1e-5, 1.5e-5, 1e-4, 5e-324, 1.7976931348623157e308, 2.0, 0.1]
    rng = np.random.default_rng(3)
    for i in range(400):
        time = T0 + i * 1000
        value = specials[i % len(specials)] if i % 3 == 0 else float(rng.random() * 10.0 ** rng.integers(-9, 18))
        for res in (resource, bare):
            builder.add_point(res, scope, gauge, '{"k":"a,\\"b"}', 0, time, value, None if i % 7 == 0 else i, i // 100)
            builder.add_point(res, scope, counter, "{}", T0, time, [-(2**63), 2**63 - 1, 0, -5, i][i % 5], i, None)
            if i % 10 == 0:
                hist = {"count": i, "sum": i / 3, "min": 0.0, "max": 1.5, "bounds": [0.1, 1.0], "counts": [1, 2, i]}
                builder.add_point(res, scope, histogram, "{}", T0, time, None, None, None, histogram=hist, extra={"id": f"x{i}"})
    _write(path, [builder.build()])
    store = PointStore(path, readonly=True)
    try:
        points = store.query()
        for fmt, line, header in (
            ("csv", _csv_line, "metric,kind,run,rank,step,epoch,value,time_unix_nano,attributes\r\n"),
            ("json", _json_line, ""),
        ):
            out = io.StringIO()
            PointWriter(store, fmt, out).write(PointQuery())
            assert out.getvalue() == header + "".join(line(p) for p in points)
    finally:
        store.close()


def _float_texts(values: np.ndarray) -> list[str]:
    return join_rows([*float_pieces(values, nan="nan", infinities=("inf", "-inf")), b"\n"], len(values)).decode().split("\n")[:-1]


def test_floats_are_written_as_repr_writes_them() -> None:
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**63, 100_000, dtype=np.uint64) | (rng.integers(0, 2, 100_000, dtype=np.uint64) << np.uint64(63))
    edges = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 1e15]
    edges += [9999999999999998.0, 0.0001, 0.00001, 1.5e-5, 0.5, 1e22, 1e23, 1 / 3, 2.0**53, 2.0**63, 0.1, 0.2, 0.3]
    values = np.concatenate(
        [
            bits.view(np.float64),
            rng.random(20_000),
            rng.random(20_000).astype(np.float32).astype(np.float64),  # exact ties: left to repr
            np.round(rng.random(20_000) * 1e6) / 10.0 ** rng.integers(0, 9, 20_000),
            np.array([2.0**e for e in range(-1074, 1024)] + [10.0**e for e in range(-323, 309)] + edges),
        ]
    )
    assert _float_texts(values) == [repr(v) for v in values.tolist()]


def test_integers_are_written_as_str_writes_them() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([np.array([0, -1, 9, 10, -(2**63), 2**63 - 1, 10**18, -(10**18)]), rng.integers(-(2**63), 2**63 - 1, 50_000)])
    missing = rng.random(len(values)) < 0.1
    got = join_rows([int_field(values, missing, "null"), b"\n"], len(values)).decode().split("\n")[:-1]
    assert got == ["null" if m else str(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


def test_a_store_without_points_gives_one_empty_window(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    PointStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    store = PointStore(path, readonly=True)
    try:
        (window,) = ordered_windows(store, PointQuery())
        assert len(window) == 0 and len(window.columns().time_unix_nano) == 0
        out = io.StringIO()
        assert PointWriter(store, "csv", out).write(PointQuery()) == (0, 0)
        assert out.getvalue() == "metric,kind,run,rank,step,epoch,value,time_unix_nano,attributes\r\n"
    finally:
        store.close()
