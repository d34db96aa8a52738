"""The dead-letter queue: batches that can never be delivered, kept on disk to be replayed.

Each entry is two files in ``$DIR/dead-letter/``:

- ``<time>-<sink>-<seq>.jsonl``: one ``ExportMetricsServiceRequest`` in OTLP JSON on one line,
  exactly what the Collector's file exporter writes, so a stock Collector's ``otlpjsonfile``
  receiver (``include: [".../dead-letter/*.jsonl"]``) replays it as well as our CLI does;
- ``<same name>.meta.json``: the reason, the sink, the time, the point count and the batch in
  full fidelity (with step and epoch), which replay into the store uses.

Files are written owner-only, to a temporary name then renamed, so a crash never leaves half an
entry. The folder is capped by bytes; past the cap new entries are refused and counted as
dropped (reason ``dead_letter_full``), leaving the evidence already there untouched. A write the
disk refuses raises ``OSError``: the delivery stage then holds the batch in the queue and tries
again (see :mod:`otel_recursive_metrics.pipeline.delivery`). A reason is kept as one line of about 200 characters
(:func:`brief_reason`). Anything in the folder that is not a regular file is never opened.
Header values are never written: entries hold data points only.

A damaged entry (its sidecar missing or unreadable) is still listed, marked damaged, with its
points counted from the OTLP JSON, and stays replayable from it: to an OTLP endpoint as it is,
into the store without steps (the store then skips points it already holds at any step, so a
replay never duplicates them). A point OTLP cannot carry at all is left out of the OTLP JSON
and kept in the sidecar only (``points_not_in_otlp_json``).
"""

from __future__ import annotations

import calendar
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import file_kind, make_private_dir, write_private
from ..model.batch import PointBatch
from ..model.otlp import decode_request, encode_request, request_from_json_line, request_to_json_line

__all__ = ["REASON_MAX_CHARS", "DeadLetterEntry", "DeadLetterQueue", "brief_reason"]

_seq = itertools.count()

#: A dead letter's reason is one line of at most about this many characters (see :func:`brief_reason`).
REASON_MAX_CHARS = 200


def brief_reason(text: str) -> str:
    """A reason fit for a dead letter, a log line or a table: the first non-blank line of ``text``,
    cut to :data:`REASON_MAX_CHARS`; "..." says that something was cut (a receiver's whole HTML
    error page, say).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return text.strip()
    first = lines[0]
    if len(first) > REASON_MAX_CHARS:
        return first[: REASON_MAX_CHARS - 3].rstrip() + "..."
    return first + " ..." if len(lines) > 1 else first


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead-lettered batch; ``damaged`` says why its sidecar is unusable (None if it is fine)."""

    path: Path
    meta_path: Path
    reason: str
    sink: str
    time_unix_nano: int
    points: int
    bytes: int
    damaged: str | None = None

    @property
    def id(self) -> str:
        return self.path.name[: -len(".jsonl")]

    @property
    def steps_known(self) -> bool:
        """False when the batch can only be rebuilt from its OTLP JSON, which has no steps."""
        return self.damaged is None

    def batch(self) -> PointBatch:
        """The batch in full fidelity (from the sidecar), or decoded from the OTLP JSON (no steps)."""
        if self.damaged is None:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if "batch" in meta:
                return PointBatch.decode(json.dumps(meta["batch"]))
        return PointBatch.merge([decode_request(request_from_json_line(line)) for line in self.json_lines()])

    def json_lines(self) -> list[str]:
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def remove(self) -> None:
        for path in (self.path, self.meta_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _count_json_points(path: Path) -> int:
    """Data points in an OTLP JSON Lines file, without building protobuf objects."""
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        for rm in json.loads(line).get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                        if kind in metric:
                            total += len(metric[kind].get("dataPoints", []))
    return total


def _json_line(batch: PointBatch) -> tuple[str, int]:
    """The batch as one OTLP JSON line, and how many points OTLP could not carry (left out).

    Such points cannot reach a receiver whatever is done; they stay in the sidecar's
    full-fidelity copy, which replay into the store uses.
    """
    try:
        return request_to_json_line(encode_request(batch)) + "\n", 0
    except (ValueError, TypeError, OverflowError):
        pass
    keep = []
    for point in batch.points:
        try:
            encode_request(batch.select([point], batch.id))
        except (ValueError, TypeError, OverflowError):
            continue
        keep.append(point)
    return request_to_json_line(encode_request(batch.select(keep, batch.id))) + "\n", len(batch) - len(keep)


class DeadLetterQueue:
    """Writes, lists and removes dead-letter entries in one folder. Thread-safe."""

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None

    @property
    def lock_path(self) -> Path:
        """The file ``dlq replay`` and ``dlq purge`` hold locked, one of them at a time per folder:
        ``<folder>.lock`` beside the folder, which a purge leaves empty."""
        return self.folder.with_name(self.folder.name + ".lock")

    def reset_after_fork(self) -> None:
        """In a forked child: a new lock (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def _current_bytes(self) -> int:
        if self._bytes is None:
            self._bytes = sum(e.bytes for e in self.entries())
        return self._bytes

    def add(self, batch: PointBatch, *, reason: str, sink: str) -> DeadLetterEntry | None:
        """Write ``batch`` as an entry; None (nothing written) when the byte cap is reached.

        ``reason`` is kept as :func:`brief_reason` makes it. Raises ``OSError`` when the disk
        refuses (the caller keeps the batch and tries again).
        """
        reason = brief_reason(reason)
        line, left_out = _json_line(batch)
        now = time.time_ns()
        meta: dict[str, Any] = {
            "reason": reason,
            "sink": sink,
            "time_unix_nano": now,
            "points": batch.data_points(),
            "batch": batch.to_json(),
        }
        if left_out:
            meta["points_not_in_otlp_json"] = left_out
        meta_text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False)
        size = len(line.encode("utf-8")) + len(meta_text.encode("utf-8"))
        with self._lock:
            if self._current_bytes() + size > self.max_bytes:
                return None
            make_private_dir(self.folder)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9)) + f"{now % 1_000_000_000:09d}"
            name = f"{stamp}-{sink}-{os.getpid()}-{next(_seq)}"
            path = self.folder / f"{name}.jsonl"
            meta_path = self.folder / f"{name}.meta.json"
            write_private(meta_path, meta_text.encode("utf-8"))
            write_private(path, line.encode("utf-8"))
            self._bytes = self._current_bytes() + size
        return DeadLetterEntry(path, meta_path, reason, sink, now, batch.data_points(), size)

    def entries(self) -> Iterator[DeadLetterEntry]:
        """Every entry, oldest first; one whose sidecar is missing or unreadable is listed as damaged."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.jsonl")):
            if file_kind(path) is not None:
                continue  # not an entry of ours (a folder, a FIFO): never opened, a FIFO would block
            meta_path = path.with_name(path.name[: -len(".jsonl")] + ".meta.json")
            damaged: str | None = None
            meta: dict[str, Any] = {}
            try:
                size = path.stat().st_size
            except OSError:
                continue  # removed meanwhile
            try:
                kind = file_kind(meta_path)
                if kind is not None:
                    raise ValueError(f"it is {kind}")
                loaded = json.loads(meta_path.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict) or "batch" not in loaded:
                    raise ValueError("no batch in it")
                meta = loaded
                size += meta_path.stat().st_size
            except FileNotFoundError:
                damaged = "sidecar .meta.json missing"
            except (OSError, ValueError) as exc:
                damaged = f"sidecar .meta.json unreadable: {exc}"
                try:
                    size += meta_path.stat().st_size
                except OSError:
                    pass
            if damaged is not None:
                try:
                    points = _count_json_points(path)
                except (OSError, ValueError, AttributeError) as exc:
                    damaged += f"; OTLP JSON unreadable too: {exc}"
                    points = 0
                yield DeadLetterEntry(
                    path, meta_path, f"damaged entry ({damaged})", "unknown", _time_from_name(path), points, size, damaged
                )
                continue
            yield DeadLetterEntry(
                path=path,
                meta_path=meta_path,
                reason=str(meta.get("reason", "unknown")),
                sink=str(meta.get("sink", "unknown")),
                time_unix_nano=int(meta.get("time_unix_nano", 0)),
                points=int(meta.get("points", 0)),
                bytes=size,
            )

    def remove(self, entry: DeadLetterEntry) -> None:
        with self._lock:
            entry.remove()
            if self._bytes is not None:
                self._bytes = max(0, self._bytes - entry.bytes)


def _time_from_name(path: Path) -> int:
    """An entry's time from its file name (``20260101T120000123456789-...``), 0 if unreadable."""
    stamp = path.name[:24]
    try:
        seconds = calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
        return seconds * 1_000_000_000 + int(stamp[15:24])
    except ValueError:
        return 0
