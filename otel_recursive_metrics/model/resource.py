"""The resource that points from ``log`` and ``submit_metric`` carry: who produced them.

It is the SDK's default resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``,
``telemetry.sdk.*``) plus the training run and rank, read from the launcher's environment:

===========================  ===================================================  ============
attribute                    read from (first set wins)                           example
===========================  ===================================================  ============
``training.run.id``          ``OTEL_RECURSIVE_METRICS_RUN_ID``,                   ``a1b2c3``
                             ``TORCHELASTIC_RUN_ID``, ``SLURM_JOB_ID``, generated
``training.rank``            ``RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``   ``0``
``training.local_rank``      ``LOCAL_RANK``, ``SLURM_LOCALID``                    ``0``
``training.world_size``      ``WORLD_SIZE``, ``SLURM_NTASKS``                     ``8``
``training.restart_count``   ``TORCHELASTIC_RESTART_COUNT``                       ``0``
===========================  ===================================================  ============

A run is keyed by run id and restart count, not by rank: torchrun may give a worker a new rank
after a restart. These are resource attributes (one value per process), so they never multiply
the number of series a backend holds.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "LOCAL_RANK_KEY",
    "RANK_KEY",
    "RESTART_COUNT_KEY",
    "RUN_EVENT_METRIC",
    "RUN_ID_KEY",
    "RUN_METADATA_METRICS",
    "RUN_PARAMS_METRIC",
    "STORE_ONLY_METRICS",
    "WORLD_SIZE_KEY",
    "default_resource_attributes",
    "training_attributes",
]

RUN_ID_KEY = "training.run.id"
RANK_KEY = "training.rank"
LOCAL_RANK_KEY = "training.local_rank"
WORLD_SIZE_KEY = "training.world_size"
RESTART_COUNT_KEY = "training.restart_count"

#: Reserved metrics of run metadata (see :mod:`otel_recursive_metrics.training.run`): the
#: hyperparameters as an info metric, and the start and end of each process (store-only).
RUN_PARAMS_METRIC = "training.run.params"
RUN_EVENT_METRIC = "training.run.event"
#: Both: points of these are run metadata, not logged data (get_stats() does not count them).
RUN_METADATA_METRICS = frozenset({RUN_PARAMS_METRIC, RUN_EVENT_METRIC})
#: Metrics the store keeps as run metadata and OTLP never receives.
STORE_ONLY_METRICS = frozenset({RUN_EVENT_METRIC})

_generated_run_id: str | None = None


def _first_int(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                continue
    return None


def _run_id(environ: Mapping[str, str]) -> str:
    global _generated_run_id
    for name in ("OTEL_RECURSIVE_METRICS_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        value = environ.get(name, "").strip()
        if value:
            return value
    if _generated_run_id is None:
        # Sortable by start time, unique enough across machines.
        _generated_run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    return _generated_run_id


def training_attributes(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run and rank attributes read from torchrun / SLURM variables (see the module docstring)."""
    env = os.environ if environ is None else environ
    attrs: dict[str, Any] = {RUN_ID_KEY: _run_id(env)}
    for key, names in (
        (RANK_KEY, ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")),
        (LOCAL_RANK_KEY, ("LOCAL_RANK", "SLURM_LOCALID")),
        (WORLD_SIZE_KEY, ("WORLD_SIZE", "SLURM_NTASKS")),
        (RESTART_COUNT_KEY, ("TORCHELASTIC_RESTART_COUNT",)),
    ):
        value = _first_int(env, *names)
        if value is not None:
            attrs[key] = value
    attrs.setdefault(RANK_KEY, 0)
    return attrs


def default_resource_attributes(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SDK's default resource attributes merged with the training ones and ``extra``."""
    from opentelemetry.sdk.resources import Resource

    attrs = dict(Resource.create(training_attributes()).attributes)
    attrs.update(extra or {})
    return attrs
