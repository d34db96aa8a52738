"""Sizes stay bounded: attribute limits, an attribute set written once, drained queues shrink."""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.model.attributes import AttributeLimits, limit_attributes
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.pipeline.worker import Pipeline

from .helpers import wait_until


def queue_bytes_on_disk(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "queue").glob("slot-*.db*"))


def test_a_huge_attribute_is_cut_to_the_limit_and_counted(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    metrics = TrainingMetrics(attributes={"big": "x" * 1_000_000}, dir=data_dir, flush_interval_s=0.1)
    for step in range(400):
        metrics.log({"loss": 1.0}, step=step)
    assert metrics.flush(30.0)
    points = PointStore(data_dir / "metrics.db").query("loss")
    assert len(points) == 400 and {len(p.attributes["big"]) for p in points} == {4096}
    assert metrics.get_stats()["attributes_cut"] == 1
    assert any("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT" in r.getMessage() for r in caplog.records)
    metrics.close(10.0)


def test_the_sdk_attribute_limit_variables_are_honoured(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "5")
    config = load_config(dir=data_dir)
    assert (config.attribute_count_limit, config.attribute_value_length_limit) == (2, 5)
    metrics = TrainingMetrics(attributes={"a": "abcdefgh", "b": ["123456", 7], "c": "gone"}, dir=data_dir, flush_interval_s=0.1)
    metrics.log({"loss": 1.0}, step=0)
    assert metrics.flush(30.0)
    (point,) = PointStore(data_dir / "metrics.db").query("loss")
    assert point.attributes == {"a": "abcde", "b": ["12345", 7]}
    metrics.close(10.0)


def test_limit_attributes_keeps_what_fits_as_it_is() -> None:
    limits = AttributeLimits(count=3, value_length=4)
    assert limit_attributes({"a": "ok", "b": 1, "c": [True, "xy"]}, limits) == ({"a": "ok", "b": 1, "c": [True, "xy"]}, 0)
    assert limit_attributes({"d": "longer", "a": 1, "b": 2, "c": 3}, limits) == ({"a": 1, "b": 2, "c": 3}, 1)


def test_a_repeated_attribute_set_is_written_once_per_batch() -> None:
    b = BatchBuilder()
    res, sc, m = b.resource({}), b.scope("s"), b.metric("loss", "", "", "gauge")
    text = '{"big":"' + "x" * 1_000_000 + '"}'
    for i in range(400):
        b.add_point(res, sc, m, text, 0, i, 1.0, i)
    payload = b.build().encode()
    assert len(payload) < 1_100_000, f"{len(payload)} bytes: the attribute set was repeated per point"


def test_a_drained_queue_gives_its_space_back(data_dir: Path) -> None:
    # A burst of 1,000,000 points through the queue (not straight into the store), held there
    # while another process's transaction keeps the store locked, as a busy rank would. Noisy
    # values: the queue's payload is compressed columns (model/batch_codec.py), and a constant
    # curve would take next to no room.
    pipeline = Pipeline(load_config(dir=data_dir, flush_interval_s=30.0, batch_size=100, store_direct=False))
    metrics = TrainingMetrics(pipeline=pipeline)
    PointStore(data_dir / "metrics.db").close()
    other_rank = sqlite3.connect(data_dir / "metrics.db", isolation_level=None)
    other_rank.execute("BEGIN IMMEDIATE")
    names = [f"m{k}" for k in range(10)]
    rng = random.Random(5)
    for step in range(100_000):
        metrics.log({name: rng.random() for name in names}, step=step)
    assert pipeline.persist(60.0)
    peak = queue_bytes_on_disk(data_dir)
    other_rank.execute("ROLLBACK")
    other_rank.close()
    assert metrics.flush(120.0)
    assert PointStore(data_dir / "metrics.db").count() == 1_000_000
    assert peak > 5_000_000
    # The worker gives pages back at its syncs (every flush interval; a persist asks for one now).
    assert pipeline.persist(10.0)
    wait_until(lambda: queue_bytes_on_disk(data_dir) < 1_000_000, 30, f"the queue files to shrink (peak {peak} bytes)")
    pipeline.shutdown(10.0)
    assert queue_bytes_on_disk(data_dir) < 1_000_000
