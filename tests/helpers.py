"""Small helpers shared by tests: scripted sinks (the network seam) and SDK wiring."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_recursive_metrics import PointStore, RecursiveMetricExporter
from otel_recursive_metrics.errors import PermanentError, RetryableError
from otel_recursive_metrics.model.batch import PointBatch

from .otlp_receiver import wait_until

__all__ = ["ScriptedSink", "deliver_queued", "fill", "run_cli", "run_example", "sdk_provider", "store_path", "wait_until"]


class ScriptedSink:
    """A sink whose n-th send does what ``script`` says: "ok", "retry", "permanent", "hang"."""

    rejected_points = 0

    def __init__(self, name: str, script: list[str] | None = None, default: str = "ok") -> None:
        self.name = name
        self.script = list(script or [])
        self.default = default
        self.attempts = 0
        self.batches: list[PointBatch] = []
        self.release = threading.Event()
        self.closed = False

    def send(self, batch: PointBatch, deadline: float) -> None:
        self.attempts += 1
        action = self.script.pop(0) if self.script else self.default
        if action == "ok":
            self.batches.append(batch)
        elif action == "retry":
            raise RetryableError("scripted 503 from the receiver")
        elif action == "permanent":
            raise PermanentError("scripted 400: bad data")
        elif action == "hang":
            # A receiver that never answers until released; then it accepts the batch.
            if not self.release.wait(120):
                raise RetryableError("scripted hang timed out")
            self.batches.append(batch)
        elif action == "crash":
            raise RuntimeError("scripted bug in a sink")
        else:
            raise AssertionError(action)

    def points(self) -> int:
        return sum(len(b) for b in self.batches)

    def close(self) -> None:
        self.closed = True


def sdk_provider(exporter: RecursiveMetricExporter, resource: dict[str, Any] | None = None) -> MeterProvider:
    """A MeterProvider whose reader only exports when flushed (interval: one hour)."""
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create(resource or {"service.name": "test"}), metric_readers=[reader])


def store_path(data_dir: Path) -> Path:
    return data_dir / "metrics.db"


def run_example(script: str, data_dir: Path, *args: str) -> PointStore:
    """Run ``examples/<script>`` into ``data_dir`` (no OTEL_* from the caller) and open its store."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    path = Path(__file__).resolve().parents[1] / "examples" / script
    subprocess.run([sys.executable, str(path), "--dir", str(data_dir), *args], env=env, check=True, timeout=600, capture_output=True)
    return PointStore(data_dir / "metrics.db")


def run_cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """Run the command line in-process: ``(exit code, stdout, stderr)``."""
    from otel_recursive_metrics.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def deliver_queued(data_dir: Path, **options: Any) -> PointStore | None:
    """What the next start with ``data_dir`` does: deliver what is queued; the store (None if none)."""
    exporter = RecursiveMetricExporter(dir=data_dir, flush_interval_s=0.1, max_batch_points=65536, **options)
    assert exporter.force_flush(300_000)
    exporter.shutdown()
    store = data_dir / "metrics.db"
    return PointStore(store, readonly=True) if store.exists() else None


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` with a ballast file, leaving about ``leave_bytes`` free; returns the ballast
    (delete it and the disk has its space back)."""
    st = os.statvfs(disk)
    ballast = disk / "ballast"
    with ballast.open("wb") as f:
        remaining = max(0, st.f_bavail * st.f_frsize - leave_bytes)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            try:
                remaining -= f.write(chunk[: min(len(chunk), remaining)])
            except OSError:  # full already: a running program's files took the rest
                break
    return ballast
