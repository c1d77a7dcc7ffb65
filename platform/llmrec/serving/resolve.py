"""A request resolved against one version
(:meth:`~llmrec.serving.recommender.QueryBuilder.build`): checked (its text and history
within the configured limits: 422; every user, item, category and attribute it names known
to the version: 404), the known user's history looked up, and the :class:`Query` the
encoder and the ranker read assembled. Each check raises
:class:`~llmrec.understanding.query.RequestError` naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from llmrec.api.schemas import RecommendRequest
from llmrec.serving.history import HistoryStore
from llmrec.understanding.explain import occlusion_targets
from llmrec.understanding.query import Intent, Query, RequestError

Seen = frozenset[str] | tuple[str, ...]
"""The items a user has seen (never recommended to them)."""


def listed(ids: Sequence[str], what: str) -> str:
    """``what: 'a', 'b'`` with at most ten ids shown."""
    shown = ", ".join(repr(i) for i in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return f"{what}: {shown}{more}"


def check_query(req: RecommendRequest, max_chars: int) -> None:
    """422 for typed text over ``max_chars`` characters."""
    if req.query is not None and len(req.query) > max_chars:
        raise RequestError(
            422,
            f"query is {len(req.query)} characters; the limit is {max_chars}",
            "query",
        )


def check_history(history: Sequence[str], max_items: int, knows: Callable[[str], bool]) -> None:
    """422 for a sent history over ``max_items`` items, 404 for items it does not ``know``."""
    if len(history) > max_items:
        raise RequestError(
            422,
            f"history has {len(history)} items; the limit is {max_items}",
            "history",
        )
    unknown = [i for i in history if not knows(i)]
    if unknown:
        raise RequestError(404, listed(unknown, "unknown item ids in history"), "history")


def check_filters(
    req: RecommendRequest,
    knows: Callable[[str], bool],
    categories: Sequence[str],
    attributes: Sequence[str],
) -> None:
    """404 for an excluded item the version does not ``know``, a category filter outside
    ``categories`` or a ``max_per`` cap on an attribute outside ``attributes``."""
    unknown = [i for i in req.exclude if not knows(i)]
    if unknown:
        raise RequestError(404, listed(unknown, "unknown item ids in exclude"), "exclude")
    wanted = set(categories)
    bad = [c for c in req.categories if c not in wanted]
    if bad:
        raise RequestError(
            404,
            listed(bad, "unknown categories") + f" (known: {', '.join(categories)})",
            "categories",
        )
    unknown_attrs = [a for a in (req.max_per or {}) if a not in attributes]
    if unknown_attrs:
        raise RequestError(
            404,
            listed(unknown_attrs, "unknown attributes in max_per")
            + f" (known: {', '.join(attributes)})",
            "max_per",
        )


def user_history(
    user_id: str,
    store: HistoryStore | None,
    histories: Mapping[str, list[str]],
    knows: Callable[[str], bool],
) -> tuple[list[str], Seen]:
    """A known user's history (the items the version knows) and seen items: from ``store``
    (training logs + feedback) when there is one, else from the version's logs
    (``histories``); 404 for a user neither has."""
    if store is not None:
        state = store.user(user_id)
        if state is not None:
            known = [i for i in state.history if knows(i)]
            return known, state.seen
    elif user_id in histories:
        history = histories[user_id]
        return history, tuple(history)
    raise RequestError(
        404,
        f"unknown user_id {user_id!r}: no history in the logs or feedback; "
        "send a history or a query instead",
        "user_id",
    )


def request_history(
    req: RecommendRequest,
    store: HistoryStore | None,
    histories: Mapping[str, list[str]],
    knows: Callable[[str], bool],
    max_items: int,
) -> tuple[list[str], Seen]:
    """The history ``req`` is ranked for and the items it has seen: a known user's
    (:func:`user_history`), else the history it sends (:func:`check_history`)."""
    if req.user_id is not None:
        return user_history(req.user_id, store, histories, knows)
    history = list(req.history or [])
    check_history(history, max_items, knows)
    return history, tuple(history)


def resolved(
    req: RecommendRequest, history: list[str], seen: Seen, intent: Intent | None, window: int
) -> Query:
    """The query of a checked ``req``: ``history`` (the user's or the one sent) with the
    items its text refers to (``intent``: the text as read; None: not read), what the
    language model reads of the text, the items to leave out (``seen``, the request's
    ``exclude``, the items referred to) and, when it asks for explanations, the history
    items to occlude (the last ``window``)."""
    request = req.query if req.query and req.query.strip() else None
    if intent is not None:
        history = [*history, *(i for i in intent.like if i not in history)]
        request = intent.text
    return Query(
        history=tuple(history),
        request=request,
        exclude=tuple(dict.fromkeys([*seen, *req.exclude, *(intent.like if intent else ())])),
        k=req.k,
        categories=tuple(req.categories),
        diversity=req.diversity,
        calibration=req.calibration,
        tail_share=req.tail_share,
        max_per=None if req.max_per is None else tuple(sorted(req.max_per.items())),
        intent=intent,
        strict=req.strict,
        explain=req.explain,
        occlude=occlusion_targets(history, window) if req.explain else (),
    )
