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
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._files import connect, connect_readonly, make_private_dir
from ..model.attributes import canonical_json
from ..model.batch import (
    METRIC,
    PointBatch,
)
from .chunk_index import SeriesKey
from .chunk_write import series_chunks, write_points
from .compaction import Compactor
from .file_watch import FileChange, StoreFileWatch, change_message, clear_the_path, recreate_lock, write_identity_mark
from .frames import points_dataframe, runs_dataframe
from .migrate import convert_rows, readable_rows
from .point_reads import points_with_extra, query_columns, stored_points
from .points import PointQuery, StoredPoint
from .ranks import DEFAULT_WINDOW_S, rank_skew
from .run_metadata import RUN_METADATA_METRICS, KeptRunMetadata, write_run_metadata
from .runs import summarize_runs
from .schema import SCHEMA_VERSION, check_layout, check_version, create_schema, refuse_newer_store

__all__ = ["SCHEMA_VERSION", "PointStore", "StoredPoint"]

_log = logging.getLogger(__name__)

_ATTR_CACHE_MAX = 200_000


class PointStore:
    """Reads and writes points in one SQLite file; see the module docstring for the schema."""

    def __init__(self, path: Path | str, *, durable: bool = True, readonly: bool = False, busy_timeout_s: float = 30.0) -> None:
        """Open (creating it if missing) the store at ``path``.

        ``readonly=True`` opens an existing file for reading only: nothing is created or
        changed, which is what the CLI's read commands do (they work on a read-only file system
        and never take the write lock a training run needs). ``durable=False`` commits with
        ``synchronous=NORMAL`` (safe against a process crash, not a power loss).

        A file written by a newer schema version is refused: reading with
        :class:`~otel_recursive_metrics.errors.StoreVersionError`, writing with
        :class:`~otel_recursive_metrics.errors.ConfigError`, before anything is written.
        """
        self.path = Path(path)
        self.readonly = readonly
        self._durable = durable
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._attr_ids: dict[str, int] = {}
        #: Series -> the latest time this object stored in it (see chunk_write.py).
        self._series_max_time: dict[SeriesKey, int] = {}
        #: What this writer wrote that compaction may join (see compaction.py).
        self._compactor = Compactor()
        #: How many times the file was re-created under this writer, by cause (removed, replaced,
        #: truncated; see :mod:`.file_watch`).
        self.recreated: dict[str, int] = {}
        #: Points this writer had stored in files that were then removed, replaced or damaged.
        self.points_left_behind = 0
        self._points_in_file = 0
        self._watch = StoreFileWatch(self.path)
        self._pending_change: FileChange | None = None
        self._metadata = KeptRunMetadata()
        if readonly:
            self._conn = connect_readonly(self.path, busy_timeout_s=busy_timeout_s)
            try:
                tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                check_version(self._conn, self.path)
                if "chunk_index" not in tables and "points" not in tables:
                    raise ValueError(f"store {self.path}: not an otel-recursive-metrics store (no chunk_index table)")
                check_layout(self._conn, self.path)
                if "points" in tables:
                    readable_rows(self._conn)  # a store of an earlier version (or one being converted), opened to read
            except BaseException:
                self._conn.close()
                raise
        else:
            self._conn = self._open_for_writing()

    def _open_for_writing(self) -> sqlite3.Connection:
        """A write connection to the file at the path (created if missing) with the current schema."""
        refuse_newer_store(self.path)
        # Pages compaction frees go back to the file system at close (see close()).
        conn = connect(self.path, busy_timeout_s=self._busy_timeout_s, incremental_vacuum=True)
        try:
            # FULL: a committed batch survives a power loss, so "stored" means durable.
            conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            check_layout(conn, self.path)
            if create_schema(conn):
                convert_rows(conn)  # a store of an earlier version: into chunks, before anything is added
            self._compactor.opened(conn)
            self._watch.reset()
        except BaseException:
            conn.close()
            raise
        return conn

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's write lock (a DDP rank's) before failing."""
        with self._lock:
            self._busy_timeout_s = max(0.001, seconds)
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

        Before and after the transaction the file is checked (:mod:`.file_watch`): a store
        removed, replaced or truncated under this writer is re-created (see :meth:`_reopen`) and
        the batch written into the new one, so that nothing logged after it goes to a lost file.
        """
        with self._lock:
            self._notice_change()
            try:
                inserted = self._write(batch, steps_unknown=steps_unknown)
            except sqlite3.DatabaseError:
                if not self._notice_change():
                    raise
                inserted = self._write(batch, steps_unknown=steps_unknown)
            if self._notice_change():
                # The commit may have gone into the file that is gone or damaged: write it again here.
                inserted = self._write(batch, steps_unknown=steps_unknown)
            self._points_in_file += inserted
            self._compact()
            return inserted

    def _write(self, batch: PointBatch, *, steps_unknown: bool, remember: bool = True) -> int:
        """:meth:`write_batch`'s transaction (the caller holds the lock)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            res_ids = []
            for resource in batch.resources:
                text = canonical_json(resource.attributes)
                res_ids.append(
                    self._intern(
                        "r",
                        text + "\x00" + resource.schema_url,
                        "INSERT OR IGNORE INTO resources(attributes, schema_url) VALUES (?,?)",
                        "SELECT id FROM resources WHERE attributes=? AND schema_url=?",
                        (text, resource.schema_url),
                    )
                )
            scope_ids = []
            for scope in batch.scopes:
                params = (scope.name, scope.version or "", canonical_json(scope.attributes), scope.schema_url or "")
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
            for m in batch.metrics:
                mparams = (m.name, m.description or "", m.unit or "", str(m.kind), int(m.temporality), int(bool(m.monotonic)))
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
            metadata = {i for i, m in enumerate(batch.metrics) if m.name in RUN_METADATA_METRICS}
            if metadata:
                # Run metadata (parameters, run events) goes to the run tables, not to points.
                names = [m.name for m in batch.metrics]
                resources = list(zip(res_ids, (r.attributes for r in batch.resources), strict=True))
                metadata_points = [p for p in points if p[METRIC] in metadata]
                write_run_metadata(conn, names, metadata_points, resources)
                points = [p for p in points if p[METRIC] not in metadata]
            chunks = series_chunks(points, metric_ids, res_ids, scope_ids, attr_ids)
            written = write_points(conn, chunks, self._series_max_time, steps_unknown=steps_unknown)
            conn.execute("COMMIT")
            inserted = written.points
            latest = self._series_max_time
            for key, max_time in written.latest():
                latest[key] = max(max_time, latest.get(key, max_time))
            self._compactor.wrote(written)
            if metadata and remember:
                self._metadata.keep(batch, metadata_points)
        except BaseException:
            self._ids.clear()
            self._attr_ids.clear()
            self._series_max_time.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return inserted

    # -- a store removed, replaced or truncated under this writer (see file_watch.py) --------

    def _notice_change(self) -> bool:
        """Re-create the store if its file changed under this writer (the caller holds the lock); True if so."""
        if self._pending_change is None:
            self._pending_change = self._watch.change()
            if self._pending_change is None:
                return False
        self._reopen(self._pending_change)
        return True

    def _reopen(self, change: FileChange) -> None:
        """Write to a store at the path again after ``change``; one log line says what happened.

        ``removed``: a new store is created there (the old file's ``-wal`` / ``-shm``, which SQLite
        leaves behind for a file that moved, are moved aside first: the new store must not read
        them). ``truncated``: the damaged file is moved aside as ``<name>.damaged-<time>`` and a
        new store created. ``replaced``: the file now at the path is opened. Run metadata this
        writer stored is written again. Between processes writing one store, one does the
        moving and creating (:func:`recreate_lock`); the others find a replaced file.
        """
        old_identity = self._watch.identity
        try:
            self._conn.close()  # a moved file is not checkpointed; a truncated one gets what its WAL holds
        except sqlite3.Error:
            pass
        self._ids.clear()
        self._attr_ids.clear()
        self._series_max_time.clear()
        self._compactor = Compactor()
        try:
            make_private_dir(self.path.parent)
            with recreate_lock(self.path.parent):
                moved_to = clear_the_path(self.path, change, old_identity)
                self._conn = self._open_for_writing()
                if self._watch.identity is not None:
                    write_identity_mark(self.path, self._watch.identity)
        except OSError as exc:
            raise sqlite3.OperationalError(f"unable to open database file {self.path} again after it was {change.cause}: {exc}") from exc
        self._pending_change = None
        self.recreated[change.cause] = self.recreated.get(change.cause, 0) + 1
        left, self._points_in_file = self._points_in_file, 0
        self.points_left_behind += left
        for kept in self._metadata.batches():
            try:
                self._write(kept, steps_unknown=False, remember=False)
            except Exception as exc:  # noqa: BLE001 - the points matter more than their run's metadata
                _log.warning("otel-recursive-metrics: could not write run metadata again into %s: %s", self.path, exc)
                break
        _log.error("otel-recursive-metrics: %s", change_message(self.path, change, left, moved_to))

    # -- reading ---------------------------------------------------------------------------

    def query(self, metric: str | Sequence[str] | None = None, **filters: Any) -> list[StoredPoint]:
        """Points matching every filter given, ordered by time then step (see :class:`PointQuery`).

        ``filters``: ``run``, ``rank``, ``resource``, ``attributes``, ``start_time_unix_nano``,
        ``end_time_unix_nano``, ``step_min``, ``step_max``, ``limit``.
        """
        return list(self.iter_query(metric, **filters))

    def iter_query(self, metric: str | Sequence[str] | None = None, **filters: Any) -> Iterator[StoredPoint]:
        """Like :meth:`query`, yielding points as SQLite reads them (a thousand at a time)."""
        yield from stored_points(self, query_columns(self, PointQuery(metric, **filters)))

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
                "SELECT m.name FROM metrics m WHERE EXISTS (SELECT 1 FROM chunk_index c WHERE c.metric_id = m.id)"
                " OR EXISTS (SELECT 1 FROM head_points h WHERE h.metric_id = m.id) GROUP BY m.name ORDER BY m.name"
            ).fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        """How many points the store holds."""
        with self._lock:
            return int(self._conn.execute("SELECT ifnull(sum(points), 0) FROM chunks").fetchone()[0])

    def close(self) -> None:
        """Join the small chunks this writer left (see :mod:`.compaction`), then close the file."""
        with self._lock:
            if not self.readonly:
                self._compact(closing=True)
                try:  # what compaction freed goes back to the file system (a store created by this version)
                    self._conn.executescript("PRAGMA incremental_vacuum;")  # run to the end (execute() frees one page a step)
                except sqlite3.Error as exc:
                    _log.info("otel-recursive-metrics: %s keeps its free pages: %s", self.path, exc)
            self._conn.close()

    def _compact(self, *, closing: bool = False) -> None:
        """:meth:`Compactor.run` on this writer's connection (the caller holds the lock); a failure is logged, not raised."""
        try:
            self._compactor.run(self._conn, closing=closing)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged chunk (ChunkError), left as it is
            _log.info("otel-recursive-metrics: compaction in %s postponed: %s", self.path, exc)

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
        return points_with_extra(self, key, value, limit=limit)
