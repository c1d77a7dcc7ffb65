"""First-order transitions: which item follows which, counted over users' ordered histories.

A Markov chain of order one ("Markov-1") ranks the items by how often each followed the
user's last item in the training part, popularity breaking ties. It is 20 lines of counting
and on ordered data (MovieLens rated in sittings, products bought in sequence) it is one of
the strongest simple baselines there is, so it is both a yardstick in every evaluation table
(:func:`markov_scores`) and a term of the served hybrid (:class:`Transitions`, standardised
per user like the collaborative term and weighted on validation).

The counts are a sparse ``items x items`` matrix: at most one entry per consecutive pair in
the logs, so it fits at any catalogue size that the logs fit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from llmrec.modeling.cf import _standardise

TRANSITIONS_FILE = "transitions.npz"


def transition_counts(histories: Sequence[Sequence[int]], num_items: int) -> sp.csr_matrix:
    """``[items, items]`` counts: entry ``(a, j)`` = how often ``j`` directly followed ``a``
    in one of ``histories`` (item rows, oldest first; repeats of one item are skipped)."""
    src: list[int] = []
    dst: list[int] = []
    for history in histories:
        for a, j in itertools.pairwise(history):
            if a != j:
                src.append(int(a))
                dst.append(int(j))
    counts = sp.csr_matrix(
        (np.ones(len(src), dtype=np.float32), (np.asarray(src), np.asarray(dst))),
        shape=(num_items, num_items),
    )
    counts.sum_duplicates()
    return counts


@dataclass
class Transitions:
    """The transition term of the hybrid: a user's scores are the counts of what followed
    their last item, standardised over the whole catalogue (zero mean, unit spread).

    Args:
        counts: ``[items, items]`` sparse counts (:func:`transition_counts`).
    """

    counts: sp.csr_matrix

    @classmethod
    def fit(cls, histories: Sequence[Sequence[int]], num_items: int) -> Transitions:
        return cls(transition_counts(histories, num_items))

    @property
    def num_items(self) -> int:
        return int(self.counts.shape[0])

    @property
    def nbytes(self) -> int:
        c = self.counts
        return int(c.data.nbytes + c.indices.nbytes + c.indptr.nbytes)

    def _last(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Each history's last item known to the counts (-1: none)."""
        n = self.num_items
        out = np.full(len(histories), -1, dtype=np.int64)
        for u, history in enumerate(histories):
            for item in reversed(history):
                if 0 <= item < n:
                    out[u] = item
                    break
        return out

    def raw(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``[B, items]`` counts of what followed each history's last item."""
        last = self._last(histories)
        out = np.zeros((len(histories), self.num_items), dtype=np.float32)
        known = np.flatnonzero(last >= 0)
        if len(known):
            out[known] = self.counts[last[known]].toarray()
        return out

    def part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Standardised ``[B, items]`` scores (or ``[B, len(rows)]``, the same values); a
        history whose last item was never followed by anything scores zeros."""
        last = self._last(histories)
        n = self.num_items
        width = n if rows is None else len(rows)
        out = np.zeros((len(histories), width), dtype=np.float32)
        known = np.flatnonzero(last >= 0)
        if not len(known):
            return out
        block = self.counts[last[known]]
        total = np.asarray(block.sum(axis=1)).ravel()
        squares = np.asarray(block.multiply(block).sum(axis=1)).ravel()
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        dense = block.toarray() if rows is None else block[:, np.asarray(rows)].toarray()
        out[known] = _standardise(dense, mean, std)
        return out

    def top(self, histories: Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
        """Per user, the rows of (at most) ``n`` items that most often followed their last
        item (candidates for an approximate index)."""
        out = []
        for item in self._last(histories):
            if item < 0:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            start, end = self.counts.indptr[item], self.counts.indptr[item + 1]
            cols, vals = self.counts.indices[start:end], self.counts.data[start:end]
            order = np.argsort(-vals, kind="stable")[:n]
            out.append(cols[order].astype(np.int64))
        return out

    def save(self, directory: str | Path) -> None:
        sp.save_npz(Path(directory) / TRANSITIONS_FILE, self.counts)

    @classmethod
    def load(cls, directory: str | Path) -> Transitions | None:
        """The counts saved in ``directory``, or None (a version saved without them)."""
        path = Path(directory) / TRANSITIONS_FILE
        if not path.exists():
            return None
        return cls(sp.csr_matrix(sp.load_npz(path)).astype(np.float32))


def markov_scores(
    fit_histories: Sequence[Sequence[int]],
    histories: Sequence[Sequence[int]],
    num_items: int,
) -> np.ndarray:
    """The Markov-1 baseline: ``[B, items]`` scores of ``histories``' users from the
    transitions counted in ``fit_histories``; popularity (interactions in
    ``fit_histories``) breaks ties, below one count, so it never outranks a transition."""
    counts = np.bincount(
        np.fromiter((i for h in fit_histories for i in h), dtype=np.int64), minlength=num_items
    ).astype(np.float32)
    tie_break = counts / (counts.max() + 1.0) if len(counts) else counts
    return Transitions.fit(fit_histories, num_items).raw(histories) + tie_break[None, :]


__all__ = ["TRANSITIONS_FILE", "Transitions", "markov_scores", "transition_counts"]
