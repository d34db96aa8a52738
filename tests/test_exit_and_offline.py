"""Ending a run, offline runs and ``sync``: short exits, one clear line, nothing left behind unsaid."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import ConfigError, PointStore, TrainingMetrics, load_config
from otel_recursive_metrics.cli import main
from otel_recursive_metrics.pipeline.worker import Pipeline

from .otlp_receiver import GrpcReceiver, HttpReceiver, otlp_points
from .programs import read_reports, start_log_loop, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def refused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def test_a_wrong_endpoint_costs_the_grace_at_exit_and_one_line_with_the_way_out(data_dir: Path) -> None:
    env = clean_env(OTEL_RECURSIVE_METRICS_SINKS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=refused_endpoint())
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_numpy.py"), "--dir", str(data_dir), "--steps", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    reported = float(re.search(r"100 steps in ([0-9.]+)s", done.stdout).group(1))  # type: ignore[union-attr]
    assert reported < 3.0 + 3.0, f"the example says it took {reported} s (the grace is 3 s)"
    assert took < 30
    waiting = [line for line in done.stderr.splitlines() if "wait on disk" in line]
    assert len(waiting) == 1, done.stderr
    assert "for otlp" in waiting[0] and f"otel-recursive-metrics sync --dir {data_dir}" in waiting[0]


def test_the_grace_is_a_setting(data_dir: Path) -> None:
    metrics = TrainingMetrics(dir=data_dir, sinks="otlp", otlp_endpoint=refused_endpoint(), shutdown_grace_s=0.5, flush_interval_s=0.1)
    for step in range(10):
        metrics.log({"loss": 1.0}, step=step)
    started = time.monotonic()
    assert not metrics.close(30.0)
    assert time.monotonic() - started < 3.0
    assert metrics.get_stats()["dropped_points"] == {}  # on disk, not lost


def test_an_unusable_data_folder_fails_at_construction_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(blocker))
    with pytest.raises(ConfigError, match="a-file"):
        TrainingMetrics().log({"loss": 1.0}, step=0)


def test_repr_of_the_config_never_shows_credentials(tmp_path: Path) -> None:
    config = load_config(
        dir=tmp_path, otlp_endpoint="https://alice:s3cret@collector:4318/v1/metrics?token=abc", otlp_headers="authorization=Bearer xyz"
    )
    text = repr(config)
    assert "s3cret" not in text and "alice" not in text and "abc" not in text and "xyz" not in text
    assert "collector:4318" in text and "<redacted>" in text


# -- offline and sync -----------------------------------------------------------------------------


def log_offline(data_dir: Path, receiver: GrpcReceiver | HttpReceiver, steps: int) -> None:
    protocol = "grpc" if isinstance(receiver, GrpcReceiver) else "http/protobuf"
    with TrainingMetrics(
        dir=data_dir, sinks="store,otlp", offline=True, otlp_endpoint=receiver.endpoint, otlp_protocol=protocol, flush_interval_s=0.1
    ) as metrics:
        for step in range(steps):
            metrics.log({"loss": float(step)}, step=step)
        assert metrics.flush(30.0), "offline: the store's share is delivered, the OTLP share is on disk"
        assert metrics.get_stats()["offline_sinks"] == ["otlp"]


def sync(capsys: pytest.CaptureFixture[str], data_dir: Path, endpoint: str, protocol: str, *more: str) -> tuple[int, str]:
    code = main(["sync", "--dir", str(data_dir), "--endpoint", endpoint, "--protocol", protocol, *more])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_offline_sends_nothing_and_sync_delivers_everything(data_dir: Path, capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    with GrpcReceiver() if protocol == "grpc" else HttpReceiver() as rec:
        log_offline(data_dir, rec, 500)
        assert rec.attempts == [], "offline: nothing goes over the network"
        assert len(PointStore(data_dir / "metrics.db").query("loss")) == 500
        code, err = sync(capsys, data_dir, rec.endpoint, protocol)
        assert code == 0, err
        assert "delivered 500 to otlp" in err
        assert sorted(p[-1] for p in otlp_points(rec.accepted)) == [float(s) for s in range(500)]
        code, err = sync(capsys, data_dir, rec.endpoint, protocol)
        assert code == 0 and "delivered nothing" in err
        assert len(otlp_points(rec.accepted)) == 500, "a second sync sends nothing again"


def test_sync_with_the_endpoint_down_says_why_and_keeps_everything(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HttpReceiver() as rec:
        log_offline(data_dir, rec, 100)
        endpoint = rec.endpoint
    code, err = sync(capsys, data_dir, endpoint, "http/protobuf", "--retry-s", "1")
    assert code == 1
    # The endpoint is closed: the OTLP/HTTP sink says "connection refused", sync names the slot,
    # what it could not deliver and why, then how much is still pending.
    assert "otlp: 100 point(s) of slot-0.db not delivered: retry budget of 1s spent" in err, err
    assert f"last error: OTLP/HTTP {endpoint}: connection refused" in err, err
    assert "100 point(s) are still pending" in err and "run sync again" in err, err
    with HttpReceiver() as again:
        code, err = sync(capsys, data_dir, again.endpoint, "http/protobuf")
        assert code == 0, err
        assert len(otlp_points(again.accepted)) == 100


def test_sync_while_an_offline_run_is_still_writing(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.jsonl"
    with GrpcReceiver() as rec:
        env = {"OTEL_RECURSIVE_METRICS_OFFLINE": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": rec.endpoint}
        child = start_log_loop(
            data_dir, "--rate-hz", "200", "--sinks", "store,otlp", "--flush-interval-s", "0.2", "--report", str(report), env=env
        )
        try:
            wait_ready(child)
            for _ in range(3):
                time.sleep(1.0)
                code, err = sync(capsys, data_dir, rec.endpoint, "grpc")
                assert code == 0, err
            assert rec.points_accepted > 0, "sync sent what the live run had written so far"
            child.send_signal(signal.SIGTERM)  # the run ends; what it logged is on disk
            child.wait(30)
        finally:
            child.kill()
        logged = read_reports(report)[-1]["steps"]
        code, err = sync(capsys, data_dir, rec.endpoint, "grpc")
        assert code == 0, err
        steps = sorted(p[-1] for p in otlp_points(rec.accepted))
        assert steps[:logged] == [float(s) for s in range(logged)] and len(steps) == len(set(steps)) >= logged
        assert not list((data_dir / "queue").glob("slot-*.db")), "a finished run's drained slot is removed"


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_a_data_folder_that_cannot_be_used_fails_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(ConfigError, match=r"dir=.*not-a-folder.*cannot keep the durable queue"):
        _pipeline(blocker / "otel-metrics")
    with pytest.raises(ConfigError, match="not-a-folder"):
        TrainingMetrics(dir=blocker)
