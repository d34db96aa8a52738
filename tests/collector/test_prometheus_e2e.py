"""Training metrics through our OTLP exporter, the built Collector and remote write, into Prometheus.

The values Prometheus answers to PromQL are compared with the local store's rows of the same
run: the store is the exporter's record of what was logged (every step its own row, with its
time), so equal counts and equal values mean nothing was lost or altered on the way.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .stack import REPO, Collector, Prometheus, StartCollector, TrainingRun, run_python, store_points, training_env, wait_for

pytestmark = [pytest.mark.collector, pytest.mark.prometheus, pytest.mark.slow]

PACED = "tests/collector/train_paced.py"
EXAMPLE = "examples/train_numpy.py"
PACED_METRICS = {"train.loss": "train_loss", "train.accuracy": "train_accuracy", "train.grad_norm": "train_grad_norm"}


def otlp_env(collector: Collector, protocol: str) -> dict[str, str]:
    """The standard OTLP variables for sending to ``collector`` over ``protocol``."""
    if protocol == "grpc":
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}


def run_labels(prometheus: Prometheus, run: TrainingRun, timeout_s: float = 30.0) -> dict[str, str]:
    """The run's ``target_info`` labels, once Prometheus has them."""
    wait_for(
        lambda: prometheus.query(f'target_info{{training_run_id="{run.run_id}"}}'),
        timeout_s,
        f"target_info of run {run.run_id} in Prometheus",
    )
    return prometheus.instance_of_run(run.run_id)


def expected_samples(run: TrainingRun, metric: str) -> list[tuple[int, float]]:
    """The store's rows of ``metric`` as Prometheus samples: (time in ms, value), in time order."""
    return [(int(row["time_unix_nano"]) // 1_000_000, float(row["value"])) for row in store_points(run.store, metric)]


def prometheus_samples(prometheus: Prometheus, labels: dict[str, str], name: str) -> list[tuple[int, float]]:
    selector = f'{name}{{job="{labels["job"]}",instance="{labels["instance"]}"}}'
    return prometheus.samples(selector).get(name, [])


def wait_for_samples(
    prometheus: Prometheus, labels: dict[str, str], name: str, count: int, timeout_s: float = 30.0
) -> list[tuple[int, float]]:
    """The samples of ``name`` once Prometheus has at least ``count`` of them."""

    def enough() -> list[tuple[int, float]] | None:
        samples = prometheus_samples(prometheus, labels, name)
        return samples if len(samples) >= count else None

    result: list[tuple[int, float]] = wait_for(
        enough,
        timeout_s,
        f"{count} samples of {name} in Prometheus",
        on_timeout=lambda: f"Prometheus has {len(prometheus_samples(prometheus, labels, name))}",
    )
    return result


def assert_every_step_in_prometheus(prometheus: Prometheus, run: TrainingRun, steps: int, timeout_s: float = 30.0) -> None:
    """Each metric's samples in Prometheus are exactly the store's rows: same count, times and values."""
    labels = run_labels(prometheus, run)
    for metric, name in PACED_METRICS.items():
        expected = expected_samples(run, metric)
        assert len(expected) == steps, f"the store has {len(expected)} rows of {metric}, the run logged {steps}"
        assert len({t for t, _ in expected}) == steps, f"two steps of {metric} share a millisecond; the driver's pause is too short"
        got = wait_for_samples(prometheus, labels, name, len(expected), timeout_s)
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        assert not missing and not extra, (
            f"{name}: {len(missing)} logged samples missing, {len(extra)} unexpected: {missing[:3]} {extra[:3]}"
        )
        assert got == expected


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_each_logged_step_reaches_prometheus(
    protocol: str, start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun
) -> None:
    collector = start_collector("gateway.yaml", BATCH_TIMEOUT="200ms")
    steps = 150
    env = training_env(training_run, **otlp_env(collector, protocol), OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S="0.2")
    run_python([PACED, "--dir", str(training_run.dir), "--steps", str(steps), "--pause-s", "0.002"], env)
    assert_every_step_in_prometheus(prometheus, training_run, steps)

    labels = run_labels(prometheus, training_run)
    # Resource attributes after translation: on target_info, joined on job + instance.
    assert labels["job"] == "e2e-trainer"  # service.name
    resource = {
        k: labels[k] for k in ("training_run_id", "training_rank", "training_local_rank", "training_world_size", "training_restart_count")
    }
    assert resource == {
        "training_run_id": training_run.run_id,
        "training_rank": "0",
        "training_local_rank": "0",
        "training_world_size": "1",
        "training_restart_count": "0",
    }
    assert labels["instance"]  # service.instance.id, set by the SDK's Resource.create


EXAMPLE_METRICS = {
    "train.loss": "train_loss",
    "train.accuracy": "train_accuracy",
    "train.lr": "train_lr",
    "train.grad_norm": "train_grad_norm",
    "val.loss": "val_loss",
    "val.accuracy": "val_accuracy",
}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_numpy_example_reaches_prometheus(
    protocol: str, start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun
) -> None:
    """The example, unchanged, configured only by the environment.

    It runs thousands of steps a second, and Prometheus keeps one sample per series per
    millisecond (the first it is sent): so each millisecond in which the store has rows must have
    exactly one sample in Prometheus, whose value is one of that millisecond's rows.
    """
    collector = start_collector("gateway.yaml", BATCH_TIMEOUT="200ms")
    # One OTLP request for the whole run (the example flushes every second, the run is shorter):
    # a later request with a sample in the same millisecond as an earlier one but another value
    # would be refused whole by Prometheus ("duplicate sample for timestamp").
    env = training_env(training_run, **otlp_env(collector, protocol), OTEL_RECURSIVE_METRICS_BATCH_SIZE="100000")
    steps = 200
    done = run_python([EXAMPLE, "--dir", str(training_run.dir), "--steps", str(steps), "--run-id", training_run.run_id], env)
    assert f"{steps} steps" in done.stdout

    labels = run_labels(prometheus, training_run)
    for metric, name in EXAMPLE_METRICS.items():
        rows = store_points(training_run.store, metric)
        assert len(rows) == (steps if metric.startswith("train.") else steps // 50 + 1), (metric, len(rows))
        by_ms: dict[int, set[float]] = {}
        for row in rows:
            by_ms.setdefault(int(row["time_unix_nano"]) // 1_000_000, set()).add(float(row["value"]))
        got = wait_for_samples(prometheus, labels, name, len(by_ms))
        assert [t for t, _ in got] == sorted(by_ms), f"{name}: the milliseconds in Prometheus differ from the store's"
        wrong = [(t, v) for t, v in got if v not in by_ms[t]]
        assert not wrong, f"{name}: values not logged in their millisecond: {wrong[:5]}"


def per_rank(prometheus: Prometheus, promql: str) -> dict[str, float]:
    """``{training_rank: value}`` of an instant query whose series carry ``training_rank``."""
    return {series["metric"]["training_rank"]: float(series["value"][1]) for series in prometheus.query(promql)}


@pytest.mark.parametrize("resource_labels", [None, "[training.rank, training.run.id]"], ids=["target_info-join", "resource-labels"])
def test_promql_per_rank(
    resource_labels: str | None, start_collector: StartCollector, prometheus: Prometheus, training_run: TrainingRun
) -> None:
    """Two ranks of one run: collector-config/README.md's PromQL for loss and throughput answers per rank.

    By default resource attributes are only on ``target_info`` (joined on job + instance);
    with ``PRW_RESOURCE_LABELS`` the listed ones are labels of every series.
    """
    settings = {"PRW_RESOURCE_LABELS": resource_labels} if resource_labels else {}
    collector = start_collector("gateway.yaml", BATCH_TIMEOUT="200ms", **settings)
    steps, batch = 200, 64
    trainers = []
    for rank in (0, 1):
        folder = training_run.dir.with_name(f"rank{rank}")
        env = training_env(
            training_run,
            **otlp_env(collector, "grpc"),
            OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S="0.2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
        )
        argv = [sys.executable, PACED, "--dir", str(folder), "--steps", str(steps), "--pause-s", "0.005", "--samples-counter"]
        trainers.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for trainer in trainers:
        try:
            output, _ = trainer.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            trainer.kill()
            output, _ = trainer.communicate()
        assert trainer.returncode == 0, output[-3000:]

    info = f'target_info{{training_run_id="{training_run.run_id}"}}'
    wait_for(lambda: len(prometheus.query(info)) == 2, 30, "target_info of both ranks")
    # Resource attributes become target_info labels (dots -> underscores); service.instance.id -> instance.
    infos = {series["metric"]["training_rank"]: series["metric"] for series in prometheus.query(info)}
    assert set(infos) == {"0", "1"} and all(i["training_world_size"] == "2" and i["job"] == "e2e-trainer" for i in infos.values()), infos
    assert infos["0"]["instance"] != infos["1"]["instance"], "each process has its own service.instance.id"

    if resource_labels:
        loss = f'train_loss{{training_run_id="{training_run.run_id}"}}'
        samples = f'train_samples_total{{training_run_id="{training_run.run_id}"}}'
        by_rank = "SELECTION"
    else:
        loss = f"train_loss * on (job, instance) group_left (training_rank) {info}"
        samples = "train_samples_total"
        by_rank = f"SELECTION * on (job, instance) group_left (training_rank) {info}"
    assert set(per_rank(prometheus, loss)) == {"0", "1"}

    # The counter's last value per rank: every sample counted.
    totals = "max by (training_rank) (" + by_rank.replace("SELECTION", f"max_over_time({samples}[1h])") + ")"
    expected = {"0": steps * batch, "1": steps * batch}
    wait_for(
        lambda: per_rank(prometheus, totals) == expected,
        30,
        f"{totals} == {expected}",
        on_timeout=lambda: str(per_rank(prometheus, totals)),
    )
    throughput = "sum by (training_rank) (" + by_rank.replace("SELECTION", f"rate({samples}[1m])") + ")"
    rates = per_rank(prometheus, throughput)
    assert set(rates) == {"0", "1"} and all(r > 0 for r in rates.values()), rates
