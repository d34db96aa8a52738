"""``otel-recursive-metrics runs``: the training runs in a store, one line each.

    $ otel-recursive-metrics runs --store ./otel-metrics/metrics.db --metric train.loss
    run        start (UTC)          end (UTC)            duration  status    ranks  points  name      params                   train.loss
    ---------  -------------------  -------------------  --------  --------  -----  ------  --------  -----------------------  ----------
    spiral-a   2026-01-01 12:00:00  2026-01-01 12:03:10  3m10s     finished  0-3    48000   baseline  batch_size=32 lr=0.5 ... 0.4321

A run is the resource attribute ``training.run.id`` (see :mod:`otel_recursive_metrics.resource`);
points without one are listed as ``(none)``. ``status`` is ``running``, ``finished``,
``failed``, ``killed`` or ``crashed`` (a process that vanished: see
:mod:`otel_recursive_metrics.store.run_metadata`), ``-`` for a run that recorded no start (one
written through the SDK only). ``--metric`` (repeatable) adds the last value of each metric;
without it the metrics are listed. ``--format json`` prints one object a line with every field
(``run``, ``name``, ``status``, times, ``duration_s``, ``ranks``, ``restarts``, ``points``,
``metrics``, ``params``, ``tags``, ``notes``, ``last``). Exit codes: 0, 1 when the store has no
runs, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ._output import add_store_arg, format_duration, format_time, open_store, render_table

__all__ = ["cmd_runs", "format_params", "format_ranks", "format_value", "register"]


def register(subparsers: Any) -> None:
    """Add the ``runs`` subcommand."""
    parser = subparsers.add_parser("runs", help="list training runs: status, times, ranks, points, parameters, last values")
    add_store_arg(parser)
    parser.add_argument("--metric", action="append", help="show the last value of this metric; repeat for several")
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


def format_value(value: Any) -> str:
    """A metric or parameter value for a table: floats to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def format_params(params: Mapping[str, Any], width: int = 40) -> str:
    """``lr=0.5 batch_size=32 ...`` clipped to ``width`` characters."""
    text = " ".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))
    return text if len(text) <= width else text[: width - 3] + "..."


def _metrics_text(names: Sequence[str], width: int = 60) -> str:
    text = f"{len(names)}: " + ", ".join(names)
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        runs = store.runs(last_of=args.metric or ())
    finally:
        store.close()
    out = sys.stdout
    if args.format == "json":
        for run in runs:
            out.write(json.dumps(run, separators=(",", ":"), default=str) + "\n")
        return 0 if runs else 1
    header = ["run", "start (UTC)", "end (UTC)", "duration", "status", "ranks", "points", "name", "params"]
    header += list(args.metric) if args.metric else ["metrics"]
    rows = [header]
    for run in runs:
        start, end = run["start_time_unix_nano"], run["end_time_unix_nano"]
        row = [
            "(none)" if run["run"] is None else str(run["run"]),
            format_time(start),
            "-" if run["status"] == "running" else format_time(end),
            format_duration(run["duration_s"]),
            "-" if run["status"] == "unknown" else run["status"],
            format_ranks(run["ranks"]),
            str(run["points"]),
            run.get("name") or "-",
            format_params(run.get("params") or {}) or "-",
        ]
        if args.metric:
            row += [format_value(run["last"].get(m)) for m in args.metric]
        else:
            row.append(_metrics_text(run["metrics"]))
        rows.append(row)
    render_table(rows, out, right=(6, *range(9, 9 + len(args.metric or ()))))
    if not runs:
        out.write("(no runs in the store)\n")
    return 0 if runs else 1
