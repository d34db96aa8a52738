"""SDK exports name the run: OTEL_RECURSIVE_METRICS_RUN_ID reaches points the SDK built (issue 20, section 2).

Before, only ``configure()``, ``TrainingMetrics`` and submitted records carried the training
attributes; a provider built by ``opentelemetry-instrument`` (or by hand) had none, and its run
showed as ``(none)`` in ``otel-recursive-metrics runs``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.model.resource import RUN_ID_KEY, training_attributes

from .helpers import sdk_provider
from .instrument_site import OTLP_EXPORTERS, STOCK_DISTRO, Site, run_instrumented

LAUNCHER_RUN_VARIABLES = ("OTEL_RECURSIVE_METRICS_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")


def record_one(exporter: RecursiveMetricExporter, resource: dict[str, str], data_dir: Path) -> dict[str, Any]:
    """Count once through a provider with ``resource``; the resource the store holds for it."""
    provider = sdk_provider(exporter, resource)
    provider.get_meter("svc").create_counter("requests").add(3)
    provider.shutdown()
    [point] = PointStore(data_dir / "metrics.db", readonly=True).query("requests")
    return point.resource


def test_opentelemetry_instrument_child_is_in_the_named_run(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            from opentelemetry import metrics

            metrics.get_meter("plain.app").create_histogram("app.latency", unit="s").record(0.25)
            """
        )
    )
    data = tmp_path / "data"
    variables = {
        # All three exporter variables, so that only the run id is on trial here.
        "OTEL_METRICS_EXPORTER": "recursive",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_RECURSIVE_METRICS_DIR": str(data),
        "OTEL_RECURSIVE_METRICS_RUN_ID": "child-run",
        "RANK": "2",
    }
    done = run_instrumented(script, Site(tmp_path / "site", hide=(STOCK_DISTRO, *OTLP_EXPORTERS)), variables, tmp_path)
    assert done.returncode == 0, done.stderr
    store = PointStore(data / "metrics.db", readonly=True)
    assert [run["run"] for run in store.runs()] == ["child-run"]
    [point] = store.query("app.latency")
    assert point.resource[RUN_ID_KEY] == "child-run" and point.resource["training.rank"] == 2
    assert point.resource["service.name"].startswith("unknown_service")  # the SDK's resource, kept


def test_a_provider_built_by_hand_gets_the_run_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "env-run")
    resource = record_one(RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "svc"}, data_dir)
    assert resource[RUN_ID_KEY] == "env-run" and resource["service.name"] == "svc"


def test_a_resource_that_names_its_run_is_left_as_it_is(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "env-run")
    monkeypatch.setenv("RANK", "4")
    resource = record_one(
        RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "svc", RUN_ID_KEY: "its-own"}, data_dir
    )
    assert resource[RUN_ID_KEY] == "its-own"
    assert "training.rank" not in resource


def test_with_no_run_named_sdk_points_share_the_processs_run_with_log_points(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The id generated for the process, the one TrainingMetrics and configure() use: one run, not two."""
    for name in LAUNCHER_RUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    resource = record_one(RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1), {"service.name": "svc"}, data_dir)
    assert resource[RUN_ID_KEY] == training_attributes()[RUN_ID_KEY]
