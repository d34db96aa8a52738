"""The web view's answers at the socket: security headers on every one, and 414 for a long URL.

On a real uvicorn server on a free loopback port, through real sockets:

- every kind of answer (a page, the API, a script, Plotly's bundle, a 404, a 405, a refused
  ``Host``, a 400, a 414) carries the Content-Security-Policy, ``nosniff`` and
  ``Referrer-Policy`` (the expected values are written out here, not read from the code);
- a URL past 8 KiB, up to a megabyte and past it, gets ``414 URI Too Long`` and a line of text,
  never a reset connection, whether the client reads as it sends or only after; a head past
  16 KiB gets 431; the server goes on serving.
"""

from __future__ import annotations

import selectors
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_recursive_metrics.model.batch import BatchBuilder
from otel_recursive_metrics.store import PointStore

from .conftest import require_module

require_module("starlette", "ui")
require_module("uvicorn", "ui")

from otel_recursive_metrics.ui import UIServer  # noqa: E402 - after the extra's check

EXPECTED_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
URL_LIMIT = 8 * 1024
DEADLINE_S = 30.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[UIServer]:
    store = PointStore(tmp_path / "metrics.db", durable=False)
    builder = BatchBuilder()
    resource = builder.resource({"training.run.id": "run-a", "service.name": "test"})
    metric = builder.metric("train.loss", "", "", "gauge")
    for step in range(10):
        builder.add_point(resource, builder.plain_scope("test"), metric, "{}", 0, 1_767_225_600_000_000_000 + step, 1.0, step, None)
    store.write_batch(builder.build())
    store.close()
    with UIServer(tmp_path / "metrics.db", port=0) as server:
        yield server


def exchange(server: UIServer, request: bytes, *, read_while_sending: bool = False) -> bytes:
    """Send ``request`` on a fresh connection and read the answer until the server closes.

    A reset connection raises ConnectionResetError (or BrokenPipeError while sending): what a
    client saw before the fix.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S) as sock:
        answer = b""
        if read_while_sending:
            # Send in pieces, reading whatever has come back between them (a browser's way).
            sock.setblocking(False)
            view = memoryview(request)
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
                while view:
                    events = selector.select(DEADLINE_S)
                    assert events, "the server neither read nor answered within the deadline"
                    for _, mask in events:
                        if mask & selectors.EVENT_READ:
                            answer += sock.recv(65536)
                        if mask & selectors.EVENT_WRITE and view:
                            view = view[sock.send(view[:65536]) :]
            sock.setblocking(True)
            sock.settimeout(DEADLINE_S)
        else:
            sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def get_request(target: bytes, *, host: bytes = b"127.0.0.1", extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"Connection: close\r\n\r\n"


def status_and_headers(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (get_request(b"/"), 200),
        (get_request(b"/run?run=run-a"), 200),
        (get_request(b"/compare?run=run-a"), 200),
        (get_request(b"/api/runs"), 200),
        (get_request(b"/api/series?run=run-a&metric=train.loss"), 200),
        (get_request(b"/api/series?run=run-a"), 400),
        (get_request(b"/static/common.js"), 200),
        (get_request(b"/static/plotly.min.js"), 200),
        (get_request(b"/static/nope.js"), 404),
        (get_request(b"/no/such/page"), 404),
        (b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
        (get_request(b"/api/runs", host=b"attacker.example"), 400),
        (get_request(b"/?" + b"a" * (URL_LIMIT + 1)), 414),
    ],
    ids=["runs", "run", "compare", "api", "series", "bad-param", "script", "plotly", "static-404", "404", "405", "foreign-host", "414"],
)
def test_every_answer_carries_the_security_headers(served: UIServer, request_bytes: bytes, status: int) -> None:
    got, headers, _ = status_and_headers(exchange(served, request_bytes))
    assert got == status
    for name, value in EXPECTED_HEADERS.items():
        assert headers.get(name) == value, (name, headers)


@pytest.mark.parametrize("length", [URL_LIMIT + 1, 20_000, 1_000_000, 10_000_000], ids=["8KiB+1", "20KB", "1MB", "10MB"])
@pytest.mark.parametrize("read_while_sending", [False, True], ids=["send-then-read", "read-while-sending"])
def test_a_long_url_gets_414_and_a_line_of_text_not_a_reset(served: UIServer, length: int, read_while_sending: bool) -> None:
    target = b"/api/runs?q=" + b"x" * (length - len(b"/api/runs?q="))
    answer = exchange(served, get_request(target), read_while_sending=read_while_sending)
    status, headers, body = status_and_headers(answer)
    assert status == 414, answer[:300]
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["connection"] == "close"
    assert body.count(b"\n") == 1 and len(body) < 200 and str(URL_LIMIT).encode() in body, body
    assert int(headers["content-length"]) == len(body)
    # The server goes on serving.
    assert status_and_headers(exchange(served, get_request(b"/api/info")))[0] == 200


def test_a_url_at_the_bound_is_served_and_urllib_sees_414_past_it(served: UIServer) -> None:
    at_bound = b"/api/runs?q=" + b"x" * (URL_LIMIT - len(b"/api/runs?q="))
    assert len(at_bound) == URL_LIMIT
    assert status_and_headers(exchange(served, get_request(at_bound)))[0] == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(served.url + "api/runs?q=" + "x" * 1_000_000, timeout=DEADLINE_S)
    assert refused.value.code == 414 and b"URI Too Long" in refused.value.read()


def test_a_long_url_after_a_served_request_on_the_same_connection_gets_414(served: UIServer) -> None:
    first = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = exchange(served, first + get_request(b"/?" + b"x" * 100_000))
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 414 URI Too Long\r\n" in answer


def test_a_head_past_16_kib_gets_431(served: UIServer) -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 1000) for i in range(40))
    status, got, body = status_and_headers(exchange(served, get_request(b"/api/runs", extra=headers)))
    assert status == 431 and b"16384" in body
    assert got["x-content-type-options"] == "nosniff"
