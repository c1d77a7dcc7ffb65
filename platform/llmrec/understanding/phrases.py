"""The phrase level of query understanding: negation scopes, reference triggers, candidate
phrases for the language model, the text left for it, and the intent the matches make.

English function words drive it (``no``, ``not``, ``without``, ``like``, ``similar to``);
year phrases (``from the 90s``, ``before 1980``) are read in
:mod:`llmrec.understanding.years`, the catalogue's own words matched in
:mod:`llmrec.understanding.intent`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from llmrec.understanding.query import Intent

Tokens = list[tuple[str, int, int]]
"""``(normalised token, start, end)`` as :func:`llmrec.understanding.lexicon.tokens` gives them."""


def word_set(text: str) -> frozenset[str]:
    """The words of ``text`` as a set (vocabularies written as one string)."""
    return frozenset(text.split())


PUNCT = frozenset(",;.!?:")

NEGATIONS = word_set(
    "no not without except excluding exclude nothing none never avoid minus neither "
    "nor non isn't aren't don't dont doesn't didn't won't hate dislike skip"
)
"""Words that open a negated clause."""
_FUZZY_NEGATIONS = ("without", "except", "nothing", "excluding", "neither", "dislike")
_SCOPE_END = word_set(
    "but just only instead rather though although however yet so with please maybe "
    "preferably ideally while whereas"
)
"""Words that close a negated clause (``nothing romantic, just a comedy``)."""
_NEW_CLAUSE = word_set("a an some something maybe also more lots plenty with")
"""After ``and``/``or``, these start a new, positive clause (``no horror and a comedy``)."""

TRIGGERS: tuple[tuple[str, ...], ...] = (
    ("in", "the", "style", "of"),
    ("in", "the", "vein", "of"),
    ("along", "the", "lines", "of"),
    ("reminds", "me", "of"),
    ("as", "good", "as"),
    ("similar", "to"),
    ("similar", "as"),
    ("such", "as"),
    ("same", "as"),
    ("fans", "of"),
    ("fan", "of"),
    ("reminiscent", "of"),
    ("comparable", "to"),
    ("resembling",),
    ("like",),
)
"""Phrases that introduce a catalogue item the request refers to."""
_LIKE_AS_VERB = word_set(
    "i we you they i'd we'd you'd would do don't dont doesn't didn't really also "
    "might may to will i'll we'll who kids people"
)
"""``like`` after these is a verb (``I'd like``, ``don't like``), not ``similar to``."""

STOPWORDS = word_set(
    "a an the and or but of to in on at for from with by about as is are was were be "
    "been it its this that these those i me my we our you your he she they them their "
    "some any something anything everything nothing stuff thing things kind sort type "
    "one ones movie movies film films show shows series book books title titles item "
    "items watch watching see read reading want wanted looking look find give "
    "recommend recommendation please maybe good great nice best really very more most "
    "less lot lots bit little just only also too so like similar than then there here "
    "what which who how when where why tonight today weekend night evening day time "
    "new old recent please thanks i'd i'm i've we'd you'd let's pls plz us get"
)
"""Words never matched against categories by embedding alone."""

TITLE_END = word_set(
    "but and or with without from in that which who not no except nothing please only "
    "just yet though for set about featuring starring"
)
"""Words after which a title referred to has likely ended (``like Heat but funnier``)."""


@dataclass(frozen=True)
class Match:
    """One thing a request names: ``kind`` (``category``, ``like``, ``attribute``,
    ``years``), its value (a category, an item id, ``attribute<TAB>value``, a year range)
    and the token positions it covers."""

    kind: str
    value: object
    positions: range


def _is_negation(word: str) -> bool:
    if word in NEGATIONS:
        return True
    return len(word) >= 6 and any(OSA.distance(word, w) <= 1 for w in _FUZZY_NEGATIONS)


def negated_positions(toks: Tokens) -> list[bool]:
    """Per token: whether it lies in a negated clause (the cue included).

    A cue opens a clause that runs to clause punctuation, a closing word (``but``,
    ``just``, ``with``...), or ``and``/``or`` that starts a new positive clause.
    ``anything but X`` negates X; ``nothing but X`` does not.
    """
    words = [t for t, _, _ in toks]
    out = [False] * len(words)
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        cue = _is_negation(w) and not (w in ("nothing", "none") and nxt == "but")
        cue = cue and not (w == "not" and nxt == "only")
        if w == "but" and i > 0 and words[i - 1] in ("anything", "everything", "all"):
            cue = True
        if not cue:
            i += 1
            continue
        out[i] = True
        j = i + 1
        while j < len(words):
            if words[j] in PUNCT or words[j] in _SCOPE_END:
                break
            fresh = j + 1 < len(words) and words[j + 1] in _NEW_CLAUSE
            if words[j] in ("and", "or", "&") and fresh:
                break
            out[j] = True
            j += 1
        i = j
    return out


def is_trigger(toks: Tokens, i: int) -> int:
    """How many tokens the reference trigger at ``i`` spans (0: none)."""
    words = [t for t, _, _ in toks[i : i + 4]]
    for trigger in TRIGGERS:
        n = len(trigger)
        if len(words) < n:
            continue
        head = words[:n]
        same = head == list(trigger) or (
            n >= 1
            and len(trigger[0]) >= 6
            and OSA.distance(head[0], trigger[0]) <= 1
            and head[1:] == list(trigger[1:])
        )
        if not same:
            continue
        if trigger == ("like",) and i > 0 and toks[i - 1][0] in _LIKE_AS_VERB:
            continue
        return n
    return 0


QUOTED = re.compile(
    r"[\"\u201c\u201d\u00ab\u00bb]([^\"\u201c\u201d\u00ab\u00bb]{2,200})[\"\u201c\u201d\u00ab\u00bb]"
)


def reference_spans(toks: Tokens, used: list[bool], query: str) -> list[tuple[int, int]]:
    """Token ranges that may name catalogue items: after a trigger (``like <...>``) or
    between quotes."""
    out = []
    for m in QUOTED.finditer(query):
        inside = [i for i, (_, a, b) in enumerate(toks) if a >= m.start(1) and b <= m.end(1)]
        if inside and not any(used[i] for i in inside):
            out.append((inside[0], inside[-1] + 1))
    i = 0
    while i < len(toks):
        n = is_trigger(toks, i) if not used[i] else 0
        if not n:
            i += 1
            continue
        start = stop = i + n
        while stop < len(toks) and stop - start < 14 and not used[stop]:
            if toks[stop][0] in PUNCT and not inside_title(toks, stop):
                break
            stop += 1
        if stop > start and not any(a <= start < b for a, b in out):
            out.append((start, stop))
        i = max(stop, i + 1)
    return out


def inside_title(toks: Tokens, i: int) -> bool:
    """Whether punctuation token ``i`` can belong to a title: a colon (``Star Trek: The
    Wrath of Khan``) or the full stop of an abbreviation (``The People vs. Larry Flynt``)."""
    word = toks[i][0]
    if word == ":":
        return True
    if word != "." or i == 0 or i + 1 >= len(toks):
        return False
    previous = toks[i - 1]
    return previous[2] == toks[i][1] and len(previous[0]) <= 3 and previous[0].isalpha()


def candidate_phrases(toks: Tokens, used: list[bool]) -> list[tuple[str, range]]:
    """Phrases the language model compares with category names: content bigrams, then
    content words, of the tokens nothing has matched yet."""
    content = [
        (not used[i]) and t not in STOPWORDS and t not in PUNCT and re.search(r"[^\W\d]", t)
        for i, (t, _, _) in enumerate(toks)
    ]
    out = []
    for i in range(len(toks) - 1):
        if content[i] and content[i + 1]:
            out.append((f"{toks[i][0]} {toks[i + 1][0]}", range(i, i + 2)))
    for i, (t, _, _) in enumerate(toks):
        if content[i] and len(t) >= 3:
            out.append((t, range(i, i + 1)))
    return out


_CONNECTORS = word_set("but and or with from in of the a an for")
_LEADING = _CONNECTORS - {"the", "a", "an"}


def clause_text(query: str, toks: Tokens, matches: list[Match], negated: list[bool]) -> str | None:
    """The request less its negated clauses and year phrases: what the language model
    reads (None when nothing is left)."""
    drop = list(negated)
    for m in matches:
        if m.kind == "years":
            for i in m.positions:
                drop[i] = True
    keep = [i for i in range(len(toks)) if not drop[i]]
    if len(keep) == len(toks):
        text = query.strip()
        return text if re.search(r"\w", text) else None
    while keep and (toks[keep[0]][0] in PUNCT or toks[keep[0]][0] in _LEADING):
        keep.pop(0)
    while keep and (toks[keep[-1]][0] in PUNCT or toks[keep[-1]][0] in _CONNECTORS):
        keep.pop()
    pieces: list[str] = []
    run_start = None
    for n, i in enumerate(keep):
        if run_start is None:
            run_start = i
        nxt = keep[n + 1] if n + 1 < len(keep) else None
        if nxt != i + 1:
            pieces.append(query[toks[run_start][1] : toks[i][2]])
            run_start = None
    text = " ".join(p.strip(" \t\n,;:") for p in pieces).strip()
    return text if re.search(r"\w", text) else None


def common_prefix(a: str, b: str) -> int:
    """The length of the start ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def assemble(query: str, toks: Tokens, matches: list[Match], negated: list[bool]) -> Intent:
    """The intent of the matches: each wanted or unwanted by the negation around it."""
    want: dict[str, list[object]] = {"category": [], "like": [], "attribute": [], "years": []}
    avoid: dict[str, list[object]] = {"category": [], "like": [], "attribute": [], "years": []}
    for m in sorted(matches, key=lambda m: m.positions.start):
        neg = any(negated[i] for i in m.positions)
        (avoid if neg else want)[m.kind].append(m.value)
    without = tuple(dict.fromkeys(str(c) for c in avoid["category"]))
    categories = tuple(
        c for c in dict.fromkeys(str(c) for c in want["category"]) if c not in without
    )
    return Intent(
        categories=categories,
        without=without,
        like=tuple(dict.fromkeys(str(i) for i in want["like"])),
        years=_span(want["years"]),
        without_years=_span(avoid["years"]),
        attributes=_pairs(want["attribute"]),
        without_attributes=_pairs(avoid["attribute"]),
        text=clause_text(query, toks, matches, negated),
    )


def _span(values: list[object]) -> tuple[int, int] | None:
    ranges = [v for v in values if isinstance(v, tuple)]
    if not ranges:
        return None
    return (min(r[0] for r in ranges), max(r[1] for r in ranges))


def _pairs(values: list[object]) -> tuple[tuple[str, str], ...]:
    pairs = [tuple(str(v).split("\t", 1)) for v in values]
    return tuple(dict.fromkeys((p[0], p[1]) for p in pairs if len(p) == 2))


__all__ = [
    "NEGATIONS",
    "STOPWORDS",
    "TITLE_END",
    "TRIGGERS",
    "Match",
    "Tokens",
    "assemble",
    "candidate_phrases",
    "clause_text",
    "common_prefix",
    "inside_title",
    "is_trigger",
    "negated_positions",
    "reference_spans",
    "word_set",
]
