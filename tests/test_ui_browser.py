"""The web view in a real browser: headless Chromium (Debian's package) driven by Playwright.

What a person would check by looking, on a store written by the real package (two runs of
``TrainingMetrics`` with different ``OTEL_RECURSIVE_METRICS_RUN_ID``):

- the runs page lists both runs with their parameters (when ``TrainingMetrics.log_params``
  exists to record them), and its filter narrows the list;
- the comparison page draws both runs' series in one chart, and smoothing adds the smoothed
  lines over the faint raw ones;
- a point logged while the page is open appears in the chart without a reload;
- run ids, run names, tags, notes, parameters, metric names and attributes that look like
  markup show as the text they are, on every page (runs, run, compare) and in every place Plotly
  draws them (title, legend, hover): no element, link or style comes from them, and a long name
  is cut; the pages' Content-Security-Policy refuses an inline script.

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
import urllib.parse
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
def page_errors() -> list[str]:
    """What the page reported as errors (a test that provokes one removes it)."""
    return []


@pytest.fixture
def page(browser: Any, page_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(DEADLINE_MS)
    tab.on("pageerror", lambda error: page_errors.append(str(error)))
    tab.on("console", lambda message: page_errors.append(message.text) if message.type == "error" else None)
    yield tab
    context.close()
    assert not page_errors, f"the page reported errors: {page_errors}"


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
        page.wait_for_selector("#rank-skew table.ranks tbody tr", state="attached")
        cells = page.eval_on_selector_all("#rank-skew tbody tr", "(rows) => rows.map((r) => r.cells[0].textContent)")
        assert cells == ["0", "1"]
        assert page.text_content("#rank-skew .verdict").startswith(("Slowest: rank", "No slowest rank"))


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


# --- user strings that look like markup ---------------------------------------------------------
#
# Every string a user logs reaches the page as text: in the DOM (appended as text nodes) and in
# Plotly's SVG (escaped, since Plotly reads titles, legend names and hover labels as HTML).
# A link to example.invalid, an element with a data-injected attribute, a style or an entity
# that took effect would each mean a user's string became markup.

LINK = '<a href="https://example.invalid/phish">relogin</a>'
METRIC = f"m{LINK}"  # the name, through the seed API (which accepts any name)
METRIC_ENTITIES = "q\"uote's &amp; &#60;br&#62; <br> x"  # entities must show as written
METRIC_LONG = "long." + "x" * 5000
RUN_A = f"a{LINK}"  # a run id without a name: the legend shows the id
RUN_B = 'b<span style="color:red" data-injected="run">styled</span>'
NAME = '<b data-injected="name">bold</b> name'
TAG = '<em data-injected="tag">tag</em>'
NOTES = '<i data-injected="notes">notes</i>'
PARAM_KEY, PARAM_VALUE = '<u data-injected="key">k</u>', '<img src="x" data-injected="value">'
ATTR_KEY, ATTR_VALUE = "k<br>ey", '<span style="font-size:40px" data-injected="attr">v</span>'
ATTR_VALUES = (ATTR_VALUE, "plain")  # two attribute sets: two traces, so every chart has a legend
STORE_FOLDER = 'st<em data-injected="store">ore'

# Every <a> in the document that leads off this server, every element with data-injected
# (HTML or SVG, the chart's links included), and the number of <a> in the charts' SVG.
FIND_MARKUP = """() => {
    const linkOf = (a) => a.getAttribute("href") || a.getAttribute("xlink:href") || "";
    const sameHost = (a) => new URL(linkOf(a), location.href).hostname === location.hostname;
    return {
        links: [...document.querySelectorAll("a")].filter((a) => !sameHost(a)).map((a) => a.outerHTML),
        injected: [...document.querySelectorAll("[data-injected]")].map((n) => n.outerHTML),
        svgLinks: document.querySelectorAll(".chart svg a").length,
    };
}"""

# Per chart (by its metric): the title's text, the legend's texts, whether any <a> is inside.
CHART_TEXTS = """() => [...document.querySelectorAll(".chart")].map((div) => ({
    metric: div.dataset.metric,
    title: div.querySelector(".gtitle")?.textContent ?? null,
    legend: [...div.querySelectorAll(".infolayer .legend .legendtext")].map((n) => n.textContent),
    links: div.querySelectorAll("svg a").length,
}))"""


def assert_no_markup(page: Any) -> None:
    found = page.evaluate(FIND_MARKUP)
    assert found == {"links": [], "injected": [], "svgLinks": 0}, found


@pytest.fixture
def marked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UIServer]:
    """A store whose run ids, run name, tags, notes, parameters, metric names and attributes
    all look like markup; served."""
    from otel_recursive_metrics.metrics_store import MetricsStore

    data_dir = tmp_path / STORE_FOLDER
    for run in (RUN_A, RUN_B):
        monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", run)
        named = {"run_name": NAME, "tags": [TAG], "notes": NOTES} if run == RUN_B else {}
        with TrainingMetrics(prefix="train.", dir=data_dir, flush_interval_s=0.1, **named) as metrics:
            if run == RUN_B:
                metrics.log_params({PARAM_KEY: PARAM_VALUE})
            for step in range(20):
                metrics.log({"loss": 1.0 / (1 + step)}, step=step)
            assert metrics.flush(timeout_s=30)
        seed = MetricsStore(path=data_dir / "metrics.db")
        records = [
            {"metric_name": name, "value": float(step + offset + 10 * k), "step": step, "attributes": {ATTR_KEY: value}}
            for offset, name in enumerate((METRIC, METRIC_ENTITIES, METRIC_LONG))
            for k, value in enumerate(ATTR_VALUES)
            for step in range(20)
        ]
        seed.store_metrics(records)
        seed.store.close()
    with UIServer(data_dir / "metrics.db", port=0) as server:
        yield server


def test_the_runs_page_shows_markup_in_ids_names_tags_and_params_as_text(marked_up: UIServer, page: Any) -> None:
    page.goto(marked_up.url)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    page.wait_for_function("() => document.getElementById('store-path').textContent.length > 0")
    rows = {row.get_attribute("data-run"): row.inner_text() for row in page.query_selector_all("#runs tbody tr")}
    assert set(rows) == {RUN_A, RUN_B}
    assert RUN_A in rows[RUN_A] and METRIC in rows[RUN_A]
    for text in (f"{NAME} ({RUN_B})", TAG, f"{PARAM_KEY}={PARAM_VALUE}", METRIC):
        assert text in rows[RUN_B], (text, rows[RUN_B])
    assert STORE_FOLDER in page.text_content("#store-path")
    assert_no_markup(page)
    # The run's link carries its id as data: the run page it opens is that run's.
    link = page.query_selector(f'#runs tbody tr[data-run="{RUN_B.replace(chr(34), chr(92) + chr(34))}"] td a')
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(link.get_attribute("href")).query)["run"] == [RUN_B]


def legend_of(label: str) -> list[str]:
    """The legend names of a run's traces of a seeded metric (one per attribute set), sorted."""
    return sorted(f"{label} · {ATTR_KEY}={value}" for value in ATTR_VALUES)


def test_the_run_page_shows_markup_as_text_in_its_facts_titles_legends_and_hover(marked_up: UIServer, page: Any) -> None:
    page.goto(f"{marked_up.url}run?{urllib.parse.urlencode({'run': RUN_B, 'refresh': 0})}")
    page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
    # The metadata comes after the charts, and the legend then names the run (by its name,
    # whose last word is "name", markup or not).
    page.wait_for_selector("#meta dl")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart .infolayer .legendtext')].every((n) => n.textContent.includes(' name · '))"
    )
    assert page.text_content("#title") == f"Run {NAME} ({RUN_B})"
    meta = page.inner_text("#meta")
    for text in (TAG, NOTES, PARAM_KEY, PARAM_VALUE):
        assert text in meta, (text, meta)
    charts = {c["metric"]: c for c in page.evaluate(CHART_TEXTS)}
    assert set(charts) == {"train.loss", METRIC, METRIC_ENTITIES, METRIC_LONG}
    assert charts[METRIC]["title"] == METRIC
    assert charts[METRIC_ENTITIES]["title"] == METRIC_ENTITIES
    assert sorted(charts[METRIC]["legend"]) == legend_of(NAME)
    assert_no_markup(page)
    hovered = hover_text(page, METRIC)
    assert all(name in hovered for name in legend_of(NAME)), hovered


def test_the_comparison_page_shows_markup_as_text_in_lists_titles_legends_and_hover(marked_up: UIServer, page: Any) -> None:
    metrics = [("metric", name) for name in (METRIC, METRIC_ENTITIES, METRIC_LONG)]
    query = urllib.parse.urlencode([("run", RUN_A), ("run", RUN_B), *metrics, ("refresh", "0")])
    page.goto(f"{marked_up.url}compare?{query}")
    page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
    side = page.inner_text("#side")
    for text in (RUN_A, f"{NAME} ({RUN_B})", METRIC, METRIC_ENTITIES):
        assert text in side, (text, side)
    charts = {c["metric"]: c for c in page.evaluate(CHART_TEXTS)}
    assert charts[METRIC]["title"] == METRIC and charts[METRIC_ENTITIES]["title"] == METRIC_ENTITIES
    legend = sorted(legend_of(RUN_A) + legend_of(NAME))
    assert sorted(charts[METRIC]["legend"]) == legend
    # A long name is cut to what a chart can show, and ends with an ellipsis.
    long_title = charts[METRIC_LONG]["title"]
    assert len(long_title) <= 200 and long_title.endswith("…") and METRIC_LONG.startswith(long_title[:-1])
    assert_no_markup(page)
    hovered = hover_text(page, METRIC)
    assert all(name in hovered for name in legend), hovered
    # The controls rebuild the charts: still text.
    page.select_option("#smoothing", "ema")
    page.wait_for_function(
        "(m) => [...document.querySelectorAll('.chart')].find((d) => d.dataset.metric === m).data.length === 8", arg=METRIC
    )
    assert sorted({c["metric"]: c for c in page.evaluate(CHART_TEXTS)}[METRIC]["legend"]) == legend
    assert_no_markup(page)


def hover_text(page: Any, metric: str) -> str:
    """The text of the hover label over the middle of ``metric``'s chart (no <a> in it)."""
    box = page.evaluate_handle(
        "(m) => [...document.querySelectorAll('.chart')].find((d) => d.dataset.metric === m).querySelector('.nsewdrag')", metric
    ).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    layer = "(m) => [...document.querySelectorAll('.chart')].find((d) => d.dataset.metric === m).querySelector('.hoverlayer')"
    page.wait_for_function(f"(m) => ({layer})(m).textContent.length > 0", arg=metric)
    assert page.evaluate(f"(m) => ({layer})(m).querySelectorAll('a').length", metric) == 0
    return page.evaluate(f"(m) => ({layer})(m).textContent", metric)  # type: ignore[no-any-return]


def test_the_pages_policy_refuses_an_inline_script(served: UIServer, page: Any, page_errors: list[str]) -> None:
    # Were a user's string ever parsed as HTML, the Content-Security-Policy would still keep its
    # scripts from running: an inline script added to the page does not run.
    page.goto(served.url)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    blocked = page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective), { once: true });
            const script = document.createElement("script");
            script.textContent = "window.injectedScriptRan = true;";
            document.body.append(script);
            setTimeout(() => resolve(window.injectedScriptRan ? "ran" : "no violation reported"), 5000);
        })"""
    )
    assert blocked.startswith("script-src"), blocked
    assert page.evaluate("() => window.injectedScriptRan") is None
    page_errors[:] = [e for e in page_errors if "Content Security Policy" not in e]


def test_the_runs_page_and_the_chart_show_an_integer_histogram_at_its_true_mean(data_dir: Path, page: Any) -> None:
    # Whole milliseconds through the real SDK: count 450, sum 38 (SQLite's integer division made it 0).
    from otel_recursive_metrics import RecursiveMetricExporter

    from .helpers import sdk_provider

    provider = sdk_provider(
        RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "web", "training.run.id": "server"}
    )
    duration = provider.get_meter("http").create_histogram("http.server.duration", unit="ms")
    for request in range(450):
        duration.record(1 if request < 38 else 0)
    provider.shutdown()
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(server.url)
        page.wait_for_function("() => document.querySelectorAll('#runs tbody tr .last .chip').length === 1")
        chip = page.query_selector("#runs tbody tr .last .chip")
        assert chip.inner_text() == "http.server.duration 0.08444"  # four significant digits shown
        assert chip.get_attribute("title") == f"http.server.duration = {38 / 450!r} at step –"  # and every digit on hover
        page.goto(f"{server.url}compare?run=server&metric=http.server.duration&refresh=0")
        page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
        assert [t["y"] for t in chart_data(page, "http.server.duration")] == [[38 / 450]]
