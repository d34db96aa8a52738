"""``otel-recursive-metrics query`` and ``metrics``: points and metric names from the store.

- ``query --store PATH [--metric NAME ...] [--run ID ...] [--rank N] [--last N] [--follow]
  [--format table|csv|json]``: points from the store, oldest first. ``--run`` may be given several
  times (runs are matched by id or by name); the table and the CSV have a run column. ``json`` is
  one object a line with ``metric``, ``kind``, ``value``, ``attributes``, ``resource``,
  ``time_unix_nano``, ``step`` and the rest of the point; CSV keeps full precision (the shortest
  text that reads back as the same float). ``--last N`` prints the newest N points of each series
  (a metric of one run, rank and attribute set), ``--limit N`` the first N points in all.
  ``--follow`` keeps printing points as they are written until every selected run has ended (or
  Ctrl-C), like ``tail -f``.
- ``metrics --store PATH``: the metric names in a store, one a line.

A metric or run the store does not have is an error that names what it has and the closest
names ("did you mean"). Exit codes: 0 success, 1 nothing matched, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from ..model.kinds import RunStatus
from ..model.resource import RANK_KEY, RUN_ID_KEY
from ..store import PointStore, StoredPoint
from ..store.export import PointWriter
from ..store.points import PointQuery
from ._output import CommandError, add_store_arg, format_time, open_store, positive_int, render_table
from ._terminal import pad, terminal_text

__all__ = ["add_filters", "cmd_metrics", "cmd_query", "did_you_mean", "point_filters", "register", "resolve_runs", "write_text"]

#: How often ``--follow`` asks the store for new points, and checks whether the runs still run.
FOLLOW_POLL_S = 0.5
FOLLOW_STATUS_EVERY_S = 2.0


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
    parser.add_argument("--run", action="append", help="training run id or name; repeat for several (default: all)")
    parser.add_argument("--rank", type=int, help="training rank (resource attribute training.rank)")
    parser.add_argument("--step-min", type=int, help="first step (inclusive)")
    parser.add_argument("--step-max", type=int, help="last step (inclusive)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the first N points")
    parser.add_argument("--last", type=positive_int, metavar="N", help="the newest N points of each series (printed oldest first)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new points until the runs end (Ctrl-C to stop)")


def did_you_mean(what: str, wanted: str, known: Sequence[str]) -> str:
    """An error text: ``wanted`` is not one of ``known``; the closest ones, and the list."""
    close = difflib.get_close_matches(wanted, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
    return f"no {what} {wanted!r} in the store{hint} ({what}s: {shown or 'none'})"


def resolve_runs(store: PointStore, wanted: Sequence[str] | None) -> list[str] | None:
    """Run ids for ``wanted`` (ids or names); CommandError with "did you mean" for an unknown one."""
    if not wanted:
        return None
    runs = store.runs()
    by_id = {str(r["run"]): str(r["run"]) for r in runs}
    by_name = {str(r["name"]): str(r["run"]) for r in runs if r.get("name")}
    out = []
    for run in wanted:
        if run in by_id:
            out.append(by_id[run])
        elif run in by_name:
            out.append(by_name[run])
        else:
            raise CommandError(did_you_mean("run", run, sorted(set(by_id) | set(by_name))), code=1)
    return out


def _check_metrics(store: PointStore, wanted: Sequence[str] | None) -> None:
    if not wanted:
        return
    known = store.metric_names()
    for metric in wanted:
        if metric not in known:
            raise CommandError(did_you_mean("metric", metric, known), code=1)


def point_filters(args: argparse.Namespace, store: PointStore) -> dict[str, Any]:
    """:func:`add_filters`' arguments as :class:`PointQuery` keywords (``metric`` aside); unknown names are errors."""
    if args.limit is not None and args.last is not None:
        raise CommandError("--limit (the first N) and --last (the newest N): give one")
    _check_metrics(store, args.metric)
    return {
        "run": resolve_runs(store, args.run),
        "rank": args.rank,
        "step_min": args.step_min,
        "step_max": args.step_max,
        "limit": args.limit,
        "last": args.last,
    }


def _value_text(p: StoredPoint, *, precise: bool = False) -> str:
    if p.value is not None:
        if isinstance(p.value, float):
            return repr(p.value) if precise else f"{p.value:.6g}"
        return str(p.value)
    if p.histogram:
        return f"count={p.histogram['count']} sum={p.histogram['sum']!r}"
    return ""


class _Printer:
    """Writes points as a table (CSV and JSON go through :class:`PointWriter`)."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt, self.out = fmt, out
        self.header_done = False
        self.printed = 0

    def write(self, points: Sequence[StoredPoint], *, follow: bool = False) -> None:
        if not points and (self.header_done or follow):
            return
        self._table(points, follow=follow)
        self.header_done = True
        self.printed += len(points)
        self.out.flush()

    def _table(self, points: Sequence[StoredPoint], *, follow: bool) -> None:
        header = ["metric", "run", "rank", "step", "value", "time (UTC)", "attributes"]
        rows = [header]
        for p in points:
            attrs = ",".join(f"{k}={v}" for k, v in sorted(p.attributes.items()))
            step = "" if p.step is None else str(p.step)
            rows.append(
                [
                    p.metric,
                    str(p.resource.get(RUN_ID_KEY, "")),
                    str(p.resource.get(RANK_KEY, "")),
                    step,
                    _value_text(p),
                    format_time(p.time_unix_nano, milliseconds=True),
                    attrs,
                ]
            )
        if follow:
            # Widths cannot be known ahead when following: fixed ones, one line a point.
            if not self.header_done:
                self.out.write("  ".join(pad(h, w) for h, w in zip(header, _FOLLOW_WIDTHS, strict=False)).rstrip() + "\n")
            for row in rows[1:]:
                self.out.write("  ".join(pad(terminal_text(c), w) for c, w in zip(row, _FOLLOW_WIDTHS, strict=False)).rstrip() + "\n")
            return
        render_table(rows, self.out, right=(2, 3, 4))
        if len(rows) == 1:
            self.out.write("(no points matched)\n")


_FOLLOW_WIDTHS = (24, 24, 4, 8, 12, 23, 0)


def cmd_query(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        filters = point_filters(args, store)
        if args.format in ("csv", "json"):
            return write_text(store, args, filters, args.format, sys.stdout)
        printer = _Printer(args.format, sys.stdout)
        points = store.query(args.metric, **filters)
        printer.write(points, follow=args.follow)
        if args.follow:
            _follow(store, args, filters, printer, points)
    finally:
        store.close()
    return 0 if printer.printed else 1


def write_text(store: PointStore, args: argparse.Namespace, filters: dict[str, Any], fmt: str, out: TextIO) -> int:
    """CSV or JSON lines (``fmt``) to ``out`` through :class:`~..store.export.PointWriter` (no object per point)."""
    writer = PointWriter(store, fmt, out)
    query = PointQuery(args.metric, **filters)
    _, last_row = writer.write(query)
    if args.follow:

        def fresh_rows() -> int | None:
            nonlocal last_row
            written, last_row = writer.write(query, after_row_id=last_row)
            return written or None

        _until_runs_end(store, filters, fresh_rows)
    return 0 if writer.written else 1


def _follow(store: PointStore, args: argparse.Namespace, filters: dict[str, Any], printer: _Printer, seen: Iterable[StoredPoint]) -> None:
    """Print new points as a table until every selected run has ended, or Ctrl-C."""
    last_row = max((p.row_id for p in seen), default=0)
    filters = {**filters, "limit": None, "last": None}

    def fresh_points() -> int | None:
        nonlocal last_row
        fresh = store.query(args.metric, **filters, after_row_id=last_row)
        if not fresh:
            return None
        printer.write(fresh, follow=True)
        last_row = max(p.row_id for p in fresh)
        return last_row

    _until_runs_end(store, filters, fresh_points)


def _until_runs_end(store: PointStore, filters: dict[str, Any], poll: Callable[[], int | None]) -> None:
    """Call ``poll`` (which prints what is new; None when nothing was) until the runs end or Ctrl-C."""
    next_status = 0.0
    try:
        while True:
            if poll() is None and time.monotonic() >= next_status:
                next_status = time.monotonic() + FOLLOW_STATUS_EVERY_S
                wanted = set(filters["run"] or [])
                runs = [r for r in store.runs() if not wanted or str(r["run"]) in wanted]
                if runs and not any(r["status"] in (RunStatus.RUNNING, RunStatus.UNKNOWN) for r in runs):
                    return
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        return


def cmd_metrics(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        names = store.metric_names()
    finally:
        store.close()
    for name in names:
        print(terminal_text(name))
    return 0 if names else 1
