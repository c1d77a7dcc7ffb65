"""A request resolved against a model version: what the user tower encodes and how to rank.

:class:`Intent` is what its free text asks for (:mod:`llmrec.understanding.intent` reads it);
:class:`Query` travels from the ingress to the encoder and the ranker; :func:`user_inputs`
and :func:`blocks` lay out the encoder's rows when a query asks for explanations (its user
vector, then one per occluded history item, all in one call of the user tower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.api.schemas import ReferredItem, Understood, YearRange
from llmrec.data.catalogue import Catalogue


class RequestError(ValueError):
    """A request that cannot be served as asked; ``status`` is the HTTP status to answer,
    ``field`` the request field at fault (None: the request as a whole)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Intent:
    """What a request asks for, resolved against one catalogue.

    Attributes:
        categories: Wanted categories (a boost, or a filter with ``strict``).
        without: Unwanted categories (a hard filter).
        like: Items referred to, by id (seeds of the user tower; never recommended).
        years: Wanted release years ``(first, last)``, inclusive.
        without_years: Unwanted release years.
        attributes: Wanted ``(attribute, value)`` pairs (e.g. ``("provider", "Kite Studios")``).
        without_attributes: Unwanted ``(attribute, value)`` pairs (a hard filter).
        text: What the language model reads of the request (None: nothing left).
    """

    categories: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    like: tuple[str, ...] = ()
    years: tuple[int, int] | None = None
    without_years: tuple[int, int] | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    without_attributes: tuple[tuple[str, str], ...] = ()
    text: str | None = None

    @property
    def wants(self) -> bool:
        """Whether there is a wanted constraint (boosted or, when strict, required)."""
        return bool(self.categories or self.years or self.attributes)

    @property
    def excludes(self) -> bool:
        """Whether there is an unwanted constraint (always a filter)."""
        return bool(self.without or self.without_years or self.without_attributes)


@dataclass(frozen=True)
class Query:
    """A request resolved against the model version: what to encode and how to rank.

    ``history`` (item ids, oldest first) and ``request`` (the free text typed, if any) are
    what the user tower encodes; the rest says how to rank.
    """

    history: tuple[str, ...]
    request: str | None
    exclude: tuple[str, ...]
    k: int
    categories: tuple[str, ...] = ()
    diversity: float | None = None
    calibration: float | None = None
    tail_share: float | None = None
    max_per: tuple[tuple[str, int], ...] | None = None
    """Caps per attribute value; None: the version's default (``rank.max_per``)."""
    intent: Intent | None = None
    """What the request's text asks for (None: no text, or parsing switched off)."""
    strict: bool = False
    """Wanted constraints of the intent filter instead of boosting."""
    explain: bool = False
    """Answer each item with an explanation."""
    occlude: tuple[str, ...] = ()
    """History items to encode the user without, one vector each (for explanations)."""
    unproven: int = 0
    """Exploration's candidates: after its ``k`` items, the answer also holds the best
    ``unproven`` of the items the version has little training evidence of."""


def user_inputs(queries: Sequence[Query]) -> tuple[list[tuple[str, ...]], list[str | None]]:
    """What the user tower encodes for ``queries``: each query's history and request, then
    the same without each of its ``occlude`` items (one batch for all)."""
    histories: list[tuple[str, ...]] = []
    requests: list[str | None] = []
    for q in queries:
        histories.append(q.history)
        requests.append(q.request)
        for item in q.occlude:
            histories.append(tuple(i for i in q.history if i != item))
            requests.append(q.request)
    return histories, requests


def blocks(vectors: np.ndarray, queries: Sequence[Query]) -> list[np.ndarray]:
    """Split the encoder's rows (:func:`user_inputs` order) into one ``[1 + len(occlude),
    dim]`` block per query."""
    vectors = np.asarray(vectors, dtype=np.float32)
    sizes = [1 + len(q.occlude) for q in queries]
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    if len(vectors) != sum(sizes):
        raise ValueError(f"{len(vectors)} user vectors for {sum(sizes)} encoder inputs")
    return np.split(vectors, np.cumsum(sizes)[:-1])


def understood(intent: Intent | None, strict: bool, catalogue: Catalogue) -> Understood | None:
    """The intent as the HTTP answer shows it (None: the query was not read)."""
    if intent is None:
        return None

    def years(span: tuple[int, int] | None) -> YearRange | None:
        return None if span is None else YearRange(first=span[0], last=span[1])

    def grouped(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in pairs:
            out.setdefault(name, []).append(value)
        return out

    return Understood(
        categories=list(intent.categories),
        without=list(intent.without),
        like=[ReferredItem(item_id=i, title=catalogue.title(i)) for i in intent.like],
        years=years(intent.years),
        without_years=years(intent.without_years),
        attributes=grouped(intent.attributes),
        without_attributes=grouped(intent.without_attributes),
        text=intent.text,
        strict=strict,
    )


__all__ = ["Intent", "Query", "RequestError", "blocks", "understood", "user_inputs"]
