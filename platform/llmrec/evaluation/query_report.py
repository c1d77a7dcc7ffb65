"""How well a version understands queries: the labelled set of :mod:`queries` through the
serving path, with query parsing on and off.

Per slot (wanted categories, unwanted categories, items referred to, years): precision and
recall of what the parser read (``understood``), pooled over the queries. For the top 10:
the share of queries whose list holds no unwanted category, the share of listed items in a
wanted category or in the wanted years, whether the referred item was recognised (exact
titles and titles with a typo apart), kept out of the list, and how many listed items share
a category with it; each with parsing on and off, on the same queries and users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.evaluation.queries import LabelledQuery
from llmrec.registry.bundle import ModelBundle
from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
from llmrec.serving.settings import ServeSettings
from llmrec.understanding.query import Intent


@dataclass(frozen=True)
class Outcome:
    """One query answered with parsing on (``read``, ``top``) and off (``plain``)."""

    query: LabelledQuery
    read: Intent
    top: tuple[str, ...]
    plain: tuple[str, ...]


def run_queries(
    bundle: ModelBundle,
    queries: Sequence[LabelledQuery],
    seed: int = 0,
    threads: int = 2,
    boost: float | None = None,
    batch: int = 32,
) -> list[Outcome]:
    """Answer every query twice (parsed, not parsed); every other query comes with the
    recent history of a random user of the version's logs, the others alone."""
    settings = ServeSettings() if boost is None else ServeSettings(query_boost=boost)
    encoder = QueryEncoder(bundle, threads)
    builder = QueryBuilder(bundle, settings=settings, parser=encoder.parser())
    ranker = CandidateRanker(bundle, settings)
    rng = np.random.default_rng(seed)
    users = list(bundle.histories)
    out: list[Outcome] = []
    for start in range(0, len(queries), batch):
        part = queries[start : start + batch]
        bodies = []
        for n, q in enumerate(part):
            body: dict[str, object] = {"query": q.text, "k": 10}
            if (start + n) % 2:
                body["history"] = bundle.histories[users[int(rng.integers(len(users)))]][-50:]
            bodies.append(body)
        parsed = [builder.build(RecommendRequest.model_validate(b)) for b in bodies]
        plain = [
            builder.build(RecommendRequest.model_validate({**b, "parse_query": False}))
            for b in bodies
        ]
        both = [*parsed, *plain]
        answers = ranker.rank_many(encoder.encode(both), both)
        for n, q in enumerate(part):
            read = parsed[n].intent or Intent()
            top = tuple(i.item_id for i in answers[n])
            out.append(Outcome(q, read, top, tuple(i.item_id for i in answers[len(part) + n])))
    return out


def _prf(pairs: Sequence[tuple[set[object], set[object]]]) -> tuple[int, float, float]:
    tp = sum(len(g & p) for g, p in pairs)
    fp = sum(len(p - g) for g, p in pairs)
    fn = sum(len(g - p) for g, p in pairs)
    labelled = sum(1 for g, _ in pairs if g)
    return labelled, tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def slot_table(outcomes: Sequence[Outcome]) -> str:
    """Precision and recall of ``understood`` per slot (pooled over the queries)."""
    rows = ["| slot | queries labelled | precision | recall |", "|---|---|---|---|"]
    slots = {
        "categories (wanted)": lambda o: (set(o.query.categories), set(o.read.categories)),
        "without (unwanted)": lambda o: (set(o.query.without), set(o.read.without)),
        "like (items referred to)": lambda o: (set(o.query.like), set(o.read.like)),
        "years": lambda o: (
            {o.query.years} if o.query.years else set(),
            {o.read.years} if o.read.years else set(),
        ),
    }
    for name, get in slots.items():
        for label, keep in (("", lambda o: True), (", with a typo", lambda o: o.query.typo)):
            pairs = [get(o) for o in outcomes if keep(o)]
            n, p, r = _prf(pairs)
            if n:
                rows.append(f"| {name}{label} | {n} | {p:.3f} | {r:.3f} |")
    return "\n".join(rows)


def ranking_table(outcomes: Sequence[Outcome], bundle: ModelBundle) -> str:
    """The top 10 with parsing on and off: exclusions, wanted categories, years, referred
    items."""
    cat = bundle.catalogue
    from llmrec.understanding.lexicon import item_years

    years = dict(zip(cat.ids, item_years(cat).tolist(), strict=True))

    def cats(item: str) -> set[str]:
        return set(cat.items[item].categories)

    def mean(values: list[float]) -> str:
        return f"{np.mean(values):.3f}" if values else "n/a"

    rows = ["| top 10 | queries | parsing on | parsing off | target |", "|---|---|---|---|---|"]

    def add(name: str, keep: list[Outcome], measure: object, target: str) -> None:
        fn = measure  # (outcome, top) -> float
        on = [fn(o, o.top) for o in keep]  # type: ignore[operator]
        off = [fn(o, o.plain) for o in keep]  # type: ignore[operator]
        rows.append(f"| {name} | {len(keep)} | {mean(on)} | {mean(off)} | {target} |")

    excl = [o for o in outcomes if o.query.without]
    add(
        "lists without an unwanted category",
        excl,
        lambda o, top: float(not any(cats(i) & set(o.query.without) for i in top)),
        "1.0",
    )
    want = [o for o in outcomes if o.query.categories]
    add(
        "items in a wanted category",
        want,
        lambda o, top: (
            float(np.mean([bool(cats(i) & set(o.query.categories)) for i in top])) if top else 0.0
        ),
        ">= 0.9",
    )
    dated = [o for o in outcomes if o.query.years]
    add(
        "items in the wanted years",
        dated,
        lambda o, top: (
            float(np.mean([o.query.years[0] <= years[i] <= o.query.years[1] for i in top]))
            if top
            else 0.0
        ),
        "",
    )
    refer = [o for o in outcomes if o.query.like]
    for label, keep in (
        ("referred title recognised, exact", [o for o in refer if not o.query.typo]),
        ("referred title recognised, with a typo", [o for o in refer if o.query.typo]),
    ):
        target = ">= 0.95" if "exact" in label else ">= 0.8"
        on = [float(set(o.query.like) <= set(o.read.like)) for o in keep]
        rows.append(f"| {label} | {len(keep)} | {mean(on)} | 0 (not read) | {target} |")
    add(
        "lists without the referred item itself",
        refer,
        lambda o, top: float(not set(o.query.like) & set(top)),
        "1.0",
    )
    add(
        "items sharing a category with the referred item",
        refer,
        lambda o, top: (
            float(np.mean([bool(cats(i) & cats(o.query.like[0])) for i in top])) if top else 0.0
        ),
        "",
    )
    return "\n".join(rows)


__all__ = ["Outcome", "ranking_table", "run_queries", "slot_table"]
