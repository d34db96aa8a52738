"""What the framework callbacks share: name cleaning, value filtering, hyperparameter records."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ..errors import MetricValueError
from ..training.metrics import TrainingMetrics, to_number

__all__ = ["FrameworkLogger", "clean_name"]

_log = logging.getLogger(__name__)
_INVALID = re.compile(r"[^A-Za-z0-9_.\-/]")


def clean_name(key: str) -> str:
    """A framework's log key as a valid metric name: other characters become ``_``."""
    name = _INVALID.sub("_", str(key))
    if not name or not name[0].isalpha():
        name = "m_" + name
    return name[:255]


class FrameworkLogger:
    """Turns a framework's ``{key: value}`` logs into :meth:`TrainingMetrics.log` calls."""

    def __init__(
        self,
        prefix: str = "",
        *,
        metrics: TrainingMetrics | None = None,
        attributes: Mapping[str, Any] | None = None,
        rank_zero_only: bool = False,
        flush_timeout_s: float = 30.0,
        **options: Any,
    ) -> None:
        if metrics is None:
            metrics = TrainingMetrics(prefix=prefix, attributes=attributes, rank_zero_only=rank_zero_only, **options)
        self.metrics = metrics
        self.flush_timeout_s = flush_timeout_s
        self.skipped_values = 0
        self._names: dict[str, str] = {}
        self._warned_skip = False

    def log(self, logs: Mapping[str, Any], *, step: int, epoch: int | None = None, prefix: str = "") -> None:
        """Log the numeric items of ``logs``; others are skipped and counted, never raised."""
        values: dict[str, float | int] = {}
        for key, value in logs.items():
            name = self._names.get(key) if not prefix else None
            if name is None:
                name = clean_name(prefix + str(key))
                if not prefix:
                    self._names[key] = name
            try:
                values[name] = to_number(name, value)
            except MetricValueError as exc:
                self.skipped_values += 1
                if not self._warned_skip:
                    self._warned_skip = True
                    _log.warning("otel-recursive-metrics: skipped a non-numeric logged value (%s); further ones are counted", exc)
        if values:
            self.metrics.log(values, step=max(0, int(step)), epoch=None if epoch is None else max(0, int(epoch)))

    def log_hyperparams(self, params: Any) -> None:
        """Record ``params`` (a mapping, Namespace or dataclass) as the run's parameters (``log_params``)."""
        if self.metrics.muted:
            return
        if not isinstance(params, Mapping):
            params = dict(vars(params)) if hasattr(params, "__dict__") else {"value": str(params)}
        self.metrics.log_params(_jsonable(params))

    def flush(self) -> bool:
        return self.metrics.flush(self.flush_timeout_s)


def _jsonable(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if depth > 8:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)
