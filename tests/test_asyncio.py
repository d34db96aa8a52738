"""asyncio: aflush, aclose, ``async with`` and the collector's aflush/astop never block the loop.

Each test runs a heartbeat task ticking every 20 ms beside an await that waits about 2 s on a
real OTLP/HTTP receiver on loopback that delays its answers, and checks what the heartbeat saw
while the await was pending: many ticks and no gap anywhere near the wait's length (a loop
blocked by the flush would show no tick at all and one gap as long as the flush).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from otel_recursive_metrics.async_metrics_collector import AsyncMetricsCollector
from otel_recursive_metrics.store import PointStore
from otel_recursive_metrics.training import TrainingMetrics, aio

from .otlp_receiver import Fault, HttpReceiver, wait_until

T = TypeVar("T")

SLOW_S = 2.0  # how long the receiver holds every request
TICK_S = 0.02
FAST = {"retry_delay_s": 0.05, "retry_max_delay_s": 0.2, "retry_jitter": 0.0, "flush_interval_s": 0.05, "shutdown_grace_s": 30.0}


@pytest.fixture
def slow_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        receiver.set_fault(Fault(delay_s=SLOW_S))  # a success, after SLOW_S
        yield receiver


def otlp_settings(receiver: HttpReceiver, data_dir: Path) -> dict[str, Any]:
    return {**FAST, "sinks": "otlp", "dir": data_dir, "otlp_endpoint": receiver.endpoint, "otlp_protocol": "http/protobuf"}


def aio_threads() -> list[str]:
    """The threads the ``a...`` methods run their blocking calls on, alive now."""
    names = {"aflush", "aclose", "collector-aflush", "collector-astop"}
    return [t.name for t in threading.enumerate() if t.name.removeprefix("otel-recursive-metrics-") in names]


class Heartbeat:
    """A task that notes the time every 20 ms, and what it saw while something else was awaited."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.aio_threads_seen: set[str] = set()

    async def beat(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            self.aio_threads_seen.update(aio_threads())
            await asyncio.sleep(TICK_S)

    async def beside(self, awaitable: Awaitable[T]) -> tuple[T, float, float]:
        """Await ``awaitable`` while beating; its result and when the await started and ended."""
        task = asyncio.ensure_future(self.beat())
        await asyncio.sleep(5 * TICK_S)  # the heartbeat is running before the await starts
        started = time.monotonic()
        try:
            result = await awaitable
        finally:
            ended = time.monotonic()
            task.cancel()
        return result, started, ended

    def assert_kept_ticking(self, started: float, ended: float) -> None:
        pending_s = ended - started
        assert pending_s >= SLOW_S / 2, f"the await took {pending_s:.2f} s: it did not wait on the slow receiver"
        during = [t for t in self.ticks if started <= t <= ended]
        gaps = [b - a for a, b in zip([started, *during], [*during, ended], strict=True)]
        assert len(during) >= 10, f"{len(during)} heartbeat ticks in {pending_s:.2f} s: the loop was blocked"
        assert max(gaps) < pending_s / 2, f"the heartbeat stopped for {max(gaps):.2f} s of a {pending_s:.2f} s await"


# -- TrainingMetrics ---------------------------------------------------------------------------------


def test_aflush_on_a_slow_sink_keeps_the_heartbeat_ticking_and_answers_as_flush(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    metrics = TrainingMetrics(prefix="train.", **otlp_settings(slow_receiver, data_dir))
    heartbeat = Heartbeat()

    async def main() -> tuple[bool, float, float]:
        for step in range(20):
            metrics.log({"loss": 1.0 / (step + 1)}, step=step)
        return await heartbeat.beside(metrics.aflush(timeout_s=30))

    delivered, started, ended = asyncio.run(main())
    assert delivered is True
    assert slow_receiver.points_accepted >= 20
    heartbeat.assert_kept_ticking(started, ended)
    assert "otel-recursive-metrics-aflush" in heartbeat.aio_threads_seen, "the flush runs on a named thread of its own"
    assert metrics.close(10)


def test_aclose_on_a_slow_sink_keeps_the_heartbeat_ticking_and_shuts_the_pipeline_down(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    metrics = TrainingMetrics(prefix="train.", **otlp_settings(slow_receiver, data_dir))
    heartbeat = Heartbeat()

    async def main() -> tuple[bool, float, float]:
        metrics.log({"loss": 0.5, "accuracy": 0.9}, step=0)
        return await heartbeat.beside(metrics.aclose(timeout_s=30))

    closed, started, ended = asyncio.run(main())
    assert closed is True
    assert metrics.pipeline.closed
    assert slow_receiver.points_accepted >= 2
    heartbeat.assert_kept_ticking(started, ended)
    assert "otel-recursive-metrics-aclose" in heartbeat.aio_threads_seen


def test_async_with_closes_on_exit_without_blocking_the_loop(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    heartbeat = Heartbeat()

    async def body() -> TrainingMetrics:
        async with TrainingMetrics(prefix="train.", **otlp_settings(slow_receiver, data_dir)) as metrics:
            metrics.log({"loss": 0.5}, step=0)
        return metrics

    metrics, started, ended = asyncio.run(heartbeat.beside(body()))
    assert metrics.pipeline.closed
    assert slow_receiver.points_accepted >= 1
    heartbeat.assert_kept_ticking(started, ended)


def test_async_with_records_the_run_as_failed_on_an_exception_and_finished_otherwise(tmp_path: Path) -> None:
    async def train(folder: Path, fail: bool) -> None:
        async with TrainingMetrics(prefix="train.", dir=folder, flush_interval_s=0.05) as metrics:
            metrics.log({"loss": 1.0}, step=0)
            if fail:
                raise ValueError("diverged")

    with pytest.raises(ValueError, match="diverged"):
        asyncio.run(train(tmp_path / "failed", fail=True))
    asyncio.run(train(tmp_path / "finished", fail=False))
    (failed,) = PointStore(tmp_path / "failed" / "metrics.db", readonly=True).runs()
    (finished,) = PointStore(tmp_path / "finished" / "metrics.db", readonly=True).runs()
    assert (failed["status"], finished["status"]) == ("failed", "finished")
    assert failed["points"] >= 1


def test_aclose_passes_its_status_and_refuses_an_unknown_one_in_the_callers_task(tmp_path: Path) -> None:
    metrics = TrainingMetrics(dir=tmp_path / "d", flush_interval_s=0.05)
    metrics.log({"loss": 1.0}, step=0)
    with pytest.raises(ValueError, match="bogus"):
        asyncio.run(metrics.aclose(10, status="bogus"))
    assert asyncio.run(metrics.aclose(10, status="killed")) is True
    (run,) = PointStore(tmp_path / "d" / "metrics.db", readonly=True).runs()
    assert run["status"] == "killed"


def test_cancelling_an_aflush_leaves_the_flush_to_finish_and_the_pipeline_usable(
    slow_receiver: HttpReceiver, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = TrainingMetrics(prefix="train.", **otlp_settings(slow_receiver, data_dir))

    async def cancel_while_pending() -> bool:
        metrics.log({"loss": 1.0}, step=0)
        flush = asyncio.ensure_future(metrics.aflush(timeout_s=30))
        await asyncio.sleep(0.3)
        assert not flush.done(), "the flush waits on the slow receiver"
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        return flush.cancelled()

    with caplog.at_level(logging.WARNING):
        # The loop is closed before the abandoned flush answers: its answer is dropped quietly.
        assert asyncio.run(cancel_while_pending())
        wait_until(lambda: not aio_threads(), 30, "the abandoned flush thread to end")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert slow_receiver.points_accepted >= 1, "the flush went on after its caller stopped waiting"

    slow_receiver.set_fault(None)
    metrics.log({"loss": 0.5}, step=1)
    assert asyncio.run(metrics.aflush(timeout_s=30)) is True
    assert slow_receiver.points_accepted >= 2
    assert metrics.close(10)


def test_cancelling_an_aclose_still_closes_and_delivers(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    metrics = TrainingMetrics(prefix="train.", **otlp_settings(slow_receiver, data_dir))

    async def cancel_while_pending() -> None:
        metrics.log({"loss": 1.0}, step=0)
        close = asyncio.ensure_future(metrics.aclose(timeout_s=30))
        await asyncio.sleep(0.3)
        close.cancel()
        with pytest.raises(asyncio.CancelledError):
            await close

    asyncio.run(cancel_while_pending())
    wait_until(lambda: metrics.pipeline.closed and not aio_threads(), 30, "the abandoned close to finish")
    assert slow_receiver.points_accepted >= 1, "the close went on after its caller stopped waiting"


def test_an_await_whose_call_ignores_its_timeout_still_ends(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.05)
    release = threading.Event()

    def stuck_flush(timeout_s: float = 30.0) -> bool:  # a sink stuck in a call with no deadline, at the seam
        return release.wait(60)

    monkeypatch.setattr(metrics, "flush", stuck_flush)
    monkeypatch.setattr(aio, "ANSWER_GRACE_S", 0.2)
    heartbeat = Heartbeat()
    try:
        answer, started, ended = asyncio.run(heartbeat.beside(metrics.aflush(timeout_s=0.1)))
    finally:
        release.set()
    assert answer is False
    assert [t for t in heartbeat.ticks if started <= t <= ended], "the loop ran while it waited"
    monkeypatch.undo()
    assert metrics.close(10)


def test_a_timeout_that_is_not_a_number_is_refused_naming_the_field(data_dir: Path) -> None:
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.05)
    with pytest.raises(TypeError, match=r"timeout_s='soon'"):
        asyncio.run(metrics.aflush(timeout_s="soon"))  # type: ignore[arg-type]
    collector = AsyncMetricsCollector({"dir": data_dir / "c"})
    with pytest.raises(TypeError, match=r"timeout='soon'"):
        asyncio.run(collector.aflush(timeout="soon"))  # type: ignore[arg-type]
    assert collector.stop(True, 10)
    assert metrics.close(10)


# -- the seed's collector ----------------------------------------------------------------------------


def test_collector_aflush_and_astop_on_a_slow_sink_keep_the_heartbeat_ticking(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    collector = AsyncMetricsCollector(otlp_settings(slow_receiver, data_dir))
    flush_beat, stop_beat = Heartbeat(), Heartbeat()

    async def main() -> tuple[tuple[bool, float, float], tuple[bool, float, float]]:
        for step in range(10):
            collector.submit_metric({"metric_name": "reward", "value": float(step), "step": step})
        flushed = await flush_beat.beside(collector.aflush(timeout=30))
        collector.submit_metric({"metric_name": "reward", "value": 10.0, "step": 10})
        stopped = await stop_beat.beside(collector.astop(wait_for_completion=True, timeout=30))
        return flushed, stopped

    (flushed, *flush_span), (stopped, *stop_span) = asyncio.run(main())
    assert (flushed, stopped) == (True, True)
    assert not collector.running
    assert collector.get_stats()["metrics_processed"] == 11
    flush_beat.assert_kept_ticking(*flush_span)
    stop_beat.assert_kept_ticking(*stop_span)
    assert "otel-recursive-metrics-collector-aflush" in flush_beat.aio_threads_seen
    assert "otel-recursive-metrics-collector-astop" in stop_beat.aio_threads_seen


def test_collector_astop_without_waiting_stops_at_once_as_stop_does(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    collector = AsyncMetricsCollector(otlp_settings(slow_receiver, data_dir))
    collector.submit_metric({"metric_name": "reward", "value": 1.0, "step": 0})
    assert asyncio.run(collector.astop(wait_for_completion=False)) is False, "nothing was delivered yet"
    assert not collector.running
    assert collector.get_stats()["metrics_processed"] == 0


def test_cancelling_a_collector_aflush_leaves_the_collector_usable(slow_receiver: HttpReceiver, data_dir: Path) -> None:
    collector = AsyncMetricsCollector(otlp_settings(slow_receiver, data_dir))

    async def cancel_then_flush_again() -> bool:
        collector.submit_metric({"metric_name": "reward", "value": 1.0, "step": 0})
        flush = asyncio.ensure_future(collector.aflush(timeout=30))
        await asyncio.sleep(0.3)
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        slow_receiver.set_fault(None)
        collector.submit_metric({"metric_name": "reward", "value": 2.0, "step": 1})
        return await collector.aflush(timeout=30)

    assert asyncio.run(cancel_then_flush_again()) is True
    assert collector.get_stats()["metrics_processed"] == 2
    assert asyncio.run(collector.astop(timeout=10)) is True
