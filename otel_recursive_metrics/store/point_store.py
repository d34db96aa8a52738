"""The embedded metrics store: one SQLite file that keeps the OpenTelemetry data model.

The tables are in :mod:`.schema`. A batch goes in as one transaction, its points grouped by series
and summarised in ``blocks``, which also keep inserts idempotent: a batch delivered twice after a
crash is stored once (see :mod:`.blocks`). Reading: :class:`PointQuery`
(in :mod:`.points`) turns filters into SQL; run summaries are in :mod:`.runs`.

Concurrency: WAL mode, one writer transaction at a time per file (``BEGIN IMMEDIATE`` with a
busy timeout), so several processes, DDP ranks for instance, can write one file. A
:class:`PointStore` object is safe to share between threads; it serialises its own calls.

    >>> store = PointStore("metrics.db")
    >>> [p.value for p in store.query(metric="train.loss", run="run-1")]
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._files import connect, connect_readonly
from ..model.attributes import canonical_json
from ..model.batch import (
    METRIC,
    PointBatch,
)
from .blocks import add_blocks, temporary_blocks
from .frames import points_dataframe, runs_dataframe
from .insert import insert_points, rows_per_statement
from .points import PointQuery, StoredPoint, json_path
from .ranks import DEFAULT_WINDOW_S, rank_skew
from .run_metadata import RUN_METADATA_METRICS, write_run_metadata
from .runs import summarize_runs
from .schema import SCHEMA_VERSION, check_layout, create_schema

__all__ = ["SCHEMA_VERSION", "PointStore", "StoredPoint"]

_ATTR_CACHE_MAX = 200_000


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
        #: (metric id, resource id) -> the latest time this object stored for that series (see blocks.py).
        self._series_max_time: dict[tuple[int, int], int] = {}
        if readonly:
            self._conn = connect_readonly(self.path, busy_timeout_s=busy_timeout_s)
        else:
            self._conn = connect(self.path, busy_timeout_s=busy_timeout_s)
        self._rows_per_statement = rows_per_statement(self._conn)
        try:
            if readonly:
                tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "points" not in tables:
                    raise ValueError(f"store {self.path}: not an otel-recursive-metrics store (no points table)")
                check_layout(self._conn, self.path)
                if "blocks" not in tables:
                    temporary_blocks(self._conn)  # a store of an earlier version, opened to read
                return
            # FULL: a committed batch survives a power loss, so "stored" means durable.
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            check_layout(self._conn, self.path)
            create_schema(self._conn)
        except BaseException:
            self._conn.close()
            raise

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
                points: Sequence[list[Any]] = batch.points
                metadata = {i for i, m in enumerate(batch.metrics) if m[0] in RUN_METADATA_METRICS}
                if metadata:
                    # Run metadata (parameters, run events) goes to the run tables, not to points.
                    names = [m[0] for m in batch.metrics]
                    resources = list(zip(res_ids, (r[0] for r in batch.resources), strict=True))
                    write_run_metadata(conn, names, [p for p in points if p[METRIC] in metadata], resources)
                    points = [p for p in points if p[METRIC] not in metadata]
                before, runs = insert_points(conn, self._rows_per_statement, points, res_ids, scope_ids, metric_ids, attr_ids)
                inserted, kept = add_blocks(conn, before, runs, self._series_max_time, steps_unknown=steps_unknown)
                conn.execute("COMMIT")
                for block in kept:
                    key = (block.metric_id, block.resource_id)
                    self._series_max_time[key] = max(block.max_time, self._series_max_time.get(key, block.max_time))
            except BaseException:
                self._ids.clear()
                self._attr_ids.clear()
                self._series_max_time.clear()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return inserted

    # -- reading ---------------------------------------------------------------------------

    def query(self, metric: str | Sequence[str] | None = None, **filters: Any) -> list[StoredPoint]:
        """Points matching every filter given, ordered by time then step (see :class:`PointQuery`).

        ``filters``: ``run``, ``rank``, ``resource``, ``attributes``, ``start_time_unix_nano``,
        ``end_time_unix_nano``, ``step_min``, ``step_max``, ``limit``.
        """
        return list(self.iter_query(metric, **filters))

    def iter_query(self, metric: str | Sequence[str] | None = None, **filters: Any) -> Iterator[StoredPoint]:
        """Like :meth:`query`, yielding points as SQLite reads them (a thousand at a time)."""
        sql, params = PointQuery(metric, **filters).sql()
        for rows in self.read_chunks(sql, params):
            for row in rows:
                yield StoredPoint.from_row(row)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read-only statement (for summaries over the store's tables)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def read_chunks(self, sql: str, params: Sequence[Any] = (), size: int = 1024) -> Iterator[list[Any]]:
        """The rows of one statement, ``size`` at a time, without holding them all in memory."""
        with self._lock:
            cursor = self._conn.execute(sql, params)
        try:
            while True:
                with self._lock:
                    rows = cursor.fetchmany(size)
                if not rows:
                    return
                yield rows
        finally:
            cursor.close()

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

    # -- summaries ------------------------------------------------------------------------

    def runs(self, last_of: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One summary per training run, oldest first, with the last value of the ``last_of`` metrics.

        See :func:`~.runs.summarize_runs` for the keys (run, name, status, duration, ranks,
        points, metrics, params, tags, notes, last).
        """
        return summarize_runs(self, last_of)

    def rank_skew(self, run: str, window_s: float = DEFAULT_WINDOW_S) -> dict[str, Any]:
        """Per-rank last step, step rate and GPU utilisation of ``run``, and its slowest rank.

        See :func:`~.ranks.rank_skew`; raises :class:`KeyError` for a run with no points.
        """
        return rank_skew(self, run, window_s)

    def to_dataframe(self, metric: str | Sequence[str] | None = None, **filters: Any) -> Any:
        """The points as a pandas DataFrame, one row a point (see :mod:`.frames`; the ``pandas`` extra)."""
        return points_dataframe(self, metric, **filters)

    def runs_dataframe(self, last_of: Sequence[str] = ()) -> Any:
        """The runs as a pandas DataFrame, parameters as ``params.<key>`` columns (the ``pandas`` extra)."""
        return runs_dataframe(self, last_of)

    def query_extra(self, key: str, value: Any, *, limit: int | None = None) -> list[StoredPoint]:
        """Points whose ``extra`` field ``key`` equals ``value`` (a submitted record's ``id``, say)."""
        ((first, last),) = self.read(
            "SELECT min(time_unix_nano), max(time_unix_nano) FROM points WHERE extra IS NOT NULL AND json_extract(extra, ?) = ?",
            (json_path(key), value),
        )
        if first is None:
            return []
        found = [
            p
            for p in self.iter_query(start_time_unix_nano=first, end_time_unix_nano=last)
            if p.extra is not None and p.extra.get(key) == value
        ]
        return found if limit is None else found[: int(limit)]
