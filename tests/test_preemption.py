"""SIGTERM (a scheduler's stop): what was logged reaches disk, then the program ends as it would have.

Each test runs a real program in a child process (a training loop, ``tests/programs/log_loop.py``,
or a counter through the OpenTelemetry SDK, ``tests/programs/counter_loop.py``), sends it SIGTERM
before its data would have reached disk otherwise, and then does what the next run with the same
data folder does: opens the folder, delivers what is queued, and reads the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality

from . import programs
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


# -- the OpenTelemetry SDK's routes: configure() and OTEL_METRICS_EXPORTER=recursive ---------------
#
# The SDK's reader exports every 60 s (OTEL_METRIC_EXPORT_INTERVAL=60000, configure()'s default):
# when SIGTERM comes, what was counted is still in the SDK's instruments, and the pipeline may not
# have started. The handler must be in place (installed where the exporter is built, on the main
# thread), have the SDK collect, and put that on disk.

COUNTER_LOOP = Path(programs.__file__).with_name("counter_loop.py")
INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")


def start_counter_loop(data_dir: Path, route: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``counter_loop.py`` (see its docstring); ``route="auto"`` runs it under ``opentelemetry-instrument``."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child_env.update(PYTHONUNBUFFERED="1", OTEL_RECURSIVE_METRICS_DIR=str(data_dir))
    command = [sys.executable, str(COUNTER_LOOP), "--route", route, "--dir", str(data_dir), *args]
    if route == "auto":
        assert INSTRUMENT.exists(), "opentelemetry-instrument is part of the test extra"
        child_env.update(
            OTEL_METRICS_EXPORTER="recursive",
            OTEL_TRACES_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRIC_EXPORT_INTERVAL="60000",
        )
        command = [str(INSTRUMENT), *command]
    child_env.update(env or {})
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)


def terminate_when_ready(child: subprocess.Popen[str], report: Path, seconds: float) -> dict[str, Any]:
    """SIGTERM ``seconds`` after READY; the child's last report from before the signal."""
    wait_ready(child)
    time.sleep(seconds)
    before = read_reports(report)
    child.send_signal(signal.SIGTERM)
    child.wait(60)
    assert before, "the child reported nothing"
    return before[-1]


def counted(data_dir: Path) -> int:
    """What the store holds for the counter ``requests`` once the queue is delivered (the next start)."""
    store = deliver_queued(data_dir)
    points = [] if store is None else store.query("requests")
    if not points:
        return 0
    if all(p.temporality == AggregationTemporality.DELTA.value for p in points):
        return int(sum(p.value or 0 for p in points))
    return int(max(p.value or 0 for p in points))


def stderr_of(child: subprocess.Popen[str]) -> str:
    return child.stderr.read() if child.stderr else ""


@pytest.mark.parametrize("route", ["auto", "configure"])
def test_sigterm_before_the_first_export_keeps_what_the_sdk_counted(route: str, data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_counter_loop(data_dir, route, "--report", str(report))
    try:
        before = terminate_when_ready(child, report, 0.5)
    finally:
        child.kill()
    stderr = stderr_of(child)
    assert child.returncode == -signal.SIGTERM, f"the process must end by the signal; stderr: {stderr}"
    assert "SIGTERM:" in stderr and "on disk" in stderr, stderr
    assert before["accepted_items"] == 0, "no export yet when SIGTERM came: the handler's collect is the first"
    assert before["added"] > 0
    stored = counted(data_dir)
    assert stored >= before["added"], f"{stored} on disk of {before['added']} counted before SIGTERM; stderr: {stderr}"


def test_sigterm_after_periodic_exports_keeps_what_came_since(data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_counter_loop(
        data_dir, "auto", "--report", str(report), "--ready-after-exports", "3", env={"OTEL_METRIC_EXPORT_INTERVAL": "200"}
    )
    try:
        before = terminate_when_ready(child, report, 0.3)
    finally:
        child.kill()
    stderr = stderr_of(child)
    assert child.returncode == -signal.SIGTERM, stderr
    assert "SIGTERM:" in stderr and "on disk" in stderr, stderr
    assert before["accepted_items"] >= 3
    stored = counted(data_dir)
    assert stored >= before["added"], f"{stored} on disk of {before['added']} counted before SIGTERM; stderr: {stderr}"


@pytest.mark.parametrize("after_s", [0.3, 0.7, 1.1])
def test_sigterm_in_a_tight_counter_loop_neither_hangs_nor_loses(after_s: float, data_dir: Path, tmp_path: Path) -> None:
    # As fast as it can, with delta temporality: the SDK holds its locks across calls while it
    # adds, so the signal often lands where the collect would have to wait for the main thread.
    report = tmp_path / "report.jsonl"
    env = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
    child = start_counter_loop(data_dir, "configure", "--rate-hz", "0", "--report", str(report), env=env)
    try:
        before = terminate_when_ready(child, report, after_s)
    finally:
        child.kill()
    stderr = stderr_of(child)
    assert child.returncode == -signal.SIGTERM, stderr
    assert "SIGTERM:" in stderr and "on disk" in stderr, stderr
    stored = counted(data_dir)
    assert stored >= before["added"] > 0, f"{stored} on disk of {before['added']} counted before SIGTERM; stderr: {stderr}"


def test_sigterm_while_the_sdk_holds_the_lock_its_collect_needs(data_dir: Path, tmp_path: Path) -> None:
    # The child signals itself from the SDK's exemplar reservoir, inside aggregate(), with the
    # view's lock held (delta temporality): a handler that waited there for the collect would
    # wait for itself. It must let the main thread go on, and collect once the lock is free.
    report = tmp_path / "report.jsonl"
    env = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
    child = start_counter_loop(
        data_dir, "manual", "--rate-hz", "0", "--signal-self-at", "2000", "--report", str(report), "--report-every-s", "0.01", env=env
    )
    try:
        child.wait(60)
    finally:
        child.kill()
    stderr = stderr_of(child)
    assert child.returncode == -signal.SIGTERM, stderr
    assert "SIGTERM:" in stderr and "on disk" in stderr and "collect did not end" not in stderr, stderr
    last = read_reports(report)[-1]
    stored = counted(data_dir)
    assert stored >= max(last["added"], 2000), f"{stored} on disk of {last['added']} counted; stderr: {stderr}"


@pytest.mark.parametrize("route", ["auto", "configure"])
def test_with_sigterm_handling_off_the_sdk_routes_end_by_the_signal(route: str, data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    child = start_counter_loop(data_dir, route, "--report", str(report), env={"OTEL_RECURSIVE_METRICS_HANDLE_SIGTERM": "false"})
    try:
        terminate_when_ready(child, report, 0.3)
    finally:
        child.kill()
    stderr = stderr_of(child)
    assert child.returncode == -signal.SIGTERM, stderr
    assert "SIGTERM" not in stderr, stderr
    # Python's default: the process ends at once; what the SDK held was never exported.
    assert counted(data_dir) == 0


OFF_MAIN_THREAD = """
import threading, otel_recursive_metrics as orm
builder = threading.Thread(target=lambda: orm.configure(dir={dir!r}))
builder.start()
builder.join()
"""


def test_an_exporter_built_off_the_main_thread_says_sigterm_is_not_handled(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = OFF_MAIN_THREAD.format(dir=str(data_dir))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("no SIGTERM handler") == 1, done.stderr
    assert "main thread" in done.stderr and "handle_sigterm=false" in done.stderr, done.stderr
