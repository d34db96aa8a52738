"""Many-row INSERT statements from a small, fixed set of texts.

A statement of many rows (``INSERT ... VALUES (...), (...), ...``) is how the store inserts a
batch with few hand-overs of the GIL, but each distinct text is compiled and kept by the sqlite3
module's statement cache (128 statements a connection), and a compiled statement of 2,000 rows
holds about a megabyte and a half. Batches come in every size, so a text per row count let the
cache grow to hundreds of megabytes under load. Here there are only a few texts per shape:
full statements of ``size`` rows, and for the rest a statement of the next size up on a short
ladder, whose unused rows are padded with NULLs and left out by ``WHERE column1 IS NOT NULL``
(the first column is never NULL in a real row).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable
from typing import Any

__all__ = ["RowInsert"]

#: Row counts of the padded statements (each capped at the full size).
_LADDER = (16, 128, 1024)


class RowInsert:
    """Inserts rows of ``columns`` values with statements of at most ``size`` rows.

    ``head`` is ``INSERT INTO table(col, ...)``; ``row`` is one row's placeholder text with its
    fixed values, e.g. ``(?,?,0,?)``, which must have ``columns`` placeholders.
    """

    def __init__(self, head: str, row: str, columns: int, size: int) -> None:
        self.columns = columns
        self.size = max(1, size)
        self._full = f"{head} VALUES " + ",".join([row] * self.size)
        # The padded form selects from a VALUES list of plain placeholders: column1..columnN,
        # then the row's own text with its placeholders replaced by those columns, in order.
        names = iter(f"column{i}" for i in range(1, columns + 1))
        selected = "".join(next(names) if ch == "?" else ch for ch in row[1:-1])
        plain = "(" + ",".join("?" * columns) + ")"
        self._ladder = sorted({min(rows, self.size) for rows in _LADDER} | {self.size})
        self._padded = {
            rows: f"{head} SELECT {selected} FROM (VALUES " + ",".join([plain] * rows) + ") WHERE column1 IS NOT NULL"
            for rows in self._ladder
        }

    def insert(self, conn: sqlite3.Connection, values: Iterable[Any]) -> int:
        """Insert the rows whose values ``values`` yields, flattened; the last row id (0 if none)."""
        flat = iter(values)
        last_id = 0
        per_statement = self.size * self.columns
        while group := tuple(itertools.islice(flat, per_statement)):
            rows = len(group) // self.columns
            if rows == self.size:
                cursor = conn.execute(self._full, group)
            else:
                padded = next(r for r in self._ladder if r >= rows)
                cursor = conn.execute(self._padded[padded], group + (None,) * ((padded - rows) * self.columns))
            last_id = int(cursor.lastrowid or 0)
        return last_id
