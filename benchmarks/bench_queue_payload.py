"""The durable queue's payload: binary chunks (format 3) against JSON (format 2), CPU µs and bytes a point.

    python benchmarks/bench_queue_payload.py            # four batches, 9 rounds: about 30 s
    python benchmarks/bench_queue_payload.py --quick    # one round: a smoke run
    python benchmarks/bench_queue_payload.py --out FILE # where the document goes (default: results/<date>-<commit>-queue-payload.md)

The batches, built as the pipeline builds them (points in the order they were logged):

- ``log() gauges``: 20 ``TrainingMetrics.log`` values a step for 410 steps (8,192 points, the
  default ``max_batch_points``): the curves of ``bench_codecs.training_curves`` (floats, four
  integer series, NaN and inf gaps), one time a step, one resource of 6 attributes;
- ``one wake-up of log()``: the same, 50 calls of 20 values (1,000 points): what the worker
  takes at each wake-up at the default ``batch_size``;
- ``histograms``: 8,192 explicit-bucket histogram points (16 bounds) of 64 series, cumulative
  (start times), as the SDK's export of a histogram with an attribute of 64 values hands them over;
- ``many series``: 512 series of 16 points (a gradient norm per layer, say).

For each, JSON (``PointBatch.encode_json``) and the binary form (``encode_points`` with the
queue's chunk codec, ``batch_codec.QUEUE_CODEC``, which ``PointBatch.encode`` uses, and with the
other chunk codecs for comparison) are encoded and decoded (``PointBatch.decode``), in turns: CPU
µs a point (``time.thread_time``, the best of ``--repeats`` rounds: the machine is shared, and
CPU time is what the worker spends), payload bytes a point, and ratios to JSON. "of which lists →
columns" is the part of the encoding that turns the batch's per-point lists into NumPy columns
(``batch_columns.columns_of``), which a batch built as columns would not need. Every binary
payload is decoded and compared with the batch (floats bit for bit); a mismatch stops the run.
"""

from __future__ import annotations

import datetime
import functools
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.bench_codecs import training_curves
from benchmarks.common import commit, machine, markdown_table, results_path, say, versions_line
from otel_recursive_metrics.model.batch import BatchBuilder, PointBatch, explicit_histogram
from otel_recursive_metrics.model.batch_codec import QUEUE_CODEC, encode_points
from otel_recursive_metrics.model.batch_columns import columns_of
from otel_recursive_metrics.model.chunk import available_codecs
from otel_recursive_metrics.model.kinds import MetricKind

__all__ = ["batches", "main", "run"]

POINTS = 8_192
_RESOURCE = {
    "service.name": "trainer",
    "training.run.id": "3f2c9a1e7b5d4c6f8a0b1c2d3e4f5a6b",
    "training.rank": 0,
    "training.world_size": 8,
    "host.name": "gpu-node-017",
    "process.pid": 41_872,
}
_START_UNIX_NANO = 1_796_083_200 * 10**9


def _log_gauges(points: int = POINTS) -> PointBatch:
    series = training_curves(seed=7, steps=points // 20 + 1)
    b = BatchBuilder()
    res, scope = b.resource(_RESOURCE), b.plain_scope("otel_recursive_metrics.training", "0.1.0")
    metrics = [b.metric(s.name, "", "", MetricKind.GAUGE) for s in series]
    attrs = b.attributes("{}")
    columns = [(s.step.tolist(), s.time_unix_nano.tolist(), s.value.tolist()) for s in series]
    steps, times = columns[0][0], columns[0][1]
    for row in range(points // 20 + 1):
        for metric, (_, _, values) in zip(metrics, columns, strict=True):
            # add_log_item: every value of a call shares its time and step.
            b.batch.points.append([res, scope, metric, attrs, 0, times[row], values[row], steps[row], None, None, None])
    batch = b.build()
    batch.points = batch.points[:points]
    return batch


def _histograms() -> PointBatch:
    b = BatchBuilder()
    res, scope = b.resource(_RESOURCE), b.plain_scope("opentelemetry.instrumentation.torch", "0.1.0")
    metric = b.metric("step.duration", "time of a training step", "ms", MetricKind.HISTOGRAM, 2)
    bounds = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0, 20000.0]
    counts = [0] * (len(bounds) + 1)
    total, low, high, n = 0.0, float("inf"), 0.0, 0
    for export in range(POINTS // 64):
        now = _START_UNIX_NANO + export * 10**10
        for k in range(64):
            # Cumulative: each export's point holds every observation so far (a few more each time).
            for j in range(3):
                observed = 20.0 + ((export * 64 + k) * 7919 + j * 104729) % 4000 / 13.0
                counts[sum(1 for x in bounds if x < observed)] += 1
                total, low, high, n = total + observed, min(low, observed), max(high, observed), n + 1
            hist = explicit_histogram(n, total, low, high, bounds, counts)
            b.add_point(res, scope, metric, f'{{"layer":"block.{k}"}}', _START_UNIX_NANO, now, None, histogram=hist)
    return b.build()


def _many_series() -> PointBatch:
    b = BatchBuilder()
    res, scope = b.resource(_RESOURCE), b.plain_scope("otel_recursive_metrics.training", "0.1.0")
    metric = b.metric("grad_norm", "", "1", MetricKind.GAUGE)
    layers = [b.attributes(f'{{"layer":"model.layers.{k}.mlp.down_proj"}}') for k in range(512)]
    for step in range(POINTS // 512):
        now = _START_UNIX_NANO + step * 300_000_000
        for k, attrs in enumerate(layers):
            value = struct.unpack("<f", struct.pack("<f", 1.0 / (1 + k + step * 0.01)))[0]  # float32 precision
            b.batch.points.append([res, scope, metric, attrs, 0, now, value, step, None, None, None])
    return b.build()


def batches() -> dict[str, PointBatch]:
    """The batches of the module docstring, by name."""
    return {
        "log() gauges": _log_gauges(),
        "one wake-up of log()": _log_gauges(1_000),
        "histograms": _histograms(),
        "many series": _many_series(),
    }


def _same(a: PointBatch, b: PointBatch) -> bool:
    """Equal batches, floats compared by their bits (NaN equals NaN of the same payload, -0.0 is not 0.0)."""

    def key(value: Any) -> Any:
        return ("f", struct.pack("<d", value)) if type(value) is float else (type(value).__name__, value)

    same_points = len(a.points) == len(b.points) and all(
        [key(x) for x in p] == [key(x) for x in q] for p, q in zip(a.points, b.points, strict=True)
    )
    return same_points and (a.id, a.resources, a.scopes, a.metrics, a.attributes) == (b.id, b.resources, b.scopes, b.metrics, b.attributes)


def _cpu_us(functions: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Each function's thread CPU time in µs, the best of ``repeats`` rounds; the functions take
    turns within a round, so that each meets the machine as the others do."""
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            started = time.thread_time()
            function()
            best[i] = min(best[i], time.thread_time() - started)
    return [b * 1e6 for b in best]


def run(quick: bool = False, repeats: int = 9) -> dict[str, Any]:
    """Measure every batch with JSON and the binary codecs; returns the rows and the Markdown document."""
    repeats = 1 if quick else repeats
    load_at_start = os.getloadavg()[0]
    rows = []
    for name, batch in batches().items():
        n = len(batch)
        say(f"{name}: {n} points")
        head = {"id": batch.id, "resources": batch.resources, "scopes": batch.scopes, "metrics": batch.metrics}
        head["attributes"] = batch.attributes
        forms: list[tuple[str, Callable[[], bytes]]] = [("JSON (format 2)", batch.encode_json)]
        for codec in sorted(available_codecs(), key=lambda c: c is not QUEUE_CODEC):
            label = f"binary, {codec.name.lower()} chunks" + (" (the queue's)" if codec is QUEUE_CODEC else "")
            forms.append((label, functools.partial(encode_points, head, batch.points, codec)))
        payloads = [encode() for _, encode in forms]
        for (label, _), payload in zip(forms[1:], payloads[1:], strict=True):
            if not _same(PointBatch.decode(payload), batch):
                raise SystemExit(f"{name}: the {label} payload does not decode to the batch it was made from")
        timed: list[Callable[[], Any]] = [encode for _, encode in forms]
        timed += [functools.partial(PointBatch.decode, p) for p in payloads]
        timed.append(functools.partial(columns_of, batch.points))
        cpu = [us / n for us in _cpu_us(timed, repeats)]
        encode_us, decode_us, to_columns_us = cpu[: len(forms)], cpu[len(forms) : 2 * len(forms)], cpu[-1]
        for i, ((label, _), payload) in enumerate(zip(forms, payloads, strict=True)):
            rows.append(
                {
                    "batch": f"{name} ({n:,} points)",
                    "format": label,
                    "encode µs/pt": f"{encode_us[i]:.3f}",
                    "of which lists → columns": f"{to_columns_us:.3f}" if label.endswith("(the queue's)") else "",
                    "decode µs/pt": f"{decode_us[i]:.3f}",
                    "B/pt": f"{len(payload) / n:.1f}",
                    "encode ÷ JSON": f"{encode_us[i] / encode_us[0]:.2f}",
                    "decode ÷ JSON": f"{decode_us[i] / decode_us[0]:.2f}",
                    "bytes ÷ JSON": f"{len(payload) / len(payloads[0]):.3f}",
                }
            )
    columns = list(rows[0])
    markdown = (
        "# The durable queue's payload: binary chunks against JSON\n\n"
        f"Commit {commit()}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.\n"
        f"{versions_line('python', 'numpy', 'pcodec')} Thread CPU time, best of {repeats} round(s);"
        f" load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.\n\n" + markdown_table(rows, columns)
    )
    return {"rows": rows, "markdown": markdown}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one pass: a smoke run")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", help="where the document goes (default: results/<date>-<commit>-queue-payload.md; none with --quick)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, repeats=args.repeats)
    print(result["markdown"])
    if args.out or not args.quick:
        out = Path(args.out) if args.out else results_path("queue-payload")
        out.write_text(result["markdown"])
        say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
