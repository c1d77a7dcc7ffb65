"""A labelled query set built from a catalogue, to measure query understanding.

Templates over the catalogue's categories, its popular titles and its years (``a mystery
but nothing romantic``, ``films like Toy Story``, ``comedies from the 90s``...), each query
with what it asks for: wanted and unwanted categories, the item referred to, the years. A
share of the queries is lower-cased and a share carries a typo in a category or a title
word, as people type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.data.catalogue import Catalogue
from llmrec.understanding.lexicon import display_title, item_years, plural


@dataclass(frozen=True)
class LabelledQuery:
    """A query and what it asks for."""

    text: str
    template: str
    categories: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    like: tuple[str, ...] = ()
    years: tuple[int, int] | None = None
    typo: bool = False
    lower: bool = False


TEMPLATES: tuple[tuple[str, str], ...] = (
    ("want", "a {c1}"),
    ("want", "{C1} please"),
    ("want two", "{c1} and {c3}"),
    ("want but not", "something {c1} but nothing {c2}"),
    ("want but not", "{C1} without {c2}"),
    ("want but not", "a {c1}, no {C2}"),
    ("not, want", "not {c2}, maybe a {c1}"),
    ("not", "anything except {C2}"),
    ("like", "films like {t}"),
    ("like", "something similar to {t}"),
    ("like but not", "like {t} but not {c2}"),
    ("want years", "a {c1} from the {decade}s"),
    ("want year", "{C1} from {year}"),
    ("want before", "{C1} before {year}"),
    ("want years but not", "a {c1} from the {decade}s without {c2}"),
)
"""(kind, template): ``c1``/``c3`` wanted, ``c2`` unwanted categories (``C``: plural),
``t`` a title, ``decade``/``year`` years; templates with years only for catalogues that
have them."""


def _surface(name: str, many: bool) -> str:
    """How a person writes a category: lower-case, ``film noir``, plural where it reads."""
    word = name.replace("-", " ").lower() if name.count("-") == 1 and len(name) > 7 else name
    word = word.lower()
    if many and re.fullmatch(r"[a-z ]+", word):
        parts = word.split()
        return " ".join([*parts[:-1], plural(parts[-1])])
    return word


def typo(word: str, rng: np.random.Generator) -> str:
    """One slip of the keyboard in ``word``: a letter dropped, doubled, swapped with the
    next or replaced by a neighbour on the keyboard."""
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 4:
        return word
    i = int(rng.choice(letters[1:-1]))
    kind = int(rng.integers(4))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    near = {"a": "s", "e": "r", "i": "o", "o": "p", "u": "y", "n": "m", "r": "t", "s": "d"}
    return word[:i] + near.get(word[i].lower(), "e") + word[i + 1 :]


def _slip(values: dict[str, str], template: str, rng: np.random.Generator) -> bool:
    """Put a typo into a word of 5+ letters of one of the template's slots (in ``values``);
    False when no slot has such a word."""
    slots = [k for k in ("c1", "C1", "c2", "C2", "t") if "{" + k + "}" in template]
    spots = [(k, i) for k in slots for i, w in enumerate(values[k].split(" ")) if len(w) >= 5]
    if not spots:
        return False
    slot, w = spots[int(rng.integers(len(spots)))]
    words = values[slot].split(" ")
    words[w] = typo(words[w], rng)
    values[slot] = " ".join(words)
    return True


def build_query_set(
    catalogue: Catalogue,
    n: int = 400,
    seed: int = 0,
    popularity: Sequence[float] | np.ndarray | None = None,
    typo_share: float = 0.3,
    lower_share: float = 0.4,
    top_titles: int = 300,
) -> list[LabelledQuery]:
    """``n`` labelled queries over ``catalogue`` (titles drawn from its ``top_titles`` most
    popular items when ``popularity`` is given: titles people know)."""
    rng = np.random.default_rng(seed)
    counts = {c: 0 for c in catalogue.categories}
    for entry in catalogue.items.values():
        for c in entry.categories:
            counts[c] += 1
    least = min(10, max(2, len(catalogue) // 20))
    cats = [c for c, k in counts.items() if k >= least and c.lower() != "unknown"]
    order = (
        np.argsort(-np.asarray(popularity)) if popularity is not None else np.arange(len(catalogue))
    )
    titled = [catalogue.ids[int(r)] for r in order[:top_titles]]
    years = item_years(catalogue)
    has_years = float(np.mean(years > 0)) >= 0.5
    decades = sorted({int(y) // 10 * 10 for y in years[years > 0]})
    decades = [d for d in decades if ((years >= d) & (years < d + 10)).sum() >= least]
    found, per_year = np.unique(years[years > 0], return_counts=True)
    known_years = [int(y) for y, k in zip(found, per_year, strict=True) if k >= least // 2]
    templates = [
        t
        for t in TEMPLATES
        if ((has_years and decades) or "{decade}" not in t[1])
        and ((has_years and known_years) or "{year}" not in t[1])
    ]
    out = []
    for q in range(n):
        kind, template = templates[q % len(templates)]
        c1, c2, c3 = (str(c) for c in rng.choice(cats, size=3, replace=False))
        item = titled[int(rng.integers(len(titled)))]
        title = display_title(catalogue.title(item))
        values = {"c1": _surface(c1, False), "C1": _surface(c1, True), "c2": _surface(c2, False)}
        values |= {"C2": _surface(c2, True), "c3": _surface(c3, False), "t": title}
        span: tuple[int, int] | None = None
        if "{decade}" in template and decades:
            decade = int(rng.choice(decades))
            values["decade"] = str(decade)[2:] if rng.random() < 0.5 else str(decade)
            span = (decade, decade + 9)
        if "{year}" in template and known_years:
            year = int(rng.choice(known_years))
            values["year"] = str(year)
            first = int(years[years > 0].min())
            span = (first, year - 1) if "before" in kind else (year, year)
        has_typo = rng.random() < typo_share and _slip(values, template, rng)
        text = re.sub(r"\ba ([aeiou])", r"an \1", template.format(**values))
        lower = rng.random() < lower_share
        if lower:
            text = text.lower()
        elif text[0].islower():
            text = text[0].upper() + text[1:]
        out.append(
            LabelledQuery(
                text=text,
                template=template,
                categories=tuple(
                    c for c, key in ((c1, "c1"), (c3, "c3")) if key in template.lower()
                ),
                without=(c2,) if "c2" in template.lower() else (),
                like=(item,) if "{t}" in template else (),
                years=span,
                typo=has_typo,
                lower=lower,
            )
        )
    return out


__all__ = ["TEMPLATES", "LabelledQuery", "build_query_set", "typo"]
