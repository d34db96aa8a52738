"""The Collector is SIGKILLed mid-run and started again on the same ports: no logged step is missing.

The gateway runs synchronously (``GATEWAY_PROCESSORS='[memory_limiter]' PRW_QUEUE_ENABLED=false``):
it answers our exporter only once Prometheus has the samples, so what the Collector held when it
died is still in our exporter's durable queue, which retries until the Collector is back. With
the default gateway (batch processor, in-memory remote-write queue) the Collector answers on
receipt and a SIGKILL loses what it had not yet written: one run here lost 38 of 600 steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .stack import REPO, Prometheus, StartCollector, TrainingRun, training_env, wait_for
from .test_prometheus_e2e import PACED, assert_every_step_in_prometheus, otlp_env, prometheus_samples, run_labels

pytestmark = [pytest.mark.collector, pytest.mark.prometheus, pytest.mark.slow]

STEPS = 3000
PAUSE_S = 0.005
#: Steps the run must log while the Collector is down (observed in its log, not timed).
STEPS_DURING_OUTAGE = 150


def last_step(log: Path) -> int:
    """The last step the run reported ("step N" lines), -1 before the first."""
    steps = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("step ")]
    return steps[-1] if steps else -1


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_killed_mid_run_loses_nothing(
    protocol: str, start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun
) -> None:
    collector = start_collector("gateway.yaml", GATEWAY_PROCESSORS="[memory_limiter]", PRW_QUEUE_ENABLED="false")
    env = training_env(
        training_run,
        **otlp_env(collector, protocol),
        OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S="0.2",
        # Short retries, so the run's end does not wait long for the Collector's return.
        OTEL_RECURSIVE_METRICS_RETRY_DELAY_S="0.2",
        OTEL_RECURSIVE_METRICS_RETRY_MAX_DELAY_S="1",
        OTEL_RECURSIVE_METRICS_SEND_TIMEOUT_S="5",
        OTEL_EXPORTER_OTLP_TIMEOUT="5000",
    )
    log = training_run.dir.parent / "train.log"
    argv = [
        sys.executable, PACED, "--dir", str(training_run.dir), "--steps", str(STEPS), "--pause-s", str(PAUSE_S), "--progress-every", "10",
    ]  # fmt: skip
    with log.open("w") as out:
        trainer = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        labels = run_labels(prometheus, training_run)
        assert trainer.poll() is None, "the run ended before the Collector was killed"
        wait_for(lambda: len(prometheus_samples(prometheus, labels, "train_loss")) >= 50, 30, "the run's first 50 steps in Prometheus")
        collector.kill()
        before_kill = len(prometheus_samples(prometheus, labels, "train_loss"))
        killed_at_step = last_step(log)
        # The outage lasts until the run has logged that many steps, whatever the machine's speed.
        wait_for(
            lambda: last_step(log) >= killed_at_step + STEPS_DURING_OUTAGE or trainer.poll() is not None, 60, "steps during the outage"
        )
        assert trainer.poll() is None, f"the run ended during the outage; make it longer\n{log.read_text()[-2000:]}"
        collector.start()
        trainer.wait(timeout=120)
    except (AssertionError, subprocess.TimeoutExpired) as error:
        raise AssertionError(f"{error}\n--- training log tail:\n{log.read_text()[-3000:]}") from None
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait(timeout=10)
    output = log.read_text()
    assert trainer.returncode == 0, f"the run did not deliver everything (status {trainer.returncode}):\n{output[-3000:]}"
    stats = json.loads(output.strip().splitlines()[-1])["stats"]
    assert before_kill < killed_at_step + STEPS_DURING_OUTAGE < STEPS
    assert stats["retries"].get("otlp", 0) > 0, f"the exporter never retried, so the outage was not during the run: {stats}"
    assert not stats["dead_lettered_points"] and not stats["dropped_points"], stats
    assert_every_step_in_prometheus(prometheus, training_run, STEPS)
