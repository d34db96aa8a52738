"""Train the NumPy example's model, one step at least ``--pause-s`` apart, logging via TrainingMetrics.

``examples/train_numpy.py`` runs thousands of steps a second. Prometheus keeps one sample per
series per millisecond (the first), so to compare every logged step with what Prometheus holds,
and to have a run that is still going while a test kills the Collector, this driver trains the
example's own model (``MLP`` and ``spiral``, imported from the example) with a pause between
steps. Everything else (sinks, OTLP endpoint and protocol, retry settings) comes from the
environment, exactly as for the example.

    OTEL_RECURSIVE_METRICS_SINKS=store,otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \\
        python tests/collector/train_paced.py --dir DIR --steps 200 --pause-s 0.005

It prints ``step N`` (flushed) every ``--progress-every`` steps and, at the end, one JSON line
with ``delivered`` (everything reached every sink before the close deadline) and ``steps``;
its exit status is 0 only if everything was delivered (or with ``--exit-zero``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_numpy.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_numpy_example", EXAMPLE)
    assert spec is not None and spec.loader is not None, EXAMPLE
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="data folder (store, queue, dead letters)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pause-s", type=float, default=0.005, help="sleep after each step (>= 0.001 keeps steps in distinct ms)")
    parser.add_argument("--progress-every", type=int, default=10)
    parser.add_argument("--close-timeout-s", type=float, default=60.0)
    parser.add_argument("--run-id", help="run id (resource attribute training.run.id)")
    parser.add_argument(
        "--samples-counter",
        action="store_true",
        help="also count the samples seen with an OTel counter `train.samples` (unit {sample}), exported every 0.3 s",
    )
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even if not everything was delivered")
    args = parser.parse_args(argv)
    if args.run_id:
        os.environ["OTEL_RECURSIVE_METRICS_RUN_ID"] = args.run_id

    import numpy as np

    from otel_recursive_metrics.training import TrainingMetrics

    example = load_example()
    rng = np.random.default_rng(0)
    x, y = example.spiral(200, 3, rng)
    model = example.MLP(2, 32, 3, rng)
    provider = None
    if args.samples_counter:
        from otel_recursive_metrics import configure

        # The SDK's meter and TrainingMetrics share configure()'s pipeline (the default one).
        provider = configure(dir=args.dir, export_interval_s=0.3, set_global=False)
        samples = provider.get_meter("train_paced").create_counter("train.samples", unit="{sample}")
        metrics = TrainingMetrics(prefix="train.")
    else:
        metrics = TrainingMetrics(prefix="train.", dir=args.dir)
    for step in range(args.steps):
        idx = rng.integers(0, len(y), 64)
        loss, accuracy, grad_norm = model.step(x[idx], y[idx], 0.5, weight_decay=1e-4)
        metrics.log({"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm}, step=step)
        if provider is not None:
            samples.add(len(idx))
        if step % args.progress_every == 0:
            print(f"step {step}", flush=True)
        time.sleep(args.pause_s)
    if provider is not None:
        provider.force_flush(timeout_millis=args.close_timeout_s * 1000)  # the counter's last value into the pipeline
    # Wait for delivery (up to the timeout), then close: a close alone waits only shutdown_grace_s.
    delivered = metrics.flush(timeout_s=args.close_timeout_s)
    delivered = metrics.close(timeout_s=args.close_timeout_s) and delivered
    if provider is not None:
        provider.shutdown(timeout_millis=args.close_timeout_s * 1000)
    print(json.dumps({"delivered": delivered, "steps": args.steps, "stats": metrics.get_stats()}, default=str), flush=True)
    return 0 if delivered or args.exit_zero else 3


if __name__ == "__main__":
    sys.exit(main())
