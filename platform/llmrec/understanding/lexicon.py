"""A catalogue's vocabulary for reading requests: categories, titles, years, attribute values.

Built once per model version from its catalogue (:meth:`Lexicon.build`); the intent parser
(:mod:`llmrec.understanding.intent`) matches the words of a request against it, exactly and with
typos (rapidfuzz), and the version's language model adds what words cannot (``funny`` is
``Comedy``) through embeddings of the same category names and titles.

Text is compared in one normal form (:func:`normalise`): Unicode NFKC, case-folded,
punctuation other than a word's inner apostrophe turned into spaces. Titles also get the
forms a person types: MovieLens writes ``Usual Suspects, The (1995)``, a person ``the usual
suspects``; a title in another language in parentheses is an alias of its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.data.catalogue import Catalogue

WORD = re.compile(r"\w+(?:'\w+)*|[,;.!?:()]")
"""A token: a word (inner apostrophes kept: ``children's``, ``don't``) or clause punctuation."""
TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
"""MovieLens titles end with the release year in parentheses."""
_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|el|das|der|die|l')\s*$", re.IGNORECASE)
_PAREN = re.compile(r"\(([^()]*)\)")
MAX_ATTRIBUTE_VALUES = 10_000
"""Attribute columns with more distinct values (ids, free text) are not matched in requests."""


def normalise(text: str) -> str:
    """NFKC, case-folded, one space between tokens (see :data:`WORD`)."""
    return " ".join(t for t, _, _ in tokens(text))


def tokens(text: str) -> list[tuple[str, int, int]]:
    """``(normalised token, start, end)`` with character offsets into ``text``."""
    folded = unicodedata.normalize("NFKC", text)
    if len(folded) != len(text):  # offsets must index the original: fold per character
        folded = "".join(unicodedata.normalize("NFKC", c)[:1] or " " for c in text)
    folded = folded.casefold() if len(folded.casefold()) == len(folded) else folded.lower()
    folded = folded.replace("\u2019", "'").replace("`", "'")
    return [(m.group().strip("'"), m.start(), m.end()) for m in WORD.finditer(folded)]


def title_year(title: str) -> int:
    """The year at the end of a MovieLens-style title, else 0."""
    m = TITLE_YEAR.search(title)
    return int(m.group(1)) if m else 0


def title_forms(title: str) -> list[str]:
    """The normalised forms a person may type for ``title``: the title with its year removed
    and a trailing article moved to the front, the same without the article, and any
    alternative title in parentheses."""
    bare = TITLE_YEAR.sub("", title).strip()
    alternatives = [a.strip() for a in _PAREN.findall(bare) if len(a.strip()) > 2]
    main = _PAREN.sub(" ", bare).strip() or bare
    forms = []
    m = _ARTICLE.match(main)
    if m:
        forms += [f"{m.group(2)} {m.group(1)}", m.group(1)]
    else:
        forms.append(main)
        words = main.split(maxsplit=1)
        if len(words) == 2 and words[0].lower() in ("the", "a", "an"):
            forms.append(words[1])
    for alt in alternatives:
        m = _ARTICLE.match(alt)
        forms.append(f"{m.group(2)} {m.group(1)}" if m else alt)
    out = [normalise(f) for f in forms]
    return [f for f in dict.fromkeys(out) if f]


def display_title(title: str) -> str:
    """``Usual Suspects, The (1995)`` -> ``The Usual Suspects``: how a person writes it."""
    bare = TITLE_YEAR.sub("", title).strip()
    main = _PAREN.sub(" ", bare).strip() or bare
    m = _ARTICLE.match(main)
    main = f"{m.group(2).capitalize()} {m.group(1)}" if m else main
    return " ".join(main.split())


def plural(word: str) -> str:
    """An English plural of ``word`` (comedy -> comedies, western -> westerns)."""
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    return word + "s"


def category_forms(name: str) -> list[str]:
    """The normalised forms of a category name: itself, its plural, the name written
    without its hyphen (``scifi``) or apostrophe (``childrens``, ``children``), and the parts
    of a name joined by ``&``/``and``/``/`` (``Health & Fitness``: ``health``, ``fitness``)."""
    base = normalise(name)
    forms = [base, base.replace("'s", "s"), base.replace("'s", "")]
    compact = re.sub(r"[\s\-]+", "", name.casefold())
    if compact != base.replace(" ", "") or "-" in name:
        forms.append(normalise(compact))
    parts = [normalise(p) for p in re.split(r"\s*(?:&|/|\band\b)\s*", name) if p.strip()]
    if len(parts) > 1:
        forms += [p for p in parts if len(p) >= 4]
        forms.append(" and ".join(parts))
    forms += [
        " ".join([*f.split()[:-1], plural(f.split()[-1])])
        for f in list(forms)
        if f and not f.endswith("s")
    ]
    return [f for f in dict.fromkeys(forms) if f]


@dataclass(frozen=True)
class Lexicon:
    """What a request may name in one catalogue.

    Attributes:
        ids: The item ids, in catalogue order.
        categories: The category names, sorted (the catalogue's).
        category_aliases: Normalised form -> category (:func:`category_forms`).
        title_aliases: Normalised title forms (:func:`title_forms`), several per item.
        alias_rows: The catalogue row of each title alias.
        titles: Every item's title, in catalogue order.
        years: ``[items]`` release year of each item (0: unknown).
        attributes: Attribute name -> normalised value -> the value as the catalogue has it.
        popularity: ``[items]`` interactions per item in the version's logs (which of two
            items with the same title a request means); empty when unknown.
    """

    ids: tuple[str, ...]
    categories: tuple[str, ...]
    category_aliases: dict[str, str]
    title_aliases: tuple[str, ...]
    alias_rows: np.ndarray
    titles: tuple[str, ...]
    years: np.ndarray
    attributes: dict[str, dict[str, str]]
    popularity: np.ndarray

    @classmethod
    def build(
        cls, catalogue: Catalogue, histories: Mapping[str, Sequence[str]] | None = None
    ) -> Lexicon:
        """The lexicon of ``catalogue`` (string work only: about a second per 100,000 items);
        ``histories`` (user -> items) count each item's popularity."""
        aliases: dict[str, str] = {}
        for name in catalogue.categories:  # a category's own name wins over another's form
            aliases.setdefault(normalise(name), name)
        for name in catalogue.categories:
            for form in category_forms(name):
                aliases.setdefault(form, name)
        titles = tuple(catalogue.title(i) for i in catalogue.ids)
        forms, rows = [], []
        for row, title in enumerate(titles):
            for form in title_forms(title):
                forms.append(form)
                rows.append(row)
        return cls(
            ids=catalogue.ids,
            categories=catalogue.categories,
            category_aliases=aliases,
            title_aliases=tuple(forms),
            alias_rows=np.asarray(rows, dtype=np.int64),
            titles=titles,
            years=item_years(catalogue),
            attributes=_attribute_values(catalogue),
            popularity=_counts(catalogue, histories),
        )

    @property
    def has_years(self) -> bool:
        """Whether most items carry a year (else year phrases are not read)."""
        return len(self.years) > 0 and float(np.mean(self.years > 0)) >= 0.5

    @property
    def year_span(self) -> tuple[int, int]:
        """The first and last year in the catalogue."""
        known = self.years[self.years > 0]
        return (int(known.min()), int(known.max())) if len(known) else (0, 0)

    def vocabulary(self) -> tuple[list[str], list[str]]:
        """The texts the version's language model embeds once per version: the category
        names and each item's display title (:func:`display_title`)."""
        return list(self.categories), [display_title(t) for t in self.titles]


def item_years(catalogue: Catalogue) -> np.ndarray:
    """``[items]`` the year of each item: a ``year`` attribute when the catalogue has one,
    else the year at the end of its title; 0 when unknown."""
    column: Sequence[tuple[str, ...]] | None = None
    if "year" in catalogue.attributes:
        column = catalogue.attribute_values("year")
    out = np.zeros(len(catalogue), dtype=np.int32)
    for row, item_id in enumerate(catalogue.ids):
        if column is not None and column[row] and column[row][0][:4].isdigit():
            out[row] = int(column[row][0][:4])
        else:
            out[row] = title_year(catalogue.title(item_id))
    return out


def _counts(catalogue: Catalogue, histories: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    if histories is None:
        return np.zeros(0, dtype=np.float32)
    index = catalogue.index
    rows = [index[i] for items in histories.values() for i in items if i in index]
    return np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(catalogue)).astype(
        np.float32
    )


def _attribute_values(catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """Attribute columns whose values a request may name (not years, not id-like columns)."""
    out: dict[str, dict[str, str]] = {}
    for name in catalogue.attributes:
        if name == "year":
            continue
        values = {v for vs in catalogue.attributes[name].values() for v in vs}
        if not values or len(values) > MAX_ATTRIBUTE_VALUES:
            continue
        forms = {normalise(v): v for v in sorted(values) if len(normalise(v)) >= 3}
        if forms:
            out[name] = forms
    return out


__all__ = [
    "Lexicon",
    "category_forms",
    "display_title",
    "item_years",
    "normalise",
    "plural",
    "title_forms",
    "title_year",
    "tokens",
]
