"""TrainingMetrics: every step kept, values checked at the call, resumed runs, ranks."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_recursive_metrics import RecursiveMetricExporter, load_config
from otel_recursive_metrics.errors import MetricValueError
from otel_recursive_metrics.pipeline import default as _registry
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.training import TrainingMetrics, next_time_unix_nano

FLUSH_S = 120.0


def make_pipeline(data_dir: Path, **options: Any) -> Pipeline:
    options.setdefault("flush_interval_s", 0.2)
    return Pipeline(load_config(dir=data_dir, **options))


def stored(data_dir: Path, metric: str | None = None, **filters: Any) -> list[Any]:
    store = PointStore(data_dir / "metrics.db")
    try:
        return store.query(metric, **filters)
    finally:
        store.close()


def test_5000_log_calls_in_a_tight_loop_give_5000_steps_per_metric(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(prefix="train.", pipeline=pipeline)
    for step in range(5000):
        metrics.log({"loss": 1.0 / (step + 1), "accuracy": step / 5000, "tokens": step * 512}, step=step, epoch=step // 1000)
    assert metrics.flush(FLUSH_S)
    pipeline.shutdown(30)
    for name in ("train.loss", "train.accuracy", "train.tokens"):
        points = stored(data_dir, name)
        assert [p.step for p in points] == list(range(5000)), name
        assert all(p.epoch == p.step // 1000 for p in points)
        assert all(p.kind == "gauge" and p.attributes == {} for p in points)
    tokens = stored(data_dir, "train.tokens")
    assert tokens[4999].value == 4999 * 512 and isinstance(tokens[4999].value, int)
    assert stored(data_dir, "train.loss")[0].value == 1.0


def test_calls_at_the_same_step_are_each_kept_with_increasing_times(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=pipeline)
    for i in range(200):
        metrics.log({"loss": float(i)}, step=7)
    assert metrics.flush(FLUSH_S)
    points = stored(data_dir, "loss")
    assert [p.value for p in points] == [float(i) for i in range(200)]
    times = [p.time_unix_nano for p in points]
    assert times == sorted(times) and len(set(times)) == 200
    a, b = next_time_unix_nano(), next_time_unix_nano()
    assert b > a
    pipeline.shutdown(30)


class FakeTensor:
    """A 0-d tensor stand-in: ``.item()`` is where a real GPU tensor synchronises the device."""

    def __init__(self, value: float, shape: tuple[int, ...] = ()) -> None:
        self.value = value
        self.shape = shape
        self.item_calls = 0

    def item(self) -> float:
        self.item_calls += 1
        return self.value


def test_numbers_numpy_scalars_and_0d_tensors_are_converted_at_the_call(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=pipeline)
    tensor = FakeTensor(0.25)
    metrics.log(
        {
            "f": 1.5,
            "i": 3,
            "np_f32": np.float32(0.5),
            "np_i64": np.int64(9),
            "np_0d": np.array(2.5),
            "np_1elem": np.array([4.0]),
            "tensor": tensor,
            "inf": float("inf"),
            "nan": float("nan"),
        },
        step=0,
    )
    # Converted at the call: a later in-place change of the tensor does not change the point.
    assert tensor.item_calls == 1
    tensor.value = 99.0
    assert metrics.flush(FLUSH_S)
    values = {p.metric: p.value for p in stored(data_dir)}
    assert values["f"] == 1.5 and values["i"] == 3 and values["np_i64"] == 9
    assert values["np_f32"] == 0.5 and values["np_0d"] == 2.5 and values["np_1elem"] == 4.0
    assert values["tensor"] == 0.25
    assert values["inf"] == float("inf")
    # NaN is kept as a point; SQLite stores NaN as NULL (documented).
    assert "nan" in values and values["nan"] is None
    pipeline.shutdown(30)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"loss": "0.5"}, "loss='0.5'"),
        ({"loss": None}, "loss=None"),
        ({"done": True}, "done=True"),
        ({"done": np.bool_(True)}, "done="),
        ({"vec": np.array([1.0, 2.0])}, "vec=array"),
        ({"vec": FakeTensor(1.0, shape=(3,))}, "shape (3,)"),
        ({"big": 2**64}, "big=18446744073709551616"),
        ({"obj": object()}, "obj=<object"),
        ({"bad name": 1.0}, "key='bad name'"),
        ({3: 1.0}, "key=3"),
    ],
)
def test_non_numeric_values_are_refused_at_the_call_naming_key_and_value(data_dir: Path, values: dict[Any, Any], named: str) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=pipeline)
    before = len(pipeline.buffer)  # the run's start event
    with pytest.raises(MetricValueError) as info:
        metrics.log({"ok": 1.0, **values}, step=1)
    assert named in str(info.value)
    # Nothing of the refused call was queued.
    assert len(pipeline.buffer) == before
    pipeline.shutdown(5)


@pytest.mark.parametrize(
    ("step", "epoch", "named"), [(-1, None, "step=-1"), ("3", None, "step='3'"), (1.5, None, "step=1.5"), (1, "x", "epoch='x'")]
)
def test_bad_step_or_epoch_is_refused(data_dir: Path, step: Any, epoch: Any, named: str) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=pipeline)
    with pytest.raises(MetricValueError, match=named.replace("(", r"\(")):
        metrics.log({"loss": 1.0}, step=step, epoch=epoch)
    metrics.log({"loss": 1.0}, step=np.int64(4), epoch=np.int32(1))
    assert metrics.flush(FLUSH_S)
    assert [(p.step, p.epoch) for p in stored(data_dir, "loss")] == [(4, 1)]
    pipeline.shutdown(30)


def test_a_step_going_backwards_is_kept_counted_and_warned_once(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(prefix="train.", pipeline=pipeline)
    with caplog.at_level(logging.WARNING, logger="otel_recursive_metrics.training"):
        for step in range(10):
            metrics.log({"loss": 10.0 - step}, step=step)
        for step in range(5, 10):  # resumed from the checkpoint of step 5
            metrics.log({"loss": 100.0 + step}, step=step)
        for step in range(2, 4):  # and once more
            metrics.log({"loss": 200.0 + step}, step=step)
    assert metrics.get_stats()["steps_backwards"] == 2
    assert sum("step went back" in r.getMessage() for r in caplog.records) == 1
    assert metrics.flush(FLUSH_S)
    points = stored(data_dir, "train.loss")
    assert [p.step for p in points] == [*range(10), *range(5, 10), 2, 3]
    assert [p.value for p in points if p.step == 7] == [3.0, 107.0]
    pipeline.shutdown(30)


def test_attributes_and_prefix_are_per_instance_and_step_is_never_an_attribute(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    train = TrainingMetrics(prefix="train.", pipeline=pipeline)
    val = TrainingMetrics(prefix="val.", attributes={"split": "val"}, pipeline=pipeline)
    train.log({"loss": 1.0}, step=0)
    val.log({"loss": 2.0}, step=0)
    assert train.flush(FLUSH_S)
    (t,) = stored(data_dir, "train.loss")
    (v,) = stored(data_dir, "val.loss")
    assert t.attributes == {} and v.attributes == {"split": "val"}
    assert t.step == 0 and "step" not in t.attributes
    assert t.scope == "otel_recursive_metrics.training"
    assert t.resource["training.run.id"] and t.resource["training.rank"] == 0
    pipeline.shutdown(30)


def test_several_threads_logging_keep_every_call(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = [TrainingMetrics(attributes={"worker": i}, pipeline=pipeline) for i in range(4)]

    def work(m: TrainingMetrics) -> None:
        for step in range(500):
            m.log({"loss": float(step)}, step=step)

    threads = [threading.Thread(target=work, args=(m,)) for m in metrics]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert metrics[0].flush(FLUSH_S)
    points = stored(data_dir, "loss")
    assert len(points) == 2000
    for i in range(4):
        assert sorted(p.step for p in points if p.attributes == {"worker": i}) == list(range(500))
    pipeline.shutdown(30)


def test_rank_zero_only_makes_other_ranks_a_no_op(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    pipeline = make_pipeline(data_dir)
    quiet = TrainingMetrics(pipeline=pipeline, rank_zero_only=True)
    assert quiet.rank == 1
    quiet.log({"loss": 1.0}, step=0)
    assert quiet.flush(1.0)
    assert not pipeline._started  # not even the worker threads were started
    loud = TrainingMetrics(pipeline=pipeline)  # the default: every rank logs
    loud.log({"loss": 2.0}, step=0)
    assert loud.flush(FLUSH_S)
    (point,) = stored(data_dir, "loss")
    assert point.value == 2.0 and point.resource["training.rank"] == 1
    pipeline.shutdown(30)


def test_default_pipeline_is_the_exporters(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.2)
    metrics = TrainingMetrics()
    assert metrics.pipeline is exporter.pipeline
    assert TrainingMetrics(pipeline=exporter).pipeline is exporter.pipeline
    metrics.log({"loss": 0.5}, step=3)
    assert metrics.flush(FLUSH_S)
    assert [p.step for p in stored(data_dir, "loss")] == [3]
    exporter.shutdown()
    # The exporter was shut down: the next log follows the new default instead of being lost.
    _registry.set_default_pipeline(make_pipeline(data_dir))
    metrics.log({"loss": 0.25}, step=4)
    assert metrics.flush(FLUSH_S)
    assert [p.step for p in stored(data_dir, "loss")] == [3, 4]
    _registry.get_default_pipeline().shutdown(30)


def test_context_manager_with_own_settings_flushes_and_shuts_down(data_dir: Path) -> None:
    with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=30) as metrics:
        for step in range(50):
            metrics.log({"loss": float(step)}, step=step)
    assert metrics.pipeline._closed
    assert len(stored(data_dir, "train.loss")) == 50
    with pytest.raises(TypeError):
        TrainingMetrics(pipeline=metrics.pipeline, dir=data_dir)


def test_benchmark_smoke_run_without_peers() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"
    spec = importlib.util.spec_from_file_location("bench_training", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(values_per_call=(1, 4), values_total=200, repeats=1, peers=False, install=False)
    measured = {row["path"] for row in result["rows"] if "us_per_value_k4" in row}
    assert {"deque.append (floor)", "TrainingMetrics.log", "submit_metric"} <= measured
    assert "| TrainingMetrics.log |" in result["markdown"] and "otel-recursive-metrics" in result["versions"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_logs_its_own_points_and_never_repeats_the_parents(data_dir: Path) -> None:
    pipeline = make_pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=pipeline)
    for step in range(10):
        metrics.log({"loss": float(step)}, step=step)
    pid = os.fork()
    if pid == 0:  # the child, like a DataLoader worker that logs
        code = 1
        try:
            metrics.log({"child": 1.0}, step=0)
            code = 0 if metrics.flush(60) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert metrics.flush(FLUSH_S)
    pipeline.shutdown(30)
    assert [p.step for p in stored(data_dir, "loss")] == list(range(10))
    assert len(stored(data_dir, "child")) == 1


def _pipeline(data_dir: Path, **options: Any) -> Pipeline:
    return Pipeline(load_config(dir=data_dir, flush_interval_s=0.05, **options))


def test_steps_and_epochs_beyond_64_bits_are_refused_at_the_call(data_dir: Path) -> None:
    p = _pipeline(data_dir)
    metrics = TrainingMetrics(pipeline=p)
    with pytest.raises(MetricValueError, match="step"):
        metrics.log({"loss": 1.0}, step=2**63)
    with pytest.raises(MetricValueError, match="epoch"):
        metrics.log({"loss": 1.0}, step=1, epoch=-5)
    p.shutdown(1.0)
