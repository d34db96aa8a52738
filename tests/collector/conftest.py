"""Fixtures for the end-to-end tests: the built Collector, a Prometheus server, training runs.

Everything listens on 127.0.0.1 on free ports and lives in the test's temporary folders. The
Collector binary comes from ``OTEL_RECURSIVE_METRICS_OTELCOL`` or ``collector-config/build.sh``
(cached; it builds only when Go is there); Prometheus is ``prometheus`` on PATH. When either is
missing the tests skip, except under ``CI=true`` where they fail (``required_in_ci``).

Processes run in their own process group and are killed as a group; their output goes to a log
file whose tail is printed when a test fails (pytest shows it under "Captured stdout teardown").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import required_in_ci

from .stack import CONFIG_DIR, Collector, Prometheus, StartCollector, TrainingRun, start_prometheus

# Read at import: the suite's autouse fixture removes every OTEL_RECURSIVE_METRICS_* variable
# from the environment before each test.
_OTELCOL_FROM_ENV = os.environ.get("OTEL_RECURSIVE_METRICS_OTELCOL", "").strip()
_CACHE_FROM_ENV = os.environ.get("OTEL_RECURSIVE_METRICS_CACHE", "").strip()

BUILD_TIMEOUT_S = 900.0


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        required_in_ci("no `prometheus` on PATH (Debian/Ubuntu: apt-get install prometheus); the end-to-end tests need it")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def prometheus(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One Prometheus for the session (each test tells its series apart by its run id)."""
    prom = start_prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"))
    try:
        yield prom
    finally:
        prom.server.stop()


# -- the Collector --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def otelcol_binary() -> str:
    """The built otelcol-recursive: ``$OTEL_RECURSIVE_METRICS_OTELCOL``, else ``build.sh``'s (cached) result."""
    if _OTELCOL_FROM_ENV:
        path = Path(_OTELCOL_FROM_ENV)
        if not (path.is_file() and os.access(path, os.X_OK)):
            required_in_ci(f"OTEL_RECURSIVE_METRICS_OTELCOL={_OTELCOL_FROM_ENV} is not an executable file")
        return str(path)
    env = dict(os.environ)
    if _CACHE_FROM_ENV:
        env["OTEL_RECURSIVE_METRICS_CACHE"] = _CACHE_FROM_ENV
    # build.sh answers at once from its cache, without Go; it builds (minutes) only when Go is here.
    has_go = shutil.which("go") is not None or Path("/usr/local/go/bin/go").is_file()
    try:
        done = subprocess.run(
            ["bash", str(CONFIG_DIR / "build.sh")], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"collector-config/build.sh took more than {BUILD_TIMEOUT_S:g}s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        stderr = "\n".join(done.stderr.strip().splitlines()[-15:])
        if not has_go:
            required_in_ci(
                "no Collector: OTEL_RECURSIVE_METRICS_OTELCOL is not set, none is cached and Go is not installed "
                f"to build one with collector-config/build.sh\n{stderr}"
            )
        required_in_ci(f"collector-config/build.sh failed (status {done.returncode}):\n{stderr}")
    return lines[-1]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture
def start_collector(
    otelcol_binary: str, prometheus: Prometheus, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartCollector]:
    """``start_collector(*overlays, **env)``: base.yaml + overlays, writing to the session's Prometheus.

    An overlay is a file name in collector-config/ or a path. Every Collector started is stopped
    at the end of the test; when the test failed, the tail of its log is printed.
    """
    started: list[Collector] = []

    def start(*overlays: str | Path, **env: str) -> Collector:
        configs = [CONFIG_DIR / "base.yaml"] + [o if isinstance(o, Path) else CONFIG_DIR / o for o in overlays]
        folder = tmp_path / f"collector-{len(started)}"
        folder.mkdir()
        env.setdefault("PRW_ENDPOINT", prometheus.remote_write_url)
        collector = Collector(otelcol_binary, configs, folder, env=dict(env))
        started.append(collector)
        return collector.start()

    yield start
    for collector in started:
        collector.stop()
    if _failed(request):
        for n, collector in enumerate(started):
            print(f"--- collector {n} ({', '.join(c.name for c in collector.configs)}) log tail:\n{collector.log_tail(60)}")
        print(f"--- prometheus log tail:\n{prometheus.server.log_tail(30)}")


@pytest.fixture
def training_run(tmp_path: Path) -> TrainingRun:
    return TrainingRun(run_id=f"e2e-{uuid.uuid4().hex[:10]}", dir=tmp_path / "otel-metrics")
