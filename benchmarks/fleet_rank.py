"""One simulated training rank of the fleet harness: ``--values`` values every ``--step-ms`` with TrainingMetrics.

``benchmarks/fleet.py`` starts one of these per rank, with the environment torchrun gives a
worker (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``,
``TORCHELASTIC_RUN_ID``, ``TORCHELASTIC_RESTART_COUNT``) and the exporter's own settings
(``OTEL_RECURSIVE_METRICS_SINKS=otlp``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``_PROTOCOL`` of its
node's agent, ``OTEL_RECURSIVE_METRICS_RUN_ID``). Nothing here knows about the Collector: the
rank is configured exactly as a user's trainer would be.

What is logged makes PromQL able to check it: at step ``s`` every metric ``fleet.v00`` ...
``fleet.vNN`` has the value ``s``. So per series ``count_over_time`` is the number of steps that
arrived, ``max_over_time`` the last step, and ``sum_over_time`` must be ``0 + 1 + ... + last``:
a lost, repeated or altered sample changes at least one of the three.

Prometheus keeps one sample per series per millisecond (the first it is sent), so every step is
logged in a millisecond of its own: a rank that falls behind its schedule (two busy cores, 40
processes) catches up without ever logging two steps in the same millisecond.

The hand-shake with the harness, each wait with a deadline:

1. import everything and build the pipeline, then write ``<result>.ready``;
2. wait for ``<result>.go``, which holds the wall-clock start time (seconds since the epoch);
3. log from then for ``--seconds``, step ``i`` at ``start + i * step``;
4. ``close`` (flush to the agent, bounded by ``--close-timeout-s``) and write ``<result>``: one
   JSON object with the exporter's ``get_stats()`` (what it was handed, sent, dropped, ...).

Exit status 0 when everything was delivered to the agent before the close deadline, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

GO_WAIT_S = 300.0  # longest wait for the harness's go file (all ranks importing on two cores)


def wait_for_go(go_file: Path, deadline_s: float) -> float:
    """The start time written in ``go_file`` once it exists; TimeoutError after ``deadline_s``."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        try:
            text = go_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return float(text)
        time.sleep(0.02)
    raise TimeoutError(f"no go file {go_file} within {deadline_s:g} s")


def sleep_until(wall_time_s: float) -> None:
    delay_s = wall_time_s - time.time()
    if delay_s > 0:
        time.sleep(delay_s)


def next_free_millisecond(last_ms: int) -> None:
    """Sleep until the wall clock is past millisecond ``last_ms``."""
    while time.time_ns() // 1_000_000 <= last_ms:
        time.sleep(0.0005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, required=True, help="JSON result file (also the stem of .ready and .go)")
    parser.add_argument("--values", type=int, default=20, help="values per step (metrics fleet.v00 ...)")
    parser.add_argument("--step-ms", type=float, default=50.0, help="time between steps")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to log")
    parser.add_argument("--close-timeout-s", type=float, default=120.0, help="deadline of the final flush to the agent")
    args = parser.parse_args(argv)

    from otel_recursive_metrics import TrainingMetrics

    metrics = TrainingMetrics(prefix="fleet.")
    names = [f"v{k:02d}" for k in range(args.values)]
    ready = args.result.with_name(args.result.name + ".ready")
    ready.write_text(str(os.getpid()))

    start_s = wait_for_go(args.result.with_name(args.result.name + ".go"), GO_WAIT_S)
    step_s = args.step_ms / 1000.0
    end_s = start_s + args.seconds
    steps = 0
    late_steps = 0  # steps logged after their scheduled time plus one step (the machine was busy)
    last_ms = 0
    first_log_s = last_log_s = 0.0
    while True:
        scheduled_s = start_s + steps * step_s
        if scheduled_s >= end_s:
            break
        sleep_until(scheduled_s)
        next_free_millisecond(last_ms)
        now_s = time.time()
        if now_s > scheduled_s + step_s:
            late_steps += 1
        value = float(steps)
        metrics.log(dict.fromkeys(names, value), step=steps)
        # The call took its timestamp somewhere before it returned, possibly in a later millisecond
        # than the one waited for above: the next step waits for a millisecond after this one.
        last_ms = time.time_ns() // 1_000_000
        if steps == 0:
            first_log_s = now_s
        last_log_s = now_s
        steps += 1

    close_started = time.monotonic()
    delivered = metrics.close(timeout_s=args.close_timeout_s)
    close_s = time.monotonic() - close_started
    stats: dict[str, Any] = metrics.get_stats()
    result = {
        "pid": os.getpid(),
        "rank": int(os.environ.get("RANK", "0")),
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "node": int(os.environ.get("GROUP_RANK", "0")),
        "protocol": os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        "values": args.values,
        "steps": steps,
        "late_steps": late_steps,
        "first_log_s": first_log_s,
        "last_log_s": last_log_s,
        "close_s": close_s,
        "delivered": delivered,
        "stats": stats,
    }
    temporary = args.result.with_name(args.result.name + ".tmp")
    temporary.write_text(json.dumps(result, default=str))
    temporary.replace(args.result)
    return 0 if delivered else 3


if __name__ == "__main__":
    sys.exit(main())
