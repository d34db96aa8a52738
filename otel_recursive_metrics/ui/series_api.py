"""``GET /api/series``: the points of charts, first up to a snapshot, then only what came after it.

    /api/series?run=R&metric=M[&run=...][&metric=...][&after_id=N][&until_id=N][&max_points=K]

Every named run with every named metric, read up to ``until_id`` (default: the newest point now)
and, with ``after_id``, only what came after it. The answer is ``{"after_id", "last_id",
"series": [...]}``; ``last_id`` is the snapshot to pass as the next ``after_id``. Each series:

``run``, ``metric``; ``unit`` (the metric's OTel unit, ``""`` when it has none) and ``kind``
(``gauge``, ``sum``, ``histogram``, ``exponential_histogram``); ``downsampled`` (whether any
trace left points out); ``traces``: ``[{"key", "rank", "restart", "attributes", "downsampled",
"step": [...], "time_ms": [...], "value": [...]}]``, a trace per resource (rank) and attribute
set, at most ``max_points`` points (default 2,000; min and max per bucket kept, see
:mod:`otel_recursive_metrics.store.series`); a histogram's value is its mean.

A histogram series adds ``distribution``: ``{"percentiles": [0, 6.68, ..., 100], "traces":
[{"key", "rank", "restart", "attributes", "sampled", "step", "time_ms", "values": [[p0, ...,
p100], ...]}]}``, per point the values at those percentiles, computed here from its buckets
(:mod:`otel_recursive_metrics.store.distributions`), at most ``max_points // 4`` points a trace.

An update lists only the series that have new points, so its size follows the new points,
never the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..store import PointStore
from ..store.distributions import PERCENTILES, Distribution, read_distributions
from ..store.series import RunCatalog, Series, read_series
from .api import (
    DEFAULT_MAX_POINTS,
    MAX_POINTS_LIMIT,
    MAX_SERIES_PER_REQUEST,
    MIN_POINTS,
    RequestError,
    finite,
    int_param,
    run_param,
    snapshot,
)
from .cache import SeriesCache

__all__ = ["BANDS_PER_POINTS", "series_payload"]

#: A distribution gets a band point for every this many line points: nine numbers each.
BANDS_PER_POINTS = 4


def _series_json(series: Series, run_text: str, catalog: RunCatalog) -> dict[str, Any]:
    return {
        "run": run_text,
        "metric": series.metric,
        "unit": catalog.units.get(series.metric, ""),
        "kind": catalog.kinds.get(series.metric, ""),
        "downsampled": series.downsampled,
        "traces": [
            {
                "key": trace.key,
                "rank": trace.rank,
                "restart": trace.restart,
                "attributes": trace.attributes,
                "downsampled": trace.downsampled,
                "step": trace.steps,
                "time_ms": [t // 1_000_000 for t in trace.times_unix_nano],
                "value": [finite(v) for v in trace.values],
            }
            for trace in series.traces
        ],
    }


def _distribution_json(distributions: list[Distribution]) -> dict[str, Any]:
    return {
        "percentiles": list(PERCENTILES),
        "traces": [
            {
                "key": found.key,
                "rank": found.rank,
                "restart": found.restart,
                "attributes": found.attributes,
                "sampled": found.sampled,
                "step": found.steps,
                "time_ms": [t // 1_000_000 for t in found.times_unix_nano],
                "values": found.values,
            }
            for found in distributions
        ],
    }


def series_payload(store: PointStore, params: Mapping[str, Sequence[str]], cache: SeriesCache | None = None) -> dict[str, Any]:
    """What ``GET /api/series`` answers (see the module docstring); first loads through ``cache``."""
    runs = params.get("run") or []
    metrics = params.get("metric") or []
    if not runs or not metrics:
        raise RequestError("run and metric are required, each at least once (e.g. /api/series?run=RUN&metric=train.loss)")
    if len(runs) * len(metrics) > MAX_SERIES_PER_REQUEST:
        raise RequestError(f"{len(runs)} runs x {len(metrics)} metrics: at most {MAX_SERIES_PER_REQUEST} series a request")
    after_id, until_id = snapshot(store, params)
    max_points = int_param(params, "max_points", DEFAULT_MAX_POINTS, MIN_POINTS, MAX_POINTS_LIMIT)
    assert max_points is not None
    payload: dict[str, Any] = {"after_id": after_id, "last_id": until_id, "series": []}
    if after_id is not None and after_id >= until_id:
        return payload  # nothing new: the common answer of a live poll, without reading a row
    catalog = RunCatalog(store)
    for run_text in dict.fromkeys(runs):
        for metric in dict.fromkeys(metrics):
            run = run_param(run_text)
            if after_id is None and cache is not None:
                series = cache.read(store, catalog, run, metric, until_id=until_id, max_points=max_points)
            else:
                series = read_series(store, catalog, run, metric, until_id=until_id, after_id=after_id, max_points=max_points)
            if after_id is not None and not series.traces:
                continue
            answer = _series_json(series, run_text, catalog)
            if "histogram" in answer["kind"]:
                bands = max(1, max_points // BANDS_PER_POINTS)
                found = read_distributions(store, catalog, run, metric, until_id=until_id, after_id=after_id, max_points=bands)
                answer["distribution"] = _distribution_json(found)
            payload["series"].append(answer)
    return payload
