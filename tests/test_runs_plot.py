"""Runs and ranks from several processes in one store; the runs and plot commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import cli, load_config
from otel_recursive_metrics.cli.runs import format_ranks
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.training import TrainingMetrics

ROOT = Path(__file__).resolve().parents[1]

RANK_SCRIPT = textwrap.dedent(
    """
    import os
    from otel_recursive_metrics.training import TrainingMetrics
    rank = int(os.environ["RANK"])
    with TrainingMetrics(prefix="train.", dir=os.environ["DATA_DIR"], flush_interval_s=0.2) as metrics:
        for step in range(300):
            metrics.log({"loss": 1.0 / (step + 1) + rank, "rank_id": rank}, step=step)
    """
)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC", "SLURM"))}
    env.update(extra)
    return env


def run_ranks(data_dir: Path, run_id: str, world_size: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT],
            env=child_env(
                DATA_DIR=str(data_dir),
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(world_size),
                TORCHELASTIC_RUN_ID=run_id,
                TORCHELASTIC_RESTART_COUNT="0",
            ),
        )
        for rank in range(world_size)
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``ddp`` with ranks 0 and 1 in two processes, then run ``solo`` (one rank), one store."""
    data_dir = tmp_path_factory.mktemp("runs") / "otel-metrics"
    run_ranks(data_dir, "ddp", 2)
    run_ranks(data_dir, "solo", 1)
    return data_dir


def test_runs_summarise_each_run_with_its_ranks(two_runs: Path) -> None:
    store = PointStore(two_runs / "metrics.db")
    runs = {r["run"]: r for r in store.runs()}
    store.close()
    assert set(runs) == {"ddp", "solo"}
    assert runs["ddp"]["ranks"] == [0, 1] and runs["solo"]["ranks"] == [0]
    assert runs["ddp"]["points"] == 2 * 2 * 300 and runs["solo"]["points"] == 2 * 300
    assert runs["ddp"]["metrics"] == ["train.loss", "train.rank_id"]
    assert runs["ddp"]["restarts"] == [0]
    assert runs["ddp"]["start_time_unix_nano"] <= runs["ddp"]["end_time_unix_nano"] <= runs["solo"]["end_time_unix_nano"]


def test_run_and_rank_filters(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = PointStore(two_runs / "metrics.db")
    try:
        rank1 = store.query("train.rank_id", run="ddp", rank=1)
        assert [p.step for p in rank1] == list(range(300))
        assert {p.value for p in rank1} == {1}
        assert {p.resource["training.world_size"] for p in rank1} == {2}
        assert len(store.query("train.loss", run="ddp")) == 600
        assert len(store.query("train.loss", run="solo", rank=1)) == 0
        assert len(store.query("train.loss", rank=0)) == 600
    finally:
        store.close()
    assert (
        cli.main(
            [
                "query",
                "--store",
                str(two_runs / "metrics.db"),
                "--metric",
                "train.rank_id",
                "--run",
                "ddp",
                "--rank",
                "0",
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 300 and {r["value"] for r in rows} == {0}
    assert {(r["resource"]["training.run.id"], r["resource"]["training.rank"]) for r in rows} == {("ddp", 0)}


def test_runs_command(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["runs", "--store", str(two_runs / "metrics.db")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "start", "(UTC)", "end"]
    ddp = next(line for line in lines if line.startswith("ddp"))
    assert " 0-1 " in ddp and " 1200 " in ddp and "2: train.loss, train.rank_id" in ddp
    assert any(line.startswith("solo") for line in lines)
    assert cli.main(["runs", "--store", str(two_runs / "metrics.db"), "--format", "json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["run"] for o in objects] == ["ddp", "solo"]
    assert cli.main(["runs", "--store", str(two_runs / "missing.db")]) == 2
    assert format_ranks([0, 1, 2, 3, 6, 8, 9]) == "0-3,6,8-9"


# -- plot ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real runs of examples/train_numpy.py into one store."""
    data_dir = tmp_path_factory.mktemp("example") / "otel-metrics"
    for run_id, seed in (("spiral-a", "0"), ("spiral-b", "1")):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "train_numpy.py"),
                "--dir",
                str(data_dir),
                "--steps",
                "400",
                "--run-id",
                run_id,
                "--seed",
                seed,
            ],
            env=child_env(),
            check=True,
            timeout=240,
            capture_output=True,
        )
    return data_dir


def labelled_lines(figure: Any) -> list[Any]:
    return [line for ax in figure.axes for line in ax.get_lines() if not line.get_label().startswith("_")]


def colour_pixels(image: Any, rgb: tuple[float, ...]) -> int:
    import numpy as np

    distance = np.abs(image[:, :, :3] - np.array(rgb[:3])).max(axis=2)
    return int((distance < 0.04).sum())


def test_plot_renders_one_line_per_run_from_a_real_run(example_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.image
    from matplotlib import colormaps

    out = tmp_path / "loss.png"
    assert cli.main(["plot", "--store", str(example_runs / "metrics.db"), "--metric", "train.loss", "--out", str(out)]) == 0
    assert "1 metric(s), 2 line(s)" in capsys.readouterr().out
    assert out.stat().st_size > 20_000
    image = matplotlib.image.imread(str(out))
    height, width = image.shape[:2]
    assert (width, height) == (1200, 468)
    assert image[:, :, :3].std() > 0.05  # not blank
    tab10 = colormaps["tab10"]
    # Exactly two line colours: the first two of the palette, and not the third.
    assert colour_pixels(image, tab10(0)) > 500 and colour_pixels(image, tab10(1)) > 500
    assert colour_pixels(image, tab10(2)) < 20

    from otel_recursive_metrics.cli.plot import plot_metrics

    store = PointStore(example_runs / "metrics.db")
    try:
        figure = plot_metrics(store, ["train.loss", "val.accuracy"])
        assert len(figure.axes) == 2
        assert [line.get_label() for line in labelled_lines(figure)] == ["spiral-a", "spiral-b"] * 2
        assert figure.axes[1].get_xlabel() == "step" and figure.axes[0].get_ylabel() == "train.loss"
        assert figure.get_suptitle() == "runs spiral-a, spiral-b", "the title names the runs drawn, not the file"
        assert plot_metrics(store, ["train.loss"], runs=["spiral-b"], smooth=5).get_suptitle() == "run spiral-b (trailing mean of 5)"
        loss_a = figure.axes[0].get_lines()[0].get_ydata()
        assert loss_a[-1] < loss_a[0]  # the example really learns
        one_run = plot_metrics(store, ["train.loss"], runs=["spiral-b"], x="time", smooth=10)
        assert [line.get_label() for line in labelled_lines(one_run)] == ["spiral-b"]
        assert one_run.axes[0].get_xlabel() == "time since run start (s)"
        assert len(one_run.axes[0].get_lines()) == 2  # the faint raw line and the smoothed one
    finally:
        store.close()


def test_plot_splits_ranks_and_resumed_segments(two_runs: Path, data_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    from otel_recursive_metrics.cli.plot import plot_metrics

    store = PointStore(two_runs / "metrics.db")
    try:
        figure = plot_metrics(store, ["train.loss"])
        assert [line.get_label() for line in labelled_lines(figure)] == ["ddp rank 0", "ddp rank 1", "solo"]
        only_rank = plot_metrics(store, ["train.loss"], runs=["ddp"], rank=1)
        assert [line.get_label() for line in labelled_lines(only_rank)] == ["ddp rank 1"]
    finally:
        store.close()

    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.2))
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in [*range(10), *range(5, 12)]:
        metrics.log({"loss": float(step)}, step=step)
    assert metrics.flush(120)
    pipeline.shutdown(30)
    store = PointStore(data_dir / "metrics.db")
    try:
        figure = plot_metrics(store, ["loss"])
        lines = figure.axes[0].get_lines()
        assert [line.get_label() for line in lines][1:] == ["_resumed"]
        assert list(lines[1].get_xdata()) == [float(s) for s in range(5, 12)]
    finally:
        store.close()


def test_plot_errors_are_clear(
    example_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(example_runs / "metrics.db")
    out = str(tmp_path / "x.png")
    assert cli.main(["plot", "--store", store, "--metric", "no.such.metric", "--out", out]) == 1
    assert "no points for no.such.metric" in capsys.readouterr().err
    assert cli.main(["plot", "--store", store, "--metric", "train.loss", "--run", "nope", "--out", out]) == 1
    assert "in run(s) nope" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert cli.main(["plot", "--store", store, "--metric", "train.loss", "--out", out]) == 2
    assert "pip install -e '.[plot]' in your clone" in capsys.readouterr().err
    assert not Path(out).exists()
