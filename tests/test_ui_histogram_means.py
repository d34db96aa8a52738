"""The web view draws a histogram at its mean, the mean the store holds, whatever the sum's type.

SQLite divides an integer by an integer as integers: a histogram of whole milliseconds (count
450, sum 38) was drawn at 0 and listed at 0 on the runs page, where its mean is 0.0844. Checked
through the real server, on points written by the real SDK, and on a trace long enough to be
downsampled inside SQLite (where the wrong division also picked the wrong bucket extremes).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.store.series import IN_MEMORY_MAX_ROWS

from .conftest import require_module
from .helpers import sdk_provider

require_module("starlette", "ui")
require_module("uvicorn", "ui")

from otel_recursive_metrics.ui import UIServer  # noqa: E402 - after the extra's check

T0 = 1_767_225_600_000_000_000


def get_json(server: UIServer, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{server.url}{path}?{query}", timeout=30) as response:
        return json.load(response)


def test_a_whole_millisecond_histogram_is_drawn_and_listed_at_its_true_mean(data_dir: Path) -> None:
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1)
    provider = sdk_provider(exporter, {"service.name": "web", "training.run.id": "server"})
    duration = provider.get_meter("http").create_histogram("http.server.duration", unit="ms")
    for request in range(450):
        duration.record(1 if request < 38 else 0)  # 38 requests took 1 ms, the rest under one
    provider.shutdown()
    store = PointStore(data_dir / "metrics.db", readonly=True)
    (stored,) = store.query(["http.server.duration"])
    store.close()
    assert stored.histogram is not None
    assert (stored.histogram["count"], stored.histogram["sum"]) == (450, 38)  # integers in the store
    mean = 38 / 450
    with UIServer(data_dir / "metrics.db", port=0) as server:
        (series,) = get_json(server, "api/series", run="server", metric="http.server.duration")["series"]
        (run,) = get_json(server, "api/runs")["runs"]
    assert series["traces"][0]["value"] == [mean]
    assert run["last"]["http.server.duration"]["value"] == mean


def test_a_long_integer_histogram_downsampled_in_sqlite_keeps_true_means_and_its_spike(tmp_path: Path) -> None:
    # Each point: count 450 and a whole-number sum, so every mean lies between 0 and 1; with
    # integer division all were 0 and no bucket had a spike to keep.
    length, spike_step = IN_MEMORY_MAX_ROWS + 10_000, 12_345
    sums = {step: 449 if step == spike_step else step % 7 for step in range(length)}
    store = PointStore(tmp_path / "metrics.db", durable=False)
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": "server", "service.name": "web"})
    scope, metric = builder.plain_scope("http"), builder.metric("http.server.duration", "ms", "", "histogram")
    for step, total in sums.items():
        hist = {"count": 450, "sum": total, "min": 0, "max": 1, "bounds": [], "counts": [450]}
        builder.add_point(resource, scope, metric, "{}", 0, T0 + step * 1_000_000, None, step, None, hist)
    store.write_batch(builder.build())
    store.close()
    with UIServer(tmp_path / "metrics.db", port=0) as server:
        (series,) = get_json(server, "api/series", run="server", metric="http.server.duration", max_points=200)["series"]
    assert series["downsampled"] is True
    trace = series["traces"][0]
    assert 0 < len(trace["value"]) <= 200
    for step, value in zip(trace["step"], trace["value"], strict=True):
        assert value == sums[step] / 450, (step, value)
    assert dict(zip(trace["step"], trace["value"], strict=True))[spike_step] == 449 / 450
