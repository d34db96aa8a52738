"""``otel-recursive-metrics export``: every point of a store, or a filtered part, to a file.

- ``export --store PATH [--format parquet|csv|jsonl] [--out FILE] [--metric NAME ...] [--run RUN ...]``
  and the rest of ``query``'s filters (``--rank``, ``--step-min``, ``--step-max``, ``--limit``,
  ``--last``; ``--follow`` for csv and jsonl).
- ``parquet`` (the ``parquet`` extra, pyarrow): one row per point with typed columns, for SQL in
  DuckDB, Polars, pandas or Spark; the columns are described in :mod:`..store.parquet`. Written in
  row groups as the store is read, so memory stays bounded whatever the store's size.
- ``csv`` and ``jsonl`` are ``query --format csv`` and ``query --format json``, the same code path
  (:func:`.query.write_text`), to a file.

``--out`` defaults to ``<store name>.parquet`` in the current folder for parquet and to stdout for
csv and jsonl; ``--out -`` is stdout for every format (parquet only when stdout is not a
terminal). A file is written under a temporary name beside it and renamed when complete, owner
read and write only: an export that fails or is interrupted leaves no half file. Exit codes: 0
points written, 1 nothing matched (a parquet file with the columns and no rows is still written),
2 bad usage, an unreadable store, or pyarrow missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TextIO, cast

from .._files import file_kind
from ..store.parquet import MISSING_PYARROW, require_pyarrow, write_parquet
from ..store.points import PointQuery
from ._output import CommandError, add_store_arg, default_store, fail, open_store
from .query import add_filters, point_filters, write_text

__all__ = ["cmd_export", "register"]

FORMATS = ("parquet", "csv", "jsonl")


def register(subparsers: Any) -> None:
    """Add ``export``."""
    export = subparsers.add_parser("export", help="write points to a Parquet, CSV or JSON Lines file")
    add_store_arg(export)
    export.add_argument(
        "--format", choices=FORMATS, default="parquet", help="parquet (the default; the parquet extra), csv, or jsonl (query's json)"
    )
    export.add_argument("--out", help="file to write; '-' for stdout (default: <store name>.parquet here for parquet, stdout otherwise)")
    add_filters(export)
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "parquet":
        if args.follow:
            raise CommandError("--follow works with --format csv or jsonl: a Parquet file is complete only when closed")
        try:
            require_pyarrow()
        except ImportError:
            return fail(MISSING_PYARROW)
    store_path = args.store or default_store()
    out = _out_path(args.out, store_path, args.format)
    store = open_store(store_path)
    try:
        filters = point_filters(args, store)
        if args.format == "parquet":
            query = PointQuery(args.metric, **filters)
            with _output(out, binary=True) as stream:
                written = write_parquet(store, query, stream)
        else:
            fmt = "json" if args.format == "jsonl" else "csv"
            with _output(out, binary=False) as stream:
                code = write_text(store, args, filters, fmt, cast(TextIO, stream))
            return code if out is None else _report(code == 0, out)
    finally:
        store.close()
    return _report(written > 0, out, written)


def _report(any_written: bool, out: Path | None, points: int | None = None) -> int:
    """The line on stderr that says where the points went; the exit code (1: none matched)."""
    if out is not None:
        count = "" if points is None else f"{points} points to "
        what = f"wrote {count}{out}" if any_written else f"no points matched; wrote {out} with no rows"
        print(f"otel-recursive-metrics: {what}", file=sys.stderr)
    return 0 if any_written else 1


def _out_path(given: str | None, store_path: str, fmt: str) -> Path | None:
    """The file to write, or None for stdout; CommandError for a path that cannot be one."""
    if given == "-" or (given is None and fmt != "parquet"):
        if fmt == "parquet" and sys.stdout.isatty():
            raise CommandError("--out -: Parquet is binary; redirect stdout to a file or pipe, or give --out FILE")
        return None
    out = Path(given) if given else Path(Path(store_path).stem + ".parquet")
    kind = file_kind(out)
    if kind is not None:
        raise CommandError(f"--out {str(out)!r}: {kind}, not a file that can be written")
    if not out.parent.is_dir():
        raise CommandError(f"--out {str(out)!r}: no folder {str(out.parent)!r}")
    if out.resolve() == Path(store_path).resolve():
        raise CommandError(f"--out {str(out)!r}: that is the store itself")
    return out


@contextlib.contextmanager
def _output(out: Path | None, *, binary: bool) -> Iterator[IO[Any]]:
    """stdout, or a temporary file beside ``out`` (0600) renamed to ``out`` once written whole."""
    if out is None:
        yield sys.stdout.buffer if binary else sys.stdout
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CommandError(f"--out {str(out)!r}: cannot write there: {exc.strerror or exc}") from None
    try:
        # newline="": PointWriter writes CSV's \r\n itself.
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
