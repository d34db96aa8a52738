"""SIGTERM (a scheduler's stop): what was logged reaches disk, then the program ends as it would have.

Each test runs a real training loop in a child process (``tests/programs/log_loop.py``), sends
it SIGTERM before its first flush interval is over, and then does what the next run with the
same data folder does: opens the folder, delivers what is queued, and reads the store.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .helpers import deliver_queued
from .programs import read_reports, start_log_loop, wait_ready


def deliver_what_is_queued(data_dir: Path) -> list[int]:
    """The next start with this data folder: deliver, then the steps of ``m0`` in the store."""
    store = deliver_queued(data_dir)
    return [] if store is None else sorted(p.step for p in store.query("m0") if p.step is not None)


def terminate_after(child: object, seconds: float) -> None:
    wait_ready(child)  # type: ignore[arg-type]
    time.sleep(seconds)
    child.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    child.wait(30)  # type: ignore[attr-defined]


def test_sigterm_before_the_first_flush_keeps_every_step_and_ends_by_the_signal(data_dir: Path, tmp_path: Path) -> None:
    # 2 steps/s, the default 5 s flush interval: nothing has been flushed when SIGTERM comes.
    report = tmp_path / "report.jsonl"
    child = start_log_loop(data_dir, "--rate-hz", "2", "--report", str(report))
    try:
        terminate_after(child, 4.3)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM, "the process must end by the signal, as it would have"
    stderr = child.stderr.read() if child.stderr else ""
    assert "SIGTERM" in stderr and "on disk" in stderr, stderr
    logged = read_reports(report)[-1]["steps"]
    steps = deliver_what_is_queued(data_dir)
    assert logged >= 8
    assert steps == list(range(len(steps))) and len(steps) >= logged, f"{len(steps)} stored of at least {logged} logged"


def test_sigterm_at_a_thousand_steps_a_second_loses_nothing(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_log_loop(data_dir, "--rate-hz", "1000", "--values", "4", "--report", str(report))
    try:
        terminate_after(child, 2.0)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM
    logged = read_reports(report)[-1]["steps"]
    steps = deliver_what_is_queued(data_dir)
    assert steps == list(range(len(steps))) and len(steps) >= logged > 500


def test_sigterm_chains_to_the_handler_the_program_installed(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_log_loop(data_dir, "--rate-hz", "20", "--handler", "exit3", "--report", str(report))
    try:
        terminate_after(child, 1.5)
    finally:
        child.kill()
    out = child.stdout.read() if child.stdout else ""
    assert "PROGRAM HANDLER" in out, "the program's own handler must still run"
    assert child.returncode == 3, "and decide how the program ends"
    logged = read_reports(report)[-1]["steps"]
    assert len(deliver_what_is_queued(data_dir)) >= logged


def test_a_program_that_ignores_sigterm_keeps_running_with_its_points_on_disk(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_log_loop(data_dir, "--rate-hz", "5", "--handler", "ignore", "--report", str(report))
    try:
        wait_ready(child)
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert child.poll() is None, "SIGTERM was ignored by the program: it must go on"
        logged_before = read_reports(report)[-1]["steps"]
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    # What was logged before the SIGTERM plus one flush interval is on disk, even after kill -9.
    assert len(deliver_what_is_queued(data_dir)) >= min(logged_before, 5)


def test_sigterm_handling_can_be_switched_off(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_log_loop(data_dir, "--rate-hz", "2", "--no-sigterm-handling", "--report", str(report))
    try:
        terminate_after(child, 2.3)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM
    stderr = child.stderr.read() if child.stderr else ""
    assert "SIGTERM" not in stderr
    # Python's default: the process ends at once and what waited for the flush interval is gone.
    assert deliver_what_is_queued(data_dir) == []
