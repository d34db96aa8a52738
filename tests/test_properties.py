"""Property-based tests (Hypothesis): what the call accepts, every sink can hold; what it refuses, it names.

- ``TrainingMetrics.log`` accepts a call exactly when every value is a number within 64 bits,
  every key a valid instrument name and the step a non-negative 64-bit integer; a refused call
  queues nothing and its error names the key or field.
- ``prepare_record`` (``submit_metric``/``store_metric``): a record it accepts converts, encodes
  as OTLP and writes into the store without error, so no accepted record can fail in the worker
  and cost its neighbours.
- ``load_config`` returns a Config or raises one ConfigError naming every bad setting.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_recursive_metrics import ConfigError, MetricValueError, PointStore, TrainingMetrics, load_config
from otel_recursive_metrics.config import SETTINGS
from otel_recursive_metrics.model.attributes import AttributeLimits
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.model.otlp import encode_request
from otel_recursive_metrics.pipeline.convert import add_record
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.training.records import prepare_record
from otel_recursive_metrics.training.values import INT64_MAX, INT64_MIN, valid_name

_DIR = Path(tempfile.mkdtemp(prefix="orm-properties-"))
# One pipeline that never wakes on its own: log() only appends, and the buffer shows what was queued.
_PIPELINE = Pipeline(load_config(dir=_DIR, flush_interval_s=3600.0, batch_size=10**9, max_buffer_items=10**7, handle_sigterm=False))
_METRICS = TrainingMetrics(pipeline=_PIPELINE)

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
not_numbers = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.integers(min_value=INT64_MAX + 1, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=INT64_MIN - 1),
    st.lists(st.floats(), min_size=2, max_size=3),
)
names = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-/]{0,20}", fullmatch=True), st.text(max_size=8))


def _is_number(value: Any) -> bool:
    return type(value) is float or (type(value) is int and INT64_MIN <= value <= INT64_MAX)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.dictionaries(names, st.one_of(numbers, not_numbers), min_size=1, max_size=4), step=st.integers(-5, 2**64))
def test_log_accepts_exactly_numbers_with_valid_names_and_steps(values: dict[str, Any], step: int) -> None:
    valid = all(_is_number(v) for v in values.values()) and all(valid_name(k) for k in values) and 0 <= step <= INT64_MAX
    before = len(_PIPELINE.buffer)
    try:
        _METRICS.log(values, step=step)
    except MetricValueError as exc:
        assert not valid, f"refused a valid call: {exc}"
        assert len(_PIPELINE.buffer) == before, "a refused call must queue nothing"
        text = str(exc)
        assert any(repr(k) in text or k in text for k in values) or "step" in text
    else:
        assert valid, "accepted an invalid call"
        assert len(_PIPELINE.buffer) == before + 1
    if len(_PIPELINE.buffer) > 100_000:
        _PIPELINE.buffer.items.clear()


attribute_values = st.one_of(
    st.text(max_size=10),
    st.booleans(),
    st.floats(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.lists(st.one_of(st.text(max_size=3), st.integers(-(2**66), 2**66)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
timestamps = st.one_of(
    st.none(),
    st.floats(min_value=-1e13, max_value=1e13),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(dt.timezone.utc)),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2400, 1, 1)).map(lambda d: d.isoformat()),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(st.text(min_size=1, max_size=20), st.none(), st.integers()),
    value=st.one_of(numbers, not_numbers),
    timestamp=timestamps,
    attributes=st.dictionaries(st.text(min_size=1, max_size=5), attribute_values, max_size=3),
    step=st.one_of(st.none(), st.integers(-3, 2**64)),
)
def test_an_accepted_record_never_fails_in_the_worker_or_a_sink(name: Any, value: Any, timestamp: Any, attributes: Any, step: Any) -> None:
    record: dict[str, Any] = {"metric_name": name, "value": value, "attributes": attributes}
    if timestamp is not None:
        record["timestamp"] = timestamp
    if step is not None:
        record["step"] = step
    try:
        prepared, _ = prepare_record(record)
    except MetricValueError:
        return
    builder = BatchBuilder()
    add_record(builder, prepared, {"service.name": "t"}, ("s", ""), AttributeLimits())
    batch = builder.build()
    encode_request(batch)  # OTLP can carry it
    with tempfile.TemporaryDirectory() as tmp:
        store = PointStore(Path(tmp) / "m.db")
        try:
            assert store.write_batch(batch) == 1
        except sqlite3.Error as exc:  # pragma: no cover - the property's failure
            raise AssertionError(f"the store refused an accepted record {record!r}: {exc}") from exc
        finally:
            store.close()
    assert 0 <= batch.points[0][5] <= INT64_MAX  # TIME
    assert type(batch.points[0][6]) in (int, float)  # VALUE


_settings_values = st.one_of(st.integers(-5, 10**10), st.floats(allow_nan=True), st.text(max_size=6), st.booleans(), st.none())


@settings(max_examples=200, deadline=None)
@given(
    options=st.dictionaries(
        st.sampled_from([s.name for s in SETTINGS if s.name not in ("dir", "store_path")]), _settings_values, max_size=5
    )
)
def test_a_configuration_is_valid_or_every_problem_is_named(options: dict[str, Any]) -> None:
    try:
        load_config(environ={}, dir=_DIR, **options)
    except ConfigError as exc:
        named = {p.split("=", 1)[0] for p in exc.problems}
        assert named <= set(options) | {"retry_max_delay_s", "otlp_client_key", "otlp_client_certificate"}
        assert named, exc.problems
        for problem in exc.problems:
            assert "expected" in problem or "needs" in problem
