"""``otel-recursive-metrics export`` and ``PointStore.to_dataframe()``: every point, every column, full precision.

The store is written the ways users write it: ``TrainingMetrics.log`` (several runs and ranks,
NaN, infinity, integers past 2**53), the OpenTelemetry SDK (gauges, counters, up-down counters,
explicit and exponential histograms) and the seed collector (a record with extra fields). The
Parquet file is read back with pyarrow and compared, point by point, with ``PointStore.query()``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from otel_recursive_metrics import RecursiveMetricExporter, TrainingMetrics, load_config
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.store import PointStore, StoredPoint
from otel_recursive_metrics.store.parquet import MISSING_PYARROW, write_parquet
from otel_recursive_metrics.store.points import PointQuery

from .conftest import require_module
from .helpers import run_cli

RUNS = ("run-a", "run-b")
RANKS = (0, 1)
STEPS = 40


def _write_store(data_dir: Path) -> Path:
    """Points of every kind from the three routes, for two runs of two ranks each."""
    for run in RUNS:
        for rank in RANKS:
            with pytest.MonkeyPatch.context() as env:
                # The pipeline's resource (run id, rank) is read from the launcher's variables.
                env.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", run)
                env.setenv("RANK", str(rank))
                pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=0.2))
                metrics = TrainingMetrics(prefix="train.", pipeline=pipeline)
                collector = AsyncMetricsCollector(pipeline=pipeline)
            for step in range(STEPS):
                # 1/3-like values and a rank offset at the 13th digit: any rounding shows.
                values = {"loss": 1.0 / (step + 3) + rank * 1e-13, "tokens": 2**60 + step * 513 + rank}
                metrics.log(values, step=step, epoch=step // 10)
            metrics.log({"loss": math.nan, "grad_norm": math.inf, "neg": -math.inf}, step=STEPS)
            collector.submit_metric({"metric_name": "eval.f1", "value": 0.5, "step": 7, "model": "tiny", "tags": {"split": "val"}})
            assert collector.flush(60) and metrics.flush(60)
            pipeline.shutdown(30)

            exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
            reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
            provider = MeterProvider(
                resource=Resource.create({"service.name": "export-test", "training.run.id": run, "training.rank": rank}),
                metric_readers=[reader],
                views=[View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())],
            )
            meter = provider.get_meter("trainer.sdk")
            step_time = meter.create_histogram("step.time", unit="s")
            latency = meter.create_histogram("latency", unit="ms")
            samples = meter.create_counter("samples")
            in_flight = meter.create_up_down_counter("in_flight")
            lr = meter.create_gauge("lr")
            for i in range(4):
                step_time.record(0.1 * i + rank / 3, {"phase": "forward"})
                latency.record(2.0**i + 0.3, {"op": "allreduce"})
                samples.add(7 + i, {"split": "train"})
                in_flight.add(1 if i % 2 else -2)
                lr.set(1e-3 / (i + 1), {"group": i % 2})
                reader.collect()
            provider.shutdown()
    return data_dir / "metrics.db"


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_store(tmp_path_factory.mktemp("export") / "otel-metrics")


@pytest.fixture
def needs_pyarrow() -> None:
    """pyarrow (the parquet extra): skipped without it on a user's machine, required under CI=true."""
    require_module("pyarrow", "parquet")


@pytest.fixture
def store(store_file: Path) -> Iterator[PointStore]:
    opened = PointStore(store_file, readonly=True)
    yield opened
    opened.close()


def _expected_row(p: StoredPoint) -> dict[str, Any]:
    """What the Parquet row of ``p`` holds (see store/parquet.py's column table)."""
    hist = p.histogram or {}
    value = None if p.value is None else float(p.value)
    return {
        "metric": p.metric,
        "kind": p.kind,
        "unit": p.unit,
        "run": p.resource.get("training.run.id"),
        "rank": p.resource.get("training.rank"),
        "step": p.step,
        "epoch": p.epoch,
        "time_unix_nano": p.time_unix_nano,
        "start_time_unix_nano": p.start_time_unix_nano,
        "value": value,
        "value_int": p.value if isinstance(p.value, int) else None,
        "histogram_count": hist.get("count"),
        "histogram_sum": hist.get("sum"),
        "histogram_min": hist.get("min"),
        "histogram_max": hist.get("max"),
        "histogram_bounds": hist.get("bounds"),
        "histogram_counts": hist.get("counts"),
        "histogram": p.histogram,
        "attributes": p.attributes,
        "resource": p.resource,
        "scope": p.scope,
        "temporality": p.temporality,
        "monotonic": p.monotonic,
        "extra": p.extra,
    }


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a Parquet file, JSON columns parsed; the ``time`` column checked against the integer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.column("time").cast(pa.int64()).equals(table.column("time_unix_nano"))
    rows = table.drop_columns(["time"]).to_pylist()
    for row in rows:
        for column in ("histogram", "attributes", "resource", "extra"):
            if row[column] is not None:
                row[column] = json.loads(row[column])
    return rows


def _assert_same(rows: list[dict[str, Any]], points: list[StoredPoint]) -> None:
    assert len(rows) == len(points)
    for row, point in zip(rows, points, strict=True):
        expected = _expected_row(point)
        # repr: exact float text, and inf / -inf compare as themselves.
        assert repr(row) == repr(expected), (row, expected)


@pytest.mark.usefixtures("needs_pyarrow")
def test_parquet_holds_every_point_of_the_store_as_query_returns_it(
    store_file: Path, store: PointStore, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "all.parquet"
    code, stdout, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(out))
    points = store.query()
    assert code == 0 and stdout == "" and f"wrote {len(points)} points to {out}" in err
    rows = _read_rows(out)
    _assert_same(rows, points)
    # What the store must hold for that comparison to mean anything: every route, kind and edge.
    assert {(r["run"], r["rank"]) for r in rows} == {(run, rank) for run in RUNS for rank in RANKS}
    assert {r["kind"] for r in rows} == {"gauge", "sum", "histogram", "exponential_histogram"}
    assert any(r["value_int"] is not None and r["value_int"] > 2**53 and r["value_int"] != int(r["value"]) for r in rows)
    assert any(r["value"] == math.inf for r in rows) and any(r["value"] == -math.inf for r in rows)
    assert any(r["metric"] == "train.loss" and r["value"] is None for r in rows)  # NaN is stored as NULL
    assert any(r["extra"] and r["extra"].get("model") == "tiny" for r in rows)
    assert any(r["histogram_bounds"] for r in rows) and any(r["histogram"] and "scale" in r["histogram"] for r in rows)
    assert os.stat(out).st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["all.parquet"]  # the temporary file was renamed


@pytest.mark.usefixtures("needs_pyarrow")
def test_row_groups_are_written_as_the_store_is_read(store: PointStore, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "small-groups.parquet"
    written = write_parquet(store, PointQuery(), str(out), rows=7)
    metadata = pq.ParquetFile(out).metadata
    assert written == store.count() == metadata.num_rows
    assert metadata.num_row_groups == -(-written // 7)
    assert max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)) == 7
    _assert_same(_read_rows(out), store.query())


@pytest.mark.usefixtures("needs_pyarrow")
def test_metric_and_run_filters_are_querys(store_file: Path, store: PointStore, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "some.parquet"
    args = ("--metric", "train.loss", "--metric", "step.time", "--run", "run-b", "--rank", "1", "--step-max", "20")
    code, _, _ = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(out), *args)
    assert code == 0
    points = store.query(["train.loss", "step.time"], run=["run-b"], rank=1, step_max=20)
    assert {p.metric for p in points} == {"train.loss"}  # step filters leave out the SDK's step-less points
    _assert_same(_read_rows(out), points)


def test_csv_and_jsonl_are_query_csv_and_json_to_a_file(store_file: Path, tmp_path: Path, capsys: Any) -> None:
    for export_format, query_format in (("csv", "csv"), ("jsonl", "json")):
        out = tmp_path / f"points.{export_format}"
        code, stdout, _ = run_cli(
            capsys, "export", "--store", str(store_file), "--format", export_format, "--out", str(out), "--run", "run-a"
        )
        assert code == 0 and stdout == ""
        code, printed, _ = run_cli(capsys, "query", "--store", str(store_file), "--format", query_format, "--run", "run-a")
        assert code == 0 and out.read_bytes() == printed.encode()
        code, to_stdout, _ = run_cli(capsys, "export", "--store", str(store_file), "--format", export_format, "--run", "run-a")
        assert code == 0 and to_stdout == printed


@pytest.mark.usefixtures("needs_pyarrow")
def test_parquet_goes_to_the_store_name_in_the_current_folder_by_default(
    store_file: Path, store: PointStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--metric", "lr")  # parquet is the default format
    assert code == 0 and "metrics.parquet" in err
    _assert_same(_read_rows(tmp_path / "metrics.parquet"), store.query("lr"))


@pytest.mark.usefixtures("needs_pyarrow")
def test_nothing_matched_is_exit_1_and_a_file_with_the_columns(store_file: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "none.parquet"
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(out), "--step-min", "1000000")
    assert code == 1 and "no points matched" in err
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 0 and "value_int" in pq.read_schema(out).names


@pytest.mark.usefixtures("needs_pyarrow")
def test_parquet_usage_errors_name_what_was_wrong(store_file: Path, tmp_path: Path, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(tmp_path / "x"), "--follow")
    assert code == 2 and "--follow" in err
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(tmp_path))
    assert code == 2 and "a folder" in err and str(tmp_path) in err
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(store_file))
    assert code == 2 and "the store itself" in err


def test_usage_errors_name_what_was_wrong(store_file: Path, tmp_path: Path, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "csv", "--metric", "train.los")
    assert code == 1 and "did you mean 'train.loss'" in err
    code, _, err = run_cli(capsys, "export", "--store", str(tmp_path / "absent.db"), "--format", "csv")
    assert code == 2 and "absent.db" in err


def test_without_pyarrow_one_line_says_how_to_install_it_from_the_clone(
    store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    out = tmp_path / "never.parquet"
    code, stdout, err = run_cli(capsys, "export", "--store", str(store_file), "--format", "parquet", "--out", str(out))
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == [f"otel-recursive-metrics: error: {MISSING_PYARROW}"]
    assert "pip install -e '.[parquet]'" in err
    assert not out.exists()
    code, printed, _ = run_cli(capsys, "export", "--store", str(store_file), "--format", "csv", "--metric", "lr")
    assert code == 0 and printed.startswith("metric,kind,run,rank,step,epoch,value")  # the text formats need no pyarrow


def test_to_dataframe_with_no_argument_returns_every_point_of_the_store(store: PointStore) -> None:
    pd = require_module("pandas", "pandas")
    frame = store.to_dataframe()
    points = store.query()
    assert len(frame) == store.count() == len(points)
    assert set(frame["metric"]) == set(store.metric_names())
    assert {(str(run), int(rank)) for run, rank in zip(frame["run"], frame["rank"], strict=True)} == {(r, k) for r in RUNS for k in RANKS}
    # Row for row, in the same order as query() (time, then step).
    expected = [(p.metric, p.resource["training.run.id"], p.step, p.time_unix_nano) for p in points]
    steps = [None if s is pd.NA else int(s) for s in frame["step"]]
    got = list(zip(frame["metric"], frame["run"], steps, frame["time_unix_nano"], strict=True))
    assert got == expected
    # Values at full precision; NaN where the point has none (a histogram, a NaN logged).
    assert repr([None if math.isnan(v) else v for v in frame["value"]]) == repr(
        [None if p.value is None else float(p.value) for p in points]
    )
