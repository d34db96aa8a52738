"""The web view's figures, measured in a real browser: first chart, runs page, bytes per update.

    python benchmarks/bench_ui.py                 # about 2 minutes; prints Markdown tables, writes nothing else
    python benchmarks/bench_ui.py --quick         # small sizes, one repetition: a smoke run

Needs the ``ui`` extra, Playwright (the ``test`` extra) and a Chromium binary (Debian's
``chromium``; ``--chromium PATH`` or ``OTEL_RECURSIVE_METRICS_CHROMIUM`` for another).

Method. The stores are built in a temporary folder (removed at the end) through the store's
own write path (:meth:`PointStore.write_batch`, the batches the pipeline delivers), with the
resource attributes ``TrainingMetrics`` gives a run:

- *1,000,000-point run*: one run whose ``train.loss`` has 1,000,000 points (one a step, a spike
  every 100,003 steps), and a second shape of the same size, four metrics of 250,000 points;
- *200 runs*: 200 runs of four metrics, 250 steps each (200,000 points).

The server is :class:`~otel_recursive_metrics.ui.UIServer` (uvicorn, as ``otel-recursive-metrics
ui`` runs it) on a free loopback port, in this process. The browser is headless Chromium driven
by Playwright, 1400 x 1000 pixels, a fresh browser context per repetition.

- *Time to first chart*: navigation to ``/run?run=...`` until Plotly has drawn a chart's data,
  read from the page's own mark (``performance.now()`` when ``Plotly.react``'s promise resolved:
  milliseconds since navigation started). Three cases, each repetition on fresh servers (empty
  series cache): a first visit (a fresh browser profile: Plotly's 4.6 MB bundle is downloaded
  and compiled too), a run opened (the browser holds Plotly, the server reads the series from
  the store for the first time) and the run opened again (the server reads only what is new).
  With several metrics, the page asks for each metric's series at once and draws each chart
  as its data comes in; the time until every chart is drawn is given too.
- *Runs page*: navigation to ``/`` until the table shows every run (the page's mark; in the
  table's "first chart" column).
- *Bytes per live update*: after loading the 1,000,000-point run, append N points to it and ask
  ``/api/series`` for what came after the page's snapshot, with the ``max_points`` the page asks
  for at this width, and with downsampling off; the body's size in bytes (JSON, no compression).
  The server's time for the same request is given beside it.

Medians over ``--repeats`` (default 5) repetitions, with their range.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import commit, machine, markdown_table, say, versions_line

__all__ = ["main", "run"]

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC
#: What keeps a headless Chromium quiet and offline in a container (the browser tests use these too).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT: Any = {"width": 1400, "height": 1000}
FOUR_METRICS = ["train.loss", "train.accuracy", "train.lr", "train.grad_norm"]
DEADLINE_MS = 60_000


def write_run(store: Any, run: str, metrics: Sequence[str], steps: int, *, rank: int = 0, start_step: int = 0) -> None:
    """``steps`` points of each metric for ``run``, in batches of the size the pipeline delivers."""
    from otel_recursive_metrics.model.batch import BatchBuilder

    rng = random.Random(run)
    batch_steps = max(1, 100_000 // len(metrics))
    for first in range(start_step, start_step + steps, batch_steps):
        builder = BatchBuilder()
        resource = builder.resource({"training.run.id": run, "training.rank": rank, "service.name": "bench_ui"})
        scope = builder.plain_scope("otel_recursive_metrics.training")
        ids = [builder.metric(name, "", "", "gauge") for name in metrics]
        for step in range(first, min(start_step + steps, first + batch_steps)):
            for i, metric_index in enumerate(ids):
                value = (i + 1) / (1 + step / 1000) + rng.random() * 0.01 + (5.0 if step % 100_003 == 7 else 0.0)
                builder.add_point(resource, scope, metric_index, "{}", 0, T0 + step * 1_000_000 + i, value, step, None)
        store.write_batch(builder.build())


def _get(url: str) -> tuple[bytes, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=DEADLINE_MS / 1000) as response:
        body = response.read()
    return body, time.perf_counter() - started


def _visit(page: Any, url: str, mark: str, check: Callable[[Any], None] | None = None, also: str | None = None) -> Any:
    """Navigate ``page`` to ``url``; milliseconds from navigation to the page's ``mark`` (and ``also``)."""
    page.goto(url)
    page.wait_for_function("(name) => window.__orm && window.__orm[name]", arg=mark)
    if check:
        check(page)
    found = float(page.evaluate("(name) => window.__orm[name]", mark))
    if also is not None:
        page.wait_for_function("(name) => window.__orm[name]", arg=also)
        found_also = float(page.evaluate("(name) => window.__orm[name]", also))
    # The page's later requests (a run page asks for the runs summary after its charts) end
    # before the next step, so that neither they nor a server stopping under them count.
    page.wait_for_load_state("networkidle")
    return found if also is None else (found, found_also)


def _first_chart(browser: Any, store_path: Path, run_id: str) -> dict[str, Any]:
    """One repetition of the three cases of a run page, each on a fresh server (empty series cache)."""
    from otel_recursive_metrics.ui import UIServer

    path = f"run?run={run_id}&refresh=0"
    found = {}
    with UIServer(store_path, port=0) as server:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            found["cold"] = _visit(context.new_page(), server.url + path, "firstChartMs", also="allChartsMs")
        finally:
            context.close()
    with UIServer(store_path, port=0) as server:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.set_default_timeout(DEADLINE_MS)
            # Plotly's bundle into this browser's cache, through a page that reads no series (a
            # run without points), and every request of that page done before the next.
            page.goto(f"{server.url}run?run=no-such-run&refresh=0")
            page.wait_for_function("() => window.Plotly !== undefined")
            page.wait_for_load_state("networkidle")
            found["first read"] = _visit(page, server.url + path, "firstChartMs", also="allChartsMs")
            found["again"] = _visit(page, server.url + path, "firstChartMs", also="allChartsMs")
            found["max_points"] = page.evaluate("() => window.__orm.maxPoints")
        finally:
            context.close()
    return found


def _summary(values_ms: Sequence[float]) -> str:
    text = f"{statistics.median(values_ms) / 1000:.2f} s"
    if len(values_ms) > 2:
        text += f" ({min(values_ms) / 1000:.2f} to {max(values_ms) / 1000:.2f})"
    return text


CASES = {
    "first visit (cold browser, first read)": "cold",
    "run opened (Plotly cached, first read)": "first read",
    "run opened again (series cached by the server)": "again",
}


def run(*, points: int = 1_000_000, runs: int = 200, repeats: int = 5, chromium: str = "/usr/bin/chromium") -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from otel_recursive_metrics.store import PointStore
    from otel_recursive_metrics.ui import UIServer

    rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as folder:
        big_path, many_path = Path(folder) / "big.db", Path(folder) / "runs.db"
        say(f"writing a {points:,}-point run (one metric), the same size over four metrics, and {runs} runs")
        big = PointStore(big_path, durable=False)
        write_run(big, "one-metric", ["train.loss"], points)
        write_run(big, "four-metrics", FOUR_METRICS, points // 4)
        many = PointStore(many_path, durable=False)
        for i in range(runs):
            write_run(many, f"run-{i:03d}", ["train.loss", "train.accuracy", "val.loss", "val.accuracy"], 250)
        many.close()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                for run_id, shape in (("one-metric", f"1 metric x {points:,}"), ("four-metrics", f"4 metrics x {points // 4:,}")):
                    say(f"time to first chart: {shape}")
                    timings = [_first_chart(browser, big_path, run_id) for _ in range(repeats)]
                    page_max_points = int(timings[-1]["max_points"])
                    with UIServer(big_path, port=0) as server:
                        metrics = ["train.loss"] if run_id == "one-metric" else FOUR_METRICS
                        query = urllib.parse.urlencode({"run": run_id, "metric": metrics, "max_points": page_max_points}, doseq=True)
                        body, first_s = _get(f"{server.url}api/series?{query}")
                        _, again_s = _get(f"{server.url}api/series?{query}")
                    for case, key in CASES.items():
                        rows.append(
                            {
                                "figure": f"first chart, {points:,}-point run ({shape}): {case}",
                                "target": "< 1 s",
                                "first chart: median (range)": _summary([t[key][0] for t in timings]),
                                "every chart": _summary([t[key][1] for t in timings]) if run_id == "four-metrics" else "",
                                "server": f"/api/series: {(first_s if key != 'again' else again_s) * 1000:.0f} ms, {len(body):,} bytes"
                                if key != "cold"
                                else "",
                            }
                        )
                say(f"runs page: {runs} runs")

                def every_run_shown(page: Any) -> None:
                    shown = page.evaluate("() => document.querySelectorAll('#runs tbody tr').length")
                    assert shown == runs, f"{shown} rows shown, {runs} expected"

                with UIServer(many_path, port=0) as runs_server:
                    timings_ms = []
                    for _ in range(repeats):
                        context = browser.new_context(viewport=VIEWPORT)
                        try:
                            timings_ms.append(_visit(context.new_page(), f"{runs_server.url}?refresh=0", "runsShownMs", every_run_shown))
                        finally:
                            context.close()
                    body, server_s = _get(f"{runs_server.url}api/runs")
                rows.append(
                    {
                        "figure": f"runs page, {runs} runs ({runs * 1000:,} points), fresh browser",
                        "target": "< 1 s",
                        "first chart: median (range)": _summary(timings_ms),
                        "server": f"/api/runs: {server_s * 1000:.0f} ms, {len(body):,} bytes",
                    }
                )
            finally:
                browser.close()
        say("bytes per live update")
        with UIServer(big_path, port=0) as server:
            first = f"{server.url}api/series?run=one-metric&metric=train.loss&max_points={page_max_points}"
            snapshot = json.loads(_get(first)[0])["last_id"]
            next_step = points
            for new in (0, 1, 100, 10_000):
                write_run(big, "one-metric", ["train.loss"], new, start_step=next_step)
                next_step += new
                sizes, times = {}, []
                for label, max_points in (("page", page_max_points), ("raw", 50_000)):
                    params = {"run": "one-metric", "metric": "train.loss", "after_id": snapshot, "max_points": max_points}
                    body, server_s = _get(f"{server.url}api/series?{urllib.parse.urlencode(params)}")
                    sizes[label] = len(body)
                    times.append(server_s)
                    answer = json.loads(body)
                snapshot = answer["last_id"]
                updates.append(
                    {
                        "new points": f"{new:,}",
                        "points before": f"{next_step - new:,}",
                        f"bytes (max_points={page_max_points:,}, as the page asks)": f"{sizes['page']:,}",
                        "bytes, not downsampled": f"{sizes['raw']:,}",
                        "bytes per new point, not downsampled": f"{sizes['raw'] / new:,.1f}" if new else "",
                        "server time": f"{statistics.median(times) * 1000:.1f} ms",
                    }
                )
        big.close()
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"points": points, "rows": rows, "updates": updates, "load": f"{load_before} at the start, {load_after} at the end"}


def markdown(result: dict[str, Any], chromium_version: str) -> str:
    lines = [
        "## Web view (`otel-recursive-metrics ui`)",
        "",
        f"Commit {commit()}; {machine()}; load average {result['load']}.",
        versions_line("python", "sqlite", "starlette", "uvicorn", "plotly", "playwright") + f" Browser: {chromium_version} (headless).",
        "",
        markdown_table(result["rows"], ["figure", "target", "first chart: median (range)", "every chart", "server"]),
        "Each repetition starts a fresh server (empty series cache). *First visit*: a fresh browser profile, which downloads"
        " and compiles Plotly's 4.6 MB bundle as well. *Run opened*: the browser already holds Plotly (any earlier page of the"
        " view loads it) and the server reads the run's series from the store for the first time. *Opened again*: the same"
        " page again; the server reads only what was added since its first read. The store file is in the OS page cache"
        " (it was just written). *server*: the same `/api/series` request timed alone, without the browser.",
        "",
        f"Bytes per live update (the answer to `/api/series?after_id=...` on the {result['points']:,}-point run; target: proportional"
        " to the new points only, whatever the history):",
        "",
        markdown_table(result["updates"], list(result["updates"][0])),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 points, 20 runs, one repetition")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default=os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.runs, args.repeats = 100_000, 20, 1
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        chromium_version = f"Chromium {browser.version}"
        browser.close()
    result = run(points=args.points, runs=args.runs, repeats=args.repeats, chromium=args.chromium)
    print(markdown(result, chromium_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
