"""Conservation under small byte caps: what the queue or the dead-letter folder refuses is counted.

The seeded conservation runs (test_conservation.py) use the default caps, 1 GiB of durable queue
and 256 MiB of dead letters, which no test reaches. Here the caps are small and the receiver (a
real loopback OTLP/HTTP one) refuses long enough for them to bite: with a retryable 503 (or an
offline run) the queue fills past ``max_queue_bytes``; with a permanent 400 every batch is
dead-lettered until ``dead_letter_max_bytes`` is reached. Then, for each sink::

    points delivered (unique) + points dead-lettered + points counted as dropped (for every sink,
    or for this sink alone) == points logged

exactly, and the drop reason the cap stands for (``queue_full``, ``dead_letter_full``) is non-zero.
"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.cli import main
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .otlp_receiver import Fault, HttpReceiver
from .test_conservation import dead_lettered_keys, received_keys

MIB = 1 << 20
#: Points logged per chunk; each chunk is put on disk before the next, so the memory buffer never
#: overflows and every drop is the queue's.
CHUNK = 5_000
#: At about 100 bytes a point in the queue (its note, which compresses no further), 30,000
#: points are two to three times its 1 MiB cap.
CHUNKS = 6
FAST = {"flush_interval_s": 0.2, "retry_delay_s": 0.05, "retry_max_delay_s": 0.2, "retry_jitter": 0.0, "max_batch_points": 200}


def pipeline(data_dir: Path, rec: HttpReceiver, **options: Any) -> Pipeline:
    settings = {**FAST, **options}
    return Pipeline(load_config(dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf", **settings))


def note(i: int) -> str:
    """100 characters of noise, kept with the point (in the queue, not sent over OTLP): the
    queue's payload is compressed, and the points alone would take only a few bytes each."""
    return base64.b64encode(random.Random(i).randbytes(75)).decode("ascii")


def log_records(p: Pipeline, chunks: int = CHUNKS, chunk: int = CHUNK) -> int:
    """Submit ``chunks * chunk`` records (value = step = a number of its own); returns how many."""
    collector = AsyncMetricsCollector({}, pipeline=p)
    total = chunks * chunk
    for start in range(0, total, chunk):
        for i in range(start, start + chunk):
            collector.submit_metric({"metric_name": f"m{i % 3}", "value": float(i), "step": i, "note": note(i)})
        assert p.persist(30.0), "each chunk is on disk (or counted) before the next"
    return total


def deliver_pending(p: Pipeline) -> None:
    """Flush until nothing waits in the queue (a flush answers False after losses, so loop)."""
    deadline = time.monotonic() + 120
    while not p.flush(10.0) and p.get_stats()["queue_points"] and time.monotonic() < deadline:
        pass
    assert p.get_stats()["queue_points"] == 0, p.get_stats()


def stored_keys(data_dir: Path) -> set[tuple[str, float]]:
    store = data_dir / "metrics.db"
    if not store.exists():
        return set()
    return {(pt.metric, float(pt.step)) for pt in PointStore(store, readonly=True).query() if pt.step is not None}


def assert_conserved(stats: dict[str, Any], by_sink: dict[str, set[tuple[str, float]]], logged: int) -> None:
    """The invariant of the module's docstring, per sink, with the counters of ``get_stats()``."""
    one_sink = stats["sink_dropped_points"]
    all_sinks = sum(stats["dropped_points"].values()) - sum(one_sink.values())
    for sink, keys in by_sink.items():
        dropped = all_sinks + one_sink.get(sink, 0)
        assert len(keys) + dropped == logged, (
            f"{sink}: {len(keys)} delivered or dead-lettered + {dropped} dropped != {logged} logged"
            f" (dropped: {dict(stats['dropped_points'])}, for one sink: {dict(one_sink)})"
        )


def test_queue_full_drop_newest_with_the_receiver_refusing_is_counted(data_dir: Path) -> None:
    """``overflow=drop_newest``: past the cap new chunks are refused, and counted for every sink."""
    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=503, retry_after="0"))  # retryable: the otlp share stays queued
        p = pipeline(data_dir, rec, sinks="store,otlp", max_queue_bytes=MIB, overflow="drop_newest")
        logged = log_records(p)
        stats = p.get_stats()
        assert stats["dropped_points"].get("queue_full", 0) > 0, f"no queue_full drop counted: {stats['dropped_points']}"
        assert stats["queue_bytes"] <= MIB, "the queue stays within its byte cap"
        rec.set_fault(None)  # the receiver is back: everything queued is delivered
        deliver_pending(p)
        p.shutdown(10.0)
        stats = p.get_stats()
        by_sink = {
            "store": stored_keys(data_dir) | dead_lettered_keys(data_dir, "store"),
            "otlp": received_keys(rec) | dead_lettered_keys(data_dir, "otlp"),
        }
    assert set(stats["dropped_points"]) == {"queue_full"}, stats["dropped_points"]
    assert_conserved(stats, by_sink, logged)


def test_queue_full_drop_oldest_offline_is_counted_and_sync_delivers_the_rest(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``overflow=drop_oldest`` (the default) in an offline run: past the cap the oldest records
    are evicted and counted; ``sync`` later delivers what the queue kept.

    One sink, and no sink sending meanwhile (the two tests below cover a sink sending while
    records are evicted, and a sink that already has some of them).
    """
    with HttpReceiver() as rec:
        p = pipeline(data_dir, rec, sinks="otlp", offline=True, max_queue_bytes=MIB, overflow="drop_oldest")
        logged = log_records(p)
        stats = p.get_stats()
        assert stats["dropped_points"].get("queue_full", 0) > 0, f"no queue_full drop counted: {stats['dropped_points']}"
        assert 0 < stats["queue_points"] < logged and stats["queue_bytes"] <= MIB, stats
        p.shutdown(10.0)
        stats = p.get_stats()
        capsys.readouterr()
        code = main(["sync", "--dir", str(data_dir), "--endpoint", rec.endpoint, "--protocol", "http/protobuf"])
        err = capsys.readouterr().err
        assert code == 0, err
        by_sink = {"otlp": received_keys(rec) | dead_lettered_keys(data_dir, "otlp")}
    assert set(stats["dropped_points"]) == {"queue_full"}, stats["dropped_points"]
    assert_conserved(stats, by_sink, logged)


def test_dead_letter_full_is_counted_for_its_sink(data_dir: Path) -> None:
    """A receiver that refuses every batch for good (HTTP 400): dead letters until the folder's
    cap, then ``dead_letter_full`` drops for that sink alone; the store keeps everything."""
    cap = 100_000
    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=400, message="bad data"))
        p = pipeline(data_dir, rec, sinks="store,otlp", dead_letter_max_bytes=cap, max_batch_points=100)
        logged = log_records(p, chunks=3, chunk=1_000)
        deliver_pending(p)
        p.shutdown(10.0)
        stats = p.get_stats()
        by_sink = {
            "store": stored_keys(data_dir) | dead_lettered_keys(data_dir, "store"),
            "otlp": received_keys(rec) | dead_lettered_keys(data_dir, "otlp"),
        }
    assert stats["dead_lettered_points"].get("otlp", 0) > 0, "some batches fit under the cap"
    assert stats["dropped_points"].get("dead_letter_full", 0) > 0, f"no dead_letter_full drop counted: {stats['dropped_points']}"
    assert stats["sink_dropped_points"] == {"otlp": stats["dropped_points"]["dead_letter_full"]}, stats
    assert sum(e.bytes for e in DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40).entries()) <= cap
    assert_conserved(stats, by_sink, logged)


def test_queue_full_drop_oldest_while_the_sink_retries_counts_each_point_once(data_dir: Path) -> None:
    """The record the sink is retrying when the queue fills is not evicted: it is delivered once
    when the receiver is back, and only the records evicted around it count as ``queue_full``."""
    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=503, retry_after="0"))
        p = pipeline(data_dir, rec, sinks="otlp", max_queue_bytes=MIB, overflow="drop_oldest")
        logged = log_records(p)
        assert p.get_stats()["dropped_points"].get("queue_full", 0) > 0
        rec.set_fault(None)
        deliver_pending(p)
        p.shutdown(10.0)
        stats = p.get_stats()
        by_sink = {"otlp": received_keys(rec) | dead_lettered_keys(data_dir, "otlp")}
    assert_conserved(stats, by_sink, logged)


def test_queue_full_drop_oldest_counts_only_for_the_sinks_that_lose_the_points(data_dir: Path) -> None:
    """The store keeps up, otlp waits for ``sync``: a record evicted after the store had it is
    dropped for otlp alone (``sink_dropped_points``); one neither had, for both."""
    with HttpReceiver() as rec:
        p = pipeline(data_dir, rec, sinks="store,otlp", offline=True, max_queue_bytes=MIB, overflow="drop_oldest")
        logged = log_records(p)
        assert p.get_stats()["dropped_points"].get("queue_full", 0) > 0
        p.shutdown(10.0)
        stats = p.get_stats()
        assert main(["sync", "--dir", str(data_dir), "--endpoint", rec.endpoint, "--protocol", "http/protobuf"]) == 0
        by_sink = {
            "store": stored_keys(data_dir) | dead_lettered_keys(data_dir, "store"),
            "otlp": received_keys(rec) | dead_lettered_keys(data_dir, "otlp"),
        }
    assert_conserved(stats, by_sink, logged)
