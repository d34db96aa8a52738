"""A store written by a newer version: readers refuse it in one line, writers refuse it untouched."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter, TrainingMetrics, errors
from otel_recursive_metrics.errors import ConfigError
from otel_recursive_metrics.metrics_store import MetricsStore
from otel_recursive_metrics.store.schema import SCHEMA_VERSION

from .conftest import require_module
from .helpers import run_cli


def _newer_store(data_dir: Path, version: str = "99") -> Path:
    with TrainingMetrics(dir=data_dir, flush_interval_s=0.05) as metrics:
        for step in range(5):
            metrics.log({"loss": 1.0 / (step + 1)}, step=step)
    db = data_dir / "metrics.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.close()  # the last connection: checkpointed, no -wal left
    assert not Path(f"{db}-wal").exists()
    return db


def _fingerprint(db: Path) -> tuple[str, int]:
    return hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns


def _stored_version(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def _assert_the_line(text: str, db: Path) -> None:
    assert "Traceback" not in text
    assert text.strip().count("\n") == 0, f"one line expected: {text!r}"
    assert str(db) in text and "schema version 99" in text and f"up to version {SCHEMA_VERSION}" in text and "upgrade" in text


@pytest.mark.parametrize("command", [["query"], ["runs"], ["metrics"], ["query", "--metric", "loss", "--format", "json"]])
def test_read_commands_refuse_a_newer_store_in_one_line(data_dir: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    db = _newer_store(data_dir)
    code, out, err = run_cli(capsys, *command, "--store", str(db))
    assert code == 2 and out == ""
    _assert_the_line(err, db)
    assert err.startswith("otel-recursive-metrics: error: store ")


def test_the_store_api_refuses_to_read_a_newer_store(data_dir: Path) -> None:
    db = _newer_store(data_dir)
    with pytest.raises(errors.StoreVersionError) as caught:
        PointStore(db, readonly=True)
    _assert_the_line(str(caught.value), db)
    assert (caught.value.version, caught.value.supported) == (99, SCHEMA_VERSION)


def test_a_version_that_is_not_a_number_is_refused_too(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _newer_store(data_dir, "4.0-beta")
    code, _, err = run_cli(capsys, "runs", "--store", str(db))
    assert code == 2 and "schema version '4.0-beta'" in err


def test_ui_refuses_to_start_on_a_newer_store(data_dir: Path) -> None:
    require_module("starlette", "ui")
    require_module("uvicorn", "ui")
    require_module("plotly", "ui")
    db = _newer_store(data_dir)
    # A child process: a view that wrongly starts serves until killed, and the timeout fails the test.
    try:
        done = subprocess.run(
            [sys.executable, "-m", "otel_recursive_metrics", "ui", "--store", str(db), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"ui started on a store of a newer version: {exc.stdout!r}")
    assert done.returncode == 2 and "serving" not in done.stdout
    _assert_the_line(done.stderr, db)


def test_the_web_view_answers_a_newer_store_with_the_line(data_dir: Path) -> None:
    require_module("starlette", "ui")
    require_module("uvicorn", "ui")
    require_module("plotly", "ui")
    from otel_recursive_metrics.ui import UIServer

    db = _newer_store(data_dir)
    with UIServer(db, port=0) as server:
        try:
            urllib.request.urlopen(f"{server.url}api/runs", timeout=30)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read())
        else:
            pytest.fail("the web view read a store of a newer version")
    assert status == 503
    assert "schema version 99" in body["error"] and f"up to version {SCHEMA_VERSION}" in body["error"]


def _writers(data_dir: Path) -> dict[str, Any]:
    db = data_dir / "metrics.db"
    return {
        "PointStore": lambda: PointStore(db),
        "TrainingMetrics": lambda: TrainingMetrics(dir=data_dir),
        "RecursiveMetricExporter": lambda: RecursiveMetricExporter(dir=data_dir),
        "MetricsStore": lambda: MetricsStore(path=db),
    }


@pytest.mark.parametrize("writer", ["PointStore", "TrainingMetrics", "RecursiveMetricExporter", "MetricsStore"])
def test_writers_refuse_a_newer_store_at_construction_and_never_change_it(data_dir: Path, writer: str) -> None:
    db = _newer_store(data_dir)
    before = _fingerprint(db)
    with pytest.raises(ConfigError) as caught:
        _writers(data_dir)[writer]()
    (problem,) = caught.value.problems
    assert str(db) in problem and "schema version 99" in problem and f"up to version {SCHEMA_VERSION}" in problem
    assert _fingerprint(db) == before
    assert _stored_version(db) == "99"
    # (Reading the version may leave SQLite's empty -wal and -shm index beside it, as any reader does.)
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "nothing was written to the store's log"


def test_a_store_of_our_version_or_older_still_opens(data_dir: Path) -> None:
    db = _newer_store(data_dir, str(SCHEMA_VERSION - 1))
    assert PointStore(db, readonly=True).count() == 5
    store = PointStore(db)
    store.close()
    assert _stored_version(db) == str(SCHEMA_VERSION)
