"""``otel-recursive-metrics plot``: metrics of one or more runs as an image (PNG, SVG, PDF, JPEG).

    $ otel-recursive-metrics plot --metric train.loss --metric train.accuracy --out curves.png
    $ otel-recursive-metrics plot --metric train.loss --run RUN_A --run RUN_B --smooth 20 --out cmp.png

One panel per metric (shared x axis), one line per run in each panel; per run and rank when a
run has several ranks (filter with ``--rank``), and per attribute set when a metric has several.
``--x step`` (default) plots against the training step, ``--x time`` against seconds since the
run's first point, so runs started at different times overlay. ``--smooth K`` draws the
K-point trailing mean over the raw values (shown faint). A run resumed from a checkpoint (its
step going backwards) is drawn as separate segments of the same colour. Values stored as NaN
are gaps; histogram points are drawn as their mean. ``--out``'s extension picks the format
(:data:`OUT_FORMATS`); its folder must exist.

Needs matplotlib (the ``plot`` extra: ``pip install -e '.[plot]'`` in your clone), imported only
when this command runs, with the non-interactive Agg backend.

:func:`plot_metrics` returns the matplotlib ``Figure`` for use from Python.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..model.resource import RANK_KEY, RUN_ID_KEY
from ..store import PointStore, StoredPoint
from ._output import CommandError, add_store_arg, fail, open_store

__all__ = ["OUT_FORMATS", "PlotError", "cmd_plot", "plot_metrics", "register"]

_MISSING_MATPLOTLIB = (
    "matplotlib is not installed; install the plot extra: pip install -e '.[plot]' in your clone of otel-recursive-metrics"
)

#: The extensions ``--out`` may have: formats matplotlib writes with what it always brings.
OUT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


class PlotError(Exception):
    """Nothing to plot, or matplotlib is missing; the message says which."""


def register(subparsers: Any) -> None:
    """Add the ``plot`` subcommand."""
    parser = subparsers.add_parser("plot", help="plot metrics of one or more runs to an image: PNG, SVG, PDF (needs the plot extra)")
    add_store_arg(parser)
    parser.add_argument("--metric", action="append", required=True, help="metric name; repeat for one panel each")
    parser.add_argument("--run", action="append", help="run id; repeat to overlay several (default: every run with the metric)")
    parser.add_argument("--rank", type=int, help="only this rank (default: every rank)")
    parser.add_argument("--x", choices=("step", "time"), default="step", help="x axis: training step or seconds since the run started")
    parser.add_argument("--smooth", type=int, default=0, metavar="K", help="draw the K-point trailing mean (default: off)")
    parser.add_argument("--step-min", type=int, help="first step (inclusive)")
    parser.add_argument("--step-max", type=int, help="last step (inclusive)")
    parser.add_argument("--title", help="figure title (default: the runs drawn)")
    parser.add_argument("--out", required=True, help=f"image file to write; its extension picks the format ({', '.join(OUT_FORMATS)})")
    parser.set_defaults(handler=cmd_plot)


def out_format(out: str) -> str:
    """The format ``--out out`` asks for (its extension); CommandError naming what is accepted.

    Checked before anything is drawn: a folder that is not there or an extension matplotlib
    would refuse is one line, not a traceback after the work.
    """
    path = Path(out)
    extension = path.suffix.lower().lstrip(".")
    if extension not in OUT_FORMATS:
        found = f"the extension .{extension} is not one it writes" if extension else "no extension"
        raise CommandError(f"--out {out!r}: {found}; expected a file ending in {', '.join('.' + f for f in OUT_FORMATS)}")
    folder = path.parent
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise CommandError(f"--out {out!r}: the folder {str(folder)!r} {what}; create it first, or write elsewhere")
    return extension


def cmd_plot(args: argparse.Namespace) -> int:
    if args.smooth < 0:
        return fail("--smooth must be >= 0")
    extension = out_format(args.out)
    store = open_store(args.store)
    try:
        figure = plot_metrics(
            store,
            args.metric,
            runs=args.run,
            rank=args.rank,
            x=args.x,
            smooth=args.smooth,
            step_min=args.step_min,
            step_max=args.step_max,
            title=args.title,
        )
    except PlotError as exc:
        code = fail(str(exc))
        return code if str(exc) == _MISSING_MATPLOTLIB else 1
    finally:
        store.close()
    try:
        figure.savefig(args.out, dpi=120, format=extension)
    except OSError as exc:  # no permission, a full disk, a folder of that name
        raise CommandError(f"--out {args.out!r}: cannot write it ({exc.strerror or exc})") from None
    lines = sum(1 for ax in figure.axes for line in ax.get_lines() if not line.get_label().startswith("_"))
    print(f"wrote {args.out}: {len(args.metric)} metric(s), {lines} line(s)")
    return 0


# -- drawing ---------------------------------------------------------------------------------------


def _value(p: StoredPoint) -> float:
    if p.value is not None:
        return float(p.value)
    hist = p.histogram
    if hist and hist.get("count"):
        return float(hist["sum"]) / float(hist["count"])
    return math.nan


def _trailing_mean(values: Sequence[float], k: int) -> list[float]:
    """The mean of the last ``k`` non-NaN values at each position (NaN where there are none)."""
    out = []
    window: list[float] = []
    total, count = 0.0, 0
    for v in values:
        window.append(v)
        if not math.isnan(v):
            total += v
            count += 1
        if len(window) > k:
            old = window.pop(0)
            if not math.isnan(old):
                total -= old
                count -= 1
        out.append(total / count if count else math.nan)
    return out


def _segments(xs: list[float], ys: list[float], split_backwards: bool) -> list[tuple[list[float], list[float]]]:
    if not split_backwards:
        return [(xs, ys)]
    segments: list[tuple[list[float], list[float]]] = []
    start = 0
    for i in range(1, len(xs)):
        if xs[i] < xs[i - 1]:
            segments.append((xs[start:i], ys[start:i]))
            start = i
    segments.append((xs[start:], ys[start:]))
    return segments


def plot_metrics(
    store: PointStore,
    metrics: Sequence[str],
    *,
    runs: Sequence[str] | None = None,
    rank: int | None = None,
    x: str = "step",
    smooth: int = 0,
    step_min: int | None = None,
    step_max: int | None = None,
    title: str | None = None,
) -> Any:
    """A matplotlib Figure: one panel per metric, one line per run (and rank, attributes).

    Raises :class:`PlotError` when matplotlib is missing or nothing matched.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(_MISSING_MATPLOTLIB) from None
    if x not in ("step", "time"):
        raise PlotError(f"x={x!r}: expected 'step' or 'time'")
    run_starts = {r["run"]: r["start_time_unix_nano"] for r in store.runs()}

    # Gather series: metric -> (run, rank, attributes) -> points in time order.
    panels: list[tuple[str, str, dict[tuple[Any, Any, str], list[StoredPoint]]]] = []
    skipped_no_step: list[str] = []
    for metric in metrics:
        points: list[StoredPoint] = []
        run_filters: list[str | None] = list(runs) if runs else [None]
        for run in run_filters:
            points.extend(store.iter_query(metric, run=run, rank=rank, step_min=step_min, step_max=step_max))
        series: dict[tuple[Any, Any, str], list[StoredPoint]] = {}
        unit = ""
        for p in points:
            if x == "step" and p.step is None:
                continue
            unit = unit or p.unit
            key = (p.resource.get(RUN_ID_KEY), p.resource.get(RANK_KEY), json.dumps(p.attributes, sort_keys=True))
            series.setdefault(key, []).append(p)
        if points and not series:
            skipped_no_step.append(metric)
        if series:
            panels.append((metric, unit, series))
    if not panels:
        where = f" in run(s) {', '.join(runs)}" if runs else ""
        hint = ""
        if skipped_no_step:
            hint = f"; {', '.join(skipped_no_step)} has no steps (exported through the OpenTelemetry SDK): use --x time"
        raise PlotError(f"no points for {', '.join(metrics)}{where}{'' if rank is None else f' at rank {rank}'}{hint}")

    # One colour per (run, rank, attributes) across every panel.
    keys: list[tuple[Any, Any, str]] = []
    for _, _, series in panels:
        keys.extend(k for k in sorted(series, key=lambda k: (str(k[0]), str(k[1]), k[2])) if k not in keys)
    palette_name = "tab10" if len(keys) <= 10 else "tab20"
    from matplotlib import colormaps

    palette = colormaps[palette_name]
    colours = {k: palette(i % palette.N) for i, k in enumerate(keys)}
    ranks_per_run: dict[Any, set[Any]] = {}
    attrs_per_run: dict[tuple[Any, Any], set[str]] = {}
    for k in keys:
        ranks_per_run.setdefault(k[0], set()).add(k[1])
        attrs_per_run.setdefault((k[0], k[1]), set()).add(k[2])

    def label(key: tuple[Any, Any, str]) -> str:
        run_id, rank_value, attrs = key
        text = "(no run id)" if run_id is None else str(run_id)
        if len(ranks_per_run[run_id]) > 1 or rank is not None:
            text += f" rank {rank_value}"
        if len(attrs_per_run[(run_id, rank_value)]) > 1 and attrs != "{}":
            text += " " + ",".join(f"{a}={v}" for a, v in json.loads(attrs).items())
        return text

    height = 0.9 + 3.0 * len(panels)
    figure = Figure(figsize=(10, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (metric, unit, series) in zip(axes, panels, strict=True):
        for key in sorted(series, key=keys.index):
            pts = series[key]
            if x == "step":
                xs = [float(p.step) for p in pts if p.step is not None]
            else:
                origin = run_starts.get(key[0], pts[0].time_unix_nano)
                xs = [(p.time_unix_nano - origin) / 1e9 for p in pts]
            ys = [_value(p) for p in pts]
            colour = colours[key]
            first = True
            for seg_x, seg_y in _segments(xs, ys, split_backwards=x == "step"):
                shown = seg_y
                if smooth > 1:
                    ax.plot(seg_x, seg_y, color=colour, alpha=0.25, linewidth=0.8, label="_raw")
                    shown = _trailing_mean(seg_y, smooth)
                ax.plot(seg_x, shown, color=colour, linewidth=1.6, label=label(key) if first else "_resumed")
                first = False
        ax.set_title(metric, loc="left", fontsize=11)
        ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
        ax.grid(True, alpha=0.3)
        handles = [h for h in ax.get_lines() if not h.get_label().startswith("_")]
        if len(handles) > 12:
            ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(handles=handles, fontsize=8, loc="best")
    axes[-1].set_xlabel("step" if x == "step" else "time since run start (s)")
    suffix = f" (trailing mean of {smooth})" if smooth > 1 else ""
    figure.suptitle((title or _default_title(keys)) + suffix, fontsize=12)
    return figure


def _default_title(keys: Sequence[tuple[Any, Any, str]]) -> str:
    """``run spiral-a`` or ``runs lr-0.1, lr-0.5`` (the first four, then how many more)."""
    runs = list(dict.fromkeys("(no run id)" if k[0] is None else str(k[0]) for k in keys))
    shown = ", ".join(runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
    return f"run {shown}" if len(runs) == 1 else f"runs {shown}"
