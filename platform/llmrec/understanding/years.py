"""Year phrases of a request: ``1995``, ``the 90s``, ``the nineties``, ``early 80s``,
``before 1980``, ``since 2000``, ``between 1980 and 1990`` (:func:`year_matches`), and the
year in parentheses after a title referred to (:func:`bracketed_year`). The rest of the
phrase level (negation, reference triggers, the text left for the language model):
:mod:`llmrec.understanding.phrases`.
"""

from __future__ import annotations

import re

import numpy as np

from llmrec.understanding.phrases import Match, Tokens, word_set

DECADE_WORDS = {
    "twenties": 20,
    "thirties": 30,
    "forties": 40,
    "fifties": 50,
    "sixties": 60,
    "seventies": 70,
    "eighties": 80,
    "nineties": 90,
}
_BEFORE: tuple[tuple[str, ...], ...] = (
    ("prior", "to"),
    ("older", "than"),
    ("earlier", "than"),
    ("before",),
    ("until",),
    ("till",),
    ("pre",),
)
_AFTER = (("newer", "than"), ("later", "than"), ("after",), ("post",))
_SINCE = (("since",),)
_RANGE_JOIN = word_set("to and through thru till until")


def year_matches(
    toks: Tokens, used: list[bool], span: tuple[int, int], years: np.ndarray
) -> list[Match]:
    """Year phrases: ``1995``, ``the 90s``, ``the nineties``, ``early 80s``, ``1980s``,
    ``before 1980``, ``after the 90s``, ``since 2000``, ``between 1980 and 1990``,
    ``1980-1990``. A year in parentheses right after words is left to title references."""
    out = []
    i = 0
    while i < len(toks):
        r = None if used[i] or _in_parentheses(toks, i) else _year_value(toks[i][0], years)
        if r is None:
            i += 1
            continue
        first = i
        if i > 0 and toks[i - 1][0] in ("early", "mid", "late") and r[1] - r[0] == 9:
            offset = {"early": (0, 3), "mid": (3, 6), "late": (6, 9)}[toks[i - 1][0]]
            r = (r[0] + offset[0], r[0] + offset[1])
            first = i - 1
        end = i + 1
        j = end + 1 if end < len(toks) and toks[end][0] in _RANGE_JOIN else end
        if j < len(toks) and not used[j] and (j > end or toks[j][1] - toks[i][2] <= 1):
            r2 = _year_value(toks[j][0], years)
            if r2 is not None and r2[1] >= r[0]:
                r, end = (r[0], r2[1]), j + 1
        first, r = _bound(toks, first, r, span)
        for k in range(first, end):
            used[k] = True
        out.append(Match("years", r, range(first, end)))
        i = end
    return out


def _bound(
    toks: Tokens, first: int, r: tuple[int, int], span: tuple[int, int]
) -> tuple[int, tuple[int, int]]:
    """Open the range for ``before``/``after``/``since`` in front of it, and take in
    ``the``/``from``/``in``/``of``/``between``."""
    if first > 0 and toks[first - 1][0] == "the":
        first -= 1
    for words, make in (
        (_BEFORE, lambda: (min(span[0], r[0] - 1), r[0] - 1)),
        (_AFTER, lambda: (r[1] + 1, max(span[1], r[1] + 1))),
        (_SINCE, lambda: (r[0], max(span[1], r[0]))),
    ):
        for phrase in words:
            n = len(phrase)
            if first >= n and tuple(t for t, _, _ in toks[first - n : first]) == phrase:
                return first - n, make()
    if first > 0 and toks[first - 1][0] in ("from", "in", "of", "between", "during"):
        first -= 1
    return first, r


def _in_parentheses(toks: Tokens, i: int) -> bool:
    return 0 < i < len(toks) - 1 and toks[i - 1][0] == "(" and toks[i + 1][0] == ")"


def _year_value(word: str, years: np.ndarray) -> tuple[int, int] | None:
    """The years a token names: ``1995``, ``1990s``, ``90s``, ``nineties``."""
    if re.fullmatch(r"(1[89]|20)\d\d", word):
        return int(word), int(word)
    m = re.fullmatch(r"((?:1[89]|20)\d)0s", word)
    if m:
        start = int(m.group(1)) * 10
        return start, start + 9
    m = re.fullmatch(r"(\d)0s", word)
    decade = int(m.group(1)) * 10 if m else DECADE_WORDS.get(word)
    if decade is None:
        return None
    start = _century(decade, years)
    return start, start + 9


def _century(decade: int, years: np.ndarray) -> int:
    """``90s`` is 1990s, ``20s`` 1920s or 2020s: the one with more catalogue items."""
    counts = {
        c + decade: int(((years >= c + decade) & (years <= c + decade + 9)).sum())
        for c in (1900, 2000)
    }
    if max(counts.values()) > 0:
        return max(counts, key=lambda k: (counts[k], k))
    return 1900 + decade if decade >= 30 else 2000 + decade


def bracketed_year(toks: Tokens, end: int) -> tuple[int, int]:
    """``Heat (1995)``: the year in parentheses right after a title, and the token after it."""
    year = end + 2 < len(toks) and toks[end][0] == "(" and toks[end + 2][0] == ")"
    if year and re.fullmatch(r"\d{4}", toks[end + 1][0]):
        return int(toks[end + 1][0]), end + 3
    return 0, end


__all__ = ["DECADE_WORDS", "bracketed_year", "year_matches"]
