"""``otel-recursive-metrics runs``: the training runs in a store, one line each.

    $ otel-recursive-metrics runs --store ./otel-metrics/metrics.db
    run                     start (UTC)          end (UTC)            duration  ranks  points  metrics
    ----------------------  -------------------  -------------------  --------  -----  ------  -------------------------
    20260101-120000-a1b2c3  2026-01-01 12:00:00  2026-01-01 12:03:10  3m10s     0-3    48000   4: train.acc, train.loss, ...

A run is the resource attribute ``training.run.id`` (see :mod:`otel_recursive_metrics.resource`);
points without one are listed as ``(none)``. ``--format json`` prints one object a line with
``run``, ``start_time_unix_nano``, ``end_time_unix_nano``, ``ranks``, ``restarts``, ``points``
and ``metrics``. Exit codes: 0, 1 when the store has no points, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .store import PointStore

__all__ = ["cmd_runs", "format_ranks", "register"]


def register(
    subparsers: Any,
    add_store_arg: Callable[[argparse.ArgumentParser], None],
    add_filters: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the ``runs`` subcommand (called by :mod:`otel_recursive_metrics.cli`)."""
    parser = subparsers.add_parser("runs", help="list training runs: id, start, end, ranks, points, metrics")
    add_store_arg(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=cmd_runs)


def open_store(path: str) -> PointStore | None:
    """The store at ``path``, or None after printing why not (for the CLI's exit code 2)."""
    from .cli import _open_store

    try:
        return _open_store(path)
    except SystemExit:  # the reason is printed already
        return None


def format_ranks(ranks: Sequence[Any]) -> str:
    """``[0, 1, 2, 3, 6]`` as ``0-3,6``."""
    numbers = sorted(r for r in ranks if isinstance(r, int))
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    parts.extend(str(r) for r in ranks if not isinstance(r, int))
    return ",".join(parts) or "-"


def _when(time_unix_nano: int) -> str:
    return dt.datetime.fromtimestamp(time_unix_nano / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _metrics_text(names: Sequence[str], width: int = 60) -> str:
    text = f"{len(names)}: " + ", ".join(names)
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if store is None:
        return 2
    try:
        runs = store.runs()
    finally:
        store.close()
    out = sys.stdout
    if args.format == "json":
        for run in runs:
            out.write(json.dumps(run, separators=(",", ":")) + "\n")
        return 0 if runs else 1
    header = ["run", "start (UTC)", "end (UTC)", "duration", "ranks", "points", "metrics"]
    rows = [header]
    for run in runs:
        start, end = run["start_time_unix_nano"], run["end_time_unix_nano"]
        rows.append(
            [
                "(none)" if run["run"] is None else str(run["run"]),
                _when(start),
                _when(end),
                _duration((end - start) / 1e9),
                format_ranks(run["ranks"]),
                str(run["points"]),
                _metrics_text(run["metrics"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        cells = [cell.rjust(w) if j == 5 and i else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    if not runs:
        out.write("(no points in the store)\n")
    return 0 if runs else 1
