"""The sink protocol, the function that builds the configured sinks, and what a sink's name says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import Config
    from ..model.batch import PointBatch

__all__ = ["Sink", "build_sinks", "is_local_sink"]


@runtime_checkable
class Sink(Protocol):
    """Delivers a batch or raises a classified error; called from one worker thread at a time."""

    name: str
    #: True for a sink that writes on this machine (the store), False for one that sends over the
    #: network (what ``offline`` leaves to ``sync``).
    is_local: bool
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


def is_local_sink(name: str) -> bool:
    """Whether the sink called ``name`` writes on this machine: its class's :attr:`Sink.is_local`, without building it."""
    if name == "store":
        from .store import StoreSink

        return StoreSink.is_local
    if name == "otlp":
        from .otlp.base import OtlpSink

        return OtlpSink.is_local
    raise ValueError(f"unknown sink {name!r}")  # load_config already refuses other names
