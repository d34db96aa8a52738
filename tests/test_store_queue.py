"""The SQLite store and the durable queue on their own."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

import otel_recursive_metrics.store.point_store as store_module
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch
from otel_recursive_metrics.queue.folder import DurableQueue, QueueFull
from otel_recursive_metrics.queue.pending import open_folder_slots
from otel_recursive_metrics.store import PointStore


def batch_of(n: int, *, rank: int = 0, run: str = "r1", start: int = 0, metric: str = "loss") -> PointBatch:
    b = BatchBuilder()
    res = b.resource({"service.name": "t", "training.run.id": run, "training.rank": rank})
    sc = b.scope("s")
    m = b.metric(metric, "", "", "gauge")
    for i in range(start, start + n):
        b.add_point(res, sc, m, '{"split":"train"}', 0, 1_000 + i, i * 0.5, i, i // 10)
    return b.build()


def test_store_is_idempotent_and_private(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    batch = batch_of(100)
    assert store.write_batch(batch) == 100
    assert store.write_batch(PointBatch.decode(batch.encode())) == 0  # redelivered after a crash
    assert store.count() == 100
    assert stat.S_IMODE(os.stat(tmp_path / "m.db").st_mode) == 0o600


def test_store_query_filters(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    store.write_batch(batch_of(20, rank=0, run="a"))
    store.write_batch(batch_of(20, rank=1, run="a"))
    store.write_batch(batch_of(20, rank=0, run="b", metric="acc"))
    assert len(store.query("loss")) == 40
    assert len(store.query("loss", rank=1)) == 20
    assert len(store.query(run="b")) == 20
    assert [p.step for p in store.query("loss", rank=0, step_min=5, step_max=7)] == [5, 6, 7]
    assert [p.step for p in store.query("loss", rank=0, start_time_unix_nano=1_018)] == [18, 19]
    assert len(store.query(["loss", "acc"], attributes={"split": "train"}, limit=3)) == 3
    assert store.metric_names() == ["acc", "loss"]
    p = store.query("loss", rank=1, step_min=3, step_max=3)[0]
    assert (p.value, p.epoch, p.attributes, p.resource["training.rank"]) == (1.5, 0, {"split": "train"}, 1)


def _write_rank(path: str, rank: int) -> None:
    store = PointStore(path)
    for chunk in range(20):
        store.write_batch(batch_of(50, rank=rank, start=chunk * 50))
    store.close()


def test_several_processes_write_one_store(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_rank, args=(path, rank)) for rank in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = PointStore(path)
    for rank in range(3):
        assert [p.step for p in store.query("loss", rank=rank)] == list(range(1000))


def _payloads(n: int, size: int) -> list[tuple[int, int, bytes]]:
    return [(i, 1, bytes([65 + i % 26]) * size) for i in range(n)]


def test_queue_byte_cap_drop_oldest_and_drop_newest(tmp_path: Path) -> None:
    mib = 1024 * 1024
    q = DurableQueue(tmp_path / "q", ("store",), max_bytes=mib)
    q.append(_payloads(3, 300_000), drop_oldest=True)
    _, dropped = q.append(_payloads(2, 300_000), drop_oldest=True)
    assert dropped == {"store": 2} and q.bytes <= mib
    assert q.pending("store") == (3, 3)
    with pytest.raises(QueueFull):
        q.append(_payloads(1, 300_000), drop_oldest=False)
    assert q.pending("store") == (3, 3)  # nothing written, nothing lost
    q.close()


def test_queue_cursors_survive_restart_and_records_go_when_every_sink_is_done(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q", ("store", "otlp"), max_bytes=10**9)
    last, _ = q.append(_payloads(4, 10), drop_oldest=True)
    first = q.next_for("store")
    assert first is not None
    q.done("store", last)
    assert q.pending("store") == (0, 0) and q.pending("otlp") == (4, 4)
    q.close()
    again = DurableQueue(tmp_path / "q", ("store", "otlp"), max_bytes=10**9)
    assert again.next_for("store") is None
    rec = again.next_for("otlp")
    assert rec is not None and rec.id == first.id  # in flight at the "crash": sent again
    again.done("otlp", last)
    assert again.pending() == (0, 0) and again.bytes == 0
    again.close()


def test_queue_slots_and_orphan_adoption(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    a = DurableQueue(folder, ("store",), max_bytes=10**9)
    b = DurableQueue(folder, ("store",), max_bytes=10**9)
    c = DurableQueue(folder, ("store",), max_bytes=10**9)
    assert (a.slot, b.slot, c.slot) == (0, 1, 2)  # live processes never share a slot
    b.append(_payloads(5, 10), drop_oldest=True)
    c.append(_payloads(7, 10), drop_oldest=True)
    b.close()  # as if those ranks died: locks free, records undelivered
    c.close()
    e = DurableQueue(folder, ("store",), max_bytes=10**9)
    assert e.slot == 1 and e.adopted_records == 7
    assert e.pending("store") == (12, 12)
    assert not (folder / "slot-2.db").exists()
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    a.close()
    e.close()


def test_an_orphan_that_does_not_fit_the_byte_cap_stays_for_a_later_start(tmp_path: Path) -> None:
    """Adoption writes under the adopting queue's byte cap: what does not fit is neither adopted
    past the cap nor lost, it waits in the orphan's own file."""
    folder = tmp_path / "q"
    live = DurableQueue(folder, ("store",), max_bytes=10**9)  # holds slot 0 throughout
    empty = DurableQueue(folder, ("store",), max_bytes=10**9)
    orphan = DurableQueue(folder, ("store",), max_bytes=10**9)
    assert (empty.slot, orphan.slot) == (1, 2)
    orphan.append(_payloads(7, 1000), drop_oldest=True)
    empty.close()
    orphan.close()

    small = DurableQueue(folder, ("store",), max_bytes=5000)
    assert small.slot == 1 and small.adopted_records == 0
    assert small.pending("store") == (0, 0) and small.bytes == 0
    assert (folder / "slot-2.db").exists()
    small.close()

    roomy = DurableQueue(folder, ("store",), max_bytes=10**9)
    assert roomy.slot == 1 and roomy.adopted_records == 7
    assert roomy.pending("store") == (7, 7)
    assert not (folder / "slot-2.db").exists()
    roomy.close()
    live.close()


def test_folder_slots_are_released_when_their_block_ends(tmp_path: Path) -> None:
    """``open_folder_slots`` frees every lock it took, on an error too, and keeps undelivered files."""
    folder = tmp_path / "q"
    orphan = DurableQueue(folder, ("store", "otlp"), max_bytes=10**9)
    orphan.append(_payloads(3, 10), drop_oldest=True)
    orphan.close()
    with pytest.raises(RuntimeError), open_folder_slots(folder) as slots:
        assert [(set(p.sinks), p.live, p.until_id) for p in slots] == [({"store", "otlp"}, False, 3)]
        raise RuntimeError("a sink failed")
    assert (folder / "slot-0.db").exists()
    again = DurableQueue(folder, ("store", "otlp"), max_bytes=10**9)
    assert again.slot == 0 and again.pending("otlp") == (3, 3)
    again.close()


def test_point_batch_merge() -> None:
    one, other = batch_of(3, run="a"), batch_of(2, run="b", start=3, metric="acc")
    assert PointBatch.merge([one]) is one
    merged = PointBatch.merge([one, other], batch_id="m")
    assert merged.id == "m" and len(merged) == 5
    assert [(m[0], p[7]) for p in merged.points for m in [merged.metrics[p[2]]]] == [("loss", i) for i in range(3)] + [
        ("acc", 3),
        ("acc", 4),
    ]
    assert [merged.resources[p[0]][0]["training.run.id"] for p in merged.points] == ["a"] * 3 + ["b"] * 2
    assert PointBatch.merge([]).points == []


def test_point_batch_round_trip_and_split() -> None:
    b = batch_of(10)
    again = PointBatch.decode(b.encode())
    assert again.points == b.points and again.resources == b.resources
    parts = b.split(4)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert [p[7] for part in parts for p in part.points] == list(range(10))
    with pytest.raises(ValueError):
        PointBatch.decode(b'{"v": 2}')


def test_nan_and_infinity_values_are_stored(tmp_path: Path) -> None:
    b = BatchBuilder()
    res, sc, m = b.resource({}), b.scope("s"), b.metric("loss", "", "", "gauge")
    b.add_point(res, sc, m, "{}", 0, 1, float("nan"), 0)
    b.add_point(res, sc, m, "{}", 0, 2, float("inf"), 1)
    batch = PointBatch.decode(b.build().encode())
    store = PointStore(tmp_path / "m.db")
    assert store.write_batch(batch) == 2
    assert [p.value for p in store.query("loss")] == [None, float("inf")]  # SQLite keeps NaN as NULL


def test_overlapping_batches_store_each_point_once(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    assert store.write_batch(batch_of(100)) == 100
    # 50 already there, 150 new, in groups that mix both.
    assert store.write_batch(batch_of(200, start=50)) == 150
    assert [p.step for p in store.query("loss")] == list(range(250))


def test_the_attribute_cache_refills_after_it_is_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_ATTR_CACHE_MAX", 3)
    store = PointStore(tmp_path / "m.db")
    for round_ in range(3):
        b = BatchBuilder()
        res, sc, m = b.resource({}), b.scope("s"), b.metric("loss", "", "", "gauge")
        for i in range(4):
            b.add_point(res, sc, m, f'{{"k":"{i}"}}', 0, round_ * 10 + i, 1.0)
        assert store.write_batch(b.build()) == 4
    assert store.count() == 12
