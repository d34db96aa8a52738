"""The retry stage: the one place that decides what a delivery error means.

A sink raises :class:`~otel_recursive_metrics.errors.PermanentError` or
:class:`~otel_recursive_metrics.errors.RetryableError`; any other exception is treated as
retryable (a bug in a sink must not lose data). :class:`Retrier.deliver` tries a batch until it
is delivered, dead-letters it at once on a permanent error or once the time budget is spent,
and gives up early (leaving the batch queued on disk) only when asked to stop.

Waits follow the Collector's backoff: the n-th delay is ``retry_delay_s * multiplier**n``
capped at ``retry_max_delay_s``, drawn uniformly from ``delay * (1 +/- jitter)``, and never
shorter than the receiver's ``Retry-After``. Time and sleep are injected: tests pass a fake
clock, and the worker passes its stop event's ``wait`` so shutdown interrupts a backoff.

    >>> policy = RetryPolicy(initial_delay_s=1.0, multiplier=1.5, jitter=0.0, max_delay_s=30.0, max_elapsed_s=300.0, report_after_retries=3)
    >>> [policy.delay_s(n) for n in range(4)]
    [1.0, 1.5, 2.25, 3.375]
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..errors import PermanentError, RetryableError

__all__ = ["Outcome", "Result", "Retrier", "RetryPolicy"]

_log = logging.getLogger(__name__)
_DEFAULTS = Config()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap per delay and a time budget per batch.

    Build it from the configuration with :meth:`from_config`, by keyword; its defaults are
    :class:`~otel_recursive_metrics.config.Config`'s, the one place they are written.
    """

    initial_delay_s: float = _DEFAULTS.retry_delay_s
    multiplier: float = _DEFAULTS.retry_multiplier
    jitter: float = _DEFAULTS.retry_jitter
    max_delay_s: float = _DEFAULTS.retry_max_delay_s
    #: Budget for one batch from its first attempt; 0 means retry for ever.
    max_elapsed_s: float = _DEFAULTS.retry_max_elapsed_s
    #: After this many retries of one batch the sink is reported failing (it keeps retrying).
    report_after_retries: int = _DEFAULTS.max_retries

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        return cls(
            initial_delay_s=config.retry_delay_s,
            multiplier=config.retry_multiplier,
            jitter=config.retry_jitter,
            max_delay_s=config.retry_max_delay_s,
            max_elapsed_s=config.retry_max_elapsed_s,
            report_after_retries=config.max_retries,
        )

    def delay_s(self, retry_index: int, rng: Callable[[], float] = random.random) -> float:
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier**retry_index)
        if self.jitter:
            base *= 1.0 + self.jitter * (2.0 * rng() - 1.0)
        return max(0.0, base)


class Outcome(enum.Enum):
    """How one batch's delivery ended."""

    DELIVERED = "delivered"
    #: The receiver refused it for good (a PermanentError): dead-letter it.
    PERMANENT = "permanent"
    #: Retryable failures until the time budget ran out: dead-letter it.
    BUDGET_SPENT = "budget_spent"
    #: Asked to stop: the batch stays queued.
    STOPPED = "stopped"


@dataclass(frozen=True)
class Result:
    """A delivery's outcome, the attempts it took, and for a failure the reason and the last error."""

    outcome: Outcome
    attempts: int
    reason: str = ""
    error: BaseException | None = None

    @property
    def splittable(self) -> bool:
        """A permanent refusal about the data, which may come from some of the points only."""
        return self.outcome is Outcome.PERMANENT and bool(getattr(self.error, "splittable", False))


class Retrier:
    """Runs ``send(deadline)`` until delivered, permanently refused, out of budget or stopped.

    ``sleep(seconds)`` must return True when it was interrupted by a stop request (as
    ``threading.Event.wait`` does); ``clock()`` is monotonic seconds.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        attempt_timeout_s: float,
        sleep: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        on_failing: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.policy = policy
        self.attempt_timeout_s = attempt_timeout_s
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._on_retry = on_retry
        self._on_failing = on_failing

    def deliver(self, send: Callable[[float], object], stopping: Callable[[], bool]) -> Result:
        """Deliver one batch; ``send`` gets the attempt's deadline on ``clock``."""
        started = self._clock()
        retries = 0
        while True:
            if stopping():
                return Result(Outcome.STOPPED, retries)
            try:
                send(self._clock() + self.attempt_timeout_s)
                return Result(Outcome.DELIVERED, retries + 1)
            except PermanentError as exc:
                return Result(Outcome.PERMANENT, retries + 1, f"permanent error: {exc}", exc)
            except Exception as exc:  # noqa: BLE001 - anything else is worth another try
                retry_after = exc.retry_after_s if isinstance(exc, RetryableError) else None
                delay = self.policy.delay_s(retries, self._rng)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                elapsed = self._clock() - started
                budget = self.policy.max_elapsed_s
                if budget and elapsed + delay > budget:
                    return Result(
                        Outcome.BUDGET_SPENT,
                        retries + 1,
                        f"retry budget of {budget:g}s spent after {retries + 1} attempt(s); last error: {_describe(exc)}",
                        exc,
                    )
                retries += 1
                if self._on_retry is not None:
                    self._on_retry(retries, exc, delay)
                if retries == self.policy.report_after_retries and self._on_failing is not None:
                    self._on_failing(exc)
                if self._sleep(delay):
                    return Result(Outcome.STOPPED, retries)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, RetryableError) else f"{type(exc).__name__}: {text}"
