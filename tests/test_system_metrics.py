"""Host and process metrics: sampled off the training thread, into the store and over OTLP, per rank.

Everything is real: OpenTelemetry's system-metrics instrumentation reading ``psutil``, the SDK
provider, our exporter and pipeline, the SQLite store, and loopback OTLP receivers (gRPC and
HTTP). A GPU source that blocks stands in for a hung driver where a test needs one.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from otel_recursive_metrics import PointStore, StoredPoint, TrainingMetrics
from otel_recursive_metrics.config import load_config
from otel_recursive_metrics.pipeline import Pipeline
from otel_recursive_metrics.system import THREAD_NAME, GpuDevice, SystemMetrics, parse_metric_set, start_system_metrics

from .conftest import require_module
from .otlp_receiver import GrpcReceiver, HttpReceiver, wait_until

require_module("opentelemetry.instrumentation.system_metrics", "system")

#: Metrics of the default set that every Linux machine can report (disks may be hidden in a container).
ALWAYS = {
    "process.cpu.time",
    "process.cpu.utilization",
    "process.memory.usage",
    "process.memory.virtual",
    "system.cpu.utilization",
    "system.memory.usage",
    "system.memory.utilization",
    "system.network.io",
}
FAST = {"flush_interval_s": 0.05, "batch_size": 1, "fsync": False, "retry_delay_s": 0.05, "retry_max_delay_s": 0.2}
LAUNCHER_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "LOCAL_RANK",
    "SLURM_LOCALID",
    "LOCAL_WORLD_SIZE",
    "RANK",
    "SLURM_PROCID",
    "WORLD_SIZE",
    "OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS",
)


@pytest.fixture(autouse=True)
def _no_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # host tests: no GPU metrics, whatever the machine has


@pytest.fixture
def pipeline_factory(data_dir: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(**options: Any) -> Pipeline:
        pipeline = Pipeline(load_config(dir=data_dir, **{"sinks": "store", **FAST, **options}))
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.shutdown(5.0)


def stored(pipeline: Pipeline, metric: str | None = None, **filters: Any) -> list[StoredPoint]:
    assert pipeline.flush(20.0), pipeline.get_stats()
    store = PointStore(pipeline.config.resolved_store_path)
    try:
        return store.query(metric, **filters)
    finally:
        store.close()


def names(points: Sequence[StoredPoint]) -> set[str]:
    return {p.metric for p in points}


def sampled(pipeline: Pipeline, samples: int = 1, **options: Any) -> SystemMetrics:
    """A sampler on ``pipeline`` (hour-long interval), ``samples`` taken now, then shut down."""
    sampler = SystemMetrics(pipeline, interval_s=3600, **options)
    assert sampler.start()
    for _ in range(samples):
        assert sampler.sample_now(10.0)
    assert sampler.shutdown(10.0)
    return sampler


# -- into the store and over OTLP, with the run and the rank ---------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_host_and_process_metrics_land_in_the_store_and_over_otlp_with_run_and_rank(
    protocol: str, pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RECURSIVE_METRICS_RUN_ID", "run-sys")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with GrpcReceiver() if protocol == "grpc" else HttpReceiver() as receiver:
        pipeline = pipeline_factory(sinks="store,otlp", otlp_endpoint=receiver.endpoint, otlp_protocol=protocol)
        TrainingMetrics(pipeline=pipeline, prefix="train.").log({"loss": 0.5}, step=1)
        sampled(pipeline)

        points = stored(pipeline)
        assert names(points) >= ALWAYS
        assert names(stored(pipeline, run="run-sys", rank=3)) >= ALWAYS
        # Beside the training metrics: one resource for both, attribute for attribute.
        loss = stored(pipeline, "train.loss")[0]
        for point in points:
            assert point.resource == loss.resource
        assert loss.resource["training.world_size"] == 4

        memory = stored(pipeline, "process.memory.usage")
        assert memory and all(p.unit == "By" and p.value is not None and p.value > 1 << 20 for p in memory)
        cpu_time = stored(pipeline, "process.cpu.time")
        assert {p.attributes["type"] for p in cpu_time} == {"user", "system"}  # the instrumentation's attribute name
        assert all(p.kind == "sum" and p.monotonic and p.unit == "s" for p in cpu_time)
        utilization = stored(pipeline, "system.cpu.utilization")
        assert {p.attributes["state"] for p in utilization} <= {"user", "system", "iowait", "idle"}
        assert all(p.value is not None and 0.0 <= p.value <= 1.0 for p in utilization)

        # Over OTLP: the same metrics, each under the run and rank resource.
        wait_until(lambda: otlp_names(receiver.accepted) >= ALWAYS, what="every system metric at the receiver")
        for request in receiver.accepted:
            for resource_metrics in request.resource_metrics:
                resource = {kv.key: kv.value for kv in resource_metrics.resource.attributes}
                assert resource["training.run.id"].string_value == "run-sys"
                assert resource["training.rank"].int_value == 3
        assert otlp_names(receiver.accepted) == names(points)


def otlp_names(requests: Sequence[Any]) -> set[str]:
    return {m.name for r in requests for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_the_metrics_command_lists_the_system_metrics(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    sampled(pipeline)
    assert pipeline.flush(20.0)
    done = subprocess.run(
        [sys.executable, "-m", "otel_recursive_metrics", "metrics", "--store", str(pipeline.config.resolved_store_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert set(done.stdout.split()) >= ALWAYS


# -- the thread --------------------------------------------------------------------------------------


class ThreadRecordingSource:
    """A GPU source that records which thread reads it, and can hang like a lost GPU."""

    vendor = "TEST"
    visible_devices_variable = "TEST_VISIBLE_DEVICES"

    def __init__(self, *, hang: bool = False) -> None:
        self.threads: list[str] = []
        self.hang = hang
        self.inside = threading.Event()
        self.release = threading.Event()
        self.closed = False

    def devices(self) -> Sequence[GpuDevice]:
        return [GpuDevice(0, "GPU-test", "Test GPU")]

    def read(self, device: GpuDevice, metric: str) -> float | int | None:
        self.threads.append(threading.current_thread().name)
        if self.hang:
            self.inside.set()
            self.release.wait(60)
        return 0.25

    def close(self) -> None:
        self.closed = True


def test_the_sampler_runs_on_its_own_daemon_thread_at_its_interval(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    before = {t.name for t in threading.enumerate()}
    source = ThreadRecordingSource()
    sampler = SystemMetrics(pipeline, interval_s=0.1, metrics="process.memory.usage,hw.gpu.utilization", gpu_source=source)
    assert sampler.start()
    try:
        wait_until(lambda: sampler.samples >= 4, timeout_s=20, what="four samples")
        threads = [t for t in threading.enumerate() if t.name == THREAD_NAME]
        assert len(threads) == 1 and threads[0].daemon
        # The reader's own ticker is not used (it would restart in forked children).
        assert "OtelPeriodicExportingMetricReader" not in {t.name for t in threading.enumerate()} - before
    finally:
        assert sampler.shutdown(10.0)
    assert set(source.threads) == {THREAD_NAME}  # never the caller's thread
    times = sorted({p.time_unix_nano for p in stored(pipeline, "process.memory.usage")})
    gaps_s = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
    assert len(times) >= 5 and statistics.median(gaps_s) >= 0.05, gaps_s  # on schedule, not back to back


def test_shutdown_keeps_the_pipeline_running_and_meets_its_deadline(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    sampler = SystemMetrics(pipeline, interval_s=0.05, metrics="process.memory.usage")
    assert sampler.start()
    wait_until(lambda: sampler.samples >= 2, what="two samples")
    started = time.monotonic()
    assert sampler.shutdown(5.0)
    assert time.monotonic() - started < 5.0
    assert sampler.shutdown(5.0)  # idempotent
    assert not sampler.running and not sampler.start()
    # The pipeline belongs to its owner: it still takes and delivers training metrics.
    TrainingMetrics(pipeline=pipeline).log({"loss": 1.0}, step=7)
    assert [p.step for p in stored(pipeline, "loss")] == [7]
    assert not pipeline.get_stats()["dropped_points"]
    count = len(stored(pipeline, "process.memory.usage"))
    time.sleep(0.3)
    assert len(stored(pipeline, "process.memory.usage")) == count  # no sample after shutdown


def test_shutdown_returns_at_its_deadline_while_a_driver_call_hangs(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    source = ThreadRecordingSource(hang=True)
    sampler = SystemMetrics(pipeline, interval_s=0.05, metrics="hw.gpu.utilization", gpu_source=source)
    assert sampler.start()
    try:
        assert source.inside.wait(20)
        started = time.monotonic()
        assert not sampler.shutdown(0.5)  # False: the thread was still inside the driver
        assert time.monotonic() - started < 2.0
        assert not source.closed  # not released under a thread that is using it
    finally:
        source.release.set()


def test_sampling_stops_when_the_pipeline_is_shut_down_first(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    sampler = SystemMetrics(pipeline, interval_s=0.05, metrics="process.memory.usage")
    assert sampler.start()
    wait_until(lambda: sampler.samples >= 1, what="a sample")
    assert pipeline.shutdown(10.0)
    wait_until(lambda: not sampler.running, timeout_s=5, what="the sampler to notice")
    assert sampler.shutdown(1.0)


# -- one sampler per pipeline; the instrumentation's singleton ----------------------------------------


def test_a_second_sampler_on_one_pipeline_is_refused_and_a_restart_works(
    pipeline_factory: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = pipeline_factory()
    first = start_system_metrics(pipeline, interval_s=3600, metrics="process.memory.usage")
    assert first.running
    assert start_system_metrics(pipeline, interval_s=1, metrics="default") is first  # the first one's options win
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    assert not SystemMetrics(pipeline, interval_s=3600).start()
    assert any("already has a system metrics sampler" in r.getMessage() for r in caplog.records)
    assert first.sample_now()
    assert first.shutdown(10.0)
    # A new sampler after the first one stopped: a new provider, instrumented afresh.
    second = start_system_metrics(pipeline, interval_s=3600, metrics="process.thread.count")
    assert second is not first and second.running
    assert second.sample_now()
    assert second.shutdown(10.0)
    assert {"process.memory.usage", "process.thread.count"} <= names(stored(pipeline))
    # Each provider got its own instrumentor: the first one's metric was not re-sampled by the second.
    memory_samples = len(stored(pipeline, "process.memory.usage"))
    assert memory_samples == 2  # first.sample_now() and first's last sample at shutdown


def test_the_process_wide_instrumentor_of_opentelemetry_instrument_is_left_alone(pipeline_factory: Callable[..., Pipeline]) -> None:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    shared = SystemMetricsInstrumentor()  # what opentelemetry-instrument does, on its own provider
    shared.instrument(meter_provider=provider)
    try:
        pipeline = pipeline_factory()
        sampled(pipeline, metrics="process.memory.usage")
        assert SystemMetricsInstrumentor() is shared and shared.is_instrumented_by_opentelemetry
        data = reader.get_metrics_data()
        assert data is not None
        theirs = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        # Its default set, not ours: our restricted config did not overwrite the shared instance's.
        assert {"system.cpu.time", "system.swap.usage", "process.memory.usage"} <= theirs
        assert names(stored(pipeline)) == {"process.memory.usage"}
    finally:
        shared.uninstrument()
        provider.shutdown()


# -- which metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "excluded", "expected", "states"),
    [
        (
            {"process.memory.usage": None, "system.cpu.utilization": ["idle"]},
            "",
            {"process.memory.usage", "system.cpu.utilization"},
            {"idle"},
        ),
        ('{"system.cpu.utilization": ["user"]}', "", {"system.cpu.utilization"}, {"user"}),
        (
            "process.memory.usage,system.cpu.utilization",
            "",
            {"process.memory.usage", "system.cpu.utilization"},
            {"user", "system", "iowait", "idle"},
        ),
        ("default,-system.*", "", {"process.cpu.time", "process.cpu.utilization", "process.memory.usage", "process.memory.virtual"}, None),
        (
            "default,process.thread.count",
            "system.*,process.cpu.*",
            {"process.memory.usage", "process.memory.virtual", "process.thread.count"},
            None,
        ),
    ],
    ids=["mapping", "json", "names", "default minus a glob", "added, and excluded by the instrumentation's variable"],
)
def test_the_set_of_metrics_can_be_changed(
    metrics: Any,
    excluded: str,
    expected: set[str],
    states: set[str] | None,
    pipeline_factory: Callable[..., Pipeline],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if excluded:
        monkeypatch.setenv("OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS", excluded)
    pipeline = pipeline_factory()
    sampler = sampled(pipeline, metrics=metrics)
    assert names(stored(pipeline)) == expected
    assert set(sampler.metric_names) == expected
    if states is not None:
        assert {p.attributes["state"] for p in stored(pipeline, "system.cpu.utilization")} == states


def test_the_default_set_is_what_the_readme_lists() -> None:
    metric_set = parse_metric_set(None, environ={})
    assert metric_set == {
        "process.cpu.time": ["user", "system"],
        "process.cpu.utilization": None,
        "process.memory.usage": None,
        "process.memory.virtual": None,
        "system.cpu.utilization": ["user", "system", "iowait", "idle"],
        "system.memory.usage": ["used"],
        "system.memory.utilization": ["used"],
        "system.disk.io": ["read", "write"],
        "system.network.io": ["transmit", "receive"],
        "hw.gpu.utilization": None,
        "hw.gpu.memory.usage": None,
        "hw.gpu.memory.limit": None,
        "hw.power": None,
        "hw.energy": None,
        "hw.temperature": None,
        "hw.gpu.speed": None,
    }
    everything = parse_metric_set("all", environ={})
    assert "system.swap.usage" in everything and "hw.energy" in everything
    assert parse_metric_set("default", environ={"OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS": "hw.*"}).keys() == {
        k for k in metric_set if not k.startswith("hw.")
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics": "default,process.cpu.tme"}, "'process.cpu.tme'"),
        ({"metrics": {"hw.gpu.utilisation": None}}, "'hw.gpu.utilisation'"),
        ({"metrics": '{"process.cpu.time": "user"}'}, "process.cpu.time: expected a list of state names"),
        ({"metrics": '{"process.cpu.time": '}, "not a JSON object"),
        ({"metrics": 42}, "expected a string or a mapping"),
        ({"interval_s": 0}, "interval_s=0"),
        ({"interval_s": float("nan")}, "interval_s=nan"),
    ],
)
def test_a_bad_setting_is_refused_at_construction_naming_it(
    options: dict[str, Any], message: str, pipeline_factory: Callable[..., Pipeline]
) -> None:
    pipeline = pipeline_factory()
    with pytest.raises(ValueError) as raised:
        SystemMetrics(pipeline, **options)
    assert message in str(raised.value)


# -- which ranks report the host ------------------------------------------------------------------------


@pytest.mark.parametrize(("local_rank", "every_rank", "host_expected"), [("0", False, True), ("1", False, False), ("1", True, True)])
def test_host_metrics_come_from_the_first_rank_of_a_node_unless_asked(
    local_rank: str, every_rank: bool, host_expected: bool, pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    pipeline = pipeline_factory()
    sampled(pipeline, host_metrics_every_rank=every_rank)
    got = names(stored(pipeline))
    assert {n for n in ALWAYS if n.startswith("process.")} <= got  # every rank reports its own process
    assert any(n.startswith("system.") for n in got) == host_expected


def test_stats_say_what_is_sampled(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    sampler = sampled(pipeline, samples=2, metrics="process.memory.usage")
    stats = sampler.stats()
    assert stats == {
        "samples": 3,
        "failed_samples": 0,
        "interval_s": 3600.0,
        "metrics": ["process.memory.usage"],
        "gpu_devices": [],
        "running": False,
    }
    json.dumps(stats)  # plain data


def test_the_benchmark_prints_its_markdown_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "bench_system.py"), "--samples", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| metric set"))
    assert set(lines[header + 1]) <= set("|-") and lines[header + 2].startswith("| `default` |")
    assert lines[header + 2].count("|") == lines[header].count("|")


def test_a_sampler_that_fails_to_start_costs_nothing_and_frees_its_place(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_recursive_metrics.system import sampler as system  # the module that calls instrument_host

    pipeline = pipeline_factory()

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("instrumentation exploded")

    working = system.instrument_host
    monkeypatch.setattr(system, "instrument_host", broken)
    caplog.set_level(logging.ERROR, logger="otel_recursive_metrics")
    failed = SystemMetrics(pipeline, interval_s=3600, metrics="process.memory.usage")
    assert not failed.start()
    assert not failed.active and not failed.sample_now()
    assert any("did not start" in r.getMessage() for r in caplog.records)
    assert THREAD_NAME not in {t.name for t in threading.enumerate()}
    monkeypatch.setattr(system, "instrument_host", working)
    assert start_system_metrics(pipeline, interval_s=3600, metrics="process.memory.usage") is not failed


def test_asking_for_system_metrics_again_while_starting_returns_the_starting_sampler(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory()
    seen: list[SystemMetrics] = []

    class AskingAgain(ThreadRecordingSource):
        def devices(self) -> Sequence[GpuDevice]:
            # As a constructor wired to start system metrics would, from inside the first start.
            seen.append(start_system_metrics(pipeline, interval_s=3600))
            return super().devices()

    first = start_system_metrics(pipeline, interval_s=3600, metrics="hw.gpu.utilization", gpu_source=AskingAgain())
    try:
        assert first.running and seen == [first]
    finally:
        assert first.shutdown(10.0)
