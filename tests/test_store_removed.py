"""A store removed, replaced or truncated under a running writer: detected, counted, explained.

Each writer checks its file before and after every transaction (store/file_watch.py). A store
removed mid-run is created again and every later point goes there; a truncated one is moved
aside as ``metrics.db.damaged-<time>`` and a fresh store takes its place. The tests remove and
truncate real files under a running ``TrainingMetrics`` and ``RecursiveMetricExporter`` (both the
store-direct path and the queued path), log more, close, and look for every later point.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter, TrainingMetrics
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch

from .helpers import sdk_provider

_STORE_LOGGER = "otel_recursive_metrics.store.point_store"


def _steps(db: Path, metric: str) -> list[int]:
    store = PointStore(db, readonly=True)
    try:
        return sorted(p.step for p in store.query(metric))
    finally:
        store.close()


def _log_steps(metrics: TrainingMetrics, steps: range) -> None:
    for step in steps:
        metrics.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)


def _checkpoint(db: Path) -> None:
    """Copy what the WAL holds into the file, as a long run's automatic checkpoints do."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()


def _store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == _STORE_LOGGER and r.levelno >= logging.WARNING]


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("store_direct", [True, False], ids=["store-direct", "queued"])
def test_a_store_removed_under_training_metrics_is_created_again_with_every_later_point(
    data_dir: Path, caplog: pytest.LogCaptureFixture, store_direct: bool
) -> None:
    caplog.set_level(logging.WARNING)
    db = data_dir / "metrics.db"
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.1, store_direct=store_direct, run_name="rm-run", params={"lr": 0.1})
    _log_steps(metrics, range(200))
    assert metrics.flush(60.0)
    db.unlink()
    _log_steps(metrics, range(200, 500))
    assert metrics.close(60.0)

    assert _steps(db, "loss") == list(range(200, 500)), "every point logged after the removal is in the new store, nothing older"
    assert _steps(db, "acc") == list(range(200, 500))
    stats = metrics.get_stats()
    assert stats["store_recreated"] == {"removed": 1}
    assert stats["store_points_left_behind"] == 400  # 200 steps of 2 values went with the removed file
    assert stats["sent_points"]["store"] == 1000 and not stats["dropped_points"] and not stats["dead_lettered_points"]
    lines = _store_lines(caplog)
    assert len(lines) == 1 and "was removed" in lines[0] and str(db) in lines[0] and "400 point(s)" in lines[0]
    # The run's metadata, logged before the removal, is written again into the new store.
    (run,) = PointStore(db, readonly=True).runs()
    assert run["name"] == "rm-run" and run["params"] == {"lr": 0.1}
    assert _integrity(db) == "ok"


@pytest.mark.parametrize("cut", ["to-zero", "to-half"])
def test_a_store_truncated_under_training_metrics_is_moved_aside_and_a_fresh_one_takes_every_later_point(
    data_dir: Path, caplog: pytest.LogCaptureFixture, cut: str
) -> None:
    caplog.set_level(logging.WARNING)
    db = data_dir / "metrics.db"
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.1)
    _log_steps(metrics, range(2990))
    assert metrics.flush(60.0)
    _checkpoint(db)  # the points are in the file itself now, as after a long run
    _log_steps(metrics, range(2990, 3000))
    assert metrics.flush(60.0)  # and the writer went on after that
    size = db.stat().st_size
    os.truncate(db, 0 if cut == "to-zero" else size // 2)
    _log_steps(metrics, range(3000, 3300))
    assert metrics.close(60.0)

    (damaged,) = sorted(data_dir.glob("metrics.db.damaged-*[0-9Z]"))
    assert damaged.stat().st_size == (0 if cut == "to-zero" else size // 2), "the damaged file is kept as it was cut"
    assert _integrity(db) == "ok"
    assert _steps(db, "loss") == list(range(3000, 3300)), "every point logged after the truncation is in the fresh store"
    stats = metrics.get_stats()
    assert stats["store_recreated"] == {"truncated": 1}
    assert stats["store_points_left_behind"] == 6000
    assert stats["sent_points"]["store"] == 6600 and not stats["dropped_points"] and not stats["dead_lettered_points"]
    lines = _store_lines(caplog)
    assert len(lines) == 1 and "truncated" in lines[0] and str(damaged) in lines[0] and "6000 point(s)" in lines[0]


@pytest.mark.parametrize("store_direct", [True, False], ids=["store-direct", "queued"])
@pytest.mark.parametrize("fault", ["removed", "truncated"])
def test_the_otel_route_survives_a_store_removed_or_truncated(data_dir: Path, fault: str, store_direct: bool) -> None:
    db = data_dir / "metrics.db"
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1, store_direct=store_direct)
    provider = sdk_provider(exporter, {"service.name": "otel-route"})
    counter = provider.get_meter("t").create_counter("requests")
    for i in range(100):
        counter.add(1, {"before": str(i)})
    assert provider.force_flush(60_000) and exporter.pipeline.flush(60.0)
    if fault == "removed":
        db.unlink()
    else:
        _checkpoint(db)
        os.truncate(db, db.stat().st_size // 2)
    for i in range(50):
        counter.add(1, {"after": str(i)})
    assert provider.force_flush(60_000) and exporter.pipeline.flush(60.0)
    stats = exporter.pipeline.get_stats()
    provider.shutdown()

    store = PointStore(db, readonly=True)
    after = {p.attributes["after"] for p in store.query("requests") if "after" in p.attributes}
    assert after == {str(i) for i in range(50)}
    assert stats["store_recreated"] == {fault: 1}
    assert not stats["dropped_points"] and not stats["dead_lettered_points"]


# -- the store itself ------------------------------------------------------------------------------


def _batch(values: range, name: str = "loss", *, noise: bool = False) -> PointBatch:
    b = BatchBuilder()
    res, scope, metric = b.resource({"service.name": "t"}), b.scope("s"), b.metric(name, "", "", "gauge")
    rng = random.Random(values.start)
    for i in values:
        b.add_point(res, scope, metric, "{}", 0, 1_000_000_000 + i, rng.random() if noise else float(i), i)
    return b.build()


def test_a_store_replaced_by_another_file_is_written_from_then_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    db, other = tmp_path / "metrics.db", tmp_path / "other.db"
    store = PointStore(db)
    assert store.write_batch(_batch(range(10))) == 10
    seed = PointStore(other)
    seed.write_batch(_batch(range(100, 105), "restored"))
    seed.close()
    os.replace(other, db)
    assert store.write_batch(_batch(range(10, 20))) == 10
    store.close()
    assert _steps(db, "loss") == list(range(10, 20)) and _steps(db, "restored") == list(range(100, 105))
    assert store.recreated == {"replaced": 1} and store.points_left_behind == 10
    assert len(_store_lines(caplog)) == 1


def test_two_writers_of_one_store_both_go_on_in_the_new_file(tmp_path: Path) -> None:
    db = tmp_path / "metrics.db"
    first, second = PointStore(db), PointStore(db)
    first.write_batch(_batch(range(0, 10)))
    second.write_batch(_batch(range(10, 20)))
    db.unlink()
    first.write_batch(_batch(range(20, 30)))
    second.write_batch(_batch(range(30, 40)))
    first.close()
    second.close()
    assert _steps(db, "loss") == list(range(20, 40))
    assert (first.recreated, second.recreated) == ({"removed": 1}, {"replaced": 1})
    assert _integrity(db) == "ok"


def _keep_steps_below(conn: sqlite3.Connection, step: int) -> None:
    """What ``DELETE FROM points WHERE step >= ?`` did in the row store: chunks rewritten without those points, head rows deleted."""
    from otel_recursive_metrics.model.chunk import SeriesChunk

    for chunk_id, data in conn.execute("SELECT chunk_id, data FROM chunk_data").fetchall():
        chunk = SeriesChunk.decode(data)
        kept = chunk.take(chunk.step < step)
        if len(kept):
            conn.execute("UPDATE chunk_data SET data = ? WHERE chunk_id = ?", (kept.encode(), chunk_id))
            conn.execute("UPDATE chunk_index SET points = ? WHERE id = ?", (len(kept), chunk_id))
        else:
            conn.execute("DELETE FROM chunk_data WHERE chunk_id = ?", (chunk_id,))
            conn.execute("DELETE FROM chunk_index WHERE id = ?", (chunk_id,))
    conn.execute("DELETE FROM head_points WHERE step >= ?", (step,))


def test_a_healthy_store_shrunk_by_a_vacuum_is_not_taken_for_damage(tmp_path: Path) -> None:
    db = tmp_path / "metrics.db"
    store = PointStore(db)
    for start in range(0, 40_000, 4000):
        store.write_batch(_batch(range(start, start + 4000), noise=True))  # noise: chunks compress it little
    _checkpoint(db)
    store.write_batch(_batch(range(45_000, 45_010)))  # the writer has seen the file at its full size
    big = db.stat().st_size
    conn = sqlite3.connect(db, isolation_level=None)
    _keep_steps_below(conn, 1000)
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    assert db.stat().st_size < big / 2
    store.write_batch(_batch(range(50_000, 50_010)))
    store.close()
    assert store.recreated == {}
    assert not list(tmp_path.glob("metrics.db.damaged-*"))
    assert len(_steps(db, "loss")) == 1010  # 1,000 kept by the DELETE, 10 written after the VACUUM


def test_many_batches_through_two_writers_never_raise_a_false_alarm(tmp_path: Path) -> None:
    # Automatic checkpoints by either connection grow the file under the other: never a "truncation".
    db = tmp_path / "metrics.db"
    first, second = PointStore(db), PointStore(db)
    for start in range(0, 60_000, 3000):
        first.write_batch(_batch(range(start, start + 3000), "a"))
        second.write_batch(_batch(range(start, start + 3000), "b"))
    first.close()
    second.close()
    assert first.recreated == {} and second.recreated == {}
    assert len(_steps(db, "a")) == len(_steps(db, "b")) == 60_000


def _store_bytes(tmp_path: Path) -> bytes:
    source = tmp_path / "source.db"
    store = PointStore(source)
    for start in range(0, 20_000, 4000):
        store.write_batch(_batch(range(start, start + 4000)))
    store.close()  # checkpointed: the whole store is in the file
    return source.read_bytes()


def test_a_file_caught_growing_under_a_checkpoint_is_not_taken_for_truncated(tmp_path: Path) -> None:
    from otel_recursive_metrics.store.file_watch import StoreFileWatch

    # Another writer's checkpoint copies pages in order, the header first: for a moment the file
    # is shorter than its header says. It keeps growing, and it ends whole.
    data = _store_bytes(tmp_path)
    path = tmp_path / "metrics.db"
    path.write_bytes(data[: len(data) // 4])
    watch = StoreFileWatch(path)
    watch.reset()
    grown = threading.Event()

    def grow() -> None:
        with path.open("r+b") as f:
            for end in range(len(data) // 4, len(data) + 4096, 4096):
                f.seek(0, os.SEEK_END)
                f.write(data[f.tell() : end])
                f.flush()
                grown.wait(0.02)

    with path.open("ab") as f:
        f.write(data[len(data) // 4 : len(data) // 4 + 4096])
    thread = threading.Thread(target=grow)
    thread.start()
    try:
        assert watch.change() is None
    finally:
        thread.join()
    assert path.stat().st_size == len(data)


def test_a_file_that_stays_shorter_than_its_header_is_taken_for_truncated(tmp_path: Path) -> None:
    from otel_recursive_metrics.store.file_watch import StoreFileWatch

    data = _store_bytes(tmp_path)
    path = tmp_path / "metrics.db"
    path.write_bytes(data[:4096])
    watch = StoreFileWatch(path)
    watch.reset()
    with path.open("ab") as f:
        f.write(data[4096 : len(data) // 2])  # grew, but stays short of what its header counts
    change = watch.change()
    assert change is not None and change.cause == "truncated" and "pages of 4096 bytes" in change.detail
