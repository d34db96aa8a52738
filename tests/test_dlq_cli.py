"""``otel-recursive-metrics dlq list|show|replay|purge`` on dead letters made by the real pipeline."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from otel_recursive_metrics.cli import main
from otel_recursive_metrics.model.otlp import request_from_json_line
from otel_recursive_metrics.queue.dead_letter import DeadLetterEntry, DeadLetterQueue
from otel_recursive_metrics.store import PointStore

from .otlp_receiver import Fault, GrpcReceiver, HttpReceiver, otlp_points, sample_batch
from .test_otlp_delivery import FAST, TeeExporter

PROTOCOLS = ("grpc", "http/protobuf")


def entries(data_dir: Path) -> list[DeadLetterEntry]:
    return list(DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 40).entries())


@pytest.fixture
def refused(data_dir: Path) -> Iterator[list[DeadLetterEntry]]:
    """Three dead letters written by the pipeline after a receiver refused three exports with HTTP 400."""
    with HttpReceiver() as rec:
        rec.set_fault(Fault(http_status=400, message="schema mismatch"))
        exporter = TeeExporter(**FAST, sinks="otlp", dir=data_dir, otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf")
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        gauge = provider.get_meter("trainer").create_gauge("train.loss")
        for i in range(3):
            gauge.set(1.0 / (i + 1), {"phase": "train"})
            reader.collect()
            assert not exporter.force_flush(30_000)
        exporter.pipeline.shutdown(5.0)
        provider.shutdown(timeout_millis=1_000)
    made = entries(data_dir)
    assert len(made) == 3
    yield made


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_id_time_sink_points_bytes_and_reason(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, "dlq", "list", "--dir", str(data_dir))
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:3] == ["id", "time", "(UTC)"] and header[-4:] == ["sink", "points", "bytes", "reason"]
    for e in refused:
        (row,) = [line for line in out.splitlines() if line.startswith(e.id)]
        assert " otlp " in row and str(e.bytes) in row and "HTTP 400" in row and "schema mismatch" in row
    assert "3 entries" in out

    code, out, _ = run(capsys, "dlq", "list", "--dir", str(data_dir), "--format", "json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == [e.id for e in refused]
    assert all(r["sink"] == "otlp" and r["points"] == 1 and r["bytes"] > 0 and "HTTP 400" in r["reason"] for r in records)


def test_list_uses_the_environment_folder_and_handles_an_empty_one(data_dir: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(data_dir))
    DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).add(sample_batch(2), reason="permanent error: test", sink="store")
    code, out, _ = run(capsys, "dlq", "list")
    assert code == 0 and "permanent error: test" in out
    (data_dir / "elsewhere").mkdir()  # an empty data folder (a missing one is an error: test_cli_newcomer.py)
    code, out, _ = run(capsys, "dlq", "list", "--dir", str(data_dir / "elsewhere"))
    assert code == 0 and "no dead letters" in out


def test_show_prints_otlp_json_pretty_raw_or_meta(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    entry = refused[0]
    code, out, _ = run(capsys, "dlq", "show", entry.id[:-1], "--dir", str(data_dir))  # a unique prefix is enough
    assert code == 0
    pretty = json.loads(out)
    assert pretty["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["name"] == "train.loss"
    assert "\n  " in out
    code, out, _ = run(capsys, "dlq", "show", entry.id, "--dir", str(data_dir), "--raw")
    assert code == 0 and out.splitlines() == entry.json_lines()
    request_from_json_line(out.splitlines()[0])  # plain OTLP JSON Lines, as the Collector's otlpjsonfile reads
    code, out, _ = run(capsys, "dlq", "show", entry.id, "--dir", str(data_dir), "--meta")
    meta = json.loads(out)
    assert meta["id"] == entry.id and meta["points"] == 1 and "schema mismatch" in meta["reason"]
    code, _, err = run(capsys, "dlq", "show", "no-such-entry", "--dir", str(data_dir))
    assert code == 2 and "no dead-letter entry" in err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_replay_to_the_receiver_sends_each_entry_as_stored_and_removes_it(
    protocol: str, refused: list[DeadLetterEntry], data_dir: Path, capsys: Any
) -> None:
    stored = [request_from_json_line(e.json_lines()[0]) for e in refused]
    rec: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with rec:
        code, _, err = run(
            capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "otlp", "--endpoint", rec.endpoint, "--protocol", protocol
        )
    assert code == 0, err
    assert rec.accepted == stored  # byte-for-byte the refused requests, oldest first
    assert entries(data_dir) == []
    # Progress on stderr, one line per entry when stderr is not a terminal.
    assert "1/3" in err and "3/3" in err and "replayed 3 of 3 entries" in err


def test_replay_stops_at_a_refusal_and_keeps_what_was_not_delivered(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    with GrpcReceiver() as rec:
        rec.inject(Fault(), Fault(grpc_code="INVALID_ARGUMENT", message="still bad"))
        code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "otlp", "--endpoint", rec.endpoint, "--retry-s", "5")
        assert code == 1
        assert "INVALID_ARGUMENT" in err and "still bad" in err
        assert [e.id for e in entries(data_dir)] == [e.id for e in refused[1:]]  # only the first is gone
        # --keep-going skips past a permanent refusal.
        rec.inject(Fault(grpc_code="INVALID_ARGUMENT"))
        code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "otlp", "--endpoint", rec.endpoint, "--keep-going")
        assert code == 1
        assert [e.id for e in entries(data_dir)] == [refused[1].id]
        assert rec.points_accepted == 2


def test_replay_to_a_down_endpoint_keeps_everything(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    rec = GrpcReceiver().start()
    rec.down()
    code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "otlp", "--endpoint", rec.endpoint, "--retry-s", "0.5")
    assert code == 1 and "UNAVAILABLE" in err
    assert len(entries(data_dir)) == 3


def test_replay_selected_ids_only(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    chosen = request_from_json_line(refused[1].json_lines()[0])
    with HttpReceiver() as rec:
        code, _, _ = run(
            capsys,
            "dlq",
            "replay",
            refused[1].id,
            "--dir",
            str(data_dir),
            "--to",
            "otlp",
            "--endpoint",
            rec.endpoint,
            "--protocol",
            "http/protobuf",
        )
    assert code == 0
    assert [e.id for e in entries(data_dir)] == [refused[0].id, refused[2].id]
    assert otlp_points(rec.accepted) == otlp_points([chosen])


def test_replay_into_the_store_keeps_steps_and_is_idempotent(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    dlq = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30)
    dlq.add(sample_batch(3, first_step=10), reason="permanent error: store full", sink="store")
    dlq.add(sample_batch(2, first_step=13), reason="permanent error: store full", sink="store")
    store_file = tmp_path / "replayed.db"
    code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(store_file))
    assert code == 0, err
    assert entries(data_dir) == []
    store = PointStore(store_file)
    try:
        points = store.query(["train.loss"])
        assert [p.step for p in points] == [10, 11, 12, 13, 14]
        assert [p.value for p in points] == [1.0 / (s + 1) for s in range(10, 15)]
    finally:
        store.close()
    # Replaying the same batch again stores nothing twice.
    dlq.add(sample_batch(3, first_step=10), reason="again", sink="store")
    assert run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(store_file))[0] == 0
    store = PointStore(store_file)
    try:
        assert store.count() == 5
    finally:
        store.close()


def test_replay_into_the_store_defaults_to_the_store_of_the_folder_given(
    data_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--dir D --to store`` without ``--store`` writes into D's store, the one a run in D writes,
    not into the environment's data folder; ``$OTEL_RECURSIVE_METRICS_STORE`` names it, as for a run."""
    dlq = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30)
    dlq.add(sample_batch(3, first_step=10), reason="permanent error: store full", sink="store")
    environment_store = Path(os.environ["OTEL_RECURSIVE_METRICS_DIR"]) / "metrics.db"
    code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store")
    assert code == 0, err
    assert entries(data_dir) == []
    assert not environment_store.exists(), "replayed into the environment's folder, not --dir's"
    store = PointStore(data_dir / "metrics.db")
    try:
        assert [p.step for p in store.query(["train.loss"])] == [10, 11, 12]
    finally:
        store.close()

    named = tmp_path / "named.db"
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_STORE", str(named))
    dlq.add(sample_batch(2, first_step=20), reason="permanent error: store full", sink="store")
    code, _, err = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store")
    assert code == 0, err
    store = PointStore(named)
    try:
        assert [p.step for p in store.query(["train.loss"])] == [20, 21]
    finally:
        store.close()


def test_replay_an_otlp_dead_letter_into_the_store(refused: list[DeadLetterEntry], data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    store_file = tmp_path / "from-otlp.db"
    code, _, _ = run(capsys, "dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(store_file))
    assert code == 0 and entries(data_dir) == []
    store = PointStore(store_file)
    try:
        assert sorted(p.value for p in store.query(["train.loss"])) == sorted([1.0, 0.5, 1.0 / 3])
    finally:
        store.close()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_purge_refuses_without_a_terminal_and_without_yes(
    refused: list[DeadLetterEntry], data_dir: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped input is not a confirmation
    code, _, err = run(capsys, "dlq", "purge", "--dir", str(data_dir))
    assert code == 2 and "--yes" in err
    assert len(entries(data_dir)) == 3


def test_purge_asks_on_a_terminal(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.stdin", FakeTerminal("n\n"))
    code, _, err = run(capsys, "dlq", "purge", "--dir", str(data_dir))
    assert code == 1 and "[y/N]" in err and "3 entries" in err
    assert len(entries(data_dir)) == 3
    monkeypatch.setattr("sys.stdin", FakeTerminal("y\n"))
    code, _, _ = run(capsys, "dlq", "purge", refused[0].id, "--dir", str(data_dir))
    assert code == 0
    assert len(entries(data_dir)) == 2


def test_purge_with_yes(refused: list[DeadLetterEntry], data_dir: Path, capsys: Any) -> None:
    code, _, err = run(capsys, "dlq", "purge", "--dir", str(data_dir), "--yes")
    assert code == 0 and "deleted 3 entries" in err
    assert entries(data_dir) == []
    assert not list((data_dir / "dead-letter").iterdir())


def test_dead_letter_files_are_owner_only(refused: list[DeadLetterEntry], data_dir: Path) -> None:
    folder = data_dir / "dead-letter"
    assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_replay_shows_a_progress_bar_on_a_terminal(data_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    dlq = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30)
    for i in range(4):
        dlq.add(sample_batch(2, first_step=2 * i), reason="permanent error: test", sink="store")
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    code = main(["dlq", "replay", "--dir", str(data_dir), "--to", "store", "--store", str(tmp_path / "s.db")])
    assert code == 0
    text = terminal.getvalue()
    assert "\r" in text and "] 4/4 entries, 8/8 points" in text and "#" * 30 in text
