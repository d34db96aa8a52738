"""One validated, immutable configuration for the whole pipeline.

A :class:`Config` is built by :func:`load_config` from four layers, the first that sets a field
wins:

1. keyword arguments (``RecursiveMetricExporter(batch_size=100)``, ``configure(...)``);
2. a mapping (``config={"metrics_batch_size": 100}``), which also takes the seed system's keys
   ``metrics_batch_size``, ``metrics_flush_interval_sec``, ``metrics_max_retries`` and
   ``metrics_retry_delay_sec``;
3. environment variables ``OTEL_RECURSIVE_METRICS_<FIELD>`` (``OTEL_RECURSIVE_METRICS_BATCH_SIZE``)
   and, for the OTLP sink, the standard ``OTEL_EXPORTER_OTLP_METRICS_*`` then
   ``OTEL_EXPORTER_OTLP_*`` variables;
4. the defaults below.

Every problem is collected before anything is raised, so one :class:`ConfigError` lists each bad
field, the value it was given, where that value came from and what would be accepted::

    >>> load_config(batch_size=0, overflow="explode")
    Traceback (most recent call last):
    ConfigError: invalid otel-recursive-metrics configuration (2 problem(s)):
      - batch_size=0 (keyword argument): expected an integer >= 1
      - overflow='explode' (keyword argument): expected one of drop_oldest, drop_newest, block

The package: :mod:`.settings` (the table of settings and the :class:`Config` that holds their
defaults, one place for both), :mod:`.loading` (keyword arguments, mapping, environment),
:mod:`.parsers` (what each setting accepts).
"""

from __future__ import annotations

from .loading import env_names, env_setting, load_config
from .settings import (
    COMPRESSIONS,
    ENV_PREFIX,
    OTLP_PROTOCOLS,
    SEED_KEYS,
    SETTINGS,
    Config,
    Setting,
    display_url,
    setting_default,
    settings_markdown,
)

__all__ = [
    "COMPRESSIONS",
    "ENV_PREFIX",
    "OTLP_PROTOCOLS",
    "SEED_KEYS",
    "SETTINGS",
    "Config",
    "Setting",
    "display_url",
    "env_names",
    "env_setting",
    "load_config",
    "setting_default",
    "settings_markdown",
]
