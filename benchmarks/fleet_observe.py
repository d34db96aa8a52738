"""What the fleet harness watches while the run goes on, and the two pieces of network it fakes.

- :class:`ProcessSampler` reads ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` of each Collector
  every second (CPU seconds, resident memory) and scrapes the Collector's own metrics endpoint
  (points accepted and sent, sending-queue size) plus the size of an agent's queue folder. It
  keeps the last CPU reading of every process id, so a Collector that is SIGKILLed and started
  again is counted as the sum of its lives.
- :class:`PrometheusWatcher` polls Prometheus for one metric of every rank and records, for
  each sample, when it first became visible: the latency from ``log()`` (the sample's own
  timestamp) to a point PromQL can see, and when the data caught up after each fault.
- :class:`CuttableLink` is a TCP relay on loopback between the gateway and Prometheus. Cutting it
  closes its listening socket and resets every connection, so the gateway finds Prometheus
  unreachable (connection refused) while Prometheus itself keeps running and stays queryable.
- :class:`LoopbackDNS` answers one name with several addresses, so that several gateways can sit
  behind one DNS name without touching the machine's resolver.

Thread safety: each class runs one daemon thread of its own; the readers (``summary()``,
``latencies()``, ...) take the same lock as the thread that writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.collector.stack import http_get

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


# -- /proc ---------------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far, from ``/proc/<pid>/stat``; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    utime_ticks, stime_ticks = int(fields[11]), int(fields[12])
    return (utime_ticks + stime_ticks) / CLOCK_TICKS_PER_S


def process_memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``RssAnon`` and ``RssFile`` of ``pid`` in KiB (those the kernel reports); {} once gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metric_sums(exposition: str, names: Iterable[str]) -> dict[str, float]:
    """The sum over all label sets of each metric in ``names``, read from a Prometheus text exposition."""
    wanted = set(names)
    sums = dict.fromkeys(wanted, 0.0)
    for line in exposition.splitlines():
        match = _SAMPLE_LINE.match(line)
        name = match.group(1).removesuffix("_total") if match else ""
        if match and name in wanted:
            try:
                sums[name] += float(match.group(3))
            except ValueError:
                pass
    return sums


# -- the Collectors, sampled -----------------------------------------------------------------------

# The Collector's own metrics, as v0.161.0's Prometheus reader names them (no ``_total`` suffix;
# :func:`metric_sums` also accepts the suffixed form of other releases).
ACCEPTED = "otelcol_receiver_accepted_metric_points"
REFUSED = "otelcol_receiver_refused_metric_points"
SENT = "otelcol_exporter_sent_metric_points"
SEND_FAILED = "otelcol_exporter_send_failed_metric_points"
QUEUE_SIZE = "otelcol_exporter_queue_size"
COLLECTOR_METRICS = (ACCEPTED, REFUSED, SENT, SEND_FAILED, QUEUE_SIZE)


@dataclass
class Watched:
    """One role (``agent-0``, ``gateway``, ``prometheus``) whose current process id ``pid()`` answers."""

    role: str
    pid: Callable[[], int | None]
    metrics_url: str | None = None
    queue_folder: Path | None = None
    cpu_s_by_pid: dict[int, float] = field(default_factory=dict)


class ProcessSampler:
    """Samples CPU, memory, the Collectors' own counters and queue folders every ``interval_s``."""

    def __init__(self, watched: list[Watched], interval_s: float = 1.0) -> None:
        self.watched = {w.role: w for w in watched}
        self.interval_s = interval_s
        self.timeline: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def read_cpu(self, role: str) -> None:
        """Record the CPU of ``role``'s current process now (called just before it is SIGKILLed)."""
        watched = self.watched[role]
        pid = watched.pid()
        if pid is not None:
            cpu_s = process_cpu_s(pid)
            if cpu_s is not None:
                with self._lock:
                    watched.cpu_s_by_pid[pid] = cpu_s

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time()}
        for role, watched in self.watched.items():
            pid = watched.pid()
            entry: dict[str, Any] = {"pid": pid}
            if pid is not None:
                cpu_s = process_cpu_s(pid)
                if cpu_s is not None:
                    with self._lock:
                        watched.cpu_s_by_pid[pid] = cpu_s
                    entry["cpu_s"] = cpu_s
                entry.update(process_memory_kib(pid))
            if watched.metrics_url and pid is not None:
                status, body = http_get(watched.metrics_url, timeout_s=2)
                if status == 200:
                    entry.update(metric_sums(body.decode(errors="replace"), COLLECTOR_METRICS))
            if watched.queue_folder is not None:
                entry["queue_folder_bytes"] = folder_bytes(watched.queue_folder)
            row[role] = entry
        with self._lock:
            self.timeline.append(row)
        return row

    def cpu_s(self, role: str) -> float:
        """CPU seconds of every process ``role`` has had, each at its last reading."""
        with self._lock:
            return sum(self.watched[role].cpu_s_by_pid.values())

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.timeline)


# -- Prometheus, watched ---------------------------------------------------------------------------


@dataclass
class SeriesProgress:
    """What the watcher has seen of one rank's series: steps seen, their times, the contiguous prefix."""

    seen_ms: dict[int, int] = field(default_factory=dict)  # step -> sample time (ms since the epoch)
    prefix: int = 0  # steps 0 .. prefix-1 are all seen

    def advance(self) -> None:
        while self.prefix in self.seen_ms:
            self.prefix += 1

    def prefix_end_ms(self) -> int | None:
        """Time of the newest step of the contiguous prefix (None before step 0 is seen)."""
        return self.seen_ms.get(self.prefix - 1) if self.prefix else None


class PrometheusWatcher:
    """Polls ``metric`` of every rank of ``run_id``; records when each sample first became visible.

    Each poll asks for the raw samples since the oldest one not yet seen (so the answer stays
    small in steady state and still finds samples that arrive late after a fault). The value of a
    sample is its step (``fleet_rank.py``), which tells which step arrived. ``latency`` of a sample
    is the time the poll that first returned it finished minus the sample's own timestamp (the
    time of the ``log()`` call): an upper bound, at most one poll interval plus a query late.
    """

    def __init__(self, url: str, metric: str, run_id: str, ranks: int, start_s: float, interval_s: float = 1.0) -> None:
        self.url = url
        self.metric = metric
        self.run_id = run_id
        self.ranks = ranks
        self.start_s = start_s
        self.interval_s = interval_s
        self.progress = {rank: SeriesProgress() for rank in range(ranks)}
        self.latencies: list[tuple[int, float]] = []  # (sample time in ms, seconds until visible)
        self.visible: list[tuple[float, int]] = []  # (poll time, samples of `metric` seen so far)
        self.failed_polls = 0
        self.recoveries: dict[str, float] = {}  # fault name -> seconds from its end until caught up
        self._pending: dict[str, float] = {}  # fault name -> wall time its fault ended
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-prometheus-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def recovery_from(self, fault: str, ended_s: float) -> None:
        """Measure how long after ``ended_s`` every rank's data up to then is visible."""
        with self._lock:
            self._pending[fault] = ended_s

    def seen(self) -> int:
        with self._lock:
            return sum(len(p.seen_ms) for p in self.progress.values())

    def _window_s(self, now_s: float) -> int:
        with self._lock:
            oldest_ms = min((p.prefix_end_ms() or int(self.start_s * 1000)) for p in self.progress.values())
        return max(5, int(now_s - oldest_ms / 1000) + 2 + int(self.interval_s))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> None:
        promql = f'{self.metric}{{training_run_id="{self.run_id}"}}[{self._window_s(time.time())}s]'
        status, body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout_s=10)
        answered_s = time.time()
        if status != 200:
            with self._lock:
                self.failed_polls += 1
            return
        result = json.loads(body)["data"]["result"]
        with self._lock:
            for series in result:
                rank = int(series["metric"].get("training_rank", "-1"))
                progress = self.progress.get(rank)
                if progress is None:
                    continue
                for t, v in series["values"]:
                    step = int(float(v))
                    if step not in progress.seen_ms:
                        t_ms = round(float(t) * 1000)
                        progress.seen_ms[step] = t_ms
                        self.latencies.append((t_ms, answered_s - t_ms / 1000))
                progress.advance()
            self.visible.append((answered_s, sum(len(p.seen_ms) for p in self.progress.values())))
            for fault, ended_s in list(self._pending.items()):
                ends = [p.prefix_end_ms() for p in self.progress.values()]
                if all(end is not None and end >= ended_s * 1000 for end in ends):
                    self.recoveries[fault] = answered_s - ended_s
                    del self._pending[fault]

    def snapshot(self) -> tuple[list[tuple[int, float]], list[tuple[float, int]], dict[str, float]]:
        with self._lock:
            return list(self.latencies), list(self.visible), dict(self.recoveries)


# -- a network path that a fault can cut -----------------------------------------------------------


class CuttableLink:
    """A TCP relay from ``127.0.0.1:port`` to ``127.0.0.1:target_port`` that :meth:`cut` makes unreachable.

    Runs an asyncio loop on its own thread. ``cut`` closes the listening socket (new connections
    are refused) and aborts every open connection (requests in flight fail); ``restore`` listens
    again on the same port.
    """

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-link", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def _call(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._close())

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            self._writers.difference_update((writer, upstream_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # one direction ended: end the connection (the other pipe then ends too)


# -- one DNS name for several gateways -------------------------------------------------------------


class LoopbackDNS:
    """A DNS server on ``127.0.0.1`` (UDP) that answers one name with several A records.

    Stands in for the cluster's DNS in front of several gateways: the agents' gRPC client asks it
    directly (an endpoint ``dns://127.0.0.1:PORT/NAME:GRPC_PORT``), so the machine's resolver and
    ``/etc/hosts`` are not touched. Every A query for ``name`` gets all ``addresses``; any other
    query type for it gets an empty answer, any other name NXDOMAIN. Answers carry a 1 s TTL.
    """

    def __init__(self, port: int, name: str, addresses: list[str]) -> None:
        self.port = port
        self.name = name.rstrip(".").lower()
        self.addresses = addresses
        self.queries = 0
        self._socket: Any = None
        self._thread = threading.Thread(target=self._serve, name="fleet-dns", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        import socket

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", self.port))
        self._socket.settimeout(0.5)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._socket.recvfrom(512)
            except OSError:  # the timeout, or the socket closed by stop()
                continue
            answer = self.answer(query)
            if answer:
                self.queries += 1
                self._socket.sendto(answer, client)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one DNS query message (RFC 1035 section 4), or None if it cannot be read."""
        if len(query) < 12:
            return None
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        offset += 1
        if offset + 4 > len(query):
            return None
        question = query[12 : offset + 4]
        qtype = int.from_bytes(query[offset : offset + 2], "big")
        known = ".".join(labels).lower() == self.name
        rd = query[2] & 0x01  # echo "recursion desired"
        records = list(self.addresses) if known and qtype == 1 else []
        flags = 0x8400 | (rd << 8) | (0 if known else 3)  # response, authoritative; NXDOMAIN for other names
        header = query[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") + len(records).to_bytes(2, "big") + bytes(4)
        body = b"".join(
            b"\xc0\x0c"
            + (1).to_bytes(2, "big")
            + (1).to_bytes(2, "big")
            + (1).to_bytes(4, "big")
            + (4).to_bytes(2, "big")
            # the name is a pointer to the question; type A, class IN, TTL 1 s, 4 bytes of address
            + bytes(int(part) for part in ip.split("."))
            for ip in records
        )
        return header + question + body
