"""Where the web view listens unless told otherwise; light, so the CLI reads it without the ui extra."""

from __future__ import annotations

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT"]

#: This machine only: a store's metrics and parameters are nobody else's business.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
