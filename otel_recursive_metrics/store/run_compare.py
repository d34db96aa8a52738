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

from ..model.resource import RUN_ID_KEY
from .chunk_index import ChunkRow
from .latest_points import latest_chunks, latest_points

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
    """``{"metrics": [{"metric", "run", "points", "last", "last_step", "min", "max"}], "params": {key: {run: value}}}``.

    ``points``, ``min`` and ``max`` come from the chunk index alone (its ranges leave out NaN and
    points without a value, as SQL's ``min`` / ``max`` left out NULL); ``last`` decodes the chunks
    that reach the latest time of one series per metric and run (:mod:`.latest_points`).
    """
    summaries = {str(r["run"]): r for r in store.runs()}
    if metrics is None:
        metrics = sorted({m for run in runs for m in summaries[run]["metrics"]})
    wanted = set(runs)
    run_of: dict[int, str] = {}
    for resource_id, text in store.read("SELECT id, attributes FROM resources"):
        run = json.loads(text).get(RUN_ID_KEY)
        if isinstance(run, str) and run in wanted:  # SQL compared the JSON value with the names given: text only
            run_of[resource_id] = run
    name_of = dict(store.read(f"SELECT id, name FROM metrics WHERE name IN ({','.join('?' * len(metrics))})", metrics))
    stats: dict[tuple[str, str], tuple[int, Any, Any]] = {}
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    for metric_id, resource_id, count, low, high in _series_ranges(store, list(name_of), list(run_of)):
        key = (name_of[metric_id], run_of[resource_id])
        held_count, held_low, held_high = stats.get(key, (0, None, None))
        lows = [v for v in (held_low, low) if v is not None]
        highs = [v for v in (held_high, high) if v is not None]
        stats[key] = (held_count + count, min(lows, default=None), max(highs, default=None))
        # Of a run's several series of a metric (ranks, metric ids), the last one by
        # (metric id, resource id) gives "last", as the SQL window's output order did.
        pairs[key] = max(pairs.get(key, (metric_id, resource_id)), (metric_id, resource_id))
    chosen = {pair: key for key, pair in pairs.items()}
    groups: dict[tuple[str, str], list[ChunkRow]] = {}
    for row in latest_chunks(store, list(name_of), list(run_of)):
        group = chosen.get((row.metric_id, row.resource_id))
        if group is not None:
            groups.setdefault(group, []).append(row)
    last_by = {key: (point.value, point.step) for key, point in latest_points(store, groups).items()}
    table = []
    for metric in metrics:
        for run in runs:
            count, low, high = stats.get((metric, run), (0, None, None))
            value, step = last_by.get((metric, run), (None, None))
            table.append({"metric": metric, "run": run, "points": count, "last": value, "last_step": step, "min": low, "max": high})
    params_by_run = {run: summaries[run].get("params", {}) for run in runs}
    return {"metrics": table, "params": differing_params(params_by_run, runs, all_params=all_params)}


def _series_ranges(store: PointStore, metric_ids: list[int], resource_ids: list[int]) -> list[Any]:
    """Per (metric, resource) pair: ``(metric_id, resource_id, points, min value, max value)``, from the chunk index."""
    if not metric_ids or not resource_ids:
        return []
    return store.read(
        "SELECT metric_id, resource_id, sum(points), min(min_value), max(max_value) FROM chunks"
        f" WHERE metric_id IN ({','.join(str(int(i)) for i in metric_ids)})"
        f" AND resource_id IN ({','.join(str(int(i)) for i in resource_ids)}) GROUP BY metric_id, resource_id"
    )
