"""OTLP encoding alone: µs a point for the protobuf classes, the columnar encoder and the stock exporter's.

    python benchmarks/bench_otlp_encode.py            # about a minute
    python benchmarks/bench_otlp_encode.py --quick    # a smoke run, seconds

What a sink spends turning a batch into the bytes of an ``ExportMetricsServiceRequest``, on the
encoding thread only (no network). Each batch is built the way the worker builds it
(``pipeline/convert.py``), then encoded by:

- **protobuf classes** (the encoder before the columnar one): ``encode_request(batch)``, one
  message object per point, then ``SerializeToString()``;
- **columnar** (what the sinks send now): ``encode_request_bytes(batch)``, the same bytes,
  written from NumPy columns (``model/otlp_wire.py``, ``model/otlp_points.py``); checked equal to
  the protobuf classes' bytes before timing;
- **columnar, points only**: ``number_data_points`` on columns already in arrays (what a columnar
  batch would hand over): the part of the columnar encoder that does not read the batch's lists;
- **stock exporter**: ``encode_metrics(metrics_data).SerializeToString()``, the encoder of the
  stock ``OTLPMetricExporter``, on the SDK ``MetricsData`` the batch was made from (SDK batches only).

The batches:

- ``training``: ``TrainingMetrics.log`` of 20 values a step with step and epoch, 8,200 points
  (20 gauges, no point attributes, the SDK's default resource with the training attributes);
- ``sdk counters``: ``bench_otlp``'s snapshot (2,000 counter series, 3 attributes each) exported
  4 times, 8,000 points;
- ``sdk gauges, mixed attributes``: 2,000 gauge series whose attribute sets differ in length,
  4 exports (the columnar encoder's masked path);
- ``sdk histograms``: 500 explicit-bucket histogram series, 4 exports (left to the protobuf
  classes: the columnar encoder splices their metrics in, and costs what they cost).

Timing: CPU time of this process (``time.process_time_ns``), the best of ``--repeats`` runs: the
machine is shared, and the best run is the least disturbed one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import machine, versions_line

__all__ = ["batches", "main", "markdown", "run"]


def _best_us(work: Callable[[], object], repeats: int) -> float:
    """The least CPU time of ``repeats`` calls of ``work``, in µs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time_ns()
        work()
        best = min(best, time.process_time_ns() - started)
    return best / 1e3


def _serialized(encode: Callable[[Any], Any], what: Any, times: int = 1) -> None:
    for _ in range(times):
        encode(what).SerializeToString()


def _training_batch(points: int) -> Any:
    from otel_recursive_metrics.model.batch import BatchBuilder
    from otel_recursive_metrics.model.resource import default_resource_attributes
    from otel_recursive_metrics.pipeline.convert import LogContext, add_log_item

    context = LogContext(default_resource_attributes(), "otel_recursive_metrics.training", "0.1.0")
    builder = BatchBuilder()
    names = ["loss", "lr", "grad_norm", "accuracy"] + [f"metric_{i}" for i in range(16)]
    started = time.time_ns()
    step = 0
    while len(builder.batch.points) < points:
        values = {name: 1.0 / (step + i + 1) for i, name in enumerate(names)}
        add_log_item(builder, (context, started + step * 300_000_000, step, step // 1000, values, 0))
        step += 1
    return builder.build()


def _sdk_data(kind: str, series: int) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    per_instrument = 1000  # the SDK keeps at most 2,000 series an instrument
    for n in range((series + per_instrument - 1) // per_instrument):
        counter = meter.create_counter(f"train.tokens.{n}", unit="{token}")
        gauge = meter.create_gauge(f"train.memory.{n}", unit="By")
        histogram = meter.create_histogram(f"train.step_time.{n}", unit="s")
        for i in range(n * per_instrument, min(series, (n + 1) * per_instrument)):
            if kind == "counter":
                counter.add(i + 1, {"layer": i % 64, "rank": i // 64, "phase": "train"})
            elif kind == "gauge":  # attribute sets of several lengths: the masked path
                phase = ("train", "validation")[i % 2]
                gauge.set(i * 1.5, {"layer": f"block.{i % 64}" * (1 + i % 3), "rank": i // 64, "phase": phase})
            else:
                for k in range(5):
                    histogram.record(0.01 * (i % 7 + k), {"layer": i % 64, "rank": i // 64})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def batches(quick: bool = False) -> list[tuple[str, Any, Any]]:
    """``(name, batch, SDK MetricsData or None)`` for each batch of the module docstring."""
    from otel_recursive_metrics.model.attributes import AttributeLimits
    from otel_recursive_metrics.model.batch import BatchBuilder
    from otel_recursive_metrics.pipeline.convert import add_metrics_data

    scale = 8 if quick else 1
    out: list[tuple[str, Any, Any]] = [("training, 20 gauges a step", _training_batch(8192 // scale), None)]
    for name, kind, series in (
        ("sdk counters, 3 attributes", "counter", 2000),
        ("sdk gauges, mixed attributes", "gauge", 2000),
        ("sdk histograms", "histogram", 500),
    ):
        data = _sdk_data(kind, series // scale)
        builder = BatchBuilder()
        for _ in range(4):
            add_metrics_data(builder, data, AttributeLimits())
        out.append((name, builder.build(), data))
    return out


def _columns(batch: Any) -> tuple[Any, ...] | None:
    """What a columnar batch would hold for ``number_data_points``: None for a batch with histograms."""
    import numpy as np

    from otel_recursive_metrics.model import otlp_points
    from otel_recursive_metrics.model.batch import ATTRIBUTES, START_TIME, TIME, VALUE
    from otel_recursive_metrics.model.kinds import HISTOGRAM_KINDS

    if any(m.kind in HISTOGRAM_KINDS for m in batch.metrics):
        return None
    points = batch.points
    used, ids = np.unique(np.array([p[ATTRIBUTES] for p in points]), return_inverse=True)
    blobs = [otlp_points.point_attributes(batch.attributes[i]) for i in used.tolist()]
    start = np.array([p[START_TIME] or 0 for p in points], dtype=np.uint64)
    time_ = np.array([p[TIME] for p in points], dtype=np.uint64)
    is_int = np.array([type(p[VALUE]) is int for p in points])
    bits = np.array([float(p[VALUE]) for p in points]).view(np.uint64)
    bits[is_int] = np.array([p[VALUE] for p in points if type(p[VALUE]) is int], dtype=np.int64).view(np.uint64)
    return blobs, ids.reshape(-1), start, time_, bits, is_int


def run(quick: bool = False, repeats: int = 20) -> list[dict[str, Any]]:
    """One row per batch: µs a point for each encoder (see the module docstring)."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    from otel_recursive_metrics.model import otlp_points
    from otel_recursive_metrics.model.otlp import encode_request
    from otel_recursive_metrics.model.otlp_wire import encode_request_bytes

    rows: list[dict[str, Any]] = []
    for name, batch, data in batches(quick):
        expected = encode_request(batch).SerializeToString()
        payload, sent = encode_request_bytes(batch)
        if payload != expected:
            raise AssertionError(f"{name}: the columnar encoder's bytes differ from the protobuf classes'")
        n = len(batch.points)
        classes = _best_us(partial(_serialized, encode_request, batch), max(3, repeats // 4)) / n
        columnar = _best_us(partial(encode_request_bytes, batch), repeats) / n
        columns = _columns(batch)
        points_only = None if columns is None else _best_us(partial(otlp_points.number_data_points, *columns), repeats) / n
        # The stock exporter encodes the SDK's MetricsData, once an export (the batch holds 4).
        stock = None if data is None else _best_us(partial(_serialized, encode_metrics, data, times=4), max(3, repeats // 4)) / n
        rows.append(
            {
                "batch": name,
                "points": n,
                "bytes_per_point": round(len(payload) / max(1, sent), 1),
                "protobuf_classes_us": round(classes, 3),
                "columnar_us": round(columnar, 3),
                "points_only_us": None if points_only is None else round(points_only, 3),
                "stock_exporter_us": None if stock is None else round(stock, 3),
                "speedup": round(classes / columnar, 2),
            }
        )
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one Markdown table, with the machine and versions."""

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    out = [
        "### OTLP encoding, µs a point (CPU time, best run; bytes equal to the protobuf classes')",
        "",
        "| batch | points | bytes a point | protobuf classes (before) | columnar (now) | before ÷ now "
        "| columnar, points from arrays | stock exporter's encoder |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['batch']} | {r['points']:,} | {r['bytes_per_point']} | {cell(r['protobuf_classes_us'])} "
            f"| {cell(r['columnar_us'])} | {r['speedup']:.2f} | {cell(r['points_only_us'])} | {cell(r['stock_exporter_us'])} |"
        )
    out += [
        "",
        f"Machine: {machine()}",
        "",
        versions_line("python", "otel-recursive-metrics", "numpy", "protobuf", "opentelemetry-exporter-otlp-proto-common"),
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="batches an eighth the size, 3 repeats")
    parser.add_argument("--repeats", type=int, default=20, help="runs of each encoder; the best is reported (default 20)")
    args = parser.parse_args(argv)
    print(markdown(run(args.quick, 3 if args.quick else args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
