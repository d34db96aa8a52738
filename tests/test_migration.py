"""Stores of versions 1 to 3 (a row a point): converted into chunks when opened for writing, read as they are when not.

The stores are made as those releases made them (their schema text, their rows: see
:mod:`tests.legacy_stores`), and what a reader gets back is compared with the rows the file
held: every point once, with its row id, time, step, epoch, value (integers exact, NaN and
missing values as None), histogram and extra fields; and the reading API's answers with those
the version-3 release gave for the same files (``data/legacy_store_answers.json``, recorded with
it). The conversion is killed with SIGKILL at many moments, and resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.store import migrate, row_buffer
from otel_recursive_metrics.store.scan import gather, iter_chunks

from .legacy_stores import (
    RANK_0,
    T0,
    LegacyPoint,
    legacy_points,
    queries,
    typed,
    write_legacy_store,
    write_store_with_gaps,
    write_training_store,
)

REPO = Path(__file__).resolve().parents[1]
ANSWERS = Path(__file__).resolve().parent / "data" / "legacy_store_answers.json"


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    """What the file holds, point by point, joined to its labels (the truth a reader must give back)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT p.id, m.name, r.attributes, a.attributes, s.name, p.start_time_unix_nano, p.time_unix_nano, p.value,"
            " p.step, p.epoch, p.histogram, p.extra FROM points p JOIN metrics m ON m.id = p.metric_id"
            " JOIN resources r ON r.id = p.resource_id JOIN attribute_sets a ON a.id = p.attributes_id"
            " JOIN scopes s ON s.id = p.scope_id ORDER BY p.id"
        ).fetchall()
    finally:
        conn.close()
    return [
        (i, metric, json.loads(res), json.loads(attrs), scope, start, t, typed(v), step, epoch, _json(h), _json(x))
        for i, metric, res, attrs, scope, start, t, v, step, epoch, h, x in rows
    ]


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def read_back(store: PointStore) -> list[tuple[Any, ...]]:
    """Every point a reader gets, in the shape of :func:`raw_rows`, in row-id order."""
    points = sorted(store.query(), key=lambda p: p.row_id)
    return [
        (p.row_id, p.metric, p.resource, p.attributes, p.scope, p.start_time_unix_nano, p.time_unix_nano, typed(p.value), p.step,
         p.epoch, p.histogram, p.extra)
        for p in points
    ]  # fmt: skip


def as_json(answers: dict[str, Any]) -> Any:
    """Answers as the recorded file holds them (tuples as lists)."""
    return json.loads(json.dumps(answers))


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def meta(path: Path, key: str) -> str | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_store_of_an_earlier_version_converts_on_a_writable_open_with_every_point_kept(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    ids = write_store_with_gaps(path, version)
    held = raw_rows(path)
    assert len(held) == len(ids) - 3 > 1200
    # What the release that wrote such stores answered (recorded with it: see legacy_stores.record_answers).
    answers = json.loads(ANSWERS.read_text())[str(version)]
    reader = PointStore(path, readonly=True)
    assert read_back(reader) == held
    assert as_json(queries(reader)) == answers
    reader.close()

    store = PointStore(path)
    assert read_back(store) == held, "every point kept: id, labels, times, value and its type, step, epoch, histogram, extra"
    assert as_json(queries(store)) == answers
    found = tables(path)
    assert {"points", "blocks", "points_identity", "blocks_by_series"}.isdisjoint(found)
    assert {"chunks", "chunk_data", "run_info", "run_params", "run_processes"} <= found
    assert meta(path, "schema_version") == "4" and meta(path, "converted_points") is None
    assert meta(path, "next_row_id") == str(ids[-1] + 1)

    # The store goes on: a batch repeating a converted point adds nothing; new points follow the old ids.
    b = BatchBuilder()
    res, scope = b.resource(RANK_0), b.plain_scope("s")
    loss = b.metric("train.loss", "", "", "gauge")
    b.add_point(res, scope, loss, "{}", 0, T0 + 10 * 1000, 1.0 / 11, 10, 0)
    b.add_point(res, scope, loss, "{}", 0, T0 + 999_000, 0.5, 999)
    assert store.write_batch(b.build()) == 1
    (new,) = store.query("train.loss", run="run-a", rank=0, step_min=999)
    assert new.row_id == ids[-1] + 1 and new.value == 0.5
    store.close()
    assert len(PointStore(path, readonly=True).query()) == len(held) + 1


def test_a_read_only_open_reads_an_old_store_and_never_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_legacy_store(path, 3, legacy_points(3))
    before = fingerprint(path)
    reader = PointStore(path, readonly=True)
    assert read_back(reader) == raw_rows(path)
    assert reader.read("SELECT count(*) FROM temp.chunks")[0][0] > 0
    reader.close()
    assert fingerprint(path) == before
    assert meta(path, "schema_version") == "3" and "points" in tables(path)


def stop_after_moves(monkeypatch: pytest.MonkeyPatch, moves: int) -> None:
    """The conversion stops after its ``moves``-th transaction, as a Ctrl-C there would stop it."""
    real, done = migrate._move, [0]

    def move(*args: Any) -> int:
        if done[0] == moves:
            raise KeyboardInterrupt
        done[0] += 1
        return real(*args)

    monkeypatch.setattr(migrate, "_move", move)


def test_a_half_converted_store_reads_everything_once_and_then_converts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    write_legacy_store(path, 3, legacy_points(3))
    held = raw_rows(path)
    monkeypatch.setattr(row_buffer, "SERIES_POINTS", 50)
    monkeypatch.setattr(row_buffer, "PAGE_ROWS", 100)
    stop_after_moves(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        PointStore(path)
    monkeypatch.undo()
    moved = int(meta(path, "converted_points") or 0)
    assert 0 < moved < len(held) and meta(path, "schema_version") == "3"
    before = fingerprint(path)

    reader = PointStore(path, readonly=True)
    assert read_back(reader) == held, "the moved points from chunks, the others from rows, each once"
    reader.close()
    assert fingerprint(path) == before

    store = PointStore(path)
    assert read_back(store) == held
    assert meta(path, "schema_version") == "4" and "points" not in tables(path)
    store.close()


def test_a_conversion_stopped_in_its_vacuum_vacuums_at_the_next_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    write_training_store(path, 3, 10_000)
    expected = expected_columns(path)
    size = path.stat().st_size

    def stopped(conn: sqlite3.Connection, where: str) -> bool:
        raise KeyboardInterrupt  # as a kill in the VACUUM (a transaction: done, or not at all)

    monkeypatch.setattr(migrate, "_vacuum", stopped)
    with pytest.raises(KeyboardInterrupt):
        PointStore(path)
    monkeypatch.undo()
    assert meta(path, "schema_version") == "3" and "points" in tables(path) and "blocks" not in tables(path)
    every_point_once(path, expected)  # all of them in chunks now, read through the read-only copies
    PointStore(path).close()
    assert meta(path, "schema_version") == "4" and "points" not in tables(path)
    every_point_once(path, expected)
    assert path.stat().st_size < size / 3


def test_a_conversion_of_many_points_streams_into_long_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per series, points are gathered across the rows of other series: one chunk per SERIES_POINTS."""
    monkeypatch.setattr(row_buffer, "SERIES_POINTS", 4096)
    monkeypatch.setattr(row_buffer, "PAGE_ROWS", 1000)
    path = tmp_path / "old.db"
    total = write_training_store(path, 3, 10_000, ranks=2, metrics=4, batch_steps=100)
    PointStore(path).close()
    store = PointStore(path, readonly=True)
    sizes = store.read("SELECT points FROM chunks ORDER BY first_row_id")
    assert sum(s for (s,) in sizes) == total == 100_000
    assert len(sizes) == 10 * 3 and sorted({s for (s,) in sizes}) == [1800, 4100], (
        "10 series, 100 points a page each: 4,100 twice, then the rest"
    )
    store.close()


def test_rows_with_long_texts_are_read_in_smaller_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store of large histograms: a page's bytes stay near PAGE_BYTES, every row read once."""
    path = tmp_path / "old.db"
    histogram = json.dumps({"count": 1, "sum": 1.0, "bounds": list(range(1000)), "counts": [0] * 1001})  # 8 KB
    ids = write_legacy_store(
        path, 3, [LegacyPoint("h", RANK_0, T0 + i, None, step=i, histogram=histogram, kind="histogram") for i in range(3000)]
    )
    monkeypatch.setattr(row_buffer, "PAGE_BYTES", 1 << 20)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sizes, seen = [], []
    for page in row_buffer.pages(conn):
        sizes.append(len(page))
        seen += [row[0] for row in page]
    conn.close()
    assert seen == ids
    assert sizes[0] == 1024 and set(sizes[1:-1]) == {256}, sizes


# -- kill -9 ---------------------------------------------------------------------------------------

_CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from otel_recursive_metrics.store import row_buffer
row_buffer.SERIES_POINTS = 1024  # a transaction every ~10,000 points: many moments to be killed between and inside
from otel_recursive_metrics import PointStore
print("opening", flush=True)
PointStore(sys.argv[1]).close()
print("converted", flush=True)
"""


def converter(path: Path, *, log: bool = False) -> subprocess.Popen[str]:
    """A child process opening ``path`` for writing (so converting it), once it has said it is about to."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stderr = subprocess.PIPE if log else subprocess.DEVNULL
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline() == "opening\n"
    return child


def progress(path: Path) -> int:
    """Points the conversion has moved so far (0 before its first transaction, or once finished)."""
    try:
        return int(meta(path, "converted_points") or 0)
    except sqlite3.OperationalError:  # busy with a checkpoint or the vacuum: ask again
        return 0


def every_point_once(path: Path, expected: dict[str, np.ndarray]) -> None:
    """A reader finds each point of ``expected`` exactly once, with its time, step and value."""
    store = PointStore(path, readonly=True)
    try:
        columns = gather(iter_chunks(store))
    finally:
        store.close()
    order = np.argsort(columns.row_id, kind="stable")
    assert len(columns) == len(expected["id"]), f"{len(columns)} points read, {len(expected['id'])} written"
    assert np.array_equal(columns.row_id[order], expected["id"]), "each row id once"
    assert np.array_equal(columns.time_unix_nano[order], expected["time"])
    assert np.array_equal(columns.step[order], expected["step"])
    values = np.where(columns.is_int, columns.int_value.astype(np.float64), columns.value)[order]
    assert np.array_equal(values, expected["value"])


def expected_columns(path: Path) -> dict[str, np.ndarray]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, time_unix_nano, step, value FROM points ORDER BY id").fetchall()
    finally:
        conn.close()
    ids, times, steps, values = zip(*rows, strict=True)
    return {"id": np.array(ids), "time": np.array(times), "step": np.array(steps), "value": np.array(values, dtype=np.float64)}


def test_a_conversion_killed_at_any_moment_keeps_every_point_once_and_resumes(tmp_path: Path) -> None:
    """SIGKILL at twelve moments: inside a transaction or between two, before the first, in the vacuum; each time resumed.

    Two kills in three wait for the conversion to pass a random share of the points left (read
    from the file), so that they land mid-conversion however fast the machine is; the third
    comes after a random delay from the child's start. A store converted to the end is put back
    to its version-3 copy and the kills go on.
    """
    original = tmp_path / "v3.db"
    total = write_training_store(original, 3, 40_000, ranks=2, metrics=4)
    assert total == 400_000
    expected = expected_columns(original)
    path = tmp_path / "old.db"
    shutil.copy(original, path)
    rng = random.Random(21)
    kills: list[str] = []
    for attempt in range(12):
        if meta(path, "schema_version") == "4":
            kills.append("converted: back to version 3")
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            shutil.copy(original, path)
        before = progress(path)
        child = converter(path)
        try:
            if attempt % 3 != 2:
                target = before + int((total - before) * rng.uniform(0.05, 0.7))
                while progress(path) < target and child.poll() is None:
                    time.sleep(0.002)
            else:
                time.sleep(rng.uniform(0.0, 0.6))  # the start: imports, the first pages, the first move
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        kills.append(f"{before} -> {progress(path)} moved, version {meta(path, 'schema_version')}")
        every_point_once(path, expected)
    print(f"kills: {kills}")  # (seen with pytest -s)
    interrupted = [k for k in kills if k.endswith("version 3") and not k.endswith(" 0 moved, version 3")]
    assert len(interrupted) >= 4, f"too few kills landed mid-conversion: {kills}"
    store = PointStore(path)  # the last one resumes and completes it
    store.close()
    assert meta(path, "schema_version") == "4" and "points" not in tables(path)
    every_point_once(path, expected)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,), "vacuumed into incremental auto-vacuum, as new stores are"
    conn.close()
    assert path.stat().st_size < original.stat().st_size / 3, "the rows' pages went back to the file system"


def test_two_processes_converting_one_store_at_once_move_each_point_once(tmp_path: Path) -> None:
    """Two ranks opening one old store together: one's moves make the other read again, nothing is moved twice."""
    path = tmp_path / "old.db"
    write_training_store(path, 3, 20_000, ranks=2, metrics=4)
    expected = expected_columns(path)
    children = [converter(path, log=True) for _ in range(2)]
    logs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0 and out == "converted\n", err
        logs.append(err)
    print("\n".join(logs))  # (seen with pytest -s: whether one found the other's moves)
    assert meta(path, "schema_version") == "4"
    every_point_once(path, expected)
