"""Query understanding: a free-text request read into constraints the ranking applies.

``"a mystery from the 90s but nothing romantic, like Heat"`` becomes an :class:`Intent`:
wanted categories (``Mystery``), unwanted ones (``Romance``: a hard filter), a year range
(1990-1999), items referred to (``Heat (1995)``: a seed added to the history the user tower
reads, and never recommended) and the text left for the language model (the request less
its negated clauses and year phrases).

Matching (:class:`IntentParser`) combines the catalogue's own words (:mod:`lexicon`: exact
forms, typos within an edit or two by rapidfuzz's OSA distance, fuzzy titles by
``fuzz.ratio``) with the version's language model: embeddings of the catalogue's category
names and titles (computed once per version) against embeddings of the request's phrases,
so that ``funny`` finds ``Comedy`` and ``scary`` finds ``Horror``. Negation (``no``, ``not``,
``without``, ``except``, ``nothing``...) covers the clause it opens.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from llmrec.understanding.lexicon import Lexicon, tokens
from llmrec.understanding.phrases import (
    PUNCT,
    TITLE_END,
    Match,
    Tokens,
    assemble,
    candidate_phrases,
    common_prefix,
    inside_title,
    is_trigger,
    negated_positions,
    reference_spans,
)
from llmrec.understanding.query import Intent
from llmrec.understanding.years import bracketed_year, year_matches

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> ``[len(texts), dim]`` embeddings by the version's language model."""


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds of the matching (defaults checked on a validation query set, see
    docs/explanations.md)."""

    embed_min: float = 0.45
    """Lowest cosine between a phrase and a category name for an embedding-only match."""
    embed_margin: float = 0.08
    """How far the best category must lead the second for an embedding-only match."""
    stem_min: float = 0.4
    """Cosine that confirms a shared-stem match (``romantic`` ~ ``Romance``)."""
    title_min: float = 85.0
    """``fuzz.ratio`` (0-100) that recognises a title on words alone."""
    title_with_embedding: float = 70.0
    """``fuzz.ratio`` that recognises a title when the embeddings agree (cosine >= 0.8)."""
    max_phrases: int = 16
    """Phrases of one request embedded at most (beyond: words only)."""


@dataclass
class IntentParser:
    """Reads requests against one version's catalogue.

    Args:
        lexicon: The catalogue's vocabulary.
        category_vectors: ``[categories, dim]`` the language model's embeddings of the
            category names (None: words only).
        title_vectors: ``[items, dim]`` embeddings of the display titles (None: words only).
        embed: Embeds phrases on demand (offline use); in serving the ingress fills the
            phrase cache from the encoder (:meth:`missing`, :meth:`remember`) instead.
        settings: The matching thresholds.
        cache_size: Phrase embeddings kept (most recently used).
    """

    lexicon: Lexicon
    category_vectors: np.ndarray | None = None
    title_vectors: np.ndarray | None = None
    embed: Embed | None = None
    settings: MatchSettings = field(default_factory=MatchSettings)
    cache_size: int = 10_000

    def __post_init__(self) -> None:
        self.category_vectors = _unit(self.category_vectors)
        self.title_vectors = _unit(self.title_vectors)
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._wanted: list[str] = []
        self._aliases = list(self.lexicon.category_aliases)

    @classmethod
    def build(cls, lexicon: Lexicon, embed: Embed | None, max_titles: int = 20_000) -> IntentParser:
        """A parser whose vocabulary embeddings are computed with ``embed`` (titles only up
        to ``max_titles`` items: a larger catalogue matches titles by words alone)."""
        if embed is None:
            return cls(lexicon)
        categories, titles = lexicon.vocabulary()
        cats = embed(categories) if len(categories) >= 2 else None
        tits = embed(titles) if 0 < len(titles) <= max_titles else None
        return cls(lexicon, cats, tits, embed)

    @property
    def uses_model(self) -> bool:
        return self.category_vectors is not None or self.title_vectors is not None

    # -- the phrase cache -------------------------------------------------------------------

    def missing(self, query: str) -> list[str]:
        """The phrases of ``query`` whose embeddings parsing would use and the cache lacks."""
        if not self.uses_model:
            return []
        self._wanted = []
        self._parse(query)
        return list(dict.fromkeys(self._wanted))[: self.settings.max_phrases]

    def remember(self, phrases: Sequence[str], vectors: np.ndarray) -> None:
        """Keep the embeddings of ``phrases`` (rows of ``vectors``)."""
        unit = _unit(np.asarray(vectors, dtype=np.float32))
        assert unit is not None
        for phrase, vector in zip(phrases, unit, strict=True):
            self.cache[phrase] = vector
            self.cache.move_to_end(phrase)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _vector(self, phrase: str) -> np.ndarray | None:
        if phrase in self.cache:
            self.cache.move_to_end(phrase)
            return self.cache[phrase]
        self._wanted.append(phrase)
        return None

    # -- parsing ----------------------------------------------------------------------------

    def parse(self, query: str) -> Intent:
        """The intent of ``query`` (embedding the phrases it needs first when the parser has
        an ``embed`` function; otherwise with what the cache holds)."""
        if self.embed is not None:
            needed = self.missing(query)
            if needed:
                self.remember(needed, self.embed(needed))
        return self._parse(query)

    def _parse(self, query: str) -> Intent:
        toks: Tokens = tokens(query)
        used = [False] * len(toks)
        matches: list[Match] = []
        matches += self._references(query, toks, used)  # before years: "like 2001: A ..."
        if self.lexicon.has_years:
            matches += year_matches(toks, used, self.lexicon.year_span, self.lexicon.years)
        matches += self._attributes(toks, used)
        matches += self._categories(toks, used)
        negated = negated_positions(toks)
        return assemble(query, toks, matches, negated)

    def _references(self, query: str, toks: Tokens, used: list[bool]) -> list[Match]:
        out = []
        for start, stop in sorted(reference_spans(toks, used, query)):
            pos = start
            while pos < stop:
                found = self._title_at(toks, pos, stop)
                if found is None:
                    break
                row, end = found
                out.append(Match("like", self.lexicon.ids[row], range(pos, end)))
                for i in range(pos, end):
                    used[i] = True
                pos = end
                while pos < stop and toks[pos][0] in ("and", "or", ",", "&"):
                    pos += 1  # "like Heat and Casino": the next title needs no trigger
        return out

    def _title_at(self, toks: Tokens, start: int, stop: int) -> tuple[int, int] | None:
        """The best title starting at token ``start`` (and the token after it), if any."""
        lex = self.lexicon
        best: tuple[float, int, int, list[tuple[str, float, int]]] | None = None
        for end in range(start + 1, min(stop, start + 12) + 1):
            if toks[end - 1][0] in "()" or (
                toks[end - 1][0] in PUNCT and not inside_title(toks, end - 1)
            ):
                break
            text = " ".join(t for t, _, _ in toks[start:end])
            found = process.extract(
                text, lex.title_aliases, scorer=fuzz.ratio, score_cutoff=60, limit=5
            )
            if not found:
                continue
            boundary = end >= stop or toks[end][0] in TITLE_END or is_trigger(toks, end)
            key = found[0][1] + (3.0 if boundary else 0.0)
            if best is None or key > best[0]:
                best = (key, end, start, found)
        if best is None:
            return None
        _, end, _, found = best
        text = " ".join(t for t, _, _ in toks[start:end])
        year, end = bracketed_year(toks, end)
        row = self._choose_title(text, found, year)
        return None if row is None else (row, end)

    def _choose_title(
        self, text: str, found: list[tuple[str, float, int]], year: int
    ) -> int | None:
        """The item among the lexical candidates (alias, score, alias index): the words'
        score (or one slip in a short title, two in a long one), the embeddings' agreement,
        a year given in parentheses, and popularity among equals decide."""
        lex, s = self.lexicon, self.settings
        rows = [int(lex.alias_rows[i]) for _, _, i in found]
        scores = np.array([score for _, score, _ in found], dtype=np.float32)
        slips = np.array([OSA.distance(text, alias) for alias, _, _ in found])
        allowed = np.array([2 if len(a) >= 10 else 1 if len(a) >= 5 else 0 for a, _, _ in found])
        cos = np.zeros(len(rows), dtype=np.float32)
        if self.title_vectors is not None and scores.max() < 100.0:
            vec = self._vector(text)
            if vec is not None:
                cos = self.title_vectors[rows] @ vec
        if year:
            scores = scores + np.where(lex.years[rows] == year, 5.0, 0.0).astype(np.float32)
        ok = (scores >= s.title_min) | (slips <= allowed)
        ok |= (scores >= s.title_with_embedding) & (cos >= 0.8)
        if not ok.any():
            return None
        known = 0.01 * np.log1p(lex.popularity[rows]) if len(lex.popularity) else 0.0
        combined = np.where(ok, scores + 20.0 * cos + known, -np.inf)
        return rows[int(np.argmax(combined))]

    def _attributes(self, toks: Tokens, used: list[bool]) -> list[Match]:
        out = []
        for name, values in self.lexicon.attributes.items():
            forms = list(values)
            lengths = sorted({len(f.split()) for f in forms}, reverse=True)
            for n in lengths:
                for start in range(0, len(toks) - n + 1):
                    if any(used[start : start + n]):
                        continue
                    text = " ".join(t for t, _, _ in toks[start : start + n])
                    hit = values.get(text)
                    if hit is None and len(text) >= 6:
                        near = process.extractOne(text, forms, scorer=fuzz.ratio, score_cutoff=90)
                        hit = values[near[0]] if near else None
                    if hit is not None:
                        out.append(Match("attribute", f"{name}\t{hit}", range(start, start + n)))
                        for i in range(start, start + n):
                            used[i] = True
        return out

    def _categories(self, toks: Tokens, used: list[bool]) -> list[Match]:
        """Longest phrases first: exact forms, typos, a shared stem confirmed by the model,
        then the model alone."""
        out = []
        for n in (3, 2, 1):
            for start in range(0, len(toks) - n + 1):
                if any(used[start : start + n]):
                    continue
                text = " ".join(t for t, _, _ in toks[start : start + n])
                name = self._lexical_category(text)
                if name is not None:
                    out.append(Match("category", name, range(start, start + n)))
                    for i in range(start, start + n):
                        used[i] = True
        if self.category_vectors is not None:
            out += self._embedded_categories(toks, used)
        return out

    def _lexical_category(self, text: str) -> str | None:
        aliases = self.lexicon.category_aliases
        if text in aliases:
            return aliases[text]
        if len(text) < 4 or not re.search(r"[^\W\d]", text):
            return None
        near = process.extractOne(text, self._aliases, scorer=OSA.distance, score_cutoff=2)
        if near is not None:
            alias, dist, _ = near
            if dist <= (2 if len(alias) >= 8 else 1 if len(alias) >= 5 else 0):
                return aliases[alias]
        if " " in text:
            return None
        return self._stem_category(text)

    def _stem_category(self, word: str) -> str | None:
        """``romantic`` ~ ``romance``: a shared start of >= 5 letters covering most of the
        category's form, confirmed by the language model when the parser has one."""
        for alias, name in self.lexicon.category_aliases.items():
            if " " in alias:
                continue
            common = common_prefix(word, alias)
            if common >= 5 and common >= 0.65 * len(alias) and abs(len(word) - len(alias)) <= 5:
                if self.category_vectors is None:
                    return name
                vec = self._vector(word)
                j = self.lexicon.categories.index(name)
                if (
                    vec is not None
                    and float(self.category_vectors[j] @ vec) >= self.settings.stem_min
                ):
                    return name
        return None

    def _embedded_categories(self, toks: Tokens, used: list[bool]) -> list[Match]:
        assert self.category_vectors is not None
        s = self.settings
        out = []
        for phrase, positions in candidate_phrases(toks, used)[: s.max_phrases]:
            if any(used[i] for i in positions):
                continue
            vec = self._vector(phrase)
            if vec is None:
                continue
            sims = self.category_vectors @ vec
            order = np.argsort(-sims)
            best = float(sims[order[0]])
            second = float(sims[order[1]]) if len(order) > 1 else -1.0
            if best >= s.embed_min and best - second >= s.embed_margin:
                out.append(Match("category", self.lexicon.categories[order[0]], positions))
                for i in positions:
                    used[i] = True
        return out


def _unit(vectors: np.ndarray | None) -> np.ndarray | None:
    if vectors is None:
        return None
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


__all__ = ["Embed", "IntentParser", "MatchSettings"]
