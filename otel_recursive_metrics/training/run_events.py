"""When each process of a run starts and ends: the ``start`` and ``end`` events, once per pipeline.

Several :class:`~otel_recursive_metrics.TrainingMetrics` may share a pipeline (train and
validation loggers): the first records the start; the end is recorded once, by the instance that
owns the pipeline when it closes, else at interpreter exit (``failed`` if an uncaught exception
is ending it), or on SIGTERM (``killed``), before the handler puts memory on disk. A forked child
records nothing for its parent's runs. The events are records of the store-only metric
``training.run.event`` (see :mod:`.run`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass

from ..model.kinds import RunStatus
from ..pipeline import preemption
from ..pipeline.buffer import RecordItem
from ..pipeline.worker import Pipeline
from .run import event_record
from .values import CLOCK

__all__ = ["RUNS", "RunEvents", "status_of"]


def status_of(exc: BaseException | None) -> RunStatus:
    """How a run ends when ``exc`` ends it (None: normally)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return RunStatus.FINISHED
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.KILLED
    return RunStatus.FAILED


@dataclass
class _RunInProcess:
    """This process's part of the run that one pipeline carries."""

    pipeline: weakref.ref[Pipeline]
    context: int
    pid: int
    noted_status: RunStatus | None = None
    ended: bool = False


class RunEvents:
    """The start and end of this process's part of each run (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, _RunInProcess] = {}  # by id(pipeline)

    def started(self, pipeline: Pipeline, context: int) -> None:
        with self._lock:
            known = self._runs.get(id(pipeline))
            if known is not None and known.pipeline() is pipeline:
                return
            self._runs[id(pipeline)] = _RunInProcess(weakref.ref(pipeline), context, os.getpid())
        pipeline.offer(RecordItem(time.monotonic_ns(), event_record("start", CLOCK())))

    def note_status(self, pipeline: Pipeline, status: RunStatus) -> None:
        """The status the run will end with, whoever ends it (a failed close before exit, say)."""
        with self._lock:
            run = self._runs.get(id(pipeline))
            if run is not None and run.noted_status is None:
                run.noted_status = status

    def ended(self, pipeline: Pipeline, context: int, status: RunStatus) -> None:
        with self._lock:
            run = self._runs.get(id(pipeline))
            if run is None or run.ended or run.pipeline() is not pipeline or run.pid != os.getpid():
                return
            run.ended = True
            status = run.noted_status or status
        if not pipeline.closed:
            pipeline.offer(RecordItem(time.monotonic_ns(), event_record("end", CLOCK(), status=status.value)))

    def end_all(self, status: RunStatus) -> None:
        with self._lock:
            live = [(run.pipeline(), run.context) for run in self._runs.values() if not run.ended]
        for pipeline, context in live:
            if pipeline is not None:
                self.ended(pipeline, context, status)


RUNS = RunEvents()


@atexit.register
def _end_runs_at_exit() -> None:
    # Registered after the worker's exit handler, so it runs before it (atexit is last in,
    # first out): the end events are offered before the pipelines persist and stop.
    last = getattr(sys, "last_value", None)  # set when an uncaught exception ends the program
    RUNS.end_all(status_of(last) if last is not None else RunStatus.FINISHED)


preemption.add_hook(lambda: RUNS.end_all(RunStatus.KILLED))
