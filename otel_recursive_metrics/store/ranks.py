"""Skew across the ranks of one run: who is behind, how fast each rank steps, how busy its GPUs are.

In data-parallel training every rank waits for the slowest at each gradient all-reduce, so one
straggler (a throttled GPU, a noisy neighbour, a slow disk) sets the pace of the whole job. The
summary below is what people look for first: per rank the last step, the step rate over a
recent window, the GPU utilisation over the same window, and which rank is slowest and by how
much.

Definitions, all per rank (``training.rank``) of the run's latest attempt (the highest
``training.restart_count``: after a restart torchrun may hand out ranks anew, so ranks of
earlier attempts are other processes):

``last_step``
    the largest ``step`` of any point the rank wrote (training metrics carry a step; system
    metrics don't and are ignored here).
``step_rate_per_s``
    steps per second over the last ``window_s`` seconds of that rank's stepped points:
    ``(last step - first step in the window) / (their time apart)``. A rank whose window holds a
    single instant falls back to its whole history; ``None`` when there is none.
``steps_behind``
    the leading rank's ``last_step`` minus this rank's.
``seconds_since_last_point``
    how long before the run's newest point this rank's newest point is: a rank that has hung
    or died shows a growing gap while the others carry on.
``gpu_utilization``
    the mean of ``hw.gpu.utilization`` (a fraction, 0 to 1) over the rank's window, across its
    devices (see :mod:`otel_recursive_metrics.system.gpu`); ``None`` without GPU metrics.

The slowest rank is the one with the lowest step rate; ``slowest`` says by how much it trails
the median rate of all ranks (``below_median``, a fraction) and how many steps it is behind
the leader. The chunk index answers the last steps and times; only the chunks that reach each
rank's window are decoded, for its step rate and GPU utilisation.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.chunk import SeriesChunk
from ..model.resource import RANK_KEY, RESTART_COUNT_KEY, RUN_ID_KEY
from .chunk_index import CHUNK_COLUMNS, ChunkRow
from .scan import decode_rows

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["DEFAULT_WINDOW_S", "GPU_UTILIZATION_METRIC", "rank_skew"]

DEFAULT_WINDOW_S = 60.0
GPU_UTILIZATION_METRIC = "hw.gpu.utilization"


def _run_resources(store: PointStore, run: str) -> tuple[int | None, dict[int, Any]]:
    """The latest restart count of ``run`` and its resources' ids mapped to their rank."""
    rows = store.read(
        "SELECT id, attributes FROM resources WHERE json_extract(attributes, ?) = ?",
        [f'$."{RUN_ID_KEY}"', run],
    )
    parsed = [(rid, json.loads(text)) for rid, text in rows]
    restarts = [a.get(RESTART_COUNT_KEY) for _, a in parsed if isinstance(a.get(RESTART_COUNT_KEY), int)]
    latest = max(restarts) if restarts else None
    ranks = {rid: a.get(RANK_KEY) for rid, a in parsed if a.get(RESTART_COUNT_KEY, latest) == latest}
    return latest, ranks


def rank_skew(store: PointStore, run: str, window_s: float = DEFAULT_WINDOW_S) -> dict[str, Any]:
    """Per-rank progress of ``run`` and its slowest rank (see the module docstring).

    Returns ``{"run", "restart", "window_s", "ranks": [...], "slowest"}``: ``ranks`` is one dict
    per rank, ascending, with ``rank``, ``last_step``, ``steps_behind``, ``step_rate_per_s``,
    ``seconds_since_last_point``, ``gpu_utilization``, ``gpu_points`` and
    ``last_time_unix_nano``; ``slowest`` is ``None`` with fewer than two ranks that step, else
    ``{"rank", "step_rate_per_s", "median_step_rate_per_s", "below_median", "steps_behind"}``.
    Raises :class:`KeyError` when the store has no points for ``run``.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    restart, rank_of = _run_resources(store, run)
    if not rank_of:
        raise KeyError(run)
    ids = ",".join(str(int(rid)) for rid in rank_of)
    # Times and steps from the chunk index alone (its step range covers the points that have one).
    totals = store.read(
        f"SELECT resource_id, max(max_time), max(max_step), min(min_step), min(min_time) FROM chunks WHERE resource_id IN ({ids})"
        " GROUP BY resource_id"
    )
    per_rank: dict[Any, dict[str, Any]] = {}
    for rid, last_time, max_step, min_step, first_time in totals:
        entry = per_rank.setdefault(
            rank_of[rid],
            {"last_time": last_time, "max_step": None, "min_step": None, "first_time": first_time},
        )
        entry["last_time"] = max(entry["last_time"], last_time)
        entry["first_time"] = min(entry["first_time"], first_time)
        if max_step is not None:
            entry["max_step"] = max_step if entry["max_step"] is None else max(entry["max_step"], max_step)
            entry["min_step"] = min_step if entry["min_step"] is None else min(entry["min_step"], min_step)
    if not per_rank:
        raise KeyError(run)
    window_ns = int(window_s * 1e9)
    since = {rid: per_rank[rank]["last_time"] - window_ns for rid, rank in rank_of.items() if rank in per_rank}
    spans: dict[Any, list[Any]] = {}
    for rid, chunk in _window_chunks(store, since, "c.max_step IS NOT NULL"):
        keep = ~chunk.step_missing & (chunk.time_unix_nano >= since[rid])
        if not keep.any():
            continue
        steps, times = chunk.step[keep], chunk.time_unix_nano[keep]
        lo_step, hi_step, lo_time, hi_time = int(steps.min()), int(steps.max()), int(times.min()), int(times.max())
        span = spans.setdefault(rank_of[rid], [lo_step, hi_step, lo_time, hi_time])
        span[0], span[1] = min(span[0], lo_step), max(span[1], hi_step)
        span[2], span[3] = min(span[2], lo_time), max(span[3], hi_time)
    gpu = _gpu_utilization(store, rank_of, since)
    newest = max(e["last_time"] for e in per_rank.values())
    leader = max((e["max_step"] for e in per_rank.values() if e["max_step"] is not None), default=None)
    ranks = []
    for rank in sorted(per_rank, key=lambda r: (not isinstance(r, int), r if isinstance(r, int) else str(r))):
        entry = per_rank[rank]
        rate = _rate(spans.get(rank))
        if rate is None and entry["max_step"] is not None:
            rate = _rate([entry["min_step"], entry["max_step"], entry["first_time"], entry["last_time"]])
        mean, count = gpu.get(rank, (None, 0))
        ranks.append(
            {
                "rank": rank,
                "last_step": entry["max_step"],
                "steps_behind": None if entry["max_step"] is None or leader is None else leader - entry["max_step"],
                "step_rate_per_s": rate,
                "seconds_since_last_point": (newest - entry["last_time"]) / 1e9,
                "gpu_utilization": mean,
                "gpu_points": count,
                "last_time_unix_nano": entry["last_time"],
            }
        )
    return {"run": run, "restart": restart, "window_s": window_s, "ranks": ranks, "slowest": _slowest(ranks)}


def _rate(span: list[Any] | None) -> float | None:
    if span is None:
        return None
    lo_step, hi_step, lo_time, hi_time = (int(v) for v in span)
    if hi_time <= lo_time:
        return None
    return (hi_step - lo_step) / ((hi_time - lo_time) / 1e9)


def _gpu_utilization(store: PointStore, rank_of: dict[int, Any], since: dict[int, int]) -> dict[Any, tuple[float, int]]:
    """Per rank, the mean ``hw.gpu.utilization`` over its window and the number of points (with a value, not NaN)."""
    metric_ids = [int(row[0]) for row in store.read("SELECT id FROM metrics WHERE name = ?", [GPU_UTILIZATION_METRIC])]
    if not metric_ids:
        return {}
    values: dict[Any, list[float]] = {}
    for rid, chunk in _window_chunks(store, since, f"c.metric_id IN ({','.join(map(str, metric_ids))})"):
        numbers = chunk.value.astype(np.float64)
        keep = ~chunk.value_missing & ~np.isnan(numbers) & (chunk.time_unix_nano >= since[rid])
        values.setdefault(rank_of[rid], []).extend(numbers[keep].tolist())
    # fsum: exact, whatever the order the chunks came in.
    return {rank: (math.fsum(found) / len(found), len(found)) for rank, found in values.items() if found}


def _window_chunks(store: PointStore, since: dict[int, int], condition: str) -> Iterator[tuple[int, SeriesChunk]]:
    """``(resource id, chunk)`` of each chunk of the resources in ``since`` that meets ``condition`` and reaches its window."""
    if not since:
        return
    window = ",".join(f"({int(rid)},{int(t)})" for rid, t in since.items())
    sql = (
        f"WITH w(rid, since) AS (VALUES {window}) SELECT {CHUNK_COLUMNS} FROM chunks c JOIN w ON c.resource_id = w.rid"
        f" WHERE c.max_time >= w.since AND {condition}"
    )
    rows = [ChunkRow(*row) for row in store.read(sql)]
    for start in range(0, len(rows), 64):  # decoded a few at a time: bounded memory
        for row, chunk in decode_rows(store, rows[start : start + 64]):
            yield row.resource_id, chunk


def _slowest(ranks: list[dict[str, Any]]) -> dict[str, Any] | None:
    stepping = [r for r in ranks if r["step_rate_per_s"] is not None]
    if len(stepping) < 2:
        return None
    median = statistics.median(r["step_rate_per_s"] for r in stepping)
    slow = min(stepping, key=lambda r: (r["step_rate_per_s"], -(r["steps_behind"] or 0)))
    return {
        "rank": slow["rank"],
        "step_rate_per_s": slow["step_rate_per_s"],
        "median_step_rate_per_s": median,
        "below_median": (median - slow["step_rate_per_s"]) / median if median > 0 else 0.0,
        "steps_behind": slow["steps_behind"],
    }
