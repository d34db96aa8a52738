"""Points in time order as NumPy columns made on demand: what :mod:`.ordered_reads` yields.

A read gathers :class:`ChunkPart` s (some points of one chunk, so of one series, in time order)
into :class:`OrderedPoints`, which sorts them once (time, then step with step-less points first,
then row id: the order SQL gave with ``ORDER BY time, step, id``) and makes each column only when
a reader asks for it: a DataFrame needs five, a CSV line eight. Each point's series is a small
code (:class:`SeriesCodes`), so what repeats for a series is looked up once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from ..model.chunk import SeriesChunk
from .chunk_index import SeriesKey
from .scan import Columns

__all__ = ["NO_STEP", "ChunkPart", "OrderedPoints", "SeriesCodes", "chunk_part"]

#: A step-less point's step, as a sort key: before every step, as SQL sorted NULL.
NO_STEP = np.iinfo(np.int64).min


class SeriesCodes:
    """Small integer codes for the series met during one read: ``series[code]`` is the series' key."""

    def __init__(self) -> None:
        self.series: list[SeriesKey] = []
        self._codes: dict[SeriesKey, int] = {}

    def code(self, key: SeriesKey) -> int:
        found = self._codes.get(key)
        if found is None:
            found = self._codes[key] = len(self.series)
            self.series.append(key)
        return found

    def table(self) -> np.ndarray:
        """The series' ids as a (series, 4) array: metric, resource, scope, attribute set."""
        return np.array(self.series, dtype=np.int64).reshape(-1, 4)


class ChunkPart(NamedTuple):
    """Points of one chunk: the arrays a window is joined from (texts: None where the chunk has none)."""

    code: int
    time: np.ndarray
    start: np.ndarray
    step: np.ndarray  # NO_STEP where the point has none
    epoch: np.ndarray
    epoch_missing: np.ndarray
    value: np.ndarray  # int64 or float64, as the chunk holds it
    value_missing: np.ndarray
    row_id: np.ndarray
    histogram: np.ndarray | None
    extra: np.ndarray | None

    def copy(self) -> ChunkPart:
        """The same points in arrays of their own (a slice's copy lets the whole chunk's arrays go)."""
        copied: list[Any] = [None if a is None else a.copy() for a in self[1:]]
        return ChunkPart(self.code, *copied)

    def pick(self, rows: Any) -> ChunkPart:
        """The points at ``rows`` (a slice, indices or a mask)."""
        picked: list[Any] = [None if a is None else a[rows] for a in self[1:]]
        return ChunkPart(self.code, *picked)


def _texts(texts: Sequence[str | None] | None, wanted: bool) -> np.ndarray | None:
    """A chunk's text column as an object array, or None (not wanted, or no point has one)."""
    if not wanted or texts is None:
        return None
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def chunk_part(code: int, chunk: SeriesChunk, *, texts: bool, keep: np.ndarray | None = None) -> ChunkPart:
    """``chunk``'s points (those ``keep`` marks, if given) in time order (a stable sort if they are not).

    ``texts=False`` leaves the histogram and extra texts out.
    """
    step = np.where(chunk.step_missing, NO_STEP, chunk.step) if chunk.step_missing.any() else chunk.step
    part = ChunkPart(
        code,
        chunk.time_unix_nano,
        chunk.start_time_unix_nano,
        step,
        chunk.epoch,
        chunk.epoch_missing,
        chunk.value,
        chunk.value_missing,
        chunk.row_id,
        _texts(chunk.histogram, texts),
        _texts(chunk.extra, texts),
    )
    if keep is not None and not keep.all():
        part = part.pick(keep)
    times = part.time
    if len(times) > 1 and not (times[1:] >= times[:-1]).all():
        part = part.pick(np.argsort(times, kind="stable"))
    return part


class OrderedPoints:
    """Points in time order (then step, step-less first, then row id); each column is made when first asked for.

    ``codes`` gives each point's series as an index into ``series`` (the keys of a
    :class:`SeriesCodes`). ``value`` is float64 (NaN where a point has none); ``is_int`` /
    ``int_value`` hold integer values exactly; ``histogram`` / ``extra`` are lists of JSON
    texts or None, or None if no point has one.
    """

    def __init__(self, parts: Sequence[ChunkPart], series: Sequence[SeriesKey], order: np.ndarray | None = None) -> None:
        # Parts in row-id order: each key of the sort is then a few increasing runs, which the
        # stable sorts merge quickly.
        self._parts = sorted(parts, key=lambda p: int(p.row_id[0])) if len(parts) > 1 else list(parts)
        self.series = series
        self.order = self._order() if order is None else order

    def _order(self) -> np.ndarray:
        times = self._joined("time")
        if len(self._parts) <= 1 and (len(times) < 2 or (times[1:] > times[:-1]).all()):
            return np.arange(len(times))  # one chunk, no time twice: already in order
        return np.lexsort((self._joined("row_id"), self._joined("step"), times))

    def _size(self) -> int:
        return sum(len(p.time) for p in self._parts)

    def __len__(self) -> int:
        return len(self.order)

    def _joined(self, name: str) -> np.ndarray:
        arrays: list[np.ndarray] = [getattr(p, name) for p in self._parts]
        if not arrays:
            return np.zeros(0, bool if name.endswith("_missing") else np.int64)
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    def _sorted(self, name: str) -> np.ndarray:
        joined = self._joined(name)
        return joined if len(joined) == len(self.order) and self._is_identity else joined[self.order]

    @cached_property
    def _is_identity(self) -> bool:
        return len(self._parts) <= 1 and bool(len(self.order) == self._size() and (np.diff(self.order) == 1).all())

    def take(self, rows: Any) -> OrderedPoints:
        """The points at ``rows`` (indices, a slice or a mask of this order), in that order."""
        return OrderedPoints(self._parts, self.series, self.order[rows])

    @cached_property
    def codes(self) -> np.ndarray:
        sizes = [len(p.time) for p in self._parts]
        codes: np.ndarray = np.repeat(np.array([p.code for p in self._parts], dtype=np.int64), sizes)[self.order]
        return codes

    @cached_property
    def time_unix_nano(self) -> np.ndarray:
        return self._sorted("time")

    @cached_property
    def start_time_unix_nano(self) -> np.ndarray:
        return self._sorted("start")

    @cached_property
    def _step_key(self) -> np.ndarray:
        return self._sorted("step")

    @cached_property
    def step_missing(self) -> np.ndarray:
        missing: np.ndarray = self._step_key == NO_STEP
        return missing

    @cached_property
    def step(self) -> np.ndarray:
        """Each point's step (0 where it has none: see ``step_missing``)."""
        return np.where(self.step_missing, 0, self._step_key) if self.step_missing.any() else self._step_key

    @cached_property
    def epoch(self) -> np.ndarray:
        return self._sorted("epoch")

    @cached_property
    def epoch_missing(self) -> np.ndarray:
        return self._sorted("epoch_missing")

    @cached_property
    def value_missing(self) -> np.ndarray:
        return self._sorted("value_missing")

    @cached_property
    def row_id(self) -> np.ndarray:
        return self._sorted("row_id")

    @cached_property
    def is_int(self) -> np.ndarray:
        sizes = [len(p.time) for p in self._parts]
        kinds = np.array([p.value.dtype.kind == "i" for p in self._parts], dtype=bool)
        is_int: np.ndarray = np.repeat(kinds, sizes)[self.order]
        return is_int

    @cached_property
    def value(self) -> np.ndarray:
        """Every value as float64, NaN where a point has none."""
        arrays = [p.value.astype(np.float64, copy=False) for p in self._parts]
        values = (arrays[0] if len(arrays) == 1 else np.concatenate(arrays)) if arrays else np.zeros(0)
        ordered: np.ndarray = values[self.order]
        if self.value_missing.any():
            ordered[self.value_missing] = np.nan
        return ordered

    @cached_property
    def int_value(self) -> np.ndarray:
        """Integer values exactly (0 where ``is_int`` is False)."""
        if not self.is_int.any():
            return np.zeros(len(self), np.int64)
        ints = np.concatenate([p.value if p.value.dtype.kind == "i" else np.zeros(len(p.value), np.int64) for p in self._parts])
        ordered: np.ndarray = ints[self.order]
        return ordered

    def _text(self, name: str) -> list[str | None] | None:
        given: list[np.ndarray | None] = [getattr(p, name) for p in self._parts]
        if all(texts is None for texts in given):
            return None
        column = np.concatenate(
            [np.full(len(p.time), None, dtype=object) if t is None else t for p, t in zip(self._parts, given, strict=True)]
        )
        texts: list[str | None] = column[self.order].tolist()
        return texts

    @cached_property
    def histogram(self) -> list[str | None] | None:
        return self._text("histogram")

    @cached_property
    def extra(self) -> list[str | None] | None:
        return self._text("extra")

    def columns(self) -> Columns:
        """All the columns, as :func:`~.scan.gather` gives them (every array made)."""
        table = np.array(self.series, dtype=np.int64).reshape(-1, 4)[self.codes] if len(self) else np.zeros((0, 4), np.int64)
        return Columns(
            metric_id=table[:, 0],
            resource_id=table[:, 1],
            scope_id=table[:, 2],
            attributes_id=table[:, 3],
            row_id=self.row_id,
            time_unix_nano=self.time_unix_nano,
            start_time_unix_nano=self.start_time_unix_nano,
            step=self.step,
            step_missing=self.step_missing,
            epoch=self.epoch,
            epoch_missing=self.epoch_missing,
            value=self.value,
            value_missing=self.value_missing,
            is_int=self.is_int,
            int_value=self.int_value,
            histogram=self.histogram,
            extra=self.extra,
        )
