"""A dead letter the disk refuses is held in the queue, not dropped (issue 18, 11d).

The disk seam is the dead-letter writer, which raises ``OSError(ENOSPC)`` while the "disk" is
full. The batch's record stays in the durable queue (its sink's cursor does not move) and the
write is tried again with backoff; a stop leaves it for the next start, ``sync`` leaves it for
the next sync. Every point ends stored, dead-lettered or counted, in every case.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .helpers import ScriptedSink, wait_until
from .otlp_receiver import Fault, HttpReceiver
from .test_delivery import make_pipeline, record
from .test_exit_and_offline import log_offline


class FullDisk:
    """Replaces ``DeadLetterQueue.add``: refuses with ENOSPC while ``full``, then writes for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self.refusals = 0
        write = DeadLetterQueue.add

        def add(queue: DeadLetterQueue, *args: Any, **kwargs: Any) -> Any:
            if self.full:
                self.refusals += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(queue, *args, **kwargs)

        monkeypatch.setattr(DeadLetterQueue, "add", add)


def test_a_held_dead_letter_survives_a_stop_and_is_written_at_the_next_start(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk(monkeypatch)
    store, otlp = ScriptedSink("store"), ScriptedSink("otlp", default="permanent")
    pipeline = make_pipeline(data_dir, store, otlp)
    for i in range(20):
        assert pipeline.offer(record(i))
    wait_until(lambda: disk.refusals >= 1, 30, "the disk to refuse the dead letter")
    wait_until(lambda: store.points() == 20, 30, "the store's share")
    pipeline.shutdown(2.0)
    stats = pipeline.get_stats()
    assert stats["dropped_points"] == {} and stats["dead_lettered_points"] == {}, "nothing dropped: the batch is held"
    assert "held in the queue" in stats["last_error"]["otlp"]

    disk.full = False
    otlp_again = ScriptedSink("otlp", default="permanent")
    again = make_pipeline(data_dir, ScriptedSink("store"), otlp_again)
    assert again.offer(record(100))
    wait_until(lambda: again.get_stats()["dead_lettered_points"].get("otlp", 0) == 21, 30, "the held batch's dead letter")
    again.shutdown(5.0)
    entries = list(DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).entries())
    assert sum(e.points for e in entries) == 21, "20 held through the stop, and the new one: each once"
    assert again.get_stats()["dropped_points"] == {}


def test_the_backoff_grows_and_the_write_resumes_by_itself(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk(monkeypatch)
    store, otlp = ScriptedSink("store"), ScriptedSink("otlp", default="permanent")
    pipeline = make_pipeline(data_dir, store, otlp)
    for i in range(10):
        assert pipeline.offer(record(i))
    wait_until(lambda: disk.refusals >= 3, 30, "three refusals (0.5 s, then 1 s apart)")
    assert otlp.attempts == 1, "the batch is not sent again: only its dead letter is retried"
    queue = pipeline._queue
    assert queue is not None and queue.pending("otlp")[1] == 10
    disk.full = False
    wait_until(lambda: queue.pending("otlp")[1] == 0, 30, "the dead letter, once the disk takes it")
    stats = pipeline.get_stats()
    pipeline.shutdown(5.0)
    assert stats["dead_lettered_points"] == {"otlp": 10} and stats["dropped_points"] == {}
    assert stats["sent_points"] == {"store": 10}


def test_sync_leaves_a_batch_whose_dead_letter_the_disk_refuses_for_the_next_sync(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_recursive_metrics.cli.sync import sync_folder

    with HttpReceiver() as rec:
        log_offline(data_dir, rec, 100)
        rec.set_fault(Fault(http_status=401, message="bad token"))
        config = load_config(dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf")
        disk = FullDisk(monkeypatch)
        first = sync_folder(config, retry_s=5.0)
        assert first.left == {"otlp": 100} and first.dead_lettered == {}, first
        assert disk.refusals == 1, "sync tries once and leaves the batch queued"
        assert any("dead letter" in e for e in first.errors), first.errors
        disk.full = False
        second = sync_folder(config, retry_s=5.0)
        assert second.complete and second.dead_lettered == {"otlp": 100}, second
    assert sum(e.points for e in DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).entries()) == 100
