"""The embedded metrics store: one SQLite file that keeps the OpenTelemetry data model.

:class:`PointStore` writes point batches (idempotently) and answers queries;
:class:`StoredPoint` is one point read back. See :mod:`.point_store` for the schema.
"""

from __future__ import annotations

from .point_store import SCHEMA_VERSION, PointStore, StoredPoint

__all__ = ["SCHEMA_VERSION", "PointStore", "StoredPoint"]
