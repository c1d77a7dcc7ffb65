"""The describing queries of ``query_retrieval.py``: a query built from an item's own
title or text, synthetic live items in the shape of issue 22's cookbook, and the ranks,
recall and MRR of the described items."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from llmrec.understanding.phrases import NEGATIONS

STOP = frozenset(
    re.findall(
        r"\S+",
        "a an the of and or in on at to for with from by as is it its into about "
        "de la le les l el il der die das du des und",
    )
)
ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|El|Die|Das|Der)$", re.IGNORECASE)

COOKBOOK = (
    "Harbour Suppers",
    "A cookbook of coastal saffron stews and harbour-side fish suppers.",
    "Cooking",
    "coastal saffron stews and harbour fish suppers cookbook",
)
"""Issue 22's item (title, text, category) and its query, word for word."""

KINDS = {
    "cookbook": "Cooking",
    "field guide": "Nature",
    "travel memoir": "Travel",
    "photo book": "Photography",
    "walking guide": "Travel",
    "poetry collection": "Poetry",
    "craft manual": "Crafts",
    "picture book": "Children",
    "local history": "History",
    "song book": "Music",
}
PLACES = ["coastal", "alpine", "desert", "northern", "island", "river", "forest", "prairie"]
PLACES += ["volcanic", "arctic", "tropical", "highland", "lakeland", "moorland"]
TOPICS = [
    "saffron stews",
    "sourdough breads",
    "wild mushrooms",
    "lighthouse keepers",
    "migrating cranes",
    "copper kettles",
    "woollen blankets",
    "stone bridges",
    "honey cakes",
    "night trains",
    "salt marshes",
    "paper lanterns",
    "herring boats",
    "apple orchards",
    "clay pots",
    "stargazing nights",
]
SIDES = ["harbour", "market", "village", "mountain", "lake", "castle", "station", "garden"]
THINGS = [
    "fish suppers",
    "tea houses",
    "ferry crossings",
    "winter festivals",
    "bird walks",
    "weaving workshops",
    "folk dances",
    "bakeries",
    "picnics",
    "boat repairs",
]


@dataclass(frozen=True)
class Described:
    """An item and a query that describes it."""

    item_id: str
    query: str


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-side", ""))


def abridge(content: list[str], rng: np.random.Generator) -> list[str]:
    """With 4 or more words, a random 3/4 of them (rounded up); shuffled."""
    keep = content
    if len(content) >= 4:
        picked = rng.choice(len(content), math.ceil(0.75 * len(content)), replace=False)
        keep = [content[i] for i in sorted(picked)]
    return [keep[i] for i in rng.permutation(len(keep))]


def content_words(text: str) -> list[str]:
    """The words of ``text`` less stop words and negation words (shuffled, "tomorrow never
    dies action" would read "not Action" to the query reader: a description means no such
    thing); all its words when that leaves none."""
    found = words(text)
    return [w for w in found if w not in STOP and w not in NEGATIONS] or found


def title_query(title: str, categories: Sequence[str], rng: np.random.Generator) -> str:
    """The title's content words, abridged and shuffled, then the first category."""
    name = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    moved = ARTICLE.match(name)
    if moved:
        name = f"{moved.group(2)} {moved.group(1)}"
    content = content_words(name)
    out = abridge(content, rng)
    if categories:
        out.append(categories[0].lower())
    return " ".join(out)


def text_query(text: str, rng: np.random.Generator) -> str:
    return " ".join(abridge(content_words(text), rng))


def live_items(n: int, seed: int) -> list[tuple[str, str, str, str, str]]:
    """``(item_id, title, text, category, query)``: issue 22's cookbook, then ``n - 1``
    distinct synthetic items of the same shape."""
    rng = np.random.default_rng(seed)
    title, text, category, query = COOKBOOK
    out = [("live-cookbook", title, text, category, query)]
    seen = {text}
    kinds = list(KINDS)
    while len(out) < n:
        kind = kinds[int(rng.integers(len(kinds)))]
        place = PLACES[int(rng.integers(len(PLACES)))]
        topic = TOPICS[int(rng.integers(len(TOPICS)))]
        side = SIDES[int(rng.integers(len(SIDES)))]
        thing = THINGS[int(rng.integers(len(THINGS)))]
        text = f"A {kind} of {place} {topic} and {side}-side {thing}."
        if text in seen:
            continue
        seen.add(text)
        title = f"{side.title()} {thing.split()[-1].title()}"
        item_id = f"live-{len(out):03d}"
        out.append((item_id, title, text, KINDS[kind], text_query(text, rng)))
    return out


def rank_of(item_ids: Sequence[str], wanted: Collection[str]) -> int | None:
    """1-based rank of the first of ``wanted`` in ``item_ids``, None when absent."""
    for n, item_id in enumerate(item_ids, 1):
        if item_id in wanted:
            return n
    return None


def twins(ids: Sequence[str], texts: Sequence[str]) -> dict[str, frozenset[str]]:
    """Per item id, the ids whose text (what the item tower reads) is the same as its own,
    itself included: ml-100k lists some films twice under two ids, and no text model (nor
    anyone reading the text) can tell such items apart, so either answers for the other."""
    by_text: dict[str, set[str]] = {}
    for item_id, text in zip(ids, texts, strict=True):
        by_text.setdefault(text, set()).add(item_id)
    return {i: frozenset(by_text[t]) for i, t in zip(ids, texts, strict=True)}


def recall_mrr(ranks: Sequence[int | None], k: int = 10) -> list[object]:
    """Recall@k and MRR@k of the described items' ranks (None: not answered)."""
    hits = [r for r in ranks if r is not None and r <= k]
    return [len(hits) / max(len(ranks), 1), sum(1.0 / r for r in hits) / max(len(ranks), 1)]
