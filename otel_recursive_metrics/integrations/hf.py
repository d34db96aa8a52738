"""Hugging Face ``transformers``: a ``TrainerCallback`` that logs every ``on_log`` to the store.

    >>> from otel_recursive_metrics.integrations.hf import OtelRecursiveMetricsCallback
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[OtelRecursiveMetricsCallback()])

Third-party callbacks are passed with ``callbacks=[...]`` (``report_to`` names a closed list of
built-in integrations; set ``report_to="none"`` to keep only this one). ``on_log`` fires on every
rank with the Trainer's log dict (``loss``, ``learning_rate``, ``grad_norm``, ``eval_*``, ...):
each becomes a point at ``state.global_step`` with epoch ``int(state.epoch)``. With
``rank_zero_only=True`` only ``state.is_world_process_zero`` logs. The ``TrainingArguments`` are
the run's parameters (``log_params``); ``on_train_end`` flushes. Extra: ``hf``
(``transformers``, ``accelerate``, ``torch``).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback  # type: ignore[import-not-found,import-untyped,no-redef,assignment,unused-ignore]

from ._common import FrameworkLogger

__all__ = ["OtelRecursiveMetricsCallback"]


class OtelRecursiveMetricsCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Logs the Trainer's logs per step; see the module docstring for the arguments."""

    def __init__(self, prefix: str = "", *, rank_zero_only: bool = False, log_hparams: bool = True, **options: Any) -> None:
        self.logger = FrameworkLogger(prefix, **options)
        self.rank_zero_only = rank_zero_only
        self.log_hparams = log_hparams

    @property
    def metrics(self) -> Any:
        return self.logger.metrics

    def _active(self, state: Any) -> bool:
        return not self.rank_zero_only or bool(getattr(state, "is_world_process_zero", True))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.log_hparams and self._active(state) and hasattr(args, "to_dict"):
            self.logger.log_hyperparams(args.to_dict())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not self._active(state):
            return
        epoch = state.epoch
        self.logger.log(logs, step=state.global_step, epoch=None if epoch is None else int(epoch))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.logger.flush()
