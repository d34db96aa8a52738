"""Junk where a queue file belongs (issue 18, defect 3): a folder, a FIFO or a dangling link as
``slot-0.db``, its ``-wal`` or ``slot-0.lock``. It is moved aside and said, a fresh slot is taken,
and nothing is dropped; ``sync`` never opens it (a FIFO would block it for ever); and when the
queue cannot be used at all, a store-only run still writes every point into the store."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline import worker
from otel_recursive_metrics.pipeline.worker import Pipeline

from .conftest import required_in_ci
from .otlp_receiver import HttpReceiver, otlp_points
from .test_delivery import record

KINDS = ("folder", "fifo", "dangling-link")
NAMES = ("slot-0.db", "slot-0.lock", "slot-0.db-wal")


def put_junk(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
        (path / "something").write_text("not ours")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path.parent / "gone" / "nowhere")


def log_values(data_dir: Path, n: int = 1000, **options: Any) -> dict[str, Any]:
    with TrainingMetrics(dir=data_dir, flush_interval_s=0.05, **options) as metrics:
        for step in range(n):
            metrics.log({"loss": float(step)}, step=step)
        assert metrics.flush(30.0), metrics.get_stats()
        stats: dict[str, Any] = metrics.get_stats()
    return stats


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_junk_in_a_queue_slot_is_moved_aside_and_costs_nothing(data_dir: Path, kind: str, name: str) -> None:
    put_junk(data_dir / "queue" / name, kind)
    stats = log_values(data_dir)
    assert stats["dropped_points"] == {}, stats["dropped_points"]
    assert stats["sent_points"] == {"store": 1000}
    assert len(PointStore(data_dir / "metrics.db", readonly=True).query("loss")) == 1000
    moved = sorted((data_dir / "queue").glob(f"{name}.junk-*"))
    assert len(moved) == 1 and os.path.lexists(moved[0]), "the junk is kept, aside, for the user to look at"
    assert not os.path.islink(data_dir / "queue" / name) and not (data_dir / "queue" / name).is_dir()
    said = stats["last_error"]["queue"]
    assert name in said and "not a regular file" in said and str(moved[0]) in said


def test_junk_beside_an_orphaned_slot_does_not_cost_its_records(data_dir: Path) -> None:
    """A run that ended with points for OTLP still queued, then junk in place of its lock: the next
    start moves the junk aside, adopts the slot and delivers what was in it."""
    with HttpReceiver() as rec:
        with TrainingMetrics(dir=data_dir, sinks="otlp", offline=True, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf") as m:
            for step in range(300):
                m.log({"loss": float(step)}, step=step)
            assert m.flush(30.0)
        lock = data_dir / "queue" / "slot-0.lock"
        lock.unlink()
        put_junk(lock, "folder")
        with TrainingMetrics(dir=data_dir, sinks="otlp", otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf") as m:
            assert m.flush(30.0), m.get_stats()
            assert m.get_stats()["dropped_points"] == {}
        assert sorted(p[-1] for p in otlp_points(rec.accepted)) == [float(s) for s in range(300)]


def run_sync(data_dir: Path, *more: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # A deadline, not a timing: on the base code a FIFO slot made sync hang until killed.
    return subprocess.run(
        [sys.executable, "-m", "otel_recursive_metrics", "sync", "--dir", str(data_dir), "--retry-s", "5", *more],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("junk", ["slot-1.db", "slot-0.db-wal", "slot-0.lock"])
def test_sync_never_opens_a_fifo_in_the_queue_and_delivers_what_is_there(data_dir: Path, junk: str) -> None:
    """Slot 0 holds an offline run's 200 points for OTLP; then a FIFO takes the place of another
    slot's file, of slot 0's WAL or of its lock. Sync moves it aside, says so, and delivers."""
    queue = data_dir / "queue"
    with HttpReceiver() as rec:
        with TrainingMetrics(dir=data_dir, sinks="otlp", offline=True, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf") as m:
            for step in range(200):
                m.log({"loss": float(step)}, step=step)
            assert m.flush(30.0)
        assert (queue / "slot-0.db").exists()
        if junk == "slot-1.db":
            (queue / "slot-1.lock").touch()
        for leftover in (queue / junk, queue / (junk + "-wal")):
            if leftover.exists():
                leftover.unlink()
        put_junk(queue / junk, "fifo")
        try:
            done = run_sync(data_dir, "--endpoint", rec.endpoint, "--protocol", "http/protobuf")
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"sync blocked on a FIFO at queue/{junk}: {exc}")
        assert done.returncode == 0, done.stderr
        assert f"{junk} is a FIFO, not a regular file; moved aside" in done.stderr, done.stderr
        assert sorted(p[-1] for p in otlp_points(rec.accepted)) == [float(s) for s in range(200)], done.stderr
        assert len(list(queue.glob(f"{junk}.junk-*"))) == 1


def test_a_queue_that_cannot_be_opened_leaves_a_store_only_run_writing_to_the_store(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk seam: the queue's folder refuses every file (EACCES). The store is the only sink
    and takes the points directly, so none is lost; the condition is kept in the stats."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(data_dir / "queue" / "slot-0.lock"))

    monkeypatch.setattr(worker, "DurableQueue", refuse)
    stats = log_values(data_dir)
    assert stats["dropped_points"] == {}
    assert stats["sent_points"] == {"store": 1000}
    assert stats["queue_failing"] == "queue_unavailable", "the queue's failure is not hidden"
    assert "Permission denied" in stats["last_error"]["queue"]
    assert len(PointStore(data_dir / "metrics.db", readonly=True).query("loss")) == 1000


def test_a_read_only_queue_folder_leaves_a_store_only_run_writing_to_the_store(tmp_path: Path) -> None:
    """For real: the queue folder is a tmpfs remounted read-only after the run was set up, with a
    folder where ``slot-0.lock`` belongs, so that no slot can be taken or cleared."""
    data_dir = tmp_path / "otel-metrics"
    queue = data_dir / "queue"
    queue.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(queue)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        required_in_ci(f"needs to mount a tmpfs (root): {done.stderr.strip()}")
    try:
        (queue / "slot-0.lock").mkdir()
        pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05))  # checks that the folder takes files
        subprocess.run(["mount", "-o", "remount,ro", str(queue)], check=True)  # before the first point starts it
        for i in range(1000):
            assert pipeline.offer(record(i))
        assert pipeline.flush(30.0), pipeline.get_stats()
        stats = pipeline.get_stats()
        pipeline.shutdown(10.0)
        assert stats["dropped_points"] == {} and stats["sent_points"] == {"store": 1000}
        assert stats["queue_failing"] == "queue_unavailable"
        assert "Read-only file system" in stats["last_error"]["queue"]
        assert len(PointStore(data_dir / "metrics.db", readonly=True).query("loss")) == 1000
    finally:
        subprocess.run(["umount", "-l", str(queue)], capture_output=True, check=False)
