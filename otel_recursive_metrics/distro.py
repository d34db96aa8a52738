"""The no-code route with only our variables: an OpenTelemetry distro and configurator.

``opentelemetry-instrument python train.py`` first loads one *distro* (entry-point group
``opentelemetry_distro``), whose job is to default the environment, then one *configurator*
(``opentelemetry_configurator``), which builds the SDK from that environment. The ``instrument``
extra brings ``opentelemetry-instrumentation`` and no other distro, so ours is the one loaded, and
``OTEL_METRICS_EXPORTER=recursive`` (or nothing at all) is enough::

    OTEL_RECURSIVE_METRICS_DIR=./otel-metrics opentelemetry-instrument python train.py

What :class:`RecursiveDistro` defaults, never overriding a variable the user set:

=======================================================  ====================================
the user's environment                                   defaults
=======================================================  ====================================
``OTEL_METRICS_EXPORTER`` names ``recursive``            ``OTEL_TRACES_EXPORTER=none``,
                                                         ``OTEL_LOGS_EXPORTER=none``
no ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``, and either   the two above and
an ``OTEL_RECURSIVE_METRICS_*`` variable or no           ``OTEL_METRICS_EXPORTER=recursive``
``OTEL_EXPORTER_OTLP_*`` one
anything else: another exporter chosen                   what ``opentelemetry-distro`` sets:
(``OTEL_TRACES_EXPORTER=otlp``), or only OTLP settings   ``otlp`` for all three signals,
                                                         ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``
=======================================================  ====================================

So a user who asked for OTLP gets exactly what the stock distro gives, and one who asked for us
(or for nothing) gets no trace or log exporter that is not installed. (The stock distro alone
defaults traces to ``otlp``: with no OTLP exporter installed, the SDK then prints a traceback,
sets up nothing, and the program runs unmeasured.)

Points are collected every ``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds (the SDK's 60000 by
default), so a script shorter than a minute gets one point per metric, at exit: set it to
``1000`` for a point a second.

With ``opentelemetry-distro`` installed too there are two distros, and OpenTelemetry loads the
first its package metadata lists (no order is promised): set ``OTEL_PYTHON_DISTRO=recursive``
to choose ours, or set the trace and log variables. Both configurators are the SDK's own, so
either builds the same SDK; the one left out says so in one warning line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.environment_variables import OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER

# Its module starts with "type: ignore", so mypy sees no names in it (and BaseDistro as Any).
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

# The SDK's configurator, meant to be subclassed by distros (its docstring says so); the module
# is private only because it has no API of its own.
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL

__all__ = ["EXPORTER_NAME", "RecursiveConfigurator", "RecursiveDistro", "chooses_recursive", "exporter_defaults"]

_log = logging.getLogger(__name__)

#: Our name in the ``opentelemetry_metrics_exporter`` entry-point group (pyproject.toml).
EXPORTER_NAME = "recursive"

_OUR_PREFIX = "OTEL_RECURSIVE_METRICS_"
_OTLP_PREFIX = "OTEL_EXPORTER_OTLP_"


def _names(environ: Mapping[str, str], variable: str) -> list[str]:
    return [name.strip() for name in environ.get(variable, "").split(",") if name.strip()]


def chooses_recursive(environ: Mapping[str, str]) -> bool:
    """True when ``environ`` picks our exporter, or picks no exporter at all (the module's table)."""
    metrics = _names(environ, OTEL_METRICS_EXPORTER)
    if metrics:
        return EXPORTER_NAME in metrics
    if _names(environ, OTEL_TRACES_EXPORTER) or _names(environ, OTEL_LOGS_EXPORTER):
        return False
    if any(name.startswith(_OUR_PREFIX) for name in environ):
        return True
    # Only an endpoint, headers, ...: someone relying on the stock distro's OTLP defaults.
    return not any(name.startswith(_OTLP_PREFIX) and value.strip() for name, value in environ.items())


def exporter_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables :class:`RecursiveDistro` sets in ``environ``: only ones that are not set."""
    if chooses_recursive(environ):
        ours = {OTEL_METRICS_EXPORTER: EXPORTER_NAME, OTEL_TRACES_EXPORTER: "none", OTEL_LOGS_EXPORTER: "none"}
        return {name: value for name, value in ours.items() if not environ.get(name, "").strip()}
    # opentelemetry-distro's OpenTelemetryDistro, to the letter (os.environ.setdefault).
    stock = {OTEL_TRACES_EXPORTER: "otlp", OTEL_METRICS_EXPORTER: "otlp", OTEL_LOGS_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc"}
    return {name: value for name, value in stock.items() if name not in environ}


class RecursiveDistro(BaseDistro):  # type: ignore[misc]
    """Defaults the exporter variables before the SDK is built (see the module docstring).

    Loaded by ``opentelemetry-instrument`` through the ``opentelemetry_distro`` entry point
    ``recursive``; it changes only ``os.environ``, once, before the program starts.
    """

    def _configure(self, **kwargs: Any) -> None:
        defaults = exporter_defaults(os.environ)
        os.environ.update(defaults)
        _log.debug("otel-recursive-metrics distro: set %s", defaults)


class RecursiveConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator under our entry-point name, as ``opentelemetry-distro`` ships it under its own.

    Without one, ``opentelemetry-instrument`` defaults the environment and builds nothing; the
    ``instrument`` extra does not install ``opentelemetry-distro``, so we bring it.
    """
