"""Issue 18's queue faults, reproduced as reported: 3 (junk in ``queue/``), 4 (two ``sync`` or two
``dlq replay`` at once), 11c (an HTML page as a dead letter's reason) and 11d (a dead letter the
disk refuses).

    python benchmarks/faults_r3_queue.py

Prints one Markdown table; :func:`rows` gives the rows to ``benchmarks/faults.py``. Each scenario
runs the package for real (CLI child processes, a loopback receiver); the only fakes are at the
disk seam (the dead-letter writer refusing with ENOSPC, the queue's folder refusing with EACCES).
Runs in a minute or two, against whatever ``otel_recursive_metrics`` is on the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from otel_recursive_metrics import PointStore, TrainingMetrics
from otel_recursive_metrics.pipeline import worker

try:
    from otel_recursive_metrics.queue.dead_letter import DeadLetterQueue
except ImportError:  # a package from before issue 19's layout (faults.py --against an older commit)
    from otel_recursive_metrics.pipeline.dead_letter import DeadLetterQueue  # type: ignore[no-redef]
from tests.otlp_receiver import Fault, HttpReceiver, sample_batch

Row = dict[str, str]


def _row(scenario: str, logged: int, delivered: int, dropped: int, note: str, *, lost: int | None = None) -> Row:
    uncounted = max(0, logged - delivered - dropped) if lost is None else lost
    return {
        "scenario": scenario,
        "logged": str(logged),
        "delivered": str(delivered),
        "counted as dropped": str(dropped),
        "lost uncounted": str(uncounted),
        "note": note,
    }


def _stored(data_dir: Path) -> int:
    store = data_dir / "metrics.db"
    return PointStore(store, readonly=True).count() if store.exists() else 0


def _log(data_dir: Path, n: int, **options: Any) -> dict[str, Any]:
    metrics = TrainingMetrics(dir=data_dir, flush_interval_s=0.05, **options)
    try:
        for step in range(n):
            metrics.log({"loss": float(step)}, step=step)
        metrics.flush(10.0)
        stats: dict[str, Any] = metrics.get_stats()
    finally:
        metrics.close(10.0)
    return stats


# -- 3: junk in queue/ -------------------------------------------------------------------------


def _junk(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to(path.parent / "gone" / "nowhere")


def junk_slots(work: Path) -> list[Row]:
    rows = []
    for kind in ("folder", "FIFO", "dangling link"):
        for name in ("slot-0.db", "slot-0.lock"):
            data = work / f"junk-{kind.replace(' ', '-')}-{name}"
            _junk(data / "queue" / name, kind)
            stats = _log(data, 1000)
            dropped = sum(stats["dropped_points"].values())
            moved = sorted(p.name for p in (data / "queue").glob(f"{name}.*"))
            note = f"store-only; dropped {stats['dropped_points'] or 'nothing'}; " + (
                f"moved aside: {moved[0]}" if moved else "left in place"
            )
            rows.append(_row(f"3: a {kind} as queue/{name}, 1,000 values", 1000, _stored(data), dropped, note))
    return rows


def unusable_queue(work: Path) -> Row:
    data = work / "unusable-queue"

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(data / "queue" / "slot-0.lock"))

    with mock.patch.object(worker, "DurableQueue", refuse):
        stats = _log(data, 1000)
    dropped = sum(stats["dropped_points"].values())
    note = f"store-only, store_direct; queue_failing={stats.get('queue_failing')}"
    return _row("3: the queue cannot be opened at all (EACCES at the disk seam), 1,000 values", 1000, _stored(data), dropped, note)


def _cli(*argv: str, **env: str) -> subprocess.Popen[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # A held request must not time out and be sent again: only the second process may duplicate.
    child_env.update(OTEL_RECURSIVE_METRICS_SEND_TIMEOUT_S="300", OTEL_EXPORTER_OTLP_TIMEOUT="300000", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "otel_recursive_metrics", *argv], env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _offline(data: Path, receiver: HttpReceiver, values: int) -> None:
    with TrainingMetrics(
        dir=data, sinks="otlp", offline=True, otlp_endpoint=receiver.endpoint, otlp_protocol="http/protobuf", flush_interval_s=0.2
    ) as metrics:
        for step in range(values // 10):
            metrics.log({f"m{i}": float(step) for i in range(10)}, step=step)
        metrics.flush(60.0)


def fifo_sync(work: Path) -> Row:
    data = work / "fifo-sync"
    with HttpReceiver(keep_requests=False) as rec:
        _offline(data, rec, 200)
        (data / "queue" / "slot-1.lock").touch()
        os.mkfifo(data / "queue" / "slot-1.db")
        child = _cli("sync", "--dir", str(data), "--endpoint", rec.endpoint, "--protocol", "http/protobuf")
        try:
            _, err = child.communicate(timeout=20)
            note = f"sync exit {child.returncode}; " + (
                "the FIFO moved aside and said" if "moved aside" in err else "the FIFO left as it is"
            )
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            note = "sync hung on the FIFO: killed after 20 s"
        return _row("3: a FIFO as queue/slot-1.db beside 200 points for OTLP, then `sync`", 200, rec.points_accepted, 0, note)


# -- 4: two syncs, two replays -----------------------------------------------------------------


class _Gate(HttpReceiver):
    """Holds every request while ``gate`` is clear, so the first process is surely mid-delivery."""

    def __init__(self) -> None:
        super().__init__(keep_requests=False)
        self.gate = threading.Event()
        self.held = 0
        self.set_fault(Fault(delay_s=1e-9))

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            self.held += 1
        self.gate.wait(120)


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def _two_at_once(rec: _Gate, argv: list[str], data: Path) -> tuple[str, str]:
    """Start one process, and a second while the first's first request is held; both outcomes."""
    rec.gate.clear()
    first = _cli(*argv)
    _wait(lambda: rec.held >= 1, 60)
    second = _cli(*argv)
    try:
        second.communicate(timeout=15)  # the fixed code answers at once; the old one is held too
    except subprocess.TimeoutExpired:
        pass
    rec.gate.set()
    first.communicate(timeout=300)
    _, second_err = second.communicate(timeout=300)
    said = second_err.strip().splitlines()[-1].removeprefix("otel-recursive-metrics: ") if second_err.strip() else ""
    said = said.replace(str(data), "DIR")
    return f"exit {first.returncode}", f"exit {second.returncode} ({said.split(';')[0][:120]})"


def two_syncs(work: Path) -> Row:
    data = work / "two-syncs"
    with _Gate() as rec:
        rec.gate.set()
        _offline(data, rec, 40_000)
        first, second = _two_at_once(rec, ["sync", "--dir", str(data), "--endpoint", rec.endpoint, "--protocol", "http/protobuf"], data)
        got = rec.points_accepted
    note = f"receiver got {got} for 40000 ({got - 40000} duplicates); first sync {first}; second sync {second}"
    return _row("4: two `sync` at once over a 40,000-value offline folder", 40_000, got, 0, note, lost=max(0, 40_000 - got))


def two_replays(work: Path) -> Row:
    data = work / "two-replays"
    dlq = DeadLetterQueue(data / "dead-letter", max_bytes=1 << 40)
    for i in range(20):
        dlq.add(sample_batch(1000, first_step=i * 1000), reason="permanent error: test", sink="otlp")
    with _Gate() as rec:
        argv = ["dlq", "replay", "--dir", str(data), "--to", "otlp", "--endpoint", rec.endpoint, "--protocol", "http/protobuf"]
        first, second = _two_at_once(rec, [*argv, "--timeout", "300"], data)
        got = rec.points_accepted
    left = sum(e.points for e in dlq.entries())
    note = f"receiver got {got} for 20000 ({got - 20000} duplicates); {left} left in the DLQ; first {first}; second {second}"
    return _row("4: two `dlq replay` at once, 20 entries of 1,000 points", 20_000, got, 0, note, lost=max(0, 20_000 - got - left))


# -- 11c, 11d: dead letters --------------------------------------------------------------------


@contextlib.contextmanager
def _html_proxy() -> Iterator[str]:
    import http.server

    page = (
        "<!DOCTYPE html>\n<html><head><title>400 Bad Request</title></head>\n<body>\n"
        + "".join(f"<p>line {i} of a proxy's error page</p>\n" for i in range(200))
        + "</body></html>\n"
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(400)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics"
    finally:
        server.shutdown()
        server.server_close()


def html_reason(work: Path) -> Row:
    data = work / "html-reason"
    with _html_proxy() as endpoint:
        stats = _log(data, 30, sinks="otlp", otlp_endpoint=endpoint, otlp_protocol="http/protobuf", retry_delay_s=0.01)
    entries = list(DeadLetterQueue(data / "dead-letter", max_bytes=1 << 40).entries())
    reasons = [e.reason for e in entries]
    longest = max((len(r) for r in reasons), default=0)
    lines = max((len(r.splitlines()) for r in reasons), default=0)
    dead = sum(e.points for e in entries)
    note = f"{dead} dead-lettered; reason: {longest} characters, {lines} line(s), ends {reasons[0][-12:]!r}" if reasons else "no entry"
    dropped = sum(stats["dropped_points"].values())
    return _row("11c: a receiver answers with an HTML error page", 30, 0, dropped, note, lost=30 - dead - dropped)


def held_dead_letter(work: Path) -> Row:
    data = work / "held-dead-letter"
    write = DeadLetterQueue.add
    full_until = [0.0]
    refusals = [0]

    def add(queue: DeadLetterQueue, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < full_until[0]:
            refusals[0] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(queue, *args, **kwargs)

    with HttpReceiver(keep_requests=False) as rec, mock.patch.object(DeadLetterQueue, "add", add):
        rec.set_fault(Fault(http_status=401, message="bad token"))
        full_until[0] = time.monotonic() + 3.0  # the disk is full for 3 s, then frees
        metrics = TrainingMetrics(
            dir=data, sinks="store,otlp", otlp_endpoint=rec.endpoint, otlp_protocol="http/protobuf", flush_interval_s=0.05
        )
        for step in range(1000):
            metrics.log({"loss": float(step)}, step=step)
        _wait(lambda: time.monotonic() > full_until[0] + 2.0 and not metrics.get_stats()["queue_points"], 30)
        stats = metrics.get_stats()
        metrics.close(10.0)
    dead = stats["dead_lettered_points"].get("otlp", 0)
    dropped = stats["sink_dropped_points"].get("otlp", 0)
    note = (
        f"OTLP share: {dead} dead-lettered, {dropped} dropped ({stats['dropped_points'] or 'nothing'}) after {refusals[0]} refusal(s)"
        f" of the dead letter in 3 s; store: {_stored(data)}"
    )
    scenario = "11d: the OTLP receiver refuses (401) while the disk refuses dead letters for 3 s (OTLP share)"
    return _row(scenario, 1000, 0, dropped, note, lost=1000 - dead - dropped)


def rows(work: Path) -> list[Row]:
    out = junk_slots(work)
    out.append(unusable_queue(work))
    out.append(fifo_sync(work))
    out.append(two_syncs(work))
    out.append(two_replays(work))
    out.append(html_reason(work))
    out.append(held_dead_letter(work))
    return out


def main() -> None:
    import logging

    logging.disable(logging.CRITICAL)  # the table says what happened
    with tempfile.TemporaryDirectory(prefix="faults-r3-queue-") as tmp:
        table = rows(Path(tmp))
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(row[k].replace("|", "/") for k in keys) + " |")


if __name__ == "__main__":
    main()
