"""The sink protocol and the function that builds the configured sinks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import Config
    from ..model.batch import PointBatch

__all__ = ["Sink", "build_sinks"]


@runtime_checkable
class Sink(Protocol):
    """Delivers a batch or raises a classified error; called from one worker thread at a time."""

    name: str
    #: Points the receiver accepted the request for but refused (OTLP ``partial_success``),
    #: cumulative; never retried. 0 for sinks that only refuse whole batches.
    rejected_points: int

    def send(self, batch: PointBatch, deadline: float) -> None:
        """Deliver ``batch`` before ``deadline`` (``time.monotonic()`` seconds) or raise."""

    def close(self) -> None:
        """Release connections; never blocks for long."""


def build_sinks(config: Config) -> list[Sink]:
    """One sink per name in ``config.sinks``, in that order."""
    sinks: list[Sink] = []
    for name in config.sinks:
        if name == "store":
            from .store import StoreSink

            sinks.append(StoreSink(config.resolved_store_path))
        elif name == "otlp":
            from .otlp import build_otlp_sink

            sinks.append(build_otlp_sink(config))
        else:  # load_config already refuses other names
            raise ValueError(f"unknown sink {name!r}")
    return sinks
