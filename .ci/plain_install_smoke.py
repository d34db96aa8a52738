"""What a plain ``pip install otel-recursive-metrics`` (no extras) must do, run inside that install.

``.ci/plain_install.sh`` makes a fresh virtualenv, installs the package from this checkout with
no extras, and runs this file there (``plain``); then it adds the ``instrument`` extra and runs
it again (``instrument``). No test extra can hide a missing dependency here: the test tools are
not installed, and the script checks that the OTLP exporter packages of the test extra are absent.

- ``plain``: ``TrainingMetrics`` into the store, read back with the installed CLI; the same over
  OTLP/gRPC and OTLP/HTTP to real receivers on loopback (``tests/otlp_receiver.py``, which needs
  only what the package itself depends on).
- ``instrument``: ``opentelemetry-instrument python app.py`` fills the store from a plain
  OpenTelemetry program: with ``OTEL_METRICS_EXPORTER=recursive`` and the trace and log variables
  set to ``none``; with ``OTEL_METRICS_EXPORTER=recursive`` alone (our distro turns traces and
  logs off: the extra brings no other distro and no OTLP exporter) and a run id, which the points
  carry; then ``opentelemetry-bootstrap -a install`` (the extra's pinned release must have every
  instrumentation it names on the index), ``pip check``, and the single-variable route again with
  the instrumentations loaded.

Exit code 0 when everything arrived, 1 with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = 100
BIN = Path(sys.executable).parent

APP = textwrap.dedent(
    """
    from opentelemetry import metrics

    meter = metrics.get_meter("plain-app")
    steps = meter.create_counter("app.steps", unit="{step}")
    for _ in range(50):
        steps.add(1, {"phase": "train"})
    """
)


def fail(message: str) -> None:
    print(f"plain-install smoke: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check_plain_environment() -> None:
    for module in ("opentelemetry.exporter.otlp.proto.grpc", "opentelemetry.exporter.otlp.proto.http", "pytest"):
        if importlib.util.find_spec(module) is not None:
            fail(f"{module} is installed: this environment is not a plain install")


def log_steps(**settings: object) -> dict[str, object]:
    from otel_recursive_metrics import TrainingMetrics

    with TrainingMetrics(prefix="train.", flush_interval_s=0.2, **settings) as metrics:
        for step in range(STEPS):
            metrics.log({"loss": 1.0 / (step + 1)}, step=step)
        if not metrics.flush(30.0):
            fail(f"flush did not deliver everything with {settings}: {metrics.get_stats()}")
        return metrics.get_stats()


def smoke_store(workdir: Path) -> None:
    data = workdir / "store-run"
    log_steps(dir=data)
    cli = BIN / "otel-recursive-metrics"
    done = subprocess.run(
        [str(cli), "query", "--store", str(data / "metrics.db"), "--metric", "train.loss", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        fail(f"otel-recursive-metrics query exited {done.returncode}: {done.stderr}")
    steps = sorted(json.loads(line)["step"] for line in done.stdout.splitlines())
    if steps != list(range(STEPS)):
        fail(f"the store holds steps {steps[:5]}... ({len(steps)}), expected 0..{STEPS - 1}")
    print(f"plain-install smoke: store: {STEPS} steps stored and read back with the CLI")


def smoke_otlp(workdir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.otlp_receiver import GrpcReceiver, HttpReceiver

    for protocol, receiver in (("grpc", GrpcReceiver()), ("http/protobuf", HttpReceiver())):
        with receiver:
            stats = log_steps(
                dir=workdir / f"otlp-{protocol.replace('/', '-')}", sinks="otlp", otlp_endpoint=receiver.endpoint, otlp_protocol=protocol
            )
            receiver.wait_for_points(STEPS, timeout_s=30)
            if receiver.points_accepted != STEPS:
                fail(f"OTLP {protocol}: the receiver got {receiver.points_accepted} points, expected {STEPS}; stats {stats}")
        print(f"plain-install smoke: OTLP {protocol}: {STEPS} points at a loopback receiver")


def run_instrumented(workdir: Path, data: Path, **variables: str) -> list[Any]:
    """``opentelemetry-instrument python app.py`` with no OTEL_ variable but ``variables``; its points."""
    instrument = BIN / "opentelemetry-instrument"
    if not instrument.exists():
        fail("opentelemetry-instrument is missing after installing the instrument extra")
    app = workdir / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(variables, OTEL_RECURSIVE_METRICS_DIR=str(data))
    done = subprocess.run([str(instrument), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or "Traceback" in done.stderr:
        fail(f"opentelemetry-instrument with {variables} exited {done.returncode}: {done.stderr[-2000:]}")
    from otel_recursive_metrics import PointStore

    points = PointStore(data / "metrics.db", readonly=True).query("app.steps") if (data / "metrics.db").exists() else []
    if not points or points[-1].value != 50:
        fail(f"with {variables}, the instrumented program's counter is not in the store: {points}; stderr: {done.stderr[-2000:]}")
    return points


def smoke_instrument(workdir: Path) -> None:
    if importlib.util.find_spec("opentelemetry.distro") is not None:
        fail("opentelemetry-distro is installed: the instrument extra should bring only our distro")
    run_instrumented(
        workdir, workdir / "all-three", OTEL_METRICS_EXPORTER="recursive", OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
    )
    print("plain-install smoke: opentelemetry-instrument: the program's counter is in the store (50)")
    points = run_instrumented(workdir, workdir / "only-ours", OTEL_METRICS_EXPORTER="recursive", OTEL_RECURSIVE_METRICS_RUN_ID="smoke-run")
    if points[-1].resource.get("training.run.id") != "smoke-run":
        fail(f"the run id did not reach the SDK's points: resource {points[-1].resource}")
    print("plain-install smoke: OTEL_METRICS_EXPORTER=recursive alone: recorded, in run smoke-run")

    for command in ([str(BIN / "opentelemetry-bootstrap"), "-a", "install"], [sys.executable, "-m", "pip", "check"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            fail(f"{' '.join(command[-3:])} exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    installed = subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True, timeout=120, check=True).stdout
    instrumentations = [line.split()[0] for line in installed.splitlines() if line.startswith("opentelemetry-instrumentation-")]
    if not instrumentations:
        fail(f"opentelemetry-bootstrap -a install installed no instrumentation: {installed}")
    run_instrumented(workdir, workdir / "after-bootstrap", OTEL_METRICS_EXPORTER="recursive")
    print(f"plain-install smoke: opentelemetry-bootstrap -a install: {len(instrumentations)} instrumentations; the route still records")


def main() -> None:
    phase = sys.argv[1] if len(sys.argv) > 1 else "plain"
    with tempfile.TemporaryDirectory(prefix="orm-plain-") as tmp:
        workdir = Path(tmp)
        if phase == "plain":
            check_plain_environment()
            smoke_store(workdir)
            smoke_otlp(workdir)
        elif phase == "instrument":
            smoke_instrument(workdir)
        else:
            fail(f"unknown phase {phase!r}: expected plain or instrument")


if __name__ == "__main__":
    main()
