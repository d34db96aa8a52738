"""The seed system's documented usage, with only the import path changed.

Before: ``from recursive_training.metrics.async_metrics_collector import get_async_metrics_collector``
After:  ``from otel_recursive_metrics.async_metrics_collector import get_async_metrics_collector``

Records go through the durable pipeline into the store under ``$OTEL_RECURSIVE_METRICS_DIR``
(default ``./otel-metrics``); ``--dir`` sets it for this script. Then:

    otel-recursive-metrics query --store ./otel-metrics/metrics.db --metric training_accuracy
"""

from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dir", help="data folder (default: $OTEL_RECURSIVE_METRICS_DIR or ./otel-metrics)")
if (args := parser.parse_args()).dir:
    os.environ["OTEL_RECURSIVE_METRICS_DIR"] = args.dir

# ---- AsyncMetricsCollector, as in the seed's documentation ---------------------------------------
from otel_recursive_metrics.async_metrics_collector import get_async_metrics_collector  # noqa: E402

# Basic configuration (optional)
config = {"metrics_batch_size": 100, "metrics_flush_interval_sec": 10.0}

collector = get_async_metrics_collector(config=config)

# Submitting a metric
metric_data = {"metric_name": "training_accuracy", "value": 0.95, "epoch": 5, "step": 500}
metric_id = collector.submit_metric(metric_data)
print(f"Metric {metric_id} submitted.")


# Registering an error callback
def handle_metric_error(exception_instance):  # type: ignore[no-untyped-def]
    print(f"An error occurred while processing a metric: {exception_instance}")


collector.register_error_callback(handle_metric_error)

# Getting statistics
stats = collector.get_stats()
print(f"Metrics processed: {stats.get('metrics_processed')}")
print(f"Current queue size: {stats.get('queue_size')}")

# Stopping the collector: wait for pending metrics to be processed (up to a timeout)
collector.stop(wait_for_completion=True, timeout=30.0)

# Stop immediately
# collector.stop(wait_for_completion=False)

# ---- MetricsStore, as in the seed's documentation ------------------------------------------------
from datetime import datetime, timezone  # noqa: E402

from otel_recursive_metrics.metrics_store import get_metrics_store  # noqa: E402

metrics_store = get_metrics_store()

# 1. Storing a metric
training_metric_data = {
    "timestamp": datetime.now(timezone.utc).isoformat(),
    "metric_type": "training_loss",
    "model": "alpha_v1",
    "epoch": 5,
    "value": 0.075,
    "tags": ["experiment_x", "run_001"],
}
metric_id = metrics_store.store_metric(training_metric_data)
print(f"Stored training metric with ID: {metric_id}")

# 2. Retrieving a metric
retrieved_metric = metrics_store.get_metric(metric_id)
if retrieved_metric:
    print(f"Retrieved metric: {retrieved_metric['metric_type']} - {retrieved_metric['value']}")

# 3. Querying metrics
queried_metrics = metrics_store.query_metrics(metric_types=["training_loss"], models=["alpha_v1"], tags=["experiment_x"], limit=5)
print(f"Found {len(queried_metrics)} matching metrics.")
for m in queried_metrics:
    print(f" - {m['timestamp']}: {m['value']}")

# 4. Tracking costs
cost_details = metrics_store.track_cost(cost=0.25, api_calls=50, token_usage=15000)
print(f"Current total cost: ${cost_details['total_cost']:.2f}, Status: {cost_details['status']}")

# 5. Getting a summary of all metrics
summary = metrics_store.get_metrics_summary()
print(f"Total metrics stored: {summary['total_metrics']}")
print(f"Models tracked: {summary['models']}")

# 9. Close the store
metrics_store.close()
