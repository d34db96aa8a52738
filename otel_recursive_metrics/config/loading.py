"""Resolving the settings: keyword arguments > a mapping (seed keys too) > the environment > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .parsers import Invalid
from .settings import SEED_KEYS, SETTINGS, Config, Setting, env_names

__all__ = ["env_names", "env_setting", "load_config"]

_BY_NAME = {s.name: s for s in SETTINGS}


def _env_value(setting: Setting, environ: Mapping[str, str]) -> tuple[str, str] | None:
    for name in env_names(setting):
        if name in environ and environ[name].strip() != "":
            value = environ[name]
            if setting.name == "otlp_timeout_s" and name.startswith("OTEL_EXPORTER_OTLP"):
                # The standard variable is in milliseconds.
                try:
                    value = str(float(value) / 1000.0)
                except ValueError:
                    pass
            return name, value
    return None


def env_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment (or its default), parsed as :func:`load_config` would.

    For tools such as the CLI that need the data folder without caring whether an unrelated
    variable is valid. Raises :class:`ConfigError` for a bad value of this setting only.
    """
    setting = _BY_NAME[name]
    found = _env_value(setting, os.environ if environ is None else environ)
    if found is None:
        return setting.default
    try:
        return setting.parse(found[1])
    except Invalid as invalid:
        shown = "<redacted>" if setting.secret else repr(found[1])
        raise ConfigError([f"{name}={shown} ({found[0]}): expected {invalid}"]) from None


def load_config(
    config: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Config:
    """Resolve keyword ``options`` > ``config`` mapping > environment > defaults into a Config.

    Raises :class:`ConfigError` listing every problem (unknown keys included) at once.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, tuple[Any, str]] = {}

    for key, value in (config or {}).items():
        name = SEED_KEYS.get(key, key)
        if name not in _BY_NAME:
            problems.append(f"{key}={value!r} (config mapping): unknown setting; known: {', '.join(sorted(_BY_NAME) + sorted(SEED_KEYS))}")
            continue
        raw[name] = (value, f"config key {key!r}")
    for key, value in options.items():
        name = SEED_KEYS.get(key, key)
        if name not in _BY_NAME:
            problems.append(f"{key}={value!r} (keyword argument): unknown setting; known: {', '.join(sorted(_BY_NAME))}")
            continue
        raw[name] = (value, "keyword argument")

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in raw:
            value, source = raw[setting.name]
        else:
            found = _env_value(setting, env)
            if found is None:
                values[setting.name] = setting.default
                continue
            source, value = found[0], found[1]
        try:
            values[setting.name] = setting.parse(value)
        except Invalid as invalid:
            shown = "<redacted>" if setting.secret else repr(value)
            problems.append(f"{setting.name}={shown} ({source}): expected {invalid}")

    if not problems:
        if values["retry_max_delay_s"] < values["retry_delay_s"]:
            problems.append(
                f"retry_max_delay_s={values['retry_max_delay_s']!r}: expected a number >= retry_delay_s ({values['retry_delay_s']!r})"
            )
        for key_field, cert_field in (("otlp_client_key", "otlp_client_certificate"), ("otlp_client_certificate", "otlp_client_key")):
            if values[key_field] is not None and values[cert_field] is None:
                problems.append(f"{key_field}={str(values[key_field])!r}: mTLS needs {cert_field} too")
    if problems:
        raise ConfigError(problems)
    return Config(**values)
