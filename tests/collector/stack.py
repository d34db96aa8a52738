"""The end-to-end stack on loopback: child processes, Prometheus, the Collector, training runs.

Used by ``conftest.py`` (fixtures) and the tests. Every process runs in its own process group
and is killed as a group; its output goes to a log file whose tail goes into failure messages.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"

START_TIMEOUT_S = 30.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before in this process.

    The kernel may give the same ephemeral port to two probes in a row (each probe's socket is
    closed before the next), and a Collector whose receiver and health check got the same port
    fails to start; so a port is never handed out twice.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, what: str, *, interval_s: float = 0.1, on_timeout: Callable[[], str] | None = None
) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}" + (f"\n{detail}" if detail else ""))
        time.sleep(interval_s)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body), or (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


class Server:
    """A child process in its own process group, output to ``log_path``; killed as a group."""

    def __init__(
        self, name: str, argv: list[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        def check() -> bool:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise AssertionError(f"{self.name} exited with status {code} before it was ready; its log:\n{self.log_tail()}")
            return ready()

        wait_for(check, timeout_s, f"{self.name} to be ready", on_timeout=lambda: f"{self.name} log:\n{self.log_tail()}")

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; always reaps the process."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        # Also whatever the process group may still hold (children of the child).
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


# -- Prometheus -----------------------------------------------------------------------------------


@dataclass
class Prometheus:
    """A Prometheus server on loopback with the remote-write receiver, and a small query client."""

    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def remote_write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query; the result list (``metric`` plus ``value`` or ``values``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url, timeout_s=10)
        assert status == 200, f"Prometheus answered {status} to {promql!r}: {body[:500]!r}"
        answer = json.loads(body)
        assert answer.get("status") == "success", answer
        return list(answer["data"]["result"])

    def samples(self, selector: str, window: str = "1h") -> dict[str, list[tuple[int, float]]]:
        """Every raw sample of the series matching ``selector`` in the last ``window``.

        Keyed by metric name; each a list of ``(time in ms, value)`` in time order. Several series
        under one name are merged (the tests select one series per name).
        """
        out: dict[str, list[tuple[int, float]]] = {}
        for series in self.query(f"{selector}[{window}]"):
            name = series["metric"].get("__name__", "")
            out.setdefault(name, []).extend((round(float(t) * 1000), float(v)) for t, v in series["values"])
        for values in out.values():
            values.sort()
        return out

    def instance_of_run(self, run_id: str) -> dict[str, str]:
        """The ``target_info`` labels of the one resource whose ``training.run.id`` is ``run_id``."""
        found = self.query(f'target_info{{training_run_id="{run_id}"}}')
        assert len(found) == 1, f"expected one target_info for run {run_id}, got {found}"
        return dict(found[0]["metric"])


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1h
storage:
  tsdb:
    # Delivery is at least once: after a Collector crash a batch may arrive twice. Within the
    # window an exact repeat of an older sample is dropped quietly; without it the whole
    # remote-write request is refused ("out of order sample", HTTP 400).
    out_of_order_time_window: 30m
"""


def start_prometheus(binary: str, folder: Path, *, config: str = PROMETHEUS_CONFIG, port: int | None = None) -> Prometheus:
    """Start ``binary`` on loopback with the remote-write receiver, data in ``folder``; returns once ready.

    ``config`` is the Prometheus configuration (by default :data:`PROMETHEUS_CONFIG`, with the
    out-of-order window); ``port`` defaults to a free one. The caller stops ``.server``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "prometheus.yml"
    config_path.write_text(config)
    port = port or free_port()
    server = Server(
        "prometheus",
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        log_path=folder / "prometheus.log",
        cwd=folder,
    )
    server.start()
    prometheus = Prometheus(server, port)
    try:
        server.wait_ready(lambda: http_get(f"{prometheus.url}/-/ready", timeout_s=2)[0] == 200)
    except BaseException:
        server.stop()
        raise
    return prometheus


@dataclass
class Collector:
    """otelcol-recursive with ``base.yaml`` plus overlays, on free loopback ports kept across restarts."""

    binary: str
    configs: list[Path]
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    dlq_grpc_port: int = field(default_factory=free_port)
    dlq_http_port: int = field(default_factory=free_port)
    server: Server | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver (append ``/v1/metrics``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dlq_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.dlq_http_port}"

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            DLQ_REPLAY_GRPC_ENDPOINT=f"127.0.0.1:{self.dlq_grpc_port}",
            DLQ_REPLAY_HTTP_ENDPOINT=f"127.0.0.1:{self.dlq_http_port}",
            HEALTH_CHECK_ENDPOINT=f"127.0.0.1:{self.health_port}",
            OTELCOL_METRICS_PORT=str(self.metrics_port),
        )
        env.update(self.env)
        return env

    def start(self) -> Collector:
        argv = [self.binary]
        for config in self.configs:
            argv += ["--config", str(config)]
        if self.server is None:
            self.server = Server("collector", argv, log_path=self.folder / "collector.log", env=self.process_env(), cwd=self.folder)
        self.server.start()
        self.server.wait_ready(lambda: http_get(f"http://127.0.0.1:{self.health_port}/", timeout_s=2)[0] == 200)
        return self

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines) if self.server else "(not started)"


StartCollector = Callable[..., Collector]


# -- training runs --------------------------------------------------------------------------------


@dataclass
class TrainingRun:
    """One training process's identity and data folder."""

    run_id: str
    dir: Path

    @property
    def store(self) -> Path:
        return self.dir / "metrics.db"

    @property
    def dead_letter_dir(self) -> Path:
        return self.dir / "dead-letter"


def training_env(run: TrainingRun, **settings: str) -> dict[str, str]:
    """The environment of a training process that exports to the store and OTLP; ``settings`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME="e2e-trainer",
        OTEL_RECURSIVE_METRICS_RUN_ID=run.run_id,
        OTEL_RECURSIVE_METRICS_DIR=str(run.dir),
        OTEL_RECURSIVE_METRICS_SINKS="store,otlp",
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        TORCHELASTIC_RESTART_COUNT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def run_python(argv: list[str], env: Mapping[str, str], timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``python argv`` from the repository root; AssertionError with its output if it fails."""
    try:
        done = subprocess.run(
            [sys.executable, *argv], env=dict(env), cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{argv} did not finish within {timeout_s:g}s; output:\n{error.stdout!r}\n{error.stderr!r}") from None
    assert done.returncode == 0, f"{argv} exited with {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done


def store_points(store: Path, metric: str) -> list[dict[str, Any]]:
    """The store's rows for ``metric`` through the CLI's JSON output, in time order."""
    done = run_python(["-m", "otel_recursive_metrics", "query", "--store", str(store), "--metric", metric, "--format", "json"], os.environ)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return sorted(rows, key=lambda row: int(row["time_unix_nano"]))
