"""TensorBoard's and Aim's web views, measured the way ``bench_ui.py`` measures ours: first chart, runs page, bytes per update.

    /tmp/peers-venv/bin/python benchmarks/bench_ui_peers.py                   # TensorBoard, about 2.5 minutes
    /tmp/peers-venv/bin/python benchmarks/bench_ui_peers.py --aim-python /tmp/aim-venv/bin/python   # and Aim: 9 minutes
    /tmp/peers-venv/bin/python benchmarks/bench_ui_peers.py --quick           # 20,000 points, 20 runs, once

The peers are kept out of the project's environment, each in a virtualenv of its own (TensorBoard
pins protobuf and NumPy and ships a data server binary; Aim brings its own FastAPI and RocksDB)::

    python3.11 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install tensorboard playwright psutil
    python3.11 -m venv /tmp/aim-venv && /tmp/aim-venv/bin/pip install aim

This script runs in the first (TensorBoard, Playwright); Aim's writer and ``aim up`` run as
subprocesses of the second. The browser is a Chromium binary (Debian's ``chromium``;
``--chromium PATH`` or ``OTEL_RECURSIVE_METRICS_CHROMIUM``), launched with ``bench_ui.py``'s flags
and window size, so both scripts see the same browser. Nothing is written outside a temporary
folder, which is removed at the end.

Method. The data are the values ``bench_ui.py`` writes (one a step, a spike of +5 every
100,003 steps), written by each tool's own writer:

- *1,000,000-point run*: one run whose loss has 1,000,000 points; its writer stays open, as a
  training process keeps it, so that points can be appended later;
- *200 runs*: 200 runs of four metrics, 250 steps each (200,000 points).

TensorBoard: ``EventFileWriter``, one ``Event`` per value with a ``simple_value`` summary (as
``SummaryWriter.add_scalar`` writes them), tag ``train/loss``; served by ``tensorboard --logdir DIR
--host 127.0.0.1 --port FREE --reload_interval 1`` (its default loader: the Rust data server when
the wheel ships it, as ``tensorboard-data-server`` does on Linux x86-64). Aim: ``aim.Run.track``,
metric ``loss`` with context ``{"subset": "train"}``; served by ``aim up --repo DIR --host
127.0.0.1 --port FREE``. Each server is a subprocess, stopped after each case.

- *Time to first chart, server*: from starting the server process until the series endpoint the
  run's chart reads (TensorBoard: ``/data/plugin/scalars/scalars?run=...&tag=...``; Aim:
  ``POST /api/runs/<hash>/metric/get-batch/``), polled every 50 ms, answers at all, answers with
  points, and answers with the run's last step. Neither sends every point: TensorBoard keeps a
  reservoir sample of each scalar series (1,000 points by default, ``--samples_per_plugin
  scalars=N``), Aim's ``get-batch`` samples 200 points from the sequence on each request; how
  many points come back, and how many of the spikes are among them, is printed.
- *Time to first chart, browser*: with the server loaded, navigation to the run's chart until it
  has drawn: TensorBoard's Scalars dashboard (``/#scalars``) until a ``path.line`` inside the
  ``vz-line-chart2`` shadow root (the Plottable SVG line of the ``tf-scalar-card``) has a ``d``
  attribute of at least two vertices; Aim's run page (``/runs/<hash>/metrics``) until its
  ``svg.Visualization path.Line`` does. The check runs on every animation frame and stores
  ``performance.now()`` (milliseconds since navigation started) the first time it holds. Each
  series arrives in one response and is drawn in one render, so the first non-empty line is the
  whole (sampled) series; the number of vertices drawn is printed. Two cases: a first visit (a
  fresh browser profile: the tool's JavaScript is downloaded and compiled too) and the page
  opened again in the same browser. The Resource Timing ``responseEnd`` of the series request is
  given beside it (data received). TensorBoard's Time Series dashboard (``/#timeseries``, its
  landing tab) draws with WebGL on a canvas, which the DOM does not show as drawn: for it only
  the data-received time of its ``timeSeries`` request is measured.
- *Runs page*: the server on the 200 runs (TensorBoard: loaded, ``/data/plugin/scalars/tags``
  lists the four tags of every run; the time from process start is given), then a fresh browser
  per repetition, navigation until the page lists the runs: TensorBoard's ``/#scalars`` until
  the ``paper-checkbox`` elements of ``tf-runs-selector``'s ``tf-multi-checkbox`` number 200, its
  ``/#timeseries`` until ``runs-data-table`` has 200 rows; Aim's Runs Explorer (``/runs``) until
  its table links to as many runs as its ``/api/runs/search/run`` request's ``limit`` (Aim lists
  runs a page at a time and loads more on scrolling: the first page is what is measured).
- *Bytes per live update*: the run's page open on the 1,000,000-point run; N points appended
  through the open writer and flushed; the series endpoint polled until the server shows the new
  last step (the delay is printed). TensorBoard: then the page's reload button clicked (the page
  reloads by itself every 30 s) and every ``/data/`` response of that refresh recorded through
  Playwright's response events: the ``scalars_multirun`` body decoded (JSON) and as sent
  (TensorBoard gzips JSON when the browser accepts it, as Chromium does), and the refresh's
  responses together. Aim's run page does not refresh by itself (the number of requests it made
  while the points came in is printed), so its figure is the answer to the page's own
  ``get-batch`` request (recorded when the page loaded) replayed directly, as a reload would fetch
  it, uncompressed and gzipped (Aim's GZip middleware). For both, the uncompressed answer is the
  figure to set beside ``bench_ui.py``'s bytes.

Medians over ``--repeats`` (default 3) repetitions, with their range.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.bench_ui import CHROMIUM_ARGS, T0, VIEWPORT
from benchmarks.common import commit, machine, markdown_table, say, versions_line

__all__ = ["main", "run_aim", "run_tensorboard"]

BIG_RUN = "one-metric"
TAG = "train/loss"
FOUR_TAGS = ["train/loss", "train/accuracy", "val/loss", "val/accuracy"]
AIM_METRIC = {"name": "loss", "context": {"subset": "train"}}
AIM_FOUR = [["loss", "train"], ["accuracy", "train"], ["loss", "val"], ["accuracy", "val"]]
SPIKE_EVERY, SPIKE_AT = 100_003, 7
DEADLINE_S = 180.0
POLL_S = 0.05

# What every page-side check starts with: querySelectorAll through every open shadow root
# (TensorBoard's Scalars dashboard is Polymer: each element keeps its children in its own), the
# mark (``performance.now()`` the first time the check holds) and Resource Timing's data arrival.
PAGE_HELPERS = """
const deepAll = (selector) => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.matches(selector)) found.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return found;
};
const mark = (detail) => {
  if (!window.__peer) window.__peer = {at: performance.now(), ...detail};
  return window.__peer;
};
const entry = (part) => performance.getEntriesByType('resource').find((e) => e.name.includes(part) && e.responseEnd > 0);
const received = (part) => (entry(part) ? entry(part).responseEnd : null);
const vertices = (paths) => Math.max(0, ...paths.map((p) => ((p.getAttribute('d') || '').match(/[LC]/g) || []).length + 1));
"""


def page_check(params: str, body: str) -> str:
    """A page-side check: ``(params) => {helpers; body}``, for ``page.wait_for_function``."""
    return f"({params}) => {{{PAGE_HELPERS}{body}}}"


# TensorBoard's Scalars dashboard has drawn the chart: a Plottable line with at least two vertices.
TB_CHART_DRAWN = page_check(
    "",
    """
  const lines = deepAll('path.line').filter((p) => p.getRootNode().host && p.getRootNode().host.tagName === 'VZ-LINE-CHART2');
  const drawn = vertices(lines);
  return drawn >= 2 ? mark({vertices: drawn, received: received('/data/plugin/scalars/scalars_multirun')}) : false;
""",
)
# TensorBoard's Time Series dashboard has received the series (its chart is a WebGL canvas).
TB_SERIES_RECEIVED = page_check(
    "",
    """
  const at = received('/data/plugin/timeseries/timeSeries');
  return at === null ? false : mark({received: at});
""",
)
# TensorBoard lists ``expected`` runs: the Scalars dashboard's selector, the Time Series' table.
TB_RUNS_LISTED = {
    "scalars": page_check(
        "expected",
        """
  const shown = deepAll('paper-checkbox').filter((b) => b.getRootNode().host && b.getRootNode().host.tagName === 'TF-MULTI-CHECKBOX');
  return shown.length >= expected ? mark({shown: shown.length}) : false;
""",
    ),
    "timeseries": page_check(
        "expected",
        """
  const shown = document.querySelectorAll('runs-data-table tb-data-table-content-row').length;
  return shown >= expected ? mark({shown}) : false;
""",
    ),
}
# Aim's run page has drawn the metric's chart (D3, SVG).
AIM_CHART_DRAWN = page_check(
    "",
    """
  const drawn = vertices(deepAll('svg.Visualization path.Line'));
  return drawn >= 2 ? mark({vertices: drawn, received: received('/metric/get-batch')}) : false;
""",
)
# Aim's Runs Explorer lists the first page of runs (as many as its search request's limit).
AIM_RUNS_LISTED = page_check(
    "expected",
    """
  const search = entry('/api/runs/search/run');
  if (!search) return false;
  const limit = Number(new URL(search.name).searchParams.get('limit')) || expected;
  const links = deepAll('a[href]').map((a) => a.getAttribute('href')).filter((h) => /\\/runs\\/[0-9a-f]{16,}/.test(h));
  const shown = new Set(links).size;
  return shown >= Math.min(expected, limit) ? mark({shown, limit, received: search.responseEnd}) : false;
""",
)

# Aim's writer, run by Aim's interpreter: one JSON command a line on stdin, one answer a line on
# stdout (after ``ANSWER``). The values are ``value()``'s.
AIM_WRITER = f"""
import json, random, sys
from aim import Run
runs = {{}}
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "quit":
        break
    name = command["run"]
    if name not in runs:
        run = Run(repo=sys.argv[1], experiment="bench_ui_peers", system_tracking_interval=None,
                  capture_terminal_logs=False, log_system_params=False)
        run.name = name
        runs[name] = {{"run": run, "next": 0, "rng": random.Random(name)}}
    entry = runs[name]
    run, rng = entry["run"], entry["rng"]
    for step in range(entry["next"], entry["next"] + command["steps"]):
        for i, (metric, subset) in enumerate(command["metrics"]):
            value = (i + 1) / (1 + step / 1000) + rng.random() * 0.01 + (5.0 if step % {SPIKE_EVERY} == {SPIKE_AT} else 0.0)
            run.track(value, name=metric, step=step, context={{"subset": subset}})
    entry["next"] += command["steps"]
    if command.get("close"):
        run.close()
        del runs[name]
    print("ANSWER " + json.dumps({{"hash": run.hash}}), flush=True)
for entry in runs.values():
    entry["run"].close()
"""


def value(step: int, i: int, rng: random.Random) -> float:
    """The value ``bench_ui.py`` writes for metric ``i`` at ``step``."""
    return (i + 1) / (1 + step / 1000) + rng.random() * 0.01 + (5.0 if step % SPIKE_EVERY == SPIKE_AT else 0.0)


class EventWriter:
    """One TensorBoard run's event file, written by ``EventFileWriter``, kept open for appends."""

    def __init__(self, logdir: Path, run: str, tags: Sequence[str]) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.tags = list(tags)
        self.next_step = 0
        self.rng = random.Random(run)
        self.writer = EventFileWriter(str(logdir / run), max_queue_size=10_000, flush_secs=3600)

    def write(self, steps: int) -> None:
        """``steps`` more steps of every tag, one ``Event`` per value, then flushed to disk."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        for step in range(self.next_step, self.next_step + steps):
            for i, tag in enumerate(self.tags):
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value(step, i, self.rng))])
                self.writer.add_event(Event(wall_time=T0 / 1e9 + step / 1000 + i / 1e6, step=step, summary=summary))
        self.next_step += steps
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class AimWriter:
    """Aim's ``Run.track`` in a child process of Aim's interpreter; runs stay open until closed."""

    def __init__(self, aim_python: str, repo: Path, log: Path) -> None:
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(Path(aim_python).with_name("aim")), "init", "--repo", str(repo)], check=True, capture_output=True)
        self.steps: dict[str, int] = {}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [aim_python, "-c", AIM_WRITER, str(repo)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, text=True
            )

    def write(self, run: str, steps: int, metrics: Sequence[Sequence[str]], *, close: bool = False) -> str:
        """``steps`` more steps of ``metrics`` (name, subset) for ``run``; the run's hash."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": "write", "run": run, "steps": steps, "metrics": metrics, "close": close}) + "\n")
        self.process.stdin.flush()
        self.steps[run] = self.steps.get(run, 0) + steps
        for line in self.process.stdout:
            if line.startswith("ANSWER "):
                return str(json.loads(line[len("ANSWER ") :])["hash"])
        raise RuntimeError(f"Aim's writer exited with {self.process.wait()}")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait(timeout=DEADLINE_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A peer's web server as a subprocess (a process group of its own) on a free loopback port."""

    def __init__(self, command: Callable[[int], list[str]], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.process = subprocess.Popen(command(self.port), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def since_start(self) -> float:
        return time.perf_counter() - self.started

    def said(self) -> str:
        """What this server has written to its log."""
        with self.log.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.said()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (``aim up`` runs uvicorn, TensorBoard its data server), until it is gone."""
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline:
            self.process.poll()
            if not group_alive(group):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


def group_alive(group: int) -> bool:
    """Whether a process of this group still runs (zombies, waiting to be reaped, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # after the name: state, ppid, pgrp, ...
            return True
    return False


@contextmanager
def serving(command: Callable[[int], list[str]], log: Path) -> Iterator[Server]:
    server = Server(command, log)
    try:
        yield server
    finally:
        server.stop()


def tensorboard_command(logdir: Path, extra: Sequence[str]) -> Callable[[int], list[str]]:
    script = Path(sys.executable).with_name("tensorboard")
    start = [str(script)] if script.exists() else [sys.executable, "-m", "tensorboard.main"]
    return lambda port: [*start, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1", *extra]


def aim_command(aim_python: str, repo: Path) -> Callable[[int], list[str]]:
    aim = str(Path(aim_python).with_name("aim"))
    return lambda port: [aim, "up", "--repo", str(repo), "--host", "127.0.0.1", "--port", str(port)]


def fetch(url: str, form: dict[str, str] | None = None, body: Any = None, gzip: bool = False) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one request (a form or a JSON ``body`` makes it a POST); status 0 when nothing answers.

    The body is as sent: uncompressed unless ``gzip`` (then gzipped if the server compresses it).
    """
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=DEADLINE_S) as response:
            return response.status, response.read(), time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read(), time.perf_counter() - started
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b"", time.perf_counter() - started


def wait_for(server: Server, check: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + DEADLINE_S
    while not check():
        server.check()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not within {DEADLINE_S:.0f} s")
        time.sleep(POLL_S)


def tb_series(server: Server, gzip: bool = False) -> tuple[int, list[int], bytes, float]:
    """TensorBoard's series of the big run: (status, steps, body, seconds)."""
    status, body, seconds = fetch(
        f"{server.url}data/plugin/scalars/scalars?{urllib.parse.urlencode({'run': BIG_RUN, 'tag': TAG})}", gzip=gzip
    )
    rows = json.loads(body) if status == 200 and not gzip else []
    return status, [int(row[1]) for row in rows], body, seconds


def aim_series(server: Server, run_hash: str, gzip: bool = False, traces: Any = None) -> tuple[int, list[int], bytes, float]:
    """Aim's ``get-batch`` for the big run's metric (or ``traces``, as a page asks): (status, steps, body, seconds)."""
    asked = traces if traces is not None else [AIM_METRIC]
    status, body, seconds = fetch(f"{server.url}api/runs/{run_hash}/metric/get-batch/", body=asked, gzip=gzip)
    traces = json.loads(body) if status == 200 and not gzip else []
    return status, [int(step) for step in (traces[0]["iters"] if traces else [])], body, seconds


def server_start(
    start: Callable[[], Server], series: Callable[[Server], tuple[int, list[int], bytes, float]], last_step: int
) -> dict[str, float]:
    """Seconds from starting the server until the series endpoint answers, has points, has ``last_step``."""
    server = start()
    found: dict[str, float] = {}
    try:
        deadline = time.perf_counter() + DEADLINE_S
        while "whole" not in found:
            server.check()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the series' last step {last_step} not served within {DEADLINE_S:.0f} s")
            status, steps, _, _ = series(server)
            if status:
                found.setdefault("answers", server.since_start())
            if steps:
                found.setdefault("points", server.since_start())
                if steps[-1] == last_step:
                    found["whole"] = server.since_start()
            time.sleep(POLL_S)
    finally:
        server.stop()
    return found


def visit(page: Any, url: str, check: str, arg: Any = None) -> dict[str, Any]:
    """Navigate ``page`` to ``url`` until ``check`` holds; its mark (``at``: ms since navigation started)."""
    page.goto("about:blank")  # a change of the hash alone would not be a navigation
    page.goto(url)
    page.wait_for_function(check, arg=arg, polling="raf", timeout=DEADLINE_S * 1000)
    found: dict[str, Any] = page.evaluate("() => window.__peer")
    page.wait_for_load_state("networkidle")
    return found


def summary(values_ms: Sequence[float]) -> str:
    if not values_ms:
        return "not measured"
    text = f"{statistics.median(values_ms) / 1000:.2f} s"
    if len(values_ms) > 2:
        text += f" ({min(values_ms) / 1000:.2f} to {max(values_ms) / 1000:.2f})"
    return text


def spikes(last_step: int) -> set[int]:
    return set(range(SPIKE_AT, last_step + 1, SPIKE_EVERY))


def start_rows(tool: str, starts: Sequence[dict[str, float]], last_step: int) -> list[dict[str, Any]]:
    return [
        {"figure": f"{tool} started until the series endpoint {what}", "median (range)": summary([s[key] * 1000 for s in starts])}
        for key, what in (
            ("answers", "answers (HTTP up)"),
            ("points", "returns points"),
            ("whole", f"returns the whole run (last step {last_step:,})"),
        )
    ]


def endpoint_detail(name: str, steps: Sequence[int], body: bytes, seconds: float, points: int) -> str:
    kept = spikes(points - 1) & set(steps)
    return (
        f"{name}: {seconds * 1000:.0f} ms, {len(steps):,} of {points:,} points, {len(body):,} bytes;"
        f" spikes among them: {len(kept)} of {len(spikes(points - 1))}"
    )


def chart_rows(tool: str, page: str, points: int, cold: Sequence[dict[str, Any]], again: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "figure": f"first chart, {points:,}-point run, {tool} {page}: {case}",
            "median (range)": summary([m["at"] for m in marks]),
            "data received": summary([m["received"] for m in marks if m.get("received") is not None]),
            "detail": f"line drawn with {marks[-1]['vertices']:,} vertices",
        }
        for case, marks in (("first visit (fresh browser profile)", cold), ("opened again (same browser)", again))
    ]


class Responses:
    """The responses a page receives while attached whose URL has ``part``: URL, body, size as sent."""

    def __init__(self, page: Any, part: str) -> None:
        self.page, self.part = page, part
        self.seen: list[dict[str, Any]] = []
        self.last = time.perf_counter()
        page.on("response", self.on_response)

    def on_response(self, response: Any) -> None:
        if self.part not in response.url:
            return
        body = response.body()
        sent = int(response.request.sizes()["responseBodySize"])
        self.seen.append({"url": response.url, "body": body, "sent": sent, "asked": response.request.post_data})
        self.last = time.perf_counter()

    def having(self, part: str) -> list[dict[str, Any]]:
        return [r for r in self.seen if part in r["url"]]

    def quiet(self, part: str, seconds: float = 1.0) -> None:
        """Wait until a response with ``part`` came, then nothing more for ``seconds``."""
        deadline = time.perf_counter() + DEADLINE_S
        while not (self.having(part) and time.perf_counter() - self.last >= seconds):
            if time.perf_counter() > deadline:
                raise TimeoutError("the page's refresh did not end")
            self.page.wait_for_timeout(100)

    def detach(self) -> None:
        self.page.remove_listener("response", self.on_response)


def new_context(browser: Any) -> Any:
    return browser.new_context(viewport=VIEWPORT)


def run_tensorboard(
    *, points: int, runs: int, repeats: int, updates: Sequence[int], chromium: str, extra: Sequence[str], folder: Path
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rows: list[dict[str, Any]] = []
    live: list[dict[str, Any]] = []
    big_dir, many_dir, log = folder / "tb-big", folder / "tb-runs", folder / "tensorboard.log"
    say(f"TensorBoard: writing a {points:,}-point run and {runs} runs x 4 tags x 250 steps with EventFileWriter")
    started = time.perf_counter()
    big = EventWriter(big_dir, BIG_RUN, [TAG])
    big.write(points)
    written_s = time.perf_counter() - started
    for i in range(runs):
        writer = EventWriter(many_dir, f"run-{i:03d}", FOUR_TAGS)
        writer.write(250)
        writer.close()
    last_step = points - 1
    command = tensorboard_command(big_dir, extra)
    say(f"TensorBoard: time to first chart, server: {repeats} starts")
    starts = [server_start(lambda: Server(command, log), tb_series, last_step) for _ in range(repeats)]
    rows += start_rows("TensorBoard", starts, last_step)
    with sync_playwright() as playwright, serving(command, log) as server:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            wait_for(server, lambda: tb_series(server)[1][-1:] == [last_step], "TensorBoard: the whole run")
            loader = "the Rust data server" if "experimental fast data loading" in server.said() else "the Python multiplexer"
            _, steps, body, seconds = tb_series(server)
            rows[-1]["detail"] = endpoint_detail("/data/plugin/scalars/scalars", steps, body, seconds, points)
            _, body_ts, seconds_ts = fetch(
                f"{server.url}experiment/defaultExperimentId/data/plugin/timeseries/timeSeries",
                {"requests": json.dumps([{"plugin": "scalars", "tag": TAG}])},
            )
            points_ts = len(json.loads(body_ts)[0]["runToSeries"].get(BIG_RUN, []))
            say("TensorBoard: time to first chart, browser: Scalars dashboard, then Time Series")
            cold: list[dict[str, Any]] = []
            again: list[dict[str, Any]] = []
            timeseries: list[dict[str, Any]] = []
            for _ in range(repeats):
                context = new_context(browser)
                try:
                    page = context.new_page()
                    cold.append(visit(page, server.url + "#scalars", TB_CHART_DRAWN))
                    again.append(visit(page, server.url + "#scalars", TB_CHART_DRAWN))
                finally:
                    context.close()
                context = new_context(browser)
                try:
                    timeseries.append(visit(context.new_page(), server.url + "#timeseries", TB_SERIES_RECEIVED))
                finally:
                    context.close()
            rows += chart_rows("TensorBoard", "Scalars dashboard", points, cold, again)
            rows.append(
                {
                    "figure": f"first chart, {points:,}-point run, TensorBoard Time Series dashboard: first visit",
                    "median (range)": "not measured (WebGL canvas)",
                    "data received": summary([m["received"] for m in timeseries]),
                    "detail": f"timeSeries: {seconds_ts * 1000:.0f} ms, {points_ts:,} points, {len(body_ts):,} bytes",
                }
            )
            say("TensorBoard: bytes per live update")
            context = new_context(browser)
            try:
                page = context.new_page()
                visit(page, server.url + "#scalars", TB_CHART_DRAWN)
                for new in updates:
                    before = big.next_step
                    appended = time.perf_counter()
                    big.write(new)
                    wait_for(server, lambda: tb_series(server)[1][-1:] == [big.next_step - 1], "TensorBoard: the new points")
                    seen_s = time.perf_counter() - appended
                    refresh = Responses(page, "/data/")
                    try:
                        page.click("button.reload-button")
                        refresh.quiet("/data/plugin/scalars/scalars_multirun")
                    finally:
                        refresh.detach()
                    answer = refresh.having("/data/plugin/scalars/scalars_multirun")[-1]
                    drawn = json.loads(answer["body"]).get(BIG_RUN, [])
                    _, _, plain, _ = tb_series(server)
                    live.append(
                        {
                            "new points": f"{new:,}",
                            "points before": f"{before:,}",
                            "seen by the server after": f"{seen_s:.2f} s" if new else "",
                            "page's series answer: points": f"{len(drawn):,} (last step {int(drawn[-1][1]):,})" if drawn else "0",
                            "page's series answer: bytes (as sent)": f"{len(answer['body']):,} ({answer['sent']:,} gzip)",
                            "whole refresh: responses, bytes as sent": f"{len(refresh.seen)}, {sum(r['sent'] for r in refresh.seen):,}",
                            "series endpoint, no compression": f"{len(plain):,}",
                            "bytes per new point, no compression": f"{len(plain) / new:,.1f}" if new else "",
                        }
                    )
            finally:
                context.close()
        finally:
            browser.close()
    big.close()
    say(f"TensorBoard: runs page, {runs} runs")
    with sync_playwright() as playwright, serving(tensorboard_command(many_dir, extra), log) as server:

        def every_run_loaded() -> bool:
            status, body, _ = fetch(f"{server.url}data/plugin/scalars/tags")
            tags = json.loads(body) if status == 200 else {}
            return len(tags) == runs and all(len(t) == len(FOUR_TAGS) for t in tags.values())

        wait_for(server, every_run_loaded, f"TensorBoard: {runs} runs")
        loaded_ms = server.since_start() * 1000
        _, runs_body, runs_s = fetch(f"{server.url}data/runs")
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        listed: dict[str, list[dict[str, Any]]] = {"scalars": [], "timeseries": []}
        try:
            for _ in range(repeats):
                for dashboard, check in TB_RUNS_LISTED.items():
                    context = new_context(browser)
                    try:
                        listed[dashboard].append(visit(context.new_page(), f"{server.url}#{dashboard}", check, runs))
                    finally:
                        context.close()
        finally:
            browser.close()
    rows.append(
        {
            "figure": f"TensorBoard started until every run's tags are listed ({runs} runs, {runs * 1000:,} points)",
            "median (range)": summary([loaded_ms]),
            "detail": f"one start; /data/runs: {runs_s * 1000:.0f} ms, {len(runs_body):,} bytes",
        }
    )
    for dashboard, where in (("scalars", "Scalars dashboard's runs selector"), ("timeseries", "Time Series dashboard's runs table")):
        rows.append(
            {
                "figure": f"runs page, {runs} runs, fresh browser: TensorBoard {where} lists every run",
                "median (range)": summary([m["at"] for m in listed[dashboard]]),
                "detail": f"{listed[dashboard][-1]['shown']} runs shown",
            }
        )
    return {"rows": rows, "live": live, "written_s": written_s, "loader": loader}


def run_aim(
    *, aim_python: str, points: int, runs: int, repeats: int, updates: Sequence[int], chromium: str, folder: Path
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rows: list[dict[str, Any]] = []
    live: list[dict[str, Any]] = []
    big_repo, many_repo, log = folder / "aim-big", folder / "aim-runs", folder / "aim.log"
    say(f"Aim: writing a {points:,}-point run and {runs} runs x 4 metrics x 250 steps with Run.track")
    big = AimWriter(aim_python, big_repo, log)
    started = time.perf_counter()
    run_hash = big.write(BIG_RUN, points, [AIM_FOUR[0]])
    written_s = time.perf_counter() - started
    many = AimWriter(aim_python, many_repo, log)
    for i in range(runs):
        many.write(f"run-{i:03d}", 250, AIM_FOUR, close=True)
    many.close()
    last_step = points - 1
    command = aim_command(aim_python, big_repo)

    def series(server: Server) -> tuple[int, list[int], bytes, float]:
        return aim_series(server, run_hash)

    say(f"Aim: time to first chart, server: {repeats} starts")
    starts = [server_start(lambda: Server(command, log), series, last_step) for _ in range(repeats)]
    rows += start_rows("Aim", starts, last_step)
    with sync_playwright() as playwright, serving(command, log) as server:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            wait_for(server, lambda: series(server)[1][-1:] == [last_step], "Aim: the whole run")
            _, steps, body, seconds = series(server)
            rows[-1]["detail"] = endpoint_detail("get-batch (one trace)", steps, body, seconds, points)
            say("Aim: time to first chart, browser: the run's Metrics tab")
            url = f"{server.url}runs/{run_hash}/metrics"
            cold: list[dict[str, Any]] = []
            again: list[dict[str, Any]] = []
            for _ in range(repeats):
                context = new_context(browser)
                try:
                    page = context.new_page()
                    cold.append(visit(page, url, AIM_CHART_DRAWN))
                    again.append(visit(page, url, AIM_CHART_DRAWN))
                finally:
                    context.close()
            rows += chart_rows("Aim", "run page (Metrics tab)", points, cold, again)
            say("Aim: bytes per live update")
            context = new_context(browser)
            try:
                page = context.new_page()
                watching = Responses(page, "/metric/get-batch")
                visit(page, url, AIM_CHART_DRAWN)
                loading = len(watching.seen)
                traces = json.loads(watching.seen[-1]["asked"])  # the page's own request, replayed below
                same = all({k: t.get(k) for k in ("name", "context")} == AIM_METRIC for t in traces)
                traces_note = f"the page asks for {len(traces)} trace(s) in one request" + (", all the same metric" if same else "")
                watched = time.perf_counter()
                try:
                    for new in updates:
                        before = big.steps[BIG_RUN]
                        appended = time.perf_counter()
                        big.write(BIG_RUN, new, [AIM_FOUR[0]])
                        wait_for(server, lambda: series(server)[1][-1:] == [big.steps[BIG_RUN] - 1], "Aim: the new points")
                        seen_s = time.perf_counter() - appended
                        _, steps, plain, _ = aim_series(server, run_hash, traces=traces)
                        _, _, zipped, _ = aim_series(server, run_hash, gzip=True, traces=traces)
                        live.append(
                            {
                                "new points": f"{new:,}",
                                "points before": f"{before:,}",
                                "seen by the server after": f"{seen_s:.2f} s" if new else "",
                                "page's get-batch: points": f"{len(steps):,} a trace x {len(traces)} (last step {steps[-1]:,})"
                                if steps
                                else "0",
                                "page's get-batch: bytes, no compression (gzip)": f"{len(plain):,} ({len(zipped):,})",
                                "bytes per new point, no compression": f"{len(plain) / new:,.1f}" if new else "",
                            }
                        )
                    page.wait_for_timeout(1000)
                finally:
                    watching.detach()
                refreshes = len(watching.seen) - loading
                page_requests = f"{refreshes} get-batch requests in {time.perf_counter() - watched:.0f} s"
            finally:
                context.close()
        finally:
            browser.close()
    big.close()
    say(f"Aim: runs page, {runs} runs")
    with sync_playwright() as playwright, serving(aim_command(aim_python, many_repo), log) as server:
        wait_for(server, lambda: fetch(f"{server.url}api/projects/")[0] == 200, "Aim: the server")
        up_ms = server.since_start() * 1000
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        listed: list[dict[str, Any]] = []
        try:
            for _ in range(repeats):
                context = new_context(browser)
                try:
                    listed.append(visit(context.new_page(), f"{server.url}runs", AIM_RUNS_LISTED, runs))
                finally:
                    context.close()
        finally:
            browser.close()
        limit = int(listed[-1]["limit"])
        _, search_body, search_s = fetch(f"{server.url}api/runs/search/run?{urllib.parse.urlencode({'q': '', 'limit': limit})}")
    rows.append({"figure": f"Aim started until its API answers ({runs} runs)", "median (range)": summary([up_ms]), "detail": "one start"})
    rows.append(
        {
            "figure": f"runs page, {runs} runs, fresh browser: Aim Runs Explorer lists its first page of runs",
            "median (range)": summary([m["at"] for m in listed]),
            "data received": summary([m["received"] for m in listed]),
            "detail": (
                f"{listed[-1]['shown']} of {runs} runs shown (limit={limit}; more load on scrolling);"
                f" /api/runs/search/run: {search_s * 1000:.0f} ms, {len(search_body):,} bytes"
            ),
        }
    )
    return {
        "rows": rows,
        "live": live,
        "written_s": written_s,
        "page_requests": page_requests,
        "refreshes": refreshes,
        "traces": traces_note,
    }


def peer_version(python: str, *names: str) -> str:
    code = "import importlib.metadata as m, sys; print(', '.join(n + ' ' + m.version(n) for n in sys.argv[1:]))"
    return subprocess.run([python, "-c", code, *names], capture_output=True, text=True, check=True).stdout.strip()


def markdown(result: dict[str, Any]) -> str:
    points = result["points"]
    lines = [
        "## Peers' web views (TensorBoard, Aim), measured as `bench_ui.py` measures ours",
        "",
        f"Commit {commit()}; {machine()}; load average {result['load']}.",
        versions_line("python", "tensorboard", "tensorboard-data-server", "protobuf", "playwright")
        + f" Browser: {result['chromium']} (headless).",
    ]
    if "tensorboard" in result:
        tb = result["tensorboard"]
        lines += [
            "",
            f"### TensorBoard (`tensorboard --logdir ... {' '.join(['--reload_interval 1', *result['extra']])}`; loader: {tb['loader']})",
            "",
            f"Writing the {points:,}-point run with `EventFileWriter` took {tb['written_s']:.0f} s.",
            "",
            markdown_table(tb["rows"], ["figure", "median (range)", "data received", "detail"]),
            "*median (range)*: for the server rows, seconds from starting the `tensorboard` process (each repetition a new"
            " process, the event files in the OS page cache); for the browser rows, from navigation start until the chart's SVG"
            " line is in the page (Scalars dashboard) or the run list is complete. *data received*: Resource Timing `responseEnd`"
            " of the dashboard's series request, from navigation start. TensorBoard serves a reservoir sample of each scalar"
            + (
                f" series, here of up to {result['extra'][1].split('=')[1]} points (`{' '.join(result['extra'])}`)"
                if result["extra"]
                else f" series (1,000 points by default, the last step always kept), so the chart shows the sampled points, not"
                f" the run's {points:,}; which spikes survive is left to chance"
            )
            + ". Once loaded, TensorBoard"
            " holds the samples in memory: there is no first read from storage at page time. The Time Series dashboard draws on"
            " a WebGL canvas: when it has drawn is not visible in the DOM, so only its data arrival is given.",
            "",
            f"Bytes per live update (the Scalars dashboard on the {points:,}-point run, refreshed with its reload button once"
            " TensorBoard has read the new points; every refresh re-sends the whole sampled series):",
            "",
            markdown_table(tb["live"], list(tb["live"][0])),
        ]
    if "tensorboard_failed" in result:
        lines += ["", f"### TensorBoard: not measured (failed: {result['tensorboard_failed']})"]
    if "aim" in result:
        aim = result["aim"]
        lines += [
            "",
            f"### Aim (`aim up`; {result['aim_versions']})",
            "",
            f"Writing the {points:,}-point run with `Run.track` took {aim['written_s']:.0f} s.",
            "",
            markdown_table(aim["rows"], ["figure", "median (range)", "data received", "detail"]),
            "As for TensorBoard. Aim's `get-batch` answers with a sample of the metric's sequence (its"
            " `collect_requested_metric_traces` asks for 200 steps; the points returned are in the table), read from the"
            " repository on each request. The Runs Explorer asks for the first page of"
            " runs (`limit`) and lists more as the table is scrolled.",
            "",
            f"Bytes per live update (Aim's run page {'did not refresh itself' if not aim['refreshes'] else 'refreshed itself'}:"
            f" while the points below came in, the open page made {aim['page_requests']}; the figures are the answer to"
            f" the page's own `get-batch` request, replayed directly, as it would fetch it on a reload; {aim['traces']}):",
            "",
            markdown_table(aim["live"], list(aim["live"][0])),
        ]
    elif result.get("aim_skipped"):
        lines += ["", f"### Aim: not measured ({result['aim_skipped']})"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 points, 20 runs, one repetition, updates of up to 1,000 points")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="TensorBoard: --samples_per_plugin scalars=N; N above the run's points keeps every point (N=0 keeps every"
        " point in the data server, but the scalars plugin then asks for 0 of them and its charts are empty)",
    )
    parser.add_argument("--aim-python", default=None, help="the Python of a virtualenv with Aim installed: measure Aim too")
    parser.add_argument("--no-tensorboard", action="store_true", help="measure Aim only")
    parser.add_argument("--chromium", default=os.environ.get("OTEL_RECURSIVE_METRICS_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error("--samples must be at least 1 (TensorBoard's scalars plugin returns no points with scalars=0)")
    updates: tuple[int, ...] = (0, 1, 100, 10_000)
    if args.quick:
        args.points, args.runs, args.repeats, updates = 20_000, 20, 1, (0, 1, 100, 1_000)
    extra = ["--samples_per_plugin", f"scalars={args.samples}"] if args.samples is not None else []
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        chromium_version = f"Chromium {browser.version}"
        browser.close()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    result: dict[str, Any] = {"points": args.points, "extra": extra, "chromium": chromium_version}
    sizes: dict[str, Any] = {
        "points": args.points,
        "runs": args.runs,
        "repeats": args.repeats,
        "updates": updates,
        "chromium": args.chromium,
    }
    with tempfile.TemporaryDirectory(prefix="bench-ui-peers-") as folder:
        # A peer that fails is reported as such (its error in the output, the traceback on stderr);
        # the other's figures are still printed.
        if not args.no_tensorboard:
            try:
                result["tensorboard"] = run_tensorboard(**sizes, extra=extra, folder=Path(folder))
            except Exception as error:
                traceback.print_exc()
                result["tensorboard_failed"] = f"{type(error).__name__}: {error}"
        if args.aim_python:
            try:
                result["aim_versions"] = peer_version(args.aim_python, "aim", "aim-ui", "aimrocks", "uvicorn")
                result["aim"] = run_aim(aim_python=args.aim_python, **sizes, folder=Path(folder))
            except Exception as error:
                traceback.print_exc()
                result["aim_skipped"] = f"failed: {type(error).__name__}: {error}"
        else:
            result["aim_skipped"] = "no --aim-python given"
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    result["load"] = f"{load_before} at the start, {load_after} at the end"
    print(markdown(result))
    return 0 if "tensorboard_failed" not in result and "failed" not in result.get("aim_skipped", "") else 1


if __name__ == "__main__":
    sys.exit(main())
