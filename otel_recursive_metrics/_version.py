"""The installed distribution's version, for the modules that stamp it (scope, user agent, CLI).

A module of its own so that nothing has to import the package's face for it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("otel-recursive-metrics")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
