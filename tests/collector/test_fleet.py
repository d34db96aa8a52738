"""The fleet harness's short form: 8 ranks on 2 nodes for 60 s, a gateway SIGKILLed once, nothing lost.

``benchmarks/fleet.py`` starts the whole shape on loopback (an agent Collector per node with its
queue on disk, a synchronous gateway, Prometheus, ranks exporting over OTLP gRPC and HTTP) and
checks with PromQL that every rank's every metric has exactly the samples the rank logged. This
test runs it as a user would, with the Collector and Prometheus the other end-to-end tests use
(so it skips, or fails under ``CI=true``, for the same reasons), and reads its JSON record: per
rank 0 lost, 0 duplicated, no altered series. Its timings are recorded by the harness, never
asserted here; the long form's figures are in ``benchmarks/results/``.

Twice: with one gateway, and with two gateways behind one DNS name (the route beyond one gateway
that collector-config/README.md calls tested), where the other gateway carries on meanwhile.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import required_in_ci

from .stack import REPO

pytestmark = [pytest.mark.collector, pytest.mark.prometheus, pytest.mark.slow]

FLEET = REPO / "benchmarks" / "fleet.py"
# 60 s of logging, ranks starting on two cores, the drain after the outage, and stopping.
RUN_TIMEOUT_S = 540.0


def loopback_has(address: str) -> bool:
    """Whether a socket can bind ``address`` (Linux routes all of 127.0.0.0/8 to loopback; macOS only 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
@pytest.mark.parametrize("gateways", [1, 2], ids=["one-gateway", "two-gateways-one-dns-name"])
def test_fleet_with_a_gateway_kill_loses_and_repeats_nothing_per_rank(
    gateways: int, otelcol_binary: str, prometheus_binary: str, tmp_path: Path
) -> None:
    if gateways > 1 and not all(loopback_has(f"127.0.0.{2 + n}") for n in range(gateways)):
        required_in_ci("the gateways listen on 127.0.0.2, 127.0.0.3, which this machine's loopback lacks (macOS: ifconfig lo0 alias)")
    record_path = tmp_path / "fleet.json"
    argv = [
        sys.executable,
        str(FLEET),
        "--ranks=8",
        "--nodes=2",
        "--seconds=60",
        "--faults=gateway",
        f"--gateways={gateways}",
        f"--otelcol={otelcol_binary}",
        f"--prometheus={prometheus_binary}",
        f"--workdir={tmp_path / 'fleet'}",
        f"--json={record_path}",
    ]
    # Its own session, so that a timeout here can SIGTERM it and it stops what it started.
    harness = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = harness.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        harness.send_signal(signal.SIGTERM)
        try:
            output, _ = harness.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            harness.kill()
            output, _ = harness.communicate()
        pytest.fail(f"the fleet harness did not finish within {RUN_TIMEOUT_S:g} s; its output:\n{output[-6000:]}")
    assert record_path.exists(), f"the harness wrote no record (status {harness.returncode}); its output:\n{output[-6000:]}"
    record = json.loads(record_path.read_text())
    ranks = record["ranks"]
    assert [row["rank"] for row in ranks] == list(range(8))
    assert {row["protocol"] for row in ranks} == {"gRPC", "HTTP"}
    faults = record["figures"]["faults"]
    assert [fault["fault"] for fault in faults] == ["gateway kill -9"], faults
    if gateways == 1:
        # The gateway was down while the ranks logged: the agents' queues held points for it.
        peak = faults[0].get("agents_queue_peak") or {}
        assert peak.get("queued_points", 0) > 0, f"the agents queued nothing during the outage: {faults}"
    else:
        # Both gateways carried points (the agents spread their requests over the name's addresses).
        carried = [
            max(row[f"gateway-{n}"].get("otelcol_exporter_sent_metric_points", 0) for row in record["timeline"]) for n in range(gateways)
        ]
        assert all(points > 0 for points in carried), f"points sent per gateway: {carried}"
    for row in ranks:
        assert (row["lost"], row["duplicated"], row["wrong_metrics"]) == (0, 0, []), f"rank {row['rank']}: {row}\n{output[-4000:]}"
        assert row["points_seen"] == row["points_logged"] == row["steps"] * 20, row
        assert row["dead_lettered"] == 0 and row["dropped"] == 0, row
    assert record["passed"] is True
    assert harness.returncode == 0, output[-6000:]
