"""W&B (offline) and Trackio beside ``TrainingMetrics``, each in a process and a virtualenv of its own: five figures side by side.

    python benchmarks/bench_peers.py                     # full run: about 10 minutes on 2 cores (+1 the first time)
    python benchmarks/bench_peers.py --quick             # tiny sizes, all three: a smoke run, under a minute
    python benchmarks/bench_peers.py --quick --no-peers  # ours only (the test suite runs this; it installs nothing)

**Environments.** On first use each peer gets a virtualenv, made with this interpreter's ``venv``
and filled by pip from PyPI (``wandb``, ``trackio``; NumPy pinned to this interpreter's version, so
the step is the same code): ``~/.cache/otel-recursive-metrics/bench-peers-<name>-venv``. Delete
it to install the newest release. Ours runs in this interpreter. Every child runs this file, which
puts the repository root first on ``sys.path`` (as ``PYTHONPATH`` would), so ours is this
checkout (the document names the folder imported). W&B runs with ``WANDB_MODE=offline``, its
folders in a temporary one; Trackio with ``TRACKIO_DIR`` there, local only. Otherwise all three
keep their defaults (W&B samples system metrics in ``wandb-symon``; ours: ``sinks="store"``).

**Method.** ``--repeats`` rounds of one child process per tool, the order rotating. A child:

1. sizes the step with ``bench_loop.calibrate``: a float64 NumPy matmul of about 2 ms, BLAS on
   one thread, which releases the GIL as a real step does;
2. logs ``--values`` values at full speed, 20 a call (``metrics.log(values, step=)``,
   ``run.log(values, step=)``, ``trackio.log(values)``), timing each call: *µs per value* is the
   median call after the first tenth, ÷ 20. *Close time*: ``metrics.close()``, ``run.finish()``,
   ``trackio.finish()``. *Bytes per value*, once the process tree is quiet after the close: the
   ``du`` of what the tool wrote for the run (ours: its ``dir``; W&B: the ``dir`` given to
   ``wandb.init``; Trackio: ``TRACKIO_DIR``; allocated blocks, each inode once) ÷ values logged;
3. in a second run, ``--pairs`` pairs of ``--steps``-step loop runs, plain (the step and a dict of
   20 values) and logging, in alternating order. *Loop slowdown*: the median over all rounds'
   pairs of ``logging / plain - 1``, with ``bench_loop.median_interval``'s 95% interval.
   *Background CPU per step*, over each logging run until the tree is quiet again (under 2% of a
   core for 0.5 s): the process's CPU (``getrusage``) minus the training thread's
   (``time.thread_time``), plus every descendant's (``/proc/<pid>/stat``, with the children they
   reaped; ``RUSAGE_CHILDREN`` for ours), ÷ steps; the descendants' share (W&B's Go processes) apart.

Values are ``m0`` .. ``m19`` = ``1/(step+1) + i``: full-precision floats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.bench_loop import VALUES_PER_STEP, calibrate, median_interval, pin_blas, timed_run
from benchmarks.common import commit, machine, results_path, say, version

__all__ = ["TOOLS", "main", "markdown", "run"]

TOOLS = {"ours": "ours", "trackio": "Trackio", "wandb": "W&B (offline)"}
PACKAGES = {"trackio": "trackio", "wandb": "wandb"}
VENVS = Path.home() / ".cache" / "otel-recursive-metrics"
NAMES = [f"m{i}" for i in range(VALUES_PER_STEP)]
QUIET_CPU_S, QUIET_WINDOW_S, DRAIN_CAP_S = 0.010, 0.5, 30.0
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")

# A tool's run: (log_step(step, values), close(), the folder it wrote, values kept or None).
Run = tuple[Callable[[int, dict[str, float]], Any], Callable[[], Any], Path, Callable[[], int | None]]


def _values(step: int) -> dict[str, float]:
    base = 1.0 / (step + 1)
    return {name: base + i for i, name in enumerate(NAMES)}


# -- child side: one tool, in its own interpreter --------------------------------------------


def _open(tool: str, folder: Path, name: str) -> Run:
    """A fresh run of ``tool`` named ``name``, writing under ``folder``."""
    if tool == "ours":
        from otel_recursive_metrics.training import TrainingMetrics

        metrics = TrainingMetrics(dir=folder / name, sinks="store")
        log = metrics.log

        def kept_ours() -> int | None:
            return int(metrics.get_stats()["sent_points"].get("store", 0))

        return (lambda step, values: log(values, step=step)), metrics.close, folder / name, kept_ours
    if tool == "wandb":
        import wandb

        run = wandb.init(project="bench-peers", name=name, dir=str(folder / name))
        run_log = run.log
        return (lambda step, values: run_log(values, step=step)), run.finish, folder / name, lambda: None
    import sqlite3

    import trackio

    trackio_dir = Path(os.environ["TRACKIO_DIR"])
    trackio.init(project=name)
    trackio_log = trackio.log

    def kept_trackio() -> int | None:  # one row a call, the call's values as JSON
        with sqlite3.connect(trackio_dir / f"{name}.db") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]) * VALUES_PER_STEP

    return (lambda step, values: trackio_log(values)), trackio.finish, trackio_dir, kept_trackio


def _descendants_cpu_s() -> float:
    """CPU seconds of this process's live descendants, with the children each of them reaped."""
    parent_of, cpu_of = {}, {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()  # fields from "state" on: ppid, ..., utime at [11]
            parent_of[int(entry.name)] = int(fields[1])
            cpu_of[int(entry.name)] = sum(int(f) for f in fields[11:15]) * _TICK_S  # utime stime cutime cstime
    tree, total, grew = {os.getpid()}, 0.0, True
    while grew:
        found = {pid for pid, parent in parent_of.items() if parent in tree and pid not in tree}
        tree |= found
        total += sum(cpu_of[pid] for pid in found)
        grew = bool(found)
    return total


def _background_cpu_s() -> tuple[float, float]:
    """(CPU s of the process tree beside the training thread, of which descendant processes), read
    in an order that leaves the /proc scan's own cost (on this thread) in both terms or in neither."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    thread = time.thread_time()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    descendants = reaped.ru_utime + reaped.ru_stime + _descendants_cpu_s()
    return own.ru_utime + own.ru_stime - thread + descendants, descendants


def _drain() -> float:
    """Wait until the process tree spends under QUIET_CPU_S beside the training thread over
    QUIET_WINDOW_S (capped at DRAIN_CAP_S); returns the seconds waited."""
    started = time.perf_counter()
    history = [(started, _background_cpu_s()[0])]
    while time.perf_counter() - started < DRAIN_CAP_S:
        time.sleep(0.1)
        now, spent = time.perf_counter(), _background_cpu_s()[0]
        history.append((now, spent))
        back = [s for t, s in history if now - t >= QUIET_WINDOW_S]
        if back and spent - back[-1] < QUIET_CPU_S:
            break
    return time.perf_counter() - started


def _disk_bytes(folder: Path) -> tuple[int, int]:
    """(allocated bytes as ``du`` counts them, apparent bytes) of ``folder``, each inode once."""
    seen, allocated, apparent = set(), 0, 0
    for root, dirs, files in os.walk(folder):
        for name in [".", *dirs, *files] if root == str(folder) else [*dirs, *files]:
            info = os.lstat(os.path.join(root, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                allocated += info.st_blocks * 512
                apparent += info.st_size
    return allocated, apparent


def _loop(train_step: Callable[[], None], log_step: Callable[[int, dict[str, float]], Any], first: int, steps: int) -> float:
    """Seconds for ``steps`` steps: the step, then a dict of 20 values handed to ``log_step``."""
    return timed_run(train_step, log_step, first, steps, values=_values)


def _nothing(step: int, values: dict[str, float]) -> None:
    pass


def child(tool: str, folder: Path, *, values: int, pairs: int, steps: int, plain_first: bool) -> dict[str, Any]:
    """Every figure of one tool, in this process (see the module docstring)."""
    out: dict[str, Any] = {"tool": tool, "load_at_start": os.getloadavg()[0], "python": sys.version.split()[0]}
    train_step, out["matrix"], out["step_ms"] = calibrate()
    # Full speed: µs per value, close time, bytes per value.
    log_step, close, written, kept = _open(tool, folder, "full")
    calls, call_s = values // VALUES_PER_STEP, []
    perf = time.perf_counter
    for step in range(calls):
        batch = _values(step)
        started = perf()
        log_step(step, batch)
        call_s.append(perf() - started)
    started = perf()
    close()
    out["close_s"] = perf() - started
    out["drain_after_close_s"] = _drain()
    out["us_per_value"] = statistics.median(call_s[calls // 10 :]) * 1e6 / VALUES_PER_STEP
    out["values_logged"] = calls * VALUES_PER_STEP
    out["values_kept"] = kept()
    out["disk_bytes"], out["apparent_bytes"] = _disk_bytes(written)
    # The loop: pairs of plain and logging runs; background CPU over each logging run.
    log_step, close, _, _ = _open(tool, folder, "loop")
    _loop(train_step, log_step, 0, 20)
    _drain()
    ratios, plain_ms, background, descendants, drains = [], [], [], [], []
    first = steps
    for pair in range(pairs):
        plain_now = plain_first == (pair % 2 == 0)
        base = _loop(train_step, _nothing, first, steps) if plain_now else 0.0
        before = _background_cpu_s()
        took = _loop(train_step, log_step, first, steps)
        drains.append(_drain())
        after = _background_cpu_s()
        if not plain_now:
            base = _loop(train_step, _nothing, first, steps)
        first += steps
        ratios.append(took / base)
        plain_ms.append(base / steps * 1000)
        background.append((after[0] - before[0]) / steps * 1000)
        descendants.append((after[1] - before[1]) / steps * 1000)
    close()
    out.update(ratios=ratios, plain_ms=plain_ms, background_ms=background, descendants_ms=descendants, drain_s=drains)
    if tool == "ours":  # the checkout's package, which the installed distribution's metadata may not describe
        import otel_recursive_metrics as ours

        out["imported_from"], out["version"] = str(Path(ours.__file__).parent), ours.__version__
    out["versions"] = {
        "numpy": version("numpy"),
        PACKAGES.get(tool, "otel-recursive-metrics"): out.get("version") or version(PACKAGES[tool]),
    }
    return out


# -- parent side: environments, rounds, the table ----------------------------------------------


def peer_python(tool: str) -> tuple[str | None, str]:
    """The interpreter of ``tool``'s virtualenv, made and filled on first use; (None, why not) if pip fails."""
    venv = VENVS / f"bench-peers-{tool}-venv"
    python = venv / "bin" / "python"
    module = PACKAGES[tool]
    if python.exists() and subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, check=False).returncode == 0:
        return str(python), ""
    say(f"installing {module} into {venv} (first use)")
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return None, f"not installed: venv failed: {made.stderr.strip()[-300:]}"
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", module]
    done = subprocess.run([*pip, f"numpy=={version('numpy')}"], capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:  # the pin may conflict with the peer's own requirement: take pip's choice
        done = subprocess.run([*pip, "numpy"], capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:
        return None, "not installed: pip install failed: " + " ".join(done.stderr.strip().splitlines()[-2:])[-300:]
    return str(python), ""


def _run_child(tool: str, python: str, workdir: Path, args: argparse.Namespace, plain_first: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=workdir))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "TRACKIO_", "PYTHONPATH"))}
    env |= {"WANDB_MODE": "offline", "WANDB_DIR": str(folder), "TRACKIO_DIR": str(folder / "trackio"), "HF_HUB_OFFLINE": "1"}
    env |= {f"WANDB_{what}_DIR": str(folder / f"wandb-{what.lower()}") for what in ("CONFIG", "CACHE", "DATA")}
    result = folder / "result.json"
    command = [python, str(Path(__file__).resolve()), "--child", tool, "--folder", str(folder), "--result", str(result)]
    command += ["--values", str(args.values), "--pairs", str(args.pairs), "--steps", str(args.steps)]
    command += ["--plain-first"] if plain_first else []
    with (folder / "child.log").open("w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.child_timeout_s, check=False)
    if done.returncode != 0 or not result.exists():
        raise RuntimeError(f"the {tool} child failed (rc={done.returncode}):\n" + (folder / "child.log").read_text()[-3000:])
    return dict(json.loads(result.read_text()))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every round of every tool; returns the children's results, what was left out and the document."""
    load_start = os.getloadavg()
    pythons: dict[str, str] = {"ours": sys.executable}
    missing: dict[str, str] = {}
    for tool in PACKAGES:
        python, why = (None, "not measured (--no-peers)") if args.no_peers else peer_python(tool)
        if python is None:
            missing[tool] = why
            say(f"{tool}: {why}")
        else:
            pythons[tool] = python
    results: dict[str, list[dict[str, Any]]] = {tool: [] for tool in pythons}
    order = list(pythons)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as workdir:
        for round_ in range(args.repeats):
            for i, tool in enumerate(order[round_ % len(order) :] + order[: round_ % len(order)]):
                if tool in missing:
                    continue
                say(f"round {round_ + 1}/{args.repeats}: {tool}")
                try:
                    results[tool].append(_run_child(tool, pythons[tool], Path(workdir), args, plain_first=(round_ + i) % 2 == 0))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    if tool == "ours":
                        raise
                    missing[tool] = f"failed in round {round_ + 1}: {' '.join(str(exc).split())[-300:]}"
                    say(f"{tool}: {exc}")
                    del results[tool]
    document = markdown(results, missing, args, (load_start[0], os.getloadavg()[0]))
    return {"results": results, "missing": missing, "markdown": document}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and ranges) over rounds, the loop's pairs and runs pooled; ``notes``: what the table's notes print."""

    def over_rounds(key: Callable[[dict[str, Any]], float]) -> tuple[float, float, float]:
        figures = [key(r) for r in runs]
        return statistics.median(figures), min(figures), max(figures)

    def pooled(key: str) -> list[float]:
        return [x for r in runs for x in r[key]]

    ratios, plain = pooled("ratios"), pooled("plain_ms")
    low, high = median_interval(ratios)
    quartiles = statistics.quantiles(plain, n=4) if len(plain) >= 4 else [0.0, 0.0, 0.0]
    found, r0 = [r["values_kept"] for r in runs], runs[0]
    notes = {
        "load average at each child's start": ", ".join(f"{r['load_at_start']:.2f}" for r in runs),
        "pairs of loop runs": str(len(ratios)),
        "step (alone)": f"{r0['matrix']}² float64 matmul, {statistics.median(r['step_ms'] for r in runs):.2f} ms",
        "the plain loop's spread (interquartile range ÷ median; differences inside it are noise)": (
            f"{(quartiles[2] - quartiles[0]) / statistics.median(plain):.1%}" if len(plain) >= 4 else "—"
        ),
        "values logged → found after close (fewest)": f"{r0['values_logged']:,} → "
        + ("not checked (no reader for its binary log)" if None in found else f"{min(found):,}"),
        "apparent bytes per value (du counts blocks)": f"{statistics.median(r['apparent_bytes'] for r in runs) / r0['values_logged']:.1f}",
        "wait for quiet after a logging run (median)": f"{statistics.median(pooled('drain_s')):.2f} s",
    }
    return {
        "us_per_value": over_rounds(lambda r: r["us_per_value"]),
        "slowdown": (statistics.median(ratios) - 1, low - 1, high - 1),
        "background_ms": statistics.median(pooled("background_ms")),
        "descendants_ms": statistics.median(pooled("descendants_ms")),
        "bytes_per_value": over_rounds(lambda r: r["disk_bytes"] / r["values_logged"]),
        "close_s": over_rounds(lambda r: r["close_s"]),
        "notes": notes,
    }


def _cell(figure: tuple[float, float, float], fmt: str) -> str:
    median, low, high = (f"{x:{fmt}}" for x in figure)
    return median + ("" if low == high else f" ({low}–{high})")


# The table's rows: title, a tool's cell, the figure that ratios divide.
ROWS: list[tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], float]]] = [
    ("µs per logged value, 20 values a call", lambda s: _cell(s["us_per_value"], ".3g"), lambda s: s["us_per_value"][0]),
    (
        "loop slowdown, 20 values a ~2 ms step (95% interval)",
        lambda s: f"{s['slowdown'][0]:+.1%} ({s['slowdown'][1]:+.1%} to {s['slowdown'][2]:+.1%})",
        lambda s: s["slowdown"][0],
    ),
    (
        "background CPU per 20-value step, ms",
        lambda s: f"{s['background_ms']:.3f}" + (f", of which child processes {s['descendants_ms']:.3f}" if s["descendants_ms"] else ""),
        lambda s: s["background_ms"],
    ),
    ("bytes on disk per value, after close", lambda s: _cell(s["bytes_per_value"], ".1f"), lambda s: s["bytes_per_value"][0]),
    ("close after {values:,} values logged at full speed, s", lambda s: _cell(s["close_s"], ".3f"), lambda s: s["close_s"][0]),
]


def markdown(results: dict[str, list[dict[str, Any]]], missing: dict[str, str], args: argparse.Namespace, loads: Sequence[float]) -> str:
    """The document: one table (a column per tool, then ours ÷ each peer), its notes and versions."""
    summary = {tool: _summary(runs) for tool, runs in results.items() if runs}
    peers = [tool for tool in TOOLS if tool != "ours"]
    header = ["figure", *TOOLS.values(), *(f"ours ÷ {TOOLS[tool]}" for tool in peers)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for title, cell, figure in ROWS:
        cells = [title.format(values=args.values)]
        cells += [cell(summary[tool]) if tool in summary else missing.get(tool, "—").split(":")[0] for tool in TOOLS]
        for tool in peers:
            both = "ours" in summary and tool in summary
            ratio = figure(summary["ours"]) / figure(summary[tool]) if both and figure(summary[tool]) > 0 else -1.0
            cells.append(f"{ratio:.3g} ×" if ratio > 0 else "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {TOOLS[tool]}: {' '.join(why.split()).replace('|', '/')}." for tool, why in missing.items() if ":" in why]
    notes += [
        f"- {key}: " + "; ".join(f"{TOOLS[tool]} {s['notes'][key]}" for tool, s in summary.items()) + "."
        for key in next(iter(summary.values()))["notes"]
    ]
    versions = {"Python": sys.version.split()[0], "our commit": commit()}
    for tool, runs in results.items():
        for name, value in runs[0]["versions"].items():
            versions[f"numpy ({TOOLS[tool]})" if name == "numpy" else name] = value
        if tool != "ours":
            versions[f"Python ({TOOLS[tool]})"] = runs[0]["python"]
    paragraphs = [
        f"# W&B and Trackio beside otel-recursive-metrics ({time.strftime('%Y-%m-%d')}, `bench_peers.py`)",
        f"Machine: {machine()}. Load average (1 min): {loads[0]:.2f} at the start, {loads[1]:.2f} at the end.",
        f"Command: `{' '.join(['python benchmarks/bench_peers.py', *sys.argv[1:]])}`. Ours: `TrainingMetrics(dir=..., sinks='store')`, "
        f"one `log(values, step=)` a call, imported from `{results.get('ours', [{}])[0].get('imported_from', '?')}`.",
        "\n".join(lines),
        f"{args.repeats} round(s), a child process per tool each, the order rotating; {args.values:,} values at full speed; "
        f"{args.pairs} pairs of {args.steps}-step loop runs per child. Figures: medians over rounds (range); the slowdown's "
        "interval is its median's 95% interval from the pooled pairs' order statistics. Ratios: ours ÷ the peer, of the medians.",
        "\n".join(notes),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
    ]
    return "\n\n".join(paragraphs) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run (writes no results file unless --out)")
    parser.add_argument("--no-peers", action="store_true", help="measure ours only; install nothing")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, a child process per tool each (default 5)")
    parser.add_argument("--pairs", type=int, default=11, help="plain/logging loop pairs per child (default 11)")
    parser.add_argument("--steps", type=int, default=500, help="steps a loop run (default 500, about 1 s)")
    parser.add_argument("--values", type=int, default=100_000, help="values logged at full speed before the close (default 100,000)")
    parser.add_argument("--child-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, help="write the document here (default: results/<date>-<commit>-peers.md)")
    parser.add_argument("--child", choices=list(TOOLS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plain-first", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pin_blas()
    if args.child:
        out = child(args.child, args.folder, values=args.values, pairs=args.pairs, steps=args.steps, plain_first=args.plain_first)
        args.result.write_text(json.dumps(out))
        return 0
    if args.quick:
        args.repeats, args.pairs, args.steps, args.values = 1, 2, 30, 2_000
    result = run(args)
    print(result["markdown"], end="")
    out_path = args.out or (None if args.quick else results_path("peers"))
    if out_path is not None:
        out_path.write_text(result["markdown"])
        say(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
