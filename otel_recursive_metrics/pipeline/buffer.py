"""The in-memory hand-off between the caller's thread and the worker.

:meth:`MemoryBuffer.offer` is the only thing the exporter, ``TrainingMetrics.log`` and
``submit_metric`` do on the caller's thread: an atomic ``deque.append`` of a reference, plus a
wake-up once ``batch_size`` items wait. No lock is taken on that path; it never touches disk or
network. Past ``max_items`` the overflow policy applies and every refused or evicted item is
counted (``buffer_full``): ``drop_oldest`` evicts, ``drop_newest`` refuses, ``block`` waits up to
``block_timeout_s`` for the worker to make room, then refuses.

Thread safety: many producers, one consumer (the worker's ingest thread).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MemoryBuffer"]


class MemoryBuffer:
    """A bounded deque of accepted items with a wake-up event for the worker."""

    def __init__(
        self,
        *,
        max_items: int,
        wake_after: int,
        overflow: str,
        block_timeout_s: float,
        on_drop: Callable[[Any], None],
    ) -> None:
        self.max_items = max_items
        self.wake_after = wake_after
        self.overflow = overflow
        self.block_timeout_s = block_timeout_s
        self._on_drop = on_drop
        self.reset()

    def reset(self) -> None:
        """Forget every item and recreate the primitives (used in a forked child)."""
        self.items: deque[Any] = deque()
        self.wake = threading.Event()
        self._room = threading.Condition(threading.Lock())

    def __len__(self) -> int:
        return len(self.items)

    def offer(self, item: Any) -> bool:
        """Queue ``item`` for the worker; False if the overflow policy refused it."""
        items = self.items
        if len(items) >= self.max_items and not self._make_room():
            self._on_drop(item)
            return False
        items.append(item)
        if len(items) >= self.wake_after and not self.wake.is_set():
            self.wake.set()
        return True

    def _make_room(self) -> bool:
        if self.overflow == "drop_oldest":
            try:
                self._on_drop(self.items.popleft())
            except IndexError:
                pass
            return True
        if self.overflow == "block" and self.block_timeout_s > 0:
            deadline = time.monotonic() + self.block_timeout_s
            self.wake.set()
            with self._room:
                while len(self.items) >= self.max_items:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._room.wait(remaining)
            return True
        return False

    def drain(self, limit: int | None = None) -> list[Any]:
        """Take up to ``limit`` items (all if None), oldest first; wakes blocked producers."""
        items = self.items
        out = []
        popleft = items.popleft
        n = len(items) if limit is None else min(limit, len(items))
        for _ in range(n):
            try:
                out.append(popleft())
            except IndexError:
                break
        if out and self.overflow == "block":
            with self._room:
                self._room.notify_all()
        return out
