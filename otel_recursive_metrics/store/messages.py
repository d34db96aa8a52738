"""What to tell a person about a store file that cannot be read, wherever it is shown (CLI, web view)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["damaged_store_message"]


def damaged_store_message(path: str | Path, error: BaseException) -> str:
    """What to say about a store SQLite cannot read: the file, the error, and how to recover it."""
    return (
        f"store {str(path)!r} is damaged or not a store ({error}). SQLite can often recover what it still holds:"
        f" sqlite3 {path} '.recover' | sqlite3 {path}.recovered && otel-recursive-metrics runs --store {path}.recovered"
    )
