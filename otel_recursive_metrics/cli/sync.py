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
run would, and said.

Progress goes to stderr (a bar on a terminal). Exit codes: 0 when nothing is left pending
(also when there was nothing to do), 1 when something could not be delivered (the last error is
printed; what is left stays on disk for the next sync), 2 bad usage, 3 another sync holds the
folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .._files import LockHeld, NotARegularFile, hold_lock
from ..config import Config, load_config
from ..errors import ConfigError
from ..pipeline.delivery import SinkDelivery
from ..pipeline.ingest import RecentBatches
from ..pipeline.telemetry import Stats
from ..queue.dead_letter import DeadLetterQueue
from ..queue.folder import clear_slot_junk, lock_slot, slot_junk
from ..queue.slot import QueueSlot
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
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), help="OTLP protocol (default: the usual variables, else grpc)")
    parser.add_argument("--store", help="SQLite store file for the store sink's share (default: <dir>/metrics.db)")
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


def _slots(queue_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for lock in sorted(queue_dir.glob("slot-*.lock")):
        try:
            number = int(lock.stem.split("-", 1)[1])
        except ValueError:
            continue
        db = lock.with_suffix(".db")
        if os.path.lexists(db):
            out.append((number, db))
    return out


def _open_slot(db: Path, *, live: bool) -> tuple[QueueSlot, tuple[str, ...]]:
    """A slot, and the sinks sync may deliver from it (a live one: only its offline sinks)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    try:
        sinks = tuple(s for (s,) in conn.execute("SELECT sink FROM cursors"))
        offline = tuple(s for s in dict(conn.execute("SELECT key, value FROM meta").fetchall()).get("offline_sinks", "").split(",") if s)
    finally:
        conn.close()
    ours = offline if live else sinks
    # Opened as the owner of ``ours`` cursors; the others (the live run's own) stay its business.
    slot = QueueSlot(db, ours, max_bytes=2**62, fsync=True, offline_sinks=tuple(s for s in sinks if s not in ours), claim=False)
    return slot, ours


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


def _plan(queue_dir: Path, result: SyncResult) -> list[tuple[QueueSlot, tuple[str, ...], int | None, int]]:
    """Open every slot there is something to deliver from: ``(slot, sinks, our lock or None, last id)``.

    Nothing that is not a regular file is ever opened (a FIFO would block): in a slot no process
    holds, it is moved aside, as a run would; in a live one, it is left to its process.
    """

    def moved(to: Path, error: NotARegularFile) -> None:
        result.notes.append(f"{error}; moved aside to {to}")

    plans: list[tuple[QueueSlot, tuple[str, ...], int | None, int]] = []
    for number, db in _slots(queue_dir):
        fd: int | None = None
        try:
            fd = lock_slot(queue_dir, number, on_junk=moved)
            live = fd is None
            if live:
                junk = slot_junk(db)
                if junk:
                    result.notes.append(f"{junk[0]}; left to the process that holds {db.name}")
                    continue
            else:
                clear_slot_junk(db, on_junk=moved)
        except NotARegularFile as exc:
            result.errors.append(f"slot {number} cannot be used: {exc}")
            if fd is not None:
                os.close(fd)
            continue
        if not db.exists():
            if fd is not None:
                os.close(fd)
            continue
        try:
            slot, sinks = _open_slot(db, live=live)
        except sqlite3.DatabaseError as exc:
            result.errors.append(f"{db}: cannot read it ({exc}); it is left as it is")
            if fd is not None:
                os.close(fd)
            continue
        if not sinks:
            slot.close()
            if fd is not None:
                os.close(fd)
            continue
        plans.append((slot, sinks, fd, slot.last_id()))
    return plans


def _sync(
    config: Config, result: SyncResult, *, retry_s: float, sink_factory: Callable[[Config], list[Sink]], stream: TextIO
) -> SyncResult:
    queue_dir = config.queue_dir
    plans = _plan(queue_dir, result)
    total = sum(slot.pending(s)[1] for slot, sinks, _, _ in plans for s in sinks)
    progress = Progress("sync", total, stream=stream)
    names = sorted({s for _, sinks, _, _ in plans for s in sinks})
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
    stop = threading.Event()
    try:
        for slot, sinks, lock_fd, until_id in plans:
            result.slots += 1
            for name in sinks:
                sink = sinks_by_name.get(name)
                before = slot.pending(name)[1]
                if sink is None:
                    result.left[name] = result.left.get(name, 0) + before
                    continue
                if not before:
                    continue
                delivery = SinkDelivery(
                    sink,
                    config=sync_config,
                    queue=slot,
                    stats=stats,
                    dead_letters=dead_letters,
                    recent=RecentBatches(),
                    report=lambda *a, **k: None,
                    stop=stop,
                    wake=threading.Event(),
                    on_progress=lambda: None,
                    dead_letter_when_budget_spent=False,
                )
                delivery.run(until_id=until_id)
                left = _left(slot, name, until_id)
                progress.advance(before - left, f"{slot.path.name} -> {name}")
                if left:
                    result.left[name] = result.left.get(name, 0) + left
                    error = stats.snapshot()["last_error"].get(name, "not delivered")
                    result.errors.append(f"{name}: {left} point(s) of {slot.path.name} not delivered: {error}")
            empty = slot.pending()[1] == 0
            slot.sync()
            slot.close()
            if lock_fd is not None:
                if empty:
                    for suffix in ("", "-wal", "-shm"):
                        try:
                            os.unlink(str(slot.path) + suffix)
                        except FileNotFoundError:
                            pass
                os.close(lock_fd)
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


def _left(slot: QueueSlot, sink: str, until_id: int | None) -> int:
    """Points up to ``until_id`` that ``sink`` has not finished."""
    done = slot.cursor(sink)
    return sum(r.points for r in slot.records_after(done, until_id=until_id))


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
