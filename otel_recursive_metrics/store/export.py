"""Points out of the store as CSV or JSON lines, at SQLite's pace rather than an object's per point.

``query --format csv|json`` and ``query --follow`` write through :class:`PointWriter`. The
general reading path (:meth:`PointStore.iter_query`) joins four tables and makes a
:class:`~.points.StoredPoint` per row, with its attributes and resource parsed from JSON: about
25 µs a point, so a million-step run took half a minute to export. Here a row is numbers only:
one key packing the point's metric, resource, attribute set (and, for JSON, scope) ids, then
its own columns. Everything that repeats (a metric's name and kind, a resource's run and rank,
an attribute set's text) is formatted once per key and reused, and each row is one f-string:

- SQLite turns NULL steps and epochs into the format's empty value, and the infinities into
  JSON's ``Infinity`` tokens, so Python never tests a column;
- floats print with ``repr``'s shortest text that reads back as the same number (full
  precision: ``2.3456789012`` stays ``2.3456789012``). SQLite's own float-to-text keeps 15
  digits, and building the lines inside SQLite measured slower than this;
- the texts of a key are made when the key first shows up (a store may hold millions of
  attribute sets: one per sample when attributes carry a sample id).

Where the time goes at a million rows (``benchmarks/run.py`` row 9): about half in the sqlite3
module making a Python object per column, a quarter in SQLite's sort into time order, a quarter
in the f-strings. The output is what the per-point path printed: the same CSV columns and quoting
(``csv`` module rules, ``\\r\\n`` line ends), and the same JSON object per line (key order
included; histogram and extra fields as stored). The filters and order are
:class:`~.points.PointQuery`'s.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import TYPE_CHECKING, Any, TextIO

from ..model.resource import RANK_KEY, RUN_ID_KEY
from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["CSV_HEADER", "PointWriter"]

CSV_HEADER = ("metric", "kind", "run", "rank", "step", "epoch", "value", "time_unix_nano", "attributes")

#: Rows read from SQLite at a time.
CHUNK_ROWS = 16384


def _csv_cells(*cells: Any) -> str:
    """``cells`` as the csv module writes them (quoted where needed), comma-joined, no line end."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()[:-2]


class _Key:
    """How one integer packs a row's ids: ``metric | resource | attributes [| scope]``, high to low.

    Each field has room for ids up to twice the largest in the store when the packing was
    made; :meth:`holds` says whether it still covers the store (a follow meets new ids).
    """

    def __init__(self, largest: tuple[int, int, int, int], with_scope: bool) -> None:
        bits = [int(w).bit_length() + 1 for w in largest]
        self.capacity = [(1 << b) - 1 for b in bits]
        self.resource_bits, self.attributes_bits = bits[1], bits[2]
        self.scope_bits = bits[3] if with_scope else 0
        if bits[0] + bits[1] + bits[2] + self.scope_bits > 63:
            raise ValueError("the store's ids are too large to pack in one integer key")
        low = self.scope_bits
        self.sql = (
            f"(((p.metric_id << {self.resource_bits}) | p.resource_id) << {self.attributes_bits + low})"
            f" | (p.attributes_id << {low})" + (" | p.scope_id" if with_scope else "")
        )

    def holds(self, largest: tuple[int, int, int, int]) -> bool:
        return all(value <= cap for value, cap in zip(largest, self.capacity, strict=True))

    def split(self, key: int) -> tuple[int, int, int, int]:
        """``(metric, resource, attributes, scope)`` ids of a packed key."""
        scope = key & ((1 << self.scope_bits) - 1)
        key >>= self.scope_bits
        attributes = key & ((1 << self.attributes_bits) - 1)
        key >>= self.attributes_bits
        return key >> self.resource_bits, key & ((1 << self.resource_bits) - 1), attributes, scope


_LARGEST_IDS = (
    "SELECT (SELECT ifnull(max(id), 0) FROM metrics), (SELECT ifnull(max(id), 0) FROM resources),"
    " (SELECT ifnull(max(id), 0) FROM attribute_sets), (SELECT ifnull(max(id), 0) FROM scopes)"
)


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
        self._key: _Key | None = None
        #: Packed key -> the texts around the row's own columns (two for CSV, three for JSON).
        self._texts: dict[int, tuple[str, ...]] = {}

    def _packing(self) -> _Key:
        (largest,) = self.store.read(_LARGEST_IDS)
        largest = tuple(int(v) for v in largest)
        if self._key is None or not self._key.holds(largest):
            self._key = _Key(largest, with_scope=self.fmt == "json")
            self._texts.clear()
        return self._key

    def _add_texts(self, keys: set[int], packing: _Key) -> None:
        """The texts of keys not seen before: one read of each small table they need."""
        parts = {key: packing.split(key) for key in keys}
        metrics = self._rows("SELECT id, name, kind, unit, temporality, monotonic FROM metrics", {p[0] for p in parts.values()})
        resources = self._rows("SELECT id, attributes FROM resources", {p[1] for p in parts.values()})
        attributes = self._rows("SELECT id, attributes FROM attribute_sets", {p[2] for p in parts.values()})
        scopes = self._rows("SELECT id, name FROM scopes", {p[3] for p in parts.values()}) if self.fmt == "json" else {}
        for key, (metric_id, resource_id, attributes_id, scope_id) in parts.items():
            name, kind, unit, temporality, monotonic = metrics[metric_id]
            (resource,), (attribute_set,) = resources[resource_id], attributes[attributes_id]
            if self.fmt == "csv":
                attrs = json.loads(resource)
                head = _csv_cells(name, kind, attrs.get(RUN_ID_KEY, ""), attrs.get(RANK_KEY, "")) + ","
                self._texts[key] = (head, _csv_cells(attribute_set) + "\r\n")
            else:
                head = '{"metric":' + json.dumps(name) + ',"kind":' + json.dumps(kind) + ',"unit":' + json.dumps(unit) + ',"value":'
                scope = json.dumps(scopes[scope_id][0])
                middle = f',"attributes":{attribute_set},"resource":{resource},"scope":{scope},"start_time_unix_nano":'
                tail = f',"temporality":{temporality},"monotonic":{"true" if monotonic else "false"},"histogram":'
                self._texts[key] = (head, middle, tail)

    def _rows(self, sql: str, ids: set[int]) -> dict[int, tuple[Any, ...]]:
        wanted = sorted(ids)
        found: dict[int, tuple[Any, ...]] = {}
        for lo in range(0, len(wanted), 900):
            part = wanted[lo : lo + 900]
            for row in self.store.read(f"{sql} WHERE id IN ({','.join('?' * len(part))})", part):
                found[row[0]] = tuple(row[1:])
        return found

    def write(self, query: PointQuery, after_row_id: int | None = None) -> tuple[int, int]:
        """Write the points of ``query`` newer than ``after_row_id``: ``(points written, snapshot row id)``."""
        snapshot = int(self.store.read("SELECT ifnull(max(id), 0) FROM points")[0][0])
        changes: dict[str, Any] = {"max_row_id": snapshot}
        if after_row_id is not None:
            changes.update(after_row_id=after_row_id, limit=None, last=None)
        packing = self._packing()
        if self.fmt == "csv":
            columns = (
                f"SELECT {packing.sql}, ifnull(p.step, ''), ifnull(p.epoch, ''), ifnull(p.value, ''), p.time_unix_nano,"
                " CASE WHEN p.value IS NULL THEN p.histogram END FROM points p"
            )
        else:
            columns = (
                f"SELECT {packing.sql},"
                " CASE WHEN p.value = 9e999 THEN 'Infinity' WHEN p.value = -9e999 THEN '-Infinity' ELSE ifnull(p.value, 'null') END,"
                " p.start_time_unix_nano, p.time_unix_nano, ifnull(p.step, 'null'), ifnull(p.epoch, 'null'),"
                " ifnull(p.histogram, 'null'), ifnull(p.extra, 'null') FROM points p"
            )
        sql, params = dataclasses.replace(query, **changes).sql(columns)
        if self.fmt == "csv" and not self._header_done:
            self.out.write(",".join(CSV_HEADER) + "\r\n")
            self._header_done = True
        written = 0
        texts = self._texts
        for rows in self.store.read_chunks(sql, params, size=CHUNK_ROWS):
            new = {row[0] for row in rows} - texts.keys()
            if new:
                self._add_texts(new, packing)
            self.out.write(self._csv_text(rows) if self.fmt == "csv" else self._json_text(rows))
            written += len(rows)
        self.out.flush()
        self.written += written
        return written, snapshot

    def _csv_text(self, rows: list[Any]) -> str:
        texts = self._texts
        lines: list[str] = []
        append = lines.append
        for key, step, epoch, value, time_ns, histogram in rows:
            head, tail = texts[key]
            if histogram is not None:
                value = _histogram_text(histogram)  # noqa: PLW2901 - a histogram's value column
            append(f"{head}{step},{epoch},{value},{time_ns},{tail}")
        return "".join(lines)

    def _json_text(self, rows: list[Any]) -> str:
        texts = self._texts
        lines: list[str] = []
        append = lines.append
        for key, value, start, time_ns, step, epoch, histogram, extra in rows:
            head, middle, tail = texts[key]
            append(
                f'{head}{value}{middle}{start},"time_unix_nano":{time_ns},"step":{step},"epoch":{epoch}{tail}{histogram},"extra":{extra}}}\n'
            )
        return "".join(lines)


def _histogram_text(histogram: str) -> str:
    data = json.loads(histogram)
    return _csv_cells(f"count={data['count']} sum={data['sum']!r}")
