"""The web view in a real browser: headless Chromium (Debian's package) driven by Playwright.

What a person would check by looking, on a store written by the real package (two runs of
``TrainingMetrics`` with different ``OTEL_RECURSIVE_METRICS_RUN_ID``):

- the runs page lists both runs with their parameters (when ``TrainingMetrics.log_params``
  exists to record them), and its filter narrows the list;
- the comparison page draws both runs' series in one chart, and smoothing adds the smoothed
  lines over the faint raw ones;
- a point logged while the page is open appears in the chart without a reload.

Without Chromium or Playwright these tests skip, saying what to install; under ``CI=true``
they fail instead (``.ci/run`` installs ``chromium``). Playwright never downloads a browser
here: it launches the system one (``OTEL_RECURSIVE_METRICS_CHROMIUM``, default
``/usr/bin/chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.training import TrainingMetrics

from .conftest import require_module, required_in_ci

require_module("starlette", "ui")
sync_api = require_module("playwright.sync_api", "test")
CHROMIUM = os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    required_in_ci(f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set OTEL_RECURSIVE_METRICS_CHROMIUM)")

from benchmarks.bench_ui import CHROMIUM_ARGS  # noqa: E402 - the benchmark's browser flags: tests and figures see one browser
from otel_recursive_metrics.ui import UIServer  # noqa: E402 - after the checks above

RUNS = {"spiral-lr0.1": 0.1, "spiral-lr0.5": 0.5}
STEPS = 60
HAS_PARAMS = hasattr(TrainingMetrics, "log_params")
DEADLINE_MS = 20_000


def log_run(data_dir: Path, monkeypatch: pytest.MonkeyPatch, run: str, steps: range, lr: float, *, params: bool = True) -> None:
    """Log ``steps`` of a fake training run as ``run`` into ``data_dir``'s store, delivered before returning."""
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", run)
    with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.1) as metrics:
        if params and HAS_PARAMS:
            metrics.log_params({"optimizer": {"lr": lr, "name": "sgd"}, "steps": STEPS})  # type: ignore[attr-defined]
        for step in steps:
            metrics.log({"loss": 1.0 / (1 + lr * step), "accuracy": 1.0 - 1.0 / (2 + lr * step)}, step=step)
        assert metrics.flush(timeout_s=30)


@pytest.fixture
def served(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UIServer]:
    for run, lr in RUNS.items():
        log_run(data_dir, monkeypatch, run, range(STEPS), lr)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(DEADLINE_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield tab
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def chart_data(page: Any, metric: str) -> list[dict[str, Any]]:
    """The traces Plotly drew in the chart of ``metric``: name, x, y, opacity."""
    return page.evaluate(  # type: ignore[no-any-return]
        """(metric) => {
            const div = document.querySelector(`.chart[data-metric="${metric}"]`);
            const traces = div && div.data ? div.data : [];
            return traces.map((t) => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y), opacity: t.opacity}));
        }""",
        metric,
    )


def test_the_runs_page_lists_both_runs_with_their_parameters(served: UIServer, page: Any) -> None:
    page.goto(served.url)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    rows = {row.get_attribute("data-run"): row.inner_text() for row in page.query_selector_all("#runs tbody tr")}
    assert set(rows) == set(RUNS)
    for run, lr in RUNS.items():
        assert "train.loss" in rows[run]  # the last values
        if HAS_PARAMS:
            assert f"optimizer.lr={lr}" in rows[run], rows[run]
    page.fill("#filter", "optimizer.lr=0.5" if HAS_PARAMS else "lr0.5")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 1")
    assert page.query_selector("#runs tbody tr").get_attribute("data-run") == "spiral-lr0.5"


def test_the_runs_page_shows_the_run_metadata_of_the_data_contract(served: UIServer, page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The keys a store with run metadata adds to each run (name, status, params, tags, notes,
    # duration_s), here added to the real summary, so the page is checked against the contract
    # whether or not this store records them yet.
    summarize = PointStore.runs

    def with_metadata(store: PointStore) -> list[dict[str, Any]]:
        runs = summarize(store)
        for run in runs:
            lr = RUNS[run["run"]]
            status = "running" if lr == 0.5 else "finished"
            run.update(name=f"lr {lr}", status=status, params={"optimizer.lr": lr, "seed": 1}, tags=["spiral"], notes=None, duration_s=90.0)
        return runs

    monkeypatch.setattr(PointStore, "runs", with_metadata)
    page.goto(served.url)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    row = page.query_selector('#runs tbody tr[data-run="spiral-lr0.5"]').inner_text()
    for text in ("lr 0.5 (spiral-lr0.5)", "running", "optimizer.lr=0.5", "seed=1", "spiral", "1m30s"):
        assert text in row, (text, row)
    # Only the parameter that differs between the runs is highlighted.
    assert [c.inner_text() for c in page.query_selector_all('tr[data-run="spiral-lr0.5"] .chip.differs')] == ["optimizer.lr=0.5"]
    for query, shown in (("status=finished", ["spiral-lr0.1"]), ("optimizer.lr<0.3", ["spiral-lr0.1"]), ("tag=spiral", sorted(RUNS))):
        page.fill("#filter", query)
        page.wait_for_function(f"() => document.querySelectorAll('#runs tbody tr').length === {len(shown)}")
        assert sorted(r.get_attribute("data-run") for r in page.query_selector_all("#runs tbody tr")) == shown, query


def test_the_comparison_chart_draws_both_series(served: UIServer, page: Any) -> None:
    page.goto(f"{served.url}compare?run=spiral-lr0.1&run=spiral-lr0.5&metric=train.loss&metric=train.accuracy&refresh=0")
    page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
    traces = chart_data(page, "train.loss")
    assert [t["name"] for t in traces] == list(RUNS)
    for trace, lr in zip(traces, RUNS.values(), strict=True):
        assert trace["x"] == list(range(STEPS))
        assert trace["y"][-1] == pytest.approx(1.0 / (1 + lr * (STEPS - 1)))
    # Drawn, not just held: one SVG line per run, each with a path.
    paths = page.query_selector_all('.chart[data-metric="train.loss"] .scatterlayer .trace path.js-line')
    assert len(paths) == 2 and all(len(p.get_attribute("d") or "") > 100 for p in paths)
    # Smoothing draws a smoothed line over each faint raw one.
    page.select_option("#smoothing", "ema")
    page.wait_for_function("() => document.querySelector('.chart[data-metric=\"train.loss\"]').data.length === 4")
    faint = [t for t in chart_data(page, "train.loss") if t["opacity"] == 0.25]
    assert len(faint) == 2
    assert "smooth=ema" in page.url


def test_a_point_logged_while_the_page_is_open_appears_without_a_reload(
    served: UIServer, page: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page.goto(f"{served.url}compare?run=spiral-lr0.1&run=spiral-lr0.5&metric=train.loss&refresh=0.2")
    page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
    page.evaluate("() => { window.stillTheSamePage = true; }")
    log_run(data_dir, monkeypatch, "spiral-lr0.5", range(1000, 1001), 0.5, params=False)
    page.wait_for_function(
        """() => {
            const div = document.querySelector('.chart[data-metric="train.loss"]');
            return div && div.data && div.data.some((t) => t.name === 'spiral-lr0.5' && Array.from(t.x).includes(1000));
        }"""
    )
    assert page.evaluate("() => window.stillTheSamePage") is True
    late = next(t for t in chart_data(page, "train.loss") if t["name"] == "spiral-lr0.5")
    assert late["x"][-1] == 1000 and late["y"][-1] == pytest.approx(1.0 / (1 + 0.5 * 1000))
    assert len(late["x"]) == STEPS + 1  # appended, not loaded twice


def test_the_run_page_follows_the_run_and_adds_a_metric_it_starts_logging_later(
    served: UIServer, page: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page.goto(f"{served.url}run?run=spiral-lr0.1&refresh=0.1")
    page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
    assert sorted(page.eval_on_selector_all(".chart", "(nodes) => nodes.map((n) => n.dataset.metric)")) == ["train.accuracy", "train.loss"]
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "spiral-lr0.1")
    with TrainingMetrics(prefix="val.", dir=data_dir, flush_interval_s=0.1) as metrics:
        metrics.log({"loss": 0.25}, step=STEPS)
        assert metrics.flush(timeout_s=30)
    page.wait_for_function("() => document.querySelector('.chart[data-metric=\"val.loss\"]')?.dataset.points === '1'")
    assert page.evaluate("() => window.__orm.firstChartMs") is not None


def test_ranks_overlaid_or_split_and_x_as_time(data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        log_run(data_dir, monkeypatch, "ddp", range(STEPS), 0.1 * (rank + 1), params=False)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}compare?run=ddp&metric=train.loss&refresh=0")
        page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
        assert [t["name"] for t in chart_data(page, "train.loss")] == ["ddp · rank 0", "ddp · rank 1"]
        page.select_option("#ranks", "split")
        page.wait_for_function("() => document.querySelectorAll('.chart[data-metric=\"train.loss\"]').length === 2")
        titles = page.eval_on_selector_all(".chart .gtitle", "(nodes) => nodes.map((n) => n.textContent)")
        assert titles == ["train.loss · rank 0", "train.loss · rank 1"]
        page.select_option("#ranks", "overlay")
        page.select_option("#x-axis", "time")
        page.wait_for_function("() => document.querySelectorAll('.chart').length === 1")
        for trace in chart_data(page, "train.loss"):
            assert 0 <= trace["x"][0] <= trace["x"][-1] < 60  # seconds since the run's first point (milliseconds apart here)
        assert "ranks=overlay" in page.url and "x=time" in page.url
        # The run page shows the skew across the ranks.
        page.goto(f"{server.url}run?run=ddp&refresh=0")
        page.wait_for_selector("#ranks table.ranks tbody tr", state="attached")
        cells = page.eval_on_selector_all("#ranks tbody tr", "(rows) => rows.map((r) => r.cells[0].textContent)")
        assert cells == ["0", "1"]
        assert page.text_content("#ranks .verdict").startswith(("Slowest: rank", "No slowest rank"))


@pytest.mark.slow
def test_the_benchmark_runs_and_prints_its_tables(tmp_path: Path) -> None:
    """``benchmarks/bench_ui.py`` at small sizes: it runs and prints Markdown tables (no timing asserted)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ui.py"
    args = ["--points", "40000", "--runs", "5", "--repeats", "1", "--chromium", CHROMIUM]
    done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.startswith("## Web view")
    assert done.stdout.count("| figure | target |") == 1 and "| new points |" in done.stdout
    assert list(tmp_path.iterdir()) == []  # writes nothing
