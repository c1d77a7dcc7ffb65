"""The hybrid's text-match part (versions that hold ``text_vectors.npy``).

For a request with typed text: the frozen base language model's zero-shot cosine between
the request and each item's text (what the item tower reads), standardised like the model's
part from the moments of the items' text vectors (:mod:`llmrec.ranking.moments`). It finds
an item by its description where the trained towers do not (a live item has no learned ID
part, and the request's projection was trained on few or no typed requests). A request
without a history has nothing else to go on: the part counts in full. With a history it
counts only where an item stands out among the request's matches (:data:`STAND_OUT_RANK`,
:data:`STAND_OUT_MARGIN`), so that a vague request does not override the history.

The encoder sends the request's base embedding after the user vector's columns (a
``[B, dim + text_dim]`` row; zeros: no request), and a live item's base text embedding after
its item vector; :meth:`~llmrec.ranking.hybrid.HybridScorer.split` takes them apart and
hands the text columns to :func:`text_scores` and :func:`described_rows`. Both find a
request's best matches by a product with every item's text vector, or, for a catalogue the
ranker indexes approximately, in a :class:`~llmrec.ranking.text_index.TextIndex` (the
scores of what it finds are the exact ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.ranking.moments import best_rows, standardise_raw, standardised
from llmrec.ranking.text_index import TextIndex

TEXT_WEIGHT = 4.0
"""The text-match term's weight for requests with typed text, where a version's request
weights give none (it is not tuned on validation: see docs/serving.md, "Finding an item by
its description", for how it was chosen)."""
STAND_OUT_RANK = 5
STAND_OUT_MARGIN = 1.0
"""For a request with a history, the text-match part counts only what an item's
standardised text score has above the request's ``STAND_OUT_RANK``-th best item's plus
``STAND_OUT_MARGIN``: a request that singles an item out lifts it, a vague one ("comedy",
matched about as well by hundreds of items) leaves the history's ranking as it was."""


def text_scores(
    text: np.ndarray,
    items: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    rows: np.ndarray | None = None,
    histories: Sequence[Sequence[int]] | None = None,
    index: TextIndex | None = None,
) -> np.ndarray:
    """Text-match scores ``[B, items]`` (or ``[B, len(rows)]``, the same values) of the
    requests' text vectors ``text`` ``[B, text_dim]`` against the items' ``items``
    (``mean``, ``cov``: their moments): standardised over the catalogue; for a user with a
    history (``histories``; None: none has one) only what an item has above the request's
    :data:`STAND_OUT_RANK`-th best item plus :data:`STAND_OUT_MARGIN` (found by ``index``
    over ``items``; None: by the exact product). Zeros for rows without a request (all-zero
    text vectors)."""
    out = standardised(text, items, mean, cov, rows)
    asked = np.abs(text).sum(axis=1) > 0
    held = np.array([bool(h) for h in histories or [()] * len(text)], dtype=bool) & asked
    if held.any():
        _, raw = best(text[held], items, STAND_OUT_RANK, index)
        floor = standardise_raw(
            raw[:, -1], text[held], mean, cov
        )  # the request's STAND_OUT_RANK-th best item, standardised
        out[held] = np.maximum(out[held] - floor[:, None] - STAND_OUT_MARGIN, 0.0)
    return np.where(asked[:, None], out, 0.0).astype(np.float32)


def described_rows(
    text: np.ndarray, items: np.ndarray, n: int, index: TextIndex | None = None
) -> list[np.ndarray]:
    """Per request text vector, the rows (sorted) of the ``n`` items whose text vectors
    match it best (found by ``index`` over ``items``; None: by the exact product); none for
    a row without a request (all zeros)."""
    out = [np.zeros(0, dtype=np.int64) for _ in range(len(text))]
    asked = np.flatnonzero(np.abs(text).sum(axis=1) > 0)
    if len(asked):
        found, _ = best(text[asked], items, n, index)
        for j, b in enumerate(asked):
            out[b] = np.sort(found[j])
    return out


def best(
    q: np.ndarray, items: np.ndarray, n: int, index: TextIndex | None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ``n`` items whose text vectors match each query best, best first, and
    their exact raw scores: from ``index`` when there is one, else the exact product."""
    return best_rows(q, items, n) if index is None else index.best_rows(q, items, n)
