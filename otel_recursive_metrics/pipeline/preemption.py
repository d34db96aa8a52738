"""SIGTERM: put what is in memory on disk, then end the way the program would have.

Schedulers stop jobs with SIGTERM and kill them a little later: SLURM at a time limit or on
``scancel`` (SIGKILL follows after ``KillWait``, 30 s by default), Kubernetes on eviction or a
rolling update (SIGKILL after ``terminationGracePeriodSeconds``, 30 s by default), torchrun to
the other workers when one fails. Python's default answer to SIGTERM is to die at once, without
``atexit`` handlers or ``finally`` blocks, so whatever waited in memory for the next flush
interval would be lost.

:func:`install` (called by every pipeline when it starts, if ``handle_sigterm`` is on) puts a
handler in front of the one the program has, from the main thread only, and only once. On
SIGTERM it:

1. asks the SDK's ``MeterProvider`` to collect, so values aggregated since its last export
   are handed to the exporter too (on a helper thread: if the signal interrupted the SDK while
   it held a lock, this gives up after a bounded wait instead of deadlocking);
2. asks every running pipeline to put what it holds in memory into its durable queue, and waits
   at most ``sigterm_timeout_s`` (2 s by default) for that;
3. lets the local store take what is now on disk, within what is left of that budget, and logs
   one line: what is on disk, where, and how it will be sent (at the next start with the same
   data folder, or now with ``otel-recursive-metrics sync``);
4. ends as the program would have: it calls the handler the program installed (which may raise
   ``SystemExit`` or ``KeyboardInterrupt`` as usual), returns if SIGTERM was ignored, and
   otherwise restores the default action and sends SIGTERM again, so the process ends *by the
   signal*, with the status a scheduler expects.

A program that installs its own SIGTERM handler later simply replaces this one; ours is never
installed over a handler without chaining to it, and ``handle_sigterm=False``
(``OTEL_RECURSIVE_METRICS_HANDLE_SIGTERM=false``) leaves SIGTERM alone altogether. In a forked
child (a DataLoader worker) the handler finds nothing to persist and chains at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

__all__ = ["Persistable", "add_hook", "install", "installed", "register_meter_provider"]

_log = logging.getLogger(__name__)

#: Longest wait for the SDK to hand over what it aggregated.
_SDK_COLLECT_S = 0.5


class Persistable(Protocol):
    """What the handler needs of a pipeline."""

    def persist_async(self) -> threading.Event | None:
        """Start putting memory on disk; an event set when done (None if nothing to do)."""

    def deliver_locally(self, deadline: float) -> bool:
        """Wait (until ``deadline``, monotonic) for the local store to take what is on disk."""

    def sigterm_summary(self, persisted: bool) -> str | None:
        """One phrase on what this pipeline kept and where, or None if it holds nothing."""

    @property
    def sigterm_timeout_s(self) -> float: ...


_lock = threading.Lock()
_installed = False
_previous: Any = None
_pipelines: Callable[[], Iterable[Persistable]] = list
_providers: list[Any] = []
_hooks: list[Callable[[], None]] = []


def installed() -> bool:
    """Whether our handler is the one SIGTERM runs now."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def register_meter_provider(provider: Any) -> None:
    """An SDK ``MeterProvider`` to collect on SIGTERM (``configure()`` registers its own)."""
    with _lock:
        if provider not in _providers:
            _providers.append(provider)


def add_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` first on SIGTERM, before persisting (the training API records its runs' end)."""
    with _lock:
        if hook not in _hooks:
            _hooks.append(hook)


def install(pipelines: Callable[[], Iterable[Persistable]]) -> bool:
    """Put our handler in front of the program's (once, from the main thread); True if it is there."""
    global _installed, _previous, _pipelines
    with _lock:
        _pipelines = pipelines
        if _installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError) as exc:  # not the main interpreter, or no signals here
            _log.debug("otel-recursive-metrics: no SIGTERM handler installed: %s", exc)
            return False
        _previous, _installed = previous, True
    _log.debug("otel-recursive-metrics: SIGTERM handler installed (chains to %r)", previous)
    return True


def _collect_sdk(deadline: float) -> None:
    providers = list(_providers)
    try:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider

        current = metrics.get_meter_provider()
        if isinstance(current, MeterProvider) and current not in providers:
            providers.append(current)
    except Exception:  # noqa: BLE001 - the SDK is optional at this point
        pass
    if not providers:
        return

    def collect() -> None:
        for provider in providers:
            try:
                provider.force_flush(timeout_millis=int(_SDK_COLLECT_S * 1000))
            except Exception:  # noqa: BLE001 - never let the SDK stop the handler
                pass

    worker = threading.Thread(target=collect, name="otel-recursive-metrics-sigterm-collect", daemon=True)
    worker.start()
    worker.join(max(0.0, min(_SDK_COLLECT_S, deadline - time.monotonic())))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    started = time.monotonic()
    try:
        for hook in list(_hooks) if _previous != signal.SIG_IGN else []:  # an ignored SIGTERM ends nothing
            try:
                hook()
            except Exception:  # noqa: BLE001 - a hook must not stop the persisting
                _log.exception("otel-recursive-metrics: a SIGTERM hook failed")
        pipelines = list(_pipelines())
        budget = max((p.sigterm_timeout_s for p in pipelines), default=0.0)
        deadline = started + budget
        if pipelines:
            _collect_sdk(deadline)
        waits = [(p, p.persist_async()) for p in pipelines]
        done_by: dict[int, bool] = {}
        for pipeline, event in waits:
            done_by[id(pipeline)] = event is None or event.wait(max(0.0, deadline - time.monotonic()))
        # What remains of the budget lets the local store take what is now on disk (the run's
        # end among it), so `runs` shows the right status without a next start.
        for pipeline, _ in waits:
            if done_by[id(pipeline)]:
                pipeline.deliver_locally(deadline)
        lines = []
        for pipeline, _ in waits:
            summary = pipeline.sigterm_summary(done_by[id(pipeline)])
            if summary:
                lines.append(summary)
        if lines:
            _log.warning(
                "otel-recursive-metrics: SIGTERM: %s (%.2f s); ending as SIGTERM would", "; ".join(lines), time.monotonic() - started
            )
    except Exception:  # noqa: BLE001 - whatever happens here, the program must still end
        _log.exception("otel-recursive-metrics: persisting at SIGTERM failed")
    _chain(signum, frame)


def _chain(signum: int, frame: FrameType | None) -> None:
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # SIG_DFL (or a handler installed from C, which we cannot call): end by the signal itself.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
