"""Which model version answers a request: the app's model, or the experiment variant's.

A :class:`Routing` is an immutable snapshot: the version each *arm* serves (the app's
``model_uri`` under :data:`APP`, then one arm per experiment variant), what each arm
follows (an alias or a version) and the experiment's assigner. The ingress reads it once
per request, so that a request is computed end to end by the version its arm served when it
arrived. A :class:`Router` makes every change (an alias moved, an experiment started,
changed or stopped), one at a time, and replaces the snapshot whole after :func:`reroute`
has loaded every new version. :func:`impression` writes down what an answer showed,
:func:`status` what runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from llmrec.api.experiment import ExperimentSpec
from llmrec.api.schemas import ExperimentStatus, VariantStatus
from llmrec.experiments.assignment import Assigner, Assignment, unit_of
from llmrec.experiments.attribution import Impression
from llmrec.experiments.impressions import ImpressionLog


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


class Router(Generic[A]):
    """The ingress's routing: the app's ``model_uri`` and the running experiment.

    Changes are made one at a time and switch only once every new version is loaded. The
    running experiment and its buckets are kept in the impression log's file, shared by the
    ingress replicas: a change through one replica's admin API reaches the others at their
    next :meth:`sync`, and outlives restarts.

    Args:
        target: the app's ``model_uri`` (an alias or a version).
        resolve: alias or version -> concrete URI.
        prepare: (concrete URI, versions served at once) -> what serves it, loaded everywhere.
        log: the impression log.
        switched: called after each change with the new routing and the previous one.
    """

    def __init__(
        self,
        target: str,
        resolve: Callable[[str], Awaitable[str]],
        prepare: Callable[[str, int], Awaitable[A]],
        log: ImpressionLog,
        switched: Callable[[Routing[A], Routing[A] | None], None],
    ) -> None:
        self.target = target
        self.resolve, self.prepare, self.log, self.switched = resolve, prepare, log, switched
        self._routing: Routing[A] | None = None
        self._swap = asyncio.Lock()
        self._experiment = asyncio.Lock()  # a change of experiment and its record, together

    @property
    def routing(self) -> Routing[A]:
        if self._routing is None:
            raise RuntimeError("the router has not started")
        return self._routing

    @property
    def swap_lock(self) -> asyncio.Lock:
        """Held while versions switch: hold it to act on the versions served meanwhile."""
        return self._swap

    @property
    def spec(self) -> ExperimentSpec | None:
        """The running experiment."""
        assigner = self._routing.assigner if self._routing else None
        return assigner.spec if assigner else None

    async def _change(self, change: tuple[dict[str, str], Assigner | None] | None) -> bool:
        async with self._swap:
            current = self._routing
            if change is None:
                change = (dict(self.routing.follows), self.routing.assigner)
            new = await reroute(current, *change, self.resolve, self.prepare)
            self._routing = new
        self.switched(new, current)
        return bool(new.changed) and current is not None

    async def _run(self, spec: ExperimentSpec | None) -> None:
        follows = {APP: self.target}
        assigner = None
        if spec is not None:
            follows |= {v.name: v.model_uri for v in spec.variants}
            assigner = Assigner(spec, await asyncio.to_thread(self.log.allocation, spec))
        await self._change((follows, assigner))

    async def start(self, configured: ExperimentSpec | None) -> str | None:
        """Serve the app's model and the latest experiment set: ``configured`` (the serve
        config's) if the config changed since it was last seen, else what the admin API set.

        Returns:
            why an experiment set through the API did not start (it no longer loads; the
            next :meth:`sync` tries again), or None.

        Raises:
            whatever loading the app's model or the ``configured`` experiment raises.
        """
        await self._change(({APP: self.target}, None))
        async with self._experiment:
            spec = await asyncio.to_thread(self.log.experiments.configured, configured)
            try:
                await self._run(spec)
            except Exception as exc:
                if spec == configured:
                    raise
                return f"experiment {spec.name if spec else ''!r} did not start: {exc}"
        return None

    async def check(self) -> bool:
        """Resolve every followed alias again; switch the arms whose alias moved."""
        return await self._change(None)

    async def follow(self, target: str) -> None:
        """The app's ``model_uri`` is ``target`` from now on."""
        self.target = target
        follows = {**self.routing.follows, APP: target}
        await self._change((follows, self.routing.assigner))

    async def configure(self, spec: ExperimentSpec | None) -> None:
        """The serve config asks for ``spec`` (a new ``user_config``)."""
        async with self._experiment:
            await self._run(await asyncio.to_thread(self.log.experiments.configured, spec))

    async def run(self, spec: ExperimentSpec | None) -> None:
        """Run ``spec`` from now on (None: stop), and record it for the other replicas."""
        async with self._experiment:
            await self._run(spec)
            await asyncio.to_thread(self.log.experiments.set, spec)

    async def sync(self) -> bool:
        """Follow an experiment set through another replica, then the aliases."""
        async with self._experiment:
            spec = await asyncio.to_thread(self.log.experiments.current)
            if spec != self.spec:
                await self._run(spec)
                return True
        return await self.check()


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
    (:meth:`~llmrec.experiments.impressions.ImpressionLog.counts`); ``follows``: the app's
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


__all__ = ["APP", "Router", "Routing", "Served", "impression", "reroute", "status"]
