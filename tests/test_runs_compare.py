"""Runs you can compare: parameters, run status, multi-run queries, compare, DataFrames."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics

from .helpers import run_cli, wait_until
from .otlp_receiver import GrpcReceiver
from .programs import start_log_loop, wait_ready


def two_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs "lr-0.1" and "lr-0.5" of 50 steps, with parameters, a name and tags."""
    for lr in (0.1, 0.5):
        monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", f"lr-{lr}")
        with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.05, run_name=f"sgd {lr}", tags=["sweep"]) as metrics:
            metrics.log_params({"lr": lr, "optim": {"name": "sgd", "momentum": 0.9}, "layers": [64, 32], "seed": 7})
            for step in range(50):
                metrics.log({"loss": 2.3456789012 - lr * step / 50, "acc": step / 50}, step=step)
    return data_dir / "metrics.db"


def test_log_params_flattens_keeps_types_and_shows_in_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    store_file = two_runs(data_dir, monkeypatch)
    runs = {r["run"]: r for r in PointStore(store_file, readonly=True).runs(last_of=["train.loss"])}
    run = runs["lr-0.1"]
    assert run["params"] == {"lr": 0.1, "optim.name": "sgd", "optim.momentum": 0.9, "layers": [64, 32], "seed": 7}
    assert (run["name"], run["tags"], run["status"]) == ("sgd 0.1", ["sweep"], "finished")
    assert run["last"]["train.loss"] == pytest.approx(2.3456789012 - 0.1 * 49 / 50)
    code, out, _ = run_cli(capsys, "runs", "--store", str(store_file), "--metric", "train.loss")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("lr-0.5"))
    assert "finished" in line and "sgd 0.5" in line and "lr=0.5" in line and "1.8556" in line
    code, out, _ = run_cli(capsys, "runs", "--store", str(store_file), "--format", "json")
    objects = [json.loads(line) for line in out.splitlines()]
    assert {o["run"]: o["params"]["lr"] for o in objects} == {"lr-0.1": 0.1, "lr-0.5": 0.5}
    # Run metadata is not a metric of the store, nor counted as points.
    assert PointStore(store_file, readonly=True).metric_names() == ["train.acc", "train.loss"]


def test_parameters_travel_as_an_info_metric_and_run_events_stay_home(data_dir: Path) -> None:
    with GrpcReceiver() as rec:
        metrics = TrainingMetrics(dir=data_dir, sinks="otlp", otlp_endpoint=rec.endpoint, flush_interval_s=0.05, run_name="r")
        metrics.log_params({"lr": 0.25, "note": "x" * 1000, **{f"p{i:03d}": i for i in range(100)}})
        metrics.log({"loss": 1.0}, step=0)
        assert metrics.close(20.0)
        names: dict[str, list[Any]] = {}
        for request in rec.accepted:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        names.setdefault(m.name, []).extend(m.gauge.data_points)
    assert set(names) == {"training.run.params", "loss"}, "run events are store-only"
    (info,) = names["training.run.params"]
    attrs = {kv.key: kv.value for kv in info.attributes}
    assert info.as_int == 1 and len(attrs) == 64  # INFO_MAX_ATTRIBUTES
    assert attrs["lr"].double_value == 0.25 and len(attrs["note"].string_value) == 256
    assert metrics.get_stats()["sent_points"] == {"otlp": 1}, "metadata is not counted as logged points"


def test_run_status_follows_the_process(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "failed")
    with pytest.raises(RuntimeError), TrainingMetrics(dir=data_dir, flush_interval_s=0.05) as metrics:
        metrics.log({"loss": 1.0}, step=0)
        raise RuntimeError("diverged")
    children = {}
    for name in ("running", "killed", "crashed"):
        children[name] = start_log_loop(
            data_dir, "--rate-hz", "20", "--flush-interval-s", "0.1", env={"OTEL_RECURSIVE_METRICS_RUN_ID": name}
        )
        wait_ready(children[name])
    time.sleep(0.5)
    children["killed"].send_signal(signal.SIGTERM)
    children["crashed"].send_signal(signal.SIGKILL)
    for name in ("killed", "crashed"):
        children[name].wait(30)
    try:
        store = PointStore(data_dir / "metrics.db", readonly=True)
        wait_until(lambda: {r["run"] for r in store.runs()} >= {"running", "killed", "crashed", "failed"}, 30, "every run in the store")
        status = {r["run"]: r["status"] for r in store.runs()}
        assert status == {"failed": "failed", "running": "running", "killed": "killed", "crashed": "crashed"}
    finally:
        children["running"].kill()
        children["running"].wait(30)
    status = {r["run"]: r["status"] for r in PointStore(data_dir / "metrics.db", readonly=True).runs()}
    assert status["running"] == "crashed", "a process gone without an end is crashed"


def test_query_several_runs_full_precision_last_and_hints(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    store_file = str(two_runs(data_dir, monkeypatch))
    code, out, _ = run_cli(
        capsys, "query", "--store", store_file, "--metric", "train.loss", "--run", "lr-0.1", "--run", "sgd 0.5", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["run"] for r in rows} == {"lr-0.1", "lr-0.5"} and len(rows) == 100
    assert rows[0]["value"] == "2.3456789012", "CSV keeps full precision"
    code, out, _ = run_cli(capsys, "query", "--store", store_file, "--metric", "train.loss", "--run", "lr-0.1", "--last", "3")
    lines = [line for line in out.splitlines()[2:] if line.strip()]
    assert [int(line.split()[3]) for line in lines] == [47, 48, 49], "--last gives the newest points, oldest first"
    assert "run" in out.splitlines()[0]
    code, _, err = run_cli(capsys, "query", "--store", store_file, "--metric", "train.los")
    assert code == 1 and "did you mean 'train.loss'" in err and "train.acc" in err
    code, _, err = run_cli(capsys, "query", "--store", store_file, "--run", "lr-0.2")
    assert code == 1 and "did you mean" in err and "lr-0.1" in err


def test_compare_shows_last_min_max_and_the_parameters_that_differ(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    store_file = str(two_runs(data_dir, monkeypatch))
    code, out, _ = run_cli(capsys, "compare", "lr-0.1", "lr-0.5", "--store", store_file, "--format", "json")
    result = json.loads(out)
    loss = {r["run"]: r for r in result["metrics"] if r["metric"] == "train.loss"}
    assert loss["lr-0.5"]["last"] == pytest.approx(2.3456789012 - 0.5 * 49 / 50) and loss["lr-0.5"]["last_step"] == 49
    assert loss["lr-0.1"]["max"] == pytest.approx(2.3456789012) and loss["lr-0.1"]["points"] == 50
    assert result["params"] == {"lr": {"lr-0.1": 0.1, "lr-0.5": 0.5}}, "only the parameters that differ"
    code, out, _ = run_cli(capsys, "compare", "sgd 0.1", "sgd 0.5", "--store", store_file, "--metric", "train.acc")
    assert code == 0 and "train.acc" in out and "parameter" in out and "lr" in out


def test_follow_prints_new_points_until_the_run_ends(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child = start_log_loop(
        data_dir, "--rate-hz", "20", "--steps", "60", "--flush-interval-s", "0.1", env={"OTEL_RECURSIVE_METRICS_RUN_ID": "live"}
    )
    try:
        wait_ready(child)
        wait_until((data_dir / "metrics.db").exists, 30, "the store")
        follow = subprocess.run(
            [
                sys.executable,
                "-m",
                "otel_recursive_metrics",
                "query",
                "--store",
                str(data_dir / "metrics.db"),
                "--run",
                "live",
                "--follow",
                "--format",
                "csv",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        child.wait(60)
    assert follow.returncode == 0, follow.stderr
    steps = [int(r["step"]) for r in csv.DictReader(io.StringIO(follow.stdout)) if r["metric"] == "m0"]
    assert steps == list(range(60)), "every step, each once, then it stopped when the run ended"


def test_points_and_runs_as_dataframes(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas", reason="needs pandas (the pandas extra)")
    store = PointStore(two_runs(data_dir, monkeypatch), readonly=True)
    frame = store.to_dataframe("train.loss", run=["lr-0.1", "lr-0.5"])
    assert len(frame) == 100 and list(frame.columns[:4]) == ["run", "rank", "metric", "step"]
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    wide = frame.pivot_table(index="step", columns="run", values="value")
    assert wide.loc[0, "lr-0.1"] == pytest.approx(2.3456789012)
    runs = store.runs_dataframe(last_of=["train.loss"])
    assert set(runs["run"]) == {"lr-0.1", "lr-0.5"} and set(runs["params.lr"]) == {0.1, 0.5}
    assert isinstance(runs, pd.DataFrame)


def test_a_shared_pipeline_ends_its_run_at_exit(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    script = textwrap.dedent(
        f"""
        from otel_recursive_metrics import TrainingMetrics
        train = TrainingMetrics(prefix="train.", dir={str(data_dir)!r}, flush_interval_s=0.05)
        val = TrainingMetrics(prefix="val.", pipeline=train.pipeline)
        val.log({{"loss": 1.0}}, step=0)
        raise SystemExit(0)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_RECURSIVE_METRICS_RUN_ID"] = "shared"
    assert subprocess.run([sys.executable, "-c", script], env=env, timeout=60, check=False).returncode == 0
    (run,) = PointStore(data_dir / "metrics.db", readonly=True).runs()
    assert run["status"] == "finished"
    crash = script.replace("raise SystemExit(0)", "raise ValueError('diverged')").replace(str(data_dir), str(tmp_path / "e"))
    assert subprocess.run([sys.executable, "-c", crash], env=env, timeout=60, check=False, capture_output=True).returncode == 1
    (run,) = PointStore(tmp_path / "e" / "metrics.db", readonly=True).runs()
    assert run["status"] == "failed", "an uncaught exception ends the run as failed"


def test_log_params_never_blocks_and_refuses_what_is_not_a_mapping(data_dir: Path) -> None:
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.05)
    with pytest.raises(TypeError, match="params=42"):
        metrics.log_params(42)
    metrics.log_params({"lr": 0.1})
    assert metrics.close(10.0)
