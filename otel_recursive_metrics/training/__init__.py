"""The training-loop API: :class:`TrainingMetrics` logs every step as its own points."""

from __future__ import annotations

from .metrics import TrainingMetrics, next_time_unix_nano, to_index, to_number

__all__ = ["TrainingMetrics", "next_time_unix_nano", "to_index", "to_number"]
