"""The record format of the seed API (``submit_metric``, ``store_metric``): checked at the call.

A record is a dict:

- ``metric_name`` (or, as in the seed, ``metric_type`` when ``metric_name`` is absent): the
  metric's name, a non-empty string;
- ``value``: a number (``int``, ``float``, a NumPy scalar, a one-element tensor);
- optional ``step`` and ``epoch`` (non-negative integers), ``unit``, ``description``;
- optional ``timestamp``: ISO 8601 text (naive means UTC), a ``datetime`` or seconds since the
  epoch, between 1970 and 2262 (what the sinks can hold); added (ISO, UTC) when missing;
- optional ``id``: added (a UUID) when missing and returned;
- ``tags``: a list of strings (the seed's form) becomes the point attribute ``tags``; a mapping
  becomes point attributes, as do ``labels`` and ``attributes`` (values: strings, booleans,
  64-bit integers, floats, flat lists of those);
- every other field (``model``, ``metric_type``, ``id``, ...) is kept in the point's ``extra``.

:func:`prepare_record` refuses anything else with a
:class:`~otel_recursive_metrics.errors.MetricValueError` naming the field and the value, before
the record is queued: one bad record never reaches the worker, where it could cost the valid
records batched beside it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import MetricValueError
from ..model.resource import RANK_KEY, RUN_ID_KEY
from ..store import StoredPoint
from .values import INT64_MAX, check_attributes, check_time_unix_nano, next_time_unix_nano, to_index, to_number

__all__ = ["iso_time", "new_id", "parse_timestamp", "prepare_record", "record_from_point"]


def parse_timestamp(value: Any) -> int:
    """A record's ``timestamp`` in Unix nanoseconds, or MetricValueError naming the field."""
    when: dt.datetime
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise MetricValueError(
                f"timestamp={value!r}: expected ISO 8601 text (2024-01-15T10:00:00+00:00), a datetime or seconds since the epoch"
            ) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise MetricValueError(f"timestamp={value!r}: expected a finite number of seconds since the epoch")
        return round(float(value) * 1e6) * 1000
    else:
        raise MetricValueError(f"timestamp={value!r}: expected ISO 8601 text, a datetime or seconds since the epoch")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        utc = when.astimezone(dt.timezone.utc)
    except OverflowError:
        raise MetricValueError(f"timestamp={value!r}: a time between 1970-01-01 and 2262-04-11") from None
    return (calendar.timegm(utc.timetuple()) * 1_000_000 + utc.microsecond) * 1000


def new_id() -> str:
    """A unique id in UUID form: a random (version 4) prefix per process, then a counter.

    As unique as ``uuid4()`` across processes (74 random bits per process) and sequential
    within one, at a fraction of the cost (no system call per id).
    """
    global _id_prefix, _id_pid
    pid = os.getpid()
    if pid != _id_pid:  # a forked child must not repeat its parent's ids
        _id_pid = pid
        _id_prefix = str(uuid.uuid4())[:24]
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


_id_pid = 0
_id_prefix = ""
_id_counter = itertools.count(1)
_iso_second = -1
_iso_prefix = ""


def iso_time(time_unix_nano: int) -> str:
    """``time_unix_nano`` as ISO 8601 in UTC with microseconds, as the seed's timestamps were."""
    global _iso_second, _iso_prefix
    second, rest = divmod(time_unix_nano, 1_000_000_000)
    if second != _iso_second:
        _iso_prefix = dt.datetime.fromtimestamp(second, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _iso_second = second
    return f"{_iso_prefix}.{rest // 1000:06d}+00:00"


def prepare_record(metric_data: Any) -> tuple[dict[str, Any], str]:
    """Validate a submitted record and return ``(record to queue, id)``.

    Adds ``timestamp`` and ``id`` to ``metric_data`` itself when they are missing (as the seed
    did, so callers can read them back); everything else is done on a copy, so changing the
    dict after the call does not change what is stored. Raises MetricValueError naming the field.
    """
    if type(metric_data) is not dict and not isinstance(metric_data, Mapping):
        raise MetricValueError(f"metric_data={metric_data!r}: expected a dict with metric_name and value")
    name = metric_data.get("metric_name")
    if type(name) is not str or not name:
        name_field = "metric_name"
        if name is None and "metric_type" in metric_data:
            name, name_field = metric_data.get("metric_type"), "metric_type"
        if not isinstance(name, str) or not name.strip():
            shown = "missing" if name is None else repr(name)
            raise MetricValueError(
                f"{name_field}={shown}: expected a non-empty string naming the metric (the seed's metric_type is accepted too)"
            )
    record = dict(metric_data)
    if "value" not in record:
        raise MetricValueError(f"value=missing in metric {name!r}: expected a number")
    value = record["value"]
    if type(value) is not float:
        record["value"] = to_number("value", value)
    record["metric_name"] = name
    step = record.get("step")
    if step is not None and (type(step) is not int or not 0 <= step <= INT64_MAX):
        record["step"] = to_index("step", step)
    epoch = record.get("epoch")
    if epoch is not None and (type(epoch) is not int or not 0 <= epoch <= INT64_MAX):
        record["epoch"] = to_index("epoch", epoch)
    timestamp = record.get("timestamp")
    if timestamp is None:
        time_ns = next_time_unix_nano()
        if type(metric_data) is dict:
            metric_data["timestamp"] = iso_time(time_ns)
    else:
        # Kept as given, even when another record has it too: the store tells such records apart
        # by value, step and id (see store/chunk_write.py), and a record given again, id included,
        # is stored once.
        time_ns = check_time_unix_nano("timestamp", timestamp, parse_timestamp(timestamp))
    record["_time_unix_nano"] = time_ns
    metric_id = record.get("id")
    if metric_id is None:
        metric_id = new_id()
        if type(metric_data) is dict:
            metric_data["id"] = metric_id
        record["id"] = metric_id
    for key in ("tags", "labels", "attributes"):
        if isinstance(record.get(key), Mapping):
            record[key] = check_attributes(key, record[key])
    tags = record.get("tags")
    if tags is not None and not isinstance(tags, Mapping):
        # The seed's tags are a list of strings: keep them as one array attribute.
        tag_list = [tags] if isinstance(tags, str) else [str(t) for t in tags] if isinstance(tags, Iterable) else [str(tags)]
        attributes = dict(record["attributes"]) if isinstance(record.get("attributes"), Mapping) else {}
        attributes["tags"] = tag_list
        record["attributes"] = attributes
        del record["tags"]
    return record, str(metric_id)


def record_from_point(point: StoredPoint) -> dict[str, Any]:
    """A stored point as a seed-style record: its extra fields plus name, value, time, step."""
    record: dict[str, Any] = dict(point.extra or {})
    record["metric_name"] = point.metric
    record["value"] = point.value
    record["timestamp"] = iso_time(point.time_unix_nano)
    record["time_unix_nano"] = point.time_unix_nano
    if point.step is not None:
        record["step"] = point.step
    if point.epoch is not None:
        record["epoch"] = point.epoch
    attributes = dict(point.attributes)
    tags = attributes.pop("tags", None)
    if isinstance(tags, list):
        record["tags"] = tags
    elif tags is not None:
        attributes["tags"] = tags
    if attributes:
        record["attributes"] = attributes
    if point.unit:
        record["unit"] = point.unit
    record.setdefault("run_id", point.resource.get(RUN_ID_KEY))
    record.setdefault("rank", point.resource.get(RANK_KEY))
    return record
