"""A program that counts with the OpenTelemetry meter API until it is stopped, for the SIGTERM tests.

    python tests/programs/counter_loop.py --route configure --dir D [--rate-hz 0] [--report FILE]
    OTEL_METRICS_EXPORTER=recursive opentelemetry-instrument \\
        python tests/programs/counter_loop.py --route auto [--report FILE]

``--route configure`` builds its MeterProvider with ``otel_recursive_metrics.configure()``;
``--route auto`` uses the one the SDK's auto-configuration installed (``opentelemetry-instrument``
with ``OTEL_METRICS_EXPORTER=recursive``, the data folder in ``OTEL_RECURSIVE_METRICS_DIR``);
``--route manual`` builds what ``configure()`` builds by hand, with an exemplar reservoir on the
counter that, at the ``--signal-self-at``-th measurement, sends the process SIGTERM from inside
the SDK: with delta temporality the SDK then holds the lock its collect needs while the signal is
handled (as a SIGTERM from outside lands, now and then, in a tight loop).

The main thread adds 1 to the counter ``requests`` (attribute ``route=/work``) in a loop,
``--rate-hz`` times a second (0: as fast as it can, so a signal mostly lands inside the SDK).
Every ``--report-every-s`` a reporter thread appends ``{"added": ..., "accepted_items": ...}``
to ``--report`` (``accepted_items``: the exports our exporter took so far). The reporter prints
``READY`` once the counter was added to and the exporter has taken ``--ready-after-exports``
exports (0 by default: no export is needed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--route", choices=("configure", "auto", "manual"), required=True)
    parser.add_argument("--dir")
    parser.add_argument("--rate-hz", type=float, default=200.0)
    parser.add_argument("--export-interval-s", type=float, default=60.0)
    parser.add_argument("--report")
    parser.add_argument("--report-every-s", type=float, default=0.02)
    parser.add_argument("--ready-after-exports", type=int, default=0)
    parser.add_argument("--signal-self-at", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="more configure() settings")
    args = parser.parse_args()

    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    from otel_recursive_metrics import configure
    from otel_recursive_metrics.pipeline.default import get_default_pipeline

    if args.route == "configure":
        options: dict[str, Any] = dict(item.split("=", 1) for item in args.option)
        provider = configure(dir=args.dir, export_interval_s=args.export_interval_s, **options)
    elif args.route == "manual":
        provider = _provider_that_signals_from_inside(args.dir, args.signal_self_at)
    else:
        provider = metrics.get_meter_provider()
        assert isinstance(provider, MeterProvider), f"no SDK MeterProvider from the auto-configuration: {provider!r}"
    counter = provider.get_meter("counter_loop").create_counter("requests")
    pipeline = get_default_pipeline()  # the exporter's (it makes itself the default)
    state = {"added": 0}
    report = Path(args.report) if args.report else None

    def reporter() -> None:
        ready = False
        while True:
            data = {"added": state["added"], "accepted_items": pipeline.get_stats()["accepted_items"]}
            if report is not None:
                with report.open("a") as f:
                    f.write(json.dumps(data) + "\n")
            if not ready and data["added"] and data["accepted_items"] >= args.ready_after_exports:
                ready = True
                print("READY", flush=True)
            time.sleep(args.report_every_s)

    threading.Thread(target=reporter, name="reporter", daemon=True).start()
    attributes = {"route": "/work"}
    period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
    started = time.monotonic()
    added = 0
    while True:
        counter.add(1, attributes)
        added += 1
        state["added"] = added
        if period:
            delay = started + added * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _provider_that_signals_from_inside(data_dir: str, at: int) -> Any:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, Exemplar, ExemplarReservoir, MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import View

    from otel_recursive_metrics import RecursiveMetricExporter

    offers = [0]

    class SignalsSelf(ExemplarReservoir):
        """Called by ``aggregate``, inside the SDK (and, with delta temporality, inside its lock)."""

        def offer(self, value: Any, time_unix_nano: int, attributes: Any, context: Any) -> None:
            offers[0] += 1
            if offers[0] == at:
                os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, still in here
                sum(range(10))

        def collect(self, point_attributes: Any) -> list[Exemplar]:
            return []

    reader = PeriodicExportingMetricReader(RecursiveMetricExporter(dir=data_dir), export_interval_millis=60_000)
    view = View(instrument_name="requests", exemplar_reservoir_factory=lambda aggregation: SignalsSelf)
    provider = MeterProvider(metric_readers=[reader], views=[view], exemplar_filter=AlwaysOnExemplarFilter())
    metrics.set_meter_provider(provider)
    return provider


if __name__ == "__main__":
    main()
