"""The dead-letter queue: batches that can never be delivered, kept on disk to be replayed.

Each entry is two files in ``$DIR/dead-letter/``:

- ``<time>-<sink>-<seq>.jsonl``: one ``ExportMetricsServiceRequest`` in OTLP JSON on one line,
  exactly what the Collector's file exporter writes, so a stock Collector's ``otlpjsonfile``
  receiver (``include: [".../dead-letter/*.jsonl"]``) replays it as well as our CLI does;
- ``<same name>.meta.json``: the reason, the sink, the time, the point count and the batch in
  full fidelity (with step and epoch), which replay into the store uses.

Files are written owner-only, to a temporary name then renamed, so a crash never leaves half an
entry. The folder is capped by bytes; past the cap new entries are refused and counted as
dropped (reason ``dead_letter_full``), leaving the evidence already there untouched.
Header values are never written: entries hold data points only.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import make_private_dir, write_private
from ..sinks.otlp.codec import encode_request, request_to_json_line
from .batch import PointBatch

__all__ = ["DeadLetterEntry", "DeadLetterQueue"]

_seq = itertools.count()


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead-lettered batch."""

    path: Path
    meta_path: Path
    reason: str
    sink: str
    time_unix_nano: int
    points: int
    bytes: int

    @property
    def id(self) -> str:
        return self.path.name[: -len(".jsonl")]

    def batch(self) -> PointBatch:
        """The batch in full fidelity (from the meta file), or decoded from the OTLP JSON."""
        meta = json.loads(self.meta_path.read_text(encoding="utf-8")) if self.meta_path.exists() else {}
        if "batch" in meta:
            return PointBatch.decode(json.dumps(meta["batch"]))
        from ..sinks.otlp.codec import decode_request, request_from_json_line

        batches = [
            decode_request(request_from_json_line(line)) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if len(batches) == 1:
            return batches[0]
        from .batch import BatchBuilder

        b = BatchBuilder()
        for one in batches:
            for p in one.points:
                b.add_point_from(one, p)
        return b.build()

    def json_lines(self) -> list[str]:
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def remove(self) -> None:
        for path in (self.path, self.meta_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


class DeadLetterQueue:
    """Writes, lists and removes dead-letter entries in one folder. Thread-safe."""

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None

    def _current_bytes(self) -> int:
        if self._bytes is None:
            self._bytes = sum(e.bytes for e in self.entries())
        return self._bytes

    def add(self, batch: PointBatch, *, reason: str, sink: str) -> DeadLetterEntry | None:
        """Write ``batch`` as an entry; None (nothing written) when the byte cap is reached."""
        line = request_to_json_line(encode_request(batch)) + "\n"
        now = time.time_ns()
        meta = {
            "reason": reason,
            "sink": sink,
            "time_unix_nano": now,
            "points": len(batch),
            "batch": batch.to_json(),
        }
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
        return DeadLetterEntry(path, meta_path, reason, sink, now, len(batch), size)

    def entries(self) -> Iterator[DeadLetterEntry]:
        """Every entry, oldest first."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.jsonl")):
            meta_path = path.with_name(path.name[: -len(".jsonl")] + ".meta.json")
            meta: dict[str, Any] = {}
            try:
                if meta_path.exists():
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                size = path.stat().st_size + (meta_path.stat().st_size if meta_path.exists() else 0)
            except (OSError, ValueError):
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

    def get(self, entry_id: str) -> DeadLetterEntry:
        for entry in self.entries():
            if entry_id in (entry.id, entry.path.name):
                return entry
        raise KeyError(f"no dead-letter entry {entry_id!r} in {self.folder}")

    def remove(self, entry: DeadLetterEntry) -> None:
        with self._lock:
            entry.remove()
            if self._bytes is not None:
                self._bytes = max(0, self._bytes - entry.bytes)

