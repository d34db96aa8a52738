"""``otel-recursive-metrics ui``: a local, read-only web view of the store, live while runs write.

    $ otel-recursive-metrics ui --store ./otel-metrics/metrics.db
    otel-recursive-metrics ui: serving ./otel-metrics/metrics.db read-only at http://127.0.0.1:8470/ (Ctrl-C to stop)

Pages: the runs (status, parameters, last values; filterable), one run's charts, and runs
compared (any metrics of any runs overlaid, x = step or time, smoothing, ranks overlaid or
split). See :mod:`otel_recursive_metrics.ui`.

``--host`` defaults to ``127.0.0.1``: only this machine can connect. Another address (``0.0.0.0``
for every interface) lets anyone who reaches the port read the store, and says so on stderr.
``--port 0`` picks a free port. Needs the ``ui`` extra (Starlette, uvicorn, Plotly), imported only
when this command runs. Exit codes: 0 after Ctrl-C, 2 on bad usage, a missing or damaged store,
a busy port, or a missing extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import webbrowser
from typing import Any

from ._output import CommandError, add_store_arg, open_store, store_file

__all__ = ["MISSING_EXTRA", "cmd_ui", "register"]

#: The one line printed when the extra is missing.
MISSING_EXTRA = "the web view needs the ui extra: pip install -e '.[ui]' in your clone of otel-recursive-metrics"


def register(subparsers: Any) -> None:
    """Add the ``ui`` subcommand."""
    from ..ui.defaults import DEFAULT_HOST, DEFAULT_PORT  # here: importing the CLI loads no part of the web view

    parser = subparsers.add_parser("ui", help="a local, read-only web view of the store: runs, charts, comparison (needs the ui extra)")
    add_store_arg(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.set_defaults(handler=cmd_ui)


def _missing_modules() -> list[str]:
    return [name for name in ("starlette", "uvicorn", "plotly") if importlib.util.find_spec(name) is None]


def cmd_ui(args: argparse.Namespace) -> int:
    if _missing_modules():
        raise CommandError(MISSING_EXTRA)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: expected 0 to 65535 (0 picks a free port)")
    path = store_file(args.store)
    open_store(path).close()  # a missing or damaged store is an error now, not a blank page later
    try:
        from ..ui.server import UIServer, is_loopback
    except ImportError as exc:  # installed, but broken
        raise CommandError(f"{MISSING_EXTRA} ({exc})") from None
    try:
        server = UIServer(path, host=args.host, port=args.port)
    except OSError as exc:
        raise CommandError(
            f"--host {args.host} --port {args.port}: cannot listen there ({exc.strerror or exc}); pass another --port (0 picks a free one)"
        ) from None
    if not is_loopback(args.host):
        print(
            f"otel-recursive-metrics ui: warning: listening on {args.host}: anyone who can reach port {server.port} can read this store",
            file=sys.stderr,
        )
    print(f"otel-recursive-metrics ui: serving {path} read-only at {server.url} (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
