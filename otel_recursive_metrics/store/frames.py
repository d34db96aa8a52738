"""Points and runs as pandas DataFrames (the ``pandas`` extra), for analysis outside the tool.

    >>> from otel_recursive_metrics import PointStore
    >>> store = PointStore("otel-metrics/metrics.db", readonly=True)
    >>> losses = store.to_dataframe("train.loss", run=["lr-0.1", "lr-0.5"])
    >>> losses.pivot_table(index="step", columns="run", values="value").tail()
    >>> store.runs_dataframe()[["run", "status", "duration_s", "params.lr"]]

Points come one row each, oldest first, with the columns ``run``, ``rank``, ``metric``, ``step``,
``epoch``, ``time`` (UTC timestamps), ``time_unix_nano``, ``value`` and ``attributes`` (canonical
JSON text). Rows are built column by column straight from SQLite (no object per point), so a
million points take about a second. Runs come one row each with the summary's fields; each
parameter is a column ``params.<key>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["points_dataframe", "runs_dataframe"]

_MISSING = "pandas is not installed; install the pandas extra: pip install 'otel-recursive-metrics[pandas]'"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return pandas


def points_dataframe(store: PointStore, metric: str | Sequence[str] | None = None, **filters: Any) -> Any:
    """The points matching ``metric`` and ``filters`` (those of :class:`PointQuery`) as a DataFrame."""
    pd = _pandas()
    sql, params = PointQuery(metric, **filters).sql()
    # Only the columns a frame needs, with the run and rank taken out of the resource in SQL.
    columns = (
        "SELECT json_extract(r.attributes, '$.\"training.run.id\"'), json_extract(r.attributes, '$.\"training.rank\"'),"
        " m.name, p.step, p.epoch, p.time_unix_nano, p.value, a.attributes"
    )
    sql = columns + sql[sql.index(" FROM points p") :]
    columns_out: list[list[Any]] = [[] for _ in range(8)]
    for rows in store.read_chunks(sql, params, size=65536):
        for column, values in zip(columns_out, zip(*rows, strict=True), strict=True):
            column.extend(values)
    run, rank, name, step, epoch, time_ns, value, attributes = columns_out
    frame = pd.DataFrame(
        {
            "run": pd.array(run, dtype="string"),
            "rank": pd.array(rank, dtype="Int64"),
            "metric": pd.array(name, dtype="string"),
            "step": pd.array(step, dtype="Int64"),
            "epoch": pd.array(epoch, dtype="Int64"),
            "time": pd.to_datetime(pd.array(time_ns, dtype="int64"), unit="ns", utc=True),
            "time_unix_nano": pd.array(time_ns, dtype="int64"),
            "value": pd.array([float("nan") if v is None else v for v in value], dtype="float64"),
            "attributes": pd.array(attributes, dtype="string"),
        }
    )
    return frame


def runs_dataframe(store: PointStore, last_of: Sequence[str] = ()) -> Any:
    """One row per run (see :meth:`PointStore.runs`); parameters as ``params.<key>`` columns."""
    pd = _pandas()
    rows = []
    for run in store.runs(last_of):
        row: dict[str, Any] = {k: v for k, v in run.items() if k not in ("params", "last")}
        row["ranks"] = json.dumps(run["ranks"])
        row["metrics"] = json.dumps(run["metrics"])
        row["restarts"] = json.dumps(run["restarts"])
        row["tags"] = json.dumps(run["tags"])
        row.update({f"params.{k}": v for k, v in run["params"].items()})
        row.update({f"last.{k}": v for k, v in run["last"].items()})
        rows.append(row)
    return pd.DataFrame(rows)
