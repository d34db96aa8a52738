"""The point batch's binary form (``model/batch_codec.py``): what goes in comes out, and damage is named.

- Round trips (Hypothesis): arbitrary batches (float values of any bit pattern, int64 values to
  the edges, integers past int64, bools, None; steps and epochs with and without None; series
  logging ints and floats alike; histogram and extra dicts) come back equal, point for point and
  in order: ints stay ints, floats keep their bits, None stays None.
- Earlier releases' payloads: JSON format 2 (the fixture) and format 1 still decode, and a queue
  an earlier release wrote in JSON is drained into the store by today's pipeline.
- Damage: every truncation and every flipped bit raise ``BatchFormatError`` naming what is
  wrong; bytes garbled behind a valid checksum never escape as another exception; a newer format
  version is refused with ``BatchVersionError``.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.model.batch import ATTRIBUTES, EXTRA, HISTOGRAM, STEP, VALUE, BatchBuilder, PointBatch, explicit_histogram
from otel_recursive_metrics.model.batch_codec import MAGIC, BatchFormatError, BatchVersionError, encode_points
from otel_recursive_metrics.model.kinds import MetricKind
from otel_recursive_metrics.queue.folder import DurableQueue

from .test_model_records import FIXTURE, fixture_batch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
T = 1_700_000_000_000_000_000


def key(value: Any, *, nan_payload: bool = True) -> Any:
    """A value as compared here: a float by its bits, a dict or list by its JSON text, the rest by type and value."""
    if type(value) is float:
        return ("float", struct.pack("<d", value) if nan_payload or not math.isnan(value) else "nan")
    if isinstance(value, (dict, list)):
        return ("json", json.dumps(value, allow_nan=True))
    return (type(value).__name__, value)


def assert_same(back: PointBatch, batch: PointBatch) -> None:
    assert (back.id, back.resources, back.scopes, back.metrics, back.attributes) == (
        batch.id,
        batch.resources,
        batch.scopes,
        batch.metrics,
        batch.attributes,
    )
    assert len(back.points) == len(batch.points)
    for number, (got, want) in enumerate(zip(back.points, batch.points, strict=True)):
        exact = not held_as_json(want)
        assert [key(v, nan_payload=exact) for v in got] == [key(v, nan_payload=exact) for v in want], f"point {number}: {got} != {want}"


def held_as_json(point: list[Any]) -> bool:
    """Whether no chunk holds ``point`` (a bool or wide integer value, a wide step): the payload's
    head keeps it as JSON, which keeps all but a NaN's payload."""
    value, step = point[VALUE], point[STEP]
    wide = type(value) is int and not INT64_MIN <= value <= INT64_MAX
    return type(value) is bool or wide or (step is not None and not INT64_MIN <= step <= INT64_MAX)


int64s = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, -1, 0, 1, INT64_MAX]))
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]),  # any NaN payload, -0.0
)
values = st.one_of(floats, int64s, st.none(), st.integers(INT64_MAX + 1, 2**70), st.integers(-(2**70), INT64_MIN - 1), st.booleans())
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=4))
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3))
dicts = st.one_of(st.none(), st.dictionaries(st.text(max_size=4), json_values, max_size=3))
tables = st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 3), st.integers(0, 2))
points = st.tuples(
    tables,
    st.one_of(st.just(0), int64s),  # start time
    int64s,  # time
    values,
    st.one_of(st.none(), int64s, st.just(INT64_MAX + 1)),  # step
    st.one_of(st.none(), st.integers(0, 100)),  # epoch
    dicts,  # histogram
    dicts,  # extra
)


@st.composite
def batches(draw: Any) -> PointBatch:
    """0 to 80 points of up to 3 resources, 2 scopes, 4 metrics and 3 attribute sets (series interleaved)."""
    b = BatchBuilder()
    for r in range(3):
        b.resource({"rank": r})
    for s in range(2):
        b.scope(f"s{s}")
    for m in range(4):
        b.metric(f"m{m}", "", "", MetricKind.GAUGE)
    for a in range(3):
        b.attributes(json.dumps({"k": a}))
    for (res, sc, m, attrs), start, time, value, step, epoch, histogram, extra in draw(st.lists(points, max_size=80)):
        b.batch.points.append([res, sc, m, attrs, start, time, value, step, epoch, histogram, extra])
    batch = b.build()
    batch.id = draw(st.text(min_size=1, max_size=10))
    return batch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_any_batch_comes_back_point_for_point(batch: PointBatch) -> None:
    payload = batch.encode()
    assert payload[:4] == MAGIC
    assert_same(PointBatch.decode(payload), batch)
    assert_same(PointBatch.decode(memoryview(bytearray(payload))), batch)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_what_json_format_2_keeps_the_binary_form_keeps(batch: PointBatch) -> None:
    """Where JSON is faithful (no NaN payload, no -0.0 lost), both forms decode to the same batch."""
    from_json = PointBatch.decode(batch.encode_json())
    from_binary = PointBatch.decode(from_json.encode())
    assert_same(from_binary, from_json)


def test_ints_floats_none_nan_and_wide_values_in_one_series_keep_their_order_and_types() -> None:
    b = BatchBuilder()
    res, sc, m = b.resource({}), b.scope("s"), b.metric("x", "", "", MetricKind.GAUGE)
    other = b.metric("y", "", "", MetricKind.GAUGE)
    logged = [1, 2.5, None, 2**70, True, math.nan, -0.0, 3, INT64_MAX, INT64_MIN, float("inf"), -(2**64)]
    for i, value in enumerate(logged):
        b.add_point(res, sc, m if i % 3 else other, "{}", 0, T + i, value, i if i % 2 else None)
    batch = b.build()
    back = PointBatch.decode(batch.encode())
    assert_same(back, batch)
    assert [type(p[VALUE]) for p in back.points] == [type(v) for v in logged]
    assert [p[STEP] for p in back.points] == [i if i % 2 else None for i in range(len(logged))]


def test_histograms_and_extra_fields_come_back_as_dicts() -> None:
    b = BatchBuilder()
    res, sc = b.resource({}), b.scope("s")
    h = b.metric("latency", "", "ms", MetricKind.HISTOGRAM, 2)
    g = b.metric("loss", "", "", MetricKind.GAUGE)
    hist = explicit_histogram(3, 6.0, 1.0, 3.0, [2.0], [1, 2])
    b.add_point(res, sc, h, '{"route":"/"}', T - 1, T, None, histogram=hist)
    b.add_point(res, sc, g, "{}", 0, T, 0.5, 1, extra={"id": "a", "note": "é", "nested": {"x": [1, None]}})
    b.add_point(res, sc, h, '{"route":"/"}', T - 1, T + 1, None, histogram=hist)
    batch = b.build()
    back = PointBatch.decode(batch.encode())
    assert back.points[0][HISTOGRAM] == hist and back.points[2][HISTOGRAM] == hist
    assert back.points[1][EXTRA] == {"id": "a", "note": "é", "nested": {"x": [1, None]}}
    assert back.points[1][HISTOGRAM] is None and back.points[0][EXTRA] is None
    assert back.attributes[back.points[0][ATTRIBUTES]] == '{"route":"/"}'


def test_a_lone_surrogate_in_a_histogram_or_extra_field_becomes_a_question_mark() -> None:
    b = BatchBuilder()
    res, sc, m = b.resource({}), b.scope("s"), b.metric("loss", "", "", MetricKind.GAUGE)
    b.add_point(res, sc, m, "{}", 0, T, 1.0, 1, extra={"note": "bad\ud800"})
    batch = b.build()
    assert PointBatch.decode(batch.encode()).points[0][EXTRA] == {"note": "bad?"}
    assert batch.points[0][EXTRA] == {"note": "bad?"}, "the batch in memory is mended too, for the other sinks"


def test_the_empty_batch_and_a_batch_of_points_json_alone_holds() -> None:
    empty = PointBatch(id="e")
    assert_same(PointBatch.decode(empty.encode()), empty)
    odd = PointBatch(points=[[0, 0, 0, 0, 0, T, True, None, None, None, None], [0, 0, 0, 0, 0, T, 2**64, 1, None, None, None]], id="o")
    assert_same(PointBatch.decode(odd.encode()), odd)


# -- earlier releases ------------------------------------------------------------------------------


def test_json_formats_1_and_2_of_earlier_releases_still_decode() -> None:
    batch = fixture_batch()
    v2 = FIXTURE.read_bytes()
    assert v2.startswith(b'{"v":2')
    assert_same(PointBatch.decode(v2), PointBatch.decode(batch.encode()))
    # Format 1 wrote each point's attribute text in the point.
    data = json.loads(v2)
    data["v"] = 1
    for point in data["points"]:
        point[ATTRIBUTES] = data["attributes"][point[ATTRIBUTES]]
    del data["attributes"]
    assert_same(PointBatch.decode(json.dumps(data).encode()), PointBatch.decode(v2))
    assert_same(PointBatch.decode(json.dumps(data)), PointBatch.decode(v2))


def test_a_queue_an_earlier_release_wrote_in_json_is_drained_into_the_store(data_dir: Path) -> None:
    """Slot files are as they were; only their payloads change: JSON records left by a process
    of an earlier release (crashed, its slot orphaned) reach the store through today's worker."""
    old = DurableQueue(data_dir / "queue", ("store",), max_bytes=1 << 30)
    batches = []
    for n in range(3):
        b = BatchBuilder()
        res, sc, m = b.resource({"training.run.id": "old"}), b.scope("s"), b.metric("loss", "", "", MetricKind.GAUGE)
        for step in range(n * 100, n * 100 + 100):
            b.add_point(res, sc, m, "{}", 0, T + step, step / 2, step)
        batches.append(b.build())
    v1 = json.loads(batches[2].encode_json())
    v1["v"] = 1
    for point in v1["points"]:
        point[ATTRIBUTES] = v1["attributes"][point[ATTRIBUTES]]
    del v1["attributes"]
    payloads = [batches[0].encode_json(), batches[1].encode_json(), json.dumps(v1).encode()]
    old.append([(T, 100, payload) for payload in payloads], drop_oldest=False)
    old.close()
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.1)
    metrics.log({"loss": 9.0}, step=1_000)
    assert metrics.flush(30.0)
    metrics.close(10.0)
    points = PointStore(data_dir / "metrics.db", readonly=True).query("loss")
    assert len(points) == 301 and sorted(p.step for p in points if p.step is not None) == [*range(300), 1_000]
    assert {p.step: p.value for p in points}[123] == 61.5


# -- damage ----------------------------------------------------------------------------------------


def sample() -> bytes:
    b = BatchBuilder()
    res, sc = b.resource({"host": "h"}), b.scope("s")
    loss, tokens = b.metric("loss", "", "", MetricKind.GAUGE), b.metric("tokens", "", "", MetricKind.SUM, 2, True)
    for step in range(40):
        b.add_point(res, sc, loss, "{}", 0, T + step, step / 3, step)
        b.add_point(res, sc, tokens, "{}", T, T + step, step * 1000, step, extra={"i": step} if step % 7 == 0 else None)
    return b.build().encode()


def with_crc(data: bytes) -> bytes:
    """``data`` with its header's CRC-32 recomputed as the format defines it."""
    crc = zlib.crc32(data[24:], zlib.crc32(data[:20]))
    return data[:20] + struct.pack("<I", crc) + data[24:]


def test_every_truncation_and_every_flipped_bit_is_refused_with_a_named_error() -> None:
    data = sample()
    for length in range(len(data)):
        with pytest.raises(BatchFormatError):
            PointBatch.decode(data[:length])
    for position in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            with pytest.raises(BatchFormatError):
                PointBatch.decode(bytes(damaged))
    with pytest.raises(BatchFormatError, match="checksum mismatch"):
        PointBatch.decode(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BatchFormatError, match="neither binary"):
        PointBatch.decode(b"PK\x03\x04" + data[4:])
    with pytest.raises(BatchFormatError, match="shorter than the 24-byte header"):
        PointBatch.decode(MAGIC + b"\x03")
    with pytest.raises(BatchFormatError, match="chunks end at byte"):
        PointBatch.decode(with_crc(data + b"xyz"))


def test_a_newer_format_version_is_refused_by_name() -> None:
    data = bytearray(sample())
    data[4] = 4
    with pytest.raises(BatchVersionError, match=r"format version 4; .* reads up to version 3"):
        PointBatch.decode(bytes(data))


def test_headers_garbled_behind_a_valid_checksum_are_named() -> None:
    data = sample()

    def header(**fields: int) -> bytes:
        magic, version, reserved, count, runs, head, _ = struct.unpack_from("<4sB3sIIII", data)
        values = {"version": version, "count": count, "runs": runs, "head": head, **fields}
        start = struct.pack("<4sB3sIII", magic, values["version"], reserved, values["count"], values["runs"], values["head"])
        return with_crc(start + b"\0\0\0\0" + data[24:])

    with pytest.raises(BatchFormatError, match="version 2"):
        PointBatch.decode(header(version=2))
    with pytest.raises(BatchFormatError, match="not each of 0 to 80"):
        PointBatch.decode(header(count=81))
    with pytest.raises(BatchFormatError):
        PointBatch.decode(header(runs=3))
    with pytest.raises(BatchFormatError, match="too short"):
        PointBatch.decode(header(runs=1000))
    with pytest.raises(BatchFormatError):
        PointBatch.decode(header(head=5))
    with pytest.raises(BatchFormatError, match="reserved"):
        PointBatch.decode(with_crc(data[:5] + b"\1" + data[6:]))


def test_a_head_that_is_not_a_batchs_is_named() -> None:
    def payload(head: Any) -> bytes:
        return encode_points(head, [])

    with pytest.raises(BatchFormatError, match="expected an object"):
        PointBatch.decode(payload([1, 2]))
    with pytest.raises(BatchFormatError, match="rest is not a list"):
        PointBatch.decode(payload({"rest": [[1]]}))
    with pytest.raises(BatchFormatError, match="a damaged point batch: KeyError"):
        PointBatch.decode(payload({"id": "x"}))
    base = {"id": "x", "resources": [], "scopes": [], "metrics": [["m", "", "", "counter", 0, False]], "attributes": []}
    with pytest.raises(BatchFormatError, match="'counter'"):
        PointBatch.decode(payload(base))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bytes_garbled_behind_a_valid_checksum_never_escape_as_another_exception(data: st.DataObject) -> None:
    payload = bytearray(sample())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(24, len(payload)))
        payload = payload[:cut] + payload[cut + data.draw(st.integers(0, 40)) :]
    try:
        PointBatch.decode(with_crc(bytes(payload)))
    except BatchFormatError:
        pass
