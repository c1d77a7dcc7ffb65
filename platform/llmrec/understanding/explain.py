"""Why an item is recommended, computed from the score that ranked it.

- ``parts``: the hybrid's terms for the item (each standardised score times its weight,
  plus the query's boost); they add up to the item's score. ``text`` is the text-match
  term (a typed request against the item's text, by the frozen base model): it reads no
  history, so no history item is behind it.
- ``because``: the history items that raised the item's score most, each with its share.
  The model term is read by occlusion: the user is encoded again without each history item
  the user tower reads (all variants in the same encoder call as the request itself:
  :func:`llmrec.understanding.query.user_inputs`), and the drop of the item's model term is
  that history item's contribution. The collaborative term is split exactly by the CF
  model's item-item weights (EASE, sparse EASE, ItemKNN: what history item ``a`` adds to
  item ``j`` is ``B[a, j]``, centred and scaled like the user's whole row); for ALS factors
  it is read by occlusion of the user factor. A history item's share is its contribution
  over the sum of all positive contributions.
- ``matched``: the query's constraints the item meets; ``text``: one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from llmrec.api.schemas import (
    BecauseItem,
    Explanation,
    RecommendedItem,
    ScoreParts,
    Understood,
)
from llmrec.data.catalogue import Catalogue
from llmrec.modeling.cf import FactorCF, ItemItemCF
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.weights import HybridWeights
from llmrec.understanding.constraints import Constraints

if TYPE_CHECKING:
    from llmrec.understanding.query import Query

MAX_BECAUSE = 3


def occlusion_targets(history: Sequence[str], window: int) -> tuple[str, ...]:
    """The distinct items among the last ``window`` of ``history`` (most recent first): the
    items whose removal can change what the user tower reads."""
    return tuple(dict.fromkeys(reversed(list(history)[-window:]))) if window > 0 else ()


class Explainer:
    """Explanations over one version's hybrid scorer and catalogue.

    Args:
        hybrid: The scorer the ranker ranks with.
        catalogue: The version's catalogue (titles, rows).
        constraints: What the query's intent is checked against.
    """

    def __init__(
        self, hybrid: HybridScorer, catalogue: Catalogue, constraints: Constraints
    ) -> None:
        self.hybrid = hybrid
        self.catalogue = catalogue
        self.constraints = constraints
        self._row_means: np.ndarray | None = None

    def explain(
        self, block: np.ndarray, q: Query, rows: np.ndarray, boosts: np.ndarray | None
    ) -> list[Explanation]:
        """One explanation per ranked row.

        Args:
            block: ``[1 + len(q.occlude), dim]`` the user vector, then the vectors without
                each of ``q.occlude`` (in that order).
            q: The query.
            rows: Catalogue rows of the answered items.
            boosts: The query's boost of each answered item (None: no boost).
        """
        parts = self.parts(block[:1], q, rows, boosts)
        contributions = self.contributions(block, q, rows)
        seeds = set(q.intent.like) if q.intent is not None else set()
        out = []
        for j, row in enumerate(rows):
            because = _because(contributions, j, seeds, self.catalogue)
            matched = self.constraints.matched(q.intent, int(row))
            p = ScoreParts(**{k: float(v[j]) for k, v in parts.items()})
            out.append(
                Explanation(
                    parts=p,
                    because=because,
                    matched=matched,
                    text=sentence(because, matched, p, q.request is not None),
                )
            )
        return out

    def parts(
        self, vector: np.ndarray, q: Query, rows: np.ndarray, boosts: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """The terms of the scores of ``rows``, as :meth:`HybridScorer.scores` adds them."""
        h, w = self.hybrid, _weights(self.hybrid, q)
        zeros = np.zeros(len(rows), dtype=np.float32)
        history = [self._history_rows(q)]
        return {
            "llm": w.llm * h.llm_part(vector, rows)[0],
            "cf": w.cf * h.cf_part(history, rows)[0] if w.cf and h.cf is not None else zeros,
            "popularity": w.popularity * h.popularity[rows]
            if w.popularity and h.popularity is not None
            else zeros,
            "transition": w.transition * h.transition_part(history, rows)[0]
            if w.transition and h.transitions is not None
            else zeros,
            "text": w.text * h.text_part(vector, rows, history)[0]
            if w.text and h.item_text is not None
            else zeros,
            "query": zeros if boosts is None else np.asarray(boosts, dtype=np.float32),
        }

    def contributions(self, block: np.ndarray, q: Query, rows: np.ndarray) -> dict[str, np.ndarray]:
        """History item id -> ``[len(rows)]`` what it adds to each row's score (model term
        by occlusion, collaborative term by the CF weights or occlusion)."""
        h, w = self.hybrid, _weights(self.hybrid, q)
        out: dict[str, np.ndarray] = {}
        if len(block) > 1 and w.llm:
            scores = h.llm_part(block, rows)
            for n, item in enumerate(q.occlude):
                out[item] = w.llm * (scores[0] - scores[n + 1])
        if w.cf and h.cf is not None:
            ids, cf = self._cf_contributions(q, rows)
            for item, c in zip(ids, cf, strict=True):
                out[item] = out.get(item, 0.0) + w.cf * c
        history = self._history_rows(q)
        if w.transition and h.transitions is not None and history:
            last = self.catalogue.ids[history[-1]]  # the transition term is all its doing
            part = w.transition * h.transition_part([history], rows)[0]
            out[last] = out.get(last, 0.0) + part
        return out

    def _history_rows(self, q: Query) -> list[int]:
        index = self.catalogue.index
        return [index[i] for i in q.history if i in index]

    def _cf_contributions(self, q: Query, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Per history item the CF term's share of each row's score. Items added live
        (rows past the CF model's) have no CF part, as in :meth:`HybridScorer.cf_part`:
        they neither contribute nor receive."""
        cf = self.hybrid.cf
        if cf is None:
            return [], np.zeros((0, len(rows)), dtype=np.float32)
        index, n = self.catalogue.index, cf.num_items
        ids = [i for i in dict.fromkeys(q.history) if i in index and index[i] < n]
        hist = np.array([index[i] for i in ids], dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        trained = rows < n
        out = np.zeros((len(hist), len(rows)), dtype=np.float32)
        if len(hist) == 0 or not trained.any():
            return ids, out
        if isinstance(cf, ItemItemCF):
            out[:, trained] = self._item_item(cf, hist, rows[trained])
        elif isinstance(cf, FactorCF):
            variants = [np.delete(hist, k).tolist() for k in range(len(hist))]
            full = cf.part([hist.tolist()], rows[trained])[0]
            out[:, trained] = full[None, :] - cf.part(variants, rows[trained])
        else:
            return [], np.zeros((0, len(rows)), dtype=np.float32)
        return ids, out

    def _item_item(self, cf: ItemItemCF, hist: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[len(hist), len(rows)]``: ``(B[a, j] - mean_j' B[a, j']) / std(user's row)``;
        the rows add up to the user's standardised CF scores exactly."""
        weights, n = cf.weights, cf.num_items
        if self._row_means is None:
            sums = np.asarray(weights.sum(axis=1)).ravel()
            self._row_means = (sums / n).astype(np.float64)
        if isinstance(weights, np.ndarray):
            picked = weights[hist][:, rows].astype(np.float64)
            raw = weights[hist].astype(np.float64).sum(axis=0)
            std = float(raw.std())
        else:
            sub = sp.csr_matrix(weights[hist])
            picked = sub[:, rows].toarray().astype(np.float64)
            total = np.asarray(sub.sum(axis=0)).ravel().astype(np.float64)
            std = float(np.sqrt(max((total**2).sum() / n - (total.sum() / n) ** 2, 0.0)))
        if std <= 1e-12:
            return np.zeros((len(hist), len(rows)), dtype=np.float32)
        return ((picked - self._row_means[hist][:, None]) / std).astype(np.float32)


def _weights(hybrid: HybridScorer, q: Query) -> HybridWeights:
    """The weights the ranker scored ``q`` with: a typed request gets the request weights."""
    return hybrid.request_weights if q.request is not None else hybrid.weights


def _because(
    contributions: dict[str, np.ndarray], j: int, seeds: set[str], catalogue: Catalogue
) -> list[BecauseItem]:
    """The largest positive contributions to row ``j``, with their shares."""
    values = {item: float(c[j]) for item, c in contributions.items()}
    positive = {item: v for item, v in values.items() if v > 0}
    total = sum(positive.values())
    top = sorted(positive.items(), key=lambda kv: -kv[1])[:MAX_BECAUSE]
    return [
        BecauseItem(
            item_id=item,
            title=catalogue.title(item),
            share=round(v / total, 4),
            source="query" if item in seeds else "history",
        )
        for item, v in top
    ]


def _names(titles: list[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def sentence(
    because: list[BecauseItem], matched: list[str], parts: ScoreParts, has_request: bool
) -> str:
    """One readable sentence: the items behind the score, the constraints met, or else the
    term that weighs most."""
    asked = [b.title for b in because if b.source == "query"]
    watched = [b.title for b in because if b.source == "history"]
    clauses = []
    if asked:
        clauses.append(f"you asked for something like {_names(asked)}")
    if watched:
        clauses.append(f"you watched {_names(watched)}")
    out = "Because " + " and ".join(clauses) if clauses else ""
    if matched:
        meets = "matches " + ", ".join(matched)
        out = f"{out}; {meets}" if out else meets[0].upper() + meets[1:]
    if not out:
        terms = {
            "llm": parts.llm,
            "cf": parts.cf,
            "popularity": parts.popularity,
            "transition": parts.transition,
            "text": parts.text,
        }
        top = max(terms, key=lambda k: terms[k])
        out = {
            "llm": "Close to what you asked for" if has_request else "Close to your taste",
            "cf": "Often chosen by people with a history like yours",
            "popularity": "Popular with other users",
            "transition": "Often chosen right after your last item",
            "text": "Its description matches what you asked for",
        }[top]
    return out + "."


def answer_table(items: Sequence[RecommendedItem], read: Understood | None = None) -> str:
    """An explained answer for people: how the query was read, then one row per item (its
    score, the parts, the history items behind it, the constraints met) and its sentence."""
    lines = []
    if read is not None:
        shown = read.model_dump(exclude_none=True, exclude_defaults=False)
        shown["like"] = [r["title"] for r in shown["like"]]
        kept = {k: v for k, v in shown.items() if v not in ([], {}, None)}
        lines += [f"understood: {kept}", ""]
    lines.append(
        "| # | item | score | llm | cf | popularity | transition | text | query | because "
        "| matched |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, item in enumerate(items, 1):
        why = item.explanation
        if why is None:
            lines.append(f"| {n} | {item.title} | {item.score:.3f} | | | | | | | | |")
            continue
        p = why.parts
        because = "; ".join(f"{b.title} {b.share:.0%}" for b in why.because)
        lines.append(
            f"| {n} | {item.title} | {item.score:.3f} | {p.llm:.3f} | {p.cf:.3f} | "
            f"{p.popularity:.3f} | {p.transition:.3f} | {p.text:.3f} | {p.query:.3f} | {because} | "
            f"{', '.join(why.matched)} |"
        )
    lines.append("")
    lines += [
        f"{n}. {i.title}: {i.explanation.text}" for n, i in enumerate(items, 1) if i.explanation
    ]
    return "\n".join(lines)


__all__ = ["MAX_BECAUSE", "Explainer", "answer_table", "occlusion_targets", "sentence"]
