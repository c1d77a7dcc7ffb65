"""How an :class:`~llmrec.understanding.intent.Intent` changes a ranking.

Unwanted categories, years and attribute values are hard filters. Wanted ones add a boost
(``boost`` per wanted category the item has, per wanted attribute value, and for a year in
the wanted range) or, for a ``strict`` request, also filter: an item must have one of the
wanted categories, its year in range and one of the wanted attribute values.
"""

from __future__ import annotations

import numpy as np

from llmrec.data.catalogue import Catalogue
from llmrec.understanding.intent import Intent
from llmrec.understanding.lexicon import item_years


class Constraints:
    """The catalogue facts an intent is checked against (one model version).

    Args:
        catalogue: The version's catalogue.
        boost: What each satisfied wanted constraint adds to an item's score (in the
            hybrid's units: standard deviations of the weighted parts).
    """

    def __init__(self, catalogue: Catalogue, boost: float = 2.0) -> None:
        self.num_items = len(catalogue)
        self.boost = boost
        self.years = item_years(catalogue)
        self.rows: dict[tuple[str, str], np.ndarray] = {}
        by_value: dict[tuple[str, str], list[int]] = {}
        for name in catalogue.attribute_names:
            for row, values in enumerate(catalogue.attribute_values(name)):
                for v in values:
                    by_value.setdefault((name, v), []).append(row)
        self.rows = {k: np.asarray(v, dtype=np.int64) for k, v in by_value.items()}
        self.categories = [catalogue.items[i].categories for i in catalogue.ids]

    def _has(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        """``[items]`` how many of ``values`` of attribute ``name`` each item has."""
        count = np.zeros(self.num_items, dtype=np.float32)
        for v in values:
            rows = self.rows.get((name, v))
            if rows is not None:
                count[rows] += 1.0
        return count

    def _in_years(self, span: tuple[int, int]) -> np.ndarray:
        return (self.years >= span[0]) & (self.years <= span[1]) & (self.years > 0)

    def excluded(self, intent: Intent, strict: bool = False) -> np.ndarray:
        """``[items]`` True for the items the intent rules out."""
        out = self._has("categories", intent.without) > 0
        if intent.without_years is not None:
            out |= self._in_years(intent.without_years)
        for name, value in intent.without_attributes:
            out |= self._has(name, (value,)) > 0
        if strict:
            if intent.categories:
                out |= self._has("categories", intent.categories) == 0
            if intent.years is not None:
                out |= ~self._in_years(intent.years)
            for name, values in _grouped(intent.attributes).items():
                out |= self._has(name, values) == 0
        return out

    def boosts(self, intent: Intent) -> np.ndarray:
        """``[items]`` what the intent's wanted constraints add to each item's score."""
        out = self._has("categories", intent.categories)
        if intent.years is not None:
            out += self._in_years(intent.years).astype(np.float32)
        for name, values in _grouped(intent.attributes).items():
            out += self._has(name, values)
        return self.boost * out

    def effect(self, intent: Intent | None, strict: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(the rows the intent rules out, ``[items]`` boosts or None) for one request."""
        if intent is None or not (intent.wants or intent.excludes):
            return np.zeros(0, dtype=np.int64), None
        out = np.flatnonzero(self.excluded(intent, strict))
        return out, (self.boosts(intent) if intent.wants and self.boost else None)

    def matched(self, intent: Intent | None, row: int) -> list[str]:
        """The constraints item ``row`` satisfies, for people (``Mystery``, ``not Romance``,
        ``1990-1999``, ``provider: Kite Studios``)."""
        if intent is None:
            return []
        cats = set(self.categories[row])
        out = [c for c in intent.categories if c in cats]
        out += [f"not {c}" for c in intent.without if c not in cats]
        year = int(self.years[row])
        if intent.years is not None and intent.years[0] <= year <= intent.years[1]:
            out.append(years_label(intent.years))
        if (
            intent.without_years is not None
            and year
            and not (intent.without_years[0] <= year <= intent.without_years[1])
        ):
            out.append(f"not {years_label(intent.without_years)}")
        for name, value in intent.attributes:
            if (name, value) in self.rows and row in set(self.rows[(name, value)].tolist()):
                out.append(f"{name}: {value}")
        return out


def years_label(span: tuple[int, int]) -> str:
    """``(1990, 1999)`` -> ``1990s``; ``(1995, 1995)`` -> ``1995``; else ``1980-1989``."""
    first, last = span
    if first == last:
        return str(first)
    if first % 10 == 0 and last == first + 9:
        return f"{first}s"
    return f"{first}-{last}"


def _grouped(pairs: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


__all__ = ["Constraints", "years_label"]
