"""A batch's points as NumPy columns, converted in bulk: what the binary batch form encodes.

:func:`columns_of` turns a list of points (see :mod:`.point`) into one array per field with no
Python loop per point: the points are transposed once (``zip``), each field's types are read
with ``map(type, ...)`` and its values converted by NumPy. A point no column holds exactly is
left out, for its caller to keep some other way (as JSON): a value that is neither an int64
nor a float (an integer past 64 bits, a bool, a string); a table index that is not an integer
from 0 to 2**32 - 1; a time, step or epoch that is not an int64 (or None, for step and epoch).
Finding those is the slow path, taken only when a batch has one.

The columns: ``resource``, ``scope``, ``metric``, ``attributes``, ``start_time_unix_nano``,
``time_unix_nano``, ``step``, ``epoch`` (int64), ``step_missing``, ``epoch_missing``,
``value_missing`` (bool: the field is None), ``is_float`` (bool: the value is a float, or None),
``value_float`` and ``value_int`` (the float values, 0 for the others; the int values, 0 for
the others),
and ``histogram`` and ``extra`` (a list of compact JSON texts and None, or None when no point
has one).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from itertools import compress, repeat
from typing import Any

import numpy as np

from .point import ATTRIBUTES, EPOCH, EXTRA, HISTOGRAM, METRIC, RESOURCE, SCOPE, START_TIME, STEP, TIME, VALUE, Point

__all__ = ["columns_of"]

_FIELDS = 11
_UINT32_MAX = 0xFFFFFFFF
_NONE = type(None)
_INT = frozenset((int,))
_INT_OR_NONE = frozenset((int, _NONE))
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TEXT_SLICE = 256


def columns_of(points: Sequence[Point]) -> tuple[np.ndarray, dict[str, Any]]:
    """The indexes of the points the columns hold (increasing), and the columns (see the module docstring).

    Raises ``UnicodeEncodeError`` for a lone surrogate in a histogram or extra field.
    """
    count = len(points)
    index = np.arange(count, dtype=np.int64)
    try:
        fields = list(zip(*points, strict=True)) if count else [() for _ in range(_FIELDS)]
    except (TypeError, ValueError):  # points of other lengths, or not points at all
        fields = []
    if len(fields) != _FIELDS:  # rare: keep the points of 11 fields, leave the rest to the caller
        index = np.flatnonzero(np.fromiter((isinstance(p, list) and len(p) == _FIELDS for p in points), bool, count))
        fields = list(zip(*[points[i] for i in index.tolist()], strict=True)) or [() for _ in range(_FIELDS)]
    while True:
        columns, odd = _convert(fields)
        if odd is None:
            return index, columns
        keep = (~odd).tolist()  # rare (a wide integer, a bool value): convert again without them
        index = index[~odd]
        fields = [tuple(compress(f, keep)) for f in fields]


def _convert(fields: list[tuple[Any, ...]]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The columns of ``fields`` (one tuple per point field), or a mask of the points no column holds."""
    count = len(fields[0])
    odd = np.zeros(count, bool)
    columns: dict[str, Any] = {}
    for name, field, allowed in (
        ("resource", RESOURCE, _INT),
        ("scope", SCOPE, _INT),
        ("metric", METRIC, _INT),
        ("attributes", ATTRIBUTES, _INT),
        ("start_time_unix_nano", START_TIME, _INT),
        ("time_unix_nano", TIME, _INT),
        ("step", STEP, _INT_OR_NONE),
        ("epoch", EPOCH, _INT_OR_NONE),
    ):
        values = fields[field]
        types = set(map(type, values))
        if not types <= allowed:
            odd |= np.fromiter(map(allowed.__contains__, map(type, values)), bool, count) ^ True
            continue
        missing = _missing(values) if _NONE in types else None
        converted = _int64(values, missing)
        if converted is None:
            odd |= _outside_int64(values)
            continue
        if field < START_TIME:  # a table index
            odd |= (converted < 0) | (converted > _UINT32_MAX)
        columns[name] = converted
        if field in (STEP, EPOCH):
            columns[name + "_missing"] = np.zeros(count, bool) if missing is None else missing
    value_odd = _values(fields[VALUE], columns)
    if value_odd is not None:
        odd |= value_odd
    if odd.any():
        return columns, odd
    for name, field in (("histogram", HISTOGRAM), ("extra", EXTRA)):
        columns[name] = _texts(fields[field])
    return columns, None


def _missing(values: tuple[Any, ...]) -> np.ndarray | None:
    """A mask of the None values, or None if there is none (counted first: the usual answers are all or none)."""
    nones = values.count(None)
    if nones == 0:
        return None
    if nones == len(values):
        return np.ones(len(values), bool)
    return np.fromiter(map(operator.is_, values, repeat(None)), bool, len(values))


def _int64(values: tuple[Any, ...], missing: np.ndarray | None) -> np.ndarray | None:
    """``values`` (ints, None where ``missing``) as int64 with 0 for None; None if one is past int64."""
    try:
        if missing is None:
            return np.array(values, np.int64) if values else np.zeros(0, np.int64)
        if missing.all():
            return np.zeros(len(values), np.int64)
        array = np.array(values, object)
        array[missing] = 0
        return array.astype(np.int64)
    except OverflowError:
        return None


def _outside_int64(values: Sequence[Any]) -> np.ndarray:
    """A mask of the integers in ``values`` that int64 cannot hold (a slow path: only after an overflow)."""
    return np.fromiter((type(v) is int and not -(2**63) <= v < 2**63 for v in values), bool, len(values))


def _values(values: tuple[Any, ...], columns: dict[str, Any]) -> np.ndarray | None:
    """Put ``value_float``, ``value_int``, ``is_float`` and ``value_missing`` in ``columns``; or a mask of the values no column holds."""
    count = len(values)
    types = set(map(type, values))
    if bool in types or not all(t is int or t is _NONE or issubclass(t, float) for t in types):
        return np.fromiter((not (type(v) is int or v is None or isinstance(v, float)) for v in values), bool, count)
    missing = _missing(values) if _NONE in types else None
    if types <= {float}:  # the usual case: floats alone, converted without a detour
        columns.update(
            value_float=np.array(values, np.float64) if count else np.zeros(0),
            value_int=np.zeros(count, np.int64),
            is_float=np.ones(count, bool),
            value_missing=np.zeros(count, bool),
        )
        return None
    if int not in types:  # floats and None (a histogram's)
        is_float = np.ones(count, bool)
    elif types == _INT:
        is_float = np.zeros(count, bool)
    else:
        is_float = np.fromiter(map(isinstance, values, repeat(float)), bool, count)
        if missing is not None:
            is_float |= missing
    array = np.array(values, object)
    if missing is not None:
        array[missing] = 0.0
    value_float, value_int = np.zeros(count, np.float64), np.zeros(count, np.int64)
    try:
        value_int[~is_float] = array[~is_float].astype(np.int64)
    except OverflowError:
        return _outside_int64(values)
    value_float[is_float] = array[is_float].astype(np.float64)
    columns.update(
        value_float=value_float,
        value_int=value_int,
        is_float=is_float,
        value_missing=np.zeros(count, bool) if missing is None else missing,
    )
    return None


def _texts(values: tuple[Any, ...]) -> list[str | None] | None:
    """Each value as compact JSON text (None stays None); None when every value is None.

    Raises ``UnicodeEncodeError`` for a lone surrogate in a text (a chunk would keep it as it is).
    """
    nones = values.count(None)
    if nones == len(values):
        return None
    present = [v for v in values if v is not None] if nones else list(values)
    texts = _dict_texts(present) if set(map(type, present)) == {dict} else None
    if texts is None:
        texts = list(map(_compact, present))
    joined = "".join(texts)
    if not joined.isascii():  # the common texts are ASCII, checked at memory speed
        joined.encode("utf-8")
    if not nones:
        return texts  # type: ignore[return-value]
    found = iter(texts)
    return [None if v is None else next(found) for v in values]


def _dict_texts(dicts: list[dict[str, Any]]) -> list[str] | None:
    """Each dict's compact JSON text, from one encoding of each slice of them; None where that cannot be cut apart.

    A slice's text is cut at each ``},{``: exactly between its dicts, unless one holds that text
    itself (a nested dict, a string), which gives more pieces than dicts: then None. Slices of
    256: one ``json`` call holds the GIL from start to end, and 256 histograms take about a
    millisecond, for the training thread's sake.
    """
    texts: list[str] = []
    for start in range(0, len(dicts), _TEXT_SLICE):
        part = dicts[start : start + _TEXT_SLICE]
        pieces = _compact(part)[2:-2].split("},{")
        if len(pieces) != len(part):
            return None
        texts += ["{" + piece + "}" for piece in pieces]
    return texts
