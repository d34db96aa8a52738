"""The CLI as a newcomer meets it (issue 20, section 4): one clear line for each mistake, tables
that fit a terminal and cannot drive it, and install hints that work from a clone."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.cli import main
from otel_recursive_metrics.cli._terminal import display_width
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .conftest import require_module
from .helpers import run_cli
from .otlp_receiver import sample_batch
from .test_runs_compare import two_runs

PACKAGE = Path(__file__).resolve().parent.parent / "otel_recursive_metrics"

# What a terminal would act on: C0 and C1 controls, DEL, and the bidirectional overrides.
TERMINAL_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def refused_by_argparse(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argv is refused while parsing (exit code 2): its stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- plot --out ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("no-such-folder/curves.png", "does not exist"),
        ("curves.txt", ".png"),
        ("curves", "no extension"),
    ],
)
def test_plot_out_that_cannot_be_written_is_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, out: str, expected: str
) -> None:
    require_module("matplotlib", "plot")
    store = str(two_runs(data_dir, monkeypatch))
    target = tmp_path / out
    code, _, err = run_cli(capsys, "plot", "--store", store, "--metric", "train.loss", "--out", str(target))
    assert code == 2
    line = one_error_line(err)
    assert str(target) in line and expected in line
    assert ".png" in line or "folder" in line, "it says what would be accepted"
    assert not list(tmp_path.glob("curves*")), "nothing written"


def test_plot_writes_the_format_its_extension_names(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    require_module("matplotlib", "plot")
    store = str(two_runs(data_dir, monkeypatch))
    for name, magic in (("c.svg", b"<?xml"), ("c.pdf", b"%PDF"), ("c.PNG", b"\x89PNG")):
        code, out, _ = run_cli(capsys, "plot", "--store", store, "--metric", "train.loss", "--out", str(tmp_path / name))
        assert code == 0 and f"wrote {tmp_path / name}" in out
        assert (tmp_path / name).read_bytes().startswith(magic)


def test_plot_into_a_folder_it_cannot_write_is_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    require_module("matplotlib", "plot")
    store = str(two_runs(data_dir, monkeypatch))
    (tmp_path / "taken.png").mkdir()  # a folder where the file would go
    code, _, err = run_cli(capsys, "plot", "--store", store, "--metric", "train.loss", "--out", str(tmp_path / "taken.png"))
    assert code == 2 and "cannot write it" in one_error_line(err)


# -- --last and --limit -------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [("--last", "-3"), ("--limit", "-1"), ("--last", "0"), ("--limit", "ten")])
def test_last_and_limit_refuse_what_is_not_a_count(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    store = str(two_runs(data_dir, monkeypatch))
    err = refused_by_argparse(capsys, "query", "--store", store, "--metric", "train.loss", option, value)
    assert f"argument {option}: {value!r}: expected a whole number of 1 or more" in err


def test_last_counts_per_series_across_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(two_runs(data_dir, monkeypatch))
    runs = ("--run", "lr-0.1", "--run", "lr-0.5")
    code, out, _ = run_cli(capsys, "query", "--store", store, "--metric", "train.loss", *runs, "--last", "3")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert code == 0 and sorted((r[1], int(r[3])) for r in rows) == [(run, s) for run in ("lr-0.1", "lr-0.5") for s in (47, 48, 49)]
    for fmt in ("csv", "json"):
        code, out, _ = run_cli(capsys, "query", "--store", store, "--metric", "train.loss", *runs, "--last", "3", "--format", fmt)
        got = list(csv.DictReader(io.StringIO(out))) if fmt == "csv" else [json.loads(line) for line in out.splitlines()]
        steps = [(r["run"], int(r["step"])) if fmt == "csv" else (r["resource"]["training.run.id"], r["step"]) for r in got]
        assert sorted(steps) == [(run, s) for run in ("lr-0.1", "lr-0.5") for s in (47, 48, 49)]
    # Two metrics of one run are two series as well.
    code, out, _ = run_cli(capsys, "query", "--store", store, "--run", "lr-0.1", "--last", "2", "--format", "json")
    assert sorted((p["metric"], p["step"]) for p in map(json.loads, out.splitlines())) == [
        ("train.acc", 48),
        ("train.acc", 49),
        ("train.loss", 48),
        ("train.loss", 49),
    ]


def test_last_counts_per_attribute_set_in_the_store_api(data_dir: Path) -> None:
    with TrainingMetrics(dir=data_dir, flush_interval_s=0.05) as metrics:
        for step in range(10):
            metrics.log({"loss": float(step)}, step=step)
    with TrainingMetrics(dir=data_dir, flush_interval_s=0.05, attributes={"split": "val"}) as metrics:
        for step in range(10):
            metrics.log({"loss": float(step)}, step=step)
    store = PointStore(data_dir / "metrics.db", readonly=True)
    try:
        last = store.query("loss", last=2)
    finally:
        store.close()
    assert sorted((p.attributes.get("split", ""), p.step) for p in last) == [("", 8), ("", 9), ("val", 8), ("val", 9)]
    assert [p.time_unix_nano for p in last] == sorted(p.time_unix_nano for p in last), "oldest first"


# -- --store and --dir --------------------------------------------------------------------------


def test_store_may_be_the_data_folder(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    store_file = two_runs(data_dir, monkeypatch)
    by_file = run_cli(capsys, "query", "--store", str(store_file), "--metric", "train.loss", "--last", "1")
    by_folder = run_cli(capsys, "query", "--store", str(data_dir), "--metric", "train.loss", "--last", "1")
    assert by_folder == by_file and by_file[0] == 0
    assert run_cli(capsys, "metrics", "--store", str(data_dir))[1].split() == ["train.acc", "train.loss"]


def test_store_that_is_a_folder_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("query", "runs", "metrics"):
        code, _, err = run_cli(capsys, command, "--store", str(tmp_path))
        line = one_error_line(err)
        assert code == 2 and str(tmp_path) in line and "is a folder with no metrics.db" in line
        assert "does not exist" not in line


@pytest.mark.parametrize(
    "argv",
    [("list",), ("show", "x"), ("replay", "--to", "store"), ("purge", "--yes")],
    ids=["list", "show", "replay", "purge"],
)
def test_dlq_on_a_folder_that_does_not_exist_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    missing = tmp_path / "no-such-folder"
    code, out, err = run_cli(capsys, "dlq", *argv, "--dir", str(missing))
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert f"--dir {str(missing)!r}: the folder does not exist" in line
    assert not missing.exists(), "nothing created"


def test_dlq_default_folder_missing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # conftest points OTEL_RECURSIVE_METRICS_DIR at a folder no test creates.
    code, _, err = run_cli(capsys, "dlq", "list")
    assert code == 2 and "does not exist; pass --dir" in one_error_line(err)


def test_dlq_on_a_folder_without_dead_letters_is_still_empty(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir.mkdir()
    code, out, _ = run_cli(capsys, "dlq", "list", "--dir", str(data_dir))
    assert code == 0 and "no dead letters" in out


# -- subcommands --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "names"),
    [(["dlq"], ["list", "show", "replay", "purge"]), ([], ["query", "metrics", "runs", "compare", "plot", "dlq", "sync", "ui"])],
    ids=["dlq", "top"],
)
def test_a_command_without_its_subcommand_lists_them(capsys: pytest.CaptureFixture[str], argv: list[str], names: list[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "_command" not in err and "required" not in err
    last = err.strip().splitlines()[-1]
    assert "error: a subcommand is needed: " in last and all(name in last for name in names)
    for name in names:
        assert re.search(rf"^\s+{name}\s+\S", err, re.MULTILINE), f"{name} is listed with what it does"


# -- runs: fits 100 columns, --wide, tags, and nothing that drives the terminal -------------------

HOSTILE_NAME = "基线 baseline with a rather long name\x1b]0;pwned\x07 and more"
HOSTILE_RUN = "spiral-very-long-run-identifier-2026-01-01-\x1b[31mred"


def runs_with_hostile_text(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The two runs of :func:`two_runs` and a third whose id, name, tags and parameters hold escapes."""
    two_runs(data_dir, monkeypatch)
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", HOSTILE_RUN)
    tags = ["sweep", "ablation-\u202etxt.exe", "line\nbreak"]
    with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.05, run_name=HOSTILE_NAME, tags=tags) as metrics:
        metrics.log_params({"lr": 0.01, "notes": "x" * 80 + "\x9b2J", "optim": {"name": "adam"}})
        for step in range(5):
            metrics.log({"loss": 1.0 / (step + 1), "acc": step / 5}, step=step)
    return data_dir / "metrics.db"


def terminal_safe(text: str) -> None:
    assert not TERMINAL_CONTROLS.search(text.replace("\n", "")), repr(text)


@pytest.mark.parametrize("metrics", [(), ("--metric", "train.loss"), ("--metric", "train.loss", "--metric", "train.acc")])
def test_runs_fits_100_columns_and_shows_tags(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], metrics: tuple[str, ...]
) -> None:
    store = str(runs_with_hostile_text(data_dir, monkeypatch))
    code, out, _ = run_cli(capsys, "runs", "--store", store, *metrics)
    assert code == 0
    terminal_safe(out)
    lines = out.splitlines()
    assert max(display_width(line) for line in lines) <= 100, "\n" + out
    assert "tags" in lines[0].split()
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert set(rows) >= {"lr-0.1", "lr-0.5"} and "sweep" in rows["lr-0.1"]
    assert any(line.startswith("spir") and "…" in line for line in lines), "long ids are cut with an ellipsis"
    assert "--wide" in out, "it says how to see the rest"


def test_runs_shows_the_parameters_that_differ_and_names_the_shared_ones(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(two_runs(data_dir, monkeypatch))
    code, out, _ = run_cli(capsys, "runs", "--store", store)
    assert code == 0 and max(display_width(line) for line in out.splitlines()) <= 100
    row = next(line for line in out.splitlines() if line.startswith("lr-0.1"))
    assert "lr=0.1" in row and "seed=7" not in row and "sweep" in row
    notes = " ".join(" ".join(out.splitlines()[4:]).split())  # wrapped to fit
    assert "(parameters of every run, --wide shows them per run: layers=[64, 32] optim.momentum=0.9 optim.name=sgd seed=7)" in notes


def test_runs_wide_prints_every_cell_whole_and_still_escaped(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(runs_with_hostile_text(data_dir, monkeypatch))
    code, out, _ = run_cli(capsys, "runs", "--store", store, "--wide")
    assert code == 0
    terminal_safe(out)
    assert "…" not in out
    assert "spiral-very-long-run-identifier-2026-01-01-\\x1b[31mred" in out
    assert "基线 baseline with a rather long name\\x1b]0;pwned\\x07 and more" in out
    assert "sweep,ablation-\\u202etxt.exe,line\\nbreak" in out
    assert "notes=" + "x" * 80 + "\\x9b2J" in out
    row = next(line for line in out.splitlines() if line.startswith("lr-0.5"))
    assert "layers=[64, 32] lr=0.5 optim.momentum=0.9 optim.name=sgd seed=7" in row
    header, rule, *rows = out.splitlines()[:5]
    assert display_width(rule) > 100, "the full table"
    # The columns line up although a name holds wide characters: each tags cell starts under "tags".
    for line in rows:
        assert display_width(line[: line.index("sweep")]) == display_width(header[: header.index("tags")]), out


def test_other_tables_and_errors_escape_what_the_store_holds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(runs_with_hostile_text(data_dir, monkeypatch))
    code, out, _ = run_cli(capsys, "query", "--store", store, "--run", HOSTILE_RUN, "--metric", "train.loss")
    assert code == 0 and "\\x1b[31mred" in out
    terminal_safe(out)
    code, _, err = run_cli(capsys, "query", "--store", store, "--run", "lr-0.7")
    assert code == 1 and "\\x1b[31mred" in err, "the known runs are listed, escaped"
    terminal_safe(err)
    code, out, _ = run_cli(capsys, "compare", HOSTILE_RUN, "lr-0.1", "--store", store)
    assert code == 0
    terminal_safe(out)


def test_dead_letter_reasons_are_escaped(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = "permanent error: HTTP 400 \x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07"
    DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).add(sample_batch(2), reason=reason, sink="otlp")
    code, out, _ = run_cli(capsys, "dlq", "list", "--dir", str(data_dir))
    assert code == 0 and "HTTP 400 \\x1b[2J" in out
    terminal_safe(out)


def test_display_width_counts_terminal_columns() -> None:
    assert display_width("abc") == 3
    assert display_width("基线") == 4
    assert display_width("e\u0301") == 1, "a combining accent takes no column"


# -- install hints ------------------------------------------------------------------------------


def test_install_hints_work_from_a_clone() -> None:
    """The package is not on an index: every hint installs an extra from the clone."""
    index_hint = re.compile(r"pip install\s+['\"]?otel-recursive-metrics")
    offenders = []
    hints = 0
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".js", ".html", ".md", ".txt") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(PACKAGE.parent)}: {m.group(0)}" for m in index_hint.finditer(text)]
        hints += len(re.findall(r"pip install -e '\.\[\w+\]'", text))
    assert not offenders, "\n".join(offenders)
    assert hints >= 5, "the plot, ui, pandas, system and gpu hints"
