"""The timestamp bound, probed at its edges: what the store can hold is accepted, the rest refused at the call.

A record's ``timestamp`` becomes Unix nanoseconds, which the store keeps in a signed 64-bit
INTEGER: the last instant it holds is 2**63 - 1 ns, 2262-04-11T23:47:16.854775807Z (the record
API reads microseconds, so ...16.854775Z is the last one it can name). OTLP's field is unsigned
and would go on to 2**64 - 1 ns (2554-07-21). A bound widened to the unsigned one accepts the
years in between at the call and fails later, in the worker or in ``write_batch``
(``OverflowError``), so the edges and the gap between 2262 and 2554 are probed here, in every
form a timestamp takes (ISO text, ``datetime``, seconds since the epoch), through both record
APIs: ``submit_metric`` (queued) and ``store_metric`` (written at the call).
``TrainingMetrics.log`` takes no timestamp (it uses the clock), so it has no such edge.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import MetricValueError, PointStore
from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.metrics_store import MetricsStore
from otel_recursive_metrics.pipeline.worker import Pipeline

UTC = dt.timezone.utc
INT64_MAX = 2**63 - 1  # written out, not imported: the bound under test
#: The last microsecond at or before 2**63 - 1 ns.
LAST_MICROSECOND_NS = INT64_MAX // 1000 * 1000

ACCEPTED = [
    ("2262-04-11T23:47:16.854775807Z", LAST_MICROSECOND_NS),  # 2**63 - 1 ns, read to the microsecond
    ("2262-04-11T23:47:16.854775Z", LAST_MICROSECOND_NS),
    ("2262-04-11T23:47:16.854775+00:00", LAST_MICROSECOND_NS),
    (dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC), LAST_MICROSECOND_NS),
    (dt.datetime(2262, 4, 11, 23, 47, 16), 9_223_372_036_000_000_000),  # naive means UTC
    (9_223_372_036, 9_223_372_036_000_000_000),  # the last whole second, in seconds since the epoch
    (9_223_372_036.5, 9_223_372_036_500_000_000),
]

# Each is past 2**63 - 1 ns and (but the last two) within 2**64 - 1 ns: refused only by the signed bound.
REFUSED = [
    "2262-04-11T23:47:16.854776Z",  # the first microsecond past the bound
    "2262-04-11T23:47:17Z",
    "2262-04-12T00:00:00Z",
    "2300-01-01T00:00:00Z",
    "2400-02-29T12:00:00+02:00",
    "2554-07-21T23:34:33.709551Z",  # the last microsecond under 2**64 ns
    dt.datetime(2262, 4, 11, 23, 47, 16, 854776, tzinfo=UTC),
    dt.datetime(2300, 1, 1, tzinfo=UTC),
    dt.datetime(2500, 6, 1),  # naive: UTC
    9_223_372_037,  # the first whole second past the bound
    10_413_792_000,  # 2300-01-01 in seconds
    15_000_000_000.0,  # 2445
    18_446_744_073,  # the last whole second under 2**64 ns
    "2554-07-21T23:34:34Z",  # past 2**64 ns as well
    18_446_744_074,
]


def _id(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return f"datetime-{value.isoformat()}"
    return f"iso-{value}" if isinstance(value, str) else f"seconds-{value}"


def collector(data_dir: Path) -> AsyncMetricsCollector:
    return AsyncMetricsCollector({}, pipeline=Pipeline(load_config(dir=data_dir, flush_interval_s=0.05)))


def test_the_bounds_in_the_table_are_what_the_module_says() -> None:
    """The probes above sit where they claim (guards this file against a typo in a date)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    last = epoch + dt.timedelta(microseconds=INT64_MAX // 1000)
    assert last == dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
    first_past_unsigned = epoch + dt.timedelta(microseconds=(2**64 - 1) // 1000 + 1)
    assert first_past_unsigned == dt.datetime(2554, 7, 21, 23, 34, 33, 709552, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "timestamp", "expected_ns"), [(i, v, n) for i, (v, n) in enumerate(ACCEPTED)], ids=[_id(v) for v, _ in ACCEPTED]
)
def test_the_last_instant_the_store_holds_is_accepted_and_stored(data_dir: Path, case: int, timestamp: Any, expected_ns: int) -> None:
    # A metric name of its own per case: a record of a metric at the instant of the previous one
    # (the cases share instants) would be moved on a nanosecond, as two points.
    name = f"edge{case}"
    c = collector(data_dir)
    c.submit_metric({"metric_name": name, "value": 1.0, "step": 1, "timestamp": timestamp})
    assert c.flush(20.0), "accepted at the call, so delivered: nothing dropped or dead-lettered"
    assert c.get_stats()["dropped_points"] == {} and c.get_stats()["dead_lettered_points"] == {}
    assert [p.time_unix_nano for p in PointStore(data_dir / "metrics.db").query(name)] == [expected_ns]
    c.stop(timeout=10)

    direct = MetricsStore(path=data_dir / "direct.db")
    metric_id = direct.store_metric({"metric_name": f"{name}.direct", "value": 2.0, "timestamp": timestamp})
    found = direct.get_metric(metric_id)
    assert found is not None and found["time_unix_nano"] == expected_ns
    direct.close()


@pytest.mark.parametrize("timestamp", REFUSED, ids=[_id(v) for v in REFUSED])
def test_a_time_past_2262_is_refused_at_the_call(data_dir: Path, timestamp: Any) -> None:
    c = collector(data_dir)
    for step in range(3):
        c.submit_metric({"metric_name": "good", "value": float(step), "step": step})
    with pytest.raises(MetricValueError, match=r"timestamp=.*2262-04-11"):
        c.submit_metric({"metric_name": "late", "value": 1.0, "step": 9, "timestamp": timestamp})
    assert c.flush(20.0), "the records beside the refused one are delivered, nothing lost"
    assert c.get_stats()["dropped_points"] == {} and c.get_stats()["dead_lettered_points"] == {}
    store = PointStore(data_dir / "metrics.db")
    assert [p.step for p in store.query("good")] == [0, 1, 2] and store.query("late") == []
    c.stop(timeout=10)

    direct = MetricsStore(path=data_dir / "direct.db")
    direct.store_metric({"metric_name": "good", "value": 1.0})
    with pytest.raises(MetricValueError, match=r"timestamp=.*2262-04-11"):
        direct.store_metric({"metric_name": "late", "value": 1.0, "timestamp": timestamp})
    with pytest.raises(MetricValueError, match=r"timestamp=.*2262-04-11"):
        direct.store_metrics([{"metric_name": "good", "value": 2.0}, {"metric_name": "late", "value": 1.0, "timestamp": timestamp}])
    assert direct.store.count() == 1, "a refused record writes nothing, nor does the call it is part of"
    direct.close()
