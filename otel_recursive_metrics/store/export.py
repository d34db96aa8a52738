"""Points out of the store as CSV or JSON lines, at SQLite's pace rather than an object's per point.

``query --format csv|json`` and ``query --follow`` write through :class:`PointWriter`. The
general reading path (:meth:`PointStore.iter_query`) joins four tables and makes a
:class:`~.points.StoredPoint` per row, with its attributes and resource parsed from JSON: about
25 µs a point, so a million-step run took half a minute to export. Here a row is ids and
numbers only; everything that repeats (a metric's name and kind, a resource's run and rank, an
attribute set's text) is formatted once per id and reused, and each row is one f-string:

- SQLite turns NULL steps and epochs into the format's empty value, and the infinities into
  JSON's ``Infinity`` tokens, so Python never tests a column;
- floats print with ``repr``'s shortest text that reads back as the same number (full
  precision: ``2.3456789012`` stays ``2.3456789012``);
- attribute sets are looked up a chunk at a time, only those the chunk uses (a store may hold
  millions of them: one per sample when attributes carry a sample id).

The output is what the per-point path printed: the same CSV columns and quoting (``csv`` module
rules, ``\\r\\n`` line ends), and the same JSON object per line (key order included; histogram
and extra fields as stored). The filters and order are :class:`~.points.PointQuery`'s.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from ..resource import RANK_KEY, RUN_ID_KEY
from .points import PointQuery

if TYPE_CHECKING:
    from .point_store import PointStore

__all__ = ["CSV_HEADER", "PointWriter"]

CSV_HEADER = ("metric", "kind", "run", "rank", "step", "epoch", "value", "time_unix_nano", "attributes")

#: Rows read from SQLite at a time.
CHUNK_ROWS = 16384

# Each row: the (metric, resource) key, the attribute set, then the format's columns.
_CSV_COLUMNS = (
    "SELECT (p.metric_id << 32) | p.resource_id, p.attributes_id,"
    " ifnull(p.step, ''), ifnull(p.epoch, ''), p.value, p.time_unix_nano,"
    " CASE WHEN p.value IS NULL THEN p.histogram END FROM points p"
)
_JSON_COLUMNS = (
    "SELECT (p.metric_id << 32) | p.resource_id, p.attributes_id, p.scope_id,"
    " CASE WHEN p.value = 9e999 THEN 'Infinity' WHEN p.value = -9e999 THEN '-Infinity' ELSE ifnull(p.value, 'null') END,"
    " p.start_time_unix_nano, p.time_unix_nano, ifnull(p.step, 'null'), ifnull(p.epoch, 'null'),"
    " ifnull(p.histogram, 'null'), ifnull(p.extra, 'null') FROM points p"
)


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
        self._metrics: dict[int, tuple[str, str, str, int, int]] = {}
        self._resources: dict[int, str] = {}
        self._scopes: dict[int, str] = {}
        self._attributes: dict[int, str] = {}
        self._heads: dict[int, str] = {}
        self._mids: dict[tuple[int, int, int], str] = {}

    # -- lookups ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        """(Re)load the small tables: metrics, resources and scopes (a follow may add some)."""
        for row in self.store.read("SELECT id, name, kind, unit, temporality, monotonic FROM metrics"):
            self._metrics[row[0]] = row[1:]
        for rid, attributes in self.store.read("SELECT id, attributes FROM resources"):
            self._resources[rid] = attributes
        for sid, name in self.store.read("SELECT id, name FROM scopes"):
            self._scopes[sid] = name

    def _load_attributes(self, ids: Iterable[int]) -> None:
        missing = sorted({i for i in ids if i not in self._attributes})
        for lo in range(0, len(missing), 900):
            part = missing[lo : lo + 900]
            marks = ",".join("?" * len(part))
            for aid, text in self.store.read(f"SELECT id, attributes FROM attribute_sets WHERE id IN ({marks})", part):
                self._attributes[aid] = _csv_cells(text) if self.fmt == "csv" else text

    def _head(self, key: int) -> str:
        """The text before a row's own columns, for one (metric, resource)."""
        metric_id, resource_id = key >> 32, key & 0xFFFFFFFF
        if metric_id not in self._metrics or resource_id not in self._resources:
            self._refresh()
        name, kind, unit = self._metrics[metric_id][:3]
        resource = self._resources[resource_id]
        if self.fmt == "csv":
            attrs = json.loads(resource)
            head = _csv_cells(name, kind, attrs.get(RUN_ID_KEY, ""), attrs.get(RANK_KEY, "")) + ","
        else:
            head = '{"metric":' + json.dumps(name) + ',"kind":' + json.dumps(kind) + ',"unit":' + json.dumps(unit) + ',"value":'
        self._heads[key] = head
        return head

    def _mid(self, key: int, attributes_id: int, scope_id: int) -> str:
        """JSON: the text between the value and the start time (attributes, resource, scope)."""
        resource_id = key & 0xFFFFFFFF
        if scope_id not in self._scopes:
            self._refresh()
        mid = (
            ',"attributes":'
            + self._attributes[attributes_id]
            + ',"resource":'
            + self._resources[resource_id]
            + ',"scope":'
            + json.dumps(self._scopes[scope_id])
            + ',"start_time_unix_nano":'
        )
        self._mids[(key, attributes_id, scope_id)] = mid
        return mid

    def _tail(self, key: int) -> str:
        """JSON: temporality and monotonic, before the histogram."""
        _, _, _, temporality, monotonic = self._metrics[key >> 32]
        return f',"temporality":{temporality},"monotonic":{"true" if monotonic else "false"},"histogram":'

    # -- writing ---------------------------------------------------------------------------

    def write(self, query: PointQuery, after_row_id: int | None = None) -> tuple[int, int]:
        """Write the points of ``query`` newer than ``after_row_id``: ``(points written, snapshot row id)``."""
        snapshot = int(self.store.read("SELECT ifnull(max(id), 0) FROM points")[0][0])
        changes: dict[str, Any] = {"max_row_id": snapshot}
        if after_row_id is not None:
            changes.update(after_row_id=after_row_id, limit=None, last=None)
        sql, params = dataclasses.replace(query, **changes).sql(_CSV_COLUMNS if self.fmt == "csv" else _JSON_COLUMNS)
        if self.fmt == "csv" and not self._header_done:
            self.out.write(",".join(CSV_HEADER) + "\r\n")
            self._header_done = True
        written = 0
        for rows in self.store.read_chunks(sql, params, size=CHUNK_ROWS):
            self._load_attributes({r[1] for r in rows})
            self.out.write(self._csv_text(rows) if self.fmt == "csv" else self._json_text(rows))
            written += len(rows)
        self.out.flush()
        self.written += written
        return written, snapshot

    def _csv_text(self, rows: list[Any]) -> str:
        heads, attrs = self._heads, self._attributes
        lines: list[str] = []
        append = lines.append
        for key, aid, step, epoch, value, time_ns, histogram in rows:
            head = heads.get(key) or self._head(key)
            text = _histogram_text(histogram) if value is None else value
            append(f"{head}{step},{epoch},{text},{time_ns},{attrs[aid]}\r\n")
        return "".join(lines)

    def _json_text(self, rows: list[Any]) -> str:
        heads, mids = self._heads, self._mids
        tails: dict[int, str] = {}
        lines: list[str] = []
        append = lines.append
        for key, aid, sid, value, start, time_ns, step, epoch, histogram, extra in rows:
            head = heads.get(key) or self._head(key)
            mid = mids.get((key, aid, sid)) or self._mid(key, aid, sid)
            tail = tails.get(key) or tails.setdefault(key, self._tail(key))
            append(
                f'{head}{value}{mid}{start},"time_unix_nano":{time_ns},"step":{step},"epoch":{epoch}{tail}{histogram},"extra":{extra}}}\n'
            )
        return "".join(lines)


def _histogram_text(histogram: str | None) -> str:
    if not histogram:
        return ""
    data = json.loads(histogram)
    return _csv_cells(f"count={data['count']} sum={data['sum']!r}")
