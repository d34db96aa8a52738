"""One chart trace's points as NumPy columns: :class:`TracePoints`, and :class:`TraceParts` joining chunks lazily.

A trace (one resource and attribute set of a metric) is read as the chunks of its series.
Drawing a long trace needs two of its columns whole (time, and the value drawn) and the rest
only at the few thousand points kept, so :class:`TraceParts` joins the chunks' columns only
as they are asked for: a 1,000,000-point trace costs two arrays of a million, not nine.

Thread safety: build and use one per request; don't share across threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np

from ..model.chunk import SeriesChunk
from .downsample import drawn_values

__all__ = ["TraceParts", "TracePoints"]

_NO_STEP = np.iinfo(np.int64).min


@dataclass(frozen=True)
class TracePoints:
    """Points of one trace, one array per field.

    ``drawn`` is the number each point is drawn at (:func:`~.downsample.drawn_values`; NaN for
    a gap), or None where not asked for. ``int_value`` holds the exact integer of the points
    whose ``is_int`` is set (both None where no point is an integer). ``histogram`` is the
    points' JSON texts, where asked for.
    """

    row_id: np.ndarray
    time_unix_nano: np.ndarray
    start_time_unix_nano: np.ndarray
    step: np.ndarray
    step_missing: np.ndarray
    drawn: np.ndarray | None = None
    int_value: np.ndarray | None = None
    is_int: np.ndarray | None = None
    histogram: list[str | None] | None = None

    @classmethod
    def of(cls, chunk: SeriesChunk, *, drawn: bool = True, histograms: bool = False) -> TracePoints:
        """``chunk``'s points, in its order (its arrays, not copies)."""
        integer = chunk.value.dtype.kind == "i"
        texts = chunk.histogram  # None where no point has one (a chunk may say so for the column)
        return cls(
            row_id=chunk.row_id,
            time_unix_nano=chunk.time_unix_nano,
            start_time_unix_nano=chunk.start_time_unix_nano,
            step=chunk.step,
            step_missing=chunk.step_missing,
            drawn=drawn_values(chunk) if drawn else None,
            int_value=chunk.value if integer else None,
            is_int=~chunk.value_missing if integer else None,
            histogram=([None] * len(chunk) if texts is None else list(texts)) if histograms else None,
        )

    @classmethod
    def join(cls, parts: Sequence[TracePoints]) -> TracePoints:
        """The points of ``parts`` one after the other."""
        if len(parts) == 1:
            return parts[0]
        out: dict[str, Any] = {}
        for f in fields(cls):
            columns = [getattr(part, f.name) for part in parts]
            if all(column is None for column in columns):
                out[f.name] = None
            elif f.name == "histogram":
                out[f.name] = [text for part, column in zip(parts, columns, strict=True) for text in column or [None] * len(part)]
            elif f.name in ("int_value", "is_int"):  # integers in some parts only
                dtype = np.int64 if f.name == "int_value" else np.bool_
                out[f.name] = np.concatenate([np.zeros(len(p), dtype) if c is None else c for p, c in zip(parts, columns, strict=True)])
            else:
                out[f.name] = np.concatenate(columns)
        return cls(**out)

    def __len__(self) -> int:
        return len(self.row_id)

    def take(self, positions: np.ndarray) -> TracePoints:
        """The points at ``positions`` (indices), in that order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, np.ndarray):
                out[f.name] = column[positions]
            elif column is not None:
                out[f.name] = [column[i] for i in positions.tolist()]
            else:
                out[f.name] = None
        return TracePoints(**out)

    def steps(self) -> list[int | None]:
        """Each point's step, None where it has none."""
        return [None if missing else step for step, missing in zip(self.step.tolist(), self.step_missing.tolist(), strict=True)]

    def values(self) -> list[float | int | None]:
        """Each point's drawn value as Python gives it: an int where stored as one, a float, or None (a gap)."""
        if self.drawn is None:
            raise ValueError("TracePoints.drawn: not read (read with drawn=True)")
        out: list[Any] = [None if math.isnan(v) else v for v in self.drawn.tolist()]
        if self.is_int is not None and self.int_value is not None:
            for i in np.flatnonzero(self.is_int).tolist():
                out[i] = int(self.int_value[i])
        return out


class TraceParts:
    """A trace's points as its chunks gave them (:class:`TracePoints` each), seen in time order
    (then step, points without one first, then as written).

    ``time_unix_nano`` and ``drawn`` are the two columns joined whole; :meth:`points` gives
    every column at the positions asked for (of the time order), joining no more than those.
    """

    def __init__(self, parts: Sequence[TracePoints]) -> None:
        if not parts:
            raise ValueError("TraceParts: parts: at least one (got none)")
        self.parts = list(parts)
        self._sizes = np.array([len(part) for part in self.parts], np.int64)

    def __len__(self) -> int:
        return int(self._sizes.sum())

    def _joined(self, name: str) -> np.ndarray:
        columns = [getattr(part, name) for part in self.parts]
        return columns[0] if len(columns) == 1 else np.concatenate(columns)

    @cached_property
    def _whole(self) -> TracePoints:
        return TracePoints.join(self.parts)

    @cached_property
    def _order(self) -> np.ndarray | None:
        """The positions in time order, or None when written in it (the usual case: no sort)."""
        time = self._joined("time_unix_nano")
        if len(time) < 2 or bool((time[1:] > time[:-1]).all()):
            return None
        whole = self._whole
        return np.lexsort((whole.row_id, np.where(whole.step_missing, _NO_STEP, whole.step), whole.time_unix_nano))

    @cached_property
    def time_unix_nano(self) -> np.ndarray:
        time = self._joined("time_unix_nano")
        return time if self._order is None else time[self._order]

    @cached_property
    def drawn(self) -> np.ndarray:
        """Each point's drawn value (the parts must have been read with ``drawn=True``)."""
        if any(part.drawn is None for part in self.parts):
            raise ValueError("TraceParts.drawn: not read (read with drawn=True)")
        drawn = self._joined("drawn")
        return drawn if self._order is None else drawn[self._order]

    def points(self, positions: np.ndarray | None = None) -> TracePoints:
        """Every column at ``positions`` (increasing indices into the time order), or of every point."""
        if self._order is not None:
            return self._whole.take(self._order if positions is None else self._order[positions])
        if positions is None:
            return self._whole
        # Written in time order: each part gives the positions that fall in it.
        ends = np.cumsum(self._sizes)
        cuts = np.searchsorted(positions, ends[:-1])
        pieces = [
            part.take(inside - start)
            for part, inside, start in zip(self.parts, np.split(positions, cuts), ends - self._sizes, strict=True)
            if len(inside)
        ]
        return TracePoints.join(pieces) if pieces else self.parts[0].take(positions[:0])
