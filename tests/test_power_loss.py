"""Durability on power loss: the durable queue is checkpointed (and so fsynced) once per flush interval.

Writes to a queue slot commit into SQLite's WAL with ``synchronous=NORMAL``: safe against
``kill -9`` at any instant (the kernel keeps the file), but not against a power loss, since a
commit does not fsync. What makes them survive one is :meth:`QueueSlot.sync`, which the worker
calls every ``flush_interval_s``: a WAL checkpoint, which with ``synchronous`` NORMAL or FULL
fsyncs the WAL, copies the committed pages into the database file and fsyncs that too. A
``kill -9`` test cannot tell whether it ran, so these tests look at the two things a checkpoint
leaves: the database file itself (read alone, without its ``-wal``, as a power loss could leave
it) holds the records, and the checkpoint was asked of SQLite (a trace of the statements the
slot's connection runs: the disk seam) on a connection whose ``synchronous`` is not OFF.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.buffer import RecordItem
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue import slot as slot_module
from otel_recursive_metrics.queue.slot import QueueSlot

from .helpers import ScriptedSink, wait_until

FLUSH_INTERVAL_S = 0.3
_SYNCHRONOUS_OFF = re.compile(r"PRAGMA\s+(\w+\.)?synchronous\s*=\s*['\"]?(OFF|0)\b", re.IGNORECASE)


class Traced:
    """Every SQL statement the queue slots' connections run, with when (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.statements: list[tuple[float, str]] = []

    def checkpoints(self, since: float = 0.0) -> list[str]:
        return [sql for at, sql in self.statements if at >= since and "wal_checkpoint" in sql.lower()]

    def synchronous_off(self) -> list[str]:
        return [sql for _, sql in self.statements if _SYNCHRONOUS_OFF.search(sql)]


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Traced:
    """Trace the statements of every queue slot connection opened from now on (real connections)."""
    trace = Traced()
    real_connect = slot_module.connect

    def connect(path: Path | str, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(path, **kwargs)
        conn.set_trace_callback(lambda sql: trace.statements.append((time.monotonic(), sql)))
        return conn

    monkeypatch.setattr(slot_module, "connect", connect)
    return trace


def records_in_the_file_alone(path: Path, scratch: Path) -> int:
    """Records the database file holds by itself, without its WAL: what a power loss may leave of
    a write that was never checkpointed: 0 if not even the table is there yet (-1 if the copy
    caught a page in the middle of a write)."""
    scratch.mkdir(exist_ok=True)
    copy = scratch / "alone.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(copy) + suffix).unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    try:
        conn = sqlite3.connect(copy)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone() is None:
                return 0
            return int(conn.execute("SELECT ifnull(sum(points), 0) FROM records").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return -1


def test_sync_puts_what_is_committed_into_the_database_file(tmp_path: Path, traced: Traced) -> None:
    path = tmp_path / "slot-0.db"
    slot = QueueSlot(path, ("otlp",), max_bytes=1 << 30)
    try:
        slot.append([(1_000 + i, 10, b"x" * 100) for i in range(50)], drop_oldest=True)
        assert records_in_the_file_alone(path, tmp_path / "scratch") == 0, "committed, but only in the WAL: not yet safe"
        before = time.monotonic()
        slot.sync()
        assert records_in_the_file_alone(path, tmp_path / "scratch") == 500, "sync() must checkpoint the WAL into the file"
        assert traced.checkpoints(since=before), "sync() must ask SQLite for a checkpoint"
        assert traced.synchronous_off() == [], "a checkpoint with synchronous=OFF does not fsync"
    finally:
        slot.close()


def test_the_worker_syncs_the_queue_within_the_flush_interval(data_dir: Path, tmp_path: Path, traced: Traced) -> None:
    """Records waiting for a sink that does not answer are in the slot's file, checkpointed,
    within ``flush_interval_s`` (+ 1 s of slack, as the kill -9 tests allow) of being accepted."""
    sink = ScriptedSink("store", default="hang")  # not the real store: every record stays queued
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=FLUSH_INTERVAL_S, batch_size=10), sinks=[sink])
    try:
        for i in range(200):
            pipeline.offer(RecordItem(time.time_ns(), {"metric_name": "loss", "value": float(i), "step": i, "_time_unix_nano": 1_000 + i}))
        accepted = time.monotonic()
        slot_file = data_dir / "queue" / "slot-0.db"
        wait_until(
            lambda: slot_file.exists() and records_in_the_file_alone(slot_file, tmp_path / "scratch") == 200,
            FLUSH_INTERVAL_S + 1.0,
            "the queue slot's database file to hold every accepted point (a checkpoint)",
        )
        assert traced.checkpoints(since=accepted), "the worker must ask SQLite for a checkpoint"
        assert traced.synchronous_off() == [], "a checkpoint with synchronous=OFF does not fsync"
    finally:
        sink.release.set()
        pipeline.shutdown(10.0)
