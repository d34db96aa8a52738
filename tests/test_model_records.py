"""The batch's tables as named records, and metric kinds and run statuses as enums.

``tests/data/point_batch_v2.json`` is a queue payload written by the commit before the tables
became records (``PointBatch.encode()`` of :func:`fixture_batch`, JSON format 2, which
``encode_json()`` writes since the queue's payload became binary): today's code must read it,
and write the same batch to the same bytes. Nothing is pickled, so a record is a JSON array on
disk, as the lists before it were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_recursive_metrics.model.batch import EXTRA, HISTOGRAM, BatchBuilder, PointBatch, explicit_histogram, exponential_histogram
from otel_recursive_metrics.model.kinds import MetricKind, RunStatus
from otel_recursive_metrics.model.otlp import decode_request, encode_request
from otel_recursive_metrics.model.resource import RUN_EVENT_METRIC, RUN_PARAMS_METRIC
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.store.run_metadata import run_status

FIXTURE = Path(__file__).parent / "data" / "point_batch_v2.json"
T = 1_700_000_000_000_000_000


def fixture_batch() -> PointBatch:
    """One point of every kind, run metadata, steps, an extra field, two resources and scopes."""
    b = BatchBuilder()
    trainer = b.resource(
        {"service.name": "trainer", "training.run.id": "r1", "training.rank": 0}, "https://opentelemetry.io/schemas/1.21.0"
    )
    other = b.resource({"service.name": "trainer", "training.run.id": "r1", "training.rank": 1})
    scope = b.scope("otel_recursive_metrics", "1.0", {"library": "x"}, "https://example.com/scope")
    plain = b.plain_scope("opentelemetry.sdk")
    loss = b.metric("train.loss", "the loss", "1", MetricKind.GAUGE)
    tokens = b.metric("tokens", "", "{token}", MetricKind.SUM, 2, True)
    latency = b.metric("latency", "", "ms", MetricKind.HISTOGRAM, 2)
    sizes = b.metric("sizes", "", "By", MetricKind.EXPONENTIAL_HISTOGRAM, 1)
    params = b.metric(RUN_PARAMS_METRIC, "", "", MetricKind.GAUGE)
    event = b.metric(RUN_EVENT_METRIC, "", "", MetricKind.GAUGE)
    b.add_point(trainer, scope, loss, '{"split":"train"}', 0, T, 0.5, 3, 1, extra={"id": "a", "note": "é"})
    b.add_point(other, scope, loss, '{"split":"train"}', 0, T, 0.75, 3, 1)
    b.add_point(trainer, plain, tokens, "{}", T - 10**9, T, 2**40)
    hist = explicit_histogram(3, 6.0, 1.0, 3.0, [2.0], [1, 2])
    b.add_point(trainer, plain, latency, '{"route":"/"}', T - 10**9, T, None, histogram=hist)
    expo = exponential_histogram(2, 5.0, 1.0, 4.0, 1, 0, (0, [1, 1]), (-1, [0]), 0)
    b.add_point(trainer, plain, sizes, "{}", T - 10**9, T, None, histogram=expo)
    b.add_point(trainer, scope, params, "{}", 0, T, 0, extra={"params": {"lr": 0.1}})
    b.add_point(trainer, scope, event, "{}", 0, T, 0, extra={"event": "start", "pid": 1, "host": "h", "process": "p"})
    b.add_point(trainer, scope, event, "{}", 0, T + 1, 0, extra={"event": "end", "pid": 1, "host": "h", "process": "p", "status": "killed"})
    batch = b.build()
    batch.id = "fixture"
    return batch


def test_a_payload_written_before_the_records_is_read_and_written_again_to_the_same_bytes() -> None:
    payload = FIXTURE.read_bytes()
    assert fixture_batch().encode_json() == payload, "the builder writes what the commit before wrote"
    batch = PointBatch.decode(payload)
    assert batch.encode_json() == payload, "a decoded batch encodes to its own bytes"
    assert [m.kind for m in batch.metrics] == [
        MetricKind.GAUGE,
        MetricKind.SUM,
        MetricKind.HISTOGRAM,
        MetricKind.EXPONENTIAL_HISTOGRAM,
        MetricKind.GAUGE,
        MetricKind.GAUGE,
    ]
    assert all(type(m.kind) is MetricKind for m in batch.metrics)
    tokens = batch.metrics[1]
    assert (tokens.name, tokens.unit, tokens.temporality, tokens.monotonic) == ("tokens", "{token}", 2, True)
    assert batch.resources[0].attributes["training.rank"] == 0
    assert batch.resources[0].schema_url == "https://opentelemetry.io/schemas/1.21.0"
    assert (batch.scopes[0].name, batch.scopes[0].version, batch.scopes[0].attributes) == (
        "otel_recursive_metrics",
        "1.0",
        {"library": "x"},
    )
    assert batch.data_points() == 5


def test_a_payload_written_before_the_records_goes_to_the_store_and_to_otlp(tmp_path: Path) -> None:
    batch = PointBatch.decode(FIXTURE.read_bytes())
    store = PointStore(tmp_path / "m.db")
    assert store.write_batch(batch) == 5
    assert {p.metric: p.kind for p in store.query()} == {
        "train.loss": "gauge",
        "tokens": "sum",
        "latency": "histogram",
        "sizes": "exponential_histogram",
    }
    (run,) = store.runs()
    assert run["status"] == RunStatus.KILLED and run["params"] == {"lr": 0.1}
    store.close()
    request = encode_request(batch)
    metrics = {m.name: m.WhichOneof("data") for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    sent = {"train.loss": "gauge", "tokens": "sum", "latency": "histogram", "sizes": "exponential_histogram"}
    assert metrics == {**sent, RUN_PARAMS_METRIC: "gauge"}, "run events stay in the store"
    back = decode_request(request)
    assert sorted((m.name, m.kind) for m in back.metrics) == sorted((m.name, m.kind) for m in batch.metrics if m.name != RUN_EVENT_METRIC)
    assert [p[HISTOGRAM] for p in back.points if p[HISTOGRAM]] == [p[HISTOGRAM] for p in batch.points if p[HISTOGRAM]]


def test_an_unknown_metric_kind_is_refused_where_it_enters() -> None:
    with pytest.raises(ValueError, match="'counter' is not a valid MetricKind"):
        BatchBuilder().metric("loss", "", "", "counter")
    data = json.loads(FIXTURE.read_bytes())
    data["metrics"][0][3] = "counter"
    with pytest.raises(ValueError, match=r"a damaged point batch.*'counter'"):
        PointBatch.decode(json.dumps(data))


def test_a_lone_surrogate_in_a_table_becomes_a_question_mark_and_the_records_stay_records() -> None:
    b = BatchBuilder()
    res = b.resource({"host": "bad\ud800"})
    m = b.metric("loss\udfff", "", "", MetricKind.SUM, 1, True)
    # A tuple in a record's extra fields (kept as it came) once sent encode() round in circles.
    b.add_point(res, b.scope("s\ud800"), m, "{}", 0, T, 1.0, extra={"tags": ("a\ud800", "b")})
    batch = b.build()
    again = PointBatch.decode(batch.encode())
    assert again.metrics[0].name == batch.metrics[0].name == "loss?"
    assert again.points[0][EXTRA] == {"tags": ["a?", "b"]}
    assert batch.metrics[0].kind is MetricKind.SUM and batch.metrics[0].monotonic is True
    assert batch.resources[0].attributes == {"host": "bad?"} and batch.scopes[0].name == "s?"


def test_run_status_reads_stored_text_and_answers_with_members() -> None:
    ended = {"ended_unix_nano": 1, "pid": 1, "host": "h", "process": "p"}
    assert run_status([], None) is RunStatus.UNKNOWN
    assert run_status([{**ended, "status": "killed"}], None) is RunStatus.KILLED
    assert run_status([{**ended, "status": None}], None) is RunStatus.FINISHED
    # A status this version does not know (a later version's) counts as an end, as before.
    assert run_status([{**ended, "status": "preempted"}, {**ended, "status": "failed"}], None) is RunStatus.FAILED
    assert run_status([{**ended, "status": "preempted"}], None) is RunStatus.FINISHED
