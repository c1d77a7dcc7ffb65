"""Re-ranking of a user's top-N candidates: diversity, calibration and exposure, one engine.

Every re-ranker here builds the list greedily, one slot at a time, from the candidates'
relevance (min-max scaled to ``[0, 1]`` per user) and picks, among the candidates the
constraints allow, the one with the highest gain:

- MMR (Carbonell & Goldstein, 1998), knob ``diversity`` = d:
  ``(1 - d) * relevance - d * max similarity to the items already picked``.
- MSD (max-sum diversification, Gollapudi & Sharma, 2009), knob d:
  ``(1 - d) * relevance - d * mean similarity to the items already picked``: each pick adds
  what it adds to the list's mean pairwise distance, i.e. to intra-list diversity; on
  ml-100k a better accuracy / diversity trade-off than MMR (docs/beyond-accuracy.md).
- DPP (Chen, Zhang & Zhou, 2018, fast greedy MAP inference), knob d: kernel
  ``L = diag(q) S diag(q)`` with quality ``q_i = exp(alpha * relevance_i)``,
  ``alpha = (1 - d) / (2 d)``; the gain is ``d * log`` of the marginal determinant gain,
  which equals ``(1 - d) * relevance + d * log(residual)`` up to a constant: the same scale
  as MMR. Incremental Cholesky updates, ``O(N k^2)`` per list.
- Calibration (Steck, RecSys 2018), knob ``calibration`` = c: the list's category
  distribution ``q`` should match the user's history distribution ``p``; the gain of item j
  is ``(1 - c) * g_j - c * KL(p || (1 - a) q(list + j) + a p)`` with ``g_j`` the diversity
  gain above (the relevance when d = 0) and ``a = 0.01`` (Steck's smoothing).

Exposure constraints shape the list without a knob of their own beyond their bound:

- ``tail_share``: at least ``ceil(tail_share * k)`` long-tail items (outside the most popular
  20% of items by training interactions); the greedy takes tail items only once the slots
  left equal the tail items still owed.
- ``max_per``: at most ``cap`` items per value of an attribute (``{"provider": 2}``,
  ``{"categories": 3}``: an item counts once for each of its values).

Both are honoured exactly when the candidates allow it (for a single-valued attribute and
the tail share alone the greedy is exact; combined or multi-valued caps are a packing
problem the greedy may miss). Otherwise best effort: a slot that no candidate can fill
within the caps takes the best candidate that keeps the tail share, then the best of all.
With only exposure constraints the chosen items come back in relevance order.

Knob 0 everywhere and no caps: the relevance order, unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Method = Literal["none", "mmr", "msd", "dpp"]
DiversityMethod = Literal["mmr", "msd", "dpp"]
SMOOTHING = 0.01  # Steck's alpha: the list's distribution is mixed with 1% of the user's
_EXHAUSTED = 1e-9  # DPP: no independent direction left below this residual


@dataclass(frozen=True)
class SlateSpec:
    """What a list should look like besides relevant; every knob 0 = relevance order."""

    method: DiversityMethod = "mmr"
    """The diversity re-ranker: ``mmr``, ``msd`` or ``dpp``."""
    diversity: float = 0.0
    """Diversity trade-off in [0, 1]: 0 = relevance only, 1 = diversity only."""
    calibration: float = 0.0
    """Calibration trade-off in [0, 1] (Steck's lambda): 0 = off, 1 = only the match of the
    list's category distribution to the user's history."""
    tail_share: float = 0.0
    """Minimum share of long-tail items per list, in [0, 1]."""
    max_per: Mapping[str, int] = field(default_factory=dict)
    """At most this many items per value of an attribute, e.g. ``{"provider": 2}``."""

    def problems(self) -> list[str]:
        """What is out of range, by field name (empty when the spec is valid)."""
        out = []
        for name in ("diversity", "calibration", "tail_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                out.append(f"{name} must be in [0, 1], got {value}")
        if self.method not in ("mmr", "msd", "dpp"):
            out.append(f"method must be 'mmr', 'msd' or 'dpp', got {self.method!r}")
        for attr, cap in self.max_per.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                out.append(f"max_per[{attr!r}] must be an integer >= 1, got {cap!r}")
        return out

    @property
    def reorders(self) -> bool:
        """Whether the spec can change the relevance order at all."""
        return bool(self.diversity or self.calibration or self.tail_share or self.max_per)


@dataclass
class Candidates:
    """Per user, ``N`` candidates and what the re-rankers read of them (all arrays batched
    over users; only what the spec needs has to be given).

    Attributes:
        relevance: ``[U, N]`` scores (any scale; min-max scaled per user inside).
        vectors: ``[U, N, f]`` item vectors for similarity (MMR, DPP).
        genres: ``[U, N, g]`` category distribution of each candidate (rows sum to 1).
        history: ``[U, g]`` category distribution of each user's history (calibration).
        tail: ``[U, N]`` True for long-tail candidates.
        codes: attribute name -> ``[U, N, m]`` value codes of each candidate (-1 = none).
    """

    relevance: np.ndarray
    vectors: np.ndarray | None = None
    genres: np.ndarray | None = None
    history: np.ndarray | None = None
    tail: np.ndarray | None = None
    codes: dict[str, np.ndarray] = field(default_factory=dict)


def greedy(cands: Candidates, k: int, spec: SlateSpec) -> np.ndarray:
    """``[U, min(k, N)]`` candidate positions, best first, under ``spec``.

    Raises:
        ValueError: the spec is out of range, or misses the arrays its knobs need.
    """
    problems = spec.problems()
    if problems:
        raise ValueError("; ".join(problems))
    rel = _scaled(np.atleast_2d(cands.relevance))
    users, n = rel.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((users, 0), dtype=np.int64)
    if not spec.reorders:
        return np.argsort(-rel, axis=1, kind="stable")[:, :k]
    diversity = _Diversity(spec, rel, cands.vectors, k)
    calibration = _Calibration(spec.calibration, cands.genres, cands.history, users)
    constraints = _Constraints(spec, cands, k, users, n)
    free = np.ones((users, n), dtype=bool)
    rows = np.arange(users)
    picked = np.zeros((users, k), dtype=np.int64)
    for step in range(k):
        gain = diversity.gain()
        if spec.calibration:
            gain = (1.0 - spec.calibration) * gain - spec.calibration * calibration.kl(step)
        allowed = constraints.allowed(free, step)
        j = np.argmax(np.where(allowed, gain, -np.inf), axis=1)
        picked[:, step] = j
        free[rows, j] = False
        diversity.update(j, step)
        calibration.update(j)
        constraints.update(j)
    if not (spec.diversity or spec.calibration):  # exposure only: the set in relevance order
        order = np.argsort(-np.take_along_axis(rel, picked, axis=1), axis=1, kind="stable")
        picked = np.take_along_axis(picked, order, axis=1)
    return picked


class _Diversity:
    """The relevance / diversity gain of each candidate, updated after each pick."""

    def __init__(self, spec: SlateSpec, rel: np.ndarray, vectors: np.ndarray | None, k: int):
        self.d = spec.diversity
        self.method = spec.method
        self.rel = rel
        if not self.d:
            return
        if vectors is None:
            raise ValueError("diversity re-ranking needs item vectors")
        users, n = rel.shape
        if self.method in ("mmr", "msd"):
            self.v = _unit(np.asarray(vectors, dtype=np.float32))
            # the max (MMR) or mean (MSD) similarity to the items picked so far
            self.penalty: np.ndarray = np.zeros((users, n), dtype=np.float32)
            self.total: np.ndarray = np.zeros((users, n), dtype=np.float32)
        else:
            alpha = (1.0 - self.d) / (2.0 * self.d)
            quality = np.exp(alpha * (rel - 1.0))  # <= 1: no overflow for small d
            # float64: the rank test below (residual < 1e-9) needs the precision
            self.v = _unit(np.asarray(vectors, dtype=np.float64)) * quality[:, :, None]
            self.c = np.zeros((users, k, n))
            self.d2 = (self.v**2).sum(-1) + 1e-10
            self.exhausted = np.zeros(users, dtype=bool)

    def gain(self) -> np.ndarray:
        if not self.d:
            return self.rel
        if self.method in ("mmr", "msd"):
            return (1.0 - self.d) * self.rel - self.d * self.penalty
        gain = self.d * np.log(np.maximum(self.d2, 1e-300))
        # a candidate with no independent direction left ranks below every other one, and
        # such candidates among themselves in relevance order
        return np.where((self.d2 > _EXHAUSTED) & ~self.exhausted[:, None], gain, -1e6 + self.rel)

    def update(self, j: np.ndarray, step: int) -> None:
        if not self.d:
            return
        rows = np.arange(len(j))
        vj = self.v[rows, j]  # [U, f]
        sim = np.einsum("unf,uf->un", self.v, vj)
        if self.method == "mmr":
            self.penalty = np.maximum(self.penalty, sim)
            return
        if self.method == "msd":
            self.total += sim
            self.penalty = (self.total / (step + 1)).astype(np.float32)
            return
        if step == self.c.shape[1] - 1:
            return
        d2j = self.d2[rows, j]
        ok = (d2j > _EXHAUSTED) & ~self.exhausted
        self.exhausted |= ~ok
        cj = self.c[rows, :step, j]  # [U, step]
        e = (sim - np.einsum("usn,us->un", self.c[:, :step], cj)) / np.sqrt(np.where(ok, d2j, 1.0))[
            :, None
        ]
        e[~ok] = 0.0
        self.c[:, step] = e
        self.d2 = self.d2 - e * e


class _Calibration:
    """KL(p || smoothed q(list + candidate)) for every candidate (Steck 2018)."""

    def __init__(
        self, c: float, genres: np.ndarray | None, history: np.ndarray | None, users: int
    ) -> None:
        self.c = c
        if not c:
            return
        if genres is None or history is None:
            raise ValueError("calibration needs the candidates' and the history's categories")
        self.g = np.asarray(genres, dtype=np.float32)
        self.p = np.asarray(history, dtype=np.float32)
        self.total = np.zeros((users, self.g.shape[-1]), dtype=np.float32)
        self.entropy = (self.p * np.log(np.where(self.p > 0, self.p, 1.0))).sum(1)

    def kl(self, step: int) -> np.ndarray:
        q = (self.total[:, None, :] + self.g) / (step + 1)
        q = (1.0 - SMOOTHING) * q + SMOOTHING * self.p[:, None, :]
        cross = np.einsum("ug,ung->un", self.p, np.log(np.maximum(q, 1e-12, out=q), out=q))
        return self.entropy[:, None] - cross

    def update(self, j: np.ndarray) -> None:
        if self.c:
            self.total += self.g[np.arange(len(j)), j]


class _Constraints:
    """Which candidates may take the next slot: caps per attribute value, tail share."""

    def __init__(self, spec: SlateSpec, cands: Candidates, k: int, users: int, n: int) -> None:
        self.k = k
        self.need = math.ceil(spec.tail_share * k - 1e-9) if spec.tail_share else 0
        if self.need and cands.tail is None:
            raise ValueError("a tail share needs the candidates' long-tail flags")
        self.tail = (
            np.asarray(cands.tail, dtype=bool) if self.need else np.zeros((users, n), dtype=bool)
        )
        self.got = np.zeros(users, dtype=np.int64)
        self.caps: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        for attr, cap in spec.max_per.items():
            if attr not in cands.codes:
                raise ValueError(f"no attribute {attr!r} to cap (known: {sorted(cands.codes)})")
            codes = np.asarray(cands.codes[attr], dtype=np.int64)
            pad = int(codes.max(initial=-1)) + 1  # "no value" gets a column never capped
            codes = np.where(codes < 0, pad, codes)
            self.caps.append((codes, np.zeros((users, pad + 1), dtype=np.int64), cap, pad))

    def allowed(self, free: np.ndarray, step: int) -> np.ndarray:
        rows = np.arange(len(free))[:, None, None]
        within = free.copy()
        for codes, counts, cap, pad in self.caps:
            full = (counts[rows, codes] >= cap) & (codes != pad)  # [U, N, m]
            within &= ~full.any(-1)
        forced = (self.need - self.got) >= (self.k - step)
        keep_tail = self.tail | ~forced[:, None]
        allowed = within & keep_tail
        for relaxed in (free & keep_tail, free):  # best effort when nothing fits
            empty = ~allowed.any(1)
            if not empty.any():
                break
            allowed[empty] = relaxed[empty]
        return allowed

    def update(self, j: np.ndarray) -> None:
        rows = np.arange(len(j))
        self.got += self.tail[rows, j]
        for codes, counts, _, _ in self.caps:
            for col in range(codes.shape[-1]):
                np.add.at(counts, (rows, codes[rows, j, col]), 1)


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _scaled(relevance: np.ndarray) -> np.ndarray:
    r = np.asarray(relevance, dtype=np.float64)
    if r.shape[1] == 0:
        return r
    lo, hi = r.min(1, keepdims=True), r.max(1, keepdims=True)
    span = hi - lo
    return np.divide(r - lo, span, out=np.ones_like(r), where=span > 0)


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Indices into one user's candidates, in the order MMR picks them (at most ``k``)."""
    spec = SlateSpec("mmr", diversity=strength)
    return greedy(Candidates(relevance[None], vectors=vectors[None]), k, spec)[0]


def msd(relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Indices into one user's candidates, in the order max-sum diversification picks them."""
    spec = SlateSpec("msd", diversity=strength)
    return greedy(Candidates(relevance[None], vectors=vectors[None]), k, spec)[0]


def dpp(relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Indices into one user's candidates, in the order greedy DPP MAP inference picks them.

    When the kernel runs out of rank (more picks than independent item vectors) the rest
    of the list is filled in relevance order.
    """
    spec = SlateSpec("dpp", diversity=strength)
    return greedy(Candidates(relevance[None], vectors=vectors[None]), k, spec)[0]


def calibrated(
    relevance: np.ndarray, genres: np.ndarray, history: np.ndarray, k: int, strength: float
) -> np.ndarray:
    """Steck's calibrated re-ranking of one user's candidates (``genres`` ``[N, g]`` and
    ``history`` ``[g]`` are category distributions)."""
    cands = Candidates(relevance[None], genres=genres[None], history=history[None])
    return greedy(cands, k, SlateSpec(calibration=strength))[0]


def rerank(
    method: Method, relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float
) -> np.ndarray:
    """Dispatch to :func:`mmr` / :func:`msd` / :func:`dpp`; ``none`` sorts by relevance."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"diversity strength must be in [0, 1], got {strength}")
    if method in ("mmr", "msd", "dpp"):
        return greedy(
            Candidates(np.asarray(relevance)[None], vectors=np.asarray(vectors)[None]),
            k,
            SlateSpec(method, diversity=strength),
        )[0]
    return np.argsort(-np.asarray(relevance), kind="stable")[:k]


def category_distribution(category_vectors: np.ndarray) -> np.ndarray:
    """``p(g | item)``: each item's categories weighted equally (rows sum to 1; rows of an
    item without categories are zero)."""
    v = np.asarray(category_vectors, dtype=np.float64)
    sums = v.sum(1, keepdims=True)
    return np.divide(v, sums, out=np.zeros_like(v), where=sums > 0)


def history_distribution(dist: np.ndarray, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """``[U, g]`` ``p(g | user)``: the mean category distribution of each history's items
    (items without categories left out; zeros for an empty history)."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    out = np.zeros((len(histories), dist.shape[1]))
    if not lengths.sum():
        return out
    rows = np.fromiter(itertools.chain.from_iterable(histories), dtype=np.int64)
    users = np.repeat(np.arange(len(histories)), lengths)
    for g in range(dist.shape[1]):  # np.add.at is an order of magnitude slower
        out[:, g] = np.bincount(users, weights=dist[rows, g], minlength=len(histories))
    counted = np.bincount(users, weights=dist[rows].sum(1) > 0, minlength=len(histories))
    return np.divide(out, counted[:, None], out=np.zeros_like(out), where=counted[:, None] > 0)
