"""Dead letters replayed into the stock Collector reach Prometheus.

A training run exports to a receiver that refuses every request with HTTP 400 (a permanent
error): our exporter dead-letters each batch as OTLP JSON Lines in ``<dir>/dead-letter/``. The
files are then replayed into a Collector (base.yaml + dlq-replay.yaml) writing to Prometheus,
either by ``collector-config/replay-dlq.sh`` (each line POSTed to the OTLP/HTTP receiver) or by
``otel-recursive-metrics dlq replay --to otlp`` (over gRPC). The run is seconds old, so its
samples are recent enough for Prometheus (it refuses samples older than its head block).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.otlp_receiver import Fault, HttpReceiver

from .stack import CONFIG_DIR, Prometheus, StartCollector, TrainingRun, run_python, training_env
from .test_prometheus_e2e import PACED, assert_every_step_in_prometheus

pytestmark = [pytest.mark.collector, pytest.mark.prometheus, pytest.mark.slow]

STEPS = 100


def dead_letter_a_run(run: TrainingRun) -> dict[str, object]:
    """Train with OTLP going to a receiver that answers 400; the run's stats."""
    with HttpReceiver() as refusing:
        refusing.set_fault(Fault(http_status=400, message="refused by the test"))
        env = training_env(
            run,
            OTEL_EXPORTER_OTLP_ENDPOINT=refusing.base_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S="0.2",
        )
        done = run_python([PACED, "--dir", str(run.dir), "--steps", str(STEPS), "--pause-s", "0.002", "--exit-zero"], env)
        assert refusing.attempts, "the exporter never reached the refusing receiver"
    stats: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])["stats"]
    assert stats["dead_lettered_points"] == {"otlp": 3 * STEPS}, stats
    assert stats["sent_points"] == {"store": 3 * STEPS}, stats
    assert sorted(run.dead_letter_dir.glob("*.jsonl")), f"no dead-letter files in {run.dead_letter_dir}"
    return stats


def test_replay_dlq_script_into_the_collector(start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun) -> None:
    dead_letter_a_run(training_run)
    collector = start_collector("dlq-replay.yaml")
    files = sorted(training_run.dead_letter_dir.glob("*.jsonl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(DLQ_GLOB=str(training_run.dead_letter_dir / "*.jsonl"), DLQ_REPLAY_URL=f"{collector.dlq_http_endpoint}/v1/metrics")
    done = subprocess.run(["bash", str(CONFIG_DIR / "replay-dlq.sh")], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"replay-dlq.sh exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert f"{len(files)} request(s) accepted, 0 refused" in done.stderr, done.stderr
    assert not list(training_run.dead_letter_dir.glob("*.rejected"))
    assert_every_step_in_prometheus(prometheus, training_run, STEPS)


def test_dlq_cli_replay_into_the_collector(start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun) -> None:
    dead_letter_a_run(training_run)
    collector = start_collector("dlq-replay.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run_python(
        [
            "-m",
            "otel_recursive_metrics",
            "dlq",
            "replay",
            "--dir",
            str(training_run.dir),
            "--to",
            "otlp",
            "--endpoint",
            f"http://127.0.0.1:{collector.dlq_grpc_port}",
            "--protocol",
            "grpc",
            "--retry-s",
            "20",
        ],
        env,
    )
    assert not list(training_run.dead_letter_dir.glob("*.jsonl")), "replayed entries are removed"
    assert_every_step_in_prometheus(prometheus, training_run, STEPS)
