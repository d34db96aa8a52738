"""Run metadata: hyperparameters, name, tags and notes, and when each process of a run starts and ends.

They travel through the pipeline like any point (durable, retried), as records of two reserved
metrics, and the store keeps them in tables of their own (see :mod:`otel_recursive_metrics.store.schema`):

- ``training.run.params``: one point per :meth:`~otel_recursive_metrics.TrainingMetrics.log_params`
  call, value 1, the parameters as attributes: an *info* metric, as Prometheus users know
  ``target_info``, so ``train_loss * on(job, instance) group_left(lr) training_run_params`` puts
  the learning rate beside the loss. At most :data:`INFO_MAX_ATTRIBUTES` parameters (the first in
  key order) and :data:`INFO_MAX_VALUE_CHARS` characters a value go to OTLP, one series per run;
  the store keeps every parameter, with its type, in the point's store-only ``extra``.
- ``training.run.event``: store-only (never sent over OTLP): ``start`` when a ``TrainingMetrics``
  begins, ``end`` with a status when it closes (``finished``, ``failed`` on an exception,
  ``killed`` on SIGTERM or Ctrl-C), ``info`` for the run's name, tags and notes. A process that
  vanished without an ``end`` (``kill -9``, an out-of-memory kill) is told apart from a running one
  by whether its process is alive (:func:`process_alive`).

Parameters are flattened with dots (``{"optim": {"lr": 0.1}}`` gives ``optim.lr``) and keep their
types (numbers, booleans, strings, ``None``, lists); anything else is kept as its ``str``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from .._process import process_alive, process_token
from ..model.resource import RUN_EVENT_METRIC, RUN_PARAMS_METRIC

__all__ = [
    "INFO_MAX_ATTRIBUTES",
    "INFO_MAX_VALUE_CHARS",
    "RUN_EVENT_METRIC",
    "RUN_PARAMS_METRIC",
    "STATUSES",
    "event_record",
    "flatten_params",
    "info_attributes",
    "params_record",
    "process_alive",
    "process_token",
]

#: Most parameters on the OTLP info metric (one label each in Prometheus).
INFO_MAX_ATTRIBUTES = 64
#: Longest parameter value on the OTLP info metric, in characters.
INFO_MAX_VALUE_CHARS = 256

#: What a process (and so a run) can end as; ``running`` and ``crashed`` are judged when read.
STATUSES = ("running", "finished", "failed", "killed", "crashed")


def _value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return str(value)


def flatten_params(params: Any, prefix: str = "") -> dict[str, Any]:
    """``params`` (a mapping, a dataclass or an ``argparse.Namespace``) as flat ``dotted.key -> value``."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    elif not isinstance(params, Mapping) and hasattr(params, "__dict__"):
        params = vars(params)
    if not isinstance(params, Mapping):
        raise TypeError(f"params={params!r}: expected a mapping, a dataclass or a namespace")
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = _value(value)
    return flat


def info_attributes(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as OTLP attributes of the info metric (capped; see the module docstring)."""
    out: dict[str, Any] = {}
    for key in sorted(params)[:INFO_MAX_ATTRIBUTES]:
        value = params[key]
        if isinstance(value, bool) or (isinstance(value, int) and -(2**63) <= value < 2**63) or isinstance(value, float):
            out[key] = value
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[key] = text[:INFO_MAX_VALUE_CHARS]
    return out


def params_record(params: Mapping[str, Any], time_unix_nano: int) -> dict[str, Any]:
    """The record :meth:`TrainingMetrics.log_params` queues."""
    return {
        "metric_name": RUN_PARAMS_METRIC,
        "value": 1,
        "attributes": info_attributes(params),
        "params": dict(params),
        "_time_unix_nano": time_unix_nano,
    }


def event_record(event: str, time_unix_nano: int, **fields: Any) -> dict[str, Any]:
    """A run event (``start``, ``end``, ``info``) of this process, as the record queued."""
    return {
        "metric_name": RUN_EVENT_METRIC,
        "value": 1,
        "event": event,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process": process_token(os.getpid()),
        "_time_unix_nano": time_unix_nano,
        **{k: v for k, v in fields.items() if v is not None},
    }
