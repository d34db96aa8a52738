"""SIGTERM: put what is in memory on disk, then end the way the program would have.

Schedulers stop jobs with SIGTERM and kill them a little later: SLURM at a time limit or on
``scancel`` (SIGKILL follows after ``KillWait``, 30 s by default), Kubernetes on eviction or a
rolling update (SIGKILL after ``terminationGracePeriodSeconds``, 30 s by default), torchrun to
the other workers when one fails. Python's default answer to SIGTERM is to die at once, without
``atexit`` handlers or ``finally`` blocks, so whatever waited in memory for the next flush
interval would be lost.

:func:`install` puts a handler in front of the one the program has, once, and only from the main
thread (Python's rule). It is called where the exporter is built (``RecursiveMetricExporter()``,
which is what ``configure()`` and the SDK's auto-configuration for
``OTEL_METRICS_EXPORTER=recursive`` do on the importing thread), and again by every pipeline when
it starts: the SDK's first ``export()`` runs on its reader thread, where no handler can be
installed any more. Where none could be, one warning says so. On SIGTERM it:

1. does the work on a helper thread (a *round*), while the handler, on the main thread, waits
   for it within ``sigterm_timeout_s`` (2 s by default):

   - it runs the hooks (the training API records its runs' end);
   - it asks the SDK's ``MeterProvider`` to collect, so what the instruments aggregated since
     the last export is handed to the exporter too, even before the first export (for at most
     :data:`SDK_COLLECT_S`; a reader in the middle of an export is waited for, no longer);
   - it asks every pipeline to put what it holds in memory into its durable queue, and lets the
     local store take what is now on disk, within the budget;

2. takes no lock itself: a signal handler runs on the main thread between two bytecodes, and
   the code it interrupted may hold one (``counter.add`` holds its aggregation's lock while it
   adds; with delta temporality, while it calls further). If the main thread was interrupted
   inside the SDK or this package and the round has not got past what could need such a lock
   (the collect; in our code, the whole round) within a fraction of a second, the handler
   returns: the main thread goes on and lets its lock go, the round goes on, and a resender
   thread sends SIGTERM to the main thread again once the round got there. The handler then
   starts a new round, so what the main thread logged meanwhile is kept as well, and waits
   again, until the budget is spent;
3. logs one line, ``SIGTERM: ...``: what is on disk, where, and how it will be sent (at the next
   start with the same data folder, or now with ``otel-recursive-metrics sync``), or what was
   lost;
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

__all__ = ["SDK_COLLECT_S", "Persistable", "add_hook", "collecting", "install", "installed", "register_meter_provider"]

_log = logging.getLogger(__name__)

#: Longest wait for the SDK to hand over what it aggregated.
SDK_COLLECT_S = 0.5
#: How long the handler waits for the helper before it lets a main thread go on that was
#: interrupted inside the SDK or this package (it may hold a lock the helper needs).
_TRY_S = 0.2
#: How often the resender looks whether the main thread can be called back.
_RESEND_POLL_S = 0.005
#: What the handler waits past the budget for the helper's one-line summary.
_SUMMARY_S = 0.25
_NOT_COLLECTED = (
    "the OpenTelemetry SDK's collect did not end within {:g} s (a reader busy exporting elsewhere, or a lock held);"
    " what it had not handed over yet is lost"
)


class Persistable(Protocol):
    """What the handler needs of a pipeline."""

    def persist_async(self) -> threading.Event | None:
        """Start putting memory on disk; an event set when done (None if this pipeline holds nothing)."""

    def deliver_locally(self, deadline: float) -> bool:
        """Wait (until ``deadline``, monotonic) for the local store to take what is on disk."""

    def sigterm_summary(self, persisted: bool) -> str | None:
        """One phrase on what this pipeline kept and where, or None if it holds nothing."""

    @property
    def sigterm_timeout_s(self) -> float: ...


_lock = threading.Lock()
_installed = False
_warned_off_main = False
_previous: Any = None
_pipelines: Callable[[], Iterable[Persistable]] = list
_providers: list[Any] = []
_hooks: list[Callable[[], None]] = []
#: Where the code lives that may hold a lock the persisting needs (set by :func:`install`).
_our_code: tuple[str, ...] = ()
_sdk_code: tuple[str, ...] = ()
_collector = threading.local()


def installed() -> bool:
    """Whether our handler is the one SIGTERM runs now."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def collecting() -> bool:
    """True on the thread that collects the SDK for SIGTERM (the exporter then skips its flush)."""
    return bool(getattr(_collector, "active", False))


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
    global _installed, _previous, _pipelines, _our_code, _sdk_code, _warned_off_main
    with _lock:
        _pipelines = pipelines
        if _installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            warn, _warned_off_main = not _warned_off_main, True
        else:
            warn = False
            if not _our_code:
                _our_code, _sdk_code = _code_folders()
            try:
                previous = signal.getsignal(signal.SIGTERM)
                signal.signal(signal.SIGTERM, _on_sigterm)
            except (ValueError, OSError) as exc:  # not the main interpreter, or no signals here
                _log.debug("otel-recursive-metrics: no SIGTERM handler installed: %s", exc)
                return False
            _previous, _installed = previous, True
    if warn:
        _log.warning(
            "otel-recursive-metrics: no SIGTERM handler: the pipeline started on thread %r, and Python installs signal"
            " handlers only from the main thread; on SIGTERM what is in memory is lost. Build the exporter (or call"
            " configure()) on the main thread, or set handle_sigterm=false to handle SIGTERM yourself",
            threading.current_thread().name,
        )
        return False
    if _installed:
        _log.debug("otel-recursive-metrics: SIGTERM handler installed (chains to %r)", _previous)
    return _installed


def _code_folders() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folders of this package; those of the OpenTelemetry SDK and metrics API."""
    ours = (os.path.join(os.path.dirname(os.path.dirname(__file__)), ""),)
    try:
        import opentelemetry.metrics
        import opentelemetry.sdk

        # Namespace packages: each may span several folders.
        sdk = tuple(os.path.join(f, "") for m in (opentelemetry.sdk, opentelemetry.metrics) for f in m.__path__)
    except ImportError:  # pragma: no cover - the SDK is a dependency
        sdk = ()
    return ours, sdk


def _interrupted_in(frame: FrameType | None) -> tuple[bool, bool]:
    """Whether the interrupted main thread is in this package's code, and in the SDK's."""
    ours = sdk = False
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_our_code):
            ours = True
        elif name.startswith(_sdk_code):
            sdk = True
        frame = frame.f_back
    return ours, sdk


class _Round:
    """One try at keeping what is in memory, on a helper thread: hooks, SDK collect, persist."""

    def __init__(self, deadline: float) -> None:
        self.collected = threading.Event()
        self.done = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._run, args=(deadline,), name="otel-recursive-metrics-sigterm", daemon=True).start()

    def _run(self, deadline: float) -> None:
        try:
            self.lines = _persist_all(deadline, self.collected)
        except Exception:  # noqa: BLE001
            _log.exception("otel-recursive-metrics: persisting at SIGTERM failed")
        finally:
            self.collected.set()
            self.done.set()


class _Sigterm:
    """One SIGTERM being handled: its budget, its rounds, and the thread that calls the main one back."""

    def __init__(self, pipelines: list[Persistable]) -> None:
        self.started = time.monotonic()
        self.budget = max((p.sigterm_timeout_s for p in pipelines), default=0.0)
        self.deadline = self.started + self.budget
        self.rounds: list[_Round] = []
        self.deferred = 0
        self._wake_on: threading.Event | None = None
        self._stop = threading.Event()
        self._resender: threading.Thread | None = None

    def handle(self, frame: FrameType | None) -> bool:
        """Run a round while the main thread waits here; False to let it go on (called back later)."""
        if not self.rounds or time.monotonic() < self.deadline:
            # A new round each time: what the main thread logged since the last one is in it.
            self.rounds.append(_Round(self.deadline))
        latest = self.rounds[-1]
        ours, sdk = _interrupted_in(frame)
        limit = self.deadline + _SUMMARY_S
        if (ours or sdk) and hasattr(signal, "pthread_kill"):  # not on Windows: there it waits, within the budget
            # Wait briefly for what may need a lock the main thread holds: everything in our
            # code (the buffer, the queue, the runs), the collect in the SDK's.
            first = latest.done if ours else latest.collected
            if not first.wait(max(0.0, min(_TRY_S, limit - time.monotonic()))) and time.monotonic() < self.deadline:
                self.deferred += 1
                self._call_back_when(first)
                return False
        latest.done.wait(max(0.0, limit - time.monotonic()))
        self._stop_resending()
        self._log_outcome()
        return True

    def _log_outcome(self) -> None:
        took = time.monotonic() - self.started
        _log.debug("otel-recursive-metrics: SIGTERM took %d round(s); the main thread went on %d time(s)", len(self.rounds), self.deferred)
        finished = [r for r in self.rounds if r.done.is_set()]
        if self.rounds[-1].done.is_set():
            if finished[-1].lines:
                _log.warning("otel-recursive-metrics: SIGTERM: %s (%.2f s); ending as SIGTERM would", "; ".join(finished[-1].lines), took)
            return
        earlier = f"; before that: {'; '.join(finished[-1].lines)}" if finished and finished[-1].lines else ""
        _log.warning(
            "otel-recursive-metrics: SIGTERM: putting memory on disk did not finish within sigterm_timeout_s=%g"
            " (the disk is slow, or the interrupted code held a lock it needs)%s; what was not on disk yet is lost"
            " (%.2f s); ending as SIGTERM would",
            self.budget,
            earlier,
            took,
        )

    def _call_back_when(self, event: threading.Event) -> None:
        self._wake_on = event
        if self._resender is None:
            self._resender = threading.Thread(
                target=self._resend, args=(threading.main_thread().ident,), name="otel-recursive-metrics-sigterm-resend", daemon=True
            )
            self._resender.start()

    def _resend(self, main: int | None) -> None:
        """Send SIGTERM to the main thread again once what it waits for is there, or the time is up."""
        while not self._stop.wait(_RESEND_POLL_S):
            event = self._wake_on
            if event is None or not (event.is_set() or time.monotonic() >= self.deadline):
                continue
            self._wake_on = None
            if main is None or not installed():
                return
            try:
                signal.pthread_kill(main, signal.SIGTERM)
            except (OSError, ValueError):
                return

    def _stop_resending(self) -> None:
        self._stop.set()
        if self._resender is not None:
            self._resender.join(1.0)  # it waits on nothing of ours; a signal it sent meets _busy


_current: _Sigterm | None = None
_busy = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _current, _busy
    if _busy:
        return  # SIGTERM again (or our own call-back) while one is handled: that one ends the program
    _busy = True
    try:
        current = _current
        if current is None:
            pipelines = list(_pipelines())
            # Nothing of ours to keep (all closed, or a forked child that logged nothing): chain at once.
            current = _current = _Sigterm(pipelines) if pipelines else None
        if current is not None and not current.handle(frame):
            return  # the main thread goes on, and is called back
    except Exception:  # noqa: BLE001 - whatever happens here, the program must still end
        _log.exception("otel-recursive-metrics: handling SIGTERM failed")
    finally:
        _busy = False
    _current = None
    _chain(signum, frame)


def _persist_all(deadline: float, collected: threading.Event) -> list[str]:
    """Hooks, SDK collect, persist, local delivery; the summary phrases (on a helper thread)."""
    for hook in list(_hooks) if _previous != signal.SIG_IGN else []:  # an ignored SIGTERM ends nothing
        try:
            hook()
        except Exception:  # noqa: BLE001 - a hook must not stop the persisting
            _log.exception("otel-recursive-metrics: a SIGTERM hook failed")
    # Even before the first export: the collect hands the SDK's values over, which starts the
    # pipeline that takes them.
    in_time = _collect_sdk(deadline)
    collected.set()
    waits = [(p, p.persist_async()) for p in _pipelines()]
    done_by: dict[int, bool] = {}
    for pipeline, event in waits:
        if event is not None:
            done_by[id(pipeline)] = event.wait(max(0.0, deadline - time.monotonic()))
    # What remains of the budget lets the local store take what is now on disk (the run's end
    # among it), so `runs` shows the right status without a next start.
    for pipeline, event in waits:
        if event is not None and done_by[id(pipeline)]:
            pipeline.deliver_locally(deadline)
    lines = [] if in_time else [_NOT_COLLECTED.format(SDK_COLLECT_S)]
    for pipeline, event in waits:
        summary = pipeline.sigterm_summary(done_by[id(pipeline)]) if event is not None else None
        if summary:
            lines.append(summary)
    return lines


def _collect_sdk(deadline: float) -> bool:
    """Have every MeterProvider collect into its exporters; False if that did not end in time."""
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
        return True
    budget_s = max(0.0, min(SDK_COLLECT_S, deadline - time.monotonic()))

    def collect() -> None:
        _collector.active = True
        for provider in providers:
            try:
                # Each reader collects and exports; our exporter's own force_flush then returns
                # at once (see collecting()): the handler persists right after.
                provider.force_flush(timeout_millis=int(budget_s * 1000))
            except Exception:  # noqa: BLE001 - never let the SDK stop the handler
                pass

    worker = threading.Thread(target=collect, name="otel-recursive-metrics-sigterm-collect", daemon=True)
    worker.start()
    worker.join(budget_s)
    return not worker.is_alive()


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
