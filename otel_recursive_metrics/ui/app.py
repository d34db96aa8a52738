"""The web view's HTTP layer: a Starlette app of GET routes over a read-only store.

    >>> app = create_app("otel-metrics/metrics.db")      # serve it with uvicorn (see .server)

Pages (HTML shells whose script draws everything from the API): ``/`` the runs, ``/run?run=R``
one run, ``/compare?run=A&run=B&metric=M...`` runs overlaid, ``/params`` a parameter against a
metric across runs. ``/api/...`` answers JSON (the contract: :mod:`.api` for runs, metrics and
ranks, :mod:`.series_api` for series, :mod:`.across_runs` for parameters and summaries), and
``/api/csv`` a chart's points as CSV (:mod:`.csv_download`); ``/static/...`` serves the page
scripts and Plotly's own bundle from the installed ``plotly`` package (nothing from a CDN, no
build step).

Read-only by construction: the store is opened with ``readonly=True`` (SQLite refuses writes on
that connection), and every route accepts GET (and HEAD) only, so POST, PUT, PATCH and DELETE
get 405. The ``Host`` header must name the address served (loopback by default), which keeps a
web page elsewhere from reading the store through DNS rebinding; every response carries a
Content-Security-Policy that allows this origin's scripts only, and ``nosniff`` (see :mod:`.headers`).

Threads: Starlette runs these sync handlers on its thread pool. Each pool thread reads through
its own :class:`PointStore` (:class:`StoreReaders`), so a long read (the runs summary) never
holds up a chart's update; SQLite's WAL lets them all read beside a training run that writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from .._version import __version__
from ..store import PointStore
from ..store.messages import damaged_store_message
from ..store.series import LastValue
from .across_runs import params_payload, summary_payload
from .api import RequestError, metrics_payload, ranks_payload, runs_payload, to_json_bytes
from .assets import PAGES, static_file
from .cache import SeriesCache
from .csv_download import SeriesDownload
from .headers import SECURITY_HEADERS, SecurityHeaders
from .series_api import series_payload

__all__ = ["SECURITY_HEADERS", "StoreReaders", "create_app", "loopback_hosts"]


def loopback_hosts(host: str) -> list[str]:
    """The ``Host`` header values to accept when serving on ``host`` (any, for a wildcard bind)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({host, "localhost", "127.0.0.1", "::1", "[::1]"})


class StoreReaders:
    """One read-only :class:`PointStore` per thread, opened on first use, all closed by :meth:`close`.

    Thread-safe: :meth:`get` touches only the calling thread's slot, except to register a new
    store under a lock.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stores: list[PointStore] = []
        self._closed = False

    def get(self) -> PointStore:
        store: PointStore | None = getattr(self._local, "store", None)
        if store is not None:
            return store
        with self._lock:
            if self._closed:
                raise RuntimeError("the web view is shutting down")
            store = PointStore(self.path, readonly=True)
            self._stores.append(store)
        self._local.store = store
        return store

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stores, self._stores = self._stores, []
        for store in stores:
            store.close()


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(to_json_bytes(payload), status_code=status_code, media_type="application/json")


def _query(request: Request) -> Mapping[str, Sequence[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def create_app(store_path: Path | str, *, host: str = "127.0.0.1") -> Starlette:
    """The web view of the store at ``store_path``; ``host`` is the address it will be served on."""
    readers = StoreReaders(store_path)
    cache = SeriesCache()
    # Each stored chunk's latest point, for the runs table's last values (store.series.last_values).
    last_points: dict[tuple[int, ...], LastValue] = {}

    def api(build: Callable[[PointStore, Mapping[str, Sequence[str]]], Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                answer = build(readers.get(), _query(request))
                return answer if isinstance(answer, Response) else _json(answer)
            except RequestError as exc:
                return _json({"error": str(exc)}, 400)
            except sqlite3.DatabaseError as exc:
                return _json({"error": damaged_store_message(store_path, exc)}, 500)
            except (ValueError, RuntimeError) as exc:  # not a store (any more), or shutting down
                return _json({"error": f"store {str(store_path)!r}: {exc}"}, 503)

        return endpoint

    def info(store: PointStore, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        return {"store": str(store_path), "version": __version__, "read_only": store.readonly}

    def csv_download(store: PointStore, params: Mapping[str, Sequence[str]]) -> Response:
        download = SeriesDownload.from_params(store, params)
        # The download reads through a store of its own, which its last chunk closes: the
        # chunks are read on whichever pool thread is free, and a long one must not hold a
        # thread's reader while charts ask for theirs.
        headers = {"Content-Disposition": f'attachment; filename="{download.filename}"', "Cache-Control": "no-store"}
        return StreamingResponse(
            download.lines(PointStore(store_path, readonly=True)), media_type="text/csv; charset=utf-8", headers=headers
        )

    def page(name: str) -> Callable[[Request], Response]:
        path = static_file(PAGES[name])
        if path is None:  # pragma: no cover - an install without the package data
            raise FileNotFoundError(f"the web view's page {PAGES[name]} is not installed")

        def endpoint(request: Request) -> Response:
            return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

        return endpoint

    def static(request: Request) -> Response:
        path = static_file(request.path_params["name"])
        if path is None:
            return _json({"error": f"no static file {request.path_params['name']!r}"}, 404)
        cache_control = "public, max-age=86400" if path.name.startswith("plotly") else "no-cache"
        return FileResponse(path, headers={"Cache-Control": cache_control})

    routes = [
        Route("/", page("runs"), methods=["GET"]),
        Route("/run", page("run"), methods=["GET"]),
        Route("/compare", page("compare"), methods=["GET"]),
        Route("/params", page("params"), methods=["GET"]),
        Route("/api/info", api(info), methods=["GET"]),
        Route("/api/runs", api(lambda store, params: runs_payload(store, last_points)), methods=["GET"]),
        Route("/api/metrics", api(metrics_payload), methods=["GET"]),
        Route("/api/ranks", api(ranks_payload), methods=["GET"]),
        Route("/api/series", api(lambda store, params: series_payload(store, params, cache)), methods=["GET"]),
        Route("/api/params", api(params_payload), methods=["GET"]),
        Route("/api/summary", api(summary_payload), methods=["GET"]),
        Route("/api/csv", api(csv_download), methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            readers.close()

    app = Starlette(
        routes=routes,
        # Outermost first: the security headers go on the Host check's refusals too.
        middleware=[Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=loopback_hosts(host))],
        lifespan=lifespan,
    )
    app.state.readers = readers
    app.state.series_cache = cache
    app.state.last_points = last_points
    return app
