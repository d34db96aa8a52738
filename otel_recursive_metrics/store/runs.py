"""Training runs in a store: one summary per ``training.run.id``, from the points' resources."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..resource import RANK_KEY, RESTART_COUNT_KEY, RUN_ID_KEY

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["summarize_runs"]


def summarize_runs(store: PointStore) -> list[dict[str, Any]]:
    """One summary per training run (``training.run.id``), oldest first.

    Each is ``{"run", "start_time_unix_nano", "end_time_unix_nano", "ranks", "restarts",
    "points", "metrics"}``: ``ranks`` and ``restarts`` are the sorted distinct
    ``training.rank`` / ``training.restart_count`` values, ``metrics`` the sorted metric
    names. Points whose resource has no run id are summarised under ``run`` ``None``.
    """
    per_resource = store.read("SELECT resource_id, min(time_unix_nano), max(time_unix_nano), count(*) FROM points GROUP BY resource_id")
    resources = dict(store.read("SELECT id, attributes FROM resources"))
    pairs = store.read(
        "SELECT DISTINCT p.resource_id, m.name FROM (SELECT DISTINCT metric_id, resource_id FROM points) p"
        " JOIN metrics m ON m.id = p.metric_id"
    )
    names_by_resource: dict[int, set[str]] = {}
    for resource_id, name in pairs:
        names_by_resource.setdefault(resource_id, set()).add(name)
    runs: dict[Any, dict[str, Any]] = {}
    for resource_id, first, last, count in per_resource:
        attrs = json.loads(resources.get(resource_id, "{}"))
        run_id = attrs.get(RUN_ID_KEY)
        entry = runs.setdefault(
            run_id,
            {
                "run": run_id,
                "start_time_unix_nano": first,
                "end_time_unix_nano": last,
                "ranks": set(),
                "restarts": set(),
                "points": 0,
                "metrics": set(),
            },
        )
        entry["start_time_unix_nano"] = min(entry["start_time_unix_nano"], first)
        entry["end_time_unix_nano"] = max(entry["end_time_unix_nano"], last)
        entry["points"] += count
        if attrs.get(RANK_KEY) is not None:
            entry["ranks"].add(attrs[RANK_KEY])
        if attrs.get(RESTART_COUNT_KEY) is not None:
            entry["restarts"].add(attrs[RESTART_COUNT_KEY])
        entry["metrics"] |= names_by_resource.get(resource_id, set())
    out = []
    for entry in sorted(runs.values(), key=lambda e: (e["start_time_unix_nano"], str(e["run"]))):
        for key in ("ranks", "restarts", "metrics"):
            entry[key] = sorted(entry[key], key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))
        out.append(entry)
    return out
