"""The store's schema (version 4): the OpenTelemetry data model in SQLite tables, and run metadata.

::

    resources(id, attributes, schema_url)                 -- attributes as canonical JSON
    scopes(id, name, version, attributes, schema_url)
    metrics(id, name, description, unit, kind, temporality, monotonic)
    attribute_sets(id, attributes)                        -- each distinct point attribute set once
    chunks(id, metric_id, resource_id, scope_id, attributes_id, points, first_row_id, last_row_id,
           min_time, max_time, min_step, max_step, min_value, max_value, level, bytes)
    chunk_data(chunk_id, data)                            -- a series' points, compressed (see below)
    meta(key, value)                                      -- schema_version, next_row_id
    run_params(run_id, key, value, time_unix_nano)        -- hyperparameters; value as JSON
    run_info(run_id, name, tags, notes, time_unix_nano)   -- tags as a JSON list
    run_processes(resource_id, pid, host, process, started_unix_nano, ended_unix_nano, status)

``kind`` is ``gauge``, ``sum``, ``histogram`` or ``exponential_histogram``; ``temporality`` is
OTLP's (1 delta, 2 cumulative). Points are kept as per-series chunks: ``chunks`` is their index
(see :mod:`.chunk_index`), ``chunk_data`` their bytes in the format of
:mod:`otel_recursive_metrics.model.chunk`; :mod:`.chunk_write` writes them (once each: a batch
delivered twice after a crash is stored once), :mod:`.compaction` joins small ones, and
:mod:`.scan` reads them back as NumPy columns.

Earlier versions kept a row a point in ``points`` (version 1; version 2 added the three run
tables; version 3 replaced the per-point unique index by ``blocks``, the row-id ranges of each
series). Such a store is converted when it is opened for writing (:mod:`.migrate`: streaming,
resumable, safe to kill at any moment), and read as it is when opened read-only.

A file whose ``schema_version`` is above :data:`SCHEMA_VERSION` was written by a newer release:
readers refuse it with a :class:`~otel_recursive_metrics.errors.StoreVersionError`
(:func:`check_version`), and writers with a
:class:`~otel_recursive_metrics.errors.ConfigError` before they change anything
(:func:`refuse_newer_store`): this release would not know what the newer one keeps, and
rewriting the version to ours would hide the file from it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._files import connect_readonly
from ..errors import ConfigError, StoreVersionError
from .chunk_index import CHUNK_SCHEMA

__all__ = ["SCHEMA_VERSION", "check_layout", "check_version", "create_schema", "has_point_rows", "refuse_newer_store"]

SCHEMA_VERSION = 4

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
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name);
CREATE TABLE IF NOT EXISTS run_params(
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time_unix_nano INTEGER NOT NULL,
    PRIMARY KEY(run_id, key));
CREATE TABLE IF NOT EXISTS run_info(
    run_id TEXT PRIMARY KEY,
    name TEXT,
    tags TEXT,
    notes TEXT,
    time_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_processes(
    resource_id INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    process TEXT,
    started_unix_nano INTEGER,
    ended_unix_nano INTEGER,
    status TEXT,
    PRIMARY KEY(resource_id, pid, host));
"""


def create_schema(conn: sqlite3.Connection) -> bool:
    """Create every table and index that is missing, in one write transaction; True if the store needs converting.

    A new store gets the current version. A store of an earlier version (a ``points`` table)
    keeps its version until :func:`~.migrate.convert_rows` has moved every point into chunks.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (_SCHEMA + CHUNK_SCHEMA).split(";"):
            if statement.strip():
                conn.execute(statement)
        legacy = has_point_rows(conn)
        if not legacy:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return legacy


def has_point_rows(conn: sqlite3.Connection) -> bool:
    """Whether the file has the ``points`` table of a version before 4 (empty or not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'").fetchone() is not None


def check_layout(conn: sqlite3.Connection, path: Path) -> None:
    """ValueError if ``path`` was written by an incompatible layout (the connection is left open)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(points)")}
    if columns and "attributes_id" not in columns:
        raise ValueError(
            f"store {path}: written by an earlier development layout of otel-recursive-metrics (points without"
            " attributes_id); open it with that version, or start a new store file"
        )


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """StoreVersionError if ``path`` was written by a newer schema version than :data:`SCHEMA_VERSION`.

    A file without a ``meta`` table or a version (a new or foreign file) passes: the layout
    checks say what is wrong with it. A version that is not a whole number is refused too.
    """
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return
    try:
        version = int(str(row[0]).strip())
    except ValueError:
        raise StoreVersionError(path, repr(row[0]), SCHEMA_VERSION) from None
    if version > SCHEMA_VERSION:
        raise StoreVersionError(path, version, SCHEMA_VERSION)


def refuse_newer_store(path: Path, *, busy_timeout_s: float = 5.0) -> None:
    """ConfigError if the file at ``path`` is a store of a newer schema version; nothing is written.

    Read through a read-only connection, before a writer opens the file (opening for writing
    already sets the journal mode). Anything else wrong with the file (damaged, locked) is left
    to the writer's own open to report.
    """
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        conn = connect_readonly(path, busy_timeout_s=busy_timeout_s)
    except (OSError, sqlite3.Error):
        return
    try:
        check_version(conn, path)
    except StoreVersionError as exc:
        raise ConfigError(
            [
                f"store_path={str(path)!r}: the file has schema version {exc.version}; this otel-recursive-metrics writes"
                f" up to version {exc.supported}: upgrade the package (in your clone: git pull, then pip install -e .) or write"
                " to another store; nothing was written to it"
            ]
        ) from None
    except sqlite3.Error:
        return
    finally:
        conn.close()
