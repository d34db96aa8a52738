"""The exceptions this package raises, and how delivery errors are classified.

Delivery errors carry their class, as the Collector's exporterhelper does: a sink raises
:class:`PermanentError` for data the receiver will never accept (it goes straight to the
dead-letter queue) and :class:`RetryableError` for a failure worth trying again, optionally with
the delay the receiver asked for (``Retry-After`` / ``RetryInfo``). Only the retry stage decides
what to do with them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "DeliveryError",
    "MetricValueError",
    "PermanentError",
    "RetryableError",
    "StoreVersionError",
]


class ConfigError(ValueError):
    """An invalid configuration; ``problems`` lists every bad field at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid otel-recursive-metrics configuration ({len(self.problems)} problem(s)):\n{lines}")


class StoreVersionError(ValueError):
    """A store file written by a newer schema version than this package reads; one line, naming both."""

    def __init__(self, path: object, version: object, supported: int) -> None:
        self.path = path
        self.version = version
        self.supported = supported
        super().__init__(
            f"store {path} has schema version {version}; this otel-recursive-metrics reads up to version {supported}:"
            " upgrade the package (in your clone: git pull, then pip install -e .)"
        )


class MetricValueError(ValueError):
    """A metric record or value refused at the call, naming the field and the value."""


class DeliveryError(Exception):
    """A sink failed to deliver a batch."""


class PermanentError(DeliveryError):
    """The receiver will never accept this batch: dead-letter it without retrying.

    ``splittable``: the refusal is about the data (an HTTP 400, gRPC ``INVALID_ARGUMENT``, a
    value the store cannot hold), so it may come from one point only. The delivery stage then
    sends the halves apart to dead-letter the offending points alone. An error about the
    request as a whole (a bad token, a wrong path) is not splittable: every part would fail.
    """

    def __init__(self, message: str, *, splittable: bool = False) -> None:
        super().__init__(message)
        self.splittable = splittable


class RetryableError(DeliveryError):
    """A transient failure; ``retry_after_s`` is the receiver's requested minimum wait, if any."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
