"""The store without a per-point index: blocks say where each series lies, and keep writes idempotent.

Each test writes real batches into a real SQLite file and checks what a reader finds. The
promise under test is the one the unique index used to keep: whatever is written twice (a batch
after a crash, part of a batch, a dead letter replayed) is stored once, and nothing distinct is
lost; plus the layout blocks.py describes (each block covers only its series' rows).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch

T0 = 1_800_000_000_000_000_000


def batch(steps: range, *, ranks: tuple[int, ...] = (0,), metrics: tuple[str, ...] = ("loss", "acc"), t0: int = T0) -> PointBatch:
    """Points at ``t0 + step`` ns for every step, rank and metric, interleaved as a loop logs them."""
    b = BatchBuilder()
    resources = {rank: b.resource({"training.run.id": "r", "training.rank": rank}) for rank in ranks}
    scope = b.plain_scope("s")
    ids = {name: b.metric(name, "", "", "gauge") for name in metrics}
    for step in steps:
        for rank in ranks:
            for name in metrics:
                b.add_point(resources[rank], scope, ids[name], "{}", 0, t0 + step, step * 0.5 + rank, step)
    return b.build()


def layout_problems(path: Path) -> list[str]:
    """Blocks that cover rows of another series, and points no block covers."""
    conn = sqlite3.connect(path)
    try:
        foreign = conn.execute(
            "SELECT count(*) FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
            " WHERE p.metric_id != b.metric_id OR p.resource_id != b.resource_id"
        ).fetchone()[0]
        uncovered = conn.execute(
            "SELECT count(*) FROM points p WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE p.id BETWEEN b.first_id AND b.last_id)"
        ).fetchone()[0]
        counted = conn.execute("SELECT ifnull(sum(points), 0) FROM blocks").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM points").fetchone()[0]
    finally:
        conn.close()
    problems = []
    if foreign:
        problems.append(f"{foreign} row(s) inside a block of another series")
    if uncovered:
        problems.append(f"{uncovered} row(s) in no block")
    if counted != total:
        problems.append(f"blocks count {counted} points, the table holds {total}")
    return problems


def test_each_series_of_a_batch_is_one_block_of_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = PointStore(path)
    assert store.write_batch(batch(range(0, 100), ranks=(0, 1, 2))) == 600
    assert store.write_batch(batch(range(100, 200), ranks=(0, 1, 2))) == 600
    blocks = store.read("SELECT metric_id, resource_id, points, min_step, max_step FROM blocks ORDER BY first_id")
    assert len(blocks) == 12 and {b[2] for b in blocks} == {100}, "one block per series per batch"
    # Each block knows the steps it covers: the first batch's six series 0..99, the second's 100..199.
    assert [(b[3], b[4]) for b in blocks] == [(0, 99)] * 6 + [(100, 199)] * 6
    assert layout_problems(path) == []
    # Reading one series through its blocks gives its points in time order.
    (metric_id,) = store.read("SELECT id FROM metrics WHERE name = 'loss'")[0]
    resource_id = store.query("loss", rank=1)[0].resource["training.rank"]
    assert resource_id == 1
    rows = store.read(
        "SELECT p.step FROM blocks b JOIN points p ON p.id BETWEEN b.first_id AND b.last_id"
        " JOIN resources r ON r.id = b.resource_id WHERE b.metric_id = ? AND json_extract(r.attributes, '$.\"training.rank\"') = 1"
        " ORDER BY p.id",
        [metric_id],
    )
    assert [r[0] for r in rows] == list(range(200))


def test_what_is_written_again_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = PointStore(path)
    whole = batch(range(0, 1000), ranks=(0, 1))
    first_half, _ = whole.halves()
    assert store.write_batch(first_half) == len(first_half)
    # The whole batch again (a crash after its first half was delivered): only the rest is new.
    assert store.write_batch(PointBatch.decode(whole.encode())) == len(whole) - len(first_half)
    assert store.write_batch(whole) == 0
    assert store.count() == len(whole) == 4000
    assert layout_problems(path) == []
    # Later points go in as usual; a batch repeating points of its own keeps one of each.
    repeated = batch(range(1000, 1010))
    repeated.points.extend(p.copy() for p in repeated.points[:4])
    assert store.write_batch(repeated) == 20
    assert store.write_batch(batch(range(1005, 1012))) == 4, "steps 1010 and 1011 of both metrics"
    assert store.count() == 4000 + 20 + 4
    assert layout_problems(path) == []


def test_distinct_points_that_overlap_in_time_are_all_kept(tmp_path: Path) -> None:
    """Two loggers of one series whose batches interleave in time: compared, and nothing is lost."""
    store = PointStore(tmp_path / "m.db")
    assert store.write_batch(batch(range(0, 100, 2))) == 100
    assert store.write_batch(batch(range(1, 100, 2))) == 100
    assert sorted(p.step for p in store.query("loss")) == list(range(100))


def test_a_batch_back_from_otlp_is_not_stored_again_at_another_step(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    original = batch(range(10))
    assert store.write_batch(original) == 20
    stepless = PointBatch.decode(original.encode())
    for point in stepless.points:
        point[7] = None  # STEP: OTLP carries none
    assert store.write_batch(stepless, steps_unknown=True) == 0
    assert store.write_batch(batch(range(10, 12)), steps_unknown=True) == 4


def test_a_version_2_store_gets_its_blocks_and_keeps_its_points_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = PointStore(path)
    assert store.write_batch(batch(range(50), ranks=(0, 1))) == 200
    store.close()
    # Make it what version 2 wrote: the per-point unique index, no blocks.
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE blocks;"
        " CREATE UNIQUE INDEX points_identity ON points(metric_id, resource_id, time_unix_nano, ifnull(step, -1),"
        " attributes_id, scope_id, start_time_unix_nano);"
        " UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    conn.close()
    reader = PointStore(path, readonly=True)  # a reader of the old layout: no error
    assert len(reader.query("loss")) == 100
    reader.close()
    store = PointStore(path)
    names = {r[0] for r in store.read("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "points_identity" not in names and "blocks_by_series" in names
    assert store.read("SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    assert layout_problems(path) == []
    assert store.write_batch(batch(range(40, 60), ranks=(0, 1))) == 40, "the old points are known: only steps 50-59 are new"
    assert store.count() == 240


def test_batches_of_every_size_use_a_few_statement_texts(tmp_path: Path) -> None:
    """A text per row count once let the sqlite3 statement cache hold hundreds of megabytes."""
    from otel_recursive_metrics.store.statements import RowInsert

    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b, c)")
    texts: set[str] = set()

    class Recording:
        def execute(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
            texts.add(sql)
            return conn.execute(sql, params)

    insert = RowInsert("INSERT INTO t(a, b, c)", "(?,?,0)", 2, 300)
    expected = []
    for rows in range(1, 700, 7):
        values = [v for i in range(rows) for v in (rows, i)]
        last = insert.insert(Recording(), values)  # type: ignore[arg-type]
        expected += [(rows, i, 0) for i in range(rows)]
        assert last == len(expected), "the last row id is the last real row's"
    assert conn.execute("SELECT a, b, c FROM t ORDER BY id").fetchall() == expected, "padding rows are never stored"
    assert len(texts) <= 5, sorted(len(t) for t in texts)
