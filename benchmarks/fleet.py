"""A training fleet through the Collector on loopback: agents per node, a gateway, Prometheus, faults.

    python benchmarks/fleet.py --ranks 32 --nodes 4 --values 20 --step-ms 50 --seconds 120

starts, all on 127.0.0.1 with free ports and in a temporary folder:

- Prometheus (``prometheus`` on PATH, e.g. Debian's package) with the remote-write receiver and
  an out-of-order window (``tests/collector/stack.py``'s ``PROMETHEUS_CONFIG``);
- a :class:`~fleet_observe.CuttableLink` in front of it, the gateway's only way to Prometheus;
- one gateway Collector (``base.yaml`` + ``gateway.yaml``), synchronous: it answers an agent only
  once Prometheus has the samples (``GATEWAY_PROCESSORS='[memory_limiter]' PRW_QUEUE_ENABLED=false``,
  collector-config/README.md "Crash safety"), and copies ``training.rank`` and ``training.run.id``
  onto every series (``PRW_RESOURCE_LABELS``). With ``--gateways N`` there are N of them, on
  ``127.0.0.2``, ``127.0.0.3``, ... and one port, behind one DNS name that a
  :class:`~fleet_observe.LoopbackDNS` answers with all their addresses; the agents resolve it
  themselves and spread their requests over the gateways (gRPC ``round_robin``);
- one agent Collector per simulated node (``base.yaml`` + ``agent.yaml``), each with its sending
  queue on disk (``file_storage``);
- ``--ranks`` rank processes (``fleet_rank.py``), ``--ranks / --nodes`` per node, with the
  variables torchrun sets; even ranks export OTLP/gRPC, odd ranks OTLP/HTTP, to their node's agent.

Faults, on a schedule spread over the run (``--faults``, each once): ``agent`` SIGKILLs agent 0
and starts it again after ``--agent-outage-s``; ``gateway`` SIGKILLs (the first) gateway and starts it
again after ``--gateway-outage-s``; ``prometheus`` cuts the link for ``--prometheus-outage-s``.

Afterwards PromQL must answer, for every rank and metric, exactly what the rank logged (the
rank's ``get_stats()``): the count of samples, the last step (``max_over_time``) and the sum of
the steps (``sum_over_time``). A table per rank is printed; the exit status is 0 only with 0 lost,
0 duplicated and no altered value. The figures (throughput, Collector CPU per 1,000 points and
memory, latency from ``log()`` to PromQL, recovery after each fault, the agents' queue during the
gateway outage) follow as Markdown, and as JSON with ``--json``.

Every process runs in its own process group and is stopped by its process id at the end, also on
an error, Ctrl-C or SIGTERM; every wait has a deadline. ``tests/collector/test_fleet.py`` runs a
short form of this (8 ranks, 2 nodes, 60 s, one gateway kill).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import REPO, cpu_model
from benchmarks.fleet_observe import ACCEPTED, QUEUE_SIZE, SENT, CuttableLink, LoopbackDNS, ProcessSampler, PrometheusWatcher, Watched
from tests.collector.stack import CONFIG_DIR, Collector, Prometheus, Server, free_port, start_prometheus

RANK_SCRIPT = Path(__file__).resolve().with_name("fleet_rank.py")
FAULT_KINDS = ("agent", "gateway", "prometheus")
READY_TIMEOUT_S = 300.0  # all ranks importing the SDK and gRPC at once on two cores
GATEWAYS_NAME = "gateways.fleet.test"  # the one DNS name of several gateways (.test: reserved, never real)
# With several addresses behind one name, the agents' gRPC client spreads its requests over all
# of them (the default policy, pick_first, would send everything to the first that answers).
ROUND_ROBIN_OVERLAY = """\
exporters:
  otlp_grpc/gateway:
    balancer_name: round_robin
"""
IDLE_MIN_S = 10.0  # the Collectors' idle CPU is measured over at least this long before the go
LATENCY_METRIC = "fleet_v00"  # the watcher follows one metric per rank; all of a step's values travel together


def say(message: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the fault schedule ----------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault: ``kind`` from :data:`FAULT_KINDS`, starting ``at_s`` after the go, lasting ``down_s``."""

    kind: str
    at_s: float
    down_s: float
    started_s: float = 0.0  # wall clock when it began
    ended_s: float = 0.0  # wall clock when the component answered again (restarted and healthy, or link restored)

    @property
    def name(self) -> str:
        return {"agent": "agent 0 kill -9", "gateway": "gateway kill -9", "prometheus": "Prometheus unreachable"}[self.kind]


def schedule(kinds: Sequence[str], seconds: float, down_s: dict[str, float]) -> list[Fault]:
    """Faults in the given order with equal quiet gaps before, between and after them.

    The gap after each fault is its time to recover before the next one begins (the recovery
    figure of a fault is only its own while the next has not started); at least 10 s each.
    """
    total_down_s = sum(down_s[kind] for kind in kinds)
    gap_s = (seconds - total_down_s) / (len(kinds) + 1)
    if kinds and gap_s < 10:
        raise SystemExit(f"fleet: {seconds:g} s leaves {gap_s:.1f} s between the faults {list(kinds)}, less than 10 s; run longer")
    faults = []
    at_s = gap_s
    for kind in kinds:
        faults.append(Fault(kind, at_s, down_s[kind]))
        at_s += down_s[kind] + gap_s
    return faults


# -- the stack -------------------------------------------------------------------------------------


@dataclass
class Rank:
    rank: int
    node: int
    local_rank: int
    protocol: str
    result: Path
    server: Server

    @property
    def ready(self) -> bool:
        return self.result.with_name(self.result.name + ".ready").exists()


@dataclass
class Fleet:
    """Every process of one run, and how to stop them all."""

    args: argparse.Namespace
    workdir: Path
    run_id: str
    prometheus: Prometheus | None = None
    link: CuttableLink | None = None
    gateways: list[Collector] = field(default_factory=list)
    dns: LoopbackDNS | None = None
    agents: list[Collector] = field(default_factory=list)
    ranks: list[Rank] = field(default_factory=list)

    def start_backends(self, otelcol: str, prometheus_binary: str) -> None:
        self.prometheus = start_prometheus(prometheus_binary, self.workdir / "prometheus")
        self.link = CuttableLink(free_port(), self.prometheus.port)
        self.link.start()
        gateway_env = {
            "PRW_ENDPOINT": f"http://127.0.0.1:{self.link.port}/api/v1/write",
            "GATEWAY_PROCESSORS": "[memory_limiter]",
            "PRW_QUEUE_ENABLED": "false",
            "PRW_RESOURCE_LABELS": "[training.rank, training.run.id]",
        }
        agent_overlays = ["agent.yaml"]
        if self.args.gateways == 1:
            gateway = self._collector(otelcol, "gateway-0", "gateway.yaml", **gateway_env)
            self.gateways.append(gateway)
            gateway_endpoint = f"127.0.0.1:{gateway.grpc_port}"
        else:
            # One port on several loopback addresses, one name for them all.
            grpc_port, http_port = free_port(), free_port()
            addresses = [f"127.0.0.{2 + i}" for i in range(self.args.gateways)]
            for i, address in enumerate(addresses):
                gateway = self._collector(
                    otelcol,
                    f"gateway-{i}",
                    "gateway.yaml",
                    **gateway_env,
                    OTLP_GRPC_ENDPOINT=f"{address}:{grpc_port}",
                    OTLP_HTTP_ENDPOINT=f"{address}:{http_port}",
                )
                gateway.grpc_port = grpc_port
                self.gateways.append(gateway)
            self.dns = LoopbackDNS(free_port(), GATEWAYS_NAME, addresses)
            self.dns.start()
            gateway_endpoint = f"dns://127.0.0.1:{self.dns.port}/{GATEWAYS_NAME}:{grpc_port}"
            overlay = self.workdir / "agent-round-robin.yaml"
            overlay.write_text(ROUND_ROBIN_OVERLAY)
            agent_overlays.append(str(overlay))
        for gateway in self.gateways:
            gateway.start()
        for node in range(self.args.nodes):
            folder = self.workdir / f"agent-{node}"
            agent = self._collector(
                otelcol,
                f"agent-{node}",
                *agent_overlays,
                GATEWAY_ENDPOINT=gateway_endpoint,
                AGENT_QUEUE_DIR=str(folder / "queue"),
            )
            self.agents.append(agent)
            agent.start()

    def _collector(self, otelcol: str, name: str, *overlays: str, **env: str) -> Collector:
        """A Collector of ``base.yaml`` plus ``overlays`` (names in collector-config/ or paths), not started."""
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        return Collector(otelcol, [CONFIG_DIR / "base.yaml", *(CONFIG_DIR / o for o in overlays)], folder, env=env)

    def start_ranks(self) -> None:
        per_node = self.args.ranks // self.args.nodes
        folder = self.workdir / "ranks"
        folder.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        for rank in range(self.args.ranks):
            node, local_rank = divmod(rank, per_node)
            agent = self.agents[node]
            protocol = "grpc" if rank % 2 == 0 else "http/protobuf"
            env = dict(
                base,
                # What torchrun sets for a worker.
                RANK=str(rank),
                LOCAL_RANK=str(local_rank),
                WORLD_SIZE=str(self.args.ranks),
                LOCAL_WORLD_SIZE=str(per_node),
                GROUP_RANK=str(node),
                TORCHELASTIC_RUN_ID=self.run_id,
                TORCHELASTIC_RESTART_COUNT="0",
                # The exporter, configured as a user would.
                OTEL_SERVICE_NAME="fleet-trainer",
                OTEL_RECURSIVE_METRICS_RUN_ID=self.run_id,
                OTEL_RECURSIVE_METRICS_DIR=str(folder / f"rank-{rank}"),
                OTEL_RECURSIVE_METRICS_SINKS="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=agent.grpc_endpoint if protocol == "grpc" else agent.http_endpoint,
                OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                PYTHONUNBUFFERED="1",
            )
            if self.args.flush_interval_s is not None:
                env["OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL"] = str(self.args.flush_interval_s)
            result = folder / f"rank-{rank}.json"
            argv = [
                sys.executable,
                str(RANK_SCRIPT),
                "--result",
                str(result),
                "--values",
                str(self.args.values),
                "--step-ms",
                str(self.args.step_ms),
                "--seconds",
                str(self.args.seconds),
                "--close-timeout-s",
                str(self.args.close_timeout_s),
            ]
            server = Server(f"rank-{rank}", argv, log_path=folder / f"rank-{rank}.log", env=env, cwd=folder)
            self.ranks.append(Rank(rank, node, local_rank, protocol, result, server))
            server.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(r.ready for r in self.ranks):
            for r in self.ranks:
                if not r.server.running and not r.ready:
                    raise RuntimeError(f"rank {r.rank} exited before it was ready; its log:\n{r.server.log_tail()}")
            if time.monotonic() > deadline:
                late = [r.rank for r in self.ranks if not r.ready]
                raise RuntimeError(f"ranks {late} not ready within {READY_TIMEOUT_S:g} s")
            time.sleep(0.2)

    def go(self, start_s: float) -> None:
        for r in self.ranks:
            go_file = r.result.with_name(r.result.name + ".go")
            temporary = r.result.with_name(r.result.name + ".go.tmp")
            temporary.write_text(repr(start_s))
            temporary.replace(go_file)  # the rank never reads a half-written file

    def wait_ranks(self, deadline_s: float) -> None:
        for r in self.ranks:
            assert r.server.process is not None
            try:
                r.server.process.wait(timeout=max(1.0, deadline_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"rank {r.rank} still running at its deadline; its log:\n{r.server.log_tail()}") from None

    def stop(self) -> None:
        """Stop every process by its process group: ranks first, then the Collectors, Prometheus last."""
        for r in self.ranks:
            r.server.stop(timeout_s=5)
        collectors = [c for c in (*self.agents, *self.gateways) if c.server is not None]
        for c in collectors:
            assert c.server is not None
            c.server.signal_group(signal.SIGTERM)
        for c in collectors:
            c.stop()
        if self.link is not None:
            self.link.stop()
        if self.dns is not None:
            self.dns.stop()
        if self.prometheus is not None:
            self.prometheus.server.stop()

    def logs_tail(self) -> str:
        parts = []
        for c in (*self.gateways, *self.agents):
            parts.append(f"--- {c.folder.name} log tail:\n{c.log_tail(25)}")
        if self.prometheus is not None:
            parts.append(f"--- prometheus log tail:\n{self.prometheus.server.log_tail(15)}")
        return "\n".join(parts)


def pid_of(collector: Collector) -> int | None:
    server = collector.server
    return server.process.pid if server is not None and server.process is not None and server.running else None


# -- faults ----------------------------------------------------------------------------------------


def inject(fault: Fault, fleet: Fleet, sampler: ProcessSampler, watcher: PrometheusWatcher) -> None:
    """Cause ``fault``, wait out its outage, repair it; its start and end times are recorded on it."""
    assert fleet.link is not None
    if fault.kind in ("agent", "gateway"):
        collector, role = (fleet.agents[0], "agent-0") if fault.kind == "agent" else (fleet.gateways[0], "gateway-0")
        sampler.read_cpu(role)  # its last CPU reading before the process is gone
        fault.started_s = time.time()
        collector.kill()
        time.sleep(fault.down_s)
        collector.start()  # same ports and folder; returns once healthy
    else:
        fault.started_s = time.time()
        fleet.link.cut()
        time.sleep(fault.down_s)
        fleet.link.restore()
    fault.ended_s = time.time()
    watcher.recovery_from(fault.name, fault.ended_s)
    say(f"{fault.name}: down {fault.ended_s - fault.started_s:.1f} s")


# -- the check: PromQL against what each rank logged -----------------------------------------------


def metric_names(values: int) -> list[str]:
    return [f"fleet_v{k:02d}" for k in range(values)]


def per_rank(prometheus: Prometheus, promql: str) -> dict[int, list[float]]:
    """``{training_rank: [value, ...]}`` of an instant query (a list: one per series the rank has)."""
    out: dict[int, list[float]] = {}
    for series in prometheus.query(promql):
        out.setdefault(int(series["metric"]["training_rank"]), []).append(float(series["value"][1]))
    return out


def check(prometheus: Prometheus, run_id: str, results: dict[int, dict[str, Any]], window_s: int) -> list[dict[str, Any]]:
    """One row per rank: what it logged against what PromQL answers, metric by metric."""
    rows = {
        rank: {
            "rank": rank,
            "node": r["node"],
            "protocol": "gRPC" if r["protocol"] == "grpc" else "HTTP",
            "steps": r["stats"]["last_step"] + 1,
            "points_logged": r["stats"]["received_points"],
            "points_seen": 0,
            "late_steps": r["late_steps"],
            "lost": 0,
            "duplicated": 0,
            "wrong_metrics": [],
            "last_step_seen": -1,
            "retries": sum(r["stats"]["retries"].values()),
            "dead_lettered": sum(r["stats"]["dead_lettered_points"].values()),
            "dropped": sum(r["stats"]["dropped_points"].values()),
        }
        for rank, r in results.items()
    }
    selector = f'{{training_run_id="{run_id}"}}[{window_s}s]'
    for name in metric_names(next(iter(results.values()))["values"]):
        counts = per_rank(prometheus, f"count_over_time({name}{selector})")
        lasts = per_rank(prometheus, f"max_over_time({name}{selector})")
        sums = per_rank(prometheus, f"sum_over_time({name}{selector})")
        for rank, row in rows.items():
            steps = row["steps"]
            count = int(sum(counts.get(rank, [])))
            row["points_seen"] += count
            row["lost"] += max(0, steps - count)
            row["duplicated"] += max(0, count - steps)
            last = max(lasts.get(rank, [-1.0]))
            row["last_step_seen"] = max(row["last_step_seen"], int(last))
            expected_sum = steps * (steps - 1) / 2
            if len(counts.get(rank, [])) != 1 or last != steps - 1 or sum(sums.get(rank, [])) != expected_sum:
                row["wrong_metrics"].append(name)
    return [rows[rank] for rank in sorted(rows)]


def passed(rows: list[dict[str, Any]]) -> bool:
    return all(row["lost"] == 0 and row["duplicated"] == 0 and not row["wrong_metrics"] for row in rows)


def rank_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| rank | node | protocol | steps logged | points logged | points in Prometheus | lost | duplicated "
        "| last step logged / PromQL | series off | retries | dead-lettered | dropped |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        off = ", ".join(row["wrong_metrics"][:3]) + (" ..." if len(row["wrong_metrics"]) > 3 else "") or "none"
        lines.append(
            f"| {row['rank']} | {row['node']} | {row['protocol']} | {row['steps']:,} | {row['points_logged']:,} | {row['points_seen']:,} "
            f"| {row['lost']} | {row['duplicated']} | {row['steps'] - 1} / {row['last_step_seen']} | {off} "
            f"| {row['retries']} | {row['dead_lettered']} | {row['dropped']} |"
        )
    total = {k: sum(row[k] for row in rows) for k in ("points_logged", "points_seen", "lost", "duplicated")}
    lines.append(
        f"| **all** | | | | {total['points_logged']:,} | {total['points_seen']:,} "
        f"| **{total['lost']}** | **{total['duplicated']}** | | | | | |"
    )
    return "\n".join(lines)


# -- the figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def between(rows: list[dict[str, Any]], start_s: float, end_s: float) -> list[dict[str, Any]]:
    return [row for row in rows if start_s <= row["t"] <= end_s]


def role_sum(row: dict[str, Any], roles: Sequence[str], key: str) -> float:
    return float(sum(row.get(role, {}).get(key, 0) or 0 for role in roles))


def figures(
    args: argparse.Namespace,
    fleet: Fleet,
    faults: list[Fault],
    sampler: ProcessSampler,
    watcher: PrometheusWatcher,
    marks: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The measured figures, from the sampler's timeline, the watcher's polls and the ranks' results."""
    agents = [f"agent-{n}" for n in range(args.nodes)]
    gateways = [f"gateway-{n}" for n in range(args.gateways)]
    timeline = sampler.rows()
    latencies, visible, recoveries = watcher.snapshot()
    points = sum(row["points_logged"] for row in rows)
    go_s, drained_s = marks["go_s"], marks["drained_s"]
    run_s = drained_s - go_s
    out: dict[str, Any] = {"points": points, "run_s": run_s, "steps": sum(row["steps"] for row in rows)}
    out["late_steps"] = sum(row["late_steps"] for row in rows)

    # Throughput: what was logged, what the chain carried end to end, and its fastest catch-up.
    out["logged_points_per_s"] = points / args.seconds
    out["end_to_end_points_per_s"] = points / run_s
    scale = args.values  # the watcher counts one metric; every step carries `values` points together
    best = 0.0
    for i, (t0, seen0) in enumerate(visible):
        for t1, seen1 in visible[i + 1 :]:
            if t1 - t0 >= 5.0:
                best = max(best, (seen1 - seen0) * scale / (t1 - t0))
                break
    out["peak_points_per_s_5s"] = best

    # CPU: per 1,000 points over the whole run (idle CPU measured before the go is subtracted too).
    cpu: dict[str, Any] = {}
    for group, roles, group_points in (("agents", agents, points), ("gateway", gateways, points)):
        used_s = sum(sampler.cpu_s(role) for role in roles) - sum(marks["cpu_at_go"][role] for role in roles)
        idle_s = sum(marks["idle_cpu_per_s"][role] for role in roles) * run_s
        cpu[group] = {
            "cpu_s": used_s,
            "idle_cpu_s": idle_s,
            "ms_per_1000_points": 1e6 * used_s / group_points,
            "ms_per_1000_points_net_of_idle": 1e6 * max(0.0, used_s - idle_s) / group_points,
            "points_per_cpu_s": group_points / used_s if used_s else math.inf,
        }
    for role in ("prometheus",):
        cpu[role] = {"cpu_s": sampler.cpu_s(role) - marks["cpu_at_go"][role]}
        cpu[role]["ms_per_1000_points"] = 1e6 * cpu[role]["cpu_s"] / points
    out["cpu"] = cpu

    # Memory: resident set, peak and at the end of the logging, per role.
    memory: dict[str, Any] = {}
    for role in [*agents, *gateways, "prometheus"]:
        rss = [row[role].get("VmRSS", 0) for row in timeline if role in row and row[role].get("VmRSS")]
        memory[role] = {"peak_mib": max(rss, default=0) / 1024, "median_mib": statistics.median(rss) / 1024 if rss else 0.0}
    out["memory"] = memory

    # Latency log() -> visible to PromQL; over all samples, and outside the faults' windows.
    # A sample is "outside" when its way from log() to PromQL overlapped no fault or its recovery.
    windows = [(f.started_s, f.ended_s + recoveries.get(f.name, 0.0)) for f in faults]
    all_latencies = [lat for _, lat in latencies]
    quiet = [lat for t_ms, lat in latencies if not any(t_ms / 1000 <= b and t_ms / 1000 + lat >= a for a, b in windows)]
    out["latency_s"] = {
        "samples": len(all_latencies),
        "p50": percentile(all_latencies, 0.50),
        "p99": percentile(all_latencies, 0.99),
        "max": max(all_latencies, default=math.nan),
        "outside_faults_samples": len(quiet),
        "outside_faults_p50": percentile(quiet, 0.50),
        "outside_faults_p99": percentile(quiet, 0.99),
        "poll_s": args.poll_s,
        "failed_polls": watcher.failed_polls,
    }

    # Faults: time down, recovery (until every rank's data up to the repair is visible), queues.
    out["faults"] = []
    for i, fault in enumerate(faults):
        entry: dict[str, Any] = {
            "fault": fault.name,
            "at_s": fault.started_s - go_s,
            "down_s": fault.ended_s - fault.started_s,
            "recovery_s": recoveries.get(fault.name),
        }
        # Caught up only after the next fault began: the figure is that fault's too, not this one's.
        next_start_s = faults[i + 1].started_s if i + 1 < len(faults) else math.inf
        entry["recovery_overlaps_next_fault"] = fault.ended_s + (entry["recovery_s"] or math.inf) > next_start_s
        entry["quiet_after_s"] = next_start_s - fault.ended_s if next_start_s < math.inf else None
        before = [row for row in timeline if row["t"] <= fault.started_s]
        during = between(timeline, fault.started_s, fault.ended_s + 1.5)
        # While an agent is down its successor's counters start at zero: the queue figures are
        # those of the faults downstream of the agents, where the agents hold the backlog.
        if before and during and fault.kind != "agent":
            base = before[-1]
            queued = []
            for row in during:
                accepted = role_sum(row, agents, ACCEPTED) - role_sum(base, agents, ACCEPTED)
                sent = role_sum(row, agents, SENT) - role_sum(base, agents, SENT)
                queued.append(
                    {
                        "t": row["t"] - fault.started_s,
                        "queue_requests": role_sum(row, agents, QUEUE_SIZE),
                        "queued_points": accepted - sent,
                        "queue_bytes": role_sum(row, agents, "queue_folder_bytes") - role_sum(base, agents, "queue_folder_bytes"),
                        "queue_files_bytes": role_sum(row, agents, "queue_folder_bytes"),
                        "rss_kib": role_sum(row, agents, "VmRSS") - role_sum(base, agents, "VmRSS"),
                    }
                )
            peak = max(queued, key=lambda q: q["queued_points"])
            entry["agents_queue_peak"] = {
                "queue_requests": peak["queue_requests"],
                "queued_points": peak["queued_points"],
                "queue_bytes_growth": peak["queue_bytes"],
                "queue_files_bytes": peak["queue_files_bytes"],
                "rss_growth_kib": peak["rss_kib"],
                "bytes_on_disk_per_queued_point": peak["queue_bytes"] / peak["queued_points"] if peak["queued_points"] > 0 else None,
                "rss_bytes_per_queued_point": 1024 * peak["rss_kib"] / peak["queued_points"] if peak["queued_points"] > 0 else None,
            }
        out["faults"].append(entry)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def report(args: argparse.Namespace, faults: list[Fault], rows: list[dict[str, Any]], figs: dict[str, Any], context: dict[str, Any]) -> str:
    lat, cpu, mem = figs["latency_s"], figs["cpu"], figs["memory"]
    agents = [f"agent-{n}" for n in range(args.nodes)]
    gateways = [f"gateway-{n}" for n in range(args.gateways)]
    lines = [
        "## Fleet run",
        "",
        f"- Command: `{context['command']}`",
        f"- Run id `{context['run_id']}`; {args.ranks} ranks on {args.nodes} nodes, {args.gateways} gateway(s), "
        f"{args.values} values a step every "
        f"{args.step_ms:g} ms for {args.seconds:g} s; faults: {', '.join(f.name for f in faults) or 'none'}",
        f"- Result: **{'PASS' if passed(rows) else 'FAIL'}**, {sum(r['lost'] for r in rows)} lost, "
        f"{sum(r['duplicated'] for r in rows)} duplicated, {sum(bool(r['wrong_metrics']) for r in rows)} ranks with an altered series",
        "",
        "### Per rank (every metric checked with count_over_time, max_over_time and sum_over_time)",
        "",
        rank_table(rows),
        "",
        "### Figures",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| points logged | {figs['points']:,} ({fmt(figs['logged_points_per_s'], 0)} points/s) |",
        f"| steps logged more than one step late (the ranks were short of CPU) | {figs['late_steps']:,} of {figs['steps']:,} |",
        f"| end to end: all points in Prometheus, from the go | {fmt(figs['run_s'])} s "
        f"= {fmt(figs['end_to_end_points_per_s'], 0)} points/s |",
        f"| fastest 5 s into Prometheus (catching up after a fault) | {fmt(figs['peak_points_per_s_5s'], 0)} points/s |",
        f"| agents' CPU per 1,000 points (all {args.nodes} together; net of idle) | {fmt(cpu['agents']['ms_per_1000_points'], 2)} ms "
        f"({fmt(cpu['agents']['ms_per_1000_points_net_of_idle'], 2)} ms) |",
        f"| gateway's CPU per 1,000 points ({args.gateways} together; net of idle) | {fmt(cpu['gateway']['ms_per_1000_points'], 2)} ms "
        f"({fmt(cpu['gateway']['ms_per_1000_points_net_of_idle'], 2)} ms) |",
        f"| points per CPU-second: one agent / the gateway | {fmt(cpu['agents']['points_per_cpu_s'], 0)} / "
        f"{fmt(cpu['gateway']['points_per_cpu_s'], 0)} |",
        f"| Prometheus CPU per 1,000 points | {fmt(cpu['prometheus']['ms_per_1000_points'], 2)} ms |",
        f"| RSS peak: agents (each) / gateways (each) / Prometheus | {' '.join(fmt(mem[a]['peak_mib'], 0) for a in agents)} / "
        f"{' '.join(fmt(mem[g]['peak_mib'], 0) for g in gateways)} / {fmt(mem['prometheus']['peak_mib'], 0)} MiB |",
        f"| latency log() → PromQL, all {lat['samples']:,} samples of {LATENCY_METRIC}: p50 / p99 / max | {fmt(lat['p50'], 2)} / "
        f"{fmt(lat['p99'], 2)} / {fmt(lat['max'], 2)} s |",
        f"| the same, outside fault windows ({lat['outside_faults_samples']:,} samples): p50 / p99 | {fmt(lat['outside_faults_p50'], 2)} / "
        f"{fmt(lat['outside_faults_p99'], 2)} s |",
    ]
    for fault in figs["faults"]:
        recovered = f"{fmt(fault['recovery_s'])} s"
        if fault["recovery_overlaps_next_fault"]:
            recovered = f"not within the {fmt(fault['quiet_after_s'])} s before the next fault ({recovered} counting it)"
        lines.append(
            f"| {fault['fault']} at {fmt(fault['at_s'], 0)} s: down / all data up to the repair visible after "
            f"| {fmt(fault['down_s'])} s / {recovered} |"
        )
        peak = fault.get("agents_queue_peak")
        if peak:
            lines.append(
                f"| {fault['fault']}: agents' queues at their peak (requests / points / growth of the files, their size / RSS growth) | "
                f"{fmt(peak['queue_requests'], 0)} / {fmt(peak['queued_points'], 0)} / {fmt(peak['queue_bytes_growth'] / 1e6, 2)} MB, "
                f"{fmt(peak['queue_files_bytes'] / 1e6, 2)} MB / "
                f"{fmt(peak['rss_growth_kib'] / 1024, 1)} MiB |"
            )
            lines.append(
                f"| {fault['fault']}: per queued point, on disk / in RSS | {fmt(peak['bytes_on_disk_per_queued_point'], 0)} B / "
                f"{fmt(peak['rss_bytes_per_queued_point'], 0)} B |"
            )
    lines += [
        "",
        f"Latency is measured by polling PromQL every {args.poll_s:g} s ({lat['failed_polls']} polls failed): each figure is an upper "
        "bound, up to one poll interval late. CPU is user + system time from `/proc/<pid>/stat`, summed over every process a role "
        "had (a killed Collector's last reading plus its successor's), from the go until every point was in Prometheus.",
        "",
        f"- Machine: {context['machine']}; load average at start {context['load_start']}, at end {context['load_end']}",
        f"- Versions: {context['versions']}",
        f"- Code: {context['commit']}",
    ]
    return "\n".join(lines)


# -- context for the record ------------------------------------------------------------------------


def git_commit() -> str:
    try:
        argv = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def versions(otelcol: str, prometheus_binary: str) -> str:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "unknown"

    packages = []
    for name in ("otel-recursive-metrics", "opentelemetry-sdk", "opentelemetry-proto", "grpcio", "protobuf"):
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            packages.append(f"{name} (not installed)")
    return (
        f"Collector `{first_line([otelcol, '--version'])}`; Prometheus `{first_line([prometheus_binary, '--version'])}`; "
        f"Python {platform.python_version()}; " + ", ".join(packages)
    )


def machine() -> str:

    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu_model()}, {memory_gib:.1f} GiB RAM, {platform.system()} {platform.release()}"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- main ------------------------------------------------------------------------------------------


def find_otelcol(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("OTEL_RECURSIVE_METRICS_OTELCOL"):
        return os.environ["OTEL_RECURSIVE_METRICS_OTELCOL"]
    done = subprocess.run(["bash", str(CONFIG_DIR / "build.sh")], capture_output=True, text=True, timeout=1800, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"fleet: no Collector: collector-config/build.sh failed:\n{done.stderr[-2000:]}")
    return lines[-1]


@contextmanager
def terminated_by_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit on the main thread, so that cleanup runs."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--ranks", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=4, help="one agent Collector per node; --ranks must divide evenly")
    parser.add_argument("--values", type=int, default=20, help="values logged per step by each rank")
    parser.add_argument("--step-ms", type=float, default=50.0, help="time between a rank's steps (>= 2)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the ranks log")
    parser.add_argument("--gateways", type=int, default=1, help="gateways behind one DNS name (2 or more: on 127.0.0.2, .3, ...)")
    parser.add_argument("--faults", default="agent,gateway,prometheus", help="comma-separated, in order, from: " + ", ".join(FAULT_KINDS))
    parser.add_argument("--agent-outage-s", type=float, default=5.0)
    parser.add_argument("--gateway-outage-s", type=float, default=15.0)
    parser.add_argument("--prometheus-outage-s", type=float, default=30.0)
    parser.add_argument("--flush-interval-s", type=float, help="the ranks' OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL (default: the package's)")
    parser.add_argument("--close-timeout-s", type=float, default=120.0, help="each rank's final flush deadline")
    parser.add_argument("--drain-timeout-s", type=float, default=300.0, help="longest wait, once the ranks end, for Prometheus")
    parser.add_argument("--poll-s", type=float, default=1.0, help="how often PromQL is polled for the latency figures")
    parser.add_argument("--otelcol", help="Collector binary (default: $OTEL_RECURSIVE_METRICS_OTELCOL, else collector-config/build.sh)")
    parser.add_argument("--prometheus", help="Prometheus binary (default: `prometheus` on PATH)")
    parser.add_argument("--workdir", type=Path, help="folder for data and logs (default: a temporary one, removed after a pass)")
    parser.add_argument("--json", type=Path, help="also write the per-rank rows and the figures here")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.ranks < 1 or args.nodes < 1 or args.ranks % args.nodes:
        parser.error("--ranks must be a positive multiple of --nodes")
    if not 1 <= args.gateways <= 200:
        parser.error("--gateways must be between 1 and 200")
    if args.step_ms < 2:
        parser.error("--step-ms must be at least 2: Prometheus keeps one sample per series per millisecond")
    kinds = [k.strip() for k in args.faults.split(",") if k.strip() and k.strip() != "none"]
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"--faults: unknown {unknown}; choose from {', '.join(FAULT_KINDS)}")
    args.fault_kinds = kinds
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    faults = schedule(
        args.fault_kinds,
        args.seconds,
        {"agent": args.agent_outage_s, "gateway": args.gateway_outage_s, "prometheus": args.prometheus_outage_s},
    )
    prometheus_binary = args.prometheus or shutil.which("prometheus")
    if not prometheus_binary:
        raise SystemExit("fleet: no `prometheus` on PATH (Debian/Ubuntu: apt-get install prometheus); or pass --prometheus")
    otelcol = find_otelcol(args.otelcol)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="otel-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = f"fleet-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
    context = {
        "command": "python benchmarks/fleet.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "run_id": run_id,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_start": load_average(),
        "commit": git_commit(),
        "versions": versions(otelcol, prometheus_binary),
    }
    fleet = Fleet(args, workdir, run_id)
    sampler: ProcessSampler | None = None
    watcher: PrometheusWatcher | None = None
    ok = False
    with terminated_by_signals():
        try:
            say(f"workdir {workdir}; run id {run_id}")
            fleet.start_backends(otelcol, prometheus_binary)
            assert fleet.prometheus is not None
            prometheus_server = fleet.prometheus.server
            watched = [
                Watched(
                    f"agent-{n}",
                    functools.partial(pid_of, agent),
                    metrics_url=f"http://127.0.0.1:{agent.metrics_port}/metrics",
                    queue_folder=agent.folder / "queue",
                )
                for n, agent in enumerate(fleet.agents)
            ]
            watched += [
                Watched(f"gateway-{n}", functools.partial(pid_of, gateway), metrics_url=f"http://127.0.0.1:{gateway.metrics_port}/metrics")
                for n, gateway in enumerate(fleet.gateways)
            ]
            watched.append(Watched("prometheus", lambda: prometheus_server.process.pid if prometheus_server.process else None))
            sampler = ProcessSampler(watched)
            idle_from = (time.monotonic(), {w.role: sampler.sample()[w.role].get("cpu_s", 0.0) for w in watched})
            say(f"starting {args.ranks} ranks")
            fleet.start_ranks()
            time.sleep(max(0.0, IDLE_MIN_S - (time.monotonic() - idle_from[0])))
            idle_s = time.monotonic() - idle_from[0]
            cpu_at_go = {w.role: sampler.sample()[w.role].get("cpu_s", 0.0) for w in watched}
            marks: dict[str, Any] = {
                "cpu_at_go": cpu_at_go,
                "idle_cpu_per_s": {role: (cpu_at_go[role] - idle_from[1][role]) / idle_s for role in cpu_at_go},
            }
            go_s = time.time() + 1.0
            marks["go_s"] = go_s
            fleet.go(go_s)
            watcher = PrometheusWatcher(fleet.prometheus.url, LATENCY_METRIC, run_id, args.ranks, go_s, interval_s=args.poll_s)
            sampler.start()
            watcher.start()
            say(f"go: {args.ranks} ranks log for {args.seconds:g} s")
            for fault in faults:
                time.sleep(max(0.0, go_s + fault.at_s - time.time()))
                inject(fault, fleet, sampler, watcher)
            fleet.wait_ranks(time.monotonic() + max(0.0, go_s + args.seconds - time.time()) + args.close_timeout_s + 60)
            say("ranks done; waiting for Prometheus to have every point")
            missing = [r for r in fleet.ranks if not r.result.exists()]
            if missing:
                r = missing[0]
                raise RuntimeError(f"ranks {[m.rank for m in missing]} wrote no result; rank {r.rank}'s log:\n{r.server.log_tail()}")
            results = {r.rank: json.loads(r.result.read_text()) for r in fleet.ranks}
            expected_steps = sum(res["stats"]["last_step"] + 1 for res in results.values())
            drain_deadline = time.monotonic() + args.drain_timeout_s
            while watcher.seen() < expected_steps and time.monotonic() < drain_deadline:
                time.sleep(0.5)
            window_s = int(time.time() - go_s) + 120
            rows = check(fleet.prometheus, run_id, results, window_s)
            while not passed(rows) and time.monotonic() < drain_deadline:
                time.sleep(5)
                rows = check(fleet.prometheus, run_id, results, window_s)
            marks["drained_s"] = time.time()
            sampler.sample()
            watcher.poll()
            context["load_end"] = load_average()
            figs = figures(args, fleet, faults, sampler, watcher, marks, rows)
            text = report(args, faults, rows, figs, context)
            print(text, flush=True)
            if args.out:
                args.out.write_text(text + "\n")
            if args.json:
                record: dict[str, Any] = {
                    "context": context,
                    "args": {k: v for k, v in vars(args).items() if k not in ("json", "out", "workdir")},
                    "passed": passed(rows),
                    "ranks": rows,
                    "figures": figs,
                    "timeline": sampler.rows(),
                }
                args.json.write_text(json.dumps(record, indent=1, default=str))
            ok = passed(rows)
            if not ok:
                say("FAIL: PromQL does not answer what the ranks logged; logs are kept in " + str(workdir))
                say(fleet.logs_tail())
        except Exception:
            say(f"error; logs kept in {workdir}\n{fleet.logs_tail()}")
            raise
        finally:
            if watcher is not None:
                watcher.stop()
            if sampler is not None:
                sampler.stop()
            fleet.stop()
            if ok and args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
