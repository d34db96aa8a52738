"""``otel-recursive-metrics runs``: the training runs in a store, one line each.

    $ otel-recursive-metrics runs --metric train.loss
    run     start (UTC)  end    duration  status    ranks  points  name     tags   params  train.loss
    ------  -----------  -----  --------  --------  -----  ------  -------  -----  ------  ----------
    lr-0.1  01-01 12:00  12:03  3m10s     finished  0-3     48000  sgd 0.1  sweep  lr=0.1      0.4321
    lr-0.5  01-01 12:04  12:07  3m02s     finished  0-3     48000  sgd 0.5  sweep  lr=0.5      0.1234
    (parameters of every run, --wide shows them per run: batch_size=32 optim=sgd)

A run is the resource attribute ``training.run.id`` (see :mod:`otel_recursive_metrics.model.resource`);
points without one are listed as ``(none)``. ``status`` is ``running``, ``finished``,
``failed``, ``killed`` or ``crashed`` (a process that vanished: see
:mod:`otel_recursive_metrics.store.run_metadata`), ``-`` for a run that recorded no start (one
written through the SDK only). ``--metric`` (repeatable) adds the last value of each metric;
without it the metrics are listed.

The table fits :data:`FIT_COLUMNS` columns: times without seconds (the end without its date on
the start's day), only the parameters that differ between the runs listed (the shared ones on
a line below; those with the most distinct values first), no name, tags or params column that
every run leaves empty, no ranks column when every run is one process, and run ids, names, tags,
parameters and metric names cut with ``…`` where they are still too long. ``--wide`` prints
every column whole.
Every cell is shown through :func:`~._terminal.terminal_text` (control characters escaped):
names, tags and parameters are whatever the training script wrote.

``--format json`` prints one object a line with every field (``run``, ``name``, ``status``,
times, ``duration_s``, ``ranks``, ``restarts``, ``points``, ``metrics``, ``params``, ``tags``,
``notes``, ``last``). Exit codes: 0, 1 when the store has no runs, 2 on bad usage.

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
import datetime as dt
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ..model.kinds import RunStatus
from ..store.ranks import DEFAULT_WINDOW_S
from ._output import CommandError, add_store_arg, format_duration, format_time, open_store, render_table
from ._terminal import display_width, fit_table, terminal_text
from .query import resolve_runs

__all__ = [
    "FIT_COLUMNS",
    "cmd_ranks",
    "cmd_runs",
    "format_params",
    "format_ranks",
    "format_skew",
    "format_value",
    "register",
    "runs_table",
    "shared_params",
    "skew_verdict",
]

#: The width ``runs`` fits its table into unless given ``--wide``.
FIT_COLUMNS = 100


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
    parser.add_argument(
        "--wide", action="store_true", help=f"every column whole: full times, every parameter (default: fit {FIT_COLUMNS} columns)"
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


def format_params(params: Mapping[str, Any], order: Sequence[str] | None = None) -> str:
    """``batch_size=32 lr=0.5``: every parameter, in ``order`` (default: by name; a table cuts it)."""
    keys = sorted(params) if order is None else [key for key in order if key in params]
    return " ".join(f"{key}={format_value(params[key])}" for key in keys)


def _canonical(params: Mapping[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value, sort_keys=True, default=str) for key, value in params.items()}


def shared_params(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters every one of ``runs`` has with the same value (none for fewer than two runs)."""
    if len(runs) < 2:
        return {}
    first, *others = [_canonical(run.get("params") or {}) for run in runs]
    common = {key for key, text in first.items() if all(params.get(key) == text for params in others)}
    return {key: value for key, value in (runs[0].get("params") or {}).items() if key in common}


def _most_varied_first(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every parameter name, those with the most distinct values across ``runs`` first (a sweep's axes)."""
    values: dict[str, set[str | None]] = {}
    texts = [_canonical(run.get("params") or {}) for run in runs]
    for key in {key for params in texts for key in params}:
        values[key] = {params.get(key) for params in texts}
    return sorted(values, key=lambda key: (-len(values[key]), key))


def _short_time(time_unix_nano: int, same_day_as: int | None = None) -> str:
    """``01-31 12:00`` this year, ``2025-12-31`` before it; ``12:03`` on ``same_day_as``'s date."""
    if not time_unix_nano:
        return "?"
    when = dt.datetime.fromtimestamp(time_unix_nano / 1e9, tz=dt.timezone.utc)
    if same_day_as and when.date() == dt.datetime.fromtimestamp(same_day_as / 1e9, tz=dt.timezone.utc).date():
        return when.strftime("%H:%M")
    if when.year == dt.datetime.now(dt.timezone.utc).year:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%Y-%m-%d")


# Columns of the full table, by index.
_RUN, _RANKS, _POINTS, _NAME, _TAGS, _PARAMS, _FIRST_VALUE = 0, 5, 6, 7, 8, 9, 10


def runs_table(
    runs: Sequence[Mapping[str, Any]], metrics: Sequence[str] = (), *, wide: bool = False
) -> tuple[list[list[str]], list[int], list[str]]:
    """The ``runs`` table: ``(rows, right-aligned column indexes, notes to print under it)``.

    ``metrics`` are the columns of last values (none: a column listing each run's metrics).
    Unless ``wide``, the table is fitted to :data:`FIT_COLUMNS` (see the module's docstring).
    """
    shared = {} if wide else shared_params(runs)
    order = None if wide else _most_varied_first(runs)
    header = ["run", "start (UTC)", "end (UTC)" if wide else "end", "duration", "status", "ranks", "points", "name", "tags", "params"]
    header += list(metrics) if metrics else ["metrics"]
    rows = [header]
    for run in runs:
        start, end = run["start_time_unix_nano"], run["end_time_unix_nano"]
        params = {k: v for k, v in (run.get("params") or {}).items() if k not in shared}
        end_text = format_time(end) if wide else _short_time(end, same_day_as=start)
        row = [
            "(none)" if run["run"] is None else str(run["run"]),
            format_time(start) if wide else _short_time(start),
            "-" if run["status"] == RunStatus.RUNNING else end_text,
            format_duration(run["duration_s"]),
            "-" if run["status"] == RunStatus.UNKNOWN else str(run["status"]),
            format_ranks(run["ranks"]),
            str(run["points"]),
            run.get("name") or "-",
            ",".join(str(tag) for tag in run.get("tags") or ()) or "-",
            format_params(params, order) or "-",
        ]
        if metrics:
            row += [format_value(run["last"].get(m)) for m in metrics]
        else:
            row.append(f"{len(run['metrics'])}: " + ", ".join(run["metrics"]))
        rows.append(row)
    right = [_POINTS, *range(_FIRST_VALUE, len(header))] if metrics else [_POINTS]
    if wide:
        return rows, right, []
    rows, right, cut = _fit(rows, right, bool(metrics))
    notes = []
    if shared:
        text = terminal_text(f"(parameters of every run, --wide shows them per run: {format_params(shared)})")
        notes += textwrap.wrap(text, FIT_COLUMNS, subsequent_indent="  ", max_lines=3, placeholder=" …)")
    if cut:
        notes.append(f"(cut to fit {FIT_COLUMNS} columns; --wide shows every cell whole)")
    return rows, right, notes


def _fit(rows: list[list[str]], right: list[int], values: bool) -> tuple[list[list[str]], list[int], bool]:
    """``rows`` cut to :data:`FIT_COLUMNS`, best effort, without the columns that say nothing.

    Left out: name, tags and params when no run has any, ranks when every run has one process.
    """
    body = rows[1:]
    empty = {i for i in (_NAME, _TAGS, _PARAMS) if body and all(row[i] == "-" for row in body)}
    if all(row[_RANKS] in ("0", "-") for row in body):
        empty.add(_RANKS)
    keep = [i for i in range(len(rows[0])) if i not in empty]
    rows = [[row[i] for i in keep] for row in rows]
    right = [keep.index(i) for i in right]
    text_columns = [keep.index(i) for i in (_RUN, _NAME, _TAGS, _PARAMS) if i in keep]
    value_columns = range(keep.index(_FIRST_VALUE), len(keep))
    # Free text gives way first, widest first; a last value keeps its number and some of its name.
    for text_floor, name_floor in ((10, 10), (6, 8)):
        floors = dict.fromkeys(text_columns, text_floor)
        for i in value_columns:
            numbers = max((len(row[i]) for row in rows[1:]), default=1)
            floors[i] = max(numbers, min(len(rows[0][i]), name_floor)) if values else text_floor + 2
        fitted, cut = fit_table(rows, FIT_COLUMNS, floors)
        widths = [max(display_width(row[i]) for row in fitted) for i in range(len(keep))]
        if sum(widths) + 2 * (len(keep) - 1) <= FIT_COLUMNS:
            break
    return fitted, right, cut


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
    rows, right, notes = runs_table(runs, args.metric or (), wide=args.wide)
    render_table(rows, out, right=right)
    for note in notes:
        out.write(note + "\n")
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
