"""A dead letter's reason is one short line (issue 18, 11c): a receiver's whole HTML error page,
or a multi-line message, is cut to its first line and about 200 characters, and says it was cut."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.errors import PermanentError
from otel_recursive_metrics.model.batch import PointBatch
from otel_recursive_metrics.pipeline.worker import Pipeline
from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue

from .helpers import ScriptedSink, run_cli, wait_until
from .test_delivery import make_pipeline, record

#: "about 200 characters" (the issue's words; dead_letter.REASON_MAX_CHARS).
LIMIT = 200

HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>400 Bad Request</title>\n<style>body { font-family: sans-serif; }</style></head>\n"
    + "<body>\n<h1>Bad Request</h1>\n"
    + "".join(f"<p>Line {i} of a proxy's error page, with nothing a user needs in it.</p>\n" for i in range(200))
    + "</body>\n</html>\n"
)


class _HtmlErrors(http.server.BaseHTTPRequestHandler):
    """A proxy in front of the receiver that answers every export with an HTML error page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = HTML_PAGE.encode()
        self.send_response(400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def html_proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlErrors)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics"
    finally:
        server.shutdown()
        server.server_close()


def assert_brief(reason: str) -> None:
    assert "\n" not in reason and len(reason) <= LIMIT, (len(reason), reason)
    assert reason.endswith("..."), f"a cut reason says it was cut: {reason!r}"


def test_an_html_error_page_becomes_one_short_line(data_dir: Path, html_proxy: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(
        dir=data_dir, sinks="otlp", otlp_endpoint=html_proxy, otlp_protocol="http/protobuf", flush_interval_s=0.05, retry_delay_s=0.01
    )
    pipeline = Pipeline(config)
    for i in range(3):
        assert pipeline.offer(record(i))
    pipeline.flush(30.0)
    pipeline.shutdown(5.0)
    (entry,) = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).entries()
    assert entry.points == 3
    assert_brief(entry.reason)
    assert "HTTP 400" in entry.reason and "<!DOCTYPE html>" in entry.reason
    assert "Line 3 of" not in entry.reason
    meta = json.loads(entry.meta_path.read_text())
    assert meta["reason"] == entry.reason
    code, out, _ = run_cli(capsys, "dlq", "list", "--dir", str(data_dir), "--format", "json")
    assert code == 0 and json.loads(out)["reason"] == entry.reason


class _MultiLineRefusal(ScriptedSink):
    """A receiver whose refusal is a short first line and a long stack of detail after it."""

    def send(self, batch: PointBatch, deadline: float) -> None:
        self.attempts += 1
        raise PermanentError("INVALID_ARGUMENT: bad metric name\n" + "\n".join(f"  at frame {i}" for i in range(500)))


def test_a_multi_line_refusal_keeps_its_first_line_and_says_the_rest_was_cut(data_dir: Path) -> None:
    sink = _MultiLineRefusal("otlp")
    pipeline = make_pipeline(data_dir, sink)
    assert pipeline.offer(record(1))
    wait_until(lambda: bool(pipeline.get_stats()["dead_lettered_points"]), 30, "the dead letter")
    stats = pipeline.get_stats()
    pipeline.shutdown(5.0)
    (entry,) = DeadLetterQueue(data_dir / "dead-letter", max_bytes=1 << 30).entries()
    assert entry.reason == "permanent error: INVALID_ARGUMENT: bad metric name ..."
    assert stats["last_error"]["otlp"] == entry.reason, "the stats say the same short line"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permanent error: HTTP 400", "permanent error: HTTP 400"),
        ("x" * LIMIT, "x" * LIMIT),
        ("x" * (LIMIT + 1), "x" * (LIMIT - 3) + "..."),
        ("\n\n  first line  \nsecond line", "first line ..."),
        ("", ""),
    ],
)
def test_brief_reason_keeps_the_first_line_up_to_the_limit(text: str, expected: str) -> None:
    from otel_recursive_metrics.queue.dead_letter import REASON_MAX_CHARS, brief_reason

    assert REASON_MAX_CHARS == LIMIT
    assert brief_reason(text) == expected
