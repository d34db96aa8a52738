"""The no-code route with only our variables: our distro defaults the exporters (issue 20, section 2).

A real ``opentelemetry-instrument python child.py`` child for each install a user may have (see
tests/instrument_site.py), and the distro's rule table checked against the stock distro's.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore
from otel_recursive_metrics.distro import RecursiveConfigurator, RecursiveDistro, chooses_recursive, exporter_defaults

from .conftest import require_module
from .instrument_site import OTLP_EXPORTERS, STOCK_DISTRO, Site, run_instrumented
from .otlp_receiver import GrpcReceiver

# Uses only the OpenTelemetry API, as a program run under opentelemetry-instrument does.
CHILD = textwrap.dedent(
    """
    from opentelemetry import metrics

    steps = metrics.get_meter("plain.app").create_counter("app.steps")
    for _ in range(7):
        steps.add(1, {"phase": "train"})
    """
)

TRACES, METRICS, LOGS, PROTOCOL = "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"


@pytest.fixture
def child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return script


def assert_recorded(store_file: Path, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert store_file.exists(), f"nothing recorded; the child said: {stderr}"
    points = PointStore(store_file, readonly=True).query("app.steps")
    assert points and points[-1].value == 7 and points[-1].attributes == {"phase": "train"}, points


# -- The installs a user may have ---------------------------------------------------------------


def test_the_instrument_extras_install_records_with_only_our_exporter_variable(tmp_path: Path, child: Path) -> None:
    """No stock distro and no OTLP exporter, as `pip install -e '.[instrument]'` leaves it."""
    site = Site(tmp_path / "site", hide=(STOCK_DISTRO, *OTLP_EXPORTERS))
    data = tmp_path / "data"
    done = run_instrumented(child, site, {METRICS: "recursive", "OTEL_RECURSIVE_METRICS_DIR": str(data)}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_recorded(data / "metrics.db", done.stderr)


def test_with_no_exporter_variable_at_all_the_store_is_the_default(tmp_path: Path, child: Path) -> None:
    """Not one OTEL_ variable: the metrics go to ./otel-metrics, traces and logs nowhere."""
    site = Site(tmp_path / "site", hide=(STOCK_DISTRO, *OTLP_EXPORTERS))
    done = run_instrumented(child, site, {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_recorded(tmp_path / "otel-metrics" / "metrics.db", done.stderr)


def test_beside_the_stock_distro_listed_after_ours(tmp_path: Path, child: Path) -> None:
    """The install before this change (opentelemetry-distro came with the extra): it printed a
    traceback for the missing OTLP trace exporter, recorded nothing and exited 0."""
    require_module("opentelemetry.distro", "test")
    site = Site(tmp_path / "site", hide=OTLP_EXPORTERS)
    data = tmp_path / "data"
    done = run_instrumented(child, site, {METRICS: "recursive", "OTEL_RECURSIVE_METRICS_DIR": str(data)}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_recorded(data / "metrics.db", done.stderr)


def test_beside_the_stock_distro_listed_first_otel_python_distro_chooses_ours(tmp_path: Path, child: Path) -> None:
    require_module("opentelemetry.distro", "test")
    site = Site(tmp_path / "site", hide=OTLP_EXPORTERS, stock_distro_first=True)
    data = tmp_path / "data"
    variables = {METRICS: "recursive", "OTEL_PYTHON_DISTRO": "recursive", "OTEL_RECURSIVE_METRICS_DIR": str(data)}
    done = run_instrumented(child, site, variables, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_recorded(data / "metrics.db", done.stderr)


def test_a_user_who_chose_otlp_gets_the_stock_defaults(tmp_path: Path, child: Path) -> None:
    """OTEL_TRACES_EXPORTER=otlp with the OTLP exporter installed: the metrics default to OTLP too
    (as with opentelemetry-distro), reach the collector, and our store stays empty."""
    require_module("opentelemetry.exporter.otlp.proto.grpc", "test")
    site = Site(tmp_path / "site", hide=(STOCK_DISTRO,))
    data = tmp_path / "data"
    with GrpcReceiver() as receiver:
        variables = {TRACES: "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_RECURSIVE_METRICS_DIR": str(data)}
        done = run_instrumented(child, site, variables, tmp_path)
        assert done.returncode == 0, done.stderr
        receiver.wait_for_points(1, timeout_s=30)
        names = {m.name for request in receiver.accepted for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "app.steps" in names
    assert not data.exists(), "our exporter was built although the user chose OTLP"


# -- The rule table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({METRICS: "recursive"}, {TRACES: "none", LOGS: "none"}),
        ({METRICS: " console , recursive "}, {TRACES: "none", LOGS: "none"}),
        ({METRICS: "recursive", TRACES: "otlp"}, {LOGS: "none"}),
        ({}, {METRICS: "recursive", TRACES: "none", LOGS: "none"}),
        ({METRICS: "  "}, {METRICS: "recursive", TRACES: "none", LOGS: "none"}),
        (
            {"OTEL_RECURSIVE_METRICS_SINKS": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            {METRICS: "recursive", TRACES: "none", LOGS: "none"},
        ),
    ],
)
def test_ours_when_named_or_when_nothing_is(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert chooses_recursive(environ)
    assert exporter_defaults(environ) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {TRACES: "otlp"},
        {TRACES: "none"},
        {LOGS: "console"},
        {METRICS: "otlp"},
        {METRICS: "prometheus", TRACES: "none", LOGS: "none"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
        {TRACES: "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317", PROTOCOL: "http/protobuf"},
    ],
)
def test_anything_else_gets_exactly_the_stock_distros_defaults(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert not chooses_recursive(environ)
    stock = require_module("opentelemetry.distro", "test")
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    before = dict(os.environ)
    stock.OpenTelemetryDistro()._configure()
    set_by_stock = {k: v for k, v in os.environ.items() if before.get(k) != v}
    assert exporter_defaults(environ) == set_by_stock


def test_the_distro_sets_only_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(METRICS, "recursive")
    monkeypatch.setenv(LOGS, "console")
    RecursiveDistro().configure()
    assert (os.environ[METRICS], os.environ[TRACES], os.environ[LOGS]) == ("recursive", "none", "console")


def test_the_entry_points_name_our_classes(tmp_path: Path) -> None:
    """What opentelemetry-instrument loads, as this checkout's pyproject.toml declares it."""
    from importlib.metadata import PathDistribution

    [info] = list(Site(tmp_path).paths[0].glob("*.egg-info"))
    eps = PathDistribution(info).entry_points
    [distro] = eps.select(group="opentelemetry_distro", name="recursive")
    [configurator] = eps.select(group="opentelemetry_configurator", name="recursive")
    assert distro.load() is RecursiveDistro
    assert configurator.load() is RecursiveConfigurator
