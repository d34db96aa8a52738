"""``overflow=drop_oldest`` at the durable queue's byte cap: who loses what is evicted.

An evicted record is lost only for the sinks whose cursor had not passed it, and a record a sink
is sending (read, not yet finished) is never evicted: its delivery ends it, exactly once. When
the records being sent leave too little to evict, the new batch is refused and counted instead.
The end-to-end runs against a real OTLP receiver are in test_byte_caps.py.
"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.model.batch import STEP
from otel_recursive_metrics.pipeline.buffer import RecordItem
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.folder import DurableQueue, QueueFull

from .helpers import ScriptedSink, wait_until

MIB = 1 << 20


def _payloads(n: int, size: int, points: int = 1) -> list[tuple[int, int, bytes]]:
    return [(i, points, bytes([65 + i % 26]) * size) for i in range(n)]


def test_the_record_a_sink_is_sending_is_not_evicted(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q", ("otlp",), max_bytes=MIB)
    first_id, _ = q.append(_payloads(1, 300_000, points=10), drop_oldest=True)
    q.append(_payloads(2, 300_000, points=20), drop_oldest=True)
    sending = q.next_for("otlp")
    assert sending is not None and sending.id == first_id
    last_id, evicted = q.append(_payloads(2, 300_000, points=30), drop_oldest=True)
    assert evicted == {"otlp": 40}, "the two records after the one being sent make room"
    assert q.payload(first_id) == sending.payload and q.bytes <= MIB
    q.done("otlp", first_id)  # its delivery ends it
    assert q.pending("otlp") == (2, 60)
    _, evicted = q.append(_payloads(1, 500_000, points=5), drop_oldest=True)
    assert evicted == {"otlp": 30}, "the oldest record not being sent goes"
    after = q.next_for("otlp")
    assert after is not None and after.id == last_id
    q.close()


def test_an_evicted_record_counts_only_for_the_sinks_that_had_not_passed_it(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q", ("store", "otlp"), max_bytes=MIB)
    last_id, _ = q.append(_payloads(3, 300_000, points=10), drop_oldest=True)
    q.done("store", last_id - 1)  # the store has the first two, otlp none
    _, evicted = q.append(_payloads(2, 300_000, points=10), drop_oldest=True)
    assert evicted == {"otlp": 20}, "the store already has both evicted records"
    _, evicted = q.append(_payloads(1, 300_000, points=10), drop_oldest=True)
    assert evicted == {"store": 10, "otlp": 10}, "nobody had the third one"
    q.close()


def test_records_being_sent_that_leave_no_room_refuse_the_new_batch(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q", ("store", "otlp"), max_bytes=MIB)
    last_id, _ = q.append(_payloads(2, 400_000, points=10), drop_oldest=True)
    q.done("store", last_id - 1)
    store, otlp = q.next_for("store"), q.next_for("otlp")
    assert store is not None and otlp is not None and {store.id, otlp.id} == {last_id - 1, last_id}  # both are being sent
    with pytest.raises(QueueFull, match="only 0 are not being sent"):
        q.append(_payloads(1, 400_000, points=10), drop_oldest=True)
    assert q.pending("otlp") == (2, 20) and q.pending("store") == (1, 10), "nothing evicted, nothing written"
    q.close()


def _record(i: int) -> RecordItem:
    """A record of about 700 bytes in the queue (its ``note`` is kept with the point, and is noise:
    the queue's payload is compressed)."""
    note = base64.b64encode(random.Random(i).randbytes(640)).decode("ascii")
    fields = {"metric_name": "loss", "value": float(i), "step": i, "note": note, "_time_unix_nano": 1_700_000_000_000_000_000 + i}
    return RecordItem(time.time_ns(), fields)


def test_drop_oldest_drops_the_new_batch_when_only_the_one_being_sent_could_go(data_dir: Path) -> None:
    """One record of about 700 KB is being sent (the receiver hangs) when a second one comes:
    the 1 MiB queue cannot hold both, and the first may not be evicted, so the second is dropped
    and counted; the first is delivered once. Before, the first was evicted *and* delivered."""
    sink = ScriptedSink("store", default="hang")
    # The worker wakes for the persist calls only, so that each chunk becomes one record.
    options = {"flush_interval_s": 5.0, "batch_size": 5_000, "store_direct": False}
    config = load_config(dir=data_dir, sinks="store", max_queue_bytes=MIB, overflow="drop_oldest", **options)
    p = Pipeline(config, sinks=[sink])
    chunk = 1_000
    try:
        for i in range(chunk):
            assert p.offer(_record(i))
        assert p.persist(30.0)
        assert p.get_stats()["queue_bytes"] > MIB // 2, "one record takes more than half the cap"
        wait_until(lambda: sink.attempts >= 1, 30.0, "the sink to start sending the first record")
        for i in range(chunk, 2 * chunk):
            assert p.offer(_record(i))
        assert p.persist(30.0)
        assert p.get_stats()["dropped_points"] == {"queue_full": chunk}
    finally:
        sink.release.set()
    p.flush(30.0)  # False: it reports the drop above
    assert p.flush(30.0), "the first record delivered, nothing else lost"
    p.shutdown(10.0)
    steps = sorted(point[STEP] for batch in sink.batches for point in batch.points)
    assert steps == list(range(chunk)), f"{len(steps)} points delivered, {len(set(steps))} distinct: the first record's, once"
    stats = p.get_stats()
    assert stats["sent_points"] == {"store": chunk} and stats["dropped_points"] == {"queue_full": chunk}
