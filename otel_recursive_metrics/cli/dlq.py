"""``otel-recursive-metrics dlq``: list, show, replay and purge dead-lettered batches.

Dead letters live in ``<dir>/dead-letter/`` (``--dir``, default ``$OTEL_RECURSIVE_METRICS_DIR``
or ``./otel-metrics``), one entry per batch (see :mod:`otel_recursive_metrics.queue.dead_letter`)::

    otel-recursive-metrics dlq list [--format table|json] [--sink NAME]
    otel-recursive-metrics dlq show ID [--raw | --meta]
    otel-recursive-metrics dlq replay [ID ...] --to otlp [--endpoint URL] [--protocol grpc|http/protobuf]
    otel-recursive-metrics dlq replay [ID ...] --to store [--store PATH]
    otel-recursive-metrics dlq purge [ID ...] [--yes]

An ID is an entry's name as ``list`` prints it, or any unique prefix of it.

``replay`` sends the entries oldest first, each one retried with backoff for up to
``--retry-s`` seconds, and removes an entry only once the receiver (or the store) has accepted
all of it; it stops at the first entry that cannot be delivered (``--keep-going`` skips past
entries refused permanently), so running it again resumes where it stopped. To OTLP it sends
the stored OTLP JSON exactly as written; to the store it uses the full-fidelity copy kept with
the entry (steps and epochs included), and the store's de-duplication makes a repeated replay
harmless. The store is the folder's own unless ``--store`` names another: the one a run with
that data folder writes (``$OTEL_RECURSIVE_METRICS_STORE`` if set, else ``<dir>/metrics.db``).
Connection settings not given as options come from the standard
``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables, which is the place for tokens
(``OTEL_EXPORTER_OTLP_HEADERS``): options on a command line are visible to other users.

``purge`` asks for confirmation on a terminal; without one it refuses unless given ``--yes``.

One ``replay`` or ``purge`` at a time per folder (``<dir>/dead-letter.lock``, see :mod:`._lock`):
a second one names the process that holds it and exits, or waits with ``--wait SECONDS``.

Exit codes: 0 success (also when there is nothing to do), 1 entries left undelivered or purge
declined, 2 bad usage or unreadable input, 3 another replay or purge holds the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import COMPRESSIONS, OTLP_PROTOCOLS, load_config, setting_default
from ..errors import ConfigError
from ..model.otlp import request_from_json_line
from ..pipeline.retry import Outcome, Retrier, RetryPolicy
from ..queue.dead_letter import DeadLetterEntry, DeadLetterQueue
from ..sinks.otlp import build_otlp_sink
from ..sinks.store import StoreSink
from ._dead_letters import entries_text, folder_config, lock_folder, one_line, open_dead_letters, select, size_text
from ._lock import add_wait_arg
from ._output import Progress, fail, format_time, render_table, require_subcommand

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``dlq`` command and its subcommands to the CLI's ``subparsers``."""
    dlq = subparsers.add_parser(
        "dlq",
        help="list, show, replay or purge dead-lettered batches",
        description="List, show, replay or purge the batches in <dir>/dead-letter (OTLP JSON Lines).",
    )
    sub = require_subcommand(dlq, dest="dlq_command")

    def common(parser: argparse.ArgumentParser, *, ids: bool) -> None:
        parser.add_argument(
            "--dir", help="data folder; dead letters are in <dir>/dead-letter (default: $OTEL_RECURSIVE_METRICS_DIR or ./otel-metrics)"
        )
        parser.add_argument("--sink", help="only entries dead-lettered by this sink (store, otlp)")
        if ids:
            parser.add_argument("ids", nargs="*", metavar="ID", help="entries (name or unique prefix; default: all)")

    listing = sub.add_parser("list", help="list dead letters: id, time, sink, points, bytes, reason")
    common(listing, ids=False)
    listing.add_argument("--format", choices=("table", "json"), default="table", help="json: one object a line")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="print one dead letter as OTLP JSON")
    common(show, ids=False)
    show.add_argument("id", metavar="ID", help="entry name or unique prefix")
    mode = show.add_mutually_exclusive_group()
    mode.add_argument("--raw", action="store_true", help="the OTLP JSON Lines exactly as stored")
    mode.add_argument("--meta", action="store_true", help="the reason, sink, time and size instead of the points")
    show.set_defaults(handler=cmd_show)

    replay = sub.add_parser("replay", help="send dead letters to an OTLP endpoint or into the store, removing each once delivered")
    common(replay, ids=True)
    replay.add_argument("--to", choices=("otlp", "store"), required=True, help="destination")
    replay.add_argument("--endpoint", help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT or localhost)")
    replay.add_argument(
        "--protocol",
        choices=OTLP_PROTOCOLS,
        help=f"OTLP protocol (default: OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL or {setting_default('otlp_protocol')})",
    )
    replay.add_argument(
        "--header", action="append", default=[], metavar="KEY=VALUE", help="extra header (prefer OTEL_EXPORTER_OTLP_HEADERS for tokens)"
    )
    replay.add_argument("--insecure", action="store_true", default=None, help="gRPC without TLS for an endpoint without a scheme")
    replay.add_argument("--certificate", help="CA bundle to verify the endpoint")
    replay.add_argument("--client-key", help="client private key for mTLS")
    replay.add_argument("--client-certificate", help="client certificate for mTLS")
    replay.add_argument("--compression", choices=COMPRESSIONS, help="request compression")
    timeout_s = setting_default("otlp_timeout_s")
    replay.add_argument("--timeout", type=float, default=timeout_s, help=f"seconds for one attempt (default {timeout_s:g})")
    replay.add_argument("--retry-s", type=float, default=30.0, help="how long to keep retrying one entry (default 30)")
    replay.add_argument("--keep-going", action="store_true", help="skip entries refused permanently instead of stopping")
    add_wait_arg(replay, "a dlq replay or purge")
    replay.add_argument("--store", help="SQLite store file (default: $OTEL_RECURSIVE_METRICS_STORE, else <dir>/metrics.db)")
    replay.set_defaults(handler=cmd_replay)

    purge = sub.add_parser("purge", help="delete dead letters (asks first; --yes to skip)")
    common(purge, ids=True)
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_wait_arg(purge, "a dlq replay or purge")
    purge.set_defaults(handler=cmd_purge)


# -- list and show -----------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    dlq = open_dead_letters(args)
    entries = select(dlq, (), args.sink)
    out = sys.stdout
    if args.format == "json":
        for e in entries:
            record = {
                "id": e.id,
                "time_unix_nano": e.time_unix_nano,
                "time": format_time(e.time_unix_nano),
                "sink": e.sink,
                "points": e.points,
                "bytes": e.bytes,
                "reason": e.reason,
                "damaged": e.damaged,
                "path": str(e.path),
            }
            out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        return 0
    if not entries:
        out.write(f"(no dead letters in {dlq.folder})\n")
        return 0
    rows = [["id", "time (UTC)", "sink", "points", "bytes", "reason"]]
    rows += [[e.id, format_time(e.time_unix_nano), e.sink, str(e.points), str(e.bytes), one_line(e.reason)] for e in entries]
    render_table(rows, out, right=(3, 4), free_last=True)
    out.write(f"{entries_text(len(entries))}, {sum(e.points for e in entries)} point(s), {size_text(sum(e.bytes for e in entries))}\n")
    damaged = [e for e in entries if e.damaged]
    if damaged:
        out.write(
            f"{entries_text(len(damaged))} damaged (sidecar missing or unreadable): still replayable from the OTLP JSON;"
            " into the store without steps, skipping points it already has\n"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    dlq = open_dead_letters(args)
    try:
        (entry,) = select(dlq, [args.id], args.sink)
    except LookupError as exc:
        return fail(str(exc.args[0]))
    out = sys.stdout
    if args.meta:
        meta = {
            "id": entry.id,
            "time": format_time(entry.time_unix_nano),
            "time_unix_nano": entry.time_unix_nano,
            "sink": entry.sink,
            "points": entry.points,
            "bytes": entry.bytes,
            "reason": entry.reason,
            "path": str(entry.path),
        }
        out.write(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return 0
    try:
        lines = entry.json_lines()
    except OSError as exc:
        return fail(f"cannot read {entry.path}: {exc.strerror or exc}")
    for line in lines:
        if args.raw:
            out.write(line + "\n")
            continue
        try:
            out.write(json.dumps(json.loads(line), indent=2, ensure_ascii=False) + "\n")
        except ValueError as exc:
            return fail(f"{entry.path} is not OTLP JSON Lines: {exc}")
    return 0


# -- replay ------------------------------------------------------------------------------------


def _otlp_sink(args: argparse.Namespace) -> Any:
    options: dict[str, Any] = {"sinks": "otlp", "otlp_timeout_s": args.timeout}
    for option, setting in (
        ("endpoint", "otlp_endpoint"),
        ("protocol", "otlp_protocol"),
        ("insecure", "otlp_insecure"),
        ("certificate", "otlp_certificate"),
        ("client_key", "otlp_client_key"),
        ("client_certificate", "otlp_client_certificate"),
        ("compression", "otlp_compression"),
    ):
        value = getattr(args, option)
        if value is not None:
            options[setting] = value
    if args.header:
        headers: dict[str, str] = {}
        for item in args.header:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError([f"--header {key.strip() or '?'}=<redacted>: expected KEY=VALUE"])
            headers[key.strip()] = value
        options["otlp_headers"] = headers
    config = load_config(**options)
    return build_otlp_sink(config)


def _sends(entry: DeadLetterEntry, sink: Any, to: str) -> list[Callable[[float], object]]:
    """One ``send(deadline)`` per request in ``entry``; raises OSError/ValueError if unreadable."""
    if to == "store":
        batch = entry.batch()
        # A damaged entry comes back from its OTLP JSON, without steps: the store then skips the
        # points it already holds at any step, so a replay never duplicates them.
        steps_unknown = not entry.steps_known

        def send_batch(deadline: float) -> object:
            sink.send(batch, deadline, steps_unknown=steps_unknown)
            return None

        return [send_batch]
    sends: list[Callable[[float], object]] = []
    for line in entry.json_lines():
        request = request_from_json_line(line)

        def send_request(deadline: float, request: Any = request) -> object:
            sink.send_request(request, deadline)
            return None

        sends.append(send_request)
    return sends


def cmd_replay(args: argparse.Namespace) -> int:
    dlq = open_dead_letters(args)
    with lock_folder(dlq, args):
        return _replay(dlq, args)


def _replay(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    try:
        entries = select(dlq, args.ids, args.sink)
    except LookupError as exc:
        return fail(str(exc.args[0]))
    if args.timeout <= 0 or args.retry_s < 0:
        return fail("--timeout must be > 0 and --retry-s >= 0")
    if not entries:
        print(f"otel-recursive-metrics: no dead letters to replay in {dlq.folder}", file=sys.stderr)
        return 0

    sink: Any
    if args.to == "store":
        store_file = Path(args.store) if args.store else folder_config(args, store=True).resolved_store_path
        sink = StoreSink(store_file)
        destination = f"store {store_file}"
    else:
        try:
            sink = _otlp_sink(args)
        except ConfigError as exc:
            return fail(str(exc))
        destination = f"OTLP {sink.protocol} {sink.display_endpoint}"

    stop = threading.Event()
    # Retrier reads a budget of 0 as "forever"; here --retry-s 0 means "one attempt".
    policy = RetryPolicy(initial_delay_s=0.5, multiplier=1.5, jitter=0.2, max_delay_s=5.0, max_elapsed_s=args.retry_s or 1e-9)
    retrier = Retrier(
        policy,
        attempt_timeout_s=args.timeout,
        sleep=stop.wait,
    )
    progress = Progress(f"replay to {destination}", sum(e.points for e in entries), total_entries=len(entries))
    delivered = failed = 0
    try:
        for entry in entries:
            try:
                sends = _sends(entry, sink, args.to)
            except (OSError, ValueError) as exc:
                # An unreadable entry is refused for good, like a permanent error.
                result_reason = f"cannot read the entry: {type(exc).__name__}: {exc}"
                ok, permanent = False, True
            else:
                ok, permanent, result_reason = True, False, ""
                for send in sends:
                    result = retrier.deliver(send, stop.is_set)
                    if result.outcome is not Outcome.DELIVERED:
                        ok, permanent, result_reason = False, result.outcome is Outcome.PERMANENT, result.reason
                        break
            if ok:
                dlq.remove(entry)
                delivered += 1
                progress.advance(entry.points, f"{entry.id} delivered")
                continue
            failed += 1
            progress.advance(0, f"{entry.id} NOT delivered ({entry.points} points)")
            progress.finish()
            print(f"otel-recursive-metrics: {entry.id} not delivered: {one_line(result_reason)}", file=sys.stderr)
            if not (permanent and args.keep_going):
                break
    except KeyboardInterrupt:
        stop.set()
        progress.finish()
        print(f"otel-recursive-metrics: interrupted; {entries_text(delivered)} delivered and removed", file=sys.stderr)
        return 130
    finally:
        try:
            sink.close()
        except Exception:  # noqa: BLE001 - closing must not hide the summary
            pass
    progress.finish()
    left = len(entries) - delivered
    print(
        f"otel-recursive-metrics: replayed {delivered} of {entries_text(len(entries))} to {destination}"
        + (f"; {left} left in {dlq.folder}" if left else ""),
        file=sys.stderr,
    )
    return 0 if left == 0 else 1


# -- purge -------------------------------------------------------------------------------------


def cmd_purge(args: argparse.Namespace) -> int:
    dlq = open_dead_letters(args)
    with lock_folder(dlq, args):
        return _purge(dlq, args)


def _purge(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    try:
        entries = select(dlq, args.ids, args.sink)
    except LookupError as exc:
        return fail(str(exc.args[0]))
    if not entries:
        print(f"otel-recursive-metrics: no dead letters to purge in {dlq.folder}", file=sys.stderr)
        return 0
    points = sum(e.points for e in entries)
    size = size_text(sum(e.bytes for e in entries))
    what = f"{entries_text(len(entries))} ({points} points, {size}) from {dlq.folder}"
    if not args.yes:
        stdin = sys.stdin
        if stdin is None or not stdin.isatty():
            return fail(f"refusing to delete {what} without confirmation: no terminal; pass --yes")
        sys.stderr.write(f"Delete {what}? This cannot be undone. [y/N] ")
        sys.stderr.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("otel-recursive-metrics: purge cancelled; nothing deleted", file=sys.stderr)
            return 1
    for entry in entries:
        dlq.remove(entry)
    print(f"otel-recursive-metrics: deleted {what}", file=sys.stderr)
    return 0
