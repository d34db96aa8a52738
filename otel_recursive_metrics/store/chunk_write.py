"""A batch's points into chunks, once each: the hot part of :meth:`PointStore.write_batch`.

The batch's points (lists, see :mod:`otel_recursive_metrics.model.point`) become NumPy columns,
one pass per field in C (``map`` over ``operator.itemgetter``: no Python code per point),
are sorted by series with one stable ``lexsort`` (points keep their order within a series), and
each series' slice becomes one :class:`~otel_recursive_metrics.model.chunk.SeriesChunk`. A
series whose values mix integers and floats gets one chunk per kind, so integers stay exact.

**Idempotence.** A point's identity is its series, time, step, start time, value and extra
fields (a submitted record's ``id``): records that share a time but differ in value, step or id
are distinct points. A batch the store already holds (delivered again after a crash, a dead
letter replayed twice) must add nothing. Training data comes in time order, so a new chunk's
earliest point is normally later than anything its series holds: nothing of it can be a
duplicate, and the check costs nothing (the writer remembers each series' latest time; a series
it has not written yet costs one indexed lookup of the chunk index's ``max_time``). Only a chunk
that overlaps in time what its series holds, or repeats a time within itself, is compared point
by point (:func:`_new_points`) against the stored chunks of that time range.
"""

from __future__ import annotations

import json
import math
import operator
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..model.batch import ATTRIBUTES, EPOCH, EXTRA, HISTOGRAM, METRIC, RESOURCE, SCOPE, START_TIME, STEP, TIME, VALUE
from ..model.chunk import SeriesChunk
from .chunk_index import HEAD_BELOW, ChunkRow, SeriesKey, insert_chunks, insert_rows, take_row_ids
from .head import HEAD_TABLE, HeadPart, head_rows, rows_of_chunk, stored_head_chunks

__all__ = ["series_chunks", "write_points"]


def _ids(indexes: Sequence[int], table: Sequence[int]) -> np.ndarray:
    """A field that indexes one of the batch's tables, as the store's ids."""
    positions = np.array(indexes, dtype=np.int64)
    return np.asarray(table, dtype=np.int64)[positions] if len(table) else positions


def _optional_ints(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Integers that may be None: the numbers (0 where None) and a mask (None if none is None)."""
    nones = values.count(None)
    if not nones:
        return np.array(values, dtype=np.int64), None
    if nones == len(values):  # the usual case for epochs, and for steps outside TrainingMetrics
        return np.zeros(nones, np.int64), np.ones(nones, bool)
    column = np.array(values, dtype=object)
    missing = np.frompyfunc(lambda v: v is None, 1, 1)(column).astype(bool)
    column[missing] = 0
    return column.astype(np.int64), missing


class _Values(NamedTuple):
    """A batch's value field as columns."""

    numbers: np.ndarray  # float64, or int64 when every value is an integer
    missing: np.ndarray | None  # True where the point has no value (None), or None if every point has one
    is_int: np.ndarray | None  # where integers and floats mix: True at the integers (their numbers in ``ints``)
    ints: np.ndarray | None


def _values(values: list[Any]) -> _Values:
    """The value field as columns: one kind where the batch has one (the usual case), both where they mix."""
    kinds = set(map(type, values))
    missing = None
    if type(None) in kinds:
        column = np.array(values, dtype=object)
        missing = np.frompyfunc(lambda v: v is None, 1, 1)(column).astype(bool)
        column[missing] = 0
        kinds.discard(type(None))
        values = column.tolist()
    if kinds <= {int, bool}:
        return _Values(np.array(values, dtype=np.int64), missing, None, None)
    if kinds <= {float}:
        return _Values(np.array(values, dtype=np.float64), missing, None, None)
    is_int = np.fromiter((type(v) is not float for v in values), bool, len(values))
    floats = np.array([v if type(v) is float else 0.0 for v in values], dtype=np.float64)
    ints = np.array([0 if type(v) is float else v for v in values], dtype=np.int64)
    return _Values(floats, missing, is_int, ints)


def _texts(fields: Sequence[Any]) -> list[str | None] | None:
    """A histogram or extra field as JSON text per point, or None if no point has one."""
    if not any(fields):
        return None
    return [None if f is None else json.dumps(f) for f in fields]


@dataclass
class Split:
    """A batch's points by where they go: a chunk per series of :data:`~.chunk_index.HEAD_BELOW` points or more, the rest to the head."""

    chunks: list[tuple[SeriesKey, SeriesChunk]]
    head: HeadPart | None


def series_chunks(
    points: Sequence[Any], metric_ids: Sequence[int], res_ids: Sequence[int], scope_ids: Sequence[int], attr_ids: Sequence[int]
) -> Split:
    """``points`` as one chunk per series (and value kind) and head rows, points in their order within a series; no row ids yet."""
    n = len(points)
    if not n:
        return Split([], None)

    # One pass per field (``map`` over ``itemgetter`` in C); a field indexing a table of one entry
    # (one resource, scope or attribute set in the batch: the usual case) is not read at all.
    def field(index: int) -> list[Any]:
        return list(map(operator.itemgetter(index), points))

    tables = (metric_ids, res_ids, scope_ids, attr_ids)
    key_columns = [
        np.full(n, table[0], np.int64) if len(table) == 1 else _ids(field(index), table)
        for index, table in zip((METRIC, RESOURCE, SCOPE, ATTRIBUTES), tables, strict=True)
    ]
    times = np.fromiter(map(operator.itemgetter(TIME), points), np.int64, n)
    starts, _ = _optional_ints(field(START_TIME))
    steps, step_missing = _optional_ints(field(STEP))
    epochs, epoch_missing = _optional_ints(field(EPOCH))
    values = _values(field(VALUE))
    histograms, extras = _texts(field(HISTOGRAM)), _texts(field(EXTRA))
    order = np.lexsort((key_columns[3], key_columns[2], key_columns[1], key_columns[0]))  # stable: points keep their order
    sorted_keys = np.stack([k[order] for k in key_columns])
    starts_at = np.concatenate(([0], np.flatnonzero(np.any(sorted_keys[:, 1:] != sorted_keys[:, :-1], axis=0)) + 1))
    sizes = np.diff(np.append(starts_at, n))
    keys = [SeriesKey(*map(int, column)) for column in sorted_keys[:, starts_at].T.tolist()]
    columns = (times, starts, steps, step_missing, epochs, epoch_missing)
    split = Split([], None)
    for index in np.flatnonzero(sizes >= HEAD_BELOW).tolist():
        lo = int(starts_at[index])
        for rows, integer in _by_kind(order[lo : lo + int(sizes[index])], values):
            split.chunks.append((keys[index], _chunk(rows, integer, columns, values, histograms, extras)))
    small = np.flatnonzero(sizes < HEAD_BELOW)
    if len(small):
        split.head = _head_part(small, sizes, keys, order, columns, field(VALUE), (histograms, extras))
    return split


def _by_kind(rows: np.ndarray, values: _Values) -> list[tuple[np.ndarray, bool]]:
    """A series' points (``rows``) by value kind: ``[(rows, is integer)]``, one entry unless it mixes kinds.

    A point without a value goes with the series' kind (with the floats where it mixes).
    """
    if values.is_int is None or values.ints is None:
        return [(rows, values.numbers.dtype.kind == "i")]
    is_int = values.is_int[rows]
    if values.missing is not None:
        present = ~values.missing[rows]
        ints, floats = is_int & present, ~is_int & present
    else:
        ints, floats = is_int, ~is_int
    if not floats.any():
        return [(rows, True)]
    if not ints.any():
        return [(rows, False)]
    return [(rows[ints], True), (rows[~ints], False)]


def _chunk(
    rows: np.ndarray,
    integer: bool,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None],
    values: _Values,
    histograms: list[str | None] | None,
    extras: list[str | None] | None,
) -> SeriesChunk:
    """The points at ``rows`` as one chunk; ``integer``: its values are the exact integers."""
    times, starts, steps, step_missing, epochs, epoch_missing = columns
    listed = rows.tolist() if histograms is not None or extras is not None else None
    return SeriesChunk(
        times[rows],
        values.ints[rows] if integer and values.ints is not None else values.numbers[rows],
        start_time_unix_nano=starts[rows],
        step=steps[rows],
        step_missing=None if step_missing is None else step_missing[rows],
        epoch=epochs[rows],
        epoch_missing=None if epoch_missing is None else epoch_missing[rows],
        value_missing=None if values.missing is None else values.missing[rows],
        histogram=None if histograms is None or listed is None else [histograms[i] for i in listed],
        extra=None if extras is None or listed is None else [extras[i] for i in listed],
    )


def _head_part(
    small: np.ndarray,
    sizes: np.ndarray,
    keys: list[SeriesKey],
    order: np.ndarray,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None],
    raw_values: Sequence[Any],
    texts: tuple[list[str | None] | None, list[str | None] | None],
) -> HeadPart:
    """The small series' points as flat lists in series order, with each series' segment and time range."""
    times, starts, steps, step_missing, epochs, epoch_missing = columns
    segment = np.repeat(np.arange(len(sizes)), sizes)
    picked = order[np.isin(segment, small)]
    lengths = sizes[small]
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    t = times[picked]
    firsts = bounds[:-1]
    later = np.ones(len(t), bool)
    if len(t) > 1:
        later[1:] = t[1:] > t[:-1]
    later[firsts] = True  # a segment's first point has nothing before it
    broken = np.zeros(len(small), bool)
    broken[np.repeat(np.arange(len(small)), lengths)[~later]] = True

    def optional(numbers: np.ndarray, missing: np.ndarray | None) -> list[int | None]:
        listed: list[int | None] = numbers[picked].tolist()
        if missing is None:
            return listed
        return [None if m else v for v, m in zip(listed, missing[picked].tolist(), strict=True)]

    histograms, extras = texts
    chosen = picked.tolist()
    return HeadPart(
        keys=[keys[i] for i in small.tolist()],
        bounds=bounds.tolist(),
        min_time=np.minimum.reduceat(t, firsts).tolist(),
        max_time=np.maximum.reduceat(t, firsts).tolist(),
        increasing=(~broken).tolist(),
        start=starts[picked].tolist(),
        time=t.tolist(),
        value=[raw_values[i] for i in chosen],
        step=optional(steps, step_missing),
        epoch=optional(epochs, epoch_missing),
        histogram=None if histograms is None else [histograms[i] for i in chosen],
        extra=None if extras is None else [extras[i] for i in chosen],
    )


def _strictly_increasing(times: np.ndarray) -> bool:
    return bool(len(times) < 2 or (times[1:] > times[:-1]).all())


def _identities(chunk: SeriesChunk, *, steps_unknown: bool) -> list[tuple[Any, ...]]:
    """Each point's identity within its series (see the module docstring), as hashable tuples.

    A missing value and NaN are identities of their own (NaN is not equal to itself); the value
    compares as a number (1 and 1.0 are one identity, as SQLite compared them). Without steps
    (``steps_unknown``: a batch back from OTLP) neither the step nor the extra fields count.
    """
    values: list[Any] = chunk.value.tolist()
    if chunk.value.dtype.kind == "f":
        values = ["nan" if math.isnan(v) else v for v in values]
    missing = chunk.value_missing.tolist()
    values = ["null" if m else v for v, m in zip(values, missing, strict=True)]
    times, starts = chunk.time_unix_nano.tolist(), chunk.start_time_unix_nano.tolist()
    if steps_unknown:
        return list(zip(times, starts, values, strict=True))
    steps = [None if m else s for s, m in zip(chunk.step.tolist(), chunk.step_missing.tolist(), strict=True)]
    return list(zip(times, starts, values, steps, chunk.extra or (None,) * len(chunk), strict=True))


def _new_points(conn: sqlite3.Connection, key: SeriesKey, chunk: SeriesChunk, *, steps_unknown: bool) -> SeriesChunk:
    """The points of ``chunk`` its series does not hold yet, each identity once."""
    lo, hi = int(chunk.time_unix_nano.min()), int(chunk.time_unix_nano.max())
    seen: set[tuple[Any, ...]] = set()
    stored = conn.execute(
        "SELECT d.data FROM chunk_index c JOIN chunk_data d ON d.chunk_id = c.id WHERE c.metric_id = ? AND c.resource_id = ?"
        " AND c.scope_id = ? AND c.attributes_id = ? AND c.max_time >= ? AND c.min_time <= ?",
        (*key, lo, hi),
    )
    for (data,) in stored:
        seen.update(_identities(SeriesChunk.decode(data), steps_unknown=steps_unknown))
    for head in stored_head_chunks(conn, key, lo, hi):
        seen.update(_identities(head, steps_unknown=steps_unknown))
    keep: list[int] = []
    for index, identity in enumerate(_identities(chunk, steps_unknown=steps_unknown)):
        if identity not in seen:
            seen.add(identity)
            keep.append(index)
    return chunk if len(keep) == len(chunk) else chunk.take(np.array(keep, dtype=np.int64))


class Written(NamedTuple):
    """What :func:`write_points` stored: chunk index rows, and per head series (key, max time, points)."""

    chunks: list[ChunkRow]
    head: list[tuple[SeriesKey, int, int]]

    @property
    def points(self) -> int:
        return sum(row.points for row in self.chunks) + sum(n for _, _, n in self.head)

    def latest(self) -> list[tuple[SeriesKey, int]]:
        """Each series written and the latest time it got."""
        return [(row.series, row.max_time) for row in self.chunks] + [(key, max_time) for key, max_time, _ in self.head]


def _stored_max(conn: sqlite3.Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """The latest time each series holds (in chunks or in the head); series with none are left out."""
    found: dict[SeriesKey, int] = {}
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), 200):
        part = wanted[start : start + 200]
        values = ",".join(["(?,?,?,?)"] * len(part))
        rows = conn.execute(
            f"WITH s(m, r, sc, a) AS (VALUES {values}) SELECT m, r, sc, a, (SELECT max(max_time) FROM chunk_index"
            " WHERE metric_id = s.m AND resource_id = s.r AND scope_id = s.sc AND attributes_id = s.a) FROM s",
            [v for key in part for v in key],
        ).fetchall()
        found.update({SeriesKey(m, r, sc, a): t for m, r, sc, a, t in rows if t is not None})
    if conn.execute("SELECT 1 FROM head_points LIMIT 1").fetchone():
        wanted_set = set(wanted)
        # One scan of the head (a few thousand rows) rather than one per series: it has no index.
        for m, r, sc, a, t in conn.execute(
            "SELECT metric_id, resource_id, scope_id, attributes_id, max(time_unix_nano) FROM head_points GROUP BY 1, 2, 3, 4"
        ):
            key = SeriesKey(m, r, sc, a)
            if key in wanted_set and t > found.get(key, t - 1):
                found[key] = t
    return found


def write_points(conn: sqlite3.Connection, split: Split, latest: Mapping[SeriesKey, int], *, steps_unknown: bool = False) -> Written:
    """Store ``split`` (from :func:`series_chunks`) inside the caller's write transaction, once each.

    ``latest`` holds, per series, the latest time the caller itself stored: a series whose new
    points start after it cannot repeat anything the caller wrote (a batch delivered again comes
    from the process that wrote it, or from one that adopted its queue, which starts without
    that knowledge). Series not settled that way are looked up: the index in one statement, the
    head in one scan. Returns what was written (its ``points`` are the points that were new).
    """
    head = split.head
    firsts = [(key, int(chunk.time_unix_nano.min())) for key, chunk in split.chunks]
    if head is not None:
        firsts += list(zip(head.keys, head.min_time, strict=True))
    unsettled = [key for key, first in firsts if key not in latest or first <= latest[key]]
    stored_max = _stored_max(conn, unsettled) if unsettled else {}

    def overlaps(key: SeriesKey, first: int) -> bool:
        return key in stored_max and stored_max[key] >= first

    kept: list[tuple[SeriesKey, SeriesChunk]] = []
    for key, given in split.chunks:
        check = overlaps(key, int(given.time_unix_nano.min())) or not _strictly_increasing(given.time_unix_nano)
        fresh = _new_points(conn, key, given, steps_unknown=steps_unknown) if check else given
        if len(fresh):
            kept.append((key, fresh))
    plain: list[int] = []  # head segments written as they are
    checked: list[tuple[SeriesKey, SeriesChunk]] = []  # head segments after the identity check
    if head is not None:
        for index, key in enumerate(head.keys):
            if overlaps(key, head.min_time[index]) or not head.increasing[index]:
                for part in head.segment_chunks(index):
                    fresh = _new_points(conn, key, part, steps_unknown=steps_unknown)
                    if len(fresh):
                        checked.append((key, fresh))
            else:
                plain.append(index)
    plain_points = sum(head.bounds[i + 1] - head.bounds[i] for i in plain) if head is not None else 0
    total = sum(len(chunk) for _, chunk in kept) + plain_points + sum(len(chunk) for _, chunk in checked)
    if not total:
        return Written([], [])
    first = take_row_ids(conn, total)
    numbered: list[tuple[SeriesKey, SeriesChunk]] = []
    for key, chunk in kept:
        numbered.append((key, chunk.with_row_ids(first)))
        first += len(chunk)
    written = Written(insert_chunks(conn, numbered), [])
    if head is not None and plain:
        insert_rows(conn, HEAD_TABLE, head_rows(head, plain, first))
        first += plain_points
        written.head.extend((head.keys[i], head.max_time[i], head.bounds[i + 1] - head.bounds[i]) for i in plain)
    for key, chunk in checked:
        insert_rows(conn, HEAD_TABLE, rows_of_chunk(key, chunk, first))
        first += len(chunk)
        written.head.append((key, int(chunk.time_unix_nano.max()), len(chunk)))
    return written
