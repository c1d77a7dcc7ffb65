"""Attributing feedback to the answer it came from.

A ``/recommend`` answer carries a ``request_id``; a feedback event that sends it back is
attributed to that answer's impression: its experiment, variant, model version, the unit
(user or session) the answer was assigned by, and the item's position in the list (1 = the
top; None when the item was not in the list, e.g. found on another page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmrec.serving.history import Event


@dataclass(frozen=True)
class Impression:
    """One answer as it was shown: to whom, by which variant and version, when, how fast."""

    request_id: str
    timestamp: float
    """Unix seconds when the answer was sent."""
    experiment: str
    """The experiment's name; empty when none ran."""
    variant: str
    """The variant that answered; empty when no experiment ran."""
    model_uri: str
    """The concrete version (``models:/name/N``) that computed the whole answer."""
    model_version: str
    unit: str
    """What was assigned: the user id, else the session id, else the request id."""
    unit_kind: str
    user_id: str | None
    session_id: str | None
    items: tuple[str, ...]
    """What was shown, in order (position 1 first)."""
    latency_ms: float
    """Time in the ingress from the request to the answer, before it was logged."""
    explored: tuple[int, ...] = ()
    """1-based positions that were exploration slots (:mod:`llmrec.experiments.exploration`)."""


@dataclass(frozen=True)
class Attributed:
    """A feedback event attributed to an impression."""

    request_id: str
    user_id: str
    item_id: str
    event: str
    value: float
    timestamp: int
    experiment: str
    variant: str
    model_version: str
    unit: str
    position: int | None
    """1-based position of the item in the answer; None when it was not shown there."""


class AttributionError(ValueError):
    """Feedback that cannot be attributed: ``status`` to answer, the ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def attribute(
    events: Sequence[tuple[str, Event]], impressions: Mapping[str, Impression]
) -> list[Attributed]:
    """``(request_id, event)`` pairs attributed to ``impressions`` (by request id).

    Raises:
        AttributionError: 404 for request ids with no logged answer; 422 when an answer given
            to a known ``user_id`` is sent back for another user (a session's answer may be
            sent back by the user who signs in).
    """
    unknown = list(dict.fromkeys(rid for rid, _ in events if rid not in impressions))
    if unknown:
        shown = ", ".join(repr(r) for r in unknown[:10])
        raise AttributionError(404, f"unknown request_id: {shown} (no answer logged with it)")
    out = []
    for rid, e in events:
        shown_to = impressions[rid]
        if shown_to.user_id is not None and shown_to.user_id != e.user_id:
            raise AttributionError(
                422,
                f"request_id {rid!r} answered user_id {shown_to.user_id!r}, not {e.user_id!r}",
            )
        items = shown_to.items
        position = items.index(e.item_id) + 1 if e.item_id in items else None
        out.append(
            Attributed(
                request_id=rid,
                user_id=e.user_id,
                item_id=e.item_id,
                event=e.event,
                value=float(e.value),
                timestamp=int(e.timestamp),
                experiment=shown_to.experiment,
                variant=shown_to.variant,
                model_version=shown_to.model_version,
                unit=shown_to.unit,
                position=position,
            )
        )
    return out


__all__ = ["Attributed", "AttributionError", "Impression", "attribute"]
