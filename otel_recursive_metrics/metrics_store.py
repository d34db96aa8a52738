"""The seed system's ``MetricsStore``, backed by the embedded SQLite store.

For code written against the seed (``recursive_training.metrics.metrics_store``): only the import
path changes.

    >>> from otel_recursive_metrics.metrics_store import get_metrics_store
    >>> store = get_metrics_store({"metrics_path": "./otel-metrics"})
    >>> metric_id = store.store_metric({"metric_type": "training_loss", "model": "alpha_v1",
    ...                                 "epoch": 5, "value": 0.075, "tags": ["experiment_x"]})
    >>> store.get_metric(metric_id)["value"]
    0.075

``store_metric`` writes **synchronously and directly** into the
:class:`~otel_recursive_metrics.store.point_store.PointStore` file, one committed (durable) transaction per
call, as the seed's store wrote one file per call: when it returns the record is on disk and
visible to the CLI. That costs a disk sync per call, so from a training loop use
:func:`~otel_recursive_metrics.async_metrics_collector.AsyncMetricsCollector.submit_metric`
(or :class:`~otel_recursive_metrics.training.metrics.TrainingMetrics`), which go through the
non-blocking worker into the same store.

The record format (shared with ``submit_metric``, see :func:`prepare_record`):

- ``metric_name`` (or, as in the seed, ``metric_type`` when ``metric_name`` is absent): the
  metric's name, a non-empty string;
- ``value``: a number (``int``, ``float``, a NumPy scalar, a one-element tensor);
- optional ``step`` and ``epoch`` (non-negative integers), ``unit``, ``description``;
- optional ``timestamp``: ISO 8601 text (naive means UTC), a ``datetime`` or seconds since the
  epoch; added (ISO, UTC) when missing;
- optional ``id``: added (a UUID) when missing and returned;
- ``tags``: a list of strings (the seed's form) becomes the point attribute ``tags``; a mapping
  becomes point attributes, as do ``labels`` and ``attributes``;
- every other field (``model``, ``metric_type``, ``id``, ...) is kept in the point's ``extra``
  and comes back from :meth:`MetricsStore.get_metric` and ``query_metrics``.

A record missing ``metric_name``/``metric_type`` or ``value``, or with a non-numeric value, is
refused at the call with :class:`~otel_recursive_metrics.errors.MetricValueError` naming the
field and the value. Records that share a name and timestamp are distinct points when they
differ in value, step, attributes or any other field, ``id`` included (every record gets its own
id unless given one); only a record given again whole, id and all, is stored once.

Thread safety: a ``MetricsStore`` may be shared between threads (the underlying
:class:`PointStore` serialises its calls). ``get_metrics_store`` returns a process-wide
singleton; :func:`reset_metrics_store` closes and forgets it (tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from .config import load_config
from .errors import ConfigError
from .model.attributes import AttributeLimits
from .model.batch import BatchBuilder
from .model.resource import default_resource_attributes
from .pipeline.convert import add_record
from .store import PointStore
from .training.records import iso_time, new_id, parse_timestamp, prepare_record, record_from_point

__all__ = ["MetricsStore", "get_metrics_store", "new_id", "prepare_record", "record_from_point", "reset_metrics_store"]

_log = logging.getLogger(__name__)

_SCOPE = ("otel_recursive_metrics.metrics_store", "")

#: The seed's MetricsStore settings that have no meaning here; accepted and ignored.
_SEED_ONLY_KEYS = frozenset(
    (
        "use_compression",
        "compression_level",
        "enable_caching",
        "max_cache_size",
        "warning_cost_threshold",
        "critical_cost_threshold",
        "shutdown_cost_threshold",
    )
)
_PATH_KEYS = ("store_path", "metrics_path", "dir")
_LIMITS = AttributeLimits()


# -- the store ---------------------------------------------------------------------------------


class MetricsStore:
    """The seed's metrics store over one SQLite file; see the module docstring.

    ``config`` keys: ``metrics_path`` (a folder, holding ``metrics.db``, or a ``.db`` file),
    ``store_path`` or ``dir`` (as in :mod:`otel_recursive_metrics.config`); default: the
    pipeline's store (``OTEL_RECURSIVE_METRICS_STORE`` or ``$OTEL_RECURSIVE_METRICS_DIR/metrics.db``).
    The seed's caching, compression and cost-threshold keys are accepted; the thresholds drive
    :meth:`track_cost`, the rest is ignored. Unknown keys raise one ConfigError listing them.
    """

    _instance: ClassVar[MetricsStore | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def get_instance(cls, config: Mapping[str, Any] | None = None) -> MetricsStore:
        """The process-wide store, created with ``config`` on first use."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(config)
            return cls._instance

    def __init__(self, config: Mapping[str, Any] | None = None, *, path: str | Path | None = None) -> None:
        self.config = dict(config or {})
        self.path = Path(path) if path is not None else _store_path(self.config)
        self.cost_thresholds = {
            "warning_threshold": float(self.config.get("warning_cost_threshold", 10.0)),
            "critical_threshold": float(self.config.get("critical_cost_threshold", 50.0)),
            "shutdown_threshold": float(self.config.get("shutdown_cost_threshold", 100.0)),
        }
        self.store = PointStore(self.path)
        self._resource: dict[str, Any] | None = None

    @property
    def resource_attributes(self) -> dict[str, Any]:
        if self._resource is None:
            self._resource = default_resource_attributes()
        return self._resource

    # -- writing -------------------------------------------------------------------------------

    def store_metric(self, metric_data: dict[str, Any]) -> str:
        """Validate and store one record now (committed when this returns); returns its id."""
        record, metric_id = prepare_record(metric_data)
        self._write([record])
        return metric_id

    def store_metrics(self, records: Iterable[dict[str, Any]]) -> list[str]:
        """Store several records in one transaction; all are validated before any is written."""
        prepared = [prepare_record(r) for r in records]
        self._write([r for r, _ in prepared])
        return [i for _, i in prepared]

    def _write(self, records: list[dict[str, Any]]) -> None:
        builder = BatchBuilder()
        for record in records:
            add_record(builder, record, self.resource_attributes, _SCOPE, _LIMITS)
        self.store.write_batch(builder.build())

    def track_cost(self, cost: float, api_calls: int = 0, token_usage: int = 0) -> dict[str, Any]:
        """Record a cost increment (as the seed did) and return the totals and a threshold status."""
        for name, amount in (("cost.usd", cost), ("cost.api_calls", api_calls), ("cost.token_usage", token_usage)):
            self.store_metric({"metric_name": name, "value": amount, "metric_type": "cost_tracking", "tags": ["cost_tracking"]})
        totals = self._cost_totals()
        total_cost = totals["total_cost"]
        status = "ok"
        for level in ("shutdown", "critical", "warning"):
            if total_cost >= self.cost_thresholds[f"{level}_threshold"]:
                status = level
                _log.warning("cost threshold %s reached: $%.2f >= $%.2f", level, total_cost, self.cost_thresholds[f"{level}_threshold"])
                break
        return {**totals, "status": status}

    def _cost_totals(self) -> dict[str, Any]:
        sums = {name: 0.0 for name in ("cost.usd", "cost.api_calls", "cost.token_usage")}
        for point in self.store.iter_query(list(sums)):
            if isinstance(point.value, (int, float)):
                sums[point.metric] += point.value
        return {"total_cost": sums["cost.usd"], "api_calls": int(sums["cost.api_calls"]), "token_usage": int(sums["cost.token_usage"])}

    # -- reading -------------------------------------------------------------------------------

    def get_metric(self, metric_id: str) -> dict[str, Any] | None:
        """The record stored with ``id`` ``metric_id``, or None."""
        found = self.store.query_extra("id", metric_id, limit=1)
        return record_from_point(found[0]) if found else None

    def query_metrics(
        self,
        metric_types: list[str] | None = None,
        models: list[str] | None = None,
        tags: list[str] | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        limit: int | None = None,
        *,
        metric_names: list[str] | None = None,
        run: str | None = None,
        rank: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records matching every filter given, newest first (the seed's order).

        ``metric_types`` matches a record's ``metric_type`` or its name, ``models`` its
        ``model``, ``tags`` any of its tags; ``start_date``/``end_date`` are ISO dates or times
        (inclusive; a bare end date includes that whole day). ``metric_names``, ``run`` and
        ``rank`` filter in SQL.
        """
        start_ns = parse_timestamp(start_date) if start_date else None
        end_ns = None
        if end_date:
            end_ns = parse_timestamp(end_date)
            if len(end_date.strip()) == 10:  # a bare date: through the end of that day
                end_ns += 86_400 * 10**9 - 1
        points = self.store.iter_query(metric_names, run=run, rank=rank, start_time_unix_nano=start_ns, end_time_unix_nano=end_ns)
        types = set(metric_types or ())
        model_set = set(models or ())
        tag_set = set(tags or ())
        out = []
        for point in points:
            record = record_from_point(point)
            if types and record.get("metric_type") not in types and record["metric_name"] not in types:
                continue
            if model_set and record.get("model") not in model_set:
                continue
            if tag_set and not tag_set.intersection(record.get("tags") or ()):
                continue
            out.append(record)
        out.sort(key=lambda r: r["time_unix_nano"], reverse=True)
        return out if limit is None or limit <= 0 else out[:limit]

    def get_recent_metrics(self, metric_types: list[str] | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The ``limit`` newest records, optionally of some types."""
        return self.query_metrics(metric_types=metric_types, limit=limit)

    def get_metrics_by_filter(self, filter_dict: Mapping[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        """Records whose fields equal every item of ``filter_dict``, newest first."""
        out = []
        for record in self.query_metrics():
            if all(key in record and record[key] == value for key, value in filter_dict.items()):
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def get_metrics_summary(self) -> dict[str, Any]:
        """Totals as the seed reported them: counts by type, time range, models, tags, costs."""
        by_type: dict[str, int] = {}
        models: set[str] = set()
        tags: set[str] = set()
        first = last = None
        total = 0
        for point in self.store.iter_query():
            record = record_from_point(point)
            total += 1
            kind = str(record.get("metric_type") or record["metric_name"])
            by_type[kind] = by_type.get(kind, 0) + 1
            if record.get("model"):
                models.add(str(record["model"]))
            tags.update(str(t) for t in record.get("tags") or ())
            first = point.time_unix_nano if first is None else min(first, point.time_unix_nano)
            last = point.time_unix_nano if last is None else max(last, point.time_unix_nano)
        return {
            "total_metrics": total,
            "metrics_by_type": by_type,
            "time_range": {"start": None if first is None else iso_time(first), "end": None if last is None else iso_time(last)},
            "models": sorted(models),
            "tags": sorted(tags),
            "cost_tracking": self._cost_totals(),
        }

    def export_to_dataframe(self, query: Mapping[str, Any] | None = None) -> Any:
        """The matching records as a pandas DataFrame, or None when pandas is not installed."""
        try:
            import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            _log.warning("pandas is not installed; export_to_dataframe returns None")
            return None
        return pd.DataFrame(self.query_metrics(**dict(query or {})))

    def runs(self) -> list[dict[str, Any]]:
        """The training runs in the store; see :meth:`PointStore.runs`."""
        return self.store.runs()

    def close(self) -> None:
        """Close the SQLite connection (everything stored is already committed)."""
        self.store.close()


def _store_path(config: Mapping[str, Any]) -> Path:
    unknown = [k for k in config if k not in _SEED_ONLY_KEYS and k not in _PATH_KEYS]
    if unknown:
        raise ConfigError(
            [
                f"{k}={config[k]!r} (MetricsStore config): unknown key; known: {', '.join(sorted(_PATH_KEYS + tuple(_SEED_ONLY_KEYS)))}"
                for k in unknown
            ]
        )
    if config.get("store_path"):
        return Path(str(config["store_path"])).expanduser()
    if config.get("metrics_path"):
        path = Path(str(config["metrics_path"])).expanduser()
        return path if path.suffix in (".db", ".sqlite", ".sqlite3") else path / "metrics.db"
    settings = load_config(dir=config["dir"]) if config.get("dir") else load_config()
    return settings.resolved_store_path


def get_metrics_store(config: Mapping[str, Any] | None = None) -> MetricsStore:
    """The process-wide :class:`MetricsStore` (created with ``config`` on first use)."""
    return MetricsStore.get_instance(config)


def reset_metrics_store() -> None:
    """Close and forget the process-wide store (tests)."""
    with MetricsStore._instance_lock:
        instance, MetricsStore._instance = MetricsStore._instance, None
    if instance is not None:
        instance.close()
