"""Forked children (DataLoader workers) neither deadlock nor re-export the parent's data."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.pipeline.buffer import RecordItem

from .helpers import sdk_provider

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_forked_child_neither_deadlocks_nor_reexports(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.05)
    provider = sdk_provider(exporter)
    counter = provider.get_meter("t").create_counter("parent.samples")
    counter.add(10)
    assert provider.force_flush(10_000)
    pipeline = exporter.pipeline
    assert pipeline._queue is not None

    # Be adversarial: fork while another thread holds the worker's locks.
    holding = threading.Event()
    release = threading.Event()

    def hold_locks() -> None:
        assert pipeline._queue is not None
        with pipeline._queue._lock, pipeline._progress:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_locks)
    holder.start()
    assert holding.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: a DataLoader worker that also logs something of its own
        code = 1
        try:
            provider.force_flush(5_000)  # the SDK re-collects the parent's values here...
            ok = pipeline.offer(RecordItem(time.time_ns(), {"metric_name": "child.loss", "value": 0.5, "_time_unix_nano": time.time_ns()}))
            delivered = pipeline.flush(20.0)
            ignored = pipeline.get_stats()["ignored_forked_exports"]
            code = 0 if (ok and delivered and ignored >= 1) else 3
        finally:
            os._exit(code)
    release.set()
    holder.join()
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("the forked child deadlocked")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0

    counter.add(5)
    assert provider.force_flush(10_000)
    provider.shutdown()
    store = PointStore(data_dir / "metrics.db")
    parent_points = [p.value for p in store.query("parent.samples")]
    # Two flushes and the final export at shutdown in the parent; nothing from the child.
    assert parent_points == [10, 15, 15]
    assert [p.value for p in store.query("child.loss")] == [0.5]
