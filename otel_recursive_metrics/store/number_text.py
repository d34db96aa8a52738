"""Numbers as text a column at a time, byte for byte as Python prints them: the exports' hot loop.

``str(int)`` and ``repr(float)`` cost a Python object and a call per number (``repr`` of a float
with 17 significant digits about half a microsecond): most of an export's time. Here a column
of numbers becomes a :class:`Field`, a matrix of ASCII bytes with each row's valid columns, made
with NumPy operations over the whole column; :func:`join_rows` lays fields side by side and
keeps each row's valid bytes, giving the text of all rows at once.

Floats: each is written as ``repr`` writes it, the shortest decimal that reads back as the same
double (ties of length broken toward the closer one), laid out as ``repr`` does (positional from
``1e-4`` up to ``1e16``, else ``1.5e-05`` style). The digits come from an exact computation:
the double ``m * 2**q`` times a 128-bit ``10**k`` (a table made once, from Python integers) in
32-bit limbs, giving the scaled value's integer part and 64 bits of its fraction; then the
shortest digit count whose nearest decimal lies inside the double's rounding interval (a binary
search: a count that works means every longer one does). A number whose answer sits within
``2**-40`` of a boundary of that test (an exact tie, which the rounding rules decide) is left to
``repr`` itself, as are zeros, infinities and NaN (the caller's texts): no text here is a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Field", "float_pieces", "int_field", "join_rows", "text_field"]

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
#: '0000'..'9999' as 4 ASCII bytes each: digits come four at a time.
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)
_POWERS_OF_TEN = np.array([10**i for i in range(20)], dtype=_U64)
_POWERS_I64 = _POWERS_OF_TEN[:19].astype(np.int64)
#: A test this close to its boundary (in units of the last of 17 digits) is left to repr.
_MARGIN = 2.0**-40


class Field(NamedTuple):
    """A column of texts: row i is ``matrix[i, start[i]:end[i]]`` (ASCII or UTF-8 bytes)."""

    matrix: np.ndarray
    start: np.ndarray
    end: np.ndarray


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Unsigned ``values`` (below ``10**width``) as ``width`` zero-padded ASCII digits a row."""
    quads = -(-width // 4)
    out = np.empty((len(values), quads), np.uint32)
    rest = values.view(_U64) if values.dtype.itemsize == 8 and values.dtype.kind in "iu" else values.astype(_U64)
    for q in range(quads - 1, -1, -1):
        high = rest // _U64(10_000)  # a division by a constant is fast; divmod is not
        out[:, q] = _QUADS.take((rest - high * _U64(10_000)).astype(np.intp))
        rest = high
    return out.view(np.uint8).reshape(len(values), quads * 4)[:, quads * 4 - width :]


def _digit_count(values: np.ndarray) -> np.ndarray:
    """Decimal digits of unsigned ``values`` (1 for 0)."""
    # log10 of the nearest double can be one off near a power of ten: set right by comparing.
    with np.errstate(divide="ignore"):
        guess = np.floor(np.log10(np.maximum(values, _U64(1)).astype(np.float64))).astype(np.int64) + 1
    guess = np.clip(guess, 1, 19)
    guess += (guess < 20) & (values >= _POWERS_OF_TEN.take(np.minimum(guess, 19)))
    guess -= values < _POWERS_OF_TEN.take(guess - 1)
    count: np.ndarray = np.maximum(guess, 1)
    return count


def int_field(values: np.ndarray, missing: np.ndarray | None = None, missing_text: str = "") -> Field:
    """``str`` of each int64; ``missing_text`` (ASCII) where ``missing`` is True."""
    n = len(values)
    negative = values < 0
    magnitude = values.astype(np.int64).view(_U64).copy()
    magnitude[negative] = ~magnitude[negative] + _U64(1)  # two's complement: -2**63 too
    count = _digit_count(magnitude)
    width = int(count.max()) if n else 1
    body = _digits(magnitude, width)
    sign_width = 1 if negative.any() else 0
    special = missing_text.encode("ascii")
    total = max(width + sign_width, len(special))
    matrix = np.empty((n, total), np.uint8)
    matrix[:, total - width :] = body
    start = total - count - negative
    if sign_width:
        matrix[:, : total - width] = ord(" ")
        matrix[np.flatnonzero(negative), start[negative]] = ord("-")
    end = np.full(n, total, np.int64)
    if missing is not None and missing.any():
        rows = np.flatnonzero(missing)
        matrix[rows, total - len(special) :] = np.frombuffer(special, np.uint8)
        start[rows] = total - len(special)
    return Field(matrix, start, end)


def text_field(texts: Sequence[str | bytes]) -> Field:
    """Texts (str as UTF-8), one a row."""
    encoded = [t.encode() if isinstance(t, str) else t for t in texts]
    width = max((len(t) for t in encoded), default=0)
    if not width:
        return Field(np.zeros((len(encoded), 0), np.uint8), np.zeros(len(encoded), np.int64), np.zeros(len(encoded), np.int64))
    # NumPy's "S" strings hold NUL bytes only inside (it trims them at the end): the lengths say where each ends.
    matrix = np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)
    end = np.fromiter(map(len, encoded), np.int64, len(encoded))
    return Field(matrix, np.zeros(len(encoded), np.int64), end)


def join_rows(pieces: Sequence[Field | bytes], rows: int) -> bytes:
    """Each row's pieces side by side (bytes: the same for every row), rows one after another."""
    cropped: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            if piece:
                cropped.append((np.frombuffer(piece, np.uint8), None, None))
            continue
        # Only the columns some row uses: fields are made wide enough for any value.
        lo, hi = (int(piece.start.min()), int(piece.end.max())) if rows else (0, 0)
        if hi > lo:
            width = piece.matrix.shape[1]
            start = None if lo == int(piece.start.max()) else piece.start - lo
            end = None if hi == width and bool((piece.end == width).all()) else piece.end - lo
            cropped.append((piece.matrix[:, lo:hi], start, end))
    total = sum(m.shape[-1] for m, _, _ in cropped)
    matrix = np.empty((rows, total), np.uint8)
    keep = np.ones((rows, total), bool)
    at = 0
    for part, start, end in cropped:
        width = part.shape[-1]
        matrix[:, at : at + width] = part
        columns = np.arange(width)
        if start is not None and end is not None:
            keep[:, at : at + width] = (columns >= start[:, None]) & (columns < end[:, None])
        elif start is not None:
            np.greater_equal(columns, start[:, None], out=keep[:, at : at + width])
        elif end is not None:
            np.less(columns, end[:, None], out=keep[:, at : at + width])
        at += width
    # compress over the flat arrays: several times faster than a 2-D boolean index.
    return np.compress(keep.reshape(-1), matrix.reshape(-1)).tobytes()


# -- floats ------------------------------------------------------------------------------------

_K_MIN, _K_MAX = -300, 345


def _power_table() -> tuple[list[np.ndarray], np.ndarray]:
    """10**k for k in [_K_MIN, _K_MAX] as four 32-bit limbs of a 128-bit P (2**127 <= P < 2**128) and e, 10**k ~ P * 2**e."""
    limbs, exponents = [], []
    for k in range(_K_MIN, _K_MAX + 1):
        if k >= 0:
            big = 10**k
            shift = 128 - big.bit_length()
            p = big << shift if shift >= 0 else big >> -shift  # truncated: below the true value by < 2**-127 of it
            exponent = -shift
        else:
            denominator = 10**-k
            shift = 128 + denominator.bit_length()
            p = (1 << shift) // denominator
            while p.bit_length() > 128:
                p >>= 1
                shift -= 1
            exponent = -shift
        limbs.append([(p >> (32 * i)) & 0xFFFFFFFF for i in range(4)])
        exponents.append(exponent)
    columns = np.array(limbs, dtype=_U64)
    return [np.ascontiguousarray(columns[:, j]) for j in range(4)], np.array(exponents, dtype=np.int64)


_TABLE: tuple[list[np.ndarray], np.ndarray] | None = None


def _table() -> tuple[list[np.ndarray], np.ndarray]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _power_table()
    return _TABLE


def _bits_at(limbs: Sequence[np.ndarray], offset: np.ndarray) -> np.ndarray:
    """The 64 bits ``[offset, offset + 64)`` of numbers given as 32-bit limbs (low first, one array each).

    ``offset`` takes few values (the binary point moves by a few bits at most), so each of its
    words is taken for every number and kept where it applies: whole-array operations only.
    """
    word = offset // 32
    shift = (offset % 32).astype(_U64)
    back = _U64(32) - shift
    # (c << 1) << (63 - shift) is c << (64 - shift), and 0 where shift is 0 (NumPy's shift by 64 is not 0).
    top = _U64(63) - shift
    zero = np.zeros(len(offset), _U64)
    out = np.zeros(len(offset), _U64)
    for w in range(int(word.min()), int(word.max()) + 1) if len(word) else ():
        a = limbs[w] if w < len(limbs) else zero
        b = limbs[w + 1] if w + 1 < len(limbs) else zero
        c = limbs[w + 2] if w + 2 < len(limbs) else zero
        value = (a >> shift) | (b << back) | ((c << _U64(1)) << top)
        np.copyto(out, value, where=word == w)
    return out


def _scaled(mantissa: np.ndarray, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mantissa * 2**q * 10**k`` (below 2**63) as its integer part and 64 bits of fraction (uint64 each).

    The 53-bit mantissa times the 128-bit power of ten, schoolbook in 32-bit limbs (every
    partial product fits 64 bits), then the 128 bits around the binary point.
    """
    limbs, exponents = _table()
    index = k - _K_MIN
    p = [limbs[j].take(index) for j in range(4)]
    halves = (mantissa & _MASK32, mantissa >> _U64(32))
    terms = [(a + j, halves[a] * p[j]) for a in range(2) for j in range(4)]
    carry = np.zeros(len(mantissa), _U64)
    columns = []
    for column in range(6):
        total = carry
        for place, term in terms:
            if place == column:
                total = total + (term & _MASK32)
            elif place + 1 == column:
                total = total + (term >> _U64(32))
        columns.append(total & _MASK32)
        carry = total >> _U64(32)
    shift = -(q + exponents.take(index))  # where the binary point falls in the product
    return _bits_at(columns, shift), _bits_at(columns, shift - 64)


def _shortest(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For finite, nonzero doubles: (digits as an integer, digit count, decimal exponent of the first digit, sure).

    ``sure`` is False where a test came within the margin of its boundary (``repr`` decides those).
    """
    bits = np.abs(values).view(_U64)
    exponent_bits = (bits >> _U64(52)).astype(np.int64)
    fraction = bits & _U64((1 << 52) - 1)
    normal = exponent_bits > 0
    mantissa = np.where(normal, fraction | _U64(1 << 52), fraction)
    q = np.where(normal, exponent_bits - 1075, -1074)
    # The rounding interval's halves, in units of the mantissa's last place: below a power of two
    # the doubles are twice as dense.
    boundary = normal & (fraction == 0) & (exponent_bits > 1)
    with np.errstate(divide="ignore"):
        e10 = np.floor(np.log10(np.abs(values))).astype(np.int64)
    n = len(values)
    integer = np.zeros(n, _U64)
    frac = np.zeros(n, _U64)
    todo = np.arange(n)
    for _ in range(3):  # log10 can be one off near a power of ten: fix those and scale again
        whole, part = _scaled(mantissa[todo], q[todo], 16 - e10[todo])
        integer[todo], frac[todo] = whole, part
        high = whole >= _U64(10**17)
        # The table is truncated, so an exact 10**16 may come out a hair below it: that is in range.
        low = (whole < _U64(10**16)) & ~((whole == _U64(10**16 - 1)) & (part > _U64(2**64 - 2**24)))
        if not (high.any() or low.any()):
            break
        e10[todo[high]] += 1
        e10[todo[low]] -= 1
        todo = todo[high | low]
    value_i = integer.view(np.int64)  # below 10**17
    value_f = frac.astype(np.float64) * 2.0**-64
    # Half the gap to each neighbouring double, in units of the 17th digit.
    half_gap = (value_i.astype(np.float64) + value_f) / (2.0 * mantissa.astype(np.float64))
    half_below = np.where(boundary, half_gap / 2, half_gap)
    # The integers strictly inside the rounding interval (V - half_below, V + half_gap): the
    # 17-digit decimals that read back as this double. Normal doubles' half gaps are below 12
    # units; larger ones (subnormals) are left to repr, as are edges within the margin of an integer.
    below_edge, above_edge = value_f - half_below, value_f + half_gap
    sure = (half_gap < 16) & (np.abs(below_edge - np.round(below_edge)) > _MARGIN) & (np.abs(above_edge - np.round(above_edge)) > _MARGIN)
    lowest = value_i + np.floor(below_edge).astype(np.int64) + 1
    highest = value_i + np.ceil(above_edge).astype(np.int64) - 1
    sure &= highest >= lowest
    # The most trailing digits that can be zero: the largest j with a multiple of 10**j inside.
    # An interval of w integers holds a multiple of 10**(digits of w - 1); more is a search.
    powers = _POWERS_I64
    zeros = _digit_count(np.maximum(highest - lowest + 1, 1).view(_U64)) - 1
    top = np.full(n, 16, np.int64)
    open_ = np.flatnonzero(zeros < top)
    first = True
    while len(open_):
        lo, hi = zeros[open_], top[open_]
        middle = lo + 1 if first else (lo + hi + 1) // 2
        unit = powers[middle]
        inside = highest[open_] // unit > (lowest[open_] - 1) // unit
        zeros[open_] = np.where(inside, middle, lo)
        top[open_] = np.where(inside, hi, middle - 1)
        open_ = open_[zeros[open_] < top[open_]]
        first = False
    # Of the multiples of 10**zeros inside, the nearest to V (a tie is repr's to break).
    unit = powers[zeros]
    rest = value_i % unit
    down = value_i - rest
    down_ok, up_ok = down >= lowest, down + unit <= highest
    distance_down = rest.astype(np.float64) + value_f
    distance_up = (unit - rest).astype(np.float64) - value_f
    both = down_ok & up_ok
    sure &= ~(both & (np.abs(distance_down - distance_up) < _MARGIN)) & (down_ok | up_ok)
    use_up = up_ok & ~(both & (distance_down < distance_up))
    digits = np.where(use_up, down + unit, down) // unit
    count = 17 - zeros
    # 10**17 rounded from just below it: one digit, the next exponent.
    carried = digits >= powers[np.minimum(count, 18)]
    digits = np.where(carried, 1, digits)
    count = np.where(carried, 1, count)
    e10 = np.where(carried, e10 + 1, e10)
    return digits, count, e10, sure


def _place(field: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end columns of the last ``width`` columns of ``field``."""
    total = field.shape[1]
    return total - width, np.full(len(width), total, np.int64)


def float_pieces(values: np.ndarray, *, nan: str, infinities: tuple[str, str], skip: np.ndarray | None = None) -> list[Field]:
    """``repr`` of each float64 as fields to lay side by side; ``nan`` for NaN, ``infinities`` for +inf and -inf (ASCII).

    Rows where ``skip`` is True are left empty (another field gives their text).
    """
    n = len(values)
    plain = np.isfinite(values) & (values != 0)
    if skip is not None:
        plain &= ~skip
    digits, count, e10, sure = _shortest(np.where(plain, values, 1.0))
    plain &= sure
    negative = np.signbit(values)
    decpt = e10 + 1
    exponential = (decpt <= -4) | (decpt > 16)
    leading = ~exponential & (decpt <= 0)
    split = ~exponential & (decpt > 0) & (decpt < count)
    padded = ~exponential & (decpt >= count)
    # The integer part: all digits (leading, padded), the first decpt (split), the first (exponential).
    int_count = np.where(split, decpt, np.where(exponential, 1, count))
    scale = _POWERS_I64.take(np.clip(count - int_count, 0, 19))
    int_value = digits // scale
    frac_count = np.where(split | exponential, count - int_count, np.where(padded, 1, 0))
    frac_value = np.where(padded, 0, digits - int_value * scale)
    exponent = np.abs(decpt - 1)
    nothing = np.zeros(n, np.int64)
    pieces: list[Field] = []

    def add(matrix: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        pieces.append(Field(matrix, np.where(plain, start, 0), np.where(plain, end, 0)))

    def constant(text: str, width: np.ndarray) -> None:
        """The first ``width`` bytes of ``text`` in each row."""
        add(np.broadcast_to(np.frombuffer(text.encode(), np.uint8), (n, len(text))), nothing, width)

    constant("-", negative.astype(np.int64))
    constant("0.000", np.where(leading, 2 - decpt, 0))
    int_digits = _digits(int_value, 17)
    add(int_digits, *_place(int_digits, int_count))
    constant("0" * 16, np.where(padded, decpt - count, 0))
    constant(".", (split | padded | (exponential & (count > 1))).astype(np.int64))
    frac_digits = _digits(frac_value, 16)
    add(frac_digits, *_place(frac_digits, frac_count))
    marks = np.empty((n, 2), np.uint8)
    marks[:, 0] = ord("e")
    marks[:, 1] = np.where(decpt - 1 < 0, ord("-"), ord("+"))
    add(marks, nothing, np.where(exponential, 2, 0))
    exp_digits = _digits(exponent, 3)
    add(exp_digits, *_place(exp_digits, np.where(exponential, np.maximum(2, _digit_count(exponent.view(_U64))), 0)))
    # Zeros, NaN, the infinities and what repr decides: their whole text in one more field.
    texts: list[str] = []
    others = np.flatnonzero(~plain if skip is None else ~plain & ~skip)
    for value in values[others].tolist():
        if math.isnan(value):
            texts.append(nan)
        elif math.isinf(value):
            texts.append(infinities[0] if value > 0 else infinities[1])
        else:
            texts.append(repr(value))
    width = max(map(len, texts), default=0)
    matrix = np.zeros((n, width), np.uint8)
    end = np.zeros(n, np.int64)
    if texts:
        given = text_field(texts)
        matrix[others, : given.matrix.shape[1]] = given.matrix
        end[others] = given.end
    pieces.append(Field(matrix, nothing, end))
    return pieces
