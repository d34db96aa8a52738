"""Text bound for a terminal: user strings made inert, measured in columns, and cut to fit.

Run ids, names, parameters, metric names and attributes come from whoever wrote the store, and a
dead letter's reason from a remote receiver: printed raw, an escape sequence in one of them could
move the cursor, retitle the window or hide the rest of a line. :func:`terminal_text` shows every
control character as its Python escape (``\\x1b``, ``\\n``, ``\\u202e``), so what reaches the
terminal is only printable text.

Widths are display columns, not characters: an East Asian wide character takes two, a combining
mark none (:func:`display_width`), so a table of CJK run names stays aligned.

    >>> terminal_text("lr\\x1b[2J")
    'lr\\\\x1b[2J'
    >>> clip("baseline-with-warmup", 10)
    'baseline-…'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

__all__ = ["ELLIPSIS", "clip", "display_width", "fit_table", "fit_widths", "pad", "terminal_text"]

#: What a cut cell ends with: one column, so a clipped cell is as wide as its column.
ELLIPSIS = "…"

# Unicode categories never printed as themselves: controls (C0, DEL, C1), line and paragraph
# separators, and the format characters that reorder text (bidirectional overrides and isolates;
# "Trojan Source"). Other format characters (the zero-width joiner in emoji) are kept.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escaped(char: str) -> bool:
    return char in _BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES


def terminal_text(text: str) -> str:
    """``text`` with each control character written as its escape: safe to print, one line."""
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char.encode("unicode_escape").decode("ascii") if _escaped(char) else char for char in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal (after :func:`terminal_text`)."""
    if text.isascii():
        return len(text)
    return sum(_char_width(char) for char in text)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending with :data:`ELLIPSIS` when cut."""
    if display_width(text) <= width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        char_width = _char_width(char)
        if used + char_width > width - 1:
            break
        kept.append(char)
        used += char_width
    return "".join(kept) + ELLIPSIS


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` columns, on the left when ``right``."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def fit_widths(natural: Sequence[int], minimum: Sequence[int], total: int, separator: int = 2) -> list[int]:
    """Column widths that fit ``total`` columns, narrowing the widest column first.

    ``natural`` is each column's widest cell, ``minimum`` how narrow each may become (its natural
    width for a column that must not be cut). When even the minimums do not fit, the minimums.

    >>> fit_widths([10, 40, 30], [10, 8, 8], 60)
    [10, 23, 23]
    """
    widths = list(natural)
    over = sum(widths) + separator * max(0, len(widths) - 1) - total
    while over > 0:
        cuttable = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not cuttable:
            break
        widest = max(widths[i] for i in cuttable)
        at_widest = [i for i in cuttable if widths[i] == widest]
        below = max([widths[i] for i in cuttable if widths[i] < widest] + [max(minimum[i] for i in at_widest)])
        # Narrow the widest columns together, down to the next width (or their floor) at most.
        step = max(1, min(widest - below, -(-over // len(at_widest))))
        for i in at_widest:
            cut = min(step, widths[i] - minimum[i], over)
            widths[i] -= cut
            over -= cut
    return widths


def fit_table(rows: Sequence[Sequence[str]], total: int, floors: Mapping[int, int], separator: int = 2) -> tuple[list[list[str]], bool]:
    """``rows`` (header first) made terminal-safe and cut to fit ``total`` columns: ``(rows, cut)``.

    Only the columns in ``floors`` are narrowed, each to its floor at most (a column's floor is
    how narrow it may become); their cells, the header's too, end with :data:`ELLIPSIS` when cut.
    ``cut`` says whether any cell was.
    """
    safe = [[terminal_text(cell) for cell in row] for row in rows]
    if not safe:
        return safe, False
    natural = [max(display_width(row[i]) for row in safe) for i in range(len(safe[0]))]
    minimum = [min(natural[i], floors[i]) if i in floors else natural[i] for i in range(len(natural))]
    widths = fit_widths(natural, minimum, total, separator)
    cut = widths != natural
    return [[clip(cell, widths[i]) for i, cell in enumerate(row)] for row in safe], cut
