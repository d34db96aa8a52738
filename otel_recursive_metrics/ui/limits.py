"""Bounds on a request's head, answered with a status and a line of text, never a reset connection.

    >>> uvicorn.Config(app, http=BoundedH11Protocol)      # what .server does

uvicorn's h11 parser refuses a request line or header block longer than 16 KiB (h11's
``max_incomplete_event_size``) by writing 400 and closing the socket at once. The client is
still sending its request then, and a socket closed with unread data answers with a TCP reset,
which destroys the 400 before the client reads it: a 1 MB URL showed as "connection reset by
peer" and nothing else.

:class:`BoundedH11Protocol` looks at each request's head before h11 parses it (h11 buffers
what is read; the check runs on that buffer whenever a new request may start in it). A request target
longer than :data:`MAX_URL_BYTES` gets ``414 URI Too Long``, a head longer than
:data:`MAX_HEAD_BYTES` ``431 Request Header Fields Too Large``, each with a one-line text body
and the security headers (:mod:`.headers`). Then it closes the way a server that answers before
it has read the whole request must (a "lingering close", RFC 9112 section 9.6): it ends its own
side, reads and discards what the client still sends, and closes when the client does, after
:data:`DRAIN_MAX_BYTES` more bytes, or after :data:`LINGER_S` seconds, whichever comes first.

It is uvicorn's own h11 protocol otherwise: everything within the bounds goes to it untouched.
Thread safety: like any asyncio protocol, one per connection, called on the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .headers import SECURITY_HEADERS

__all__ = ["DRAIN_MAX_BYTES", "LINGER_S", "MAX_HEAD_BYTES", "MAX_URL_BYTES", "BoundedH11Protocol", "head_refusal"]

#: The longest request target (path and query) answered; a page's URL is a few hundred bytes.
MAX_URL_BYTES = 8 * 1024
#: The longest request head (request line and headers): h11's own bound, answered with 431.
MAX_HEAD_BYTES = 16 * 1024
#: What is read and thrown away after a refusal before the connection is closed regardless.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
#: How long a refused client has to finish sending and read the answer.
LINGER_S = 5.0

# "DELETE " + " HTTP/1.1": what a request line holds besides its target.
_LINE_SLACK = 32

_log = logging.getLogger("otel_recursive_metrics.ui")


def head_refusal(pending: bytes) -> tuple[int, str, str] | None:
    """``(status, reason, text)`` for a request whose head starts ``pending`` and is too long; else None.

    ``pending`` holds the bytes received of one request so far (a head may not be complete yet).
    """
    head = pending.lstrip(b"\r\n")  # empty lines before a request are allowed (RFC 9112 2.2)
    line_end = head.find(b"\n")
    line = head if line_end < 0 else head[:line_end]
    parts = line.split(b" ")
    target = len(parts[1]) if len(parts) > 1 else 0
    if target > MAX_URL_BYTES or (line_end < 0 and len(line) > MAX_URL_BYTES + _LINE_SLACK):
        shown = f"{target} bytes" if line_end >= 0 else f"more than {MAX_URL_BYTES} bytes"
        return 414, "URI Too Long", f"414 URI Too Long: the URL is {shown} long; this server answers URLs of up to {MAX_URL_BYTES} bytes"
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    head_bytes = min(ends) if ends else len(head)
    if head_bytes > MAX_HEAD_BYTES:
        return (
            431,
            "Request Header Fields Too Large",
            f"431 Request Header Fields Too Large: the request's head is over {MAX_HEAD_BYTES} bytes (URL and headers)",
        )
    return None


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that answers 414 or 431 to a request head past the bounds (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draining = False
        self._drained_bytes = 0
        self._linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._draining:
            self._drained_bytes += len(data)
            if self._drained_bytes > DRAIN_MAX_BYTES:
                self.transport.close()
            return
        super().data_received(data)  # h11 buffers it; then handle_events

    def handle_events(self) -> None:
        # Called after each read, and when a response is done and a pipelined request waits:
        # whenever a new request's head may be in h11's buffer, before h11 parses it.
        if self.conn.their_state is h11.IDLE:
            refusal = head_refusal(self.conn.trailing_data[0])
            if refusal is not None:
                self._refuse(*refusal)
                return
        super().handle_events()

    def _refuse(self, status: int, reason: str, text: str) -> None:
        self._unset_keepalive_if_required()
        body = (text + "\n").encode()
        lines = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._draining = True
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        _log.info("refused a request from %s: %s", self.client, text)  # the client has the explanation

    def eof_received(self) -> None:
        if self._draining:
            self.transport.close()  # the client has sent all it will: the answer is read or on its way
            return
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)
