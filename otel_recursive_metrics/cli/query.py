"""``otel-recursive-metrics query`` and ``metrics``: points and metric names from the store.

- ``query --store PATH [--metric NAME ...] [--run ID] [--rank N] [--format table|csv|json]``:
  points from the store; ``json`` is one object a line with ``metric``, ``kind``, ``value``,
  ``attributes``, ``resource``, ``time_unix_nano``, ``step`` and the rest of the point.
- ``metrics --store PATH``: the metric names in a store, one a line.

Exit codes: 0 success, 1 nothing matched, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..store import StoredPoint
from ._output import add_store_arg, format_time, open_store, render_table

__all__ = ["add_filters", "cmd_metrics", "cmd_query", "register"]


def register(subparsers: Any) -> None:
    """Add ``query`` and ``metrics``."""
    query = subparsers.add_parser("query", help="print points from the store")
    add_store_arg(query)
    add_filters(query)
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(handler=cmd_query)

    names = subparsers.add_parser("metrics", help="list metric names in the store")
    add_store_arg(names)
    names.set_defaults(handler=cmd_metrics)


def add_filters(parser: argparse.ArgumentParser) -> None:
    """The point filters ``query`` takes."""
    parser.add_argument("--metric", action="append", help="metric name; repeat for several (default: all)")
    parser.add_argument("--run", help="training run id (resource attribute training.run.id)")
    parser.add_argument("--rank", type=int, help="training rank (resource attribute training.rank)")
    parser.add_argument("--step-min", type=int, help="first step (inclusive)")
    parser.add_argument("--step-max", type=int, help="last step (inclusive)")
    parser.add_argument("--limit", type=int, help="most points to print")


def _query_points(args: argparse.Namespace) -> list[StoredPoint]:
    store = open_store(args.store)
    try:
        return store.query(args.metric, run=args.run, rank=args.rank, step_min=args.step_min, step_max=args.step_max, limit=args.limit)
    finally:
        store.close()


def _value_text(p: StoredPoint) -> str:
    if p.value is not None:
        return f"{p.value:.6g}" if isinstance(p.value, float) else str(p.value)
    if p.histogram:
        return f"count={p.histogram['count']} sum={p.histogram['sum']:.6g}"
    return ""


def cmd_query(args: argparse.Namespace) -> int:
    points = _query_points(args)
    out = sys.stdout
    if args.format == "json":
        for p in points:
            out.write(json.dumps(p.to_json(), separators=(",", ":")) + "\n")
    elif args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(["metric", "kind", "step", "epoch", "value", "time_unix_nano", "attributes", "run", "rank"])
        for p in points:
            writer.writerow(
                [
                    p.metric,
                    p.kind,
                    p.step,
                    p.epoch,
                    _value_text(p),
                    p.time_unix_nano,
                    json.dumps(p.attributes, sort_keys=True),
                    p.resource.get("training.run.id", ""),
                    p.resource.get("training.rank", ""),
                ]
            )
    else:
        _print_table(points, out)
    return 0 if points else 1


def _print_table(points: Sequence[StoredPoint], out: Any) -> None:
    rows = [["metric", "step", "value", "time (UTC)", "attributes", "rank"]]
    for p in points:
        attrs = ",".join(f"{k}={v}" for k, v in sorted(p.attributes.items()))
        step = "" if p.step is None else str(p.step)
        rank = str(p.resource.get("training.rank", ""))
        rows.append([p.metric, step, _value_text(p), format_time(p.time_unix_nano, milliseconds=True), attrs, rank])
    render_table(rows, out, right=(1, 2, 5))
    if len(rows) == 1:
        out.write("(no points matched)\n")


def cmd_metrics(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        names = store.metric_names()
    finally:
        store.close()
    for name in names:
        print(name)
    return 0 if names else 1
