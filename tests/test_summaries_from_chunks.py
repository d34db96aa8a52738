"""The run summaries read from chunks: the index where it has the answer, and only the chunks that hold the rest.

Each test writes real batches into a real store. The promises: the last value of a series is
the point that sorts last by time, then step, then as written (what ``ORDER BY time_unix_nano,
step, id`` gave), in ``runs``, ``compare`` and the summary across runs alike; a snapshot that
falls inside a compacted chunk counts only the points written up to it; the runs list,
``compare`` and the rank skew decode no chunk that cannot hold their answer (older chunks are
damaged on purpose: a summary that read one would fail).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.model.chunk import ChunkError
from otel_recursive_metrics.store.metric_summary import summarize_metric
from otel_recursive_metrics.store.run_compare import compare_runs
from otel_recursive_metrics.store.series import RunCatalog

T0 = 1_800_000_000_000_000_000
SECOND_NS = 1_000_000_000


def write(store: PointStore, run: str, metric: str, points: Sequence[tuple[int, Any, int | None]], kind: str = "gauge") -> None:
    """One batch of ``(time offset ns, value, step)`` points of ``metric`` in ``run``; a dict value is a histogram."""
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "training.rank": 0})
    scope = builder.plain_scope("test")
    metric_id = builder.metric(metric, "", "", kind)
    for offset, value, step in points:
        histogram = value if isinstance(value, dict) else None
        builder.add_point(resource, scope, metric_id, "{}", 0, T0 + offset, None if histogram else value, step, None, histogram)
    store.write_batch(builder.build())


def newest_row_id(store: PointStore) -> int:
    return int(store.read("SELECT ifnull(max(last_row_id), 0) FROM chunks")[0][0])


def test_a_time_tie_goes_to_the_greater_step_then_to_what_was_written_last(data_dir: Path) -> None:
    store = PointStore(data_dir / "metrics.db")
    write(store, "a", "loss", [(0, 9.0, 1), (100, 1.0, 5), (100, 2.0, 7), (100, 3.0, None)])
    write(store, "a", "loss", [(100, 4.0, 7), (100, 5.0, 6), (50, 6.0, 9)])
    (run,) = store.runs(last_of=["loss"])
    assert run["last"] == {"loss": 4.0} and run["points"] == 7
    (row,) = compare_runs(store, ["a"])["metrics"]
    assert (row["last"], row["last_step"], row["points"], row["min"], row["max"]) == (4.0, 7, 7, 1.0, 9.0)
    summary = summarize_metric(store, RunCatalog(store), "loss", until_id=newest_row_id(store))["a"]
    assert (summary.last, summary.last_step, summary.last_time_unix_nano) == (4.0, 7, T0 + 100)
    store.close()


def test_histograms_count_at_their_mean_nan_not_at_all_and_integers_stay_integers(data_dir: Path) -> None:
    store = PointStore(data_dir / "metrics.db")
    write(
        store, "a", "latency", [(0, {"count": 4, "sum": 2}, 0), (1, {"count": 0, "sum": 0}, 1), (2, {"count": 2, "sum": 7}, 2)], "histogram"
    )
    write(store, "a", "tokens", [(0, 7, 0), (1, 3, 1), (2, 12, 2)], "sum")
    write(store, "a", "loss", [(0, 0.5, 0), (1, math.nan, 1), (2, 0.25, 2), (3, math.nan, 3)])
    catalog, until = RunCatalog(store), newest_row_id(store)
    latency = summarize_metric(store, catalog, "latency", until_id=until)["a"]
    assert (latency.points, latency.low, latency.high, latency.last) == (2, 0.5, 3.5, 3.5), "count 0 has no mean"
    tokens = summarize_metric(store, catalog, "tokens", until_id=until)["a"]
    assert (tokens.points, tokens.low, tokens.high, tokens.last) == (3, 3, 12, 12)
    assert all(type(v) is int for v in (tokens.low, tokens.high, tokens.last))
    loss = summarize_metric(store, catalog, "loss", until_id=until)["a"]
    assert (loss.points, loss.low, loss.high, loss.last, loss.last_step) == (2, 0.25, 0.5, None, 3), "the last point is NaN"
    rows = {r["metric"]: r for r in compare_runs(store, ["a"])["metrics"]}
    assert (rows["tokens"]["min"], rows["tokens"]["max"], rows["tokens"]["last"]) == (3, 12, 12)
    assert type(rows["tokens"]["min"]) is int
    assert (rows["loss"]["points"], rows["loss"]["min"], rows["loss"]["max"], rows["loss"]["last"]) == (4, 0.25, 0.5, None)
    assert (rows["latency"]["points"], rows["latency"]["min"], rows["latency"]["last"]) == (3, None, None), "compare shows values only"
    assert store.runs(last_of=["tokens", "loss"])[0]["last"] == {"tokens": 12, "loss": None}
    store.close()


def test_a_snapshot_inside_a_compacted_chunk_counts_only_the_points_written_up_to_it(data_dir: Path) -> None:
    path = data_dir / "metrics.db"
    store = PointStore(path)
    expected: dict[str, list[tuple[int, float, int]]] = {"a": [], "b": []}
    snapshot = 0
    for batch in range(10):
        for run, scale in (("a", 1.0), ("b", -1.0)):
            points = [(batch * 100 + i, scale * ((batch * 37 + i * 11) % 23), batch * 10 + i) for i in range(10)]
            write(store, run, "loss", points)
            if batch < 5:
                expected[run] += points
        if batch == 4:
            snapshot = newest_row_id(store)
    store.close()  # joins each series' chunks into one: the snapshot now falls inside it
    store = PointStore(path, readonly=True)
    assert store.read("SELECT count(*) FROM chunks WHERE first_row_id <= ? AND last_row_id > ?", [snapshot, snapshot])[0][0] == 2
    catalog = RunCatalog(store)
    first = summarize_metric(store, catalog, "loss", until_id=snapshot)
    for run, points in expected.items():
        values = [v for _, v, _ in points]
        last_offset, last_value, last_step = max(points)
        assert first[run].to_json() == {
            "points": 50,
            "min": min(values),
            "max": max(values),
            "last": last_value,
            "last_step": last_step,
            "last_time_unix_nano": T0 + last_offset,
        }
    update = summarize_metric(store, catalog, "loss", until_id=newest_row_id(store), after_id=snapshot)
    assert {run: (s.points, s.last_step) for run, s in update.items()} == {"a": (50, 99), "b": (50, 99)}
    store.close()


def test_runs_compare_and_rank_skew_decode_only_the_chunks_that_hold_their_answer(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_dir / "metrics.db"
    # Every batch's series a chunk of its own (not the head: see chunk_index.HEAD_BELOW), as bigger batches make.
    monkeypatch.setattr("otel_recursive_metrics.store.chunk_write.HEAD_BELOW", 1)
    store = PointStore(path)
    for batch in range(4):  # four chunks a series, fewer than compaction joins
        for run in ("a", "b"):
            write(
                store,
                run,
                "loss",
                [(batch * 100 * SECOND_NS + i * SECOND_NS, 1.0 / (batch * 10 + i + 1), batch * 10 + i) for i in range(10)],
            )
    conn = sqlite3.connect(path)
    older = (
        "SELECT id FROM chunks c WHERE c.max_time <"
        " (SELECT max(max_time) FROM chunks x WHERE x.metric_id = c.metric_id AND x.resource_id = c.resource_id)"
    )
    kept = conn.execute(f"SELECT chunk_id, data FROM chunk_data WHERE chunk_id IN ({older})").fetchall()
    assert len(kept) == 6
    with conn:
        conn.execute(f"UPDATE chunk_data SET data = x'00' WHERE chunk_id IN ({older})")
    try:
        reader = PointStore(path, readonly=True)
        with pytest.raises(ChunkError):
            reader.query("loss")  # a reader that decoded a damaged chunk fails
        runs = {r["run"]: r for r in reader.runs(last_of=["loss"])}
        assert runs["a"]["last"] == {"loss": pytest.approx(1 / 40)} and runs["a"]["points"] == 40
        rows = {r["run"]: r for r in compare_runs(reader, ["a", "b"])["metrics"]}
        assert (rows["b"]["points"], rows["b"]["last_step"], rows["b"]["min"], rows["b"]["max"]) == (40, 39, pytest.approx(1 / 40), 1.0)
        skew = reader.rank_skew("a", window_s=5)
        assert skew["ranks"][0]["last_step"] == 39 and skew["ranks"][0]["step_rate_per_s"] == pytest.approx(1.0)
        reader.close()
    finally:
        with conn:
            conn.executemany("UPDATE chunk_data SET data = ? WHERE chunk_id = ?", [(data, chunk_id) for chunk_id, data in kept])
        conn.close()
    store.close()


def test_a_last_value_whose_chunk_is_joined_after_the_index_was_read_comes_from_the_joined_chunk(data_dir: Path) -> None:
    """A writer compacting between a summary's index read and its data read (the runs page of a live run)."""
    from otel_recursive_metrics.store.chunk_index import SeriesKey
    from otel_recursive_metrics.store.compaction import compact_series
    from otel_recursive_metrics.store.latest_points import latest_chunks, latest_points

    store = PointStore(data_dir / "metrics.db")
    for batch in range(20):  # 40 points a batch: a chunk each, left unjoined below FAN_IN
        write(store, "a", "loss", [(step, step * 0.5, step) for step in range(batch * 40, batch * 40 + 40)])
    (metric_id,) = store.read("SELECT id FROM metrics WHERE name = 'loss'")[0]
    rows = latest_chunks(store, [metric_id])
    keys = [SeriesKey(*row) for row in store.read("SELECT DISTINCT metric_id, resource_id, scope_id, attributes_id FROM chunk_index")]
    compact_series(store._conn, keys, closing=True)
    assert not {row.id for row in rows} & {r[0] for r in store.read("SELECT id FROM chunk_index")}, "the chunks read are gone"
    latest = latest_points(store, {"loss": rows})["loss"]
    assert (latest.value, latest.step) == (799 * 0.5, 799)
    store.close()
