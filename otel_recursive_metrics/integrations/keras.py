"""Keras 3: a ``Callback`` that logs every training batch and every epoch to the store.

    >>> from otel_recursive_metrics.integrations.keras import OtelRecursiveMetricsCallback
    >>> model.fit(x, y, epochs=5, callbacks=[OtelRecursiveMetricsCallback(prefix="keras.")])

``on_train_batch_end`` logs the batch's ``logs`` as ``batch_<key>`` at the global step (batches
since ``fit`` began, counted by the callback, so reading it never touches the device), every
``log_every_n_batches`` batches; ``on_epoch_end`` logs the epoch's logs (validation included)
as ``epoch_<key>`` at the same step, with the epoch number. The names follow Keras's own
TensorBoard callback. ``on_train_end`` flushes. Any Keras 3 backend (JAX, PyTorch,
TensorFlow). Extra: ``keras`` (plus a backend).
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-not-found,import-untyped,no-redef,assignment,unused-ignore]

from ._common import FrameworkLogger

__all__ = ["OtelRecursiveMetricsCallback"]


class OtelRecursiveMetricsCallback(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]
    """Logs Keras batch and epoch logs per step; see the module docstring."""

    def __init__(self, prefix: str = "", *, log_every_n_batches: int = 1, **options: Any) -> None:
        super().__init__()
        if log_every_n_batches < 1:
            raise ValueError(f"log_every_n_batches={log_every_n_batches!r}: expected an integer >= 1")
        self.logger = FrameworkLogger(prefix, **options)
        self.log_every_n_batches = log_every_n_batches
        self.global_step = 0
        self.epoch = 0

    @property
    def metrics(self) -> Any:
        return self.logger.metrics

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = int(epoch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.global_step += 1
        if logs and self.global_step % self.log_every_n_batches == 0:
            self.logger.log(logs, step=self.global_step, epoch=self.epoch, prefix="batch_")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            self.logger.log(logs, step=self.global_step, epoch=int(epoch), prefix="epoch_")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.logger.flush()
