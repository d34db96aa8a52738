"""PyTorch Lightning: a ``Logger`` that keeps every ``log_metrics`` call in the store.

    >>> from otel_recursive_metrics.integrations.lightning import OtelRecursiveMetricsLogger
    >>> trainer = lightning.Trainer(logger=OtelRecursiveMetricsLogger(prefix="lit."), log_every_n_steps=1)

``log_metrics(metrics, step)`` logs each value (tensors through ``.item()``) at ``step``; the
``epoch`` item Lightning adds becomes the points' epoch. Lightning logs every
``log_every_n_steps`` (default 50): lower it to keep more steps. ``log_hyperparams`` records the
hyperparameters as the run's parameters (``log_params``); ``finalize`` flushes. ``name`` is
``"otel-recursive-metrics"`` and ``version`` the run id (``training.run.id``). Lightning calls a
logger on every rank; by default every rank logs with its ``training.rank``
(``rank_zero_only=True`` for rank 0 only). Works with ``lightning`` and ``pytorch_lightning``.
Extra: ``lightning``.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

try:
    from lightning.pytorch.loggers.logger import Logger  # type: ignore[import-not-found,import-untyped,no-redef,assignment,unused-ignore]
except ImportError:  # the older standalone package
    from pytorch_lightning.loggers.logger import Logger  # type: ignore[import-not-found,import-untyped,no-redef,assignment,unused-ignore]

from ..model.resource import RUN_ID_KEY
from ._common import FrameworkLogger

__all__ = ["OtelRecursiveMetricsLogger"]


class OtelRecursiveMetricsLogger(Logger):  # type: ignore[misc,unused-ignore]
    """A Lightning logger writing through TrainingMetrics; see the module docstring."""

    def __init__(self, prefix: str = "", *, name: str = "otel-recursive-metrics", **options: Any) -> None:
        super().__init__()
        self._logger = FrameworkLogger(prefix, **options)
        self._name = name
        self._last_step = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return str(self._logger.metrics.resource.get(RUN_ID_KEY, "0"))

    @property
    def experiment(self) -> Any:
        """The underlying :class:`~otel_recursive_metrics.training.metrics.TrainingMetrics`."""
        return self._logger.metrics

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = dict(metrics)
        epoch = values.pop("epoch", None)
        if step is None:
            step = self._last_step
        self._last_step = int(step)
        epoch_int = None
        if epoch is not None:
            try:
                epoch_int = int(epoch.item() if hasattr(epoch, "item") else epoch)
            except (TypeError, ValueError):
                epoch_int = None
        self._logger.log(values, step=int(step), epoch=epoch_int)

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self._logger.log_hyperparams(vars(params) if isinstance(params, Namespace) else params)

    def save(self) -> None:
        # Called often by the trainer; the pipeline persists on its own cadence.
        pass

    def finalize(self, status: str) -> None:
        self._logger.flush()
