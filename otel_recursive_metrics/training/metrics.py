"""``TrainingMetrics``: log a dict of values per step from a training loop, every step kept.

    >>> from otel_recursive_metrics import TrainingMetrics
    >>> metrics = TrainingMetrics(prefix="train.")
    >>> for step in range(1000):
    ...     loss, acc = train_step()
    ...     metrics.log({"loss": loss, "accuracy": acc}, step=step, epoch=step // 100)
    >>> metrics.flush(timeout_s=10)

Each ``log`` call becomes one gauge point per value, all with the call's step, epoch and time.
In the store every call is its own row per metric, even at thousands of calls a second (a
periodic SDK reader would keep one value per export interval). Over OTLP the same values are
plain gauge points: step and epoch are point fields of the store, never attributes, so they do
not multiply the series a backend holds.

What the training thread pays (a fraction of a microsecond a value; ``benchmarks/``): each value
is checked and converted to a Python ``float`` or ``int``, the dict is copied, a timestamp is
taken, and one tuple is appended to the pipeline's memory buffer. Conversion to points, disk
and network all happen on the worker's threads.

Values:

- ``float`` and ``int`` (within 64 bits) as they are; NumPy scalars and other ``numbers.Real``
  converted with ``float()`` / ``int()``.
- A one-element tensor or array (PyTorch, NumPy, JAX) through its ``.item()``. **On a GPU tensor
  ``.item()`` waits for the device to finish its queued work** (a device synchronisation), at the
  call, exactly as ``loss.item()`` in your own code would. Converting now rather than later is on
  purpose: a tensor kept for later would report whatever an in-place update wrote into it. To
  avoid a sync every step, log every N steps or log values you already moved to the host.
- ``NaN`` and infinities are kept (a diverging loss is what you want to see). Over OTLP they are
  sent as they are; SQLite stores ``NaN`` as ``NULL``, so the store and the CLI show no value
  (a gap in a plot) at that step, while infinities are stored.
- Anything else (``bool``, ``str``, ``None``, a multi-element tensor, an ``int`` beyond 64 bits) is
  refused at the call with :class:`~otel_recursive_metrics.errors.MetricValueError` naming the
  key and the value; nothing of that call is queued. Names must be OpenTelemetry instrument names
  (a letter, then letters, digits, ``_ . - /``; at most 255 characters with the prefix).

Steps that go backwards (a run resumed from a checkpoint) are kept, never dropped: both the old
and the new points at a step stay in the store, told apart by their time (ordering by time
shows the resumed curve). The first time it happens a warning is logged, and every occurrence is
counted in :meth:`TrainingMetrics.get_stats` (``steps_backwards``). A restart under torchrun is
also visible in the resource (``training.restart_count``).

Ranks: by default every rank logs, and its points carry ``training.rank`` (see
:mod:`otel_recursive_metrics.model.resource`), so the store and the CLI can tell ranks apart
(``--rank``). With ``rank_zero_only=True`` a process whose rank is not 0 turns ``log`` into a
no-op that does not even start the worker.

Time: each call's ``time_unix_nano`` is the wall clock, made strictly increasing within the
process, so two calls never share the store's identity key (metric, resource, time, step).

Thread safety: ``log`` may be called from several threads; the step-order bookkeeping is
per instance and best-effort across threads (it only affects the warning and the counter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from .._version import __version__
from ..config import load_config
from ..model.attributes import AttributeLimits, canonical_json, limit_attributes
from ..model.kinds import RunStatus
from ..model.resource import RANK_KEY
from ..pipeline import default as default_pipeline
from ..pipeline.buffer import RecordItem
from ..pipeline.convert import LogContext, context_number
from ..pipeline.worker import Pipeline
from ..system import start_configured_now, start_when_configured
from .aio import AsyncCloseMixin
from .run import event_record, flatten_params, params_record
from .run_events import RUNS, status_of
from .values import CLOCK, INT64_MAX, check_attributes, next_time_unix_nano, refuse, to_index, to_number, valid_name

__all__ = ["TrainingMetrics", "next_time_unix_nano", "to_index", "to_number"]

_time_ns = time.time_ns
_monotonic_ns = time.monotonic_ns

_log = logging.getLogger(__name__)


class TrainingMetrics(AsyncCloseMixin):
    """Logs per-step values through the pipeline; see the module docstring.

    ``TrainingMetrics(prefix="", attributes=None, pipeline=None, rank_zero_only=False, **options)``

    - ``prefix`` is prepended to every key (``"train."`` + ``"loss"``).
    - ``attributes`` are point attributes shared by every value of this instance (low-cardinality
      labels such as ``{"split": "val"}``; they become OTLP attributes).
    - ``pipeline``: a :class:`~otel_recursive_metrics.pipeline.worker.Pipeline` or a
      ``RecursiveMetricExporter``. By default the process's default pipeline is used, the one of
      the most recent exporter (so ``OTEL_METRICS_EXPORTER=recursive`` and ``TrainingMetrics``
      share one queue and one store), else one built from the environment.
    - ``options`` (``dir=``, ``sinks=``, ``flush_interval_s=``, ...): build a pipeline of this
      instance's own with those settings; :meth:`close` then shuts it down.

    As a context manager it calls :meth:`close` on exit (``failed`` or ``killed`` on an exception).

    In asyncio code, ``await metrics.aflush(timeout_s=...)``, ``await metrics.aclose(...)`` and
    ``async with TrainingMetrics(...) as metrics:`` do the same without blocking the event loop
    (see :mod:`.aio`; ``log`` never blocks, so it needs no ``await``)::

        async with TrainingMetrics(prefix="train.", dir="runs") as metrics:
            metrics.log({"loss": loss}, step=step)
            delivered = await metrics.aflush(timeout_s=10)
    """

    def __init__(
        self,
        prefix: str = "",
        attributes: Mapping[str, Any] | None = None,
        pipeline: Any = None,
        rank_zero_only: bool = False,
        *,
        run_name: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        params: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(prefix, str):
            raise refuse("prefix", prefix, "expected a string")
        self.prefix = prefix
        self.attributes = check_attributes("attributes", attributes)
        self._owns_pipeline = False
        system_metrics = bool(options.pop("system_metrics", False))
        self._explicit_pipeline = pipeline is not None or bool(options)
        if pipeline is not None and options:
            raise TypeError("pass either pipeline= or pipeline settings, not both")
        if pipeline is None and options:
            pipeline = Pipeline(load_config(**options))
            self._owns_pipeline = True
        self._pipeline: Pipeline = self._resolve(pipeline)
        cfg = self._pipeline.config
        self.attributes, cut = limit_attributes(
            self.attributes, AttributeLimits(cfg.attribute_count_limit, cfg.attribute_value_length_limit)
        )
        if cut:
            self._pipeline.stats.cut_attributes(cut)
            _log.warning(
                "otel-recursive-metrics: TrainingMetrics attributes cut to %d attributes of at most %d characters (%d cut);"
                " see OTEL_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                cfg.attribute_count_limit,
                cfg.attribute_value_length_limit,
                cut,
            )
        self._context: LogContext = self._make_context(self._pipeline)
        self._context_number = context_number(self._context)
        self._offer = self._pipeline.offer
        self.rank = int(self._context.resource.get(RANK_KEY, 0) or 0)
        self._muted = bool(rank_zero_only) and self.rank != 0
        if not self._muted:
            if system_metrics:
                start_configured_now(self._pipeline)
            else:
                start_when_configured(self._pipeline)
        if not self._muted:
            RUNS.started(self._pipeline, self._context_number)
            if run_name is not None or tags is not None or notes is not None:
                self.set_run(name=run_name, tags=tags, notes=notes)
            if params:
                self.log_params(params)
        self._known: set[str] = set()
        self._last_step = -1
        self.steps_backwards = 0
        self.refused_calls = 0
        self._warned_backwards = False

    @staticmethod
    def _resolve(pipeline: Any) -> Pipeline:
        if pipeline is None:
            return default_pipeline.get_default_pipeline()
        return getattr(pipeline, "pipeline", pipeline)  # type: ignore[no-any-return]

    def _make_context(self, pipeline: Pipeline) -> LogContext:
        return log_context(dict(pipeline.resource_attributes), prefix=self.prefix, attributes_json=canonical_json(self.attributes))

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @property
    def muted(self) -> bool:
        """True on a rank other than 0 with ``rank_zero_only``: ``log`` does nothing there."""
        return self._muted

    @property
    def resource(self) -> dict[str, Any]:
        """The resource attributes every point of this instance carries (run, rank, service)."""
        return dict(self._context.resource)

    # -- the hot path --------------------------------------------------------------------------

    def log(self, values: Mapping[str, Any], *, step: int, epoch: int | None = None) -> None:
        """Queue one point per value, all at ``step`` (and ``epoch``); never blocks on I/O.

        Raises :class:`MetricValueError` naming the key and value of anything that is not a
        number (nothing of the call is queued then). A ``step`` lower than the previous call's
        is kept and counted (``steps_backwards``).
        """
        if self._muted:
            return
        out = dict(values)
        for value in out.values():
            if type(value) is not float:
                out = self._convert(out)
                break
        if not self._known.issuperset(out):
            self._check_names(out)
        if type(step) is not int or not 0 <= step <= INT64_MAX:
            step = to_index("step", step)
        if epoch is not None and (type(epoch) is not int or not 0 <= epoch <= INT64_MAX):
            epoch = to_index("epoch", epoch)
        if step < self._last_step:
            self._step_went_back(step)
        self._last_step = step
        # CLOCK(), inlined: this is the training thread's per-step path.
        clock = CLOCK
        now = _time_ns()
        if now <= clock.last:
            now = clock.last + 1
        clock.last = now
        # The point's time is the wall clock's; its age in memory, the monotonic clock's.
        item = (self._context_number, now, step, epoch, out, _monotonic_ns())
        if not self._offer(item):
            self._refused(item)

    # -- the slow paths ------------------------------------------------------------------------

    @staticmethod
    def _convert(values: dict[Any, Any]) -> dict[Any, Any]:
        return {key: to_number(key if isinstance(key, str) else repr(key), value) for key, value in values.items()}

    def _check_names(self, values: Mapping[Any, Any]) -> None:
        for key in values:
            if key in self._known:
                continue
            if not isinstance(key, str):
                raise refuse("key", key, "metric names must be strings")
            if not valid_name(self.prefix + key):
                raise refuse(
                    "key",
                    key,
                    f"not a valid metric name{' with prefix ' + repr(self.prefix) if self.prefix else ''}:"
                    " a letter, then letters, digits, '_', '.', '-' or '/', at most 255 characters",
                )
            self._known.add(key)

    def _step_went_back(self, step: int) -> None:
        self.steps_backwards += 1
        if not self._warned_backwards:
            self._warned_backwards = True
            _log.warning(
                "otel-recursive-metrics: step went back from %d to %d (a resumed run?); the points are kept,"
                " told apart by time; further occurrences are counted in get_stats()['steps_backwards']",
                self._last_step,
                step,
            )

    def _refused(self, item: Any) -> None:
        # The shared default pipeline was shut down (the exporter's provider ended, say): follow
        # the new default rather than losing the rest of the run.
        if not self._explicit_pipeline and self._pipeline.closed:
            self._pipeline = default_pipeline.get_default_pipeline()
            self._context = self._make_context(self._pipeline)
            self._context_number = context_number(self._context)
            self._offer = self._pipeline.offer
            if self._offer((self._context_number, *item[1:])):
                return
        # Otherwise the pipeline counted the drop by reason (buffer_full, shutdown).
        self.refused_calls += 1

    # -- run metadata -------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any] | Any) -> None:
        """Record hyperparameters and config for this run (see :mod:`.run`); never blocks on I/O.

        ``params`` is a mapping (nested ones are flattened with dots: ``optim.lr``), a dataclass
        or an ``argparse.Namespace``. Values keep their types. Call it once, or again to add or
        change keys. ``otel-recursive-metrics runs`` and ``compare`` show them; over OTLP they are
        the info metric ``training.run.params``.
        """
        if self._muted:
            return
        flat = flatten_params(params)
        if flat:
            self._offer_record(params_record(flat, CLOCK()))

    def set_run(self, *, name: str | None = None, tags: Sequence[str] | None = None, notes: str | None = None) -> None:
        """Name this run, tag it, or write notes about it (each given one replaces the last)."""
        if self._muted:
            return
        if name is not None and not isinstance(name, str):
            raise refuse("name", name, "expected a string")
        if notes is not None and not isinstance(notes, str):
            raise refuse("notes", notes, "expected a string")
        tag_list = None if tags is None else [str(t) for t in ([tags] if isinstance(tags, str) else tags)]
        self._offer_record(event_record("info", CLOCK(), name=name, run_tags=tag_list, notes=notes))

    def _offer_record(self, record: dict[str, Any]) -> None:
        self._pipeline.offer(RecordItem(time.monotonic_ns(), record))

    # -- flush, close, stats -------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> bool:
        """True once every value logged before the call is delivered to every sink."""
        if self._muted:
            return True
        return self._pipeline.flush(timeout_s)

    def close(self, timeout_s: float = 30.0, *, status: str | RunStatus = RunStatus.FINISHED) -> bool:
        """Flush; shut the pipeline down too if this instance built it. True if all delivered.

        Closing the instance that built its pipeline ends this process's part of the run
        (``status``: ``finished``, or ``failed`` / ``killed``, which the context manager passes on an
        exception); a shared pipeline's run ends at interpreter exit.
        """
        status = RunStatus(status)  # ValueError naming the value for anything else
        if self._owns_pipeline:
            if not self._muted:
                RUNS.ended(self._pipeline, self._context_number, status)
            return self._pipeline.shutdown(timeout_s)
        if status is not RunStatus.FINISHED and not self._muted:
            RUNS.note_status(self._pipeline, status)
        return self.flush(timeout_s)

    def get_stats(self) -> dict[str, Any]:
        """The pipeline's counters plus ``steps_backwards``, ``refused_calls`` and ``rank``."""
        stats = self._pipeline.get_stats()
        stats.update(
            steps_backwards=self.steps_backwards,
            refused_calls=self.refused_calls,
            last_step=self._last_step,
            rank=self.rank,
            muted=self._muted,
        )
        return stats

    def __enter__(self) -> TrainingMetrics:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(status=status_of(exc))


def log_context(resource: dict[str, Any], *, prefix: str = "", attributes_json: str = "{}") -> LogContext:
    """What every point of one TrainingMetrics shares: its resource, scope, attributes and prefix."""
    return LogContext(
        resource=resource,
        scope_name="otel_recursive_metrics.training",
        scope_version=__version__,
        attributes_json=attributes_json,
        prefix=prefix,
    )
