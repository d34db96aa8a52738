"""Converting a store of version 1 to 3 (a row a point) into version 4 (chunks): placeholder, being written."""

from __future__ import annotations

import sqlite3

__all__ = ["convert_rows", "readable_rows"]


def convert_rows(conn: sqlite3.Connection) -> None:
    """Move every row of ``points`` into chunks (to be written)."""
    raise NotImplementedError("converting a version-3 store is not written yet")


def readable_rows(conn: sqlite3.Connection) -> None:
    """For a read-only open of an earlier version: temporary chunk tables (to be written)."""
    raise NotImplementedError("reading a version-3 store is not written yet")
