"""Damaged or unusual files: clear errors, read-only reads, nothing deleted behind the user's back."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .conftest import required_in_ci
from .helpers import run_cli
from .otlp_receiver import Fault, HttpReceiver


def small_store(data_dir: Path, steps: int = 20) -> Path:
    with TrainingMetrics(dir=data_dir, flush_interval_s=0.05) as metrics:
        for step in range(steps):
            metrics.log({"loss": 1.0 / (step + 1)}, step=step)
    return data_dir / "metrics.db"


# -- the store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["query", "runs", "metrics"])
def test_a_damaged_store_gives_one_clear_error_with_the_way_to_recover(
    data_dir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    store = small_store(data_dir)
    data = bytearray(store.read_bytes())
    data[100:4096] = os.urandom(3996)  # the header's tail and the schema page
    store.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, command, "--store", str(store))
    assert code == 2
    assert "Traceback" not in err and str(store) in err
    assert "damaged" in err and ".recover" in err


def test_read_commands_never_write_the_store(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = small_store(data_dir)
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    for command in ("query", "runs", "metrics"):
        assert run_cli(capsys, command, "--store", str(store))[0] == 0
    # (A reader of a WAL-mode file may leave SQLite's -wal/-shm index beside it; the store itself is untouched.)
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before


def test_read_commands_work_on_a_read_only_file_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, check=False).returncode:
        required_in_ci("needs to mount a tmpfs (root) to make a read-only file system")
    try:
        store = small_store(mount / "otel-metrics")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        code, out, err = run_cli(capsys, "query", "--store", str(store), "--metric", "loss", "--format", "csv")
        assert code == 0, err
        assert len(out.splitlines()) == 21
        assert run_cli(capsys, "runs", "--store", str(store))[0] == 0
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


# -- dead letters ---------------------------------------------------------------------------------


def dead_letter_a_run(data_dir: Path, steps: int = 30) -> list[Any]:
    """Store and OTLP; the receiver refuses everything: the store has it all, the DLQ the OTLP share."""
    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=401, message="bad token"))
        with TrainingMetrics(
            dir=data_dir,
            sinks="store,otlp",
            otlp_endpoint=rec.endpoint,
            otlp_protocol="http/protobuf",
            flush_interval_s=0.05,
            batch_size=10,
        ) as metrics:
            for step in range(steps):
                metrics.log({"loss": float(step)}, step=step)
            metrics.flush(30.0)
    entries = list(DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40).entries())
    assert sum(e.points for e in entries) == steps
    return entries


@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_a_dead_letter_with_a_damaged_sidecar_is_listed_and_replays_without_duplicates(
    data_dir: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    entries = dead_letter_a_run(data_dir)
    victim = entries[0]
    if damage == "missing":
        victim.meta_path.unlink()
    else:
        victim.meta_path.write_text('{"reason": "permanent err')
    code, out, _ = run_cli(capsys, "dlq", "list", "--dir", str(data_dir))
    assert code == 0
    assert victim.id in out and "damaged" in out
    code, out, _ = run_cli(capsys, "dlq", "list", "--dir", str(data_dir), "--format", "json")
    listed = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert listed[victim.id]["damaged"] and listed[victim.id]["points"] == victim.points
    store = data_dir / "metrics.db"
    before = PointStore(store, readonly=True).count()
    code, _, err = run_cli(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(store))
    assert code == 0, err
    points = PointStore(store, readonly=True).query("loss")
    assert len(points) == before == 30, "the store already had these points: a replay adds no copy without a step"
    assert all(p.step is not None for p in points)


def test_a_damaged_dead_letter_replays_into_an_empty_store_without_steps(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = dead_letter_a_run(data_dir)
    for entry in entries:
        entry.meta_path.unlink()
    other = data_dir / "other.db"
    code, _, err = run_cli(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(other))
    assert code == 0, err
    points = PointStore(other, readonly=True).query("loss")
    assert sorted(p.value for p in points) == [float(s) for s in range(30)]
    assert {p.step for p in points} == {None}


# -- the durable queue ----------------------------------------------------------------------------


def lock_is_free(lock_path: Path) -> bool:
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("slot", [0, 1], ids=["own-slot", "orphaned-slot"])
def test_a_damaged_queue_slot_is_moved_aside_counted_and_unlocked(data_dir: Path, slot: int) -> None:
    queue = data_dir / "queue"
    queue.mkdir(parents=True)
    (queue / f"slot-{slot}.lock").touch()
    (queue / f"slot-{slot}.db").write_bytes(b"this is not a SQLite file" * 200)
    reports: list[dict[str, Any]] = []
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.05))
    pipeline.register_error_callback(lambda exc, ctx: reports.append(ctx))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(10):
        metrics.log({"loss": 1.0}, step=step)
    assert pipeline.flush(20.0)
    moved = sorted(queue.glob(f"slot-{slot}.db.corrupt-*"))
    assert moved, sorted(p.name for p in queue.iterdir())
    assert any(r["reason"] == "corrupt" for r in reports)
    assert "moved aside" in pipeline.get_stats()["last_error"]["queue"]
    assert len(PointStore(data_dir / "metrics.db").query("loss")) == 10
    pipeline.shutdown(10.0)
    assert all(lock_is_free(lock) for lock in queue.glob("slot-*.lock"))


def test_removing_a_sink_dead_letters_what_was_pending_for_it(data_dir: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the OTLP share stays on disk
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = TrainingMetrics(
        dir=data_dir, sinks="store,otlp", otlp_endpoint=f"http://127.0.0.1:{port}", flush_interval_s=0.05, shutdown_grace_s=0.5
    )
    for step in range(2500):
        first.log({"loss": float(step)}, step=step)
    first.close(10.0)
    assert len(PointStore(data_dir / "metrics.db").query("loss")) == 2500
    second = TrainingMetrics(dir=data_dir, sinks="store", flush_interval_s=0.05)
    second.log({"loss": -1.0}, step=2500)
    assert not second.flush(20.0)  # False: points were dead-lettered (for the removed sink)
    stats = second.get_stats()
    assert stats["dead_lettered_points"] == {"otlp": 2500}
    entries = list(DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40).entries())
    assert sum(e.points for e in entries) == 2500
    assert all(e.sink == "otlp" and "no longer configured" in e.reason for e in entries)
    second.close(10.0)
