"""The web view's promises at the HTTP level, on a real uvicorn server on a free loopback port.

- a live update carries only the points added since the client's last request (by ``points.id``);
- long series are downsampled on the server and keep their spikes (min and max per bucket),
  on the first load (in SQLite) and on an update (in Python) alike;
- it is read-only: GET only (POST, PUT, PATCH, DELETE get 405), the store file is unchanged,
  and a ``Host`` header that is not this server's is refused;
- it binds 127.0.0.1 by default, and the CLI says what is wrong when the store is missing or
  damaged, the port is busy, or the ``ui`` extra is not installed;
- ``import otel_recursive_metrics`` does not import the extra's packages.

The browser tests (tests/test_ui_browser.py) drive the pages themselves.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import cli
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.store.series import IN_MEMORY_MAX_ROWS, RunCatalog, max_point_id, min_max_buckets, read_series

from .conftest import require_module

require_module("starlette", "ui")
require_module("uvicorn", "ui")
require_module("plotly", "ui")

from otel_recursive_metrics.ui import UIServer  # noqa: E402 - after the extra's check
from otel_recursive_metrics.ui.cache import SeriesCache  # noqa: E402

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC
SPIKE_STEP, SPIKE_VALUE = 1_234, 1e6
DIP_STEP, DIP_VALUE = 3_456, -1e6


def write_points(
    store: PointStore,
    run: str,
    metric: str,
    steps: range,
    value: Any = None,
    *,
    rank: int = 0,
    histogram: bool = False,
    attributes: str = "{}",
) -> None:
    """One point a step for ``metric`` in ``run``: 1/(step+1) unless ``value(step)`` says otherwise."""
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "training.rank": rank, "service.name": "test"})
    scope = builder.plain_scope("test")
    kind = "histogram" if histogram else "gauge"
    metric_index = builder.metric(metric, "", "", kind)
    for step in steps:
        number = value(step) if value else 1.0 / (step + 1)
        hist = {"count": 2, "sum": 2 * number, "min": number, "max": number, "bounds": [], "counts": [2]} if histogram else None
        time_unix_nano = T0 + step * 1_000_000
        builder.add_point(resource, scope, metric_index, attributes, 0, time_unix_nano, None if histogram else number, step, None, hist)
    store.write_batch(builder.build())


def spiky(step: int) -> float:
    return {SPIKE_STEP: SPIKE_VALUE, DIP_STEP: DIP_VALUE}.get(step, 1.0 / (step + 1))


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PointStore]:
    writer = PointStore(tmp_path / "metrics.db", durable=False)
    yield writer
    writer.close()


@pytest.fixture
def served(store: PointStore) -> Iterator[UIServer]:
    write_points(store, "run-a", "train.loss", range(100))
    with UIServer(store.path, port=0) as server:
        yield server


def series(server: UIServer, **params: Any) -> dict[str, Any]:
    query = urllib.parse.urlencode(params, doseq=True)
    status, body = get(f"{server.url}api/series?{query}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def test_a_live_update_carries_only_the_points_added_since_the_last_request(store: PointStore, served: UIServer) -> None:
    first = series(served, run="run-a", metric="train.loss")
    (loaded,) = first["series"]
    assert loaded["traces"][0]["step"] == list(range(100))
    assert first["after_id"] is None
    write_points(store, "run-a", "train.loss", range(100, 103))
    write_points(store, "run-b", "train.loss", range(50))  # another run's points: not asked for
    update = series(served, run="run-a", metric="train.loss", after_id=first["last_id"])
    (news,) = update["series"]
    trace = news["traces"][0]
    assert trace["step"] == [100, 101, 102]
    assert trace["value"] == [1 / 101, 1 / 102, 1 / 103]
    assert update["last_id"] > first["last_id"]
    # Nothing new: no series at all, and the same snapshot back.
    quiet = series(served, run="run-a", metric="train.loss", after_id=update["last_id"])
    assert quiet == {"after_id": update["last_id"], "last_id": update["last_id"], "series": []}


def test_a_series_added_later_is_read_up_to_the_clients_snapshot(store: PointStore, served: UIServer) -> None:
    first = series(served, run="run-a", metric="train.loss")
    write_points(store, "run-a", "train.loss", range(100, 110))
    later = series(served, run="run-a", metric="train.loss", until_id=first["last_id"])
    assert later["last_id"] == first["last_id"]
    assert later["series"][0]["traces"][0]["step"] == list(range(100))
    update = series(served, run="run-a", metric="train.loss", after_id=first["last_id"])
    assert update["series"][0]["traces"][0]["step"] == list(range(100, 110))


def test_bytes_of_an_update_follow_the_new_points_not_the_history(store: PointStore, served: UIServer) -> None:
    write_points(store, "run-a", "train.loss", range(100, 50_000))
    snapshot = series(served, run="run-a", metric="train.loss", max_points=10)["last_id"]
    sizes = []
    next_step = 50_000
    for new in (1, 100):
        write_points(store, "run-a", "train.loss", range(next_step, next_step + new))
        next_step += new
        query = urllib.parse.urlencode({"run": "run-a", "metric": "train.loss", "after_id": snapshot})
        with urllib.request.urlopen(f"{served.url}api/series?{query}", timeout=30) as response:
            body = response.read()
        snapshot = json.loads(body)["last_id"]
        sizes.append(len(body))
    one, hundred = sizes
    assert one < 400, one  # the 50,000 points before the snapshot cost nothing here
    per_point = (hundred - one) / 99
    assert 20 < per_point < 80, sizes  # step, time and a full-precision value: about 40 bytes


@pytest.mark.parametrize("length", [5_000, IN_MEMORY_MAX_ROWS + 10_000], ids=["in-python", "in-sqlite"])
def test_long_series_are_downsampled_on_the_server_keeping_spikes(store: PointStore, tmp_path: Path, length: int) -> None:
    write_points(store, "run-a", "train.loss", range(length), spiky)
    with UIServer(store.path, port=0) as server:
        answer = series(server, run="run-a", metric="train.loss", max_points=200)
    (loaded,) = answer["series"]
    assert loaded["downsampled"] is True
    trace = loaded["traces"][0]
    assert len(trace["value"]) <= 200
    kept = dict(zip(trace["step"], trace["value"], strict=True))
    assert kept[SPIKE_STEP] == SPIKE_VALUE
    assert kept[DIP_STEP] == DIP_VALUE
    assert trace["step"] == sorted(trace["step"])
    # The curve falls: each bucket's highest point is its first and its lowest its last, so
    # both ends of the run survive.
    assert trace["step"][0] == 0
    assert trace["step"][-1] == length - 1


def test_the_server_reads_a_long_series_whole_once_then_only_what_is_new(store: PointStore) -> None:
    write_points(store, "run-a", "train.loss", range(IN_MEMORY_MAX_ROWS + 10_000), spiky)
    with UIServer(store.path, port=0) as server:
        first = series(server, run="run-a", metric="train.loss", max_points=300)
        write_points(store, "run-a", "train.loss", range(40_000, 40_010), lambda step: 9e6)
        again = series(server, run="run-a", metric="train.loss", max_points=300)
        cache = server.app.state.series_cache
    assert (cache.misses, cache.hits) == (1, 1)
    assert again["last_id"] == first["last_id"] + 10
    assert 9e6 in again["series"][0]["traces"][0]["value"] and SPIKE_VALUE in again["series"][0]["traces"][0]["value"]


def test_a_long_trace_whose_second_attribute_set_starts_late_is_read_whole(store: PointStore) -> None:
    # The first rows show one attribute set (GPU 0); the index scan beside the buckets finds the
    # second (GPU 1, from step 25,000 on), and both are read per set.
    write_points(store, "run-a", "hw.gpu.utilization", range(30_000), spiky, attributes='{"hw.id":"gpu0"}')
    late = range(25_000, 30_000)
    write_points(store, "run-a", "hw.gpu.utilization", late, lambda s: -5.0 if s == 27_000 else 0.5, attributes='{"hw.id":"gpu1"}')
    with UIServer(store.path, port=0) as server:
        (loaded,) = series(server, run="run-a", metric="hw.gpu.utilization", max_points=200)["series"]
    gpu0, gpu1 = loaded["traces"]
    assert (gpu0["attributes"], gpu1["attributes"]) == ({"hw.id": "gpu0"}, {"hw.id": "gpu1"})
    assert SPIKE_VALUE in gpu0["value"] and DIP_VALUE in gpu0["value"] and 0.5 not in gpu0["value"]
    assert -5.0 in gpu1["value"] and min(gpu1["step"]) >= 25_000


def test_a_large_update_is_downsampled_too_and_keeps_its_spike(store: PointStore, served: UIServer) -> None:
    snapshot = series(served, run="run-a", metric="train.loss")["last_id"]
    write_points(store, "run-a", "train.loss", range(100, 30_000), spiky)
    update = series(served, run="run-a", metric="train.loss", after_id=snapshot, max_points=100)
    trace = update["series"][0]["traces"][0]
    assert update["series"][0]["downsampled"] is True
    assert len(trace["value"]) <= 100
    assert SPIKE_VALUE in trace["value"] and DIP_VALUE in trace["value"]


def test_a_long_series_shown_again_reads_only_what_is_new_and_keeps_every_spike(store: PointStore) -> None:
    write_points(store, "run-a", "train.loss", range(IN_MEMORY_MAX_ROWS + 10_000), spiky)
    catalog, cache = RunCatalog(store), SeriesCache()
    first = cache.read(store, catalog, "run-a", "train.loss", until_id=max_point_id(store), max_points=200)
    write_points(store, "run-a", "train.loss", range(40_000, 41_000), lambda step: 7e6 if step == 40_500 else 0.5)
    catalog = RunCatalog(store)
    again = cache.read(store, catalog, "run-a", "train.loss", until_id=max_point_id(store), max_points=200)
    fresh = read_series(store, catalog, "run-a", "train.loss", until_id=max_point_id(store), max_points=200)
    assert (cache.misses, cache.hits) == (1, 1)
    (held,), (shown,), (read,) = first.traces, again.traces, fresh.traces
    assert len(shown.values) <= 200 and shown.steps == sorted(shown.steps)
    for step, value in ((SPIKE_STEP, SPIKE_VALUE), (DIP_STEP, DIP_VALUE), (40_500, 7e6)):
        assert dict(zip(shown.steps, shown.values, strict=True))[step] == value
        assert dict(zip(read.steps, read.values, strict=True))[step] == value
    assert shown.steps[-1] >= 40_000 and shown.values[-1] == read.values[-1] == 0.5  # the new tail
    assert held.steps[-1] == IN_MEMORY_MAX_ROWS + 9_999  # what was held is untouched


def test_min_max_buckets_keep_order_extremes_and_gaps() -> None:
    rows = [(i, v) for i, v in enumerate([3, 1, 2, 9, None, None, 5, 4])]
    assert min_max_buckets(rows, 8, 1) == rows
    kept = min_max_buckets(rows, 6, 1)  # 3 buckets of 3, 3 and 2 rows
    assert kept == [(0, 3), (1, 1), (3, 9), (6, 5), (7, 4)]
    assert min_max_buckets([(0, None), (1, None), (2, None)], 2, 1) == [(0, None)]  # a gap stays a gap


def test_ranks_are_traces_of_their_own_and_histograms_show_their_mean(store: PointStore) -> None:
    write_points(store, "ddp", "train.loss", range(10), rank=0)
    write_points(store, "ddp", "train.loss", range(10), lambda s: 2.0, rank=1)
    write_points(store, "ddp", "latency", range(3), lambda s: 4.0, histogram=True)
    with UIServer(store.path, port=0) as server:
        loss, latency = series(server, run="ddp", metric=["train.loss", "latency"])["series"]
    assert [t["rank"] for t in loss["traces"]] == [0, 1]
    assert loss["traces"][1]["value"] == [2.0] * 10
    assert latency["traces"][0]["value"] == [4.0, 4.0, 4.0]


def test_runs_and_metrics_endpoints_list_each_run_with_its_last_values(store: PointStore) -> None:
    write_points(store, "run-a", "train.loss", range(10))
    write_points(store, "run-b", "train.loss", range(20))
    write_points(store, "run-b", "val.accuracy", range(0, 20, 5), lambda s: s / 100)
    with UIServer(store.path, port=0) as server:
        status, runs = get(server.url + "api/runs")
        _, metrics = get(server.url + "api/metrics?run=run-b&run=nope")
    assert status == 200
    by_run = {r["run"]: r for r in runs["runs"]}
    assert by_run["run-a"]["last"]["train.loss"] == {"value": 0.1, "step": 9, "time_unix_nano": T0 + 9_000_000}
    assert by_run["run-b"]["last"]["val.accuracy"]["value"] == 0.15
    assert metrics["runs"] == {"run-b": ["train.loss", "val.accuracy"], "nope": []}
    assert metrics["last_id"] == runs["last_id"] == store.count()
    assert metrics["start_time_unix_nano"]["run-b"] == T0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_it_is_read_only(store: PointStore, served: UIServer, method: str) -> None:
    before = store.count()
    digest = hashlib.sha256(store.path.read_bytes()).hexdigest()
    for path in ("", "api/runs", "api/series?run=run-a&metric=train.loss", "static/plotly.min.js", "compare"):
        status, _ = get(served.url + path, method=method)
        assert status == 405, (method, path)
    assert store.count() == before
    assert hashlib.sha256(store.path.read_bytes()).hexdigest() == digest


def test_pages_and_plotlys_bundle_come_from_this_server_and_nothing_else(served: UIServer) -> None:
    for page in ("", "run?run=run-a", "compare?run=run-a"):
        status, body = get(served.url + page)
        assert status == 200 and b"<script" in body
        for src in body.split(b'src="')[1:]:
            assert src.startswith(b"/static/"), src[:60]  # no CDN
    status, bundle = get(served.url + "static/plotly.min.js")
    assert status == 200 and b"plotly" in bundle[:2000].lower() and len(bundle) > 1_000_000
    assert get(served.url + "static/..%2f..%2fpyproject.toml")[0] == 404
    assert get(served.url + "static/app.py")[0] == 404


def test_a_foreign_host_header_and_bad_parameters_are_refused(served: UIServer) -> None:
    status, _ = get(served.url + "api/runs", headers={"Host": "attacker.example"})
    assert status == 400
    status, body = get(served.url + "api/series?run=run-a&metric=train.loss&max_points=lots")
    assert status == 400 and "max_points='lots'" in body["error"]
    status, body = get(served.url + "api/series?run=run-a")
    assert status == 400 and "metric" in body["error"]


def test_it_binds_loopback_by_default_and_stops_within_its_deadline(store: PointStore) -> None:
    args = cli.build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    write_points(store, "run-a", "train.loss", range(3))
    server = UIServer(store.path, port=0).start()
    assert server.socket.getsockname()[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")
    started = time.monotonic()
    assert server.stop(timeout_s=10)
    assert time.monotonic() - started < 10


def run_ui_cli(*args: str, hide: str | None = None) -> subprocess.CompletedProcess[str]:
    """``otel-recursive-metrics ui ...`` in a child; ``hide`` makes a module look uninstalled."""
    code = "import sys\n"
    if hide:
        code += f"sys.modules[{hide!r}] = None\n"
    code += "from otel_recursive_metrics.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, "ui", *args], capture_output=True, text=True, timeout=60, check=False)


def test_cli_errors_name_the_store_the_port_or_the_missing_extra(store: PointStore, tmp_path: Path) -> None:
    missing = run_ui_cli("--store", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database at all" * 100)
    result = run_ui_cli("--store", str(damaged))
    assert result.returncode == 2 and "damaged or not a store" in result.stderr and ".recover" in result.stderr
    write_points(store, "run-a", "train.loss", range(3))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = run_ui_cli("--store", str(store.path), "--port", str(busy.getsockname()[1]))
    assert result.returncode == 2 and "cannot listen there" in result.stderr and "--port" in result.stderr
    for module in ("starlette", "uvicorn", "plotly"):
        result = run_ui_cli("--store", str(store.path), hide=module)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert "pip install -e '.[ui]' in your clone" in result.stderr


def test_importing_the_package_does_not_import_the_ui_extra() -> None:
    code = (
        "import sys, otel_recursive_metrics, otel_recursive_metrics.cli\n"
        "heavy = [m for m in ('starlette', 'uvicorn', 'plotly', 'otel_recursive_metrics.ui') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_ranks_endpoint_names_the_slowest_rank(store: PointStore) -> None:
    # Rank 0 steps once a millisecond; rank 1 once every two, so it has half the steps by the end.
    write_points(store, "ddp", "train.loss", range(100), rank=0)
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": "ddp", "training.rank": 1, "service.name": "test"})
    scope, metric = builder.plain_scope("test"), builder.metric("train.loss", "", "", "gauge")
    for step in range(50):
        builder.add_point(resource, scope, metric, "{}", 0, T0 + 2 * step * 1_000_000, 1.0, step, None)
    store.write_batch(builder.build())
    with UIServer(store.path, port=0) as server:
        status, skew = get(server.url + "api/ranks?run=ddp")
        _, empty = get(server.url + "api/ranks?run=nope")
        bad_status, bad = get(server.url + "api/ranks?run=ddp&window_s=0")
    assert status == 200
    assert [r["rank"] for r in skew["ranks"]] == [0, 1]
    assert skew["slowest"]["rank"] == 1 and skew["ranks"][1]["steps_behind"] == 50
    assert skew["ranks"][0]["step_rate_per_s"] == pytest.approx(1000.0) and skew["ranks"][1]["step_rate_per_s"] == pytest.approx(500.0)
    assert empty == {"run": "nope", "ranks": [], "slowest": None}
    assert bad_status == 400 and "window_s" in bad["error"]
