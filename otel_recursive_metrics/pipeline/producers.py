"""What offers into a pipeline beside the caller (the system-metrics sampler): started late, stopped first.

A producer that is slow to start (the sampler opens psutil and NVML) is started on the worker
once the pipeline is set up (:meth:`Producers.on_setup`), so it costs the training thread
nothing; the pipeline knows nothing of what it starts. At shutdown the producers are stopped
before anything else (:meth:`Producers.shutdown`), so that their last output is persisted too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Producer", "Producers"]

_log = logging.getLogger(__name__)

#: The most of a shutdown's budget one producer gets to stop.
_STOP_S = 5.0


class Producer(Protocol):
    """Something that offers points into a pipeline on its own thread (the system-metrics sampler)."""

    def shutdown(self, timeout_s: float) -> bool: ...


class Producers:
    """The producers of one pipeline, and the starts that wait for it to be set up."""

    def __init__(self, may_start: Callable[[], bool]) -> None:
        """``may_start()`` is False once starting anything is pointless (the pipeline closed, or a forked child)."""
        self._may_start = may_start
        self._lock = threading.Lock()
        self._set_up = False
        self._waiting: list[Callable[[], None]] = []
        self._producers: list[Producer] = []

    def on_setup(self, start: Callable[[], None]) -> None:
        """Run ``start`` on the worker once the pipeline is set up (at once if it is)."""
        with self._lock:
            if not self._set_up:
                self._waiting.append(start)
                return
        self._run(start)

    def set_up(self) -> None:
        """The pipeline is set up (called on the worker): run the starts that waited for it."""
        with self._lock:
            self._set_up = True
            starts, self._waiting = self._waiting, []
        for start in starts:
            self._run(start)

    def _run(self, start: Callable[[], None]) -> None:
        if not self._may_start():
            return
        try:
            start()
        except Exception:  # noqa: BLE001 - a producer must never cost the run
            _log.exception("otel-recursive-metrics: %r did not start", start)

    def add(self, producer: Producer) -> None:
        """Stop ``producer`` at :meth:`shutdown`."""
        self._producers.append(producer)

    def shutdown(self, deadline: float) -> None:
        """Stop every producer, each within 5 s and what is left before ``deadline`` (monotonic)."""
        for producer in list(self._producers):
            try:
                producer.shutdown(max(0.0, min(_STOP_S, deadline - time.monotonic())))
            except Exception:  # noqa: BLE001
                _log.exception("otel-recursive-metrics: stopping %r failed", producer)
