"""The SDK finds the exporter by name: entry point, auto-instrumentation, declarative config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_recursive_metrics import PointStore, RecursiveMetricExporter

OTEL_ONLY_SCRIPT = textwrap.dedent(
    """
    # Uses only the OpenTelemetry API: no import of otel_recursive_metrics.
    from opentelemetry import metrics

    meter = metrics.get_meter("plain.trainer")
    loss = meter.create_gauge("train.loss")
    steps = meter.create_counter("train.steps")
    for step in range(5):
        loss.set(1.0 / (step + 1), {"split": "train"})
        steps.add(1)
    """
)


def test_entry_point_loads_the_class() -> None:
    from opentelemetry.util._importlib_metadata import entry_points

    [ep] = list(entry_points(group="opentelemetry_metrics_exporter", name="recursive"))
    assert ep.load() is RecursiveMetricExporter


def test_sdk_autoconfiguration_builds_it_with_no_arguments(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk._configuration import _import_exporters

    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(data_dir))
    _, metric_exporters, _ = _import_exporters([], ["recursive"], [])
    exporter = metric_exporters["recursive"]()
    assert isinstance(exporter, RecursiveMetricExporter)
    assert exporter.config.dir == data_dir
    exporter.shutdown()


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_opentelemetry_instrument_fills_the_store(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(OTEL_ONLY_SCRIPT)
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "recursive",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "plain-trainer",
        "OTEL_RECURSIVE_METRICS_DIR": str(data_dir),
        "OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S": "0.2",
    }
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    assert instrument.exists(), "opentelemetry-instrument is part of the test extra"
    result = _run([str(instrument), sys.executable, str(script)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    store = PointStore(data_dir / "metrics.db")
    losses = store.query("train.loss")
    steps = store.query("train.steps")
    assert losses and losses[-1].value == pytest.approx(0.2) and losses[-1].attributes == {"split": "train"}
    assert steps and steps[-1].value == 5
    assert losses[-1].resource["service.name"] == "plain-trainer"


def test_declarative_configuration_file(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("opentelemetry.configuration")
    config_file = tmp_path / "otel.yaml"
    config_file.write_text(
        textwrap.dedent(
            f"""
            file_format: "1.0-rc.1"
            resource:
              attributes:
                - name: service.name
                  value: declarative-trainer
            meter_provider:
              readers:
                - periodic:
                    interval: 60000
                    exporter:
                      recursive:
                        dir: {data_dir}
                        batch_size: 7
                        flush_interval_s: 0.2
                        sinks: store
            """
        )
    )
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from opentelemetry.configuration import configure_sdk, load_config_file
            from opentelemetry import metrics

            configure_sdk(load_config_file({str(config_file)!r}))
            provider = metrics.get_meter_provider()
            reader = provider._metric_readers[0]
            exporter = reader._exporter
            assert type(exporter).__name__ == "RecursiveMetricExporter", type(exporter)
            assert exporter.config.batch_size == 7
            """
        )
        + OTEL_ONLY_SCRIPT
        + "\nprovider.shutdown()\n"
    )
    result = _run([sys.executable, str(script)], {**os.environ}, tmp_path)
    assert result.returncode == 0, result.stderr
    losses = PointStore(data_dir / "metrics.db").query("train.loss")
    assert losses and losses[-1].value == pytest.approx(0.2)
    assert losses[-1].resource["service.name"] == "declarative-trainer"
