"""``otel-recursive-metrics sync --dir DIR``: deliver everything still pending in a data folder.

What waits there:

- the batches an offline run (``OTEL_RECURSIVE_METRICS_OFFLINE=true``) keeps for its network
  sinks, also while that run is still writing (like ``wandb sync``): sync sends what is there
  when it starts and moves the run's cursor for those sinks; the run goes on and a later sync
  sends the rest;
- the queue slots of runs that ended before delivering everything (an endpoint down at exit,
  a ``kill -9``, a SIGTERM): every sink's share, store and OTLP alike.

A slot a live process delivers itself is left to that process. The sinks are built from the
usual settings (``OTEL_RECURSIVE_METRICS_*``, ``OTEL_EXPORTER_OTLP_[METRICS_]*``) and the options
below, which win. Each batch is retried with backoff for up to ``--retry-s`` seconds; a batch
the receiver refuses for good goes to the dead-letter queue, as in a run, split to keep the
points it accepts.

One sync at a time per data folder: a sync holds ``<dir>/sync.lock`` (an ``flock``, with its pid
in the file) while it runs. A second one says which process holds it and exits with code 3, or
with ``--wait SECONDS`` waits that long for it first. Nothing in the queue folder that is not a
regular file is opened (a FIFO would block): in a slot no process holds, it is moved aside as a
run would, and said. The queue package opens, locks and deletes the slots
(:func:`~otel_recursive_metrics.queue.pending.open_folder_slots`); sync only delivers.

Progress goes to stderr (a bar on a terminal). Exit codes: 0 when nothing is left pending
(also when there was nothing to do), 1 when something could not be delivered (the last error is
printed; what is left stays on disk for the next sync), 2 bad usage, 3 another sync holds the
folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .._files import LockHeld, NotARegularFile, hold_lock
from ..config import OTLP_PROTOCOLS, Config, load_config, setting_default
from ..errors import ConfigError
from ..pipeline.delivery import SinkDelivery
from ..pipeline.ingest import RecentBatches
from ..pipeline.telemetry import Stats
from ..queue.dead_letter import DeadLetterQueue
from ..queue.pending import PendingSlot, open_folder_slots
from ..sinks.base import Sink, build_sinks
from ._lock import add_wait_arg, busy_error, check_wait
from ._output import CommandError, Progress

__all__ = ["register", "sync_folder", "sync_lock_path"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="deliver what a data folder still holds (offline runs, runs that ended before delivering)",
        description="Deliver every batch still pending in <dir>/queue to its sinks; safe while a run is writing there.",
    )
    parser.add_argument("--dir", help="data folder (default: $OTEL_RECURSIVE_METRICS_DIR or ./otel-metrics)")
    parser.add_argument("--endpoint", help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT or localhost)")
    parser.add_argument(
        "--protocol", choices=OTLP_PROTOCOLS, help=f"OTLP protocol (default: the usual variables, else {setting_default('otlp_protocol')})"
    )
    parser.add_argument(
        "--store", help="SQLite store file for the store sink's share (default: $OTEL_RECURSIVE_METRICS_STORE, else <dir>/metrics.db)"
    )
    parser.add_argument("--retry-s", type=float, default=60.0, help="how long to keep retrying one batch (default 60)")
    add_wait_arg(parser, "another sync")
    parser.set_defaults(handler=cmd_sync)


@dataclasses.dataclass
class SyncResult:
    """What a sync did: points delivered and dead-lettered per sink, what is left, and why."""

    delivered: dict[str, int] = dataclasses.field(default_factory=dict)
    dead_lettered: dict[str, int] = dataclasses.field(default_factory=dict)
    left: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    #: What was found and dealt with (junk moved aside), said but not a failure.
    notes: list[str] = dataclasses.field(default_factory=list)
    slots: int = 0

    @property
    def complete(self) -> bool:
        return not any(self.left.values()) and not self.errors


def sync_lock_path(config: Config) -> Path:
    """The file ``sync`` holds locked while it runs: one sync at a time per data folder."""
    return config.dir / "sync.lock"


def sync_folder(
    config: Config,
    *,
    retry_s: float = 60.0,
    sink_factory: Callable[[Config], list[Sink]] = build_sinks,
    stream: TextIO | None = None,
    wait_s: float = 0.0,
) -> SyncResult:
    """Deliver what ``config.queue_dir`` holds (see the module docstring); never raises for a sink's failure.

    One sync at a time per data folder: raises :class:`~otel_recursive_metrics._files.LockHeld`
    when another one still runs after ``wait_s`` seconds.
    """
    stream = stream or sys.stderr
    result = SyncResult()
    if not config.queue_dir.is_dir():
        return result
    lock_fd = hold_lock(sync_lock_path(config), wait_s=wait_s)
    try:
        return _sync(config, result, retry_s=retry_s, sink_factory=sink_factory, stream=stream)
    finally:
        os.close(lock_fd)


def _sync(
    config: Config, result: SyncResult, *, retry_s: float, sink_factory: Callable[[Config], list[Sink]], stream: TextIO
) -> SyncResult:
    with open_folder_slots(config.queue_dir, on_note=result.notes.append, on_error=result.errors.append) as slots:
        total = sum(pending.slot.pending(s)[1] for pending in slots for s in pending.sinks)
        progress = Progress("sync", total, stream=stream)
        names = sorted({s for pending in slots for s in pending.sinks})
        sinks_by_name: dict[str, Sink] = {}
        if names:
            try:
                built = sink_factory(dataclasses.replace(config, sinks=tuple(names), offline=False))
            except Exception as exc:  # noqa: BLE001 - reported, nothing is lost: the slots stay
                result.errors.append(f"cannot build the sinks: {type(exc).__name__}: {exc}")
                built = []
            sinks_by_name = {s.name: s for s in built}
        stats = Stats()
        dead_letters = DeadLetterQueue(config.dead_letter_dir, max_bytes=config.dead_letter_max_bytes)
        sync_config = dataclasses.replace(config, retry_max_elapsed_s=max(retry_s, 1e-9), flush_interval_s=1.0)
        try:
            for pending in slots:
                result.slots += 1
                for name in pending.sinks:
                    _deliver(pending, sinks_by_name.get(name), name, sync_config, stats, dead_letters, progress, result)
                pending.release()  # frees its lock now; deletes its files if it is drained
        finally:
            progress.finish()
            for sink in sinks_by_name.values():
                try:
                    sink.close()
                except Exception:  # noqa: BLE001 - closing must not hide the summary
                    pass
    snap = stats.snapshot()
    result.delivered = dict(snap["sent_points"])
    result.dead_lettered = dict(snap["dead_lettered_points"])
    return result


def _deliver(
    pending: PendingSlot,
    sink: Sink | None,
    name: str,
    config: Config,
    stats: Stats,
    dead_letters: DeadLetterQueue,
    progress: Progress,
    result: SyncResult,
) -> None:
    """Deliver sink ``name``'s share of one slot (up to the last record it held when opened)."""
    slot = pending.slot
    before = slot.pending(name)[1]
    if sink is None:
        result.left[name] = result.left.get(name, 0) + before
        return
    if not before:
        return
    delivery = SinkDelivery(
        sink,
        config=config,
        queue=slot,
        stats=stats,
        dead_letters=dead_letters,
        recent=RecentBatches(),
        report=lambda *a, **k: None,
        stop=threading.Event(),
        wake=threading.Event(),
        on_progress=lambda: None,
        dead_letter_when_budget_spent=False,
    )
    delivery.run(until_id=pending.until_id)
    left = pending.pending_points(name)
    progress.advance(before - left, f"{slot.path.name} -> {name}")
    if left:
        result.left[name] = result.left.get(name, 0) + left
        error = stats.snapshot()["last_error"].get(name, "not delivered")
        result.errors.append(f"{name}: {left} point(s) of {slot.path.name} not delivered: {error}")


def _config(args: argparse.Namespace) -> Config:
    options: dict[str, Any] = {}
    if args.dir:
        options["dir"] = args.dir
    if args.endpoint:
        options["otlp_endpoint"] = args.endpoint
    if args.protocol:
        options["otlp_protocol"] = args.protocol
    if args.store:
        options["store_path"] = args.store
    try:
        return load_config(**options)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def cmd_sync(args: argparse.Namespace) -> int:
    if args.retry_s < 0:
        raise CommandError("--retry-s must be >= 0")
    check_wait(args.wait)
    config = _config(args)
    started = time.monotonic()
    try:
        result = sync_folder(config, retry_s=args.retry_s, wait_s=args.wait)
    except (LockHeld, NotARegularFile) as exc:
        raise busy_error(exc, running="another sync", folder=config.dir, wait_s=args.wait) from None
    took = time.monotonic() - started
    for note in result.notes:
        print(f"otel-recursive-metrics: {note}", file=sys.stderr)
    sent = ", ".join(f"{n} to {s}" for s, n in sorted(result.delivered.items())) or "nothing"
    dead = sum(result.dead_lettered.values())
    line = f"otel-recursive-metrics: sync of {config.queue_dir}: delivered {sent} in {took:.1f} s"
    if dead:
        line += f"; {dead} point(s) refused for good, moved to {config.dead_letter_dir}"
    print(line, file=sys.stderr)
    if result.complete:
        return 0
    for error in result.errors:
        print(f"otel-recursive-metrics: {error}", file=sys.stderr)
    left = sum(result.left.values())
    if left:
        print(f"otel-recursive-metrics: {left} point(s) are still pending in {config.queue_dir}; run sync again", file=sys.stderr)
    return 1
