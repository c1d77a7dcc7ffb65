"""Exploration: a share of each list for items the log has little evidence for.

A new item is recommended from its text; when the text undersells it, it is never shown,
never clicked, and no update learns that users like it. Exploration reserves a share of
each list (``explore``: 0.1 of a 10-item list is one slot; 0.15 is one slot, or two with
probability 0.5) for items with little evidence. The candidates are the model's: its wider
list (the ranker is asked for ``k + pool`` items) and, so that an item the model ranks in
the middle still gets its chance, the ``unproven`` best-scored (for this user) of the items
the version has few training interactions with (items added live have none; the ranker adds
them after the wide list). An item's evidence is its impressions plus ``trained_worth``
impressions per training interaction of the version (an item trained on with many
interactions is not unproven); candidates with ``max_impressions`` of it or more are not
explored. Among the others, the slots go to the best draws of a Thompson sampler on each
item's click rate per look:

- the prior is the model's opinion: a Beta with mean ``2 * base * sigmoid(z)`` (``z``: the
  item's score standardised over the wide list; ``base``: the log's click rate per look
  over every item), worth ``prior_strength`` looks plus ``trained_worth`` per training
  interaction (the model's opinion of an item it was trained on is surer than of one it
  knows from its text alone, so the latter's draws spread wider);
- the evidence is what the impression log holds of the item: its clicks, and its *looks*,
  the impressions weighted by how often a position is looked at (``1 / log2(position + 1)``,
  the discount of DCG and of the simulated users), so that an item shown at the bottom is
  not judged as one shown at the top.

An item shown often and never clicked draws low and stops being shown; an item that earns
clicks keeps drawing high and keeps its slot until it has enough impressions (then the
model, updated on the feedback, decides). The draws are inverse-CDF transforms of uniforms
seeded by the request's key (:func:`explore_key`: the user or session and the request's
content), so a reload draws the same numbers and, while the evidence holds, shows the same
list. The explored items take positions drawn in the lower half of the list; their
positions are returned, marked in the answer (``"explore": true``) and logged, so that the
report and updates can tell explored slots from exploited ones.

Everything here works on plain arrays: the ingress (``serve_deployments``) and the
in-process simulation (:mod:`llmrec.experiments.inprocess`) both call :func:`explore`, with
the evidence of :class:`~llmrec.experiments.impressions.ImpressionLog` or of
:class:`ItemEvidence` (the same counts, in memory), with the version's training counts
(:func:`with_trained`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from scipy.special import betaincinv

from llmrec.experiments.attribution import Attributed, Impression

CLICK = "click"
TOTAL = ""
"""The evidence row that sums every item (an item id is never empty)."""


def look_weight(position: int) -> float:
    """How often position ``position`` (1 = the top) is looked at, relative to the top."""
    return 1.0 / math.log2(position + 1)


@dataclass(frozen=True)
class ExploreSettings:
    """The sampler's knobs (serving: ``explore_*`` settings; the share is per version or
    per request)."""

    pool: int = 200
    """Candidates beyond ``k`` the ranker returns for exploration to choose from."""
    unproven: int = 50
    """Best-scored items of little training evidence the ranker adds to the candidates."""
    max_impressions: int = 300
    """Items with this much evidence are no longer explored (the model decides)."""
    trained_worth: float = 100.0
    """Impressions (and looks of the prior) one training interaction of the version is
    worth (about one click: the lower half of a list is clicked about once in 100
    impressions); an item with ``max_impressions / trained_worth`` of them is never
    explored."""
    prior_strength: float = 20.0
    """Looks the model's prior is worth against an item's own evidence."""
    base_ctr: float = 0.05
    """Click rate per look assumed while the log has fewer than ``prior_strength`` looks."""


@dataclass(frozen=True)
class EvidenceRows:
    """What the log holds of some items, row by row, and of every item (the totals)."""

    shown: np.ndarray
    looked: np.ndarray
    clicks: np.ndarray
    total_looked: float
    total_clicks: float
    trained: np.ndarray | None = None
    """The version's training interactions with each item (None: none known)."""

    def seen(self, settings: ExploreSettings) -> np.ndarray:
        """Each row's evidence in impressions: shown, plus ``trained_worth`` per training
        interaction (what graduates an item)."""
        if self.trained is None:
            return np.asarray(self.shown, dtype=float)
        return self.shown + settings.trained_worth * self.trained

    def base_ctr(self, settings: ExploreSettings) -> float:
        """Clicks per look over every item (the prior's centre), the default until the log
        holds ``prior_strength`` looks."""
        if self.total_looked < settings.prior_strength:
            return settings.base_ctr
        return float(self.total_clicks / self.total_looked)


class Evidence(Protocol):
    """Per-item evidence: :class:`ItemEvidence` or the impression log's."""

    def evidence(self, item_ids: Sequence[str]) -> EvidenceRows: ...


def tally(impressions: Iterable[Impression]) -> dict[str, tuple[int, float]]:
    """(times shown, looks) per item of answers (and of :data:`TOTAL`, every item)."""
    out: dict[str, tuple[int, float]] = {}
    for imp in impressions:
        for p, item in enumerate(imp.items, start=1):
            for key in (item, TOTAL):
                shown, looked = out.get(key, (0, 0.0))
                out[key] = (shown + 1, looked + look_weight(p))
    return out


def clicks_of(events: Iterable[Attributed]) -> dict[str, int]:
    """Attributed clicks on a shown position per item (and of :data:`TOTAL`)."""
    out: dict[str, int] = {}
    for e in events:
        if e.event == CLICK and e.position is not None:
            for key in (e.item_id, TOTAL):
                out[key] = out.get(key, 0) + 1
    return out


def with_trained(
    rows: EvidenceRows, item_ids: Sequence[str], trained: Mapping[str, float]
) -> EvidenceRows:
    """``rows`` (of ``item_ids``) with the version's training interactions per item
    (``trained``; an item it lacks, e.g. one added live, has none)."""
    counts = np.array([trained.get(i, 0.0) for i in item_ids], dtype=float)
    return replace(rows, trained=counts)


class ItemEvidence:
    """The impression log's per-item counts, in memory (for simulations); ``trained``: the
    version's training interactions per item, added to every answer's evidence."""

    def __init__(self, trained: Mapping[str, float] | None = None) -> None:
        self.counts: dict[str, list[float]] = {}
        self.trained = trained

    def _row(self, item: str) -> list[float]:
        return self.counts.setdefault(item, [0.0, 0.0, 0.0])

    def record(self, impressions: Iterable[Impression]) -> None:
        for item, (shown, looked) in tally(impressions).items():
            row = self._row(item)
            row[0] += shown
            row[1] += looked

    def record_events(self, events: Iterable[Attributed]) -> None:
        for item, n in clicks_of(events).items():
            self._row(item)[2] += n

    def evidence(self, item_ids: Sequence[str]) -> EvidenceRows:
        rows = np.array([self.counts.get(i, (0.0, 0.0, 0.0)) for i in item_ids], dtype=float)
        rows = rows.reshape(len(item_ids), 3)
        total = self.counts.get(TOTAL, [0.0, 0.0, 0.0])
        out = EvidenceRows(rows[:, 0], rows[:, 1], rows[:, 2], total[1], total[2])
        return out if self.trained is None else with_trained(out, item_ids, self.trained)


def explore_key(unit: str, content: str, salt: str = "") -> str:
    """What seeds a request's draws: its unit (user, else session, else request id) and
    its content, so that a reload draws the same numbers."""
    return f"{salt}\x1f{unit}\x1f{content}"


def _rng(key: str) -> np.random.Generator:
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class Explored:
    """A list with its exploration slots."""

    order: list[int]
    """Rows of the wide list, in the order shown (``k`` of them, or fewer when it is short)."""
    explored: tuple[int, ...]
    """1-based positions of ``order`` that are exploration slots."""


def slots(share: float, k: int, rng: np.random.Generator) -> int:
    """Exploration slots of a ``k``-item list: ``share * k`` rounded down, plus one with
    the probability of the remainder."""
    whole = share * k
    n = math.floor(whole + 1e-9)
    return min(k, n + int(rng.random() < whole - n))


def explore(
    scores: np.ndarray,
    k: int,
    share: float,
    evidence: EvidenceRows,
    key: str,
    settings: ExploreSettings,
) -> Explored:
    """Which rows of a wide list (``scores``: the model's, best first) to show, and which of
    them explore.

    Args:
        scores: the wide list's scores (``k + pool`` rows in the model's order, then any
            unproven candidates the ranker added).
        k: items to show.
        share: share of the list to explore, in [0, 1].
        evidence: the log's counts of the wide list's items, row by row.
        key: seeds the draws (:func:`explore_key`).
        settings: the sampler's knobs.
    """
    rows = len(scores)
    shown = min(k, rows)
    rng = _rng(key)
    n = slots(share, shown, rng) if share > 0 else 0
    u = rng.random(rows)  # drawn whatever n is: the same key, the same numbers
    place = rng.permutation(np.arange(shown - (shown + 1) // 2, shown))
    if n == 0:
        return Explored(list(range(shown)), ())
    theta = thompson(scores, evidence, settings, u)
    exploit = shown - n
    open_ = evidence.seen(settings) < settings.max_impressions
    open_[:exploit] = False
    picks = [int(r) for r in np.argsort(-np.where(open_, theta, -np.inf), kind="stable")]
    picks = [r for r in picks[:n] if open_[r]]
    chosen = set(picks)
    rest = [r for r in range(rows) if r not in chosen]
    positions = sorted(int(p) for p in place[: len(picks)])
    order: list[int] = []
    explored_rows = iter(picks)
    others = iter(rest)
    for p in range(shown):
        order.append(next(explored_rows) if p in positions else next(others))
    return Explored(order, tuple(p + 1 for p in positions))


def thompson(
    scores: np.ndarray, evidence: EvidenceRows, settings: ExploreSettings, u: np.ndarray
) -> np.ndarray:
    """Each row's draw of its click rate per look: the Beta posterior (the model's prior,
    surer with the version's training interactions; the row's clicks and looks) at the
    quantile ``u``."""
    s = np.asarray(scores, dtype=float)
    spread = float(s.std()) or 1.0
    z = (s - float(s.mean())) / spread
    mean = np.clip(2.0 * evidence.base_ctr(settings) / (1.0 + np.exp(-z)), 1e-4, 1 - 1e-4)
    trained = np.zeros(len(s)) if evidence.trained is None else evidence.trained
    m = settings.prior_strength + settings.trained_worth * trained
    clicks = np.minimum(evidence.clicks, evidence.looked)
    a = m * mean + clicks
    b = m * (1.0 - mean) + (evidence.looked - clicks)
    return np.asarray(betaincinv(a, b, u), dtype=float)


__all__ = [
    "TOTAL",
    "Evidence",
    "EvidenceRows",
    "ExploreSettings",
    "Explored",
    "ItemEvidence",
    "clicks_of",
    "explore",
    "explore_key",
    "look_weight",
    "slots",
    "tally",
    "thompson",
    "with_trained",
]
