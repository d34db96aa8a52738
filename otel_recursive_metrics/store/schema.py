"""The store's schema (version 3): the OpenTelemetry data model in SQLite tables, and run metadata.

::

    resources(id, attributes, schema_url)                 -- attributes as canonical JSON
    scopes(id, name, version, attributes, schema_url)
    metrics(id, name, description, unit, kind, temporality, monotonic)
    attribute_sets(id, attributes)                        -- each distinct point attribute set once
    points(id, metric_id, resource_id, scope_id, attributes_id,
           start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra)
    blocks(metric_id, resource_id, first_id, last_id, points,
           min_time, max_time, min_step, max_step)        -- where each series' points lie
    meta(key, value)                                      -- schema_version
    run_params(run_id, key, value, time_unix_nano)        -- hyperparameters; value as JSON
    run_info(run_id, name, tags, notes, time_unix_nano)   -- tags as a JSON list
    run_processes(resource_id, pid, host, process, started_unix_nano, ended_unix_nano, status)

``kind`` is ``gauge``, ``sum``, ``histogram`` or ``exponential_histogram``; ``temporality`` is
OTLP's (1 delta, 2 cumulative); ``value`` keeps integers as integers; ``histogram`` is JSON (see
:mod:`otel_recursive_metrics.model.batch`). ``points`` has no index but its row id: a batch's
points are written grouped by series, and ``blocks`` says where (see :mod:`.blocks`, which also
keeps inserts idempotent: a batch delivered twice after a crash is stored once).

Version 2 added the three run tables (see :mod:`otel_recursive_metrics.training.run`); they are
created in a version-1 file when it is opened for writing, and a reader of a version-1 file finds
no run metadata, not an error. Version 3 replaced the unique index over a point's identity (a
third of the write cost, 25 bytes a point) by ``blocks``; a version-2 file gets its blocks, and
loses the index, when first opened for writing.

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
from .blocks import BLOCKS_SCHEMA, blocks_from_points

__all__ = ["SCHEMA_VERSION", "check_layout", "check_version", "create_schema", "refuse_newer_store"]

SCHEMA_VERSION = 3

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


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every table and index that is missing, in one write transaction.

    A store of an earlier version is brought up to this one here: blocks for the points it
    holds, and its per-point index dropped (see :mod:`.blocks`).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (_SCHEMA + BLOCKS_SCHEMA).split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'points_identity'").fetchone():
            blocks_from_points(conn)
            conn.execute("DROP INDEX points_identity")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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
