"""The web view's pages in a real browser (Chromium via Playwright), for what a TensorBoard, W&B or
MLflow user expects of them and for the bugs of issue 20:

- a run of several ranks shows its rank table, and the ranks selector keeps its choices;
- an unknown run is named (as text), not "Pick runs and metrics to draw.";
- "(downsampled, spikes kept)" only on a chart whose points were cut (not on 1,500 steps);
- a log scale per chart, kept in the URL; a dark theme that follows the system, charts included;
- runs coloured and grouped by a parameter; a parameter against a metric's last or best value
  across runs; the runs table sorted by a metric's last value, names on one line; the compare
  page's table of the parameters that differ;
- a chart's points downloaded as CSV; charts in sections by prefix; a histogram drawn as a
  distribution over time; a series without steps drawn against time, saying so; a single point
  drawn as a marker; the unit on the axis; long legends below the plot, clear of the title.

Same browser set-up as tests/test_ui_browser.py (whose fixtures these share).
"""

from __future__ import annotations

import csv
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.training import TrainingMetrics

from . import test_ui_browser as shared
from .helpers import sdk_provider

UIServer = shared.UIServer
# The shared fixtures, by name: pytest finds a fixture among a module's attributes.
browser = shared.browser
page = shared.page
page_errors = shared.page_errors
served = shared.served
marked_up = shared.marked_up
chart_data = shared.chart_data
log_run = shared.log_run
STEPS, RUNS = shared.STEPS, shared.RUNS

CHART = '(m) => document.querySelector(`.chart[data-metric="${m}"]`)'
DRAWN = "() => window.__orm && window.__orm.allChartsMs"


def layout_of(page: Any, metric: str, selector: str = "data-metric") -> dict[str, Any]:
    """The layout Plotly drew a chart with (Plotly's full layout: defaults filled in)."""
    return page.evaluate(  # type: ignore[no-any-return]
        f"""(m) => {{
            const div = document.querySelector(`.chart[{selector}="${{m}}"]`);
            const l = div._fullLayout;
            return {{ ytype: l.yaxis.type, ytitle: l.yaxis.title.text, xtitle: l.xaxis.title.text, title: l.title.text,
                      font: l.font.color, traces: div.data.map((t) => ({{
                        mode: t.mode, fill: t.fill || null, color: (t.line || {{}}).color, group: t.legendgroup,
                        groupTitle: t.legendgrouptitle ? t.legendgrouptitle.text : null, name: t.name }})) }};
        }}""",
        metric,
    )


def test_a_run_of_several_ranks_shows_its_rank_table_and_keeps_the_ranks_selector(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any
) -> None:
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        log_run(data_dir, monkeypatch, "ddp", range(STEPS), 0.1 * (rank + 1), params=False)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}run?run=ddp&refresh=0")
        page.wait_for_selector("#rank-skew table.ranks tbody tr")  # visible, not hidden inside the selector
        assert page.eval_on_selector_all("#rank-skew tbody tr", "(rows) => rows.map((r) => r.cells[0].textContent)") == ["0", "1"]
        assert page.eval_on_selector_all("select#ranks option", "(options) => options.map((o) => o.value)") == ["overlay", "split"]
        assert page.evaluate("() => document.querySelectorAll('#ranks').length") == 1
        page.select_option("#ranks", "split")
        page.wait_for_function("() => document.querySelectorAll('.chart[data-metric=\"train.loss\"]').length === 2")


def test_an_unknown_run_is_named_as_text(served: UIServer, page: Any) -> None:
    name = '<b data-injected="unknown">nope</b>'
    page.goto(f"{served.url}run?{urllib.parse.urlencode({'run': name, 'refresh': 0})}")
    page.wait_for_selector("#charts p.empty")
    page.wait_for_function("() => document.querySelector('#charts p.empty').textContent.startsWith('No run named')")
    assert page.text_content("#charts p.empty") == f"No run named “{name}” in this store."
    shared.assert_no_markup(page)
    page.goto(f"{served.url}compare?{urllib.parse.urlencode([('run', name), ('run', 'spiral-lr0.1'), ('refresh', 0)])}")
    page.wait_for_function(DRAWN)
    assert page.inner_text("#notices") == f"No run named “{name}” in this store."
    assert [t["name"] for t in chart_data(page, "train.loss")] == ["spiral-lr0.1"]
    shared.assert_no_markup(page)


def write_gauge(path: Path, run: str, metric: str, count: int) -> None:
    """``count`` points a millisecond apart, one a step, of ``metric`` in ``run``."""
    store = PointStore(path, durable=False)
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": run, "service.name": "test"})
    scope, index = builder.plain_scope("test"), builder.metric(metric, "", "", "gauge")
    for step in range(count):
        builder.add_point(resource, scope, index, "{}", 0, shared_t0() + step * 1_000_000, 1.0 / (step + 1), step, None)
    store.write_batch(builder.build())
    store.close()


def shared_t0() -> int:
    return 1_767_225_600_000_000_000


def test_only_a_chart_whose_points_were_cut_says_downsampled(data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    log_run(data_dir, monkeypatch, "short", range(1_500), 0.1, params=False)
    write_gauge(data_dir / "metrics.db", "long", "train.loss", 30_000)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}run?run=short&refresh=0")
        page.wait_for_function(DRAWN)
        assert page.evaluate(f"(m) => ({CHART})(m).dataset.points", "train.loss") == "1500"
        assert page.eval_on_selector_all(".chart .gtitle", "(nodes) => nodes.map((n) => n.textContent)") == ["train.accuracy", "train.loss"]
        page.goto(f"{server.url}run?run=long&refresh=0")
        page.wait_for_function(DRAWN)
        assert page.text_content(".chart .gtitle") == "train.loss (downsampled, spikes kept)"


def test_a_chart_switches_to_a_log_scale_and_the_url_keeps_it(served: UIServer, page: Any) -> None:
    page.goto(f"{served.url}run?run=spiral-lr0.1&refresh=0")
    page.wait_for_function(DRAWN)
    assert layout_of(page, "train.loss")["ytype"] == "linear"
    page.click(".chart-box:has(.chart[data-metric='train.loss']) button.log-toggle")
    page.wait_for_function(f"(m) => ({CHART})(m)._fullLayout.yaxis.type === 'log'", arg="train.loss")
    assert layout_of(page, "train.accuracy")["ytype"] == "linear"  # per chart
    assert "log=train.loss" in page.url
    page.reload()
    page.wait_for_function(DRAWN)
    assert layout_of(page, "train.loss")["ytype"] == "log"
    assert page.get_attribute(".chart-box:has(.chart[data-metric='train.loss']) button.log-toggle", "aria-pressed") == "true"


def test_the_dark_theme_follows_the_system_charts_included(served: UIServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
    try:
        tab = context.new_page()
        tab.goto(f"{served.url}compare?run=spiral-lr0.1&run=spiral-lr0.5&metric=train.loss&refresh=0")
        tab.wait_for_function(DRAWN)
        assert tab.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(17, 24, 39)"
        assert layout_of(tab, "train.loss")["font"] == "#e5e7eb"  # light text on the dark page
        tab.emulate_media(color_scheme="light")  # the system switches: the page and its charts follow
        tab.wait_for_function(f"(m) => ({CHART})(m)._fullLayout.font.color === '#1d2330'", arg="train.loss")
        assert tab.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    finally:
        context.close()


def test_runs_are_coloured_and_grouped_by_a_parameter(data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    for run, lr in (("a", 0.1), ("b", 0.1), ("c", 0.5)):
        log_run(data_dir, monkeypatch, run, range(20), lr)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}compare?run=a&run=b&run=c&metric=train.loss&refresh=0")
        page.wait_for_function(DRAWN)
        assert len({t["color"] for t in layout_of(page, "train.loss")["traces"]}) == 3  # a colour a run
        page.select_option("#color-by", "optimizer.lr")
        page.wait_for_function(f"(m) => ({CHART})(m).data.some((t) => t.legendgrouptitle)", arg="train.loss")
        traces = {t["name"]: t for t in layout_of(page, "train.loss")["traces"]}
        assert traces["a"]["color"] == traces["b"]["color"] != traces["c"]["color"]
        assert traces["a"]["group"] == traces["b"]["group"] == "optimizer.lr=0.1" and traces["c"]["group"] == "optimizer.lr=0.5"
        assert "color=optimizer.lr" in page.url


def test_a_parameter_is_plotted_against_a_metrics_last_or_best_value_live(
    served: UIServer, page: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summaries: list[str] = []
    page.on("request", lambda request: summaries.append(request.url) if "/api/summary" in request.url else None)
    page.goto(f"{served.url}params?param=optimizer.lr&metric=train.loss&refresh=0.2")
    page.wait_for_function("() => window.__orm && window.__orm.paramsChartMs")
    data = page.evaluate(
        "() => document.getElementById('params-chart').data.map((t) => ({x: Array.from(t.x), y: Array.from(t.y), text: t.text}))"
    )
    (points,) = data
    last = {lr: 1.0 / (1 + lr * (STEPS - 1)) for lr in RUNS.values()}
    assert dict(zip(points["x"], points["y"], strict=True)) == pytest.approx(last)
    assert sorted(points["text"]) == sorted(RUNS)
    page.select_option("#aggregate", "max")
    page.wait_for_function("() => Array.from(document.getElementById('params-chart').data[0].y).every((y) => y === 1)")
    assert "agg=max" in page.url
    log_run(data_dir, monkeypatch, "spiral-lr0.3", range(STEPS), 0.3)
    page.wait_for_function("() => document.getElementById('params-chart').data[0].x.length === 3")
    assert any("after_id=" in url for url in summaries)  # live updates ask only for what is new


def test_the_runs_table_sorts_by_a_metrics_last_value_and_keeps_names_on_one_line(
    served: UIServer, browser: Any, page_errors: list[str]
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    try:
        tab = context.new_page()
        tab.on("pageerror", lambda error: page_errors.append(str(error)))
        tab.goto(served.url)
        tab.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
        tab.select_option("#sort-metric", "train.loss")
        tab.wait_for_selector("th:has-text('train.loss (last)')")
        order = tab.eval_on_selector_all("#runs tbody tr", "(rows) => rows.map((r) => r.dataset.run)")
        assert order == ["spiral-lr0.5", "spiral-lr0.1"]  # the lower last loss first
        tab.click("th:has-text('train.loss (last)')")
        assert tab.eval_on_selector_all("#runs tbody tr", "(rows) => rows.map((r) => r.dataset.run)") == ["spiral-lr0.1", "spiral-lr0.5"]
        assert "by=train.loss" in tab.url
        lines = tab.eval_on_selector_all(
            "#runs td.run-name a",
            "(links) => links.map((a) => a.getBoundingClientRect().height / parseFloat(getComputedStyle(a).lineHeight))",
        )
        assert lines and all(n < 1.5 for n in lines), lines
    finally:
        context.close()


def test_the_compare_page_lists_the_parameters_that_differ(data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    for run, lr in (("a", 0.1), ("b", 0.5)):
        log_run(data_dir, monkeypatch, run, range(5), lr)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}compare?run=a&run=b&metric=train.loss&refresh=0")
        page.wait_for_selector("table.param-diff tbody tr")
        rows = page.eval_on_selector_all("table.param-diff tbody tr", "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))")
        assert rows == [["optimizer.lr", "0.1", "0.5"]]
        assert page.text_content("#param-diff .hint") == "2 other parameters are the same in every run."
        page.click("table.param-diff button")  # a parameter's name colours the runs by it
        page.wait_for_function("() => document.getElementById('color-by').value === 'optimizer.lr'")


def test_the_parameters_that_differ_show_markup_as_text(marked_up: UIServer, page: Any) -> None:
    query = urllib.parse.urlencode([("run", shared.RUN_A), ("run", shared.RUN_B), ("metric", "train.loss"), ("refresh", "0")])
    page.goto(f"{marked_up.url}compare?{query}")
    page.wait_for_selector("table.param-diff tbody tr")
    assert page.inner_text("table.param-diff tbody").split("\t")[0] == shared.PARAM_KEY
    assert shared.PARAM_VALUE in page.inner_text("table.param-diff tbody")
    shared.assert_no_markup(page)


def test_a_charts_points_download_as_csv_at_full_precision(served: UIServer, page: Any, tmp_path: Path) -> None:
    page.goto(f"{served.url}compare?run=spiral-lr0.1&run=spiral-lr0.5&metric=train.loss&refresh=0")
    page.wait_for_function(DRAWN)
    with page.expect_download() as download:
        page.click(".chart-box:has(.chart[data-metric='train.loss']) a.csv")
    saved = tmp_path / "loss.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "train.loss.csv"
    with saved.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * STEPS
    for run, lr in RUNS.items():
        values = [float(r["value"]) for r in rows if r["run"] == run]
        assert values == [1.0 / (1 + lr * step) for step in range(STEPS)]  # exactly, every digit


def test_metrics_are_grouped_in_sections_and_a_single_point_is_a_marker(data_dir: Path, monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    log_run(data_dir, monkeypatch, "r", range(STEPS), 0.1, params=False)
    with TrainingMetrics(prefix="val.", dir=data_dir, flush_interval_s=0.1) as metrics:
        metrics.log({"loss": 0.25}, step=STEPS)  # validation once: one point
        assert metrics.flush(timeout_s=30)
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}run?run=r&refresh=0")
        page.wait_for_function(DRAWN)
        sections = page.eval_on_selector_all(
            "#charts details.metric-section",
            "(nodes) => nodes.map((n) => [n.dataset.section, [...n.querySelectorAll('.chart')].map((c) => c.dataset.metric)])",
        )
        assert sections == [["train", ["train.accuracy", "train.loss"]], ["val", ["val.loss"]]]
        assert [t["mode"] for t in layout_of(page, "val.loss")["traces"]] == ["markers"]
        assert [t["mode"] for t in layout_of(page, "train.loss")["traces"]] == ["lines"]
        page.click("details[data-section='train'] > summary")
        assert page.evaluate("() => document.querySelector(\"details[data-section='train']\").open") is False


def test_a_histogram_is_drawn_as_a_distribution_against_time_with_its_unit(data_dir: Path, page: Any) -> None:
    provider = sdk_provider(
        RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "web", "training.run.id": "server"}
    )
    duration = provider.get_meter("http").create_histogram("http.server.duration", unit="ms")
    for interval in range(3):
        for value in range(1, 101):
            duration.record(value * (interval + 1))
        provider.force_flush()
    provider.shutdown()
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}run?run=server&refresh=0")
        page.wait_for_function(DRAWN)
        bands = layout_of(page, "http.server.duration", "data-distribution")
        assert bands["title"].startswith("http.server.duration · distribution")
        assert [t["fill"] for t in bands["traces"]].count("tonexty") == 4  # min-max, +-1.5, +-1, +-0.5 sigma
        assert len(bands["traces"]) == 9 and bands["traces"][-1]["name"] == "server"  # and the median, in the legend
        mean = layout_of(page, "http.server.duration")
        for drawn in (bands, mean):
            assert drawn["xtitle"] == "seconds since the run's first point (these points have no step)"
            assert drawn["ytitle"] == "ms"
        medians = page.evaluate("() => Array.from(document.querySelector('.chart[data-distribution=\"http.server.duration\"]').data[8].y)")
        assert medians[0] < medians[1] < medians[2]  # each interval's own values: 1-100, 2-200, 3-300


def test_long_attribute_legends_sit_below_the_plot_clear_of_the_title(data_dir: Path, page: Any) -> None:
    provider = sdk_provider(
        RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "web", "training.run.id": "server"}
    )
    requests = provider.get_meter("http").create_counter("http.server.request.count", unit="{request}")
    for route in ("/api/v1/organisations/{org}/projects/{project}/runs", "/api/v1/organisations/{org}/members", "/healthz"):
        for status in (200, 404):
            attributes = {
                "http.route": route,
                "http.request.method": "GET",
                "http.response.status_code": status,
                "server.address": "metrics.example.internal",
            }
            requests.add(3, attributes)
    provider.force_flush()
    provider.shutdown()
    with UIServer(data_dir / "metrics.db", port=0) as server:
        page.goto(f"{server.url}run?run=server&refresh=0")
        page.wait_for_function(DRAWN)
        boxes = page.evaluate(
            f"""(m) => {{
                const div = ({CHART})(m);
                const box = (n) => {{ const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }};
                return {{ title: box(div.querySelector('.gtitle')), legend: box(div.querySelector('.legend')),
                          plot: box(div.querySelector('.nsewdrag')), titleText: div.querySelector('.gtitle').textContent,
                          names: [...div.querySelectorAll('.legendtext')].map((n) => n.textContent) }};
            }}""",
            "http.server.request.count",
        )
    assert len(boxes["names"]) == 6
    # The compact form: what every line shares is said once, under the title, not in each name.
    assert boxes["titleText"].endswith("every line: http.request.method=GET, server.address=metrics.example.internal")
    assert all(name.startswith("server · http.response.status_code=") and "server.address" not in name for name in boxes["names"])
    title, legend, plot = boxes["title"], boxes["legend"], boxes["plot"]
    assert legend[1] >= plot[3] and legend[1] > title[3]  # below the plot area, so never over the title


def test_the_parameters_view_shows_markup_as_text(marked_up: UIServer, page: Any) -> None:
    query = urllib.parse.urlencode({"param": shared.PARAM_KEY, "metric": shared.METRIC, "refresh": 0})
    page.goto(f"{marked_up.url}params?{query}")
    page.wait_for_function("() => window.__orm && window.__orm.paramsChartMs")
    title = page.text_content("#params-chart .gtitle")
    assert title == f"{shared.METRIC} (last value) against {shared.PARAM_KEY}"
    ticks = page.eval_on_selector_all("#params-chart .xtick text", "(nodes) => nodes.map((n) => n.textContent)")
    assert ticks == [shared.PARAM_VALUE]  # a text value: one category, shown as written
    assert page.inner_text("#left-out") == "1 of 2 runs are not shown: they have no " + f"{shared.PARAM_KEY} or no {shared.METRIC}."
    shared.assert_no_markup(page)
