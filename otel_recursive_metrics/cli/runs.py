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
import json
import sys
from collections.abc import Sequence
from typing import Any

from ._output import add_store_arg, format_duration, format_time, open_store, render_table

__all__ = ["cmd_runs", "format_ranks", "register"]


def register(subparsers: Any) -> None:
    """Add the ``runs`` subcommand."""
    parser = subparsers.add_parser("runs", help="list training runs: id, start, end, ranks, points, metrics")
    add_store_arg(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=cmd_runs)


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


def _metrics_text(names: Sequence[str], width: int = 60) -> str:
    text = f"{len(names)}: " + ", ".join(names)
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args.store)
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
                format_time(start),
                format_time(end),
                format_duration((end - start) / 1e9),
                format_ranks(run["ranks"]),
                str(run["points"]),
                _metrics_text(run["metrics"]),
            ]
        )
    render_table(rows, out, right=(5,))
    if not runs:
        out.write("(no points in the store)\n")
    return 0 if runs else 1
