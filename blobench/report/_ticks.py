"""Log-axis tick formatters of the report's figures (module-level classes: figures are pickled to render workers)."""
from __future__ import annotations

import re
from typing import Any

from matplotlib.ticker import LogFormatterMathtext, LogFormatterSciNotation

_SUPERSCRIPT = str.maketrans("0123456789-", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b")


def superscript_label(tex: str) -> str:
    """``$\\mathdefault{2\\times10^{-3}}$`` (matplotlib's log tick label) as plain text, ``2\u00d710\u207b\u00b3``.

    Log tick labels in mathtext cost one mathtext parse per label, size and output format (1072 parses, about a
    fifth of a report's time); the same label in Unicode superscripts is ordinary text. Labels that are not
    ``[m\\times]b^{e}`` are returned unchanged."""
    m = re.fullmatch(r"\$\\mathdefault\{(?:([0-9.]+)\\times\s*)?([0-9.]+)\^\{(-?[0-9]+)\}\}\$", tex.strip())
    if m is None:
        return tex
    mant, base, exp = m.groups()
    return (f"{mant}\u00d7" if mant else "") + base + exp.translate(_SUPERSCRIPT)


class SuperscriptDecades(LogFormatterMathtext):
    """matplotlib's decade labels (10^k), in Unicode superscripts."""

    def __call__(self, x: float, pos: Any = None) -> str:
        return superscript_label(super().__call__(x, pos))


class SuperscriptSci(LogFormatterSciNotation):
    """matplotlib's 2x10^k labels (minor ticks of an axis within a decade), in Unicode superscripts."""

    def __call__(self, x: float, pos: Any = None) -> str:
        return superscript_label(super().__call__(x, pos))
