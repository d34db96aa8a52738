"""Points and runs as pandas DataFrames (the ``pandas`` extra), for analysis outside the tool.

    >>> from otel_recursive_metrics import PointStore
    >>> store = PointStore("otel-metrics/metrics.db", readonly=True)
    >>> losses = store.to_dataframe("train.loss", run=["lr-0.1", "lr-0.5"])
    >>> losses.pivot_table(index="step", columns="run", values="value").tail()
    >>> store.runs_dataframe()[["run", "status", "duration_s", "params.lr"]]

Points come one row each, oldest first, with the columns ``run``, ``rank``, ``metric``, ``step``,
``epoch``, ``time`` (UTC timestamps), ``time_unix_nano``, ``value`` and ``attributes`` (canonical
JSON text), built from the chunks' NumPy columns (see :func:`points_dataframe`). Runs come one
row each with the summary's fields; each parameter is a column ``params.<key>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..model.resource import RANK_KEY, RUN_ID_KEY
from .chunk_index import SeriesKey
from .ordered_reads import ordered_points
from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["points_dataframe", "runs_dataframe"]

_MISSING = "pandas is not installed; install the pandas extra: pip install -e '.[pandas]' in your clone of otel-recursive-metrics"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return pandas


def points_dataframe(store: PointStore, metric: str | Sequence[str] | None = None, **filters: Any) -> Any:
    """The points matching ``metric`` and ``filters`` (those of :class:`PointQuery`) as a DataFrame.

    The columns come from the chunks' NumPy columns in the query's order
    (:func:`~.ordered_reads.ordered_points`) without a Python object per point: the steps and
    epochs with their missing masks become nullable integer arrays as they are, and the run,
    rank, metric name and attribute text are looked up once per series and spread over its points
    with pandas' ``take``.
    """
    pd = _pandas()
    points = ordered_points(store, PointQuery(metric, **filters), texts=False)
    run, rank, name, attributes = _series_labels(store, points.series)
    codes = points.codes

    def spread(values: list[Any], dtype: str) -> Any:
        return pd.array(values, dtype=dtype).take(codes)

    times = points.time_unix_nano
    return pd.DataFrame(
        {
            "run": spread(run, "string"),
            "rank": spread(rank, "Int64"),
            "metric": spread(name, "string"),
            "step": pd.arrays.IntegerArray(points.step, points.step_missing),
            "epoch": pd.arrays.IntegerArray(points.epoch, points.epoch_missing),
            "time": pd.to_datetime(times, unit="ns", utc=True),
            "time_unix_nano": pd.array(times, dtype="int64"),
            "value": points.value,
            "attributes": spread(attributes, "string"),
        },
        copy=False,  # every array is new: no copy into blocks
    )


def _series_labels(store: PointStore, series: Sequence[SeriesKey]) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """Per series: run id, rank, metric name and attribute text (each small table read once)."""
    metric_names = dict(store.read("SELECT id, name FROM metrics"))
    resources = {rid: json.loads(text) for rid, text in store.read("SELECT id, attributes FROM resources")}
    attribute_ids = sorted({key.attributes_id for key in series})
    texts: dict[int, str] = {}
    for lo in range(0, len(attribute_ids), 900):
        part = attribute_ids[lo : lo + 900]
        texts.update(store.read(f"SELECT id, attributes FROM attribute_sets WHERE id IN ({','.join('?' * len(part))})", part))
    run, rank, name, attributes = [], [], [], []
    for key in series:
        resource = resources[key.resource_id]
        run.append(resource.get(RUN_ID_KEY))
        rank.append(resource.get(RANK_KEY))
        name.append(metric_names[key.metric_id])
        attributes.append(texts[key.attributes_id])
    return run, rank, name, attributes


def runs_dataframe(store: PointStore, last_of: Sequence[str] = ()) -> Any:
    """One row per run (see :meth:`PointStore.runs`); parameters as ``params.<key>`` columns."""
    pd = _pandas()
    rows = []
    for run in store.runs(last_of):
        row: dict[str, Any] = {k: v for k, v in run.items() if k not in ("params", "last")}
        row["status"] = str(run["status"])  # its text: a DataFrame holds data, not the enum
        row["ranks"] = json.dumps(run["ranks"])
        row["metrics"] = json.dumps(run["metrics"])
        row["restarts"] = json.dumps(run["restarts"])
        row["tags"] = json.dumps(run["tags"])
        row.update({f"params.{k}": v for k, v in run["params"].items()})
        row.update({f"last.{k}": v for k, v in run["last"].items()})
        rows.append(row)
    return pd.DataFrame(rows)
