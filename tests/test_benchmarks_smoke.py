"""Smoke run of ``benchmarks/run.py --quick``: every row runs and the document is Markdown tables.

No timing is asserted (the figures of a quick run on a shared CI machine mean nothing); this only
keeps the benchmark runnable. ``--quick`` skips the peers, so nothing is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"


@pytest.mark.slow
def test_quick_run_prints_a_markdown_table_per_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-peers", "--outage-s", "2", "--rate", "2000", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = done.stdout
    assert text.startswith("# otel-recursive-metrics benchmarks")
    assert out.read_text().strip() == text.strip()
    assert "**Failed:**" not in text
    for number in range(1, 9):
        assert re.search(rf"^## {number}\. ", text, re.MULTILINE), f"row {number} missing"
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    for section in sections:
        header = next((line for line in section.splitlines() if line.startswith("| ")), None)
        assert header is not None, f"no table in section {section.splitlines()[0]!r}"
        lines = section.splitlines()
        separator = lines[lines.index(header) + 1]
        assert re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", separator), separator
        columns = header.count("|")
        body = [line for line in lines[lines.index(header) + 2 :] if line.startswith("|")]
        assert body and all(line.count("|") == columns for line in body), section
    assert "Machine: " in text and "cores" in text
    assert "otel-recursive-metrics 0." in text
    # The quick run never installs the peers: they are reported as not installed, not measured.
    assert "tensorboardX add_scalar | — |" in text


def test_only_rejects_an_unknown_row() -> None:
    done = subprocess.run([sys.executable, str(RUN), "--only", "9"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--only" in done.stderr


@pytest.mark.slow
def test_peers_quick_run_without_peers_prints_our_column(tmp_path: Path) -> None:
    """``bench_peers.py --quick --no-peers``: one table, five rows, ours measured, the peers named as not measured."""
    out = tmp_path / "peers.md"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_peers.py"), "--quick", "--no-peers", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = done.stdout
    assert out.read_text() == text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].split("|")[1:4] == [" figure ", " ours ", " Trackio "], table[0]
    assert re.fullmatch(r"\|(-{3,}:?\|)+", table[1]), table[1]
    body = table[2:]
    assert len(body) == 5 and all(line.count("|") == table[0].count("|") for line in body), body
    for line in body:
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        assert re.match(r"[+-]?\d", cells[1]), f"ours not measured in {line!r}"
        assert cells[2] == cells[3] == "not measured (--no-peers)", line
        assert cells[4] == cells[5] == "—", line
    assert "Machine: " in text and "our commit " in text and "numpy (ours) " in text
    assert f"imported from `{ROOT / 'otel_recursive_metrics'}`" in text


#: The figures whose readers are still being converted to the v4 chunk layout on other branches:
#: until they are merged these rows may say "failed: ..." (the row runs on, as it must).
_READS_BEING_CONVERTED = ("`to_dataframe()`", "`query`", "web view")


@pytest.mark.slow
def test_targets_row_prints_every_figure_of_the_issue_table(tmp_path: Path) -> None:
    """``run.py --quick --only 21``: the issue's table, one row a figure, each measured or saying why not."""
    from benchmarks.bench_targets import FIGURES

    out = tmp_path / "targets.md"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-peers", "--only", "21", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    section = done.stdout.split("## 21. Issue 21 targets", 1)[1]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0] == "| figure | round two | target | measured now | met? |", table[0]
    assert table[1] == "|---|---|---|---|---|", table[1]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table[2:]]
    assert all(len(row) == 5 for row in rows), table
    assert [row[:3] for row in rows] == [[f.figure, f.round_two, f.target] for f in FIGURES]
    for figure, _, _, measured, met in rows:
        if measured.startswith("failed: "):
            assert met == "—", (figure, met)
            assert figure.startswith(_READS_BEING_CONVERTED), f"{figure}: {measured}"
        else:
            assert re.search(r"\d", measured), (figure, measured)
            assert met in ("met", "**not met**", "—"), (figure, met)


@pytest.mark.slow
def test_compare_quick_run_prints_its_table(tmp_path: Path) -> None:
    """``bench_compare.py --quick``: one table of the compare page's figures, each measured or failed with its reason."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_compare.py"), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| compare page, 3 runs x 2,000 points (4 metrics x 500 steps) | median (range) |", table[0]
    body = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table[2:]]
    assert body and all(len(row) == 2 for row in body), table
    assert body[0][0].startswith("browser: first chart"), body
    assert any(row[0].startswith("server") for row in body), body
    for name, value in body:
        assert re.match(r"\d+\.\d\d s", value) or value.startswith("failed: "), (name, value)
    assert "Store: 6,000 points written" in done.stdout


@pytest.mark.slow
def test_queue_payload_quick_run_prints_a_row_per_batch_and_form(tmp_path: Path) -> None:
    """``bench_queue_payload.py --quick``: one table, JSON and each chunk codec for each of the four batches."""
    out = tmp_path / "queue.md"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_queue_payload.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert out.read_text().strip() == done.stdout.strip()
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    body = table[2:]
    assert table[0].startswith("| batch | format | encode µs/pt |"), table[0]
    assert [line.split("|")[2].strip() for line in body if "JSON" in line] == ["JSON (format 2)"] * 4
    assert sum("(the queue's)" in line for line in body) == 4
    assert all(line.count("|") == table[0].count("|") for line in body), body


@pytest.mark.slow
def test_otlp_encoding_benchmark_checks_its_bytes_and_prints_a_table() -> None:
    """``bench_otlp_encode.py --quick``: it refuses to time an encoder whose bytes differ, so a run is a check too."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_otlp_encode.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| batch")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "training, 20 gauges a step",
        "sdk counters, 3 attributes",
        "sdk gauges, mixed attributes",
        "sdk histograms",
    ]
