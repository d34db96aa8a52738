"""``otel-recursive-metrics compare RUN RUN... [--metric M ...]``: runs side by side.

    $ otel-recursive-metrics compare lr-0.1 lr-0.5 --metric train.loss
    metric      run     points  last    at step  min      max
    ----------  ------  ------  ------  -------  -------  -----
    train.loss  lr-0.1  300     0.512   299      0.4987   1.1
    train.loss  lr-0.5  300     0.3021  299      0.2876   1.1

    parameter  lr-0.1  lr-0.5
    ---------  ------  ------
    lr         0.1     0.5

For each metric (default: every metric of the runs) and run: the number of points, the last
value (by time) and its step, the smallest and largest value. Then the parameters whose values
differ between the runs (the ones they share are left out; ``--all-params`` shows them too).
Runs are named by id or by name. ``--format json`` prints ``{"metrics": [...], "params": {...}}``.
Exit codes: 0, 1 when a run or metric is not in the store (with "did you mean"), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..store.run_compare import compare_runs
from ._output import CommandError, add_store_arg, open_store, render_table
from .query import did_you_mean, resolve_runs
from .runs import format_value

__all__ = ["compare_runs", "register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("compare", help="compare runs: last/min/max per metric, and the parameters that differ")
    add_store_arg(parser)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run ids or names (two or more)")
    parser.add_argument("--metric", action="append", help="metric to compare; repeat for several (default: all)")
    parser.add_argument("--all-params", action="store_true", help="list every parameter, not only those that differ")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise CommandError("compare needs two runs or more")
    store = open_store(args.store)
    try:
        runs = resolve_runs(store, args.runs) or []
        if args.metric:
            known = store.metric_names()
            for metric in args.metric:
                if metric not in known:
                    raise CommandError(did_you_mean("metric", metric, known), code=1)
        result = compare_runs(store, runs, args.metric, all_params=args.all_params)
    finally:
        store.close()
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps(result, default=str) + "\n")
        return 0
    rows = [["metric", "run", "points", "last", "at step", "min", "max"]]
    for row in result["metrics"]:
        step = "-" if row["last_step"] is None else str(row["last_step"])
        rows.append(
            [
                row["metric"],
                row["run"],
                str(row["points"]),
                format_value(row["last"]),
                step,
                format_value(row["min"]),
                format_value(row["max"]),
            ]
        )
    render_table(rows, out, right=(2, 3, 4, 5, 6))
    out.write("\n")
    if result["params"]:
        prows = [["parameter", *runs]]
        prows += [[key, *(format_value(values[run]) for run in runs)] for key, values in result["params"].items()]
        render_table(prows, out)
    else:
        out.write("(the runs' parameters do not differ)\n")
    return 0
