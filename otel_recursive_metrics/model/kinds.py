"""The closed vocabularies of the model: metric kinds, run statuses, overflow policies, loss outcomes.

Each is a ``str`` enum: a member equals its text (``MetricKind.GAUGE == "gauge"``), which is what
the store's tables, the queue's payloads and the dead letters hold, so files written before these
types existed read the same; code compares and dispatches on the members, never on literals.
"""

from __future__ import annotations

import enum

__all__ = ["HISTOGRAM_KINDS", "LossOutcome", "MetricKind", "OverflowPolicy", "RunStatus"]


class MetricKind(str, enum.Enum):
    """A metric's OTLP data kind, as the store and the batch name it."""

    GAUGE = "gauge"
    SUM = "sum"
    HISTOGRAM = "histogram"
    EXPONENTIAL_HISTOGRAM = "exponential_histogram"

    def __str__(self) -> str:
        return self.value


#: The kinds whose points carry a ``histogram`` field instead of a value; a kind's stored text
#: is found in it too (``"histogram" in HISTOGRAM_KINDS``).
HISTOGRAM_KINDS = frozenset({MetricKind.HISTOGRAM, MetricKind.EXPONENTIAL_HISTOGRAM})


class RunStatus(str, enum.Enum):
    """How a run (or one process of it) stands: what ``runs`` shows and an ``end`` event records."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # an exception ended it
    KILLED = "killed"  # SIGTERM or Ctrl-C
    CRASHED = "crashed"  # its process vanished without an end (kill -9, out of memory)
    UNKNOWN = "unknown"  # no process recorded: points written without the SDK's run events

    def __str__(self) -> str:
        return self.value


class OverflowPolicy(str, enum.Enum):
    """What a full memory buffer does with one more item (the ``overflow`` setting)."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    BLOCK = "block"  # wait up to block_timeout_s, then drop the newest

    def __str__(self) -> str:
        return self.value


class LossOutcome(str, enum.Enum):
    """What an error callback is told happened to the points in its context (``context["outcome"]``)."""

    DEAD_LETTERED = "dead_lettered"  # kept in the dead-letter queue, replayable
    FAILING = "failing"  # not lost yet: a sink or the queue refuses, and it is retried
    DROPPED = "dropped"  # lost, and counted in get_stats()["dropped_points"] by reason

    def __str__(self) -> str:
        return self.value
