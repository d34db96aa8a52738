"""Points out of the store as CSV or JSON lines, a column at a time rather than an object per point.

``query --format csv|json`` and ``query --follow`` write through :class:`PointWriter`. The points
come in windows of the query's order (:func:`~.ordered_reads.ordered_windows`: NumPy columns,
memory bounded whatever the store's size), and each window becomes text column by column:

- what repeats for every point of a series (its metric's name and kind, its resource's run and
  rank, its attribute set; for JSON also unit, resource, scope, temporality) is formatted once
  per series, as the texts before and after the point's own columns, and spread over the points
  by their series code;
- the numbers become text a column at a time (:mod:`.number_text`), with the format's empty
  value where a point has none (CSV ``""``, JSON ``null``);
- the line is the columns' texts laid side by side and joined once per window.

The output is what the per-point path printed: the same CSV columns and quoting (``csv`` module
rules, ``\\r\\n`` line ends) and the same JSON object per line (key order included; histogram and
extra fields as stored). Floats print as ``repr`` does, the shortest text that reads back as the
same number (full precision: ``2.3456789012`` stays ``2.3456789012``); integers exactly; a value
that is NaN or missing as nothing (CSV) or ``null`` (JSON); the infinities as ``inf`` / ``-inf``
(CSV) and ``Infinity`` / ``-Infinity`` (JSON, as Python's json reads them). A histogram's CSV
value is ``count=N sum=S``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ..model.resource import RANK_KEY, RUN_ID_KEY
from .chunk_index import SeriesKey
from .number_text import Field, float_pieces, int_field, join_rows, text_field
from .ordered_reads import OrderedPoints, SeriesCodes, ordered_windows
from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["CSV_HEADER", "PointWriter", "newest_row_id"]

CSV_HEADER = ("metric", "kind", "run", "rank", "step", "epoch", "value", "time_unix_nano", "attributes")
#: Rows made into text at once: their arrays stay small enough to be reused, not freshly mapped.
BLOCK_ROWS = 16384


def newest_row_id(store: PointStore) -> int:
    """The row id of the newest point in the store (0 if it has none): a snapshot's bound."""
    return int(store.read("SELECT ifnull(max(last_row_id), 0) FROM chunks")[0][0])


def _csv_cells(*cells: Any) -> str:
    """``cells`` as the csv module writes them (quoted where needed), comma-joined, no line end."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()[:-2]


class PointWriter:
    """Writes the points of a :class:`PointQuery` to ``out`` as ``csv`` or ``json`` lines.

    One writer can be called again for newer points (``--follow``): :meth:`write` reads up to
    the newest row id at its start (a snapshot: points written meanwhile wait for the next call)
    and returns it, for the next call's ``after_row_id``; the CSV header goes out once.
    """

    def __init__(self, store: PointStore, fmt: str, out: TextIO) -> None:
        if fmt not in ("csv", "json"):
            raise ValueError(f"format {fmt!r}: expected 'csv' or 'json'")
        self.store, self.fmt, self.out = store, fmt, out
        self.written = 0
        self._header_done = False
        self._codes = SeriesCodes()
        #: Per series code: the texts around a point's own columns (two for CSV, three for JSON).
        self._texts: list[tuple[str, ...]] = []
        self._per_series: list[np.ndarray] = [np.zeros(0, dtype=object)] * 3

    def write(self, query: PointQuery, after_row_id: int | None = None) -> tuple[int, int]:
        """Write the points of ``query`` newer than ``after_row_id``: ``(points written, snapshot row id)``."""
        snapshot = newest_row_id(self.store)
        changes: dict[str, Any] = {"max_row_id": snapshot}
        if after_row_id is not None:
            changes.update(after_row_id=after_row_id, limit=None, last=None)
        if self.fmt == "csv" and not self._header_done:
            self.out.write(",".join(CSV_HEADER) + "\r\n")
            self._header_done = True
        written = 0
        for window in ordered_windows(self.store, dataclasses.replace(query, **changes), codes=self._codes):
            if not len(window):
                continue
            if len(self._texts) < len(self._codes.series):
                self._add_texts(self._codes.series[len(self._texts) :])
            self._write_lines(window)
            written += len(window)
        self.out.flush()
        self.written += written
        return written, snapshot

    def _add_texts(self, series: list[SeriesKey]) -> None:
        """The texts of series not seen before: one read of each small table they need."""
        metrics = self._rows("SELECT id, name, kind, unit, temporality, monotonic FROM metrics", {s.metric_id for s in series})
        resources = self._rows("SELECT id, attributes FROM resources", {s.resource_id for s in series})
        attributes = self._rows("SELECT id, attributes FROM attribute_sets", {s.attributes_id for s in series})
        scopes = self._rows("SELECT id, name FROM scopes", {s.scope_id for s in series}) if self.fmt == "json" else {}
        for key in series:
            name, kind, unit, temporality, monotonic = metrics[key.metric_id]
            (resource,), (attribute_set,) = resources[key.resource_id], attributes[key.attributes_id]
            if self.fmt == "csv":
                attrs = json.loads(resource)
                head = _csv_cells(name, kind, attrs.get(RUN_ID_KEY, ""), attrs.get(RANK_KEY, "")) + ","
                self._texts.append((head, _csv_cells(attribute_set) + "\r\n"))
            else:
                head = '{"metric":' + json.dumps(name) + ',"kind":' + json.dumps(kind) + ',"unit":' + json.dumps(unit) + ',"value":'
                scope = json.dumps(scopes[key.scope_id][0])
                middle = f',"attributes":{attribute_set},"resource":{resource},"scope":{scope},"start_time_unix_nano":'
                tail = f',"temporality":{temporality},"monotonic":{"true" if monotonic else "false"},"histogram":'
                self._texts.append((head, middle, tail))

    def _rows(self, sql: str, ids: set[int]) -> dict[int, tuple[Any, ...]]:
        wanted = sorted(ids)
        found: dict[int, tuple[Any, ...]] = {}
        for lo in range(0, len(wanted), 900):
            part = wanted[lo : lo + 900]
            for row in self.store.read(f"{sql} WHERE id IN ({','.join('?' * len(part))})", part):
                found[row[0]] = tuple(row[1:])
        return found

    def _series_texts(self, codes: np.ndarray, index: int) -> list[str]:
        """The ``index``-th text around the points' own columns, per point (by its series)."""
        per_series = self._per_series[index]
        if len(per_series) < len(self._texts):
            per_series = self._per_series[index] = np.array([texts[index] for texts in self._texts], dtype=object)
        spread: list[str] = per_series[codes].tolist()
        return spread

    def _write_lines(self, points: OrderedPoints) -> None:
        """Write the lines of ``points``, a block of rows at a time (small arrays and texts: memory is reused, not mapped afresh)."""
        columns = _Block.of(points, with_start=self.fmt == "json")
        for lo in range(0, len(points), BLOCK_ROWS):
            block = columns.rows(lo, lo + BLOCK_ROWS)
            self.out.write(self._csv_text(block) if self.fmt == "csv" else self._json_text(block))

    def _csv_text(self, block: _Block) -> str:
        # A row's own columns are one text made with NumPy ("step,epoch,value,time,"); the
        # series' texts around it are spread from the series, and each line joined once.
        own = _segments(
            [
                int_field(block.step, block.step_missing),
                b",",
                int_field(block.epoch, block.epoch_missing),
                b",",
                *_value_pieces(block, nan="", infinities=("inf", "-inf"), histograms=True),
                b",",
                int_field(block.time),
                b",",
                _END,
            ],
            len(block.codes),
        )
        cells: list[str] = [""] * (3 * len(block.codes))
        cells[0::3] = self._series_texts(block.codes, 0)
        cells[1::3] = own
        cells[2::3] = self._series_texts(block.codes, 1)
        return "".join(cells)

    def _json_text(self, block: _Block) -> str:
        assert block.start is not None
        n = len(block.codes)
        own = _segments(
            [
                *_value_pieces(block, nan="null", infinities=("Infinity", "-Infinity"), histograms=False),
                _END,
                int_field(block.start),
                b',"time_unix_nano":',
                int_field(block.time),
                b',"step":',
                int_field(block.step, block.step_missing, "null"),
                b',"epoch":',
                int_field(block.epoch, block.epoch_missing, "null"),
                _END,
            ],
            n,
        )
        cells: list[str] = [""] * (9 * n)
        cells[0::9] = self._series_texts(block.codes, 0)
        cells[1::9] = own[0::2]
        cells[2::9] = self._series_texts(block.codes, 1)
        cells[3::9] = own[1::2]
        cells[4::9] = self._series_texts(block.codes, 2)
        cells[5::9] = _texts_or_null(block.histogram, n)
        cells[6::9] = [',"extra":'] * n
        cells[7::9] = _texts_or_null(block.extra, n)
        cells[8::9] = ["}\n"] * n
        return "".join(cells)


#: Ends each made-by-NumPy part of a line (never in a number's text), to split them apart.
_END = b"\x00"


def _segments(pieces: list[Field | bytes], rows: int) -> list[str]:
    """The texts ``pieces`` make for ``rows`` rows, cut at each :data:`_END` (the piece after the last one left out)."""
    texts = join_rows(pieces, rows).decode("ascii").split("\x00")
    texts.pop()
    return texts


def _texts_or_null(texts: list[str | None] | None, n: int) -> list[str]:
    """JSON texts, ``null`` for None."""
    if texts is None:
        return ["null"] * n
    return ["null" if t is None else t for t in texts]


@dataclasses.dataclass(frozen=True)
class _Block:
    """The columns a line needs, for some consecutive points."""

    codes: np.ndarray
    time: np.ndarray
    start: np.ndarray | None
    step: np.ndarray
    step_missing: np.ndarray
    epoch: np.ndarray
    epoch_missing: np.ndarray
    value: np.ndarray
    value_missing: np.ndarray
    is_int: np.ndarray
    int_value: np.ndarray
    histogram: list[str | None] | None
    extra: list[str | None] | None

    @classmethod
    def of(cls, points: OrderedPoints, *, with_start: bool) -> _Block:
        return cls(
            points.codes,
            points.time_unix_nano,
            points.start_time_unix_nano if with_start else None,
            points.step,
            points.step_missing,
            points.epoch,
            points.epoch_missing,
            points.value,
            points.value_missing,
            points.is_int,
            points.int_value,
            points.histogram,
            points.extra,
        )

    def rows(self, lo: int, hi: int) -> _Block:
        columns = (getattr(self, f.name) for f in dataclasses.fields(self))
        sliced: list[Any] = [None if column is None else column[lo:hi] for column in columns]
        return _Block(*sliced)


def _value_pieces(block: _Block, *, nan: str, infinities: tuple[str, str], histograms: bool) -> list[Field]:
    """Each point's value: integers exactly, floats as ``repr``, ``nan`` for none or NaN (CSV: a histogram's count and sum)."""
    ints = block.is_int & ~block.value_missing
    texts: list[str] = []
    special = np.zeros(len(ints), bool)
    if histograms and block.histogram is not None:
        for i in np.flatnonzero(block.value_missing | np.isnan(block.value)).tolist():
            text = block.histogram[i]
            if text is not None:
                special[i] = True
                texts.append(_histogram_text(text))
    pieces = float_pieces(block.value, nan=nan, infinities=infinities, skip=ints | special)
    if ints.any():
        pieces.append(int_field(block.int_value, ~ints))
    if texts:
        given = text_field(texts)
        matrix = np.zeros((len(ints), given.matrix.shape[1]), np.uint8)
        matrix[special] = given.matrix
        end = np.zeros(len(ints), np.int64)
        end[special] = given.end
        pieces.append(Field(matrix, np.zeros(len(ints), np.int64), end))
    return pieces


def _histogram_text(histogram: str) -> str:
    data = json.loads(histogram)
    return _csv_cells(f"count={data['count']} sum={data['sum']!r}")
