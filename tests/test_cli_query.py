"""The query command and the self-telemetry instruments."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.pipeline.telemetry import METRIC_PREFIX, register_instruments

from .helpers import run_cli, sdk_provider


@pytest.fixture
def store_file(data_dir: Path) -> Path:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    provider = sdk_provider(exporter, {"service.name": "cli-test", "training.run.id": "run-7", "training.rank": 1})
    meter = provider.get_meter("t")
    meter.create_gauge("train.loss").set(0.75, {"split": "train"})
    meter.create_histogram("step.time", unit="s").record(0.2)
    provider.shutdown()
    return data_dir / "metrics.db"


def test_json_lines_carry_the_documented_keys(store_file: Path, capsys: Any) -> None:
    code, out, _ = run_cli(capsys, "query", "--store", str(store_file), "--metric", "train.loss", "--format", "json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows
    for key in ("metric", "kind", "value", "attributes", "resource", "time_unix_nano", "step"):
        assert key in rows[0]
    assert (rows[0]["metric"], rows[0]["kind"], rows[0]["value"], rows[0]["attributes"]) == (
        "train.loss",
        "gauge",
        0.75,
        {"split": "train"},
    )
    assert rows[0]["resource"]["training.run.id"] == "run-7"


def test_csv_and_table(store_file: Path, capsys: Any) -> None:
    code, out, _ = run_cli(capsys, "query", "--store", str(store_file), "--format", "csv", "--rank", "1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["metric"] for r in rows} == {"train.loss", "step.time"}
    assert any(r["value"].startswith("count=1") for r in rows if r["metric"] == "step.time")
    code, out, _ = run_cli(capsys, "query", "--store", str(store_file), "--metric", "train.loss")
    assert code == 0 and "train.loss" in out and "0.75" in out and "split=train" in out


def test_no_match_and_missing_store(store_file: Path, capsys: Any, tmp_path: Path) -> None:
    assert run_cli(capsys, "query", "--store", str(store_file), "--metric", "nope")[0] == 1
    code, _, err = run_cli(capsys, "query", "--store", str(tmp_path / "absent.db"))
    assert code == 2 and "absent.db" in err


def test_python_dash_m_entry(store_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_recursive_metrics", "metrics", "--store", str(store_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.split() == ["step.time", "train.loss"]


def test_self_telemetry_instruments_report_the_stats(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    provider = sdk_provider(exporter)
    provider.get_meter("t").create_counter("c").add(3)
    assert provider.force_flush(10_000)
    # A separate provider reads the figures: they never go through the exporter they describe.
    reader = InMemoryMetricReader()
    observer = MeterProvider(metric_readers=[reader])
    register_instruments(observer.get_meter("self"), exporter.get_stats)
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    sent = found[METRIC_PREFIX + "sent_metric_points"]
    assert [(dict(p.attributes), p.value) for p in sent.data.data_points] == [({"sink": "store"}, 1)]
    assert METRIC_PREFIX + "queue_capacity" in found and METRIC_PREFIX + "queue_size" in found
    provider.shutdown()
    observer.shutdown()


def test_a_store_of_an_older_layout_is_named_not_a_traceback(tmp_path: Path, capsys: Any) -> None:
    import sqlite3

    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute(  # the first layout: attributes as text in every point
        "CREATE TABLE points(id INTEGER PRIMARY KEY, metric_id INTEGER NOT NULL, resource_id INTEGER NOT NULL,"
        " scope_id INTEGER NOT NULL, attributes TEXT NOT NULL, start_time_unix_nano INTEGER NOT NULL,"
        " time_unix_nano INTEGER NOT NULL, value, step INTEGER, epoch INTEGER, histogram TEXT, extra TEXT)"
    )
    conn.commit()
    conn.close()
    code, _, err = run_cli(capsys, "query", "--store", str(old))
    assert code == 2 and "earlier development layout" in err


def test_the_default_store_follows_the_exporters_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_recursive_metrics.cli._output import default_store as _default_store

    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(tmp_path / "d"))
    assert _default_store() == str(tmp_path / "d" / "metrics.db")
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_STORE", "~/x.db")
    assert _default_store() == str(Path("~/x.db").expanduser())


def diverse_store(data_dir: Path) -> Path:
    """Gauges with steps and epochs, infinities, text that CSV must quote, histograms, sums, scopes."""
    import math

    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    from otel_recursive_metrics import TrainingMetrics

    with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.05, attributes={"split": 'tr,"ain"', "é": "ü"}) as metrics:
        for step in range(30):
            metrics.log(
                {"loss": 1.0 / (step + 1), "precise": 2.3456789012, "inf": math.inf if step % 2 else -math.inf, "n": 3},
                step=step,
                epoch=step // 10,
            )
        reader = PeriodicExportingMetricReader(RecursiveMetricExporter(pipeline=metrics.pipeline), export_interval_millis=3_600_000)
        provider = MeterProvider(resource=Resource.create({"service.name": "x", "training.run.id": "r,1"}), metric_readers=[reader])
        meter = provider.get_meter('sc"ope')
        latency, tokens = meter.create_histogram("lat", unit="ms"), meter.create_counter("tok")
        for i in range(10):
            latency.record(i * 1.5, {"k": i % 3})
            tokens.add(i, {"a": "b"})
            reader.collect()
        provider.shutdown()
    return data_dir / "metrics.db"


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--metric", "train.loss", "--last", "5"),
        ("--metric", "lat", "--limit", "3"),
        ("--run", "r,1"),
        ("--step-min", "10", "--step-max", "12"),
    ],
)
def test_csv_and_json_say_what_the_point_objects_say(data_dir: Path, capsys: Any, args: tuple[str, ...]) -> None:
    """The fast CSV/JSON writer against StoredPoint, the general reading path, row for row."""
    import math

    from otel_recursive_metrics import PointStore

    path = diverse_store(data_dir)
    store = PointStore(path, readonly=True)
    options = dict(zip(args[::2], args[1::2], strict=True))
    filters: dict[str, Any] = {
        "run": options.get("--run"),
        "step_min": int(options["--step-min"]) if "--step-min" in options else None,
        "step_max": int(options["--step-max"]) if "--step-max" in options else None,
        "limit": int(options["--limit"]) if "--limit" in options else None,
        "last": int(options["--last"]) if "--last" in options else None,
    }
    expected = store.query(options.get("--metric"), **filters)
    assert expected, "the filters select something"
    code, out, _ = run_cli(capsys, "query", "--store", str(path), "--format", "json", *args)
    assert code == 0
    # Python's json reads Infinity as inf, as StoredPoint holds it.
    assert [json.loads(line) for line in out.splitlines()] == [p.to_json() for p in expected]
    code, out, _ = run_cli(capsys, "query", "--store", str(path), "--format", "csv", *args)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(expected)
    for row, point in zip(rows, expected, strict=True):
        assert (row["metric"], row["kind"], row["run"], row["rank"]) == (
            point.metric,
            point.kind,
            str(point.resource.get("training.run.id", "")),
            str(point.resource.get("training.rank", "")),
        )
        assert (row["step"], row["epoch"], int(row["time_unix_nano"])) == (
            "" if point.step is None else str(point.step),
            "" if point.epoch is None else str(point.epoch),
            point.time_unix_nano,
        )
        assert json.loads(row["attributes"]) == point.attributes
        if point.histogram is not None:
            assert row["value"] == f"count={point.histogram['count']} sum={point.histogram['sum']!r}"
        elif isinstance(point.value, float) and math.isfinite(point.value):
            assert float(row["value"]) == point.value and row["value"] == repr(point.value), "full precision, shortest text"
        else:
            assert row["value"] == str(point.value)
    store.close()


def test_to_dataframe_matches_the_point_objects(data_dir: Path) -> None:
    """The DataFrame path (packed keys, NumPy's sort) against StoredPoint, row for row."""
    import math

    pytest.importorskip("pandas", reason="needs pandas (the pandas extra)")
    from otel_recursive_metrics import PointStore

    store = PointStore(diverse_store(data_dir), readonly=True)
    for metric, filters in ((None, {}), ("train.inf", {"last": 4}), (["lat", "tok"], {"limit": 5}), (None, {"run": "r,1"})):
        points = store.query(metric, **filters)
        frame = store.to_dataframe(metric, **filters)
        assert len(frame) == len(points) > 0
        for point, row in zip(points, frame.itertuples(index=False), strict=True):
            assert (row.metric, row.time_unix_nano, row.attributes) == (point.metric, point.time_unix_nano, canonical(point.attributes))
            assert (None if row.step is pd_na() else row.step) == point.step
            assert (row.run, None if row.rank is pd_na() else row.rank) == (
                point.resource.get("training.run.id"),
                point.resource.get("training.rank"),
            )
            if point.value is None:
                assert math.isnan(row.value), "a histogram's value is NaN"
            else:
                assert row.value == point.value
    store.close()


def canonical(attributes: dict[str, Any]) -> str:
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pd_na() -> Any:
    import pandas

    return pandas.NA
