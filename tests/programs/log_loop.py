"""A training loop for the fault tests: logs steps with TrainingMetrics until killed or done.

    python tests/programs/log_loop.py --dir D [--rate-hz 2] [--values 1] [--steps N]
        [--flush-interval-s 5] [--sinks store] [--report FILE] [--handler exit3|none] ...

Step ``s`` logs ``values`` metrics ``m0..`` with value ``s``. Every ``--report-every-s`` (and
at the end) it appends ``{"steps": steps logged, "values": values logged, "time_unix_nano",
"max_rss_kib", "stats": get_stats()}`` as one line to ``--report``, so a test that kills it knows
what was logged, and what was counted as dropped, at each moment up to the kill. ``--rate-hz 0`` logs as fast
as it can (the overload test). Prints ``READY`` once the first step is logged. ``--clock-jump-s``
steps the wall clock the package sees (``time.time_ns``, ``time.time``) that long after the first
step, as NTP or a resumed VM would; the reports keep the real clock.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--values", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10**12)
    parser.add_argument("--flush-interval-s", type=float, default=5.0)
    parser.add_argument("--sinks", default="store")
    parser.add_argument("--report")
    parser.add_argument("--report-every-s", type=float, default=0.1)
    parser.add_argument("--handler", choices=("none", "exit3", "ignore"), default="none")
    parser.add_argument("--no-sigterm-handling", action="store_true")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="more TrainingMetrics settings")
    parser.add_argument("--clock-jump-s", type=float, default=0.0, help="step the wall clock by this much (NTP, a VM resumed)")
    parser.add_argument("--clock-jump-after-s", type=float, default=0.5, help="... this long after the first step")
    args = parser.parse_args()

    # The wall clock as the package sees it: time.time_ns and time.time, replaced before the package
    # is imported (so names it binds at import see the jump too); the reports keep the real clock.
    real_time_ns = time.time_ns
    offset_ns = [0]
    if args.clock_jump_s:
        time.time_ns = lambda: real_time_ns() + offset_ns[0]
        time.time = lambda: (real_time_ns() + offset_ns[0]) / 1e9

    if args.handler == "exit3":

        def on_term(signum: int, frame: Any) -> None:
            print("PROGRAM HANDLER", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, on_term)
    elif args.handler == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    from otel_recursive_metrics import TrainingMetrics

    options: dict[str, Any] = dict(item.split("=", 1) for item in args.option)
    metrics = TrainingMetrics(
        prefix="",
        dir=args.dir,
        sinks=args.sinks,
        flush_interval_s=args.flush_interval_s,
        handle_sigterm=not args.no_sigterm_handling,
        **options,
    )
    state = {"steps": 0}

    def peak_rss_kib() -> int:
        """This program's peak resident memory. Linux's ``ru_maxrss`` keeps, across ``exec``, the
        peak of the process that started us (a test suite that imported PyTorch: a gigabyte);
        ``VmHWM`` is this address space's own."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    report = Path(args.report) if args.report else None
    stop = threading.Event()

    def write_report() -> None:
        assert report is not None
        data = {
            "steps": state["steps"],
            "values": state["steps"] * args.values,
            "time_unix_nano": real_time_ns(),
            "max_rss_kib": peak_rss_kib(),
            "stats": metrics.get_stats(),
        }
        with report.open("a") as f:
            f.write(json.dumps(data) + "\n")

    def reporter() -> None:
        while not stop.wait(args.report_every_s):
            write_report()

    if report is not None:
        threading.Thread(target=reporter, daemon=True).start()
    names = [f"m{k}" for k in range(args.values)]
    period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
    started = time.monotonic()
    jump_at = None
    for step in range(args.steps):
        if args.clock_jump_s and jump_at is not None and not offset_ns[0] and time.monotonic() >= jump_at:
            offset_ns[0] = int(args.clock_jump_s * 1e9)
            print(f"CLOCK JUMPED {args.clock_jump_s:+g} s", file=sys.stderr, flush=True)
        value = float(step)
        metrics.log(dict.fromkeys(names, value), step=step)
        state["steps"] = step + 1
        if step == 0:
            print("READY", flush=True)
            jump_at = time.monotonic() + args.clock_jump_after_s
        if period:
            delay = started + (step + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    stop.set()
    if report is not None:
        write_report()
    print("DONE", flush=True)
    metrics.close(30.0)
    if report is not None:
        write_report()  # after close: what the shutdown counted too


if __name__ == "__main__":
    main()
