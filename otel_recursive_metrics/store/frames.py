"""Points and runs as pandas DataFrames (the ``pandas`` extra), for analysis outside the tool.

    >>> from otel_recursive_metrics import PointStore
    >>> store = PointStore("otel-metrics/metrics.db", readonly=True)
    >>> losses = store.to_dataframe("train.loss", run=["lr-0.1", "lr-0.5"])
    >>> losses.pivot_table(index="step", columns="run", values="value").tail()
    >>> store.runs_dataframe()[["run", "status", "duration_s", "params.lr"]]

Points come one row each, oldest first, with the columns ``run``, ``rank``, ``metric``, ``step``,
``epoch``, ``time`` (UTC timestamps), ``time_unix_nano``, ``value`` and ``attributes`` (canonical
JSON text). Columns are built from five numbers a point (see :func:`points_dataframe`). Runs
come one row each with the summary's fields; each
parameter is a column ``params.<key>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..model.resource import RANK_KEY, RUN_ID_KEY
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


#: NULL steps and epochs come out of SQLite as this, then become pandas' missing value.
_NULL_INT = -(2**63)


def points_dataframe(store: PointStore, metric: str | Sequence[str] | None = None, **filters: Any) -> Any:
    """The points matching ``metric`` and ``filters`` (those of :class:`PointQuery`) as a DataFrame.

    SQLite returns five numbers a row: one key packing the metric, resource and attribute-set
    ids (and whether the value is NULL), the step, the epoch, the time and the value. NumPy takes
    the rows as one structured array; the run, rank, metric name and attribute text are looked up
    once per distinct key and spread over the rows. Without ``limit`` or ``last`` the rows are
    read in the order SQLite finds them and put in time order (then step) by NumPy, which is
    several times cheaper than SQLite's sorter at a million rows.
    """
    import numpy as np

    pd = _pandas()
    resource_bits, attributes_bits = widths = _key_widths(store)
    columns = (
        f"SELECT (((p.metric_id << {resource_bits + attributes_bits}) | (p.resource_id << {attributes_bits}) | p.attributes_id) << 1)"
        f" | (p.value IS NULL), ifnull(p.step, {_NULL_INT}), ifnull(p.epoch, {_NULL_INT}), p.time_unix_nano, ifnull(p.value, 0.0)"
        " FROM points p"
    )
    query = PointQuery(metric, **filters)
    sql, params = query.sql(columns)
    if query.limit is None and query.last is None:
        sql = sql[: sql.rindex(" ORDER BY ")]  # NumPy sorts below
    dtype = [("key", "i8"), ("step", "i8"), ("epoch", "i8"), ("time", "i8"), ("value", "f8")]
    chunks = [np.array(chunk, dtype=dtype) for chunk in store.read_chunks(sql, params, size=65536)]
    table = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
    if query.limit is None and query.last is None:
        table = table[np.lexsort((table["step"], table["time"]))]  # NULL steps (the sentinel) first, as SQLite orders
    table["value"][(table["key"] & 1) == 1] = np.nan  # NaN, or a histogram's
    distinct, codes = np.unique(table["key"] >> 1, return_inverse=True)
    run, rank, name, attributes = _series_labels(store, distinct, widths)

    def labels(values: list[Any], dtype: str) -> Any:
        return pd.array(np.asarray(values, dtype=object)[codes] if len(table) else [], dtype=dtype)

    def nullable(column: str) -> Any:
        array = np.ascontiguousarray(table[column])
        return pd.arrays.IntegerArray(array, array == _NULL_INT)

    times = np.ascontiguousarray(table["time"])
    return pd.DataFrame(
        {
            "run": labels(run, "string"),
            "rank": labels(rank, "Int64"),
            "metric": labels(name, "string"),
            "step": nullable("step"),
            "epoch": nullable("epoch"),
            "time": pd.to_datetime(times, unit="ns", utc=True),
            "time_unix_nano": pd.array(times, dtype="int64"),
            "value": np.ascontiguousarray(table["value"]),
            "attributes": labels(attributes, "string"),
        }
    )


def _key_widths(store: PointStore) -> tuple[int, int]:
    """Bits for the resource and attribute-set ids in a packed key (62 bits in all, and the NULL bit)."""
    ((metrics, resources, attribute_sets),) = store.read(
        "SELECT (SELECT ifnull(max(id), 0) FROM metrics), (SELECT ifnull(max(id), 0) FROM resources),"
        " (SELECT ifnull(max(id), 0) FROM attribute_sets)"
    )
    resource_bits, attributes_bits = max(1, int(resources).bit_length()), max(1, int(attribute_sets).bit_length())
    if int(metrics).bit_length() + resource_bits + attributes_bits > 62:  # one bit more: value IS NULL
        raise ValueError("store ids too large to pack in one key")  # billions of attribute sets
    return resource_bits, attributes_bits


def _series_labels(store: PointStore, keys: Any, widths: tuple[int, int]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Per packed key: run id, rank, metric name and attribute text."""
    resource_bits, attributes_bits = widths
    metric_names = dict(store.read("SELECT id, name FROM metrics"))
    resources = {rid: json.loads(text) for rid, text in store.read("SELECT id, attributes FROM resources")}
    attribute_ids = sorted({int(k) & ((1 << attributes_bits) - 1) for k in keys})
    texts: dict[int, str] = {}
    for lo in range(0, len(attribute_ids), 900):
        part = attribute_ids[lo : lo + 900]
        texts.update(store.read(f"SELECT id, attributes FROM attribute_sets WHERE id IN ({','.join('?' * len(part))})", part))
    run, rank, name, attributes = [], [], [], []
    for packed in (int(k) for k in keys):
        resource = resources[(packed >> attributes_bits) & ((1 << resource_bits) - 1)]
        run.append(resource.get(RUN_ID_KEY))
        rank.append(resource.get(RANK_KEY))
        name.append(metric_names[packed >> (resource_bits + attributes_bits)])
        attributes.append(texts[packed & ((1 << attributes_bits) - 1)])
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
