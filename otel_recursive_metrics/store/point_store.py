"""The embedded metrics store: one SQLite file that keeps the OpenTelemetry data model.

Schema (version 1)::

    resources(id, attributes, schema_url)                 -- attributes as canonical JSON
    scopes(id, name, version, attributes, schema_url)
    metrics(id, name, description, unit, kind, temporality, monotonic)
    attribute_sets(id, attributes)                        -- each distinct point attribute set once
    points(id, metric_id, resource_id, scope_id, attributes_id,
           start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra)

``kind`` is ``gauge``, ``sum``, ``histogram`` or ``exponential_histogram``; ``temporality`` is
OTLP's (1 delta, 2 cumulative); ``value`` keeps integers as integers; ``histogram`` is JSON (see
:mod:`otel_recursive_metrics.pipeline.batch`). A unique index over a point's identity (metric, resource,
scope, attribute set, start and end time, step) makes inserts idempotent: a batch delivered twice
after a crash is stored once.

Concurrency: WAL mode, one writer transaction at a time per file (``BEGIN IMMEDIATE`` with a
busy timeout), so several processes, DDP ranks for instance, can write one file. A
:class:`PointStore` object is safe to share between threads; it serialises its own calls.

    >>> store = PointStore("metrics.db")
    >>> [p.value for p in store.query(metric="train.loss", run="run-1")]
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import connect, connect_readonly
from ..pipeline.batch import (
    ATTRIBUTES,
    EPOCH,
    EXTRA,
    HISTOGRAM,
    METRIC,
    RESOURCE,
    SCOPE,
    START_TIME,
    STEP,
    TIME,
    VALUE,
    PointBatch,
    canonical_json,
)
from ..resource import RANK_KEY, RUN_ID_KEY

__all__ = ["SCHEMA_VERSION", "PointStore", "StoredPoint"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources(
    id INTEGER PRIMARY KEY,
    attributes TEXT NOT NULL,
    schema_url TEXT NOT NULL DEFAULT '',
    UNIQUE(attributes, schema_url));
CREATE TABLE IF NOT EXISTS scopes(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    attributes TEXT NOT NULL,
    schema_url TEXT NOT NULL,
    UNIQUE(name, version, attributes, schema_url));
CREATE TABLE IF NOT EXISTS metrics(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,
    temporality INTEGER NOT NULL,
    monotonic INTEGER NOT NULL,
    UNIQUE(name, description, unit, kind, temporality, monotonic));
CREATE TABLE IF NOT EXISTS attribute_sets(
    id INTEGER PRIMARY KEY,
    attributes TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS points(
    id INTEGER PRIMARY KEY,
    metric_id INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    scope_id INTEGER NOT NULL,
    attributes_id INTEGER NOT NULL,
    start_time_unix_nano INTEGER NOT NULL,
    time_unix_nano INTEGER NOT NULL,
    value,
    step INTEGER,
    epoch INTEGER,
    histogram TEXT,
    extra TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS points_identity ON points(
    metric_id, resource_id, time_unix_nano, ifnull(step, -1), attributes_id, scope_id, start_time_unix_nano);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name);
"""

_ATTR_CACHE_MAX = 200_000

_ROWS_PER_STATEMENT = 64


def _grouped(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[tuple[Any, ...]]:
    """Rows flattened into tuples of ``size`` rows' values (the last one shorter)."""
    chain = itertools.chain.from_iterable
    while group := tuple(chain(itertools.islice(rows, size))):
        yield group


_INSERT_POINT = (
    "INSERT OR IGNORE INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano,"
    " time_unix_nano, value, step, epoch, histogram, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


_ONE_ROW = "(?,?,?,?,?,?,?,?,?,?,?)"
# A point without a step (back from OTLP) is new only if no point has its identity at any step.
_INSERT_POINT_UNLESS_PRESENT = (
    "INSERT OR IGNORE INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano,"
    " time_unix_nano, value, step, epoch, histogram, extra) SELECT ?,?,?,?,?,?,?,?,?,?,? WHERE NOT EXISTS"
    " (SELECT 1 FROM points WHERE metric_id = ? AND resource_id = ? AND scope_id = ? AND attributes_id = ?"
    " AND start_time_unix_nano = ? AND time_unix_nano = ?)"
)
_INSERT_POINTS_GROUP = _INSERT_POINT.replace(f") VALUES {_ONE_ROW}", ") VALUES " + ",".join([_ONE_ROW] * _ROWS_PER_STATEMENT))


@dataclass(frozen=True)
class StoredPoint:
    """One point read back from the store."""

    metric: str
    kind: str
    unit: str
    value: float | int | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    time_unix_nano: int
    step: int | None
    epoch: int | None
    temporality: int
    monotonic: bool
    histogram: dict[str, Any] | None
    extra: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "unit": self.unit,
            "value": self.value,
            "attributes": self.attributes,
            "resource": self.resource,
            "scope": self.scope,
            "start_time_unix_nano": self.start_time_unix_nano,
            "time_unix_nano": self.time_unix_nano,
            "step": self.step,
            "epoch": self.epoch,
            "temporality": self.temporality,
            "monotonic": self.monotonic,
            "histogram": self.histogram,
            "extra": self.extra,
        }


class PointStore:
    """Reads and writes points in one SQLite file; see the module docstring for the schema."""

    def __init__(self, path: Path | str, *, durable: bool = True, readonly: bool = False, busy_timeout_s: float = 30.0) -> None:
        """Open (creating it if missing) the store at ``path``.

        ``readonly=True`` opens an existing file for reading only: nothing is created or
        changed, which is what the CLI's read commands do (they work on a read-only file system
        and never take the write lock a training run needs). ``durable=False`` commits with
        ``synchronous=NORMAL`` (safe against a process crash, not a power loss).
        """
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._attr_ids: dict[str, int] = {}
        if readonly:
            self._conn = connect_readonly(self.path, busy_timeout_s=busy_timeout_s)
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "points" not in tables:
                self._conn.close()
                raise ValueError(f"store {self.path}: not an otel-recursive-metrics store (no points table)")
            self._check_layout()
            return
        self._conn = connect(self.path, busy_timeout_s=busy_timeout_s)
        # FULL: a committed batch survives a power loss, so "stored" means durable.
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._check_layout()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._conn.execute("COMMIT")

    def _check_layout(self) -> None:
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(points)")}
        if columns and "attributes_id" not in columns:
            self._conn.close()
            raise ValueError(
                f"store {self.path}: written by an earlier development layout of otel-recursive-metrics (points without"
                " attributes_id); open it with that version, or start a new store file"
            )

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's write lock (a DDP rank's) before failing."""
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout={max(1, int(seconds * 1000))}")

    # -- writing ---------------------------------------------------------------------------

    def _intern(self, table: str, key: str, insert_sql: str, select_sql: str, params: Sequence[Any]) -> int:
        cached = self._ids.get((table, key))
        if cached is not None:
            return cached
        self._conn.execute(insert_sql, params)
        row = self._conn.execute(select_sql, params).fetchone()
        self._ids[(table, key)] = row[0]
        return int(row[0])

    def _attribute_set_ids(self, texts: set[str]) -> dict[str, int]:
        """Ids of attribute sets (canonical JSON texts), inserting new ones; cached."""
        cache = self._attr_ids
        missing = [t for t in texts if t not in cache]
        if missing:
            if len(cache) + len(missing) > _ATTR_CACHE_MAX:
                cache.clear()
                missing = list(texts)  # what was cached is gone too
            self._conn.executemany("INSERT OR IGNORE INTO attribute_sets(attributes) VALUES (?)", [(t,) for t in missing])
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT attributes, id FROM attribute_sets WHERE attributes IN ({marks})", chunk)
                cache.update(rows)
        return cache

    def write_batch(self, batch: PointBatch, *, steps_unknown: bool = False) -> int:
        """Insert a batch in one transaction; returns how many points were new.

        ``steps_unknown``: the batch came back from OTLP (a dead letter whose full-fidelity copy
        is lost), so its points have no step; a point the store already holds at the same
        metric, resource, scope, attributes and times, whatever its step, is then not added again.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                res_ids = []
                for attrs, schema_url in batch.resources:
                    text = canonical_json(attrs)
                    res_ids.append(
                        self._intern(
                            "r",
                            text + "\x00" + schema_url,
                            "INSERT OR IGNORE INTO resources(attributes, schema_url) VALUES (?,?)",
                            "SELECT id FROM resources WHERE attributes=? AND schema_url=?",
                            (text, schema_url),
                        )
                    )
                scope_ids = []
                for name, version, attrs, schema_url in batch.scopes:
                    params = (name, version or "", canonical_json(attrs), schema_url or "")
                    scope_ids.append(
                        self._intern(
                            "s",
                            "\x00".join(params),
                            "INSERT OR IGNORE INTO scopes(name, version, attributes, schema_url) VALUES (?,?,?,?)",
                            "SELECT id FROM scopes WHERE name=? AND version=? AND attributes=? AND schema_url=?",
                            params,
                        )
                    )
                metric_ids = []
                for name, description, unit, kind, temporality, monotonic in batch.metrics:
                    mparams = (name, description or "", unit or "", kind, int(temporality), int(bool(monotonic)))
                    metric_ids.append(
                        self._intern(
                            "m",
                            json.dumps(mparams),
                            "INSERT OR IGNORE INTO metrics(name, description, unit, kind, temporality, monotonic) VALUES (?,?,?,?,?,?)",
                            "SELECT id FROM metrics WHERE name=? AND description=? AND unit=? AND kind=? AND temporality=? AND monotonic=?",
                            mparams,
                        )
                    )
                ids_by_text = self._attribute_set_ids(set(batch.attributes))
                attr_ids = [ids_by_text[text] for text in batch.attributes]
                dumps = json.dumps
                # A generator, not a list: executemany builds each row between SQLite steps, which
                # run without the GIL, so the training thread never waits behind a long burst.
                rows = (
                    (
                        metric_ids[p[METRIC]],
                        res_ids[p[RESOURCE]],
                        scope_ids[p[SCOPE]],
                        attr_ids[p[ATTRIBUTES]],
                        p[START_TIME] or 0,
                        p[TIME],
                        p[VALUE],
                        p[STEP],
                        p[EPOCH],
                        None if p[HISTOGRAM] is None else dumps(p[HISTOGRAM]),
                        None if p[EXTRA] is None else dumps(p[EXTRA]),
                    )
                    for p in batch.points
                )
                before = conn.total_changes
                if steps_unknown:
                    conn.executemany(_INSERT_POINT_UNLESS_PRESENT, ((*row, *row[:6]) for row in rows))
                    inserted = conn.total_changes - before
                    conn.execute("COMMIT")
                    return inserted
                # Rows go in groups of _ROWS_PER_STATEMENT per INSERT: SQLite then inserts a whole
                # group per step with the GIL released, instead of handing the GIL back and forth
                # around every single row.
                groups = _grouped(rows, _ROWS_PER_STATEMENT)
                for group in groups:
                    if len(group) == _ROWS_PER_STATEMENT * 11:
                        conn.execute(_INSERT_POINTS_GROUP, group)
                    else:
                        conn.executemany(_INSERT_POINT, [group[i : i + 11] for i in range(0, len(group), 11)])
                inserted = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                self._ids.clear()
                self._attr_ids.clear()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return inserted

    # -- reading ---------------------------------------------------------------------------

    def query(
        self,
        metric: str | Sequence[str] | None = None,
        *,
        run: str | None = None,
        rank: int | None = None,
        resource: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_unix_nano: int | None = None,
        end_time_unix_nano: int | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
        limit: int | None = None,
    ) -> list[StoredPoint]:
        """Points matching every filter given, ordered by time then step.

        ``run`` and ``rank`` match the resource attributes ``training.run.id`` and
        ``training.rank``; ``resource`` and ``attributes`` match any other keys exactly. Times
        are inclusive bounds in Unix nanoseconds.
        """
        return list(
            self.iter_query(
                metric,
                run=run,
                rank=rank,
                resource=resource,
                attributes=attributes,
                start_time_unix_nano=start_time_unix_nano,
                end_time_unix_nano=end_time_unix_nano,
                step_min=step_min,
                step_max=step_max,
                limit=limit,
            )
        )

    def iter_query(
        self,
        metric: str | Sequence[str] | None = None,
        *,
        run: str | None = None,
        rank: int | None = None,
        resource: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_unix_nano: int | None = None,
        end_time_unix_nano: int | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
        limit: int | None = None,
    ) -> Iterator[StoredPoint]:
        """Like :meth:`query`, yielding points as they are read."""
        where: list[str] = []
        params: list[Any] = []
        if metric is not None:
            names = [metric] if isinstance(metric, str) else list(metric)
            where.append(f"m.name IN ({','.join('?' * len(names))})")
            params.extend(names)
        res_filter = dict(resource or {})
        if run is not None:
            res_filter[RUN_ID_KEY] = run
        if rank is not None:
            res_filter[RANK_KEY] = rank
        for key, value in res_filter.items():
            where.append("json_extract(r.attributes, ?) = ?")
            params.extend([_json_path(key), value])
        for key, value in (attributes or {}).items():
            where.append("json_extract(a.attributes, ?) = ?")
            params.extend([_json_path(key), value])
        for clause, value in (
            ("p.time_unix_nano >= ?", start_time_unix_nano),
            ("p.time_unix_nano <= ?", end_time_unix_nano),
            ("p.step >= ?", step_min),
            ("p.step <= ?", step_max),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT m.name, m.kind, m.unit, p.value, a.attributes, r.attributes, s.name,"
            " p.start_time_unix_nano, p.time_unix_nano, p.step, p.epoch, m.temporality, m.monotonic,"
            " p.histogram, p.extra"
            " FROM points p JOIN metrics m ON m.id = p.metric_id JOIN resources r ON r.id = p.resource_id"
            " JOIN scopes s ON s.id = p.scope_id JOIN attribute_sets a ON a.id = p.attributes_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY p.time_unix_nano, p.step, p.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        for row in rows:
            yield StoredPoint(
                metric=row[0],
                kind=row[1],
                unit=row[2],
                value=row[3],
                attributes=json.loads(row[4]),
                resource=json.loads(row[5]),
                scope=row[6],
                start_time_unix_nano=row[7],
                time_unix_nano=row[8],
                step=row[9],
                epoch=row[10],
                temporality=row[11],
                monotonic=bool(row[12]),
                histogram=None if row[13] is None else json.loads(row[13]),
                extra=None if row[14] is None else json.loads(row[14]),
            )

    def metric_names(self) -> list[str]:
        """Every metric name that has points, sorted."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT m.name FROM metrics m WHERE EXISTS (SELECT 1 FROM points p WHERE p.metric_id = m.id) ORDER BY m.name"
            ).fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        """How many points the store holds."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM points").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- training runs (cli_runs, cli_plot, metrics_store) ----------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """One summary per training run (``training.run.id``), oldest first.

        Each is ``{"run", "start_time_unix_nano", "end_time_unix_nano", "ranks", "restarts",
        "points", "metrics"}``: ``ranks`` and ``restarts`` are the sorted distinct
        ``training.rank`` / ``training.restart_count`` values, ``metrics`` the sorted metric
        names. Points whose resource has no run id are summarised under ``run`` ``None``.
        """
        with self._lock:
            per_resource = self._conn.execute(
                "SELECT resource_id, min(time_unix_nano), max(time_unix_nano), count(*) FROM points GROUP BY resource_id"
            ).fetchall()
            resources = dict(self._conn.execute("SELECT id, attributes FROM resources").fetchall())
            pairs = self._conn.execute(
                "SELECT DISTINCT p.resource_id, m.name FROM (SELECT DISTINCT metric_id, resource_id FROM points) p"
                " JOIN metrics m ON m.id = p.metric_id"
            ).fetchall()
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
            if attrs.get("training.restart_count") is not None:
                entry["restarts"].add(attrs["training.restart_count"])
            entry["metrics"] |= names_by_resource.get(resource_id, set())
        out = []
        for entry in sorted(runs.values(), key=lambda e: (e["start_time_unix_nano"], str(e["run"]))):
            for key in ("ranks", "restarts", "metrics"):
                entry[key] = sorted(
                    entry[key], key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v))
                )
            out.append(entry)
        return out

    def query_extra(self, key: str, value: Any, *, limit: int | None = None) -> list[StoredPoint]:
        """Points whose ``extra`` field ``key`` equals ``value`` (a submitted record's ``id``, say)."""
        with self._lock:
            first, last = self._conn.execute(
                "SELECT min(time_unix_nano), max(time_unix_nano) FROM points WHERE extra IS NOT NULL AND json_extract(extra, ?) = ?",
                (_json_path(key), value),
            ).fetchone()
        if first is None:
            return []
        found = [
            p
            for p in self.iter_query(start_time_unix_nano=first, end_time_unix_nano=last)
            if p.extra is not None and p.extra.get(key) == value
        ]
        return found if limit is None else found[: int(limit)]


def _json_path(key: str) -> str:
    return '$."' + key.replace('"', '\\"') + '"'
