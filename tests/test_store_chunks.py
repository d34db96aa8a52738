"""The chunked store (schema v4): each series' points in chunks, written once each, compacted crash-safely.

Each test writes real batches into a real SQLite file and checks what a reader finds. The
promises under test: whatever is written twice (a batch after a crash, part of a batch, a dead
letter replayed) is stored once, and nothing distinct is lost (the three tests carried over from
the row store, unchanged); the layout chunk_index.py describes (each chunk holds one series'
points, the index counts them, row ids are unique); compaction joins small chunks without losing,
repeating or reordering a point, and a process killed while writing or compacting leaves a store
that opens with every committed point exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch
from otel_recursive_metrics.model.chunk import SeriesChunk
from otel_recursive_metrics.store.compaction import FAN_IN

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
    """Chunks holding points of another series or a wrong count, and row ids given twice."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT c.points, c.first_row_id, c.last_row_id, c.min_time, c.max_time, d.data FROM chunks c"
            " JOIN chunk_data d ON d.chunk_id = c.id"
        ).fetchall()
        orphans = conn.execute("SELECT count(*) FROM chunk_data WHERE chunk_id NOT IN (SELECT id FROM chunks)").fetchone()[0]
        next_row_id = conn.execute("SELECT value FROM meta WHERE key = 'next_row_id'").fetchone()
    finally:
        conn.close()
    problems = []
    row_ids: list[np.ndarray] = []
    for points, first, last, min_time, max_time, data in rows:
        chunk = SeriesChunk.decode(data)
        if len(chunk) != points:
            problems.append(f"a chunk of {len(chunk)} points indexed as {points}")
        if len(chunk) and (chunk.row_id.min() != first or chunk.row_id.max() != last):
            problems.append(f"row ids {chunk.row_id.min()}..{chunk.row_id.max()} indexed as {first}..{last}")
        if len(chunk) and (chunk.time_unix_nano.min() != min_time or chunk.time_unix_nano.max() != max_time):
            problems.append("a chunk's time range is not the index's")
        row_ids.append(chunk.row_id)
    every = np.concatenate(row_ids) if row_ids else np.zeros(0, np.int64)
    if len(np.unique(every)) != len(every):
        problems.append(f"{len(every) - len(np.unique(every))} row id(s) given twice")
    if len(every) and (next_row_id is None or int(next_row_id[0]) <= int(every.max())):
        problems.append("meta.next_row_id would give a row id again")
    if orphans:
        problems.append(f"{orphans} chunk_data row(s) without an index row")
    return problems


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


def test_each_series_of_a_batch_is_one_chunk_of_its_own_points(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = PointStore(path)
    assert store.write_batch(batch(range(0, 100), ranks=(0, 1, 2))) == 600
    assert store.write_batch(batch(range(100, 200), ranks=(0, 1, 2))) == 600
    chunks = store.read("SELECT metric_id, resource_id, points, min_step, max_step, level FROM chunks ORDER BY first_row_id")
    assert len(chunks) == 12 and {c[2] for c in chunks} == {100}, "one chunk per series per batch"
    assert [(c[3], c[4]) for c in chunks] == [(0, 99)] * 6 + [(100, 199)] * 6
    assert {c[5] for c in chunks} == {0}, "as written: level 0"
    assert layout_problems(path) == []
    assert [p.step for p in store.query("loss", rank=1)] == list(range(200))
    assert store.count() == 1200


def snapshot(store: PointStore) -> list[tuple[object, ...]]:
    return [(p.metric, p.resource["training.rank"], p.step, p.time_unix_nano, p.value, p.row_id) for p in store.query()]


def test_compaction_joins_small_chunks_and_keeps_every_point_its_order_and_row_id(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = PointStore(path)
    written = []
    for start in range(0, 40 * 3 * FAN_IN + 7, 40):  # 3 * FAN_IN + 1 batches: compaction runs several times
        store.write_batch(batch(range(start, start + 40), ranks=(0, 1)))
        written.append(start)
    before_close = snapshot(store)
    levels = dict(store.read("SELECT level, count(*) FROM chunks GROUP BY level"))
    assert max(levels) >= 1, f"compaction never ran: {levels}"
    assert levels[0] < FAN_IN * 4, "small chunks are joined as they come, not left to pile up"
    assert layout_problems(path) == []
    store.close()
    reader = PointStore(path, readonly=True)
    assert snapshot(reader) == before_close, "close joined the rest without changing a point"
    assert dict(reader.read("SELECT level, count(*) FROM chunks WHERE level = 0 GROUP BY level")).get(0, 0) <= 4, "one per series at most"
    expected_steps = [s for start in written for s in range(start, start + 40)]
    assert [p.step for p in reader.query("acc", rank=1)] == expected_steps
    assert [p.value for p in reader.query("acc", rank=1)] == [s * 0.5 + 1 for s in expected_steps]
    reader.close()
    assert layout_problems(path) == []


def test_a_series_mixing_integers_and_floats_keeps_each_value_as_it_was(tmp_path: Path) -> None:
    b = BatchBuilder()
    res, scope, metric = b.resource({"training.run.id": "r"}), b.plain_scope("s"), b.metric("m", "", "", "gauge")
    values: list[float | int | None] = [1, 0.5, 2**62 + 1, None, float("inf"), -0.0, 3]
    for i, value in enumerate(values):
        b.add_point(res, scope, metric, "{}", 0, T0 + i, value, i)
    store = PointStore(tmp_path / "m.db")
    assert store.write_batch(b.build()) == len(values)
    got = [p.value for p in store.query("m")]
    assert got == values and [type(v) for v in got] == [type(v) for v in values]
    assert store.write_batch(b.build()) == 0, "written again: nothing new"


_WRITER = r"""
import sys
from otel_recursive_metrics import PointStore
sys.path.insert(0, sys.argv[2])
from test_store_chunks import batch
store = PointStore(sys.argv[1])
rank, steps = int(sys.argv[3]), int(sys.argv[5])
for index in range(int(sys.argv[4])):
    store.write_batch(batch(range(index * steps, index * steps + steps), ranks=(rank,)))
    print(index, flush=True)
store.close()
print("closed", flush=True)
"""


def _writer(path: Path, rank: int, batches: int, steps: int) -> subprocess.Popen[str]:
    """A child process writing ``batches`` batches of ``steps`` steps (two metrics) as rank ``rank``, printing each one committed."""
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(Path(__file__).parent), str(rank), str(batches), str(steps)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("steps", [40, 10], ids=["chunks", "head"])
def test_a_writer_killed_while_writing_and_compacting_leaves_each_batch_whole_and_a_redelivery_adds_nothing_twice(
    tmp_path: Path, steps: int
) -> None:
    """kill -9 at random moments of a writer that compacts as it goes; then the batches again, as a queue would redeliver them.

    Batches of 40 steps make a chunk per series; of 10 steps, head rows that become chunks as the head fills.
    """
    rng = random.Random(21)
    for attempt in range(4):
        path = tmp_path / f"m{attempt}.db"
        child = _writer(path, 0, 9000 // steps, steps)
        # Wait for the first commit (imports take a while), then kill somewhere in the run.
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.strip() == "0", child.stderr.read() if child.stderr else first
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        done = [int(line) for line in (first, *out.splitlines()) if line.strip().isdigit()]
        last = max(done)
        assert layout_problems(path) == [], f"attempt {attempt}"
        store = PointStore(path)
        found = sorted(p.step for p in store.query("loss"))
        # Every batch the writer saw committed is there; the one in flight is there whole or not at all.
        whole = (list(range((last + 1) * steps)), list(range((last + 2) * steps)))
        assert found in whole, f"attempt {attempt}: {len(found)} steps, last {last}"
        # The queue delivers every batch it had not seen acknowledged again, and a few before: none is stored twice.
        for index in range(max(0, last - 3), last + 3):
            store.write_batch(batch(range(index * steps, index * steps + steps)))
        assert sorted(p.step for p in store.query("loss")) == list(range((last + 3) * steps))
        assert store.count() == (last + 3) * steps * 2
        store.close()
        assert layout_problems(path) == []


_COMPACTOR = r"""
import sys
from otel_recursive_metrics import PointStore
from otel_recursive_metrics.store.chunk_index import SeriesKey
from otel_recursive_metrics.store.compaction import compact_series
store = PointStore(sys.argv[1])
keys = [SeriesKey(*row) for row in store.read("SELECT DISTINCT metric_id, resource_id, scope_id, attributes_id FROM chunks")]
print("start", flush=True)
for key in keys:
    compact_series(store._conn, [key], closing=True)
print("done", flush=True)
"""


def test_compaction_killed_at_any_moment_loses_and_repeats_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PointStore, "_compact", lambda self, closing=False: None)  # leave every small chunk
    source = tmp_path / "small.db"
    store = PointStore(source)
    for index in range(300):
        store.write_batch(batch(range(index * 40, index * 40 + 40), ranks=(0, 1), metrics=("loss", "acc", "lr", "grad")))
    expected = snapshot(store)
    store.close()
    assert PointStore(source, readonly=True).read("SELECT count(*) FROM chunks") == [(2400,)]
    rng = random.Random(4)
    finished = 0
    for attempt in range(8):
        path = tmp_path / f"c{attempt}.db"
        path.write_bytes(source.read_bytes())
        child = subprocess.Popen([sys.executable, "-c", _COMPACTOR, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "start", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.0, 0.8))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        finished += "done" in out
        assert layout_problems(path) == [], f"attempt {attempt}"
        reader = PointStore(path, readonly=True)
        assert snapshot(reader) == expected, f"attempt {attempt}: points lost, repeated or changed"
        chunks = reader.read("SELECT count(*) FROM chunks")[0][0]
        reader.close()
        assert chunks <= 2400
    assert finished < 8, "every compaction finished before its kill: the test never interrupted one"


def test_four_processes_writing_one_store_with_compaction_store_every_point_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    writers = [_writer(path, rank, 60, 40) for rank in range(4)]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0 and "closed" in out, err
    store = PointStore(path, readonly=True)
    for rank in range(4):
        assert [p.step for p in store.query("loss", rank=rank)] == list(range(2400))
    assert store.count() == 4 * 2 * 2400
    assert max(r[0] for r in store.read("SELECT level FROM chunks")) >= 1
    store.close()
    assert layout_problems(path) == []


_MOVER = r"""
import sys
from otel_recursive_metrics import PointStore
from otel_recursive_metrics.store.compaction import move_head
store = PointStore(sys.argv[1])
print("start", flush=True)
move_head(store._conn)
print("done", flush=True)
"""


def test_the_head_becomes_chunks_when_full_and_a_kill_while_it_moves_loses_and_repeats_nothing(tmp_path: Path) -> None:
    from otel_recursive_metrics.store.chunk_index import HEAD_BELOW, HEAD_MAX_POINTS

    # A batch of many small series (as an SDK collection gives): every series below HEAD_BELOW points.
    def wide(step: int) -> PointBatch:
        b = BatchBuilder()
        res, scope = b.resource({"training.run.id": "r"}), b.plain_scope("s")
        for i in range(500):
            metric = b.metric(f"m{i % 50}", "", "", "sum", 2, True)
            b.add_point(res, scope, metric, f'{{"k":{i // 50}}}', 1, T0 + step, step * 500 + i, None)
        return b.build()

    path = tmp_path / "head.db"
    store = PointStore(path)
    for step in range(HEAD_MAX_POINTS // 500 - 1):
        store.write_batch(wide(step))
    assert store.read("SELECT count(*) FROM chunk_index") == [(0,)], f"series of 1 point (< {HEAD_BELOW}) stay in the head"
    assert store.read("SELECT count(*) FROM head_points")[0][0] == (HEAD_MAX_POINTS // 500 - 1) * 500
    expected = [(p.metric, p.attributes["k"], p.time_unix_nano, p.value, p.row_id) for p in store.query()]
    assert store.count() == len(expected)
    before_move = path.with_name("before.db")
    conn = sqlite3.connect(path)
    conn.execute("VACUUM INTO ?", (str(before_move),))
    conn.close()
    for step in range(HEAD_MAX_POINTS // 500 - 1, HEAD_MAX_POINTS // 500 + 1):
        store.write_batch(wide(step))  # the head reaches HEAD_MAX_POINTS: it becomes chunks
    assert store.read("SELECT count(*) FROM head_points") == [(0,)]
    assert store.read("SELECT count(*) FROM chunk_index")[0][0] == 500
    got = [(p.metric, p.attributes["k"], p.time_unix_nano, p.value, p.row_id) for p in store.query()]
    assert got[: len(expected)] == expected and len(got) == len(expected) + 1000
    assert store.write_batch(wide(3)) == 0, "a batch given again finds its points in the chunks"
    store.close()
    assert layout_problems(path) == []

    rng = random.Random(7)
    finished = 0
    for attempt in range(6):
        copy = tmp_path / f"move{attempt}.db"
        copy.write_bytes(before_move.read_bytes())
        child = subprocess.Popen([sys.executable, "-c", _MOVER, str(copy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "start", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        finished += "done" in out
        reader = PointStore(copy, readonly=True)
        assert [(p.metric, p.attributes["k"], p.time_unix_nano, p.value, p.row_id) for p in reader.query()] == expected, attempt
        reader.close()
        assert layout_problems(copy) == []
    assert finished < 6, "every move finished before its kill: the test never interrupted one"
