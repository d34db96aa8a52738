"""Run metadata in the store: written from the reserved metrics' points, read back per run.

The points of ``training.run.params`` and ``training.run.event`` (see
:mod:`otel_recursive_metrics.training.run`) are not stored as points: :func:`write_run_metadata`
turns them, inside the batch's own transaction, into rows of ``run_params``, ``run_info`` and
``run_processes``. Writing is idempotent like the points (a batch delivered twice changes
nothing): parameters and run info keep the latest value by time, a process row is keyed by its
resource, pid and host.

:func:`run_status` judges a run from its processes, as a :class:`~otel_recursive_metrics.model.kinds.RunStatus`:
``running`` while one of them is alive, ``finished`` once all ended so, ``failed`` / ``killed``
when one ended that way, ``crashed`` when one vanished without an end (its pid gone on this
host; on another host, when its points stopped more than :data:`SILENT_AFTER_S` ago), and
``unknown`` for a run with no process recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._process import process_alive
from ..model.batch import EXTRA, METRIC, RESOURCE, TIME, PointBatch
from ..model.kinds import RunStatus
from ..model.resource import RUN_EVENT_METRIC, RUN_ID_KEY, RUN_METADATA_METRICS, RUN_PARAMS_METRIC

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["RUN_METADATA_METRICS", "SILENT_AFTER_S", "KeptRunMetadata", "read_run_metadata", "run_status", "write_run_metadata"]

#: A process on another host without an end is taken for crashed once its run was silent this long.
SILENT_AFTER_S = 600.0
#: Run-metadata points a writer keeps (the oldest go first; a run has a handful).
_KEPT_MAX_POINTS = 10_000
#: A status as stored (``run_processes.status``) to its member.
_STATUS_OF_TEXT = {status.value: status for status in RunStatus}
#: Which status of one process makes the run's, first match wins; a run whose processes all
#: ended otherwise (finished, or a status this version does not know) is finished.
_PRECEDENCE = (RunStatus.RUNNING, RunStatus.CRASHED, RunStatus.FAILED, RunStatus.KILLED)


def write_run_metadata(conn: sqlite3.Connection, metric_names: Sequence[str], points: Iterable[list[Any]], resources: Sequence[Any]) -> int:
    """Write metadata points into the run tables (inside the caller's transaction); how many.

    ``metric_names[i]`` is the name of the batch's metric ``i``; ``resources[i]`` is
    ``(resource_id, attributes)`` of the batch's resource ``i``.
    """
    written = 0
    for p in points:
        extra = p[EXTRA] or {}
        resource_id, attributes = resources[p[RESOURCE]]
        run_id = attributes.get(RUN_ID_KEY)
        when = int(p[TIME])
        name = metric_names[p[METRIC]]
        if name == RUN_PARAMS_METRIC:
            params = extra.get("params") or {}
            conn.executemany(
                "INSERT INTO run_params(run_id, key, value, time_unix_nano) VALUES (?,?,?,?)"
                " ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value, time_unix_nano = excluded.time_unix_nano"
                " WHERE excluded.time_unix_nano >= run_params.time_unix_nano",
                [(str(run_id), str(k), json.dumps(v), when) for k, v in params.items()],
            )
        elif name == RUN_EVENT_METRIC:
            event = extra.get("event")
            pid, host, token = int(extra.get("pid") or 0), str(extra.get("host") or ""), extra.get("process")
            if event == "start":
                conn.execute(
                    "INSERT OR IGNORE INTO run_processes(resource_id, pid, host, process, started_unix_nano) VALUES (?,?,?,?,?)",
                    (resource_id, pid, host, token, when),
                )
            elif event == "end":
                conn.execute(
                    "INSERT INTO run_processes(resource_id, pid, host, process, started_unix_nano, ended_unix_nano, status)"
                    " VALUES (?,?,?,?,NULL,?,?) ON CONFLICT(resource_id, pid, host) DO UPDATE SET"
                    " ended_unix_nano = excluded.ended_unix_nano, status = excluded.status",
                    (resource_id, pid, host, token, when, str(extra.get("status") or RunStatus.FINISHED)),
                )
            elif event == "info":
                tags = extra.get("run_tags")
                conn.execute(
                    "INSERT INTO run_info(run_id, name, tags, notes, time_unix_nano) VALUES (?,?,?,?,?)"
                    " ON CONFLICT(run_id) DO UPDATE SET name = coalesce(excluded.name, run_info.name),"
                    " tags = coalesce(excluded.tags, run_info.tags), notes = coalesce(excluded.notes, run_info.notes),"
                    " time_unix_nano = excluded.time_unix_nano WHERE excluded.time_unix_nano >= run_info.time_unix_nano",
                    (str(run_id), extra.get("name"), None if tags is None else json.dumps(list(tags)), extra.get("notes"), when),
                )
        written += 1
    return written


class KeptRunMetadata:
    """The run metadata one writer stored, kept to write again into a store re-created under it.

    Each batch's metadata points are kept as a small batch of their own (with only the
    resources and metric descriptions they refer to); at most ``_KEPT_MAX_POINTS`` points.
    """

    def __init__(self) -> None:
        self._batches: list[PointBatch] = []
        self._points = 0

    def keep(self, batch: PointBatch, points: Sequence[list[Any]]) -> None:
        resources: dict[int, int] = {}
        metrics: dict[int, int] = {}
        kept = PointBatch(id=batch.id)
        for p in points:
            q = list(p)
            if p[RESOURCE] not in resources:
                resources[p[RESOURCE]] = len(kept.resources)
                kept.resources.append(batch.resources[p[RESOURCE]])
            if p[METRIC] not in metrics:
                metrics[p[METRIC]] = len(kept.metrics)
                kept.metrics.append(batch.metrics[p[METRIC]])
            q[RESOURCE], q[METRIC] = resources[p[RESOURCE]], metrics[p[METRIC]]
            kept.points.append(q)
        self._batches.append(kept)
        self._points += len(kept.points)
        while self._points > _KEPT_MAX_POINTS and len(self._batches) > 1:
            self._points -= len(self._batches.pop(0).points)

    def batches(self) -> list[PointBatch]:
        """The kept batches, oldest first."""
        return list(self._batches)


def _table_exists(store: PointStore, name: str) -> bool:
    return bool(store.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def read_run_metadata(store: PointStore) -> dict[str, dict[str, Any]]:
    """Per run id: ``params``, ``name``, ``tags``, ``notes`` and ``processes`` (rows of run_processes)."""
    out: dict[str, dict[str, Any]] = {}

    def entry(run_id: str) -> dict[str, Any]:
        return out.setdefault(run_id, {"params": {}, "name": None, "tags": [], "notes": None, "processes": []})

    if not _table_exists(store, "run_params"):
        return out  # a version-1 store: no metadata
    for run_id, key, value in store.read("SELECT run_id, key, value FROM run_params ORDER BY run_id, key"):
        entry(run_id)["params"][key] = json.loads(value)
    for run_id, name, tags, notes in store.read("SELECT run_id, name, tags, notes FROM run_info"):
        e = entry(run_id)
        e["name"], e["tags"], e["notes"] = name, json.loads(tags) if tags else [], notes
    rows = store.read(
        "SELECT r.attributes, p.pid, p.host, p.process, p.started_unix_nano, p.ended_unix_nano, p.status"
        " FROM run_processes p JOIN resources r ON r.id = p.resource_id"
    )
    for attributes, pid, host, token, started, ended, status in rows:
        run_id = json.loads(attributes).get(RUN_ID_KEY)
        entry(str(run_id))["processes"].append(
            {"pid": pid, "host": host, "process": token, "started_unix_nano": started, "ended_unix_nano": ended, "status": status}
        )
    return out


def run_status(processes: Sequence[Mapping[str, Any]], last_point_unix_nano: int | None, now_unix_nano: int | None = None) -> RunStatus:
    """A run's status from its processes (see the module docstring); ``unknown`` without any."""
    if not processes:
        return RunStatus.UNKNOWN
    now = time.time_ns() if now_unix_nano is None else now_unix_nano
    states: set[RunStatus] = set()
    for proc in processes:
        if proc.get("ended_unix_nano") is not None:
            states.add(_STATUS_OF_TEXT.get(str(proc.get("status") or RunStatus.FINISHED), RunStatus.FINISHED))
            continue
        alive = process_alive(proc.get("pid"), proc.get("process"), proc.get("host"))
        if alive is None:  # another host: judge by how recent the run's points are
            alive = last_point_unix_nano is not None and (now - last_point_unix_nano) / 1e9 < SILENT_AFTER_S
        states.add(RunStatus.RUNNING if alive else RunStatus.CRASHED)
    return next((status for status in _PRECEDENCE if status in states), RunStatus.FINISHED)
