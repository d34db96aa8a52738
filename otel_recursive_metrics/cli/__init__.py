"""The ``otel-recursive-metrics`` command (also ``python -m otel_recursive_metrics``).

One module per subcommand, each with a ``register(subparsers)`` that adds its parser and sets
``handler``; :func:`main` parses, dispatches and turns a :class:`~._output.CommandError` (bad usage,
a missing or damaged store) into one line on stderr and exit code 2. Exit codes: 0 success,
1 nothing matched (or work left undone), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence

from .._files import is_damage
from .._version import __version__
from . import compare, dlq, export, plot, query, runs, sync, ui
from ._output import CommandError, damaged_store_message, fail, require_subcommand

__all__ = ["build_parser", "main"]

_Handler = Callable[[argparse.Namespace], int]

#: The subcommand modules, in the order ``--help`` lists them.
_COMMANDS = (query, export, runs, compare, plot, dlq, sync, ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-recursive-metrics", description="Query, plot and replay training metrics.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = require_subcommand(parser, dest="command")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: _Handler = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        fail(str(exc))
        return exc.code
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        # Damage found while reading (a page SQLite cannot decode), after the store opened fine.
        return fail(damaged_store_message(getattr(args, "store", None) or "the store", exc))
    except BrokenPipeError:  # `| head`
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
