"""The store's point identity: what makes two points one (a re-delivery) or two (distinct records).

Real batches into a real SQLite file. Records of one metric that share a timestamp (a log
replayed at one-second resolution) differ in value, step or id, and each is a point of its own;
a batch delivered again, or a dead letter replayed from its OTLP JSON (no steps, no extra
fields), adds nothing.
"""

from __future__ import annotations

from pathlib import Path

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import EXTRA, STEP, BatchBuilder, PointBatch

T = 1_700_000_000_000_000_000


def records(ids: range, *, times: int = 3) -> PointBatch:
    """Seed-style records ``r<i>`` cycling over ``times`` timestamps; value ``i % 4``."""
    b = BatchBuilder()
    res = b.resource({"training.run.id": "r"})
    scope = b.plain_scope("otel_recursive_metrics")
    metric = b.metric("replayed.loss", "", "", "gauge")
    for i in ids:
        b.add_point(res, scope, metric, "{}", 0, T + (i % times) * 10**9, float(i % 4), None, None, extra={"id": f"r{i}"})
    return b.build()


def test_records_at_one_time_are_distinct_by_value_or_id_and_once_each_when_written_again(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    first = records(range(0, 30))
    assert store.write_batch(first) == 30, "within one batch: ten points a timestamp, all kept"
    assert store.write_batch(records(range(30, 60))) == 30, "a later batch at the same times: kept too"
    assert store.write_batch(PointBatch.decode(first.encode())) == 0, "a batch delivered again adds nothing"
    assert store.write_batch(records(range(0, 60))) == 0
    assert sorted(p.extra["id"] for p in store.query("replayed.loss")) == sorted(f"r{i}" for i in range(60))


def test_a_batch_of_records_back_from_otlp_is_not_stored_again(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "m.db")
    original = records(range(12))
    assert store.write_batch(original) == 12
    from_otlp = PointBatch.decode(original.encode())
    for point in from_otlp.points:
        point[STEP] = point[EXTRA] = None  # OTLP carries neither
    assert store.write_batch(from_otlp, steps_unknown=True) == 0
    assert store.count() == 12
