"""asyncio versions of the blocking calls: ``aflush``, ``aclose`` and ``async with``.

Logging never blocks, but ``flush`` and ``close`` wait for the sinks (seconds, on a slow
network), which would freeze an event loop and every task on it. The ``a...`` methods run the
blocking call on a thread of its own (named ``otel-recursive-metrics-aflush`` and so on) and
await its answer from the loop, so heartbeats, servers and other coroutines keep running:

    >>> async def train() -> None:
    ...     async with TrainingMetrics(prefix="train.", dir="runs") as metrics:
    ...         for step in range(100):
    ...             metrics.log({"loss": await compute_loss(step)}, step=step)
    ...         delivered = await metrics.aflush(timeout_s=10)

They return what the blocking call returns, within its timeout. Cancelling the awaiting task
abandons the answer, not the work: the flush or close goes on in its thread until it is done
or its own timeout ends, and the pipeline stays usable (a later flush is answered as usual).
The thread is a daemon, so neither ``asyncio.run`` nor the interpreter's exit waits for it;
the pipeline's exit handler puts what memory still holds on disk as it always does.

One thread per call rather than the loop's default executor, on purpose: a flush that was
cancelled would otherwise keep ``asyncio.run`` waiting for the executor at its end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ..model.kinds import RunStatus
from .run_events import status_of

__all__ = ["AsyncCloseMixin", "run_off_loop"]

_log = logging.getLogger(__name__)

# The blocking calls keep to their own timeout; this margin only guards the loop against one
# that would not (a sink stuck in a call with no deadline), so that every await ends.
ANSWER_GRACE_S = 5.0

_Self = TypeVar("_Self", bound="AsyncCloseMixin")


async def run_off_loop(call: Callable[[], bool], *, name: str, timeout_s: float, field: str = "timeout_s") -> bool:
    """Run ``call`` on a new daemon thread called ``name`` and await its answer without blocking.

    ``timeout_s`` is the budget ``call`` keeps to itself; after that plus :data:`ANSWER_GRACE_S`
    the await gives up and answers False (the thread ends on its own). Cancelling the awaiting
    task leaves the thread to finish; an error it raises then is logged instead of lost.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"{field}={timeout_s!r}: expected a number of seconds")
    budget_s = max(0.0, float(timeout_s))
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def settle(result: bool | None, error: BaseException | None) -> None:
        if answer.done():  # cancelled, or given up on: nobody reads the answer
            if error is not None:
                _log.error("otel-recursive-metrics: %s failed after its caller stopped waiting", name, exc_info=error)
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(bool(result))

    def work() -> None:
        result: bool | None = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: its task is long gone
            if error is not None:
                _log.error("otel-recursive-metrics: %s failed after its event loop closed", name, exc_info=error)

    threading.Thread(target=work, name=name, daemon=True).start()
    wait_s = budget_s + ANSWER_GRACE_S if math.isfinite(budget_s) else None
    try:
        done, _ = await asyncio.wait({answer}, timeout=wait_s)
    except asyncio.CancelledError:
        answer.cancel()  # so that the thread's answer is dropped, not left unread
        raise
    if not done:
        answer.cancel()
        _log.warning("otel-recursive-metrics: %s did not answer within %.1f s; reporting it as not delivered", name, wait_s)
        return False
    return answer.result()


class AsyncCloseMixin:
    """``aflush``, ``aclose`` and ``async with`` over a class's blocking ``flush`` and ``close``."""

    if TYPE_CHECKING:

        def flush(self, timeout_s: float = 30.0) -> bool: ...

        def close(self, timeout_s: float = 30.0, *, status: str | RunStatus = RunStatus.FINISHED) -> bool: ...

    async def aflush(self, timeout_s: float = 30.0) -> bool:
        """:meth:`flush` without blocking the event loop; the same answer within ``timeout_s``."""
        return await run_off_loop(lambda: self.flush(timeout_s), name="otel-recursive-metrics-aflush", timeout_s=timeout_s)

    async def aclose(self, timeout_s: float = 30.0, *, status: str | RunStatus = RunStatus.FINISHED) -> bool:
        """:meth:`close` without blocking the event loop; the same answer within ``timeout_s``."""
        status = RunStatus(status)  # a bad status is refused here, in the caller's task
        return await run_off_loop(lambda: self.close(timeout_s, status=status), name="otel-recursive-metrics-aclose", timeout_s=timeout_s)

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose(status=status_of(exc))
