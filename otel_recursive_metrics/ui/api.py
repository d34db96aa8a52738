"""The web view's JSON: what each ``/api/...`` endpoint answers, built from a read-only store.

This module holds the runs, metrics and ranks endpoints and what every endpoint shares (the
parameter checks, the snapshot ids, the JSON encoding); the others have a module each. Kept
apart from the HTTP layer (:mod:`.app`) so it reads like the contract it is, and can be called
without a server. Every function takes an open :class:`PointStore` and returns plain
JSON-ready values; :func:`to_json_bytes` encodes them (non-finite floats become ``null``: JSON has
no infinity, and a chart draws a gap either way).

``GET /api/runs``
    ``{"last_id", "runs": [run, ...]}``: :meth:`PointStore.runs` (``run``, ``start_time_unix_nano``,
    ``end_time_unix_nano``, ``ranks``, ``restarts``, ``points``, ``metrics``, and where the store
    records them ``name``, ``status``, ``params``, ``tags``, ``notes``, ``duration_s``) plus
    ``last``: ``{metric: {"value", "step", "time_unix_nano"}}``, each metric's latest point.
``GET /api/metrics?run=R[&run=...]``
    ``{"last_id", "runs": {R: [metric, ...]}, "start_time_unix_nano": {R: t}}``: cheap index probes,
    no scan. ``last_id`` (here and in ``/api/runs``) is a snapshot a page can read its series up to.
``GET /api/series?run=R&metric=M[...]``
    The points of charts, up to a snapshot and then only what came after it, with units, kinds
    and a histogram's distribution: see :mod:`.series_api`.
``GET /api/params``, ``GET /api/summary``
    Across runs: the parameters that differ, one metric summed up per run: see :mod:`.across_runs`.
``GET /api/csv``
    A chart's every point as CSV: see :mod:`.csv_download`.
``GET /api/ranks?run=R[&window_s=S]``
    The skew across the run's ranks, :meth:`PointStore.rank_skew` (per rank the last step, steps
    behind the leader, step rate and GPU utilisation over its last ``window_s`` seconds, default
    60, and the slowest rank); ``{"ranks": [], "slowest": null}`` for a run with no points.

Bad parameters raise :class:`RequestError`, whose message names the parameter, the value and
what is accepted (the HTTP layer answers 400 with it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..store import PointStore
from ..store.ranks import DEFAULT_WINDOW_S
from ..store.series import LastValue, RunCatalog, last_values, max_point_id

__all__ = [
    "DEFAULT_MAX_POINTS",
    "MAX_POINTS_LIMIT",
    "MAX_SERIES_PER_REQUEST",
    "MIN_POINTS",
    "RequestError",
    "finite",
    "int_param",
    "metrics_payload",
    "ranks_payload",
    "run_param",
    "runs_payload",
    "snapshot",
    "to_json_bytes",
]

DEFAULT_MAX_POINTS = 2000
DEFAULT_WINDOW_S_INT = int(DEFAULT_WINDOW_S)
MAX_POINTS_LIMIT = 50_000
MIN_POINTS = 10
#: Runs x metrics one request may ask for.
MAX_SERIES_PER_REQUEST = 400


class RequestError(ValueError):
    """A query parameter the API cannot use; the message says which and what would work."""


def run_param(text: str) -> str | None:
    """A run id from a URL: the empty string stands for points without one (listed as ``(none)``)."""
    return text or None


def int_param(params: Mapping[str, Sequence[str]], name: str, default: int | None, low: int, high: int) -> int | None:
    """The last ``name`` of the query as an integer in ``[low, high]``; ``default`` when absent."""
    values = params.get(name) or []
    if not values:
        return default
    text = values[-1]
    try:
        number = int(text)
    except ValueError:
        raise RequestError(f"{name}={text!r}: not an integer (expected {low} to {high})") from None
    if not low <= number <= high:
        raise RequestError(f"{name}={number}: out of range (expected {low} to {high})")
    return number


def finite(value: Any) -> Any:
    """``value``, or None where it is a NaN or an infinity (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, containers walked."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_clean(v) for v in value]
    return value


def to_json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities become ``null``."""
    try:
        # Nearly every answer has no NaN or infinity (a chart's values are made finite as they
        # are put in): encoded as it is, without walking a few hundred thousand values first.
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        text = json.dumps(_clean(payload), separators=(",", ":"), allow_nan=False)
    return text.encode()


def runs_payload(store: PointStore, held: dict[tuple[int, ...], LastValue] | None = None) -> dict[str, Any]:
    """What ``GET /api/runs`` answers (see the module docstring); ``held``: the chunks' latest
    points remembered from one request to the next (see :func:`~otel_recursive_metrics.store.series.last_values`)."""
    last_id = max_point_id(store)
    runs = store.runs()
    latest = last_values(store, RunCatalog(store), held)
    for run in runs:
        key = run.get("run")
        per_metric = latest.get(None if key is None else str(key), {})
        run["last"] = {
            name: {"value": finite(last.value), "step": last.step, "time_unix_nano": last.time_unix_nano}
            for name, last in sorted(per_metric.items())
        }
    return {"last_id": last_id, "runs": runs}


def metrics_payload(store: PointStore, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What ``GET /api/metrics`` answers: each run's metric names and first point's time."""
    last_id = max_point_id(store)
    catalog = RunCatalog(store)
    names: dict[str, list[str]] = {}
    starts: dict[str, int | None] = {}
    for text in params.get("run") or []:
        run = run_param(text)
        names[text] = catalog.metric_names(run)
        starts[text] = catalog.start_time_unix_nano(run)
    return {"last_id": last_id, "runs": names, "start_time_unix_nano": starts}


def ranks_payload(store: PointStore, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What ``GET /api/ranks`` answers: the skew across one run's ranks (see the module docstring)."""
    runs = params.get("run") or []
    if len(runs) != 1:
        raise RequestError(f"run: give exactly one run (got {len(runs)})")
    window_s = int_param(params, "window_s", DEFAULT_WINDOW_S_INT, 1, 86_400)
    run = run_param(runs[0])
    if run is None:
        return {"run": None, "ranks": [], "slowest": None}
    try:
        skew = store.rank_skew(run, window_s=float(window_s or DEFAULT_WINDOW_S_INT))
    except KeyError:
        return {"run": run, "ranks": [], "slowest": None}
    return {key: _finite_tree(value) for key, value in skew.items()}


def _finite_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_tree(v) for v in value]
    return finite(value)


def snapshot(store: PointStore, params: Mapping[str, Sequence[str]]) -> tuple[int | None, int]:
    """A request's ``after_id`` (None for a first read) and ``until_id`` (at most the newest point)."""
    newest = max_point_id(store)
    after_id = int_param(params, "after_id", None, 0, 2**63 - 1)
    until_id = int_param(params, "until_id", newest, 0, 2**63 - 1)
    assert until_id is not None
    return after_id, min(until_id, newest)
