"""Training runs in a store: one summary per ``training.run.id``, from the points' resources."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..model.kinds import RunStatus
from ..model.resource import RANK_KEY, RESTART_COUNT_KEY, RUN_ID_KEY
from .chunk_index import ChunkRow
from .latest_points import latest_chunks, latest_points
from .run_metadata import read_run_metadata, run_status

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["summarize_runs"]


def summarize_runs(store: PointStore, last_of: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One summary per training run (``training.run.id``), oldest first.

    Each is ``{"run", "name", "status", "start_time_unix_nano", "end_time_unix_nano",
    "duration_s", "ranks", "restarts", "points", "metrics", "params", "tags", "notes", "last"}``:
    ``ranks`` and ``restarts`` are the sorted distinct ``training.rank`` /
    ``training.restart_count`` values, ``metrics`` the sorted metric names, ``status`` a
    :class:`~otel_recursive_metrics.model.kinds.RunStatus` (``unknown`` for a run without run
    events, one written through the SDK only; see :func:`~.run_metadata.run_status`),
    ``params`` the hyperparameters, ``last`` the last value (by time) of each metric in
    ``last_of``. Points whose resource has no run id are summarised under ``run`` ``None``.
    """
    # From the chunk index (see chunk_index.py): a row per chunk, no chunk decoded.
    per_resource = store.read("SELECT resource_id, min(min_time), max(max_time), sum(points) FROM chunks GROUP BY resource_id")
    resources = {resource_id: json.loads(text) for resource_id, text in store.read("SELECT id, attributes FROM resources")}
    names = dict(store.read("SELECT id, name FROM metrics"))
    names_by_resource: dict[int, set[str]] = {}
    for metric_id, resource_id in store.read("SELECT DISTINCT metric_id, resource_id FROM chunks"):
        names_by_resource.setdefault(resource_id, set()).add(names[metric_id])
    runs: dict[Any, dict[str, Any]] = {}
    for resource_id, first, last, count in per_resource:
        attrs = resources.get(resource_id, {})
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
    metadata = read_run_metadata(store)
    last = _last_values(store, last_of, {resource_id: attrs.get(RUN_ID_KEY) for resource_id, attrs in resources.items()}) if last_of else {}
    out = []
    for entry in sorted(runs.values(), key=lambda e: (e["start_time_unix_nano"], str(e["run"]))):
        for key in ("ranks", "restarts", "metrics"):
            entry[key] = sorted(entry[key], key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))
        meta = metadata.get(str(entry["run"]), {})
        processes = meta.get("processes", [])
        entry["name"] = meta.get("name")
        entry["tags"] = meta.get("tags", [])
        entry["notes"] = meta.get("notes")
        entry["params"] = meta.get("params", {})
        entry["status"] = run_status(processes, entry["end_time_unix_nano"])
        starts = [p["started_unix_nano"] for p in processes if p.get("started_unix_nano")]
        ends = [p["ended_unix_nano"] for p in processes if p.get("ended_unix_nano")]
        if starts:
            entry["start_time_unix_nano"] = min(entry["start_time_unix_nano"], *starts)
        if entry["status"] != RunStatus.RUNNING and ends:
            entry["end_time_unix_nano"] = max(entry["end_time_unix_nano"], *ends)
        end = time.time_ns() if entry["status"] == RunStatus.RUNNING else entry["end_time_unix_nano"]
        entry["duration_s"] = max(0.0, (end - entry["start_time_unix_nano"]) / 1e9)
        entry["last"] = last.get(entry["run"], {})
        out.append(entry)
    # Runs with metadata but no points yet (a run that just started) are runs too.
    seen = {str(e["run"]) for e in out}
    for run_id, meta in metadata.items():
        if run_id in seen or not meta.get("processes"):
            continue
        started = min((p["started_unix_nano"] or 0) for p in meta["processes"])
        status = run_status(meta["processes"], None)
        out.append(
            {
                "run": run_id,
                "name": meta.get("name"),
                "status": status,
                "start_time_unix_nano": started,
                "end_time_unix_nano": started,
                "duration_s": max(0.0, (time.time_ns() - started) / 1e9) if status == RunStatus.RUNNING else 0.0,
                "ranks": [],
                "restarts": [],
                "points": 0,
                "metrics": [],
                "params": meta.get("params", {}),
                "tags": meta.get("tags", []),
                "notes": meta.get("notes"),
                "last": {},
            }
        )
    return out


def _last_values(store: PointStore, metrics: Sequence[str], run_of: Mapping[int, Any]) -> dict[Any, dict[str, Any]]:
    """Per run, the last value (by time, then step, then row id) of each of ``metrics``.

    From the chunks that reach each series' latest time (:mod:`.latest_points`), not a scan:
    ``run_of`` maps resource ids to their run id.
    """
    marks = ",".join("?" * len(metrics))
    names = dict(store.read(f"SELECT id, name FROM metrics WHERE name IN ({marks})", list(metrics)))
    groups: dict[tuple[Any, str], list[ChunkRow]] = {}
    for row in latest_chunks(store, list(names)):
        groups.setdefault((run_of.get(row.resource_id), names[row.metric_id]), []).append(row)
    found = latest_points(store, groups)
    out: dict[Any, dict[str, Any]] = {}
    for run_id, name in sorted(found, key=lambda key: metrics.index(key[1])):  # each run's in the order asked for
        out.setdefault(run_id, {})[name] = found[run_id, name].value
    return out
