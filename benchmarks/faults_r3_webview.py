"""Issue 18's web view faults (8, 10, 11b), reproduced as reported; one row each.

    python benchmarks/faults_r3_webview.py

- 8: a metric named ``m<a href="https://example.invalid/phish">relogin</a>`` (through the seed
  API, which accepts any name) and a run id with ``<span style=...>``, drawn on the comparison
  page in headless Chromium: what the chart's title, legend and hover label show, and how many
  links the chart's SVG holds;
- 10: an ``http.server.duration`` histogram of whole milliseconds through the real SDK (count
  450, sum 38): the mean the chart draws and the runs page lists;
- 11b: a 1 MB URL over a real socket: the answer, or a reset connection;
- the security headers on the answers no route writes (a 404, a 405, a refused ``Host``).

Runs against whatever ``otel_recursive_metrics`` is importable (``PYTHONPATH`` picks the tree).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_recursive_metrics import RecursiveMetricExporter
from otel_recursive_metrics.metrics_store import MetricsStore
from otel_recursive_metrics.ui import UIServer

Row = dict[str, str]
METRIC = 'm<a href="https://example.invalid/phish">relogin</a>'
RUN = 'r<span style="fill:red;font-size:30px">styled</span>'
CHROMIUM = os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM", "/usr/bin/chromium")


def _row(scenario: str, logged: str, delivered: str, dropped: str, lost: str, note: str) -> Row:
    return {
        "scenario": scenario,
        "logged": logged,
        "delivered": delivered,
        "counted as dropped": dropped,
        "lost uncounted": lost,
        "note": note,
    }


def markup(work: Path) -> list[Row]:
    """Fault 8: the title, legend and hover of a chart whose metric and run look like markup."""
    data = work / "markup"
    os.environ["OTEL_RECURSIVE_METRICS_RUN_ID"] = RUN
    try:
        seed = MetricsStore(path=data / "metrics.db")
        seed.store_metrics([{"metric_name": METRIC, "value": float(s), "step": s, "attributes": {"k": v}} for v in "ab" for s in range(20)])
        seed.store.close()
    finally:
        del os.environ["OTEL_RECURSIVE_METRICS_RUN_ID"]
    try:
        from playwright.sync_api import sync_playwright

        from benchmarks.bench_ui import CHROMIUM_ARGS
    except ImportError as exc:
        return [_row("8. markup in names (web view)", "40 points", "-", "-", "-", f"skipped: {exc}")]
    with UIServer(data / "metrics.db", port=0) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}compare?{urllib.parse.urlencode([('run', RUN), ('metric', METRIC), ('refresh', '0')])}")
        page.wait_for_function("() => window.__orm && window.__orm.allChartsMs")
        chart = "document.querySelector('.chart')"
        box = page.evaluate_handle(f"() => {chart}.querySelector('.nsewdrag')").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function(f"() => {chart}.querySelector('.hoverlayer').textContent.length > 0")
        seen: dict[str, Any] = page.evaluate(
            f"""() => ({{
                title: {chart}.querySelector('.gtitle').textContent,
                legend: [...{chart}.querySelectorAll('.infolayer .legendtext')].map((n) => n.textContent),
                hover: {chart}.querySelector('.hoverlayer').textContent,
                links: [...{chart}.querySelectorAll('svg a')].map((a) => a.getAttribute('xlink:href') || a.getAttribute('href')),
                styled: {chart}.querySelectorAll('svg tspan[style*="30px"]').length,
                points: {chart}.data.reduce((n, t) => n + t.y.length, 0),
            }})"""
        )
        browser.close()
    legend_ok = all(text.startswith(RUN) for text in seen["legend"]) and len(seen["legend"]) == 2
    return [
        _row(
            "8. metric name with a link: chart title",
            "40 points",
            f"{seen['points']} drawn",
            "0",
            "0",
            f"title {'= the name as written' if seen['title'] == METRIC else repr(seen['title'])}; "
            f"{len(seen['links'])} link(s) in the chart {seen['links'][:1]}",
        ),
        _row(
            "8. run id with <span style>: legend and hover",
            "-",
            "-",
            "-",
            "-",
            f"legend {'= the id as written' if legend_ok else repr(seen['legend'])}; {seen['styled']} styled span(s); "
            f"hover {'names the run as written' if RUN in seen['hover'] else repr(seen['hover'][:60])}",
        ),
    ]


def histogram_mean(work: Path) -> list[Row]:
    """Fault 10: a whole-millisecond histogram (count 450, sum 38) through the real SDK."""
    data = work / "histogram"
    exporter = RecursiveMetricExporter(dir=data, flush_interval_s=0.1)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "web", "training.run.id": "server"}), metric_readers=[reader])
    duration = provider.get_meter("http").create_histogram("http.server.duration", unit="ms")
    for request in range(450):
        duration.record(1 if request < 38 else 0)
    provider.shutdown()
    with UIServer(data / "metrics.db", port=0) as server:
        query = urllib.parse.urlencode({"run": "server", "metric": "http.server.duration"})
        with urllib.request.urlopen(f"{server.url}api/series?{query}", timeout=30) as response:
            drawn = json.load(response)["series"][0]["traces"][0]["value"][-1]
        with urllib.request.urlopen(f"{server.url}api/runs", timeout=30) as response:
            listed = json.load(response)["runs"][0]["last"]["http.server.duration"]["value"]
    true_mean = 38 / 450
    return [
        _row(
            "10. integer histogram (count 450, sum 38): mean shown",
            f"mean {true_mean:.4f}",
            f"chart {drawn:.4g}, runs page {listed:.4g}",
            "-",
            "-",
            "equal to the store's mean" if drawn == listed == true_mean else f"wrong: {drawn} and {listed}, true mean {true_mean}",
        )
    ]


def _exchange(port: int, request: bytes) -> str:
    """The status line the server answers ``request`` with, or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        return f"{type(exc).__name__} ({exc.strerror or exc})"
    return answer.split(b"\r\n", 1)[0].decode("latin-1") if answer else "closed without an answer"


def long_url_and_headers(work: Path) -> list[Row]:
    """Fault 11b (a 1 MB URL) and the security headers on the framework's own answers."""
    data = work / "url"
    seed = MetricsStore(path=data / "metrics.db")
    seed.store_metric({"metric_name": "train.loss", "value": 1.0, "step": 0})
    seed.store.close()
    with UIServer(data / "metrics.db", port=0) as server:
        answer = _exchange(server.port, b"GET /api/runs?q=" + b"x" * 1_000_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        missing = []
        for name, request in (
            ("404", b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
            ("405", b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            ("foreign Host", b"GET /api/runs HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"),
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head and (chunk := sock.recv(65536)):
                    head += chunk
            lowered = head.lower()
            if b"content-security-policy:" not in lowered or b"x-content-type-options: nosniff" not in lowered:
                missing.append(name)
    return [
        _row("11b. a 1 MB URL", "-", "-", "-", "-", f"answer: {answer}"),
        _row(
            "security headers on 404 / 405 / refused Host",
            "-",
            "-",
            "-",
            "-",
            f"CSP and nosniff missing on: {', '.join(missing)}" if missing else "CSP and nosniff on all three",
        ),
    ]


def rows(work: Path) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    return [*markup(work), *histogram_mean(work), *long_url_and_headers(work)]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="faults-r3-webview-") as folder:
        found = rows(Path(folder))
    keys = list(found[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in found:
        print("| " + " | ".join(row[k].replace("|", "\\|") for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
