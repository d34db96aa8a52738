"""Drop-in callbacks for training frameworks, each an optional extra.

=========================  ===================================================  ==========================
framework                  class                                                module (import it yourself)
=========================  ===================================================  ==========================
Hugging Face Transformers  ``OtelRecursiveMetricsCallback`` (``TrainerCallback``)  ``...integrations.hf``
PyTorch Lightning          ``OtelRecursiveMetricsLogger`` (``Logger``)            ``...integrations.lightning``
Keras 3                    ``OtelRecursiveMetricsCallback`` (``Callback``)        ``...integrations.keras``
=========================  ===================================================  ==========================

Each logs through :class:`~otel_recursive_metrics.training.metrics.TrainingMetrics` (every step kept,
values converted at the call, nothing blocking the loop) and takes the same keyword arguments:
``prefix``, ``attributes``, ``rank_zero_only``, ``metrics=`` (a TrainingMetrics to share) or
pipeline settings such as ``dir=``. Keys a framework logs that are not valid metric names are
made valid (other characters become ``_``), and values that are not numbers (strings,
booleans, multi-element tensors) are skipped and counted, so a framework's log dict can never
stop a training run. Hyperparameters, where the framework has them, are the run's parameters
(:meth:`~otel_recursive_metrics.TrainingMetrics.log_params`): ``otel-recursive-metrics runs`` and
``compare`` show them, and over OTLP they are the info metric ``training.run.params``.

This package imports no framework; each module imports only its own.
"""

from __future__ import annotations

from ._common import FrameworkLogger

__all__ = ["FrameworkLogger"]
