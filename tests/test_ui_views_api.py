"""The web view's answers behind its newer views, at the HTTP level on a real server.

- a series says its unit and kind, and which traces were downsampled (a 1,500-point run is not);
- a histogram's distribution: percentiles from its buckets, a cumulative point drawn from its
  difference with the one before (also across a live update), exponential buckets read too;
- the parameters that differ between runs come from the store's ``differing_params`` (the
  function the CLI's ``compare`` prints from), unknown runs are named;
- one metric summed up per run (last, lowest, highest) and, after a snapshot, only what is new;
- a chart's CSV: every point at full precision, and no cell of the user's that a spreadsheet
  would run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.model.batch import BatchBuilder, explicit_histogram, exponential_histogram
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.store.distributions import PERCENTILES, Layout, percentiles
from otel_recursive_metrics.store.run_compare import differing_params
from otel_recursive_metrics.training import TrainingMetrics

from .conftest import require_module
from .helpers import sdk_provider

require_module("starlette", "ui")
require_module("uvicorn", "ui")

from otel_recursive_metrics.ui import UIServer  # noqa: E402 - after the extra's check
from otel_recursive_metrics.ui.csv_download import text_cell  # noqa: E402

T0 = 1_767_225_600_000_000_000
CUMULATIVE, DELTA = 2, 1


def get(server: UIServer, path: str, **params: Any) -> tuple[int, Any, dict[str, str]]:
    """``(status, body, headers)``; the body parsed as JSON where it is JSON."""
    url = f"{server.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, body, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, body, headers = exc.code, exc.read(), dict(exc.headers)
    if headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(body), headers
    return status, body.decode(), headers


def write(
    store: PointStore, run: str, metric: str, values: list[Any], *, unit: str = "", step: bool = True, attributes: str = "{}"
) -> None:
    """One gauge point per value of ``values`` (step = index) into ``run``."""
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "service.name": "test"})
    scope, index = builder.plain_scope("test"), builder.metric(metric, "", unit, "gauge")
    for i, value in enumerate(values):
        builder.add_point(resource, scope, index, attributes, 0, T0 + i * 1_000_000, value, i if step else None, None)
    store.write_batch(builder.build())


def write_histograms(store: PointStore, run: str, metric: str, points: list[dict[str, Any]], *, temporality: int, first_s: int = 1) -> None:
    """Histogram points (no steps, a second apart from ``first_s``) of ``metric`` into ``run``."""
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "service.name": "test"})
    scope, index = builder.plain_scope("test"), builder.metric(metric, "", "ms", "histogram", temporality)
    for i, histogram in enumerate(points):
        builder.add_point(resource, scope, index, "{}", T0, T0 + (first_s + i) * 1_000_000_000, None, None, None, histogram)
    store.write_batch(builder.build())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PointStore]:
    writer = PointStore(tmp_path / "metrics.db", durable=False)
    yield writer
    writer.close()


@pytest.fixture
def serve(store: PointStore) -> Iterator[Callable[[], UIServer]]:
    servers: list[UIServer] = []

    def start() -> UIServer:
        servers.append(UIServer(store.path, port=0).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# --- series: unit, kind, downsampled per trace ---------------------------------------------------


def test_a_series_says_its_unit_and_kind_and_only_a_cut_trace_says_downsampled(store: PointStore, serve: Callable[[], UIServer]) -> None:
    write(store, "short", "train.loss", [1 / (i + 1) for i in range(1_500)], unit="1")
    write(store, "long", "train.loss", [1 / (i + 1) for i in range(30_000)], unit="1")
    write(store, "short", "step.time", [0.25] * 10, unit="s")
    server = serve()
    _, answer, _ = get(server, "api/series", run=["short", "long"], metric=["train.loss", "step.time"], max_points=2000)
    by = {(s["run"], s["metric"]): s for s in answer["series"]}
    short, long_ = by["short", "train.loss"], by["long", "train.loss"]
    assert (short["unit"], short["kind"], by["short", "step.time"]["unit"]) == ("1", "gauge", "s")
    assert short["downsampled"] is False and short["traces"][0]["downsampled"] is False
    assert len(short["traces"][0]["value"]) == 1_500
    assert long_["downsampled"] is True and long_["traces"][0]["downsampled"] is True
    assert len(long_["traces"][0]["value"]) <= 2000


# --- distributions -------------------------------------------------------------------------------


def test_percentiles_come_from_the_buckets_within_the_points_min_and_max() -> None:
    # 10 values in (0, 10], 10 in (10, 20]; seen from 2 to 18.
    layout = Layout.parse(explicit_histogram(20, 200.0, 2.0, 18.0, [0.0, 10.0, 20.0], [0, 10, 10, 0]))
    assert layout is not None
    p0, *_, p100 = found = percentiles(layout)
    assert (p0, p100) == (2.0, 18.0)
    assert found[PERCENTILES.index(50.0)] == pytest.approx(10.0)
    assert found == sorted(found)
    # Exponential at scale 0 (base 2): bucket 1 is (2, 4]; a zero bucket and a negative one too.
    exp = Layout.parse(exponential_histogram(4, 0.0, -3.0, 3.5, 0, 1, (1, [2]), (1, [1])))
    assert exp is not None and [(lo, hi) for lo, hi, _ in exp.buckets()] == [(-4.0, -2.0), (0.0, 0.0), (2.0, 4.0)]
    low, *_, high = percentiles(exp)
    assert (low, high) == (-3.0, 3.5)
    assert percentiles(Layout.parse(explicit_histogram(0, 0.0, None, None, [1.0], [0, 0]))) == [None] * len(PERCENTILES)  # type: ignore[arg-type]


def test_a_cumulative_exponential_point_minus_a_finer_earlier_one_is_aligned_first() -> None:
    # Scale 1 (base sqrt 2), buckets 2 and 3 = (2, 2.83] and (2.83, 4]; later, at scale 0, bucket 1 = (2, 4].
    earlier = Layout.parse(exponential_histogram(3, 0.0, 2.1, 3.9, 1, 0, (2, [1, 2]), (0, [])))
    later = Layout.parse(exponential_histogram(10, 0.0, 2.1, 3.9, 0, 0, (1, [10]), (0, [])))
    assert earlier is not None and later is not None
    interval = later.minus(earlier)
    assert interval is not None and interval.scale == 0 and interval.counts == {1: 7}
    assert earlier.minus(later) is None  # counts went down: a restart, not an interval


def test_sdk_histogram_points_are_drawn_as_distributions_of_each_interval(data_dir: Path) -> None:
    # The real SDK, cumulative (its default): values 1..100 first, then 1001..1100. The second
    # point counts all 200; its band must show the second interval alone.
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    provider = sdk_provider(exporter, {"service.name": "web", "training.run.id": "server"})
    duration = provider.get_meter("http").create_histogram("http.server.duration", unit="ms")
    for value in range(1, 101):
        duration.record(value)
    provider.force_flush()
    for value in range(1001, 1101):
        duration.record(value)
    provider.shutdown()
    with UIServer(data_dir / "metrics.db", port=0) as server:
        _, answer, _ = get(server, "api/series", run="server", metric="http.server.duration")
    (series,) = answer["series"]
    assert (series["unit"], series["kind"]) == ("ms", "histogram")
    assert series["traces"][0]["step"][0] is None  # SDK points carry no step
    distribution = series["distribution"]
    assert distribution["percentiles"] == list(PERCENTILES)
    (band,) = distribution["traces"]
    first, second = band["values"][:2]
    median = PERCENTILES.index(50.0)
    assert first[0] == 1.0 and 25 < first[median] <= 75 and first[-1] <= 100
    assert 1000 <= second[median] <= 1100 and second[0] >= 750  # the second interval alone, not 1..1100
    assert first == sorted(first) and second == sorted(second)


def test_an_update_draws_a_cumulative_point_against_the_one_before_the_snapshot(store: PointStore, serve: Callable[[], UIServer]) -> None:
    bounds = [0.0, 10.0, 20.0, 30.0]

    def cumulative(counts: list[int]) -> dict[str, Any]:
        return explicit_histogram(sum(counts), 0.0, 1.0, 29.0, bounds, counts)

    write_histograms(store, "srv", "latency", [cumulative([0, 5, 0, 0, 0])], temporality=CUMULATIVE)
    server = serve()
    _, first, _ = get(server, "api/series", run="srv", metric="latency")
    write_histograms(store, "srv", "latency", [cumulative([0, 5, 0, 5, 0])], temporality=CUMULATIVE, first_s=2)
    _, update, _ = get(server, "api/series", run="srv", metric="latency", after_id=first["last_id"])
    (band,) = update["series"][0]["distribution"]["traces"]
    (values,) = band["values"]
    assert values[0] >= 20 and values[-1] <= 29  # only the 5 new values in (20, 30]


def test_delta_points_past_the_band_budget_are_merged_bucket_by_bucket(store: PointStore, serve: Callable[[], UIServer]) -> None:
    points = [explicit_histogram(1, 5.0 + 10 * (i % 2), None, None, [10.0], [1, 0] if i % 2 == 0 else [0, 1]) for i in range(400)]
    write_histograms(store, "srv", "latency", points, temporality=DELTA)
    server = serve()
    _, answer, _ = get(server, "api/series", run="srv", metric="latency", max_points=400)  # bands: 400 / 4 = 100
    (band,) = answer["series"][0]["distribution"]["traces"]
    assert len(band["values"]) == 100 and band["sampled"] is False
    for row in band["values"]:  # four points a band: two below 10, two above
        assert (row[0] == 10.0 and row[-1] == 10.0) or row[0] <= 10.0 <= row[-1]


# --- parameters that differ, summaries ----------------------------------------------------------


def log_run(data_dir: Path, monkeypatch: pytest.MonkeyPatch, run: str, params: dict[str, Any], losses: list[float]) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", run)
    with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.1) as metrics:
        metrics.log_params(params)
        for step, loss in enumerate(losses):
            metrics.log({"loss": loss}, step=step)
        assert metrics.flush(timeout_s=30)


def test_the_parameters_that_differ_come_from_the_stores_function(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_run(data_dir, monkeypatch, "a", {"lr": 0.1, "seed": 1, "optimizer": {"name": "sgd"}}, [1.0])
    log_run(data_dir, monkeypatch, "b", {"lr": 0.5, "seed": 1, "optimizer": {"name": "adam"}, "warmup": 10}, [1.0])
    with UIServer(data_dir / "metrics.db", port=0) as server:
        status, answer, _ = get(server, "api/params", run=["a", "b", "nope"])
        _, every, _ = get(server, "api/params", run=["a", "b"], all="1")
        bad_status, bad, _ = get(server, "api/params")
    assert status == 200
    assert answer["params"] == {
        "lr": {"a": 0.1, "b": 0.5, "nope": None},
        "optimizer.name": {"a": "sgd", "b": "adam", "nope": None},
        "seed": {"a": 1, "b": 1, "nope": None},
        "warmup": {"a": None, "b": 10, "nope": None},
    }
    assert answer["unknown"] == ["nope"]
    assert every["params"]["seed"] == {"a": 1, "b": 1} and every["same"] == 1
    params_by_run = {
        "a": {"lr": 0.1, "seed": 1, "optimizer.name": "sgd"},
        "b": {"lr": 0.5, "seed": 1, "optimizer.name": "adam", "warmup": 10},
    }
    assert {k: v for k, v in every["params"].items() if k != "seed"} == differing_params(params_by_run, ["a", "b"])
    assert bad_status == 400 and "run" in bad["error"]


def test_a_metric_summed_up_per_run_and_then_only_what_is_new(store: PointStore, serve: Callable[[], UIServer]) -> None:
    write(store, "a", "val.loss", [0.9, 0.2, 0.5])
    write(store, "b", "val.loss", [0.8, 0.7])
    write(store, "a", "train.loss", [5.0, -5.0])  # another metric: not counted
    server = serve()
    _, first, _ = get(server, "api/summary", metric="val.loss")
    assert first["runs"]["a"] | {"last_time_unix_nano": 0} == {
        "points": 3,
        "min": 0.2,
        "max": 0.9,
        "last": 0.5,
        "last_step": 2,
        "last_time_unix_nano": 0,
    }
    assert (first["runs"]["b"]["last"], first["runs"]["b"]["min"]) == (0.7, 0.7)
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": "b", "service.name": "test"})
    metric = builder.metric("val.loss", "", "", "gauge")
    builder.add_point(resource, builder.plain_scope("test"), metric, "{}", 0, T0 + 10_000_000, 0.1, 9, None)
    store.write_batch(builder.build())
    _, update, _ = get(server, "api/summary", metric="val.loss", after_id=first["last_id"])
    assert list(update["runs"]) == ["b"]
    assert update["runs"]["b"] | {"last_time_unix_nano": 0} == {
        "points": 1,
        "min": 0.1,
        "max": 0.1,
        "last": 0.1,
        "last_step": 9,
        "last_time_unix_nano": 0,
    }
    _, quiet, _ = get(server, "api/summary", metric="val.loss", after_id=update["last_id"])
    assert quiet["runs"] == {}
    status, bad, _ = get(server, "api/summary", metric=["a", "b"])
    assert status == 400 and "exactly one metric" in bad["error"]


# --- CSV -------------------------------------------------------------------------------------------

FORMULA_RUN = '=HYPERLINK("https://example.invalid","x")'


def test_a_charts_csv_has_every_point_at_full_precision_and_no_formula(store: PointStore, serve: Callable[[], UIServer]) -> None:
    values = [(-1) ** i * (i + 1) / 3 for i in range(5_000)]  # more points than a chart holds, negatives included
    write(store, FORMULA_RUN, "train.loss", values, unit="@unit", attributes=json.dumps({"+cmd": "-2+3"}, separators=(",", ":")))
    write(store, "plain", "train.loss", [0.1, 2 / 3])
    server = serve()
    status, text, headers = get(server, "api/csv", run=[FORMULA_RUN, "plain"], metric="train.loss", until_id=10**9)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"] == 'attachment; filename="train.loss.csv"'
    assert "content-security-policy" in {k.lower() for k in headers}
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["run", "metric", "unit", "rank", "restart", "attributes", "step", "time_utc", "time_unix_nano", "value"]
    assert len(rows) == 1 + 5_000 + 2
    first = rows[1]
    assert first[0] == "'" + FORMULA_RUN and first[2] == "'@unit"  # text cells that start a formula get a quote
    assert json.loads(first[5]) == {"+cmd": "-2+3"}  # an attribute set is a JSON object: it starts with "{"
    assert [float(r[9]) for r in rows[1:5_001]] == values  # numbers never get a quote (negatives stay numbers), and read back exactly
    assert rows[2][9] == repr(values[1]) and rows[2][9].startswith("-")
    assert [r[9] for r in rows[-2:]] == ["0.1", repr(2 / 3)]
    assert rows[1][7] == "2026-01-01T00:00:00.000000000Z" and rows[1][8] == str(T0)
    _, one, headers = get(server, "api/csv", run="plain", metric="train.loss")
    assert headers["content-disposition"] == 'attachment; filename="plain-train.loss.csv"'
    assert len(list(csv.reader(io.StringIO(one)))) == 3
    status, bad, _ = get(server, "api/csv", run="plain")
    assert status == 400 and "exactly one metric" in bad["error"]


def test_a_csv_file_name_keeps_only_safe_characters(store: PointStore, serve: Callable[[], UIServer]) -> None:
    write(store, 'r"\r\nSet-Cookie: x=1', "m/../evil\"'", [1.0])
    server = serve()
    status, _, headers = get(server, "api/csv", run='r"\r\nSet-Cookie: x=1', metric="m/../evil\"'")
    assert status == 200
    assert headers["content-disposition"] == 'attachment; filename="r_Set-Cookie_x_1-m_.._evil.csv"'
    assert "set-cookie" not in {k.lower() for k in headers}


def test_text_cells_that_would_start_a_formula_get_a_quote_and_no_other() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert text_cell(f"{start}1+1") == f"'{start}1+1"
    assert [text_cell(v) for v in ("a=1", "train.loss", "", None, 7)] == ["a=1", "train.loss", "", "", "7"]
