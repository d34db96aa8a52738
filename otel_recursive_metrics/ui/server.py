"""Serving the web view: a socket bound first (so a busy port is a clear error), then uvicorn.

    >>> with UIServer("otel-metrics/metrics.db", port=0) as server:   # a free loopback port
    ...     print(server.url)                                          # http://127.0.0.1:41234/

:class:`UIServer` runs uvicorn either in the foreground (:meth:`UIServer.serve_forever`, what
the CLI does: Ctrl-C stops it) or on a daemon thread (:meth:`UIServer.start` /
:meth:`UIServer.stop`, what the tests and the benchmark do). It binds ``127.0.0.1`` unless told
otherwise: the view is for the person at this machine, and a store's metrics and parameters are
nobody else's business. A request whose URL or head is too long is answered 414 or 431 by
:mod:`.limits` before it reaches the app.

Thread safety: one thread starts and stops a server; the app itself serves requests from
uvicorn's event loop and Starlette's thread pool (see :mod:`.app`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from .app import create_app
from .defaults import DEFAULT_HOST, DEFAULT_PORT
from .limits import MAX_HEAD_BYTES, BoundedH11Protocol

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "UIServer", "bind_socket", "is_loopback"]

_BACKLOG = 128


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); OSError says what failed."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now: a browser opened before uvicorn's loop starts waits in the backlog.
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class UIServer:
    """The web view of one store, on one socket."""

    def __init__(self, store_path: Path | str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.store_path = Path(store_path)
        self.host = host
        self.socket = bind_socket(host, port)
        self.port: int = self.socket.getsockname()[1]
        self.app = create_app(self.store_path, host=host)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
            # h11 always (not httptools where installed), with the bounds of .limits checked first:
            # a 1 MB URL gets 414, not a reset connection. h11's own bound is set past ours.
            http=BoundedH11Protocol,
            h11_max_incomplete_event_size=2 * MAX_HEAD_BYTES,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = self.host
        if shown in ("0.0.0.0", "::", ""):
            shown = "127.0.0.1"
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    def serve_forever(self) -> None:
        """Serve on this thread until Ctrl-C (SIGINT) or SIGTERM."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, timeout_s: float = 10.0) -> UIServer:
        """Serve on a daemon thread; returns once it accepts requests, TimeoutError after ``timeout_s``."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="otel-recursive-metrics-ui", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(timeout_s=1.0)
                raise TimeoutError(f"the web view did not start within {timeout_s:g} s")
            pause.wait(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop serving; True if the server thread ended within ``timeout_s``.

        Requests under way get a second to finish (uvicorn's graceful shutdown), then are
        cancelled; the stores are closed here in any case.
        """
        self.server.should_exit = True
        stopped = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            stopped = not self._thread.is_alive()
        self.socket.close()
        self.app.state.readers.close()
        return stopped

    def __enter__(self) -> UIServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
