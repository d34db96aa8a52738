"""How each setting's value is read: the parsers of the settings table, one per kind of value.

Each parser takes what a user gave (a keyword argument of any type, or the text of an
environment variable) and returns the value, or raises :class:`Invalid` whose text says what
would be accepted; :func:`otel_recursive_metrics.config.load_config` puts that text, the
setting's name, the value and where it came from into one :class:`~otel_recursive_metrics.errors.ConfigError`.
Private to the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

SINK_NAMES = ("store", "otlp")


class Invalid(Exception):
    """Raised by a parser with the text of what would be accepted."""


def parse_int(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise Invalid(f"an integer >= {minimum}")
        try:
            number = int(str(value).strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError, OverflowError):
            raise Invalid(f"an integer >= {minimum}") from None
        if isinstance(value, float) and value != number:
            raise Invalid(f"an integer >= {minimum}")
        if number < minimum:
            raise Invalid(f"an integer >= {minimum}")
        return number

    return parse


def parse_float(minimum: float, *, exclusive: bool = False) -> Callable[[Any], float]:
    words = f"a number {'>' if exclusive else '>='} {minimum:g}"

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise Invalid(words)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Invalid(words) from None
        if math.isnan(number) or math.isinf(number):
            raise Invalid(words)
        if number < minimum or (exclusive and number == minimum):
            raise Invalid(words)
        return number

    return parse


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Invalid("true or false")


def parse_choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise Invalid("one of " + ", ".join(options))
        return text

    return parse


def parse_sinks(value: Any) -> tuple[str, ...]:
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))
    if not names or any(n not in SINK_NAMES for n in names):
        raise Invalid("a comma-separated list of store, otlp")
    return names


def parse_path(value: Any) -> Path:
    if value is None or str(value).strip() == "":
        raise Invalid("a file system path")
    return Path(str(value)).expanduser()


def parse_optional_path(value: Any) -> Path | None:
    if value is None or str(value).strip() == "":
        return None
    return parse_path(value)


def parse_optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_system_metric_set(value: Any) -> str:
    """A system metric set (see :mod:`otel_recursive_metrics.metric_set`), kept as text."""
    import json

    from ..metric_set import parse_metric_set

    text = json.dumps(dict(value)) if isinstance(value, Mapping) else str(value).strip() or "default"
    try:
        parse_metric_set(text, environ={})
    except ValueError as exc:
        raise Invalid(f"a system metric set: `default`, `all`, metric names, `-glob`, or a JSON object ({exc})") from None
    return text


def parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """Parse ``k1=v1,k2=v2`` (W3C-baggage style, values URL-decoded) or a mapping."""
    if value is None or value == "":
        return ()
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for part in str(value).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                # Never echo the value: it may be a token.
                raise Invalid("comma-separated key=value pairs")
            key, _, val = part.partition("=")
            pairs.append((unquote(key.strip()), unquote(val.strip())))
    if any(not k for k, _ in pairs):
        raise Invalid("comma-separated key=value pairs")
    return tuple((k.lower(), v) for k, v in pairs)
