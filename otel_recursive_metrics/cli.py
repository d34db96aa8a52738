"""The ``otel-recursive-metrics`` command (also ``python -m otel_recursive_metrics``).

Subcommands:

- ``query --store PATH [--metric NAME ...] [--run ID] [--rank N] [--format table|csv|json]``:
  points from the store; ``json`` is one object a line with ``metric``, ``kind``, ``value``,
  ``attributes``, ``resource``, ``time_unix_nano``, ``step`` and the rest of the point.
- ``metrics --store PATH``: the metric names in a store.

Exit codes: 0 success, 1 nothing matched, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Config, env_setting
from .errors import ConfigError
from .store import PointStore, StoredPoint

__all__ = ["build_parser", "main"]

_Handler = Callable[[argparse.Namespace], int]


def _default_store() -> str:
    """The store file the exporter would use in this environment."""
    try:
        return str(Config(dir=env_setting("dir"), store_path=env_setting("store_path")).resolved_store_path)
    except ConfigError as exc:
        raise SystemExit(_fail(str(exc))) from None


def _open_store(path: str) -> PointStore:
    if not Path(path).exists():
        raise SystemExit(_fail(f"--store {path!r}: no such file (train with OTEL_METRICS_EXPORTER=recursive first, or pass --store)"))
    try:
        return PointStore(path, durable=False)
    except (ValueError, sqlite3.DatabaseError) as exc:
        raise SystemExit(_fail(f"--store {path!r}: {exc}")) from None


def _fail(message: str) -> int:
    print(f"otel-recursive-metrics: error: {message}", file=sys.stderr)
    return 2


def _add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", default=_default_store(), help="SQLite store file (default: $OTEL_RECURSIVE_METRICS_STORE or ./otel-metrics/metrics.db)"
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", action="append", help="metric name; repeat for several (default: all)")
    parser.add_argument("--run", help="training run id (resource attribute training.run.id)")
    parser.add_argument("--rank", type=int, help="training rank (resource attribute training.rank)")
    parser.add_argument("--step-min", type=int, help="first step (inclusive)")
    parser.add_argument("--step-max", type=int, help="last step (inclusive)")
    parser.add_argument("--limit", type=int, help="most points to print")


def _query_points(args: argparse.Namespace) -> list[StoredPoint]:
    store = _open_store(args.store)
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
    import datetime as dt

    rows = [["metric", "step", "value", "time (UTC)", "attributes", "rank"]]
    for p in points:
        when = dt.datetime.fromtimestamp(p.time_unix_nano / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        attrs = ",".join(f"{k}={v}" for k, v in sorted(p.attributes.items()))
        rows.append(
            [p.metric, "" if p.step is None else str(p.step), _value_text(p), when, attrs, str(p.resource.get("training.rank", ""))]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        out.write(
            "  ".join(
                cell.ljust(w) if j in (0, 3, 4) else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            + "\n"
        )
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    if len(rows) == 1:
        out.write("(no points matched)\n")


def cmd_metrics(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    try:
        names = store.metric_names()
    finally:
        store.close()
    for name in names:
        print(name)
    return 0 if names else 1


#: Extra subcommands contributed by other modules: name -> (module, register function).
_EXTENSIONS = (
    ("otel_recursive_metrics.cli_dlq", "register"),
    ("otel_recursive_metrics.cli_runs", "register"),
    ("otel_recursive_metrics.cli_plot", "register"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-recursive-metrics", description="Query, plot and replay training metrics.")
    sub = parser.add_subparsers(dest="command", required=True)

    query = sub.add_parser("query", help="print points from the store")
    _add_store_arg(query)
    _add_filters(query)
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(handler=cmd_query)

    names = sub.add_parser("metrics", help="list metric names in the store")
    _add_store_arg(names)
    names.set_defaults(handler=cmd_metrics)

    import importlib

    for module_name, func in _EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        getattr(module, func)(sub, _add_store_arg, _add_filters)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: _Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # `| head`
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
