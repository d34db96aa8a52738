"""The chart readers on chunks: what a first load draws is what decoding every point would draw.

- min and max per bucket (consecutive points, or equal time buckets with the first and last
  points) agree with a plain Python reading of the rule, NaN, ties and infinities included;
- a long trace of small chunks is drawn exactly as if every chunk were decoded, while the chunks
  that lie inside one bucket and cannot hold its extremes are not decoded;
- chunks compacted away between the index read and the data read are planned again;
- a snapshot inside a chunk leaves out the points after it; a tail of small batches (the head,
  where the store keeps one) is read whole;
- a histogram trace is drawn at its means and never answered from the index;
- the runs table's last values: the latest point of the latest rank, an integer as an integer,
  and held between calls, only the chunks written since decoded;
- an answer's JSON has null for every NaN and infinity, encoded without a walk when it has none.

The reference readings come from :meth:`PointStore.query` (the store's own reader), not from
the code under test.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.model.chunk import SeriesChunk
from otel_recursive_metrics.store import PointStore, compaction, point_store
from otel_recursive_metrics.store.downsample import (
    TimeBuckets,
    buckets_for,
    drawn_values,
    keep_extremes,
    min_max_buckets,
    min_max_positions,
)
from otel_recursive_metrics.store.series import IN_MEMORY_MAX_ROWS, LastValue, RunCatalog, last_values, max_point_id, read_series

T0 = 1_767_225_600_000_000_000
SPIKE_STEP = 12_345


# --- the rule, against a plain reading of it ------------------------------------------------------


def python_extremes(values: Sequence[float | None], groups: Sequence[Sequence[int]]) -> list[int]:
    """Each group's first lowest and first highest position; a group with no value its first."""
    kept: set[int] = set()
    for group in groups:
        present = [i for i in group if values[i] is not None and not math.isnan(values[i])]
        if not present:
            kept.add(group[0])
            continue
        kept.add(min(present, key=lambda i: (values[i], i)))
        kept.add(min(present, key=lambda i: (-values[i], i)))  # type: ignore[operator]
    return sorted(kept)


numbers = st.one_of(st.none(), st.sampled_from([0.0, 1.0, -1.0, math.inf, -math.inf, math.nan]), st.floats(-1e6, 1e6))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(numbers, max_size=60), max_points=st.integers(2, 30))
def test_min_max_of_consecutive_points_is_the_rule_read_plainly(values: list[float | None], max_points: int) -> None:
    array = np.array([math.nan if v is None else v for v in values], np.float64)
    kept = min_max_positions(array, max_points).tolist()
    if len(values) <= max_points:
        assert kept == list(range(len(values)))
        return
    size = math.ceil(len(values) / (max_points // 2))
    assert kept == python_extremes(values, [range(s, min(s + size, len(values))) for s in range(0, len(values), size)])
    assert len(kept) <= max_points
    rows = [(i, v) for i, v in enumerate(values)]
    assert [row[0] for row in min_max_buckets(rows, max_points, 1)] == kept


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 50), min_size=1, max_size=80),
    values=st.lists(numbers, min_size=80, max_size=80),
    max_points=st.integers(4, 40),
)
def test_time_buckets_keep_each_buckets_extremes_and_both_ends(gaps: list[int], values: list[float | None], max_points: int) -> None:
    times = np.cumsum(np.array(gaps, np.int64)) + T0  # in time order, equal times allowed
    values = values[: len(times)]
    array = np.array([math.nan if v is None else v for v in values], np.float64)
    buckets = TimeBuckets.over(int(times[0]), int(times[-1]), buckets_for(max_points))
    kept = keep_extremes(times, array, buckets).tolist()
    groups: dict[int, list[int]] = {}
    for i, time in enumerate(times.tolist()):
        groups.setdefault((time - int(times[0])) // buckets.width_ns, []).append(i)
    assert kept == sorted(set(python_extremes(values, list(groups.values()))) | {0, len(values) - 1})
    assert len(kept) <= max_points


def test_a_point_is_drawn_at_its_value_or_its_histograms_mean() -> None:
    histograms = [
        None,
        json.dumps({"count": 450, "sum": 38}),  # whole numbers: a float mean, not 0
        json.dumps({"count": 0, "sum": 0}),
        json.dumps({"count": 3}),
        None,
    ]
    chunk = SeriesChunk(
        [1, 2, 3, 4, 5],
        [2.5, 0.0, 0.0, 0.0, math.nan],
        value_missing=[False, True, True, True, False],
        histogram=histograms,
    )
    drawn = drawn_values(chunk).tolist()
    assert drawn[:2] == [2.5, 38 / 450]
    assert all(math.isnan(v) for v in drawn[2:])


# --- a store of small chunks ----------------------------------------------------------------------


def write(
    store: PointStore, run: str, metric: str, steps: range, value: Callable[[int], Any], *, histogram: bool = False, rank: int = 0
) -> None:
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "training.rank": rank, "service.name": "test"})
    scope = builder.plain_scope("test")
    index = builder.metric(metric, "", "", "histogram" if histogram else "gauge")
    for step in steps:
        number = value(step)
        hist = {"count": 4, "sum": 4 * number, "min": number, "max": number, "bounds": [], "counts": [4]} if histogram else None
        builder.add_point(resource, scope, index, "{}", 0, T0 + step * 1_000_000, None if histogram else number, step, None, hist)
    store.write_batch(builder.build())


def noisy(seed: int) -> Callable[[int], float]:
    rng = random.Random(seed)
    cache: dict[int, float] = {}

    def value(step: int) -> float:
        if step not in cache:
            cache[step] = 1e6 if step == SPIKE_STEP else rng.random()
        return cache[step]

    return value


@pytest.fixture
def writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PointStore]:
    # No compaction while the test writes: each batch stays a small chunk of its own (the writer
    # reads FAN_IN from compaction, or from its own import of it).
    for module in (compaction, point_store):
        if hasattr(module, "FAN_IN"):
            monkeypatch.setattr(module, "FAN_IN", 1 << 30)
    store = PointStore(tmp_path / "metrics.db", durable=False)
    yield store
    store.close()


class Watched:
    """The store as the chart readers see it (:meth:`read`, :meth:`read_chunks`), noting which
    chunks' data they read and how often they read the index; ``before_data`` runs once, just
    before the first read of chunk data."""

    def __init__(self, store: PointStore) -> None:
        self.store = store
        self.chunk_ids: list[int] = []
        self.index_reads = 0
        self.before_data: Callable[[], None] | None = None

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if "FROM chunk_data" in sql:
            if self.before_data is not None:
                hook, self.before_data = self.before_data, None
                hook()
            rows = self.store.read(sql, params)
            self.chunk_ids += [row[0] for row in rows]
            return rows
        if "FROM chunks c" in sql:
            self.index_reads += 1
        return self.store.read(sql, params)

    def read_chunks(self, sql: str, params: Sequence[Any] = (), size: int = 1024) -> Iterator[list[Any]]:
        return self.store.read_chunks(sql, params, size)


def reference(store: PointStore, metric: str, max_points: int, *, until_id: int | None = None) -> list[tuple[Any, Any]]:
    """``(step, value)`` kept by the rule over every point, read through PointStore.query."""
    points = [p for p in store.query([metric]) if until_id is None or p.row_id <= until_id]
    points.sort(key=lambda p: (p.time_unix_nano, p.step, p.row_id))
    if len(points) <= max_points:
        return [(p.step, p.value) for p in points]
    first, last = points[0].time_unix_nano, points[-1].time_unix_nano
    width = TimeBuckets.over(first, last, buckets_for(max_points)).width_ns
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault((p.time_unix_nano - first) // width, []).append(i)
    values = [p.value for p in points]
    kept = sorted(set(python_extremes(values, list(groups.values()))) | {0, len(points) - 1})
    return [(points[i].step, points[i].value) for i in kept]


def drawn(store: Any, metric: str, max_points: int, *, until_id: int | None = None) -> tuple[list[tuple[Any, Any]], bool]:
    snapshot = max_point_id(store) if until_id is None else until_id
    series = read_series(store, RunCatalog(store), "run", metric, until_id=snapshot, max_points=max_points)
    (trace,) = series.traces
    return list(zip(trace.steps, trace.values, strict=True)), series.downsampled


def chunk_count(store: PointStore) -> int:
    return int(store.read("SELECT count(*) FROM chunk_data")[0][0])


def test_a_long_trace_of_small_chunks_is_drawn_as_if_every_chunk_were_decoded(writer: PointStore) -> None:
    value = noisy(1)
    for first in range(0, IN_MEMORY_MAX_ROWS + 10_000, 250):
        write(writer, "run", "train.loss", range(first, first + 250), value)
    watched = Watched(writer)
    shown, downsampled = drawn(watched, "train.loss", 20)  # 9 buckets of about 3,300 points: 13 chunks each
    assert downsampled is True and len(shown) <= 20
    assert shown == reference(writer, "train.loss", 20)
    assert dict(shown)[SPIKE_STEP] == 1e6
    assert 0 < len(set(watched.chunk_ids)) < chunk_count(writer) // 2  # most chunks answered by the index alone


def test_chunks_compacted_away_under_a_read_are_planned_again(writer: PointStore, tmp_path: Path) -> None:
    value = noisy(2)
    for first in range(0, IN_MEMORY_MAX_ROWS + 10_000, 250):
        write(writer, "run", "train.loss", range(first, first + 250), value)
    expected = reference(writer, "train.loss", 20)
    reader = PointStore(tmp_path / "metrics.db", readonly=True)
    watched = Watched(reader)
    watched.before_data = writer.close  # closing joins the small chunks: the ids just read are gone
    try:
        shown, _ = drawn(watched, "train.loss", 20)
    finally:
        reader.close()
    assert watched.index_reads >= 2
    assert shown == expected


def test_a_snapshot_inside_a_chunk_leaves_out_the_points_after_it(writer: PointStore) -> None:
    value = noisy(3)
    for first in range(0, IN_MEMORY_MAX_ROWS + 10_000, 1_000):
        write(writer, "run", "train.loss", range(first, first + 1_000), value)
    until_id = max_point_id(writer) - 500  # half way through the last chunk
    shown, _ = drawn(writer, "train.loss", 200, until_id=until_id)
    steps = [step for step, _ in shown]
    assert steps == sorted(steps) and steps[0] == 0
    assert steps[-1] == max(p.step for p in writer.query(["train.loss"]) if p.row_id <= until_id)
    assert dict(shown)[SPIKE_STEP] == 1e6


def test_a_tail_of_small_batches_is_read_whole(writer: PointStore) -> None:
    value = noisy(4)
    write(writer, "run", "train.loss", range(IN_MEMORY_MAX_ROWS + 5_000), value)
    for step in range(IN_MEMORY_MAX_ROWS + 5_000, IN_MEMORY_MAX_ROWS + 5_300, 3):  # a few points a batch
        write(writer, "run", "train.loss", range(step, step + 3), lambda s: -7.0 if s == IN_MEMORY_MAX_ROWS + 5_150 else 0.5)
    shown, _ = drawn(writer, "train.loss", 100)
    assert shown == reference(writer, "train.loss", 100)
    assert dict(shown)[IN_MEMORY_MAX_ROWS + 5_150] == -7.0 and shown[-1][0] == IN_MEMORY_MAX_ROWS + 5_299
    update = read_series(writer, RunCatalog(writer), "run", "train.loss", until_id=max_point_id(writer), after_id=max_point_id(writer) - 6)
    assert update.traces[0].steps == list(range(IN_MEMORY_MAX_ROWS + 5_294, IN_MEMORY_MAX_ROWS + 5_300))


def test_a_histogram_trace_is_drawn_at_its_means_from_every_chunk(writer: PointStore) -> None:
    value = noisy(5)
    for first in range(0, IN_MEMORY_MAX_ROWS + 10_000, 250):
        write(writer, "run", "latency", range(first, first + 250), value, histogram=True)
    watched = Watched(writer)
    shown, _ = drawn(watched, "latency", 20)
    assert len(set(watched.chunk_ids)) == chunk_count(writer)  # the index holds no mean
    assert all(mean == pytest.approx(value(step)) for step, mean in shown)
    assert dict(shown)[SPIKE_STEP] == pytest.approx(1e6)


def test_the_last_value_is_the_latest_point_of_the_latest_rank(writer: PointStore) -> None:
    write(writer, "run", "train.loss", range(10), lambda s: 1.0 / (s + 1), rank=0)
    write(writer, "run", "train.loss", range(12), lambda s: 2.0 * s, rank=1)
    write(writer, "run", "tokens", range(5), lambda s: 2**60 + s)  # beyond a float's exact integers
    write(writer, "run", "latency", range(3), lambda s: 3.0, histogram=True)
    (found,) = last_values(writer, RunCatalog(writer)).values()
    assert (found["train.loss"].value, found["train.loss"].step) == (22.0, 11)
    assert found["tokens"].value == 2**60 + 4 and isinstance(found["tokens"].value, int)
    assert found["latency"].value == 3.0


def test_last_values_held_between_calls_decode_only_the_chunks_written_since(writer: PointStore) -> None:
    write(writer, "run", "train.loss", range(100), float)
    write(writer, "run", "val.loss", range(100), lambda s: -float(s))
    held: dict[tuple[int, ...], LastValue] = {}
    watched = Watched(writer)
    first = last_values(watched, RunCatalog(writer), held)
    decoded = len(watched.chunk_ids)
    assert last_values(watched, RunCatalog(writer), held) == first
    assert len(watched.chunk_ids) == decoded  # nothing written since: nothing decoded
    write(writer, "run", "train.loss", range(100, 200), float)
    later = last_values(watched, RunCatalog(writer), held)["run"]
    assert later["train.loss"] == LastValue(199.0, 199, T0 + 199_000_000)
    assert later["val.loss"] == first["run"]["val.loss"] == LastValue(-99.0, 99, T0 + 99_000_000)
    assert len(watched.chunk_ids) == decoded + 1


def test_an_answer_is_json_with_null_for_every_nan_or_infinity_however_deep() -> None:
    from otel_recursive_metrics.ui.api import to_json_bytes

    plain = {"series": [{"value": [1.5, None, 2]}]}
    assert to_json_bytes(plain) == b'{"series":[{"value":[1.5,null,2]}]}'
    odd = {"series": [{"value": [math.nan, -math.inf, 1.0], "attributes": {"x": (math.inf,)}}]}
    assert json.loads(to_json_bytes(odd)) == {"series": [{"value": [None, None, 1.0], "attributes": {"x": [None]}}]}
