"""One ``sync`` and one ``dlq replay`` at a time per data folder (issue 18, defect 4).

Two real CLI processes against a real loopback receiver. The receiver holds every request until
the test lets them through, so the first process is surely mid-delivery when the second starts:
the second says which process holds the folder and exits with code 3, or with ``--wait`` waits for
it, and the receiver gets every point once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from otel_recursive_metrics import TrainingMetrics
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .otlp_receiver import Fault, HttpReceiver, sample_batch, wait_until

VALUES = 40_000


class GatedReceiver(HttpReceiver):
    """An OTLP/HTTP receiver that holds every request while ``gate`` is clear (then accepts it)."""

    def __init__(self) -> None:
        super().__init__(keep_requests=False)
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0
        self.set_fault(Fault(delay_s=1e-9))  # every request passes through _sleep

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            self.held += 1
        self.gate.wait(300)


def start_cli(*argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # A held request must not time out and be sent again.
    env.update(OTEL_RECURSIVE_METRICS_SEND_TIMEOUT_S="300", OTEL_EXPORTER_OTLP_TIMEOUT="300000")
    return subprocess.Popen([sys.executable, "-m", "otel_recursive_metrics", *argv], env=env, stderr=subprocess.PIPE, text=True)


def holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (it is waiting for, or holding, that lock)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def finish(child: subprocess.Popen[str], timeout_s: float = 300.0) -> tuple[int, str]:
    _, err = child.communicate(timeout=timeout_s)
    return child.returncode, err


def offline_folder(data_dir: Path, receiver: HttpReceiver) -> None:
    """An offline run's data folder: 40,000 values queued for OTLP, waiting for ``sync``."""
    with TrainingMetrics(
        dir=data_dir, sinks="otlp", offline=True, otlp_endpoint=receiver.endpoint, otlp_protocol="http/protobuf", flush_interval_s=0.2
    ) as metrics:
        for step in range(VALUES // 10):
            metrics.log({f"m{i}": float(step) for i in range(10)}, step=step)
        assert metrics.flush(60.0)


def sync_argv(data_dir: Path, receiver: HttpReceiver, *more: str) -> list[str]:
    return ["sync", "--dir", str(data_dir), "--endpoint", receiver.endpoint, "--protocol", "http/protobuf", *more]


def test_a_second_sync_says_who_holds_the_folder_and_delivers_nothing(data_dir: Path) -> None:
    with GatedReceiver() as rec:
        offline_folder(data_dir, rec)
        rec.gate.clear()
        first = start_cli(*sync_argv(data_dir, rec))
        try:
            wait_until(lambda: rec.held >= 1, 120, "the first sync's first request")
            second = start_cli(*sync_argv(data_dir, rec))
            try:
                code, err = finish(second, 60)
            except subprocess.TimeoutExpired:
                code, err = -1, "the second sync did not end while the first one was delivering"
            rec.gate.set()
            first_code, first_err = finish(first)
            if second.returncode is None:
                finish(second)
        finally:
            rec.gate.set()
            first.kill()
        assert rec.points_accepted == VALUES, f"{rec.points_accepted} points for {VALUES}: each point once"
        assert first_code == 0, first_err
        assert code == 3, err
        assert f"process {first.pid} holds {data_dir / 'sync.lock'}" in err and "--wait" in err, err


def test_sync_with_wait_waits_for_the_first_then_finds_nothing_left(data_dir: Path) -> None:
    with GatedReceiver() as rec:
        offline_folder(data_dir, rec)
        rec.gate.clear()
        first = start_cli(*sync_argv(data_dir, rec))
        second = None
        try:
            wait_until(lambda: rec.held >= 1, 120, "the first sync's first request")
            second = start_cli(*sync_argv(data_dir, rec, "--wait", "300"))
            wait_until(lambda: holds_open(second.pid, data_dir / "sync.lock"), 120, "the second sync to wait for the lock")
            rec.gate.set()
            first_code, first_err = finish(first)
            code, err = finish(second)
        finally:
            rec.gate.set()
            first.kill()
            if second is not None:
                second.kill()
        assert first_code == 0, first_err
        assert code == 0 and "delivered nothing" in err, err
        assert rec.points_accepted == VALUES


def dead_letters(data_dir: Path, entries: int = 20, points: int = 1000) -> DeadLetterQueue:
    dlq = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40)
    for i in range(entries):
        dlq.add(sample_batch(points, first_step=i * points), reason="permanent error: test", sink="otlp")
    return dlq


def replay_argv(data_dir: Path, receiver: HttpReceiver, *more: str) -> list[str]:
    return [
        "dlq", "replay", "--dir", str(data_dir), "--to", "otlp", "--endpoint", receiver.endpoint,
        "--protocol", "http/protobuf", "--timeout", "300", *more,
    ]  # fmt: skip


def test_a_second_replay_says_who_holds_the_folder_and_sends_nothing(data_dir: Path) -> None:
    dlq = dead_letters(data_dir)
    with GatedReceiver() as rec:
        rec.gate.clear()
        first = start_cli(*replay_argv(data_dir, rec))
        try:
            wait_until(lambda: rec.held >= 1, 120, "the first replay's first request")
            second = start_cli(*replay_argv(data_dir, rec))
            try:
                code, err = finish(second, 60)
            except subprocess.TimeoutExpired:
                code, err = -1, "the second replay did not end while the first one was sending"
            rec.gate.set()
            first_code, first_err = finish(first)
            if second.returncode is None:
                finish(second)
        finally:
            rec.gate.set()
            first.kill()
        assert rec.points_accepted == 20_000, f"{rec.points_accepted} points for 20,000: each entry once"
        assert first_code == 0 and "replayed 20 of 20 entries" in first_err, first_err
        assert code == 3, err
        assert f"process {first.pid} holds {data_dir / 'dead-letter.lock'}" in err and "--wait" in err, err
        assert list(dlq.entries()) == []


def test_replay_with_wait_waits_then_finds_nothing_left(data_dir: Path) -> None:
    dead_letters(data_dir, entries=5)
    with GatedReceiver() as rec:
        rec.gate.clear()
        first = start_cli(*replay_argv(data_dir, rec))
        second = None
        try:
            wait_until(lambda: rec.held >= 1, 120, "the first replay's first request")
            second = start_cli(*replay_argv(data_dir, rec, "--wait", "300"))
            wait_until(lambda: holds_open(second.pid, data_dir / "dead-letter.lock"), 120, "the second replay to wait for the lock")
            rec.gate.set()
            first_code, first_err = finish(first)
            code, err = finish(second)
        finally:
            rec.gate.set()
            first.kill()
            if second is not None:
                second.kill()
        assert first_code == 0, first_err
        assert code == 0 and "no dead letters to replay" in err, err
        assert rec.points_accepted == 5_000


def test_the_lock_names_its_holder_and_every_wait_has_a_deadline(tmp_path: Path) -> None:
    from otel_recursive_metrics._files import LockHeld, hold_lock

    lock = tmp_path / "sync.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,os,sys; f=open(sys.argv[1],'w'); fcntl.flock(f,fcntl.LOCK_EX);"
         " f.write(str(os.getpid())); f.flush(); print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as raised:
            hold_lock(lock, wait_s=0.2)
        assert raised.value.pid == holder.pid and str(holder.pid) in str(raised.value)
    finally:
        holder.kill()
        holder.wait(30)
    fd = hold_lock(lock, wait_s=0.0)  # the kernel freed it with its holder
    try:
        assert lock.read_text().strip() == str(os.getpid())
    finally:
        os.close(fd)


def test_a_fifo_where_the_lock_belongs_is_refused_not_waited_on(data_dir: Path) -> None:
    (data_dir / "queue").mkdir(parents=True)
    os.mkfifo(data_dir / "sync.lock")
    code, err = finish(start_cli("sync", "--dir", str(data_dir)), 120)
    assert code == 2 and "sync.lock is a FIFO, not a regular file" in err, err
