"""The web view's answers across runs: the parameters that differ, and one metric summed up per run.

``GET /api/params?run=A&run=B[&run=...][&all=1]``
    ``{"runs": [...], "unknown": [...], "params": {key: {run: value}}, "same": N}``: the
    parameters whose values differ between the runs (all of them with ``all=1``), by
    :func:`~otel_recursive_metrics.store.run_compare.differing_params`, the function the CLI's
    ``compare`` prints from; ``same`` counts the keys every run shares with one value, and
    ``unknown`` lists the runs the store has neither points nor metadata for. Reads the run
    metadata tables only, never the points.
``GET /api/summary?metric=M[&after_id=N][&until_id=N]``
    ``{"after_id", "last_id", "metric", "unit", "runs": {run: {"points", "min", "max", "last",
    "last_step", "last_time_unix_nano"}}}`` for every run with a point of ``M``
    (:func:`~otel_recursive_metrics.store.metric_summary.summarize_metric`): the parameters
    view plots a parameter against ``last``, ``min`` or ``max``. With ``after_id``, only the
    points after it are summed up (an update the page folds into what it holds), so a live page
    costs what was written since.

A run is named as in the other endpoints: its id, the empty string for points without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..store import PointStore
from ..store.metric_summary import summarize_metric
from ..store.run_compare import differing_params
from ..store.run_metadata import read_run_metadata
from ..store.series import RunCatalog
from .api import RequestError, run_param, snapshot

__all__ = ["MAX_RUNS_COMPARED", "params_payload", "summary_payload"]

#: Runs one ``/api/params`` request may name.
MAX_RUNS_COMPARED = 400


def params_payload(store: PointStore, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What ``GET /api/params`` answers (see the module docstring)."""
    runs = list(dict.fromkeys(params.get("run") or []))
    if not runs:
        raise RequestError("run is required, once per run (e.g. /api/params?run=A&run=B)")
    if len(runs) > MAX_RUNS_COMPARED:
        raise RequestError(f"{len(runs)} runs: at most {MAX_RUNS_COMPARED} a request")
    metadata = read_run_metadata(store)
    catalog = RunCatalog(store)
    unknown = [run for run in runs if run not in metadata and not catalog.run_resources(run_param(run))]
    params_by_run = {run: metadata.get(run, {}).get("params", {}) for run in runs}
    every = differing_params(params_by_run, runs, all_params=True)
    differ = differing_params(params_by_run, runs)
    shown = every if (params.get("all") or [""])[-1] in ("1", "true") else differ
    return {"runs": runs, "unknown": unknown, "params": shown, "same": len(every) - len(differ)}


def summary_payload(store: PointStore, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What ``GET /api/summary`` answers (see the module docstring)."""
    metrics = params.get("metric") or []
    if len(metrics) != 1:
        raise RequestError(f"metric: give exactly one metric (got {len(metrics)})")
    metric = metrics[0]
    after_id, until_id = snapshot(store, params)
    payload: dict[str, Any] = {"after_id": after_id, "last_id": until_id, "metric": metric, "unit": "", "runs": {}}
    if after_id is not None and after_id >= until_id:
        return payload
    catalog = RunCatalog(store)
    payload["unit"] = catalog.units.get(metric, "")
    found = summarize_metric(store, catalog, metric, until_id=until_id, after_id=after_id)
    payload["runs"] = {("" if run is None else run): summary.to_json() for run, summary in found.items()}
    return payload
