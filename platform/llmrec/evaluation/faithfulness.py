"""Are explanations faithful? Remove what they name and see whether the item falls.

For each test user the version recommends its top item with an explanation (the serving
path: query encoder, ranker, explainer, the version's own hybrid). The top ``because`` item
is then removed from the user's history, the user is scored again (user tower and
collaborative term), and the recommended item's rank is read among the items the user has
not seen; the same for a random history item. An explanation is faithful when removing
what it names moves the item down much more than removing anything else: the target is a
mean rank drop at least twice the random one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.evaluation.offline import EvalPart, Protocol
from llmrec.registry.bundle import ModelBundle
from llmrec.serving import CandidateRanker, Query, QueryEncoder
from llmrec.understanding.explain import occlusion_targets


@dataclass(frozen=True)
class Faithfulness:
    """Rank drops of the recommended item (0 = still first) over the users explained."""

    users: int
    explained: np.ndarray
    random: np.ndarray
    skipped: int
    """Users whose top item had no ``because`` item (nothing in the history raised it)."""

    @property
    def ratio(self) -> float:
        """Mean drop when the explained item goes over the mean drop for a random one."""
        r = float(self.random.mean()) if len(self.random) else 0.0
        return float(self.explained.mean()) / r if r > 0 else float("inf")

    def table(self, name: str) -> str:
        """A markdown table of both removals."""
        rows = [
            "| removed from the history | users | mean rank drop | median | share moved down |",
            "|---|---|---|---|---|",
        ]
        for label, drops in (
            ("the top `because` item", self.explained),
            ("a random item", self.random),
        ):
            rows.append(
                f"| {label} | {len(drops)} | {drops.mean():.2f} | {np.median(drops):.1f} | "
                f"{float((drops > 0).mean()):.3f} |"
            )
        verdict = "met" if self.ratio >= 2 else "NOT met"
        return (
            f"Faithfulness of explanations, {name} (test users, top-1 item, full ranking "
            f"over unseen items; {self.skipped} users without a `because` item skipped)\n\n"
            + "\n".join(rows)
            + f"\n\nexplained / random: {self.ratio:.2f}x (target >= 2x: {verdict})"
        )


def faithfulness(
    bundle: ModelBundle,
    protocol: Protocol,
    part: EvalPart,
    seed: int = 0,
    threads: int = 2,
    batch: int = 32,
) -> Faithfulness:
    """Rank drops of each user's top item without the top ``because`` item and without a
    random history item (``part``: the scored users of the test split)."""
    encoder, ranker = QueryEncoder(bundle, threads), CandidateRanker(bundle)
    known = ranker.index
    cfg = bundle.config
    window = cfg.data.max_history if cfg.model.architecture == "text" else cfg.model.seq_len
    rng = np.random.default_rng(seed)
    ids = protocol.catalogue.ids
    explained, random, skipped = [], [], 0
    for start in range(0, len(part.histories), batch):
        histories = [
            tuple(ids[i] for i in h if ids[i] in known)
            for h in part.histories[start : start + batch]
        ]
        histories = [h for h in histories if len(h) >= 2]
        queries = [
            Query(h, None, h, 1, explain=True, occlude=occlusion_targets(h, window))
            for h in histories
        ]
        answers = ranker.rank_many(encoder.encode(queries), queries)
        removals: list[tuple[tuple[str, ...], str, str]] = []
        for h, items in zip(histories, answers, strict=True):
            why = items[0].explanation if items else None
            if why is None or not why.because:
                skipped += 1
                continue
            other = h[int(rng.integers(len(h)))]
            removals.append((h, items[0].item_id, why.because[0].item_id))
            removals.append((h, items[0].item_id, other))
        drops = _drops(encoder, ranker, removals)
        explained += drops[0::2]
        random += drops[1::2]
    return Faithfulness(
        len(explained), np.asarray(explained, float), np.asarray(random, float), skipped
    )


def _drops(
    encoder: QueryEncoder,
    ranker: CandidateRanker,
    removals: Sequence[tuple[tuple[str, ...], str, str]],
) -> list[float]:
    """For each (history, recommended item, removed item): the item's rank among the items
    outside the history once the removed item is gone, minus its rank before."""
    if not removals:
        return []
    index = ranker.index
    full = [Query(h, None, h, 1) for h, _, _ in removals]
    less = [Query(tuple(i for i in h if i != gone), None, h, 1) for h, _, gone in removals]
    vectors = encoder.encode([*full, *less])
    out = []
    for n, (h, item, gone) in enumerate(removals):
        seen = np.array([index[i] for i in h], dtype=np.int64)
        before = _rank(ranker, vectors[n], [index[i] for i in h], seen, index[item])
        rows = [index[i] for i in h if i != gone]
        after = _rank(ranker, vectors[len(removals) + n], rows, seen, index[item])
        out.append(float(after - before))
    return out


def _rank(
    ranker: CandidateRanker, vector: np.ndarray, history: list[int], seen: np.ndarray, row: int
) -> int:
    """How many unseen items score strictly higher than ``row``."""
    scores = ranker.hybrid.scores(vector[None, :], [history])[0]
    scores[seen] = -np.inf
    return int((scores > scores[row]).sum())


__all__ = ["Faithfulness", "faithfulness"]
