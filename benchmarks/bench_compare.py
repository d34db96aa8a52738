"""The web view's comparison page over many runs: time to its first chart, server side and in a browser.

    python benchmarks/bench_compare.py            # 50 runs x 200,000 points (about 3 minutes)
    python benchmarks/bench_compare.py --quick    # 3 runs x 2,000 points, once: a smoke run
    python benchmarks/bench_compare.py --runs 20 --steps 10000 --repeats 3 --no-browser

Issue 21's figure "web view, compare 50 runs x 200 k points: first chart <= 1 s".

The store: ``--runs`` runs, each of four metrics (``train.loss``, ``train.accuracy``,
``train.lr``, ``train.grad_norm``) of ``--steps`` points (50,000 by default: 200,000 points a
run, 10,000,000 in all), written through :meth:`PointStore.write_batch` in batches of 100,000
points (``bench_ui.write_run``, the batches the web view's other benchmark writes), then closed
(compacted): finished runs.

What the page does before its first chart (``compare_page.js``, ``charts.js``): it asks for
``/api/runs`` (the run list, and the snapshot ``last_id`` every later request reads up to),
then for each chosen metric at once ``/api/series?run=...&metric=M&until_id=...&max_points=N``
with every chosen run, and draws each chart as its answer comes in. Measured:

- *server*: on a fresh server each repetition (empty series cache, store in the OS page cache),
  ``/api/runs`` then the first metric's ``/api/series`` of every run, one after the other: the
  least a first chart waits for, without the browser; and the four metrics' requests sent at
  once, as the page sends them, until the first and until the last answer;
- *browser* (headless Chromium through Playwright, ``bench_ui``'s settings): navigation to
  ``/compare?run=...(every run)&metric=...(the four)&refresh=0`` until Plotly has drawn the
  first chart (the page's own ``firstChartMs`` mark), and until every chart is drawn; the
  browser already holds Plotly's bundle (as ``bench_ui``'s "run opened" case), a fresh server
  each repetition.

``max_points`` is what the page asks for at ``bench_ui``'s 1400 x 1000 viewport (read from the
page); without a browser, 2,000 (the page's least). Medians over ``--repeats``.
``run(...)`` returns the figures and ``markdown``; each part that fails is reported as
``failed: <reason>`` and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import bench_ui
from benchmarks.common import commit, machine, say, versions_line

__all__ = ["build_store", "failure", "first_chart", "launch", "main", "markdown", "measure_browser", "measure_server", "run"]

METRICS = bench_ui.FOUR_METRICS
#: What the page asks for at its narrowest (charts.js MIN_POINTS); used when no browser ran.
PAGE_MIN_POINTS = 2_000


def failure(exc: BaseException) -> str:
    """``failed: <reason>``, one line of at most 300 characters, for a table cell."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read().decode("utf-8", "replace")
            reason = json.loads(body).get("error", body)
        except (OSError, ValueError, AttributeError):
            reason = str(exc)
        text = f"HTTP {exc.code}: {reason}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    # The benchmarks' temporary folders say nothing and take the room of the reason.
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/bench-[^/\s'\"]+/", "", text)
    # One line, bounded, and no "|" (escaped or not, it splits a table row for the readers that
    # count bars, tests/test_benchmarks_smoke.py among them): the reason goes into a cell.
    text = " ".join(text.split()).replace("|", "¦")
    return "failed: " + (text if len(text) <= 300 else text[:299] + "…")


def run_ids(runs: int) -> list[str]:
    return [f"run-{i:03d}" for i in range(runs)]


def build_store(path: Path, runs: int, steps: int) -> int:
    """``runs`` runs of the four metrics, ``steps`` points each, written and closed; returns the points."""
    from otel_recursive_metrics.store import PointStore

    store = PointStore(path, durable=False)
    try:
        for run_id in run_ids(runs):
            bench_ui.write_run(store, run_id, METRICS, steps)
    finally:
        store.close()
    return runs * len(METRICS) * steps


def _series_url(base: str, runs: Sequence[str], metric: str, until_id: Any, max_points: int) -> str:
    query = urllib.parse.urlencode({"run": list(runs), "metric": metric, "until_id": until_id, "max_points": max_points}, doseq=True)
    return f"{base}api/series?{query}"


def _check_series(body: bytes, runs: int, metric: str) -> None:
    """The answer holds a series with points for every run (a figure over empty answers means nothing)."""
    series = json.loads(body)["series"]
    drawn = {s["run"] for s in series if s["metric"] == metric and any(t["value"] for t in s["traces"])}
    if len(drawn) != runs:
        raise RuntimeError(f"/api/series of {metric!r}: points for {len(drawn)} of {runs} runs")


def _every_metric_at_once(base: str, runs: Sequence[str], max_points: int) -> tuple[float, float]:
    """``/api/runs``, then every metric's ``/api/series`` sent at once, as the page sends them:
    seconds from the first request until the first series answer, and until the last."""
    started = time.perf_counter()
    body, _ = bench_ui._get(base + "api/runs")
    until_id = json.loads(body)["last_id"]

    def ask(metric: str) -> float:
        answer, _ = bench_ui._get(_series_url(base, runs, metric, until_id, max_points))
        _check_series(answer, len(runs), metric)
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=len(METRICS)) as pool:
        took = list(pool.map(ask, METRICS))  # the first failure is raised here
    return min(took), max(took)


def measure_server(path: Path, runs: int, repeats: int, max_points: int) -> dict[str, Any]:
    """Seconds of ``/api/runs`` + the first metric's ``/api/series``, and of the four at once (first, last)."""
    from otel_recursive_metrics.ui import UIServer

    ids = run_ids(runs)
    sequential: list[float] = []
    first_of_four: list[float] = []
    all_four: list[float] = []
    runs_bytes = series_bytes = 0
    for _ in range(repeats):
        with UIServer(path, port=0) as server:
            body, runs_s = bench_ui._get(server.url + "api/runs")
            runs_bytes = len(body)
            until_id = json.loads(body)["last_id"]
            body, series_s = bench_ui._get(_series_url(server.url, ids, METRICS[0], until_id, max_points))
            series_bytes = len(body)
            _check_series(body, runs, METRICS[0])
            sequential.append(runs_s + series_s)
        with UIServer(path, port=0) as server:
            first, last = _every_metric_at_once(server.url, ids, max_points)
            first_of_four.append(first)
            all_four.append(last)
    med = statistics.median
    return {
        "sequential_s": med(sequential),
        "sequential_range_s": (min(sequential), max(sequential)),
        "first_of_four_s": med(first_of_four),
        "all_four_s": med(all_four),
        "runs_bytes": runs_bytes,
        "series_bytes": series_bytes,
    }


#: Resolves to the page's mark, or to the text of the error the page shows (a failed request).
_MARK_OR_ERROR = """(name) => {
  const error = document.querySelector("#status.error");
  if (error) return {error: error.textContent || "error"};
  return window.__orm && window.__orm[name] ? {ms: window.__orm[name]} : null;
}"""


def _visit(page: Any, url: str) -> tuple[float, float]:
    """Milliseconds from navigation to the first chart drawn and to every chart; the page's error raised."""
    page.goto(url)
    found = []
    for mark in ("firstChartMs", "allChartsMs"):
        answer = page.wait_for_function(_MARK_OR_ERROR, arg=mark).json_value()
        if "error" in answer:
            raise RuntimeError(f"the compare page shows an error: {answer['error']}")
        found.append(float(answer["ms"]))
    # Its later requests end before the server stops under them.
    page.wait_for_load_state("networkidle")
    return found[0], found[1]


def first_chart(browser: Any, store_path: Path, page_path: str) -> dict[str, Any]:
    """Seconds from navigation to ``page_path``'s first chart and every chart, on a fresh server,
    with Plotly's bundle already in the browser's cache; and the ``max_points`` the page asked for."""
    from otel_recursive_metrics.ui import UIServer

    with UIServer(store_path, port=0) as server:
        context = browser.new_context(viewport=bench_ui.VIEWPORT)
        try:
            page = context.new_page()
            page.set_default_timeout(bench_ui.DEADLINE_MS)
            # Plotly's bundle into this browser's cache through a page that reads no series,
            # every request of it done before the timed visit.
            page.goto(f"{server.url}run?run=no-such-run&refresh=0")
            page.wait_for_function("() => window.Plotly !== undefined")
            page.wait_for_load_state("networkidle")
            first_ms, every_ms = _visit(page, server.url + page_path)
            max_points = int(page.evaluate("() => window.__orm.maxPoints"))
        finally:
            context.close()
    return {"first_s": first_ms / 1000, "every_s": every_ms / 1000, "max_points": max_points}


def launch(playwright: Any, chromium: str) -> Any:
    """Headless Chromium with ``bench_ui``'s arguments."""
    return playwright.chromium.launch(executable_path=chromium, args=bench_ui.CHROMIUM_ARGS)


def measure_browser(path: Path, runs: int, repeats: int, chromium: str) -> dict[str, Any]:
    """Seconds from navigation to the compare page's first chart and to its every chart (Plotly cached)."""
    from playwright.sync_api import sync_playwright

    query = urllib.parse.urlencode({"run": run_ids(runs), "metric": METRICS, "refresh": 0}, doseq=True)
    visits = []
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        version = f"Chromium {browser.version}"
        try:
            visits = [first_chart(browser, path, f"compare?{query}") for _ in range(repeats)]
        finally:
            browser.close()
    first = [v["first_s"] for v in visits]
    return {
        "first_chart_s": statistics.median(first),
        "first_chart_range_s": (min(first), max(first)),
        "every_chart_s": statistics.median(v["every_s"] for v in visits),
        "max_points": visits[-1]["max_points"],
        "browser": version,
    }


def run(
    *,
    runs: int = 50,
    steps: int = 50_000,
    repeats: int = 3,
    browser: bool = True,
    chromium: str = "/usr/bin/chromium",
    progress: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Build the store, then measure the browser (if asked) and the server; each part fails alone."""
    result: dict[str, Any] = {"runs": runs, "steps": steps, "repeats": repeats, "points_per_run": len(METRICS) * steps}
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        path = Path(folder) / "compare.db"
        progress(f"compare: writing {runs} runs x {len(METRICS)} metrics x {steps:,} steps")
        started = time.perf_counter()
        result["points"] = build_store(path, runs, steps)
        result["write_s"] = time.perf_counter() - started
        result["store_bytes"] = sum(p.stat().st_size for p in Path(folder).glob("compare.db*"))
        max_points = PAGE_MIN_POINTS
        if browser:
            progress("compare: first chart in the browser")
            try:
                result["browser"] = measure_browser(path, runs, repeats, chromium)
                max_points = result["browser"]["max_points"]
            except Exception as exc:  # one part failing must not lose the other
                result["browser_error"] = failure(exc)
        progress(f"compare: server reads (max_points {max_points:,})")
        result["max_points"] = max_points
        try:
            result["server"] = measure_server(path, runs, repeats, max_points)
        except Exception as exc:
            result["server_error"] = failure(exc)
    result["load"] = f"{load_before} at the start, {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"
    result["markdown"] = markdown(result)
    return result


def _seconds(median_s: float, span: tuple[float, float] | None = None) -> str:
    return f"{median_s:.2f} s" + (f" ({span[0]:.2f} to {span[1]:.2f})" if span and span[0] != span[1] else "")


def markdown(r: dict[str, Any]) -> str:
    shape = f"{r['runs']} runs x {r['points_per_run']:,} points ({len(METRICS)} metrics x {r['steps']:,} steps)"
    rows: list[tuple[str, str]] = []
    if "browser" in r:
        b = r["browser"]
        rows.append(("browser: first chart (Plotly cached, fresh server)", _seconds(b["first_chart_s"], b["first_chart_range_s"])))
        rows.append(("browser: every chart", _seconds(b["every_chart_s"])))
    else:
        rows.append(("browser: first chart", r.get("browser_error", "not measured (--no-browser)")))
    if "server" in r:
        s = r["server"]
        rows.append(
            (
                "server: `/api/runs` then the first metric's `/api/series`",
                _seconds(s["sequential_s"], s["sequential_range_s"]) + f"; {s['runs_bytes']:,} + {s['series_bytes']:,} bytes",
            )
        )
        rows.append(("server: the four metrics at once, first answer / last", f"{s['first_of_four_s']:.2f} s / {s['all_four_s']:.2f} s"))
    else:
        rows.append(("server", r.get("server_error", "not measured")))
    lines = [f"| compare page, {shape} | median (range) |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)]
    lines += [
        "",
        f"Store: {r['points']:,} points written in {r['write_s']:.1f} s through `PointStore.write_batch`, then closed: "
        f"{r['store_bytes'] / r['points']:.2f} B a point. `max_points` {r['max_points']:,}; {r['repeats']} repetition(s), "
        f"a fresh server each. Load average {r['load']}. Commit {commit()}; {machine()}.",
        versions_line("python", "sqlite", "numpy", "starlette", "uvicorn", "plotly", "playwright")
        + (f" Browser: {r['browser']['browser']} (headless)." if "browser" in r else ""),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs x 500 steps, once: a smoke run")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50_000, help="points of each of the four metrics of a run (default 50,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="the server's figures only")
    parser.add_argument("--chromium", default=os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.repeats = 3, 500, 1
    result = run(runs=args.runs, steps=args.steps, repeats=args.repeats, browser=not args.no_browser, chromium=args.chromium)
    print(result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
