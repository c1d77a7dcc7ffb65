"""Offline evaluation of any method on the EVALUATION.md protocol, into one table.

A method is anything that scores every catalogue item for a batch of users given their
histories (item indices). Each row of the table holds HR@10/20, NDCG@10/20, MRR and the
beyond-accuracy measures of the top-10 lists (coverage, intra-list diversity over category
vectors, novelty, Gini of exposure, miscalibration, long-tail share).

Here: the protocol (:class:`Protocol`, :class:`EvalPart`), the metrics of a score matrix,
the table's rows (cold-start rows too) and the towers' vectors on the protocol's catalogue.
What is tuned on validation (EASE's lambda, CF options, the hybrid's weights) lives in
:mod:`llmrec.evaluation.tuning`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmrec.data.catalogue import Catalogue
from llmrec.data.splits import Split
from llmrec.evaluation.metrics import ranking_metrics, target_ranks, top_k_lists
from llmrec.modeling.baselines import ItemScorer, interaction_matrix
from llmrec.modeling.towers import Towers
from llmrec.ranking.measures import beyond_accuracy
from llmrec.ranking.rerank import category_distribution
from llmrec.ranking.slate import long_tail

ScoreFn = Callable[[list[list[int]], pd.DataFrame], np.ndarray]
"""(histories as item indices, the split part's rows) -> ``[users, items]`` scores."""


@dataclass(frozen=True)
class EvalPart:
    """One split part resolved against a catalogue.

    ``histories`` (what the user did before the target) are written into the user's text and
    masked in the ranking; models are fitted on ``fit_histories``, the same without the
    protocol's cold items. ``cold_rows``: the users whose target is a cold item.
    """

    name: str
    rows: pd.DataFrame
    histories: list[list[int]]
    targets: np.ndarray
    fit_histories: list[list[int]]
    cold_rows: np.ndarray

    def subset(self, rows: np.ndarray, name: str) -> EvalPart:
        """The part restricted to the users at positions ``rows``."""
        take = [int(r) for r in rows]
        return EvalPart(
            name,
            self.rows.iloc[take].reset_index(drop=True),
            [self.histories[r] for r in take],
            self.targets[take],
            [self.fit_histories[r] for r in take],
            np.zeros(0, dtype=np.int64),
        )

    def counts(self, num_items: int) -> np.ndarray:
        """Interactions per item in the part's histories (what its users were trained on)."""
        flat = [i for h in self.histories for i in h]
        return np.bincount(np.asarray(flat, dtype=np.int64), minlength=num_items)


def sample_users(part: EvalPart, max_users: int, seed: int = 0) -> EvalPart:
    """At most ``max_users`` of the part's users, drawn without replacement with ``seed``
    (every item stays in the ranking: users are sampled, never items)."""
    if max_users <= 0 or len(part.targets) <= max_users:
        return part
    rows = np.sort(np.random.default_rng(seed).choice(len(part.targets), max_users, False))
    sub = part.subset(rows, part.name)
    cold = np.flatnonzero(np.isin(rows, part.cold_rows))
    return EvalPart(sub.name, sub.rows, sub.histories, sub.targets, sub.fit_histories, cold)


@dataclass(frozen=True)
class Protocol:
    """A split, its catalogue, and what the beyond-accuracy measures need."""

    split: Split
    catalogue: Catalogue
    cold: frozenset[str] = frozenset()
    max_users: int = 0
    """Users scored per part (0: all), drawn with ``seed``; models are fitted on everyone."""
    seed: int = 0
    diversity_vectors: np.ndarray | None = None
    """``[items, f]`` vectors of the intra-list diversity measure; None: undefined."""
    diversity_basis: str = "undefined"
    """What ``diversity_vectors`` are (printed beside the table)."""

    @classmethod
    def create(
        cls,
        split: Split,
        catalogue: Catalogue,
        cold: frozenset[str] = frozenset(),
        max_users: int = 0,
        seed: int = 0,
    ) -> Protocol:
        """The protocol ranks against the items left after k-core filtering (as the
        reference implementation does), not the whole raw catalogue. ``cold`` items were
        held out of training entirely. ``max_users`` samples the users who are scored (a
        full ranking over a million items for every user is the protocol's cost). Diversity
        is measured on category vectors; a catalogue without categories leaves it undefined
        (see :meth:`with_item_vectors`)."""
        ranked = catalogue.subset(split.item_ids())
        if not ranked.categories:
            undefined = "undefined: the items have no categories"
            return cls(split, ranked, cold, max_users, seed, None, undefined)
        vectors = ranked.category_vectors()
        return cls(split, ranked, cold, max_users, seed, vectors, "category vectors")

    def scored(self, part: EvalPart) -> EvalPart:
        """The users of ``part`` that are scored (all, or the seeded sample)."""
        return sample_users(part, self.max_users, self.seed)

    def with_item_vectors(self, vectors: np.ndarray, name: str) -> Protocol:
        """This protocol measuring diversity on ``vectors`` (``[items, f]``, e.g. a model's
        item embeddings) when the catalogue has no categories; unchanged otherwise."""
        if self.diversity_vectors is not None:
            return self
        return dataclasses.replace(
            self, diversity_vectors=vectors, diversity_basis=f"item embeddings of {name}"
        )

    def part(self, name: str) -> EvalPart:
        rows = self.split.part(name)
        index = self.catalogue.index
        histories = [[index[i] for i in h] for h in rows["history"]]
        targets = np.array([index[t] for t in rows["target"]], dtype=np.int64)
        cold = {index[i] for i in self.cold if i in index}
        fit = [[i for i in h if i not in cold] for h in histories] if cold else histories
        cold_rows = np.array([i for i, t in enumerate(targets) if t in cold], dtype=np.int64)
        return EvalPart(name, rows, histories, targets, fit, cold_rows)

    def category_vectors(self) -> np.ndarray:
        return self.catalogue.category_vectors()


def list_metrics(
    protocol: Protocol,
    part: EvalPart,
    top: np.ndarray,
    history: np.ndarray | None = None,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Beyond-accuracy measures of top-k lists ``[users, k]`` of one split part: coverage,
    diversity, novelty, Gini, miscalibration and long-tail share (the tail and popularity
    from the part's histories; ``history``: their category distributions when known).
    ``users``: the positions in ``part`` of the lists in ``top`` when they are not every
    user's (popularity and the tail still come from the whole part)."""
    n = len(protocol.catalogue)
    counts = part.counts(n)
    genres = None
    if protocol.catalogue.categories:  # miscalibration is undefined without categories
        genres = category_distribution(protocol.category_vectors())
    histories = part.histories if users is None else [part.histories[u] for u in users]
    return beyond_accuracy(
        top,
        n,
        protocol.diversity_vectors,
        counts,
        len(part.histories),
        genres=genres,
        histories=histories if history is None else history,
        tail=long_tail(counts),
    )


def evaluate(protocol: Protocol, part: EvalPart, scores: np.ndarray) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of one score matrix on one split part."""
    ranks = target_ranks(scores, part.targets, part.histories)
    return ranking_metrics(ranks) | list_metrics(
        protocol, part, top_k_lists(scores, part.histories, 10)
    )


def fit_score(model: ItemScorer, part: EvalPart, num_items: int) -> np.ndarray:
    """Fit on the part's histories (train for val, train + val for test; cold items left
    out) and score every item for them."""
    x = interaction_matrix(part.fit_histories, num_items)
    return model.fit(x).score(interaction_matrix(part.histories, num_items))


MARKOV_LABEL = "markov-1"


def score_table(protocol: Protocol, scored: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per method and part (and ``test_cold`` rows under the cold-start protocol);
    ``scored`` holds the scores of the protocol's scored users (:meth:`Protocol.scored`)."""
    rows: list[dict[str, object]] = []
    for part_name in ("val", "test"):
        part = protocol.scored(protocol.part(part_name))
        for label, by_part in scored.items():
            scores = by_part[part_name]
            rows.append({"method": label, "split": part_name, **evaluate(protocol, part, scores)})
            if part_name == "test" and len(part.cold_rows):
                rows.append(cold_row(protocol, part, scores, label))
    return pd.DataFrame(rows)


def cold_row(
    protocol: Protocol, part: EvalPart, scores: np.ndarray, method: str
) -> dict[str, object]:
    """A table row over the users whose target is a cold item (split ``test_cold``), with
    ``cold_share``: the share of cold items in the *other* users' top 10 (a method that
    ranks every cold item first scores well on cold users and badly on everyone else)."""
    cold = part.subset(part.cold_rows, f"{part.name}_cold")
    warm = np.setdiff1d(np.arange(len(part.targets)), part.cold_rows)
    items = protocol.catalogue.index
    cold_items = np.array([items[i] for i in protocol.cold if i in items], dtype=np.int64)
    top = top_k_lists(scores[warm], [part.histories[u] for u in warm], 10)
    return {
        "method": method,
        "split": cold.name,
        **evaluate(protocol, cold, scores[part.cold_rows]),
        "cold_share": float(np.isin(top, cold_items).mean()) if len(warm) else 0.0,
    }


def cold_first_scores(protocol: Protocol, users: int, seed: int = 0) -> np.ndarray:
    """The cold-start yardstick: every cold item above every other item, each group in a
    random order (``[users, items]``)."""
    n = len(protocol.catalogue)
    scores = np.random.default_rng(seed).random((users, n)).astype(np.float32)
    items = protocol.catalogue.index
    scores[:, [items[i] for i in protocol.cold if i in items]] += 1.0
    return scores


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table with 4 decimals (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [_cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def user_vectors(towers: Towers, part: EvalPart) -> np.ndarray:
    """``[users, dim]`` user vectors of the part's users (their history and the request typed
    with the target, if any), whatever the version's design."""
    return towers.encode_users(
        [list(h) for h in part.rows["history"]], list(part.rows["target_query"])
    )


def catalogue_vectors(
    towers: Towers, bundle_ids: Sequence[str], vectors: np.ndarray, protocol: Protocol
) -> np.ndarray:
    """The protocol catalogue's item vectors (protocol order): a version's own vectors for
    the items it knows, its item tower on their text for the others."""
    rows = {item_id: row for row, item_id in enumerate(bundle_ids)}
    out = np.zeros((len(protocol.catalogue), vectors.shape[1]), dtype=np.float32)
    new = []
    for i, item_id in enumerate(protocol.catalogue.ids):
        if item_id in rows:
            out[i] = vectors[rows[item_id]]
        else:
            new.append(i)
    if new:
        items = [protocol.catalogue.items[protocol.catalogue.ids[i]] for i in new]
        out[new] = towers.encode_new_items(items)
    return out
