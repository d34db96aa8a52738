"""Issue 21's web view figures: the first chart of a 1 M-point run, and of 50 runs compared.

    python benchmarks/bench_ui_reads.py                 # about 3 minutes; prints a Markdown table
    python benchmarks/bench_ui_reads.py --no-browser    # the server's reads alone (no Chromium needed)
    python benchmarks/bench_ui_reads.py --quick         # a tenth of the sizes, one repetition

Targets (issue 21): the first chart of a 1,000,000-point run (20 metrics x 50,000 steps, the
held-out run's shape) within 0.3 s end to end, its server read within 0.1 s; comparing 50 runs
of 200,000 points each (4 metrics x 50,000 steps): the first chart within 1 s.

Method. The stores are built in a temporary folder (removed at the end) by
:func:`benchmarks.bench_ui.write_run`: the store's own write path, batches of 100,000 points as the
pipeline delivers them, the resource attributes ``TrainingMetrics`` gives a run. The server is
:class:`~otel_recursive_metrics.ui.UIServer` on a free loopback port in this process, started
afresh for each repetition (an empty series cache: every read goes to the store).

- *server read*: ``GET /api/series`` for what the page's first request asks (one metric of the
  run; one metric of the 50 runs), with ``max_points`` 2,000 (the page's least), timed by the
  client; and the same for every metric of the run in one request.
- *first chart* (with Chromium, as :mod:`benchmarks.bench_ui` drives it): navigation to the run
  page (or the compare page naming the 50 runs and one metric) until Plotly has drawn a chart,
  the page's own mark; the browser already holds Plotly (the "run opened" case of bench_ui).
  The compare page reads ``/api/runs`` first, so it needs the runs summary working too.

The script imports the package from the checkout it lies in: copy it into another checkout
(``git archive``) to measure that one the same way. Medians over ``--repeats`` repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.bench_ui import CHROMIUM_ARGS, DEADLINE_MS, VIEWPORT, _get, _visit, write_run
from benchmarks.common import commit, machine, markdown_table, say, versions_line

__all__ = ["main", "run"]

MAX_POINTS = 2000


def _ms(values_s: Sequence[float]) -> str:
    text = f"{statistics.median(values_s) * 1000:.0f} ms"
    return text + (f" ({min(values_s) * 1000:.0f} to {max(values_s) * 1000:.0f})" if len(values_s) > 2 else "")


def _server_read(store_path: Path, params: dict[str, Any], repeats: int) -> tuple[list[float], int]:
    """Seconds of ``/api/series?params`` on a fresh server each time, and the answer's size."""
    from otel_recursive_metrics.ui import UIServer

    times, size = [], 0
    for _ in range(repeats):
        with UIServer(store_path, port=0) as server:
            body, seconds = _get(f"{server.url}api/series?{urllib.parse.urlencode(params, doseq=True)}")
        times.append(seconds)
        size = len(body)
    return times, size


def _first_chart(browser: Any, store_path: Path, path: str, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds to the first chart and to every chart of ``path``, Plotly in the browser's cache."""
    from otel_recursive_metrics.ui import UIServer

    first, every = [], []
    for _ in range(repeats):
        with UIServer(store_path, port=0) as server:
            context = browser.new_context(viewport=VIEWPORT)
            try:
                page = context.new_page()
                page.set_default_timeout(DEADLINE_MS)
                page.goto(f"{server.url}run?run=no-such-run&refresh=0")
                page.wait_for_function("() => window.Plotly !== undefined")
                page.wait_for_load_state("networkidle")
                one, all_ = _visit(page, server.url + path, "firstChartMs", also="allChartsMs")
            finally:
                context.close()
        first.append(one / 1000)
        every.append(all_ / 1000)
    return first, every


def run(*, steps: int = 50_000, runs: int = 50, repeats: int = 5, browser_path: str | None = "/usr/bin/chromium") -> list[dict[str, Any]]:
    from otel_recursive_metrics.store import PointStore

    twenty = [f"train.m{i:02d}" for i in range(20)]
    four = twenty[:4]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-reads-") as folder:
        one_path, many_path = Path(folder) / "run.db", Path(folder) / "runs.db"
        say(f"writing a run of 20 metrics x {steps:,} steps, and {runs} runs of 4 metrics x {steps:,} steps")
        store = PointStore(one_path, durable=False)
        write_run(store, "held-out", twenty, steps)
        store.close()
        store = PointStore(many_path, durable=False)
        names = [f"run-{i:02d}" for i in range(runs)]
        for name in names:
            write_run(store, name, four, steps)
        store.close()
        cases = [
            (f"run of 20 metrics x {steps:,} steps: first chart", "<= 0.3 s (server <= 0.1 s)", one_path,
             {"run": "held-out", "metric": twenty[0], "max_points": MAX_POINTS}, "run?run=held-out&refresh=0"),
            (f"run of 20 metrics x {steps:,} steps: all 20 metrics, one request", "", one_path,
             {"run": "held-out", "metric": twenty, "max_points": MAX_POINTS}, None),
            (f"compare {runs} runs x {4 * steps:,} points: first chart (one metric, {runs * steps:,} points)", "<= 1 s", many_path,
             {"run": names, "metric": four[0], "max_points": MAX_POINTS},
             "compare?" + urllib.parse.urlencode({"run": names, "metric": four[0], "refresh": 0}, doseq=True)),
        ]  # fmt: skip
        browser = playwright = None
        if browser_path:
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            for figure, target, path, params, page in cases:
                say(figure)
                server_s, size = _server_read(path, params, repeats)
                row = {
                    "figure": figure,
                    "target": target,
                    "server read": f"{_ms(server_s)}, {size:,} bytes",
                    "first chart": "",
                    "every chart": "",
                }
                if browser is not None and page is not None:
                    first, every = _first_chart(browser, path, page, repeats)
                    row["first chart"], row["every chart"] = _ms(first), _ms(every)
                rows.append(row)
        finally:
            if browser is not None and playwright is not None:
                browser.close()
                playwright.stop()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5,000 steps, 10 runs, one repetition")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-browser", action="store_true", help="time the server's reads only")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.runs, args.repeats = 5_000, 10, 1
    rows = run(steps=args.steps, runs=args.runs, repeats=args.repeats, browser_path=None if args.no_browser else args.chromium)
    print("## Web view reads (issue 21)\n")
    print(f"Commit {commit()}; {machine()}.")
    print(versions_line("python", "sqlite", "numpy", "starlette", "uvicorn") + "\n")
    print(markdown_table(rows, ["figure", "target", "first chart", "every chart", "server read"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
