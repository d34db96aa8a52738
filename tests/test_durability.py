"""Crash safety: kill -9 at any instant loses nothing accepted and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.model.batch import STEP, PointBatch

from .helpers import wait_until

FLUSH_INTERVAL_S = 0.2

# The child accepts points through the real exporter path (Pipeline.offer of records), prints
# how many it has accepted, and is killed by the test.
CHILD = textwrap.dedent(
    """
    import sys, time
    from otel_recursive_metrics.config import load_config
    from otel_recursive_metrics.pipeline.buffer import RecordItem
    from otel_recursive_metrics.pipeline.worker import Pipeline

    data_dir, mode, total, FLUSH_INTERVAL_S = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    sinks = None
    if mode == "hung":
        import threading
        class HungSink:
            name = "store"
            rejected_points = 0
            def send(self, batch, deadline):
                threading.Event().wait()
            def close(self):
                pass
        sinks = [HungSink()]
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=FLUSH_INTERVAL_S, batch_size=10), sinks=sinks)
    for i in range(total):
        record = {"metric_name": "loss", "value": float(i), "step": i, "_time_unix_nano": 1_700_000_000_000_000_000 + i}
        pipeline.offer(RecordItem(time.time_ns(), record))
        if mode == "live" and i % 50 == 0:
            time.sleep(0.002)
        if i % 100 == 99:
            print(i + 1, flush=True)
    print("ALL", flush=True)
    time.sleep(600)
    """
)


def run_child(data_dir: Path, mode: str, total: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), mode, str(total), str(FLUSH_INTERVAL_S)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def steps_on_disk(data_dir: Path) -> set[int]:
    """Steps committed to disk by the running child, in its queue slots or in its store: what a
    ``kill -9`` cannot take away (read-only; a file the child is still creating counts as empty)."""
    steps: set[int] = set()
    for slot in sorted((data_dir / "queue").glob("slot-*.db")):
        try:
            conn = sqlite3.connect(f"file:{slot}?mode=ro", uri=True, timeout=5.0)
            try:
                payloads = [bytes(row[0]) for row in conn.execute("SELECT payload FROM records")]
            finally:
                conn.close()
        except sqlite3.Error:
            continue  # not created yet
        for payload in payloads:
            steps |= {p[STEP] for p in PointBatch.decode(payload).points if p[STEP] is not None}
    store = data_dir / "metrics.db"
    if store.exists():
        try:
            reader = PointStore(store, readonly=True)
        except (sqlite3.Error, ValueError):  # ValueError: "no points table", its schema not written yet
            return steps
        try:
            steps |= {p.step for p in reader.query("loss") if p.step is not None}
        finally:
            reader.close()
    return steps


def wait_on_disk(data_dir: Path, accepted: int) -> None:
    """Wait, at most the documented FLUSH_INTERVAL + 1 s, for the first ``accepted`` steps to be on disk."""
    wait_until(
        lambda: set(range(accepted)) <= steps_on_disk(data_dir),
        FLUSH_INTERVAL_S + 1.0,
        f"the {accepted} accepted point(s) to be on disk (the durability promise)",
    )


def restart_and_deliver(data_dir: Path) -> PointStore:
    """What the next training process does: same data folder, flush, shut down."""
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    assert exporter.force_flush(30_000)
    exporter.shutdown()
    return PointStore(data_dir / "metrics.db")


def test_kill_after_flush_interval_with_a_hung_sink_loses_nothing(data_dir: Path) -> None:
    child = run_child(data_dir, "hung", 1000)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "ALL":
                break
        wait_on_disk(data_dir, 1000)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    store = restart_and_deliver(data_dir)
    steps = [p.step for p in store.query("loss")]
    assert sorted(steps) == list(range(1000))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_a_random_instant_while_delivering(data_dir: Path, seed: int) -> None:
    child = run_child(data_dir, "live", 3000)
    accepted = 0
    deadline = time.monotonic() + 60
    rng = random.Random(seed)
    kill_after = rng.randrange(300, 2900, 100)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            text = line.strip()
            accepted = 3000 if text == "ALL" else int(text)
            if accepted >= kill_after or time.monotonic() > deadline:
                break
        # Points accepted are promised to be on disk within FLUSH_INTERVAL (+ 1 s, as elsewhere).
        wait_on_disk(data_dir, accepted)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    store = restart_and_deliver(data_dir)
    steps = [p.step for p in store.query("loss")]
    assert len(steps) == len(set(steps)), "a point was stored twice"
    assert set(range(accepted)) <= set(steps), f"lost {len(set(range(accepted)) - set(steps))} accepted point(s)"
