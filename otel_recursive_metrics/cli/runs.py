"""``otel-recursive-metrics runs``: the training runs in a store, one line each.

    $ otel-recursive-metrics runs --store ./otel-metrics/metrics.db --metric train.loss
    run        start (UTC)          end (UTC)            duration  status    ranks  points  name      params                   train.loss
    ---------  -------------------  -------------------  --------  --------  -----  ------  --------  -----------------------  ----------
    spiral-a   2026-01-01 12:00:00  2026-01-01 12:03:10  3m10s     finished  0-3    48000   baseline  batch_size=32 lr=0.5 ... 0.4321

A run is the resource attribute ``training.run.id`` (see :mod:`otel_recursive_metrics.model.resource`);
points without one are listed as ``(none)``. ``status`` is ``running``, ``finished``,
``failed``, ``killed`` or ``crashed`` (a process that vanished: see
:mod:`otel_recursive_metrics.store.run_metadata`), ``-`` for a run that recorded no start (one
written through the SDK only). ``--metric`` (repeatable) adds the last value of each metric;
without it the metrics are listed. ``--format json`` prints one object a line with every field
(``run``, ``name``, ``status``, times, ``duration_s``, ``ranks``, ``restarts``, ``points``,
``metrics``, ``params``, ``tags``, ``notes``, ``last``). Exit codes: 0, 1 when the store has no
runs, 2 on bad usage.

``--ranks RUN`` shows the skew across the ranks of one run instead, the stragglers view of
distributed training (see :mod:`otel_recursive_metrics.store.ranks` for the definitions)::

    $ otel-recursive-metrics runs --ranks spiral-a
    rank  last step  behind  steps/s  last point  GPU util
    ----  ---------  ------  -------  ----------  --------
       0       4000       0    21.30       0.0s       97%
       1       4000       0    21.28       0.1s       96%
       2       3880     120    14.70       0.0s       61%
       3       4000       0    21.31       0.2s       97%
    slowest: rank 2 at 14.7 steps/s, 31% below the median 21.3 steps/s, 120 steps behind the leader
    (steps/s and GPU utilisation over each rank's last 60 s; --window to change)

``--window`` sets the seconds over which rates and utilisation are measured (default 60).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..model.kinds import RunStatus
from ..store.ranks import DEFAULT_WINDOW_S
from ._output import CommandError, add_store_arg, format_duration, format_time, open_store, render_table
from .query import resolve_runs

__all__ = ["cmd_ranks", "cmd_runs", "format_params", "format_ranks", "format_skew", "format_value", "register", "skew_verdict"]


def register(subparsers: Any) -> None:
    """Add the ``runs`` subcommand."""
    parser = subparsers.add_parser("runs", help="list training runs: status, times, ranks, points, parameters, last values")
    add_store_arg(parser)
    parser.add_argument("--metric", action="append", help="show the last value of this metric; repeat for several")
    parser.add_argument("--ranks", metavar="RUN", help="per-rank last step, step rate and GPU utilisation of RUN (id or name)")
    parser.add_argument(
        "--window",
        type=float,
        default=DEFAULT_WINDOW_S,
        metavar="SECONDS",
        help=f"with --ranks: measure rates and utilisation over each rank's last SECONDS (default {DEFAULT_WINDOW_S:g})",
    )
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
    if args.ranks is not None:
        return cmd_ranks(args)
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
            "-" if run["status"] == RunStatus.RUNNING else format_time(end),
            format_duration(run["duration_s"]),
            "-" if run["status"] == RunStatus.UNKNOWN else str(run["status"]),
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


def format_skew(skew: dict[str, Any]) -> list[list[str]]:
    """The rows (header first) of the ``--ranks`` table for a :func:`~..store.ranks.rank_skew` result."""
    rows = [["rank", "last step", "behind", "steps/s", "last point", "GPU util"]]
    for rank in skew["ranks"]:
        rate, util = rank["step_rate_per_s"], rank["gpu_utilization"]
        rows.append(
            [
                str(rank["rank"]),
                "-" if rank["last_step"] is None else str(rank["last_step"]),
                "-" if rank["steps_behind"] is None else str(rank["steps_behind"]),
                "-" if rate is None else f"{rate:.2f}",
                f"{rank['seconds_since_last_point']:.1f}s",
                "-" if util is None else f"{util * 100:.0f}%",
            ]
        )
    return rows


def skew_verdict(skew: dict[str, Any]) -> str:
    """One line naming the slowest rank and by how much, or why there is none."""
    slow = skew["slowest"]
    if slow is None and len(skew["ranks"]) == 1:
        return "one rank: nothing to compare it with"
    if slow is None:
        stepping = sum(1 for r in skew["ranks"] if r["step_rate_per_s"] is not None)
        return f"no slowest rank: {stepping} rank(s) with a step rate (a rank needs points with a step at two times)"
    behind = slow["steps_behind"]
    tail = f", {behind} steps behind the leader" if behind else ", level with the leader"
    return (
        f"slowest: rank {slow['rank']} at {slow['step_rate_per_s']:.3g} steps/s,"
        f" {slow['below_median'] * 100:.0f}% below the median {slow['median_step_rate_per_s']:.3g} steps/s{tail}"
    )


def cmd_ranks(args: argparse.Namespace) -> int:
    """``runs --ranks RUN``: the skew summary across the ranks of one run."""
    if not args.window > 0:
        raise CommandError(f"--window {args.window!r}: expected a positive number of seconds")
    store = open_store(args.store)
    try:
        (run,) = resolve_runs(store, [args.ranks]) or [args.ranks]
        skew = store.rank_skew(run, window_s=args.window)
    except KeyError:
        raise CommandError(f"--ranks {args.ranks!r}: the run has no points yet", code=1) from None
    finally:
        store.close()
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps(skew, separators=(",", ":"), default=str) + "\n")
        return 0
    render_table(format_skew(skew), out, right=(0, 1, 2, 3, 4, 5))
    out.write(skew_verdict(skew) + "\n")
    restart = "" if not skew["restart"] else f"; attempt {skew['restart']} (restart count), earlier attempts not shown"
    out.write(f"(steps/s and GPU utilisation over each rank's last {skew['window_s']:g} s; --window to change{restart})\n")
    return 0
