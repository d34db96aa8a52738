"""The skew summary across ranks (``runs --ranks RUN``): last step, step rate, GPU utilisation, slowest rank.

The first test writes points at chosen times straight into a store, so the figures are exact. The
second runs a real 4-rank job: four processes with torchrun's variables, one pipeline each, one
store, GPUs from the fake NVML binding (the only seam), one rank three times slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder

from .conftest import require_module
from .helpers import run_cli

SECOND_NS = 1_000_000_000
T0 = 1_800_000_000 * SECOND_NS


def write_rank(
    store: PointStore, run: str, rank: int, steps: list[tuple[float, int]], gpu: list[tuple[float, float]], restart: int = 0
) -> None:
    """Points of one rank: ``train.loss`` at (seconds, step) and ``hw.gpu.utilization`` at (seconds, fraction)."""
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "training.rank": rank, "training.restart_count": restart})
    scope = builder.plain_scope("test", "")
    loss = builder.metric("train.loss", "", "", "gauge")
    util = builder.metric("hw.gpu.utilization", "", "1", "gauge")
    for seconds, step in steps:
        builder.add_point(resource, scope, loss, "{}", 0, T0 + int(seconds * SECOND_NS), 1.0 / (step + 1), step, None)
    for seconds, fraction in gpu:
        builder.add_point(resource, scope, util, f'{{"hw.id":"GPU-{rank}"}}', 0, T0 + int(seconds * SECOND_NS), fraction, None, None)
    store.write_batch(builder.build())


def test_skew_figures_from_known_points(data_dir: Path, capsys: Any) -> None:
    store = PointStore(data_dir / "metrics.db")
    # Ranks 0, 1, 3 step 10/s for 100 s; rank 2 stepped 10/s for 40 s, then 5/s. A 60 s window
    # sees only the slow part of rank 2. An earlier attempt (restart 0) of rank 2 was fast: ignored.
    for rank in (0, 1, 3):
        write_rank(store, "job", rank, [(t, t * 10) for t in range(101)], [(t, 0.9) for t in range(0, 101, 10)], restart=1)
    slow = [(t, t * 10) for t in range(41)] + [(t, 400 + (t - 40) * 5) for t in range(41, 101)]
    write_rank(store, "job", 2, slow, [(t, 0.9 if t < 40 else 0.4) for t in range(0, 101, 10)], restart=1)
    write_rank(store, "job", 2, [(t, t * 100) for t in range(10)], [], restart=0)
    skew = store.rank_skew("job", window_s=60)
    assert skew["restart"] == 1
    by_rank = {r["rank"]: r for r in skew["ranks"]}
    assert list(by_rank) == [0, 1, 2, 3]
    assert by_rank[0]["last_step"] == 1000 and by_rank[2]["last_step"] == 700
    assert by_rank[2]["steps_behind"] == 300 and by_rank[0]["steps_behind"] == 0
    assert by_rank[0]["step_rate_per_s"] == pytest.approx(10.0)
    assert by_rank[2]["step_rate_per_s"] == pytest.approx(5.0)
    assert by_rank[2]["gpu_utilization"] == pytest.approx(0.4)  # t = 30 (0.9) is outside the window
    assert by_rank[0]["gpu_utilization"] == pytest.approx(0.9)
    assert skew["slowest"] == {
        "rank": 2,
        "step_rate_per_s": pytest.approx(5.0),
        "median_step_rate_per_s": pytest.approx(10.0),
        "below_median": pytest.approx(0.5),
        "steps_behind": 300,
    }
    # Over the whole history rank 2's rate is (700 - 0) / 100 s.
    assert {r["rank"]: r["step_rate_per_s"] for r in store.rank_skew("job", window_s=1000)["ranks"]}[2] == pytest.approx(7.0)
    store.close()

    code, out, _ = run_cli(capsys, "runs", "--store", str(data_dir / "metrics.db"), "--ranks", "job")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "last", "step", "behind", "steps/s", "last", "point", "GPU", "util"]
    assert lines[4].split() == ["2", "700", "300", "5.00", "0.0s", "40%"]
    assert "slowest: rank 2 at 5 steps/s, 50% below the median 10 steps/s, 300 steps behind the leader" in out
    assert "attempt 1" in out
    code, out, _ = run_cli(capsys, "runs", "--store", str(data_dir / "metrics.db"), "--ranks", "job", "--format", "json")
    assert json.loads(out)["slowest"]["rank"] == 2


def test_skew_edge_cases_and_errors(data_dir: Path, capsys: Any) -> None:
    store = PointStore(data_dir / "metrics.db")
    write_rank(store, "solo", 0, [(0, 0), (1, 10)], [])
    write_rank(store, "hung", 0, [(t, t) for t in range(50)], [])
    write_rank(store, "hung", 1, [(t, t) for t in range(20)], [])  # stopped writing at t = 19
    write_rank(store, "gpu-only", 0, [], [(0, 0.5), (1, 0.7)])
    skew = store.rank_skew("solo")
    assert skew["slowest"] is None and skew["ranks"][0]["step_rate_per_s"] == pytest.approx(10.0)
    hung = {r["rank"]: r for r in store.rank_skew("hung")["ranks"]}
    assert hung[1]["seconds_since_last_point"] == pytest.approx(30.0) and hung[1]["steps_behind"] == 30
    gpu_only = store.rank_skew("gpu-only")["ranks"][0]
    assert gpu_only["last_step"] is None and gpu_only["step_rate_per_s"] is None and gpu_only["gpu_utilization"] == pytest.approx(0.6)
    with pytest.raises(KeyError):
        store.rank_skew("nope")
    with pytest.raises(ValueError, match="window_s"):
        store.rank_skew("solo", window_s=0)
    store.close()
    path = str(data_dir / "metrics.db")
    code, out, _ = run_cli(capsys, "runs", "--store", path, "--ranks", "solo")
    assert code == 0 and "one rank: nothing to compare it with" in out
    code, out, _ = run_cli(capsys, "runs", "--store", path, "--ranks", "gpu-only")
    assert code == 0 and "one rank" in out and "-" in out.splitlines()[2]
    code, _, err = run_cli(capsys, "runs", "--store", path, "--ranks", "sol")
    assert code == 1 and "did you mean 'solo'" in err
    code, _, err = run_cli(capsys, "runs", "--store", path, "--ranks", "solo", "--window", "-1")
    assert code == 2 and "--window -1.0: expected a positive number of seconds" in err


RANK_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from tests.fake_pynvml import FakeGpu, FakeNvml
    # One node with four GPUs; the one rank 2 uses is barely busy.
    fake = FakeNvml([FakeGpu(f"GPU-{i:08x}-0000-0000-0000-000000000000", utilization_percent=40 if i == 2 else 95) for i in range(4)])
    sys.modules["pynvml"] = fake.module()
    from otel_recursive_metrics import TrainingMetrics

    rank, seconds_per_step, steps = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    with TrainingMetrics(prefix="train.", dir=sys.argv[1], flush_interval_s=0.2, system_metrics=True,
                         system_metrics_interval_s=0.2, system_metrics_set="process.memory.usage,hw.gpu.utilization") as metrics:
        for step in range(steps):
            time.sleep(seconds_per_step)
            metrics.log({"loss": 1.0 / (step + 1)}, step=step)
    """
)


def test_a_four_rank_run_shows_its_straggler(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    require_module("opentelemetry.instrumentation.system_metrics", "system")
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    children = []
    for rank in range(4):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            PYTHONPATH=str(root),
            OTEL_RECURSIVE_METRICS_RUN_ID="ddp-4",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="4",
            LOCAL_WORLD_SIZE="4",
        )
        # About 4 s of training each: rank 2 takes three times as long per step, so does a third of the steps.
        pace, steps = (0.06, 67) if rank == 2 else (0.02, 200)
        children.append(
            subprocess.Popen(
                [sys.executable, str(script), str(data_dir), str(rank), str(pace), str(steps)],
                env=env,
                cwd=root,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    code, out, _ = run_cli(capsys, "runs", "--store", str(data_dir / "metrics.db"), "--ranks", "ddp-4", "--format", "json")
    assert code == 0
    skew = json.loads(out)
    by_rank = {r["rank"]: r for r in skew["ranks"]}
    assert sorted(by_rank) == [0, 1, 2, 3]
    assert [by_rank[r]["last_step"] for r in range(4)] == [199, 199, 66, 199]
    assert by_rank[2]["steps_behind"] == 133
    assert skew["slowest"]["rank"] == 2
    # The pace differs threefold by construction; the measured rates only need to keep the order.
    assert by_rank[2]["step_rate_per_s"] < min(by_rank[r]["step_rate_per_s"] for r in (0, 1, 3))
    # Each rank sampled its own GPU (LOCAL_RANK of four per node): rank 2's is the idle one.
    assert by_rank[2]["gpu_utilization"] == pytest.approx(0.40)
    assert all(by_rank[r]["gpu_utilization"] == pytest.approx(0.95) for r in (0, 1, 3))
    code, out, _ = run_cli(capsys, "runs", "--store", str(data_dir / "metrics.db"), "--ranks", "ddp-4")
    assert code == 0 and "slowest: rank 2 at" in out and "133 steps behind the leader" in out
    assert [line.split()[-1] for line in out.splitlines()[2:6]] == ["95%", "95%", "40%", "95%"]
