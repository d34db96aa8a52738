"""Shared fixtures: a private data folder per test and a clean default pipeline."""

from __future__ import annotations

import importlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.pipeline import default as _registry


def required_in_ci(reason: str) -> None:
    """Skip on a user's machine, fail under CI=true: the component must be there in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, extra: str) -> Any:
    """Import ``name``; if missing, skip (or fail under CI) naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        required_in_ci(f"needs {name} ({exc}); install it with: pip install -e '.[{extra}]'")
        raise  # unreachable: required_in_ci raises


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data folder (store, queue, dead letters) for one test."""
    return tmp_path / "otel-metrics"


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("OTEL_RECURSIVE_METRICS_", "OTEL_EXPORTER_OTLP", "OTEL_METRICS_EXPORTER", "OTEL_CONFIG_FILE")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_DIR", str(tmp_path / "default-otel-metrics"))
    _registry.reset_default_pipeline()
    yield
    _registry.reset_default_pipeline()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs mounted for the test, as a user's small disk (where mounting is not allowed:
    skips on a user's machine, fails under CI=true, see :func:`required_in_ci`)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        required_in_ci(f"needs to mount a 24 MB tmpfs (root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
