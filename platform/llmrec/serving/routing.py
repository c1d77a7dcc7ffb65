"""Which model version answers a request: the app's model, or the experiment variant's.

A :class:`Routing` is an immutable snapshot: the version each *arm* serves (the app's
``model_uri`` under :data:`APP`, then one arm per experiment variant), what each arm
follows (an alias or a version) and the experiment's assigner. The ingress reads it once
per request, so that a request is computed end to end by the version its arm served when it
arrived, and replaces it whole after :func:`reroute` has loaded every new version.
:func:`impression` writes down what an answer showed, :func:`status` what runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from llmrec.serving.attribution import Impression
from llmrec.serving.experiment import Assigner, Assignment, unit_of
from llmrec.serving.schemas import ExperimentStatus, VariantStatus


class Served(Protocol):
    """What serves a version: its concrete ``uri`` (``models:/name/N``) and number."""

    @property
    def uri(self) -> str: ...

    @property
    def version(self) -> str: ...


A = TypeVar("A", bound=Served)

APP = ""
"""The arm of the app's own ``model_uri`` (variant names cannot be empty)."""


@dataclass(frozen=True)
class Routing(Generic[A]):
    """The arms' versions and targets, and the experiment's assigner (None: no experiment)."""

    arms: Mapping[str, A]
    follows: Mapping[str, str]
    assigner: Assigner | None = None
    changed: tuple[str, ...] = field(default=(), compare=False)
    """The arms whose version this routing changed (for logs and metrics)."""

    def route(
        self, user_id: str | None, session_id: str | None, request_id: str
    ) -> tuple[A, Assignment | None]:
        """The version that answers this request, and its assignment in the experiment."""
        if self.assigner is None:
            return self.arms[APP], None
        assigned = self.assigner.assign(user_id, session_id, request_id)
        return self.arms[assigned.variant], assigned

    def live(self) -> list[A]:
        """The distinct versions served, the app's first."""
        seen: dict[str, A] = {}
        for served in self.arms.values():
            seen.setdefault(served.uri, served)
        return list(seen.values())


async def reroute(
    current: Routing[A] | None,
    follows: Mapping[str, str],
    assigner: Assigner | None,
    resolve: Callable[[str], Awaitable[str]],
    prepare: Callable[[str, int], Awaitable[A]],
) -> Routing[A]:
    """The routing that serves ``follows`` (arm -> alias or version) with ``assigner``.

    Every target is resolved to its concrete version; versions no arm serves yet are
    prepared (``prepare(uri, live)``: loaded everywhere, ``live`` the number of versions
    to be served at once) before the routing is built, so that nothing switches to a
    version that is not ready. Versions already served are reused.

    Raises:
        whatever ``resolve`` or ``prepare`` raise; nothing has switched then.
    """
    if assigner is not None:
        missing = [v.name for v in assigner.spec.variants if v.name not in follows]
        if missing:
            raise ValueError(f"no target for variants: {', '.join(missing)}")
    resolved = {arm: await resolve(target) for arm, target in follows.items()}
    ready: dict[str, A] = {a.uri: a for a in (current.arms.values() if current else ())}
    live = len(set(resolved.values()))
    arms: dict[str, A] = {}
    for arm, uri in resolved.items():
        if uri not in ready:
            ready[uri] = await prepare(uri, live)
        arms[arm] = ready[uri]
    before = current.arms if current else {}
    changed = tuple(a for a, s in arms.items() if a not in before or before[a].uri != s.uri)
    return Routing(arms, dict(follows), assigner, changed)


def impression(
    request_id: str,
    user_id: str | None,
    session_id: str | None,
    served: Served,
    assigned: Assignment | None,
    items: Sequence[str],
    latency_ms: float,
) -> Impression:
    """What one answer showed, to whom, by which variant and version (logged as sent)."""
    if assigned is not None:
        unit, kind = assigned.unit, assigned.unit_kind
    else:
        unit, kind = unit_of(user_id, session_id, request_id)
    return Impression(
        request_id=request_id,
        timestamp=time.time(),
        experiment=assigned.experiment if assigned else "",
        variant=assigned.variant if assigned else "",
        model_uri=served.uri,
        model_version=served.version,
        unit=unit,
        unit_kind=kind,
        user_id=user_id,
        session_id=session_id,
        items=tuple(items),
        latency_ms=latency_ms,
    )


def status(
    routing: Routing[A], counts: Mapping[str, Mapping[str, Any]], follows: str
) -> ExperimentStatus:
    """``GET /admin/experiment``: the split, each variant's version and its live ``counts``
    (:meth:`~llmrec.serving.impressions.ImpressionLog.counts`); ``follows``: the app's
    model_uri."""
    app = routing.arms[APP]
    if routing.assigner is None:
        return ExperimentStatus(experiment=None, model_version=app.version, follows=follows)
    spec = routing.assigner.spec
    split = routing.assigner.split()
    variants = []
    for v in spec.variants:
        c = counts.get(v.name, {})
        shown, events = int(c.get("impressions", 0)), dict(c.get("events", {}))
        variants.append(
            VariantStatus(
                name=v.name,
                weight=v.weight,
                share=split[v.name],
                follows=routing.follows[v.name],
                model_version=routing.arms[v.name].version,
                requests=int(c.get("requests", 0)),
                users=int(c.get("users", 0)),
                impressions=shown,
                events=events,
                value=float(c.get("value", 0.0)),
                ctr=events.get("click", 0) / shown if shown else None,
            )
        )
    return ExperimentStatus(
        experiment=spec.name,
        control=spec.control,
        variants=variants,
        model_version=app.version,
        follows=follows,
    )


__all__ = ["APP", "Routing", "Served", "impression", "reroute", "status"]
