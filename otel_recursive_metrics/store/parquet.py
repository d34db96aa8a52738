"""Points out of the store as Apache Parquet (the ``parquet`` extra): typed columns for ad-hoc SQL.

``otel-recursive-metrics export --format parquet`` writes through :func:`write_parquet`. The file
holds one row per point, oldest first (time, then step: :class:`~.points.PointQuery`'s order),
in row groups of :data:`ROW_GROUP_ROWS`, compressed with zstd. The points are read in windows of the
query's order (:mod:`.ordered_reads`) and their NumPy columns turned into Arrow arrays
(:class:`ColumnReader`), so memory holds a window and a row group whatever the store's size.
DuckDB, Polars, pandas, Spark and ClickHouse read it as is::

    column                 type                       what
    metric                 string                     the metric's name
    kind                   string                     gauge, sum, histogram or exponential_histogram
    unit                   string                     as given to the instrument ("" if none)
    run                    string, nullable           resource attribute training.run.id
    rank                   int64, nullable            resource attribute training.rank
    step                   int64, nullable            from TrainingMetrics.log (null from the SDK)
    epoch                  int64, nullable
    time                   timestamp[ns, UTC]         time_unix_nano as a timestamp
    time_unix_nano         int64                      the point's time, exactly as stored
    start_time_unix_nano   int64                      start of a sum's or histogram's interval (0 for gauges)
    value                  float64, nullable          a gauge's or sum's value; null for histograms and NaN
    value_int              int64, nullable            the same value, exactly, when it was stored as an integer
    histogram_count        int64, nullable            histograms only: the count,
    histogram_sum          float64, nullable          the sum,
    histogram_min          float64, nullable          the smallest and
    histogram_max          float64, nullable          the largest value recorded (null if not recorded)
    histogram_bounds       list<float64>, nullable    explicit-bucket histograms: the bucket bounds,
    histogram_counts       list<int64>, nullable      and the count of each bucket (one more than bounds)
    histogram              string (JSON), nullable    the whole histogram field as stored (exponential
                                                      histograms: scale, zero_count, positive/negative
                                                      as [offset, counts]; see model/batch.py)
    attributes             string (JSON)              the point's attributes, canonical JSON (sorted keys)
    resource               string (JSON)              the resource's attributes, canonical JSON
    scope                  string                     instrumentation scope (meter) name
    temporality            int8                       OTLP's: 1 delta, 2 cumulative, 0 for gauges
    monotonic              bool                       a monotonic sum (a counter)
    extra                  string (JSON), nullable    a submitted record's other fields (its id, ...)

Full precision: floats are the stored doubles, integers the stored 64-bit integers. An integer
value is in ``value`` (as the nearest double, for arithmetic) and exactly in ``value_int``. The
attributes, resource and extra fields are JSON text rather than maps because their values mix
types (a map column holds one value type); DuckDB's ``json_extract_string(attributes,
'$.split')`` and Polars' ``str.json_path_match`` read them. The file's key-value metadata names
the writer (``otel_recursive_metrics.export_format`` = :data:`EXPORT_FORMAT_VERSION`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..model.resource import RANK_KEY, RUN_ID_KEY
from .chunk_index import SeriesKey
from .export import newest_row_id
from .ordered_reads import OrderedPoints, SeriesCodes, ordered_windows
from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "MISSING_PYARROW",
    "ROW_GROUP_ROWS",
    "ColumnReader",
    "parquet_schema",
    "require_pyarrow",
    "write_parquet",
]

#: Rows a row group holds: about 64k points, a few MB of memory.
ROW_GROUP_ROWS = 65536

#: Bumped when a column changes meaning or type (added columns do not bump it).
EXPORT_FORMAT_VERSION = "1"

MISSING_PYARROW = "pyarrow is not installed; install the parquet extra in your clone of otel-recursive-metrics: pip install -e '.[parquet]'"


def require_pyarrow() -> Any:
    """The ``pyarrow`` module; ImportError with :data:`MISSING_PYARROW` (how to install it) if missing."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError as exc:
        raise ImportError(MISSING_PYARROW) from exc


def parquet_schema() -> Any:
    """The Arrow schema of an exported file (see the module docstring for each column)."""
    pa = require_pyarrow()
    return pa.schema(
        [
            pa.field("metric", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("unit", pa.string(), nullable=False),
            pa.field("run", pa.string()),
            pa.field("rank", pa.int64()),
            pa.field("step", pa.int64()),
            pa.field("epoch", pa.int64()),
            pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("time_unix_nano", pa.int64(), nullable=False),
            pa.field("start_time_unix_nano", pa.int64(), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("value_int", pa.int64()),
            pa.field("histogram_count", pa.int64()),
            pa.field("histogram_sum", pa.float64()),
            pa.field("histogram_min", pa.float64()),
            pa.field("histogram_max", pa.float64()),
            pa.field("histogram_bounds", pa.list_(pa.float64())),
            pa.field("histogram_counts", pa.list_(pa.int64())),
            pa.field("histogram", pa.string()),
            pa.field("attributes", pa.string(), nullable=False),
            pa.field("resource", pa.string(), nullable=False),
            pa.field("scope", pa.string(), nullable=False),
            pa.field("temporality", pa.int8(), nullable=False),
            pa.field("monotonic", pa.bool_(), nullable=False),
            pa.field("extra", pa.string()),
        ],
        metadata={"otel_recursive_metrics.export_format": EXPORT_FORMAT_VERSION, "otel_recursive_metrics.version": __version__},
    )


def _rank(value: Any) -> int | None:
    """A resource's rank as an integer (``"3"`` from OTEL_RESOURCE_ATTRIBUTES too); None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class _Labels:
    """What repeats for every point of one (metric, resource, attribute set, scope) key."""

    metric: str
    kind: str
    unit: str
    run: str | None
    rank: int | None
    attributes: str
    resource: str
    scope: str
    temporality: int
    monotonic: bool


class ColumnReader:
    """Reads the points of a :class:`PointQuery` as Arrow record batches of up to ``rows`` points.

    The points come in windows of the query's order (:func:`~.ordered_reads.ordered_windows`,
    NumPy columns with memory bounded whatever the store's size); each column becomes an Arrow
    array as it is (a missing mask where a point has none). What a series stands for (names,
    JSON texts, run and rank) is read from the small tables once per series and spread over its
    points with Arrow's ``take``. The read is a snapshot: the points up to the newest one when
    it started.
    """

    def __init__(self, store: PointStore, query: PointQuery, rows: int = ROW_GROUP_ROWS) -> None:
        self.pa = require_pyarrow()
        self.store, self.query, self.rows = store, query, max(1, int(rows))
        self.schema = parquet_schema()
        self._codes = SeriesCodes()
        #: Per series code, what its points' label columns hold.
        self._labels: list[_Labels] = []

    def batches(self) -> Iterator[Any]:
        """The record batches, oldest points first."""
        newest = newest_row_id(self.store)
        limit = self.query.max_row_id
        snapshot = newest if limit is None else min(limit, newest)
        query = dataclasses.replace(self.query, max_row_id=snapshot)
        for window in ordered_windows(self.store, query, codes=self._codes):
            for lo in range(0, len(window), self.rows):
                yield self._batch(window, lo, min(len(window), lo + self.rows))

    def _batch(self, points: OrderedPoints, lo: int, hi: int) -> Any:
        pa = self.pa
        if len(self._labels) < len(self._codes.series):
            self._add_labels(self._codes.series[len(self._labels) :])
        codes = pa.array(points.codes[lo:hi])
        labels = self._labels

        def spread(field: str, kind: Any) -> Any:
            return pa.array([getattr(label, field) for label in labels], kind).take(codes)

        def ints(values: np.ndarray, missing: np.ndarray | None) -> Any:
            return pa.array(values[lo:hi], pa.int64(), mask=None if missing is None or not missing[lo:hi].any() else missing[lo:hi])

        value = points.value[lo:hi]
        time_array = pa.array(points.time_unix_nano[lo:hi], pa.int64())
        histograms = None if points.histogram is None else points.histogram[lo:hi]
        extras = None if points.extra is None else points.extra[lo:hi]
        hist = _HistogramColumns(histograms, hi - lo)
        no_int = ~points.is_int | points.value_missing
        arrays = {
            "metric": spread("metric", pa.string()),
            "kind": spread("kind", pa.string()),
            "unit": spread("unit", pa.string()),
            "run": spread("run", pa.string()),
            "rank": spread("rank", pa.int64()),
            "step": ints(points.step, points.step_missing),
            "epoch": ints(points.epoch, points.epoch_missing),
            "time": time_array.cast(pa.timestamp("ns", tz="UTC")),
            "time_unix_nano": time_array,
            "start_time_unix_nano": ints(points.start_time_unix_nano, None),
            # NaN and no value are both null, as the store before chunks kept them.
            "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
            "value_int": ints(points.int_value, no_int),
            "histogram_count": pa.array(hist.count, pa.int64()),
            "histogram_sum": pa.array(hist.total, pa.float64()),
            "histogram_min": pa.array(hist.minimum, pa.float64()),
            "histogram_max": pa.array(hist.maximum, pa.float64()),
            "histogram_bounds": pa.array(hist.bounds, pa.list_(pa.float64())),
            "histogram_counts": pa.array(hist.counts, pa.list_(pa.int64())),
            "histogram": pa.nulls(hi - lo, pa.string()) if histograms is None else pa.array(histograms, pa.string()),
            "attributes": spread("attributes", pa.string()),
            "resource": spread("resource", pa.string()),
            "scope": spread("scope", pa.string()),
            "temporality": spread("temporality", pa.int8()),
            "monotonic": spread("monotonic", pa.bool_()),
            "extra": pa.nulls(hi - lo, pa.string()) if extras is None else pa.array(extras, pa.string()),
        }
        return pa.RecordBatch.from_arrays([arrays[name] for name in self.schema.names], schema=self.schema)

    def _add_labels(self, series: list[SeriesKey]) -> None:
        """Read what new series stand for from the small tables (one statement per table and 900 ids)."""
        metrics = self._rows("SELECT id, name, kind, unit, temporality, monotonic FROM metrics", {s.metric_id for s in series})
        resources = self._rows("SELECT id, attributes FROM resources", {s.resource_id for s in series})
        attribute_sets = self._rows("SELECT id, attributes FROM attribute_sets", {s.attributes_id for s in series})
        scopes = self._rows("SELECT id, name FROM scopes", {s.scope_id for s in series})
        parsed = {rid: json.loads(text) for rid, (text,) in resources.items()}
        for key in series:
            name, kind, unit, temporality, monotonic = metrics[key.metric_id]
            resource = parsed[key.resource_id]
            run = resource.get(RUN_ID_KEY)
            self._labels.append(
                _Labels(
                    metric=name,
                    kind=kind,
                    unit=unit,
                    run=None if run is None else str(run),
                    rank=_rank(resource.get(RANK_KEY)),
                    attributes=attribute_sets[key.attributes_id][0],
                    resource=resources[key.resource_id][0],
                    scope=scopes[key.scope_id][0],
                    temporality=int(temporality),
                    monotonic=bool(monotonic),
                )
            )

    def _rows(self, sql: str, ids: set[int]) -> dict[int, tuple[Any, ...]]:
        wanted = sorted(ids)
        found: dict[int, tuple[Any, ...]] = {}
        for lo in range(0, len(wanted), 900):  # SQLite's default limit on parameters is 999
            part = wanted[lo : lo + 900]
            for row in self.store.read(f"{sql} WHERE id IN ({','.join('?' * len(part))})", part):
                found[row[0]] = tuple(row[1:])
        return found


class _HistogramColumns:
    """The typed histogram columns of some points, from the stored JSON texts (None for other points, or for all)."""

    def __init__(self, texts: list[str | None] | None, size: int) -> None:
        self.count: list[int | None] = [None] * size
        self.total: list[float | None] = [None] * size
        self.minimum: list[float | None] = [None] * size
        self.maximum: list[float | None] = [None] * size
        self.bounds: list[list[float] | None] = [None] * size
        self.counts: list[list[int] | None] = [None] * size
        for i, text in enumerate(texts or ()):
            if text is None:
                continue
            data = json.loads(text)
            self.count[i], self.total[i] = data.get("count"), data.get("sum")
            self.minimum[i], self.maximum[i] = data.get("min"), data.get("max")
            if "bounds" in data:
                self.bounds[i], self.counts[i] = data["bounds"], data["counts"]


def write_parquet(store: PointStore, query: PointQuery, out: str | IO[bytes], *, rows: int = ROW_GROUP_ROWS) -> int:
    """Write the points of ``query`` to ``out`` (a path or a binary file) as Parquet; how many points.

    Row groups of ``rows`` points (the last may hold fewer), each written as soon as it is
    complete. A query that matches nothing still writes a valid file with the schema and no rows.
    """
    reader = ColumnReader(store, query, rows)  # ImportError naming the extra first, if pyarrow is missing
    # Any: pyarrow's own annotations are partial (mypy --strict refuses its untyped calls).
    pa: Any = reader.pa
    pq: Any = importlib.import_module("pyarrow.parquet")
    written = 0
    held: list[Any] = []
    held_rows = 0
    with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
        for batch in reader.batches():
            held.append(batch)
            held_rows += batch.num_rows
            written += batch.num_rows
            if held_rows >= rows:
                table = pa.Table.from_batches(held, reader.schema)
                whole = held_rows - held_rows % rows
                writer.write_table(table.slice(0, whole), row_group_size=rows)
                held, held_rows = table.slice(whole).to_batches(), held_rows - whole
        if held_rows:
            writer.write_table(pa.Table.from_batches(held, reader.schema), row_group_size=rows)
    return written
