"""A local, read-only web view of the store: runs, one run's charts, runs compared; live.

    $ pip install -e '.[ui]'                                          # in your clone
    $ otel-recursive-metrics ui --store ./otel-metrics/metrics.db     # http://127.0.0.1:8470/

Layers, top down: :mod:`.server` binds a socket and runs uvicorn, whose protocol (:mod:`.limits`)
answers 414 to a URL past 8 KiB; :mod:`.app` is the Starlette app (GET routes only, a read-only
store per thread, :mod:`.headers` on every answer); :mod:`.api` builds each endpoint's JSON;
:mod:`otel_recursive_metrics.store.series` reads series from the store, downsampled, and only
what was added since a client's last request; :mod:`.assets` finds the pages and Plotly's
bundle. The pages' scripts (``static/*.js``) poll ``/api/series`` with ``after_id`` and append
what comes back. Every string a user logged reaches a page as text: the DOM gets text nodes, and
Plotly (which reads its strings as HTML) gets them escaped and cut (``ORM.plotText``).

:mod:`.app` and :mod:`.server` import Starlette and uvicorn, the ``ui`` extra; this face loads them
only when one of their names is asked for, so the CLI reads :mod:`.defaults` without the extra and
``import otel_recursive_metrics`` never needs it.
"""

from __future__ import annotations

from typing import Any

from .defaults import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "UIServer", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "UIServer":
        from .server import UIServer

        return UIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
