"""Runs side by side: each metric's count, last, lowest and highest value, and the parameters that differ.

The CLI's ``compare`` prints these (:mod:`otel_recursive_metrics.cli.compare`) and the web
view's comparison page shows the parameters that differ; both read them here.

    >>> differing_params({"a": {"lr": 0.1, "seed": 1}, "b": {"lr": 0.5, "seed": 1}}, ["a", "b"])
    {'lr': {'a': 0.1, 'b': 0.5}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["compare_runs", "differing_params"]


def differing_params(
    params_by_run: Mapping[str, Mapping[str, Any]], runs: Sequence[str], *, all_params: bool = False
) -> dict[str, dict[str, Any]]:
    """``{key: {run: value}}`` for each parameter whose value is not the same in every run of
    ``runs`` (a run without the key counts as ``None``), keys sorted; ``all_params`` keeps them all."""
    keys = sorted({key for run in runs for key in params_by_run.get(run, {})})
    params = {}
    for key in keys:
        values = {run: params_by_run.get(run, {}).get(key) for run in runs}
        if all_params or len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            params[key] = values
    return params


def compare_runs(store: PointStore, runs: list[str], metrics: list[str] | None = None, *, all_params: bool = False) -> dict[str, Any]:
    """``{"metrics": [{"metric", "run", "points", "last", "last_step", "min", "max"}], "params": {key: {run: value}}}``."""
    summaries = {str(r["run"]): r for r in store.runs()}
    if metrics is None:
        metrics = sorted({m for run in runs for m in summaries[run]["metrics"]})
    marks_runs = ",".join("?" * len(runs))
    marks_metrics = ",".join("?" * len(metrics))
    rows = store.read(
        "SELECT m.name, json_extract(r.attributes, '$.\"training.run.id\"') AS run, count(*), min(p.value), max(p.value)"
        " FROM points p JOIN metrics m ON m.id = p.metric_id JOIN resources r ON r.id = p.resource_id"
        f" WHERE m.name IN ({marks_metrics}) AND json_extract(r.attributes, '$.\"training.run.id\"') IN ({marks_runs})"
        " GROUP BY m.name, run",
        [*metrics, *runs],
    )
    stats = {(name, run): (count, low, high) for name, run, count, low, high in rows}
    last = store.read(
        "SELECT name, run, value, step FROM (SELECT m.name AS name, json_extract(r.attributes, '$.\"training.run.id\"') AS run,"
        " p.value AS value, p.step AS step, row_number() OVER (PARTITION BY p.metric_id, p.resource_id"
        " ORDER BY p.time_unix_nano DESC, p.step DESC, p.id DESC) AS n"
        " FROM points p JOIN metrics m ON m.id = p.metric_id JOIN resources r ON r.id = p.resource_id"
        f" WHERE m.name IN ({marks_metrics}) AND json_extract(r.attributes, '$.\"training.run.id\"') IN ({marks_runs}))"
        " WHERE n = 1",
        [*metrics, *runs],
    )
    last_by = {(name, run): (value, step) for name, run, value, step in last}
    table = []
    for metric in metrics:
        for run in runs:
            count, low, high = stats.get((metric, run), (0, None, None))
            value, step = last_by.get((metric, run), (None, None))
            table.append({"metric": metric, "run": run, "points": count, "last": value, "last_step": step, "min": low, "max": high})
    params_by_run = {run: summaries[run].get("params", {}) for run in runs}
    return {"metrics": table, "params": differing_params(params_by_run, runs, all_params=all_params)}
