"""Issue 18, defect 9: SIGTERM and what came through the OpenTelemetry SDK's reader, measured.

    python benchmarks/faults_r3_sigterm.py

Each scenario runs a real child process that counts with the OpenTelemetry meter API (a counter,
``requests``), built either by ``configure()`` or by the SDK's auto-configuration under
``opentelemetry-instrument`` with ``OTEL_METRICS_EXPORTER=recursive``; sends it SIGTERM; then
opens its data folder as the next start would (delivers what is queued) and reads the counter's
value from the store. "logged" is what the child had counted when the signal came (increments);
"delivered" is what the store holds; "counted as dropped" is what the pipeline counted as
dropped, in points. The child program is written here, so that the script runs against any
version of the package (``PYTHONPATH=/path/to/other/tree python /tmp/faults_r3_sigterm.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from otel_recursive_metrics import PointStore, RecursiveMetricExporter

Row = dict[str, str]

CHILD = r"""
import json, os, signal, sys, threading, time
from pathlib import Path

route, data_dir, rate_hz, report = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
import otel_recursive_metrics as orm
from otel_recursive_metrics.pipeline.default import get_default_pipeline

if route == "configure":
    provider = orm.configure(dir=data_dir, export_interval_s=float(os.environ.get("EXPORT_INTERVAL_S", "60")))
elif route == "manual":
    # An exemplar reservoir that sends SIGTERM from inside the SDK, with its lock held (delta).
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, ExemplarReservoir
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import View

    offers = [0]

    class SignalsSelf(ExemplarReservoir):
        def offer(self, value, time_unix_nano, attributes, context):
            offers[0] += 1
            if offers[0] == 2000:
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(10))

        def collect(self, point_attributes):
            return []

    reader = PeriodicExportingMetricReader(orm.RecursiveMetricExporter(dir=data_dir), export_interval_millis=60_000)
    view = View(instrument_name="requests", exemplar_reservoir_factory=lambda aggregation: SignalsSelf)
    provider = MeterProvider(metric_readers=[reader], views=[view], exemplar_filter=AlwaysOnExemplarFilter())
    metrics.set_meter_provider(provider)
else:
    provider = metrics.get_meter_provider()
counter = provider.get_meter("bench").create_counter("requests")
pipeline = get_default_pipeline()
state = {"added": 0}


def reporter():
    ready = False
    while True:
        stats = pipeline.get_stats()
        data = {"added": state["added"], "exports": stats["accepted_items"], "dropped": sum(stats["dropped_points"].values())}
        with report.open("a") as f:
            f.write(json.dumps(data) + "\n")
        if not ready and data["added"] and data["exports"] >= int(os.environ.get("READY_AFTER_EXPORTS", "0")):
            ready = True
            print("READY", flush=True)
        time.sleep(0.02)


if route == "http":
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    duration = provider.get_meter("bench").create_histogram("http.server.duration", unit="ms")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            started = time.perf_counter()
            counter.add(1, {"http.route": "/"})  # before the answer: once the client has it, it is counted
            duration.record((time.perf_counter() - started) * 1000, {"http.route": "/"})
            state["added"] += 1
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
else:
    threading.Thread(target=reporter, daemon=True).start()
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    started = time.monotonic()
    attributes = {"route": "/work"}
    while True:
        counter.add(1, attributes)
        state["added"] += 1
        if period:
            delay = started + state["added"] * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
"""


def _start(
    work: Path, name: str, route: str, rate_hz: float, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path, Path]:
    data = work / name
    report = work / f"{name}.jsonl"
    program = work / "child.py"
    program.write_text(CHILD)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child_env.update(PYTHONUNBUFFERED="1", OTEL_RECURSIVE_METRICS_DIR=str(data))
    command = [sys.executable, str(program), route, str(data), str(rate_hz), str(report)]
    if route in ("auto", "http"):
        child_env.update(
            OTEL_METRICS_EXPORTER="recursive", OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none", OTEL_METRIC_EXPORT_INTERVAL="60000"
        )
        command = [str(Path(sys.executable).with_name("opentelemetry-instrument")), *command]
    child_env.update(env or {})
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
    return child, data, report


def _first_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"the child did not start: {child.stderr.read() if child.stderr else ''}")
    return line


def _reports(path: Path) -> list[dict[str, Any]]:
    import json

    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _stored(data: Path, metric: str = "requests") -> int:
    """What the next start finds: deliver the queue, then the counter's value in the store."""
    if data.exists():
        exporter = RecursiveMetricExporter(dir=data, flush_interval_s=0.2, max_batch_points=65536, handle_sigterm=False)
        exporter.force_flush(120_000)
        exporter.shutdown()
    store = data / "metrics.db"
    if not store.exists():
        return 0
    points = PointStore(store, readonly=True).query(metric)
    if not points:
        return 0
    if all(p.temporality == 1 for p in points):  # delta: the increments add up
        return int(sum(p.value or 0 for p in points))
    return int(max(p.value or 0 for p in points))


def _row(
    scenario: str, logged: int, delivered: int, dropped: int, child: subprocess.Popen[str], stderr: str, *, exact: bool = False
) -> Row:
    said = next((line.split("SIGTERM:", 1)[1].strip() for line in stderr.splitlines() if "SIGTERM:" in line), None)
    note = f"exit status {child.returncode}; " + (f"logged: SIGTERM: {said[:90]}" if said else "no SIGTERM line")
    return {
        "scenario": scenario,
        # The child's last report before the signal: at least this much was logged.
        "logged": str(logged) if exact else f">= {logged}",
        "delivered": str(delivered),
        "counted as dropped": str(dropped),
        "lost uncounted": str(max(0, logged - delivered - dropped)),
        "note": note,
    }


def _terminate(child: subprocess.Popen[str], report: Path, after_s: float) -> tuple[dict[str, Any], str]:
    _first_line(child)  # READY
    time.sleep(after_s)
    before = _reports(report)[-1]
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(60)
    finally:
        child.kill()
    return before, child.stderr.read() if child.stderr else ""


def counter_loops(work: Path) -> list[Row]:
    rows = []
    cases = [
        ("auto", 200.0, 0.5, {}, "opentelemetry-instrument (OTEL_METRICS_EXPORTER=recursive), 200 adds/s, SIGTERM before the first export"),
        ("configure", 200.0, 0.5, {}, "configure(), 200 adds/s, SIGTERM before the first export"),
        (
            "auto",
            200.0,
            0.3,
            {"OTEL_METRIC_EXPORT_INTERVAL": "200", "READY_AFTER_EXPORTS": "3"},
            "opentelemetry-instrument, 200 adds/s, SIGTERM after 3 periodic exports (interval 0.2 s)",
        ),
        (
            "configure",
            0.0,
            1.0,
            {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"},
            "configure(), delta, a tight counter.add loop (the signal lands inside the SDK), SIGTERM after 1 s",
        ),
        (
            "auto",
            200.0,
            0.3,
            {"OTEL_RECURSIVE_METRICS_HANDLE_SIGTERM": "false"},
            "opentelemetry-instrument with handle_sigterm=false (Python's default, as documented)",
        ),
    ]
    for n, (route, rate, after_s, env, scenario) in enumerate(cases):
        child, data, report = _start(work, f"loop-{n}", route, rate, env)
        before, stderr = _terminate(child, report, after_s)
        rows.append(_row(scenario, before["added"], _stored(data), before["dropped"], child, stderr))
    return rows


def lock_held(work: Path) -> list[Row]:
    """SIGTERM handled inside the SDK while it holds the lock the collect needs (delta temporality)."""
    child, data, report = _start(work, "lock", "manual", 0.0, {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"})
    try:
        child.wait(60)
    finally:
        child.kill()
    stderr = child.stderr.read() if child.stderr else ""
    last = _reports(report)[-1] if _reports(report) else {"added": 2000, "dropped": 0}
    logged = max(last["added"], 2000)
    scenario = "configure()-like provider, delta: SIGTERM handled inside counter.add, with the SDK's lock held"
    return [_row(scenario, logged, _stored(data), last["dropped"], child, stderr)]


def http_server(work: Path, requests: int = 500) -> list[Row]:
    """The issue's report: a web server under opentelemetry-instrument, 500 requests, then SIGTERM."""
    child, data, _ = _start(work, "http", "http", 0.0)
    port = int(_first_line(child).split()[1])
    for _ in range(requests):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            response.read()
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(60)
    finally:
        child.kill()
    stderr = child.stderr.read() if child.stderr else ""
    scenario = f"HTTP server (stdlib) under opentelemetry-instrument: {requests} requests counted, then SIGTERM"
    return [_row(scenario, requests, _stored(data), 0, child, stderr, exact=True)]


def rows(work: Path) -> list[Row]:
    return http_server(work) + counter_loops(work) + lock_held(work)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        table = rows(Path(tmp))
    keys = ["scenario", "logged", "delivered", "counted as dropped", "lost uncounted", "note"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(row[k] for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
