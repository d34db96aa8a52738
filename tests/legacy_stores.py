"""Stores as versions 1 to 3 wrote them (a row a point), for the conversion's tests and benchmark.

The schemas are those releases' own text (``store/schema.py`` at the commits named below), so a
file made here is the file a user of that release has. Rows go in with SQL, as the old writers'
INSERTs put them: the caller gives them in write order (a batch's points grouped by series, as
version 3 wrote them), and the ids SQLite gives them are the row ids readers see.

- version 1 (before ce03a1c): the data model, ``points`` with the unique index ``points_identity``;
- version 2 (ce03a1c): plus ``run_params``, ``run_info``, ``run_processes``;
- version 3 (78a8381, main): no ``points_identity``; ``blocks`` say where each series lies.

:func:`legacy_points` is a store of every kind of point, and :func:`queries` a few questions to
the reading API; ``python tests/legacy_stores.py FILE`` records the answers of the package on the
path (see :func:`record_answers`): ``data/legacy_store_answers.json`` holds version 3's
(main at f229d99), which the converted stores must still give.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_recursive_metrics.model.attributes import canonical_json

__all__ = [
    "RANK_0",
    "SCHEMAS",
    "T0",
    "LegacyPoint",
    "add_points",
    "create_legacy_store",
    "finish_legacy_store",
    "legacy_points",
    "queries",
    "record_answers",
    "series_ids",
    "training_rows",
    "typed",
    "write_legacy_store",
    "write_store_with_gaps",
    "write_training_store",
]

_TABLES = """
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
"""
_IDENTITY_INDEX = """
CREATE UNIQUE INDEX IF NOT EXISTS points_identity ON points(
    metric_id, resource_id, time_unix_nano, ifnull(step, -1), attributes_id, scope_id, start_time_unix_nano);
"""
_METRICS_BY_NAME = "CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name);"
_RUN_TABLES = """
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
_BLOCKS = """
CREATE TABLE IF NOT EXISTS blocks(
    metric_id INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    points INTEGER NOT NULL,
    min_time INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    min_step INTEGER,
    max_step INTEGER);
CREATE INDEX IF NOT EXISTS blocks_by_series ON blocks(metric_id, resource_id, max_time);
"""
SCHEMAS = {
    1: _TABLES + _IDENTITY_INDEX + _METRICS_BY_NAME,
    2: _TABLES + _IDENTITY_INDEX + _METRICS_BY_NAME + _RUN_TABLES,
    3: _TABLES + _METRICS_BY_NAME + _RUN_TABLES + _BLOCKS,
}
# Version 3's blocks for rows written without them: one per series over its whole row range.
_EVERY_SERIES = (
    "SELECT metric_id, resource_id, min(id), max(id), count(*), min(time_unix_nano), max(time_unix_nano), min(step), max(step)"
    " FROM points GROUP BY metric_id, resource_id"
)


@dataclass(frozen=True)
class LegacyPoint:
    """One point as a version 1-3 store kept it (``histogram``, ``extra``: their JSON text)."""

    metric: str
    resource: Mapping[str, Any]
    time_unix_nano: int
    value: int | float | None
    step: int | None = None
    epoch: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    start_time_unix_nano: int = 0
    histogram: str | None = None
    extra: str | None = None
    kind: str = "gauge"
    unit: str = ""
    temporality: int = 0
    monotonic: bool = False
    scope: str = "s"


def create_legacy_store(path: Path, version: int) -> sqlite3.Connection:
    """An empty store of schema ``version`` (1, 2 or 3) in WAL mode, as those releases created it; its connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMAS[version])
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(version),))
    return conn


def _intern(conn: sqlite3.Connection, table: str, columns: Sequence[str], values: Sequence[Any]) -> int:
    conn.execute(f"INSERT OR IGNORE INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(values))})", values)
    where = " AND ".join(f"{c} = ?" for c in columns)
    return int(conn.execute(f"SELECT id FROM {table} WHERE {where}", values).fetchone()[0])


def series_ids(conn: sqlite3.Connection, point: LegacyPoint) -> tuple[int, int, int, int]:
    """The metric, resource, scope and attribute-set ids of ``point``'s series (interned as the old writers did)."""
    return (
        _intern(
            conn,
            "metrics",
            ("name", "description", "unit", "kind", "temporality", "monotonic"),
            (point.metric, "", point.unit, point.kind, point.temporality, int(point.monotonic)),
        ),
        _intern(conn, "resources", ("attributes", "schema_url"), (canonical_json(point.resource), "")),
        _intern(conn, "scopes", ("name", "version", "attributes", "schema_url"), (point.scope, "", "{}", "")),
        _intern(conn, "attribute_sets", ("attributes",), (canonical_json(point.attributes),)),
    )


def add_points(conn: sqlite3.Connection, points: Iterable[LegacyPoint]) -> list[int]:
    """Insert ``points`` in the order given, in one transaction; their row ids."""
    ids: list[int] = []
    conn.execute("BEGIN")
    for p in points:
        cursor = conn.execute(
            "INSERT INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value,"
            " step, epoch, histogram, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (*series_ids(conn, p), p.start_time_unix_nano, p.time_unix_nano, p.value, p.step, p.epoch, p.histogram, p.extra),
        )
        ids.append(int(cursor.lastrowid or 0))
    conn.execute("COMMIT")
    return ids


def finish_legacy_store(conn: sqlite3.Connection, version: int) -> None:
    """Version 3's blocks (one per series), then close (checkpointed: no ``-wal`` left)."""
    if version == 3:
        conn.execute(f"INSERT INTO blocks {_EVERY_SERIES}")
    conn.close()


def write_legacy_store(path: Path, version: int, points: Iterable[LegacyPoint]) -> list[int]:
    """A store of schema ``version`` holding ``points`` (in that order); their row ids."""
    conn = create_legacy_store(path, version)
    ids = add_points(conn, points)
    finish_legacy_store(conn, version)
    return ids


def training_rows(
    conn: sqlite3.Connection, steps: int, *, ranks: int = 2, metrics: int = 4, batch_steps: int = 400, seed: int = 7
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of a training run's points, a batch at a time, grouped by series in each batch (as version 3 wrote them).

    Per rank (a resource): ``metrics`` float gauges (a noisy random walk) and an integer counter,
    one point per step each. A row is ``(metric_id, resource_id, scope_id, attributes_id,
    start_time_unix_nano, time_unix_nano, value, step, epoch, histogram, extra)``.
    """
    rng = random.Random(seed)
    t0 = 1_800_000_000_000_000_000
    names = [f"train.m{i}" for i in range(metrics)]
    series = []
    for rank in range(ranks):
        resource = {"training.run.id": "run-1", "training.rank": rank}
        for name in names:
            series.append((series_ids(conn, LegacyPoint(name, resource, 0, 0.0)), "float"))
        series.append((series_ids(conn, LegacyPoint("train.tokens", resource, 0, 0, kind="sum", temporality=2, monotonic=True)), "int"))
    walk = [1.0] * len(series)
    for lo in range(0, steps, batch_steps):
        batch: list[tuple[Any, ...]] = []
        for index, (ids, kind) in enumerate(series):
            for step in range(lo, min(steps, lo + batch_steps)):
                time = t0 + step * 1_000_000
                if kind == "int":
                    batch.append((*ids, t0, time, step * 4096, step, step // 1000, None, None))
                else:
                    walk[index] = walk[index] * 0.999 + rng.gauss(0.0, 0.01)
                    batch.append((*ids, 0, time, walk[index], step, step // 1000, None, None))
        yield batch


def write_training_store(path: Path, version: int, steps: int, **options: Any) -> int:
    """A store of schema ``version`` with :func:`training_rows`; how many points it holds."""
    conn = create_legacy_store(path, version)
    conn.execute("PRAGMA synchronous=OFF")  # a fixture: nothing to lose
    total = 0
    for batch in training_rows(conn, steps, **options):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO points(metric_id, resource_id, scope_id, attributes_id, start_time_unix_nano, time_unix_nano, value,"
            " step, epoch, histogram, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        conn.execute("COMMIT")
        total += len(batch)
    finish_legacy_store(conn, version)
    return total


# -- a store holding every kind of point, and what readers answer about it ---------------------------

T0 = 1_800_000_000_000_000_000
RANK_0: dict[str, Any] = {"training.run.id": "run-a", "training.rank": 0}
RANK_1: dict[str, Any] = {"training.run.id": "run-a", "training.rank": 1}
OTHER_RUN: dict[str, Any] = {"training.run.id": "run-b", "training.rank": 0}


def legacy_points(version: int) -> list[LegacyPoint]:
    """Every kind of point an old store holds, in batches grouped by series as the old writers wrote them."""
    points: list[LegacyPoint] = []
    for batch in range(3):
        steps = range(batch * 40, batch * 40 + 40)
        for resource in (RANK_0, RANK_1, OTHER_RUN):
            rank = int(resource["training.rank"])
            for s in steps:
                loss = math.nan if s % 17 == 3 else 1.0 / (s + 1) + rank  # NaN: SQLite keeps NULL
                points.append(LegacyPoint("train.loss", resource, T0 + s * 1000, loss, step=s, epoch=s // 50))
            for s in steps:  # integers past a float's 53 bits, and negative ones, must stay exact
                count = 2**62 + s if s % 2 else -(2**40) - s
                points.append(LegacyPoint("train.tokens", resource, T0 + s * 1000, count, step=s, kind="sum", temporality=2, monotonic=True,
                                          start_time_unix_nano=T0 - 5))  # fmt: skip
            for s in steps:  # a series whose values mix integers, floats and no value
                mixed = s if s % 3 == 0 else (s + 0.25 if s % 3 == 1 else None)
                points.append(LegacyPoint("train.mixed", resource, T0 + s * 1000, mixed, step=s))
            for s in steps[::10]:
                histogram = json.dumps({"count": s + 1, "sum": 2.5 * s, "min": 0.0, "max": s, "bounds": [1, 10], "counts": [1, s, 0]})
                points.append(
                    LegacyPoint("grad.norm", resource, T0 + s * 1000, None, step=s, histogram=histogram, kind="histogram", temporality=2)
                )
            for gpu in (0, 1):
                for s in steps[::5]:
                    points.append(
                        LegacyPoint("hw.gpu.utilization", resource, T0 + s * 1000 + 7, float(s % 100), attributes={"gpu": gpu}, unit="%")
                    )
        for s in steps[::8]:  # submitted records: no step, extra fields
            extra = json.dumps({"id": f"rec-{s}", "note": "é ✓"})
            points.append(LegacyPoint("eval.score", RANK_0, T0 + s * 1000 + 3, s * 0.5, extra=extra, scope="records"))
    if version == 3:  # version 3 keeps two points of one time and step that differ in value (the index of 1-2 refused them)
        points.append(LegacyPoint("train.loss", RANK_0, T0 + 5 * 1000, 0.123, step=5))
    return points


def typed(value: Any) -> Any:
    """A value with its type: 1 and 1.0 are different answers."""
    return None if value is None else (type(value).__name__, value)


def queries(store: Any) -> dict[str, Any]:
    """The answers of the reading API to a few questions (compared between a read-only open and the converted store)."""
    return {
        "count": store.count(),
        "metrics": store.metric_names(),
        "loss of run-a": [(p.row_id, p.step, typed(p.value)) for p in store.query("train.loss", run="run-a")],
        "tokens of rank 1, steps 30-90": [
            (p.step, p.value) for p in store.query("train.tokens", run="run-a", rank=1, step_min=30, step_max=90)
        ],
        "gpu 1": [(p.time_unix_nano, p.value) for p in store.query("hw.gpu.utilization", attributes={"gpu": 1})],
        "histograms": [p.histogram for p in store.query("grad.norm", run="run-b")],
        "a record": [(p.row_id, p.extra) for p in store.query_extra("id", "rec-16")],
        "limit": [p.row_id for p in store.query("train.mixed", limit=7)],
    }  # fmt: skip


def write_store_with_gaps(path: Path, version: int) -> list[int]:
    """:func:`legacy_points` in a store of ``version``, three rows deleted (the gaps version 3's duplicate check left); ids written."""
    ids = write_legacy_store(path, version, legacy_points(version))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("DELETE FROM points WHERE id = ?", [(i,) for i in (ids[4], ids[5], ids[300])])
    conn.close()
    return ids


def record_answers(out: Path) -> None:
    """Write :func:`queries`' answers for a store of each version, as the package on the path gives them.

    Run with the last release that wrote such stores (version 3: main before issue 21) first on
    the path, it records what readers answered before the conversion existed::

        git worktree add --detach /tmp/v3 <commit>
        PYTHONPATH=/tmp/v3 python tests/legacy_stores.py tests/data/legacy_store_answers.json
    """
    import tempfile

    from otel_recursive_metrics import PointStore

    answers = {}
    with tempfile.TemporaryDirectory() as folder:
        for version in (1, 2, 3):
            path = Path(folder) / f"v{version}.db"
            write_store_with_gaps(path, version)
            store = PointStore(path, readonly=True)
            answers[str(version)] = queries(store)
            store.close()
    out.write_text(json.dumps(answers, sort_keys=True) + "\n")


if __name__ == "__main__":
    import sys

    record_answers(Path(sys.argv[1]))
