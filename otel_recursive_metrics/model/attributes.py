"""Point attributes: canonical JSON text (the identity the store compares) and the SDK-style limits.

The same attributes always give the same text (sorted keys, compact, sequences as lists), so two
points of one series share their attribute set in a batch, in the queue payload and in the store.
Limits follow the SDK's ``OTEL_ATTRIBUTE_COUNT_LIMIT`` and ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``:
past them values are cut, never refused, and the cut is counted.

    >>> canonical_json({"b": 1, "a": ("x", "y")})
    '{"a":["x","y"],"b":1}'
    >>> limit_attributes({"k": "abcdef"}, AttributeLimits(count=8, value_length=3))
    ({'k': 'abc'}, 1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AttributeLimits", "canonical_json", "canonical_json_of_immutable", "limit_attributes"]

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode
_CACHE_MAX = 100_000


@dataclass(frozen=True)
class AttributeLimits:
    """Caps on point attributes, after the SDK's ``OTEL_ATTRIBUTE_*_LIMIT`` settings.

    ``count``: most attributes a point keeps (the first ones in sorted key order);
    ``value_length``: longest string value (and string element of a list) in characters.
    Past either, values are cut, never refused: a label must not cost the point.
    """

    count: int = 128
    value_length: int = 4096


def limit_attributes(attributes: Mapping[str, Any], limits: AttributeLimits) -> tuple[dict[str, Any], int]:
    """``attributes`` within ``limits``, and how many keys or values were cut to get there."""
    cut = 0
    items = sorted(attributes.items())
    if len(items) > limits.count:
        cut += len(items) - limits.count
        items = items[: limits.count]
    out: dict[str, Any] = {}
    size = limits.value_length
    for key, value in items:
        if isinstance(value, str) and len(value) > size:
            out[key], cut = value[:size], cut + 1
        elif isinstance(value, (list, tuple)) and any(isinstance(v, str) and len(v) > size for v in value):
            out[key], cut = [v[:size] if isinstance(v, str) else v for v in value], cut + 1
        else:
            out[key] = value
    return out, cut


def canonical_json(attributes: Mapping[str, Any] | None) -> str:
    """Attributes as canonical JSON text: sorted keys, compact, sequences as lists."""
    if not attributes:
        return "{}"
    return _dumps({k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()})


# Per limits, id(attributes) -> (attributes, text, cut). The SDK hands out the same immutable
# attributes object for a series in every collection, so a hit needs only an identity check;
# holding the object keeps its id from being reused while it is cached.
_caches: dict[AttributeLimits, dict[int, tuple[Mapping[str, Any], str, int]]] = {}


def canonical_json_of_immutable(attributes: Mapping[str, Any] | None, limits: AttributeLimits) -> tuple[str, int]:
    """:func:`canonical_json` (within ``limits``) for attribute objects never mutated (the SDK's), cached.

    Returns ``(text, how many keys or values were cut)``; the count is reported on a cache miss only.
    """
    if not attributes:
        return "{}", 0
    cache = _caches.get(limits)
    if cache is None:
        cache = _caches.setdefault(limits, {})
    hit = cache.get(id(attributes))
    if hit is not None and hit[0] is attributes:
        return hit[1], 0
    limited, cut = limit_attributes(attributes, limits)
    text = canonical_json(limited)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[id(attributes)] = (attributes, text, cut)
    return text, cut
