"""Champion/challenger experiments in serving: the spec, sticky assignment, consistent buckets.

An experiment splits traffic between *variants*, each following its own model alias or
version. A request is assigned by a hash of (experiment name, its ``user_id``, else its
``session_id``) to one of :data:`BUCKETS` buckets, and each bucket belongs to one variant:
the same user always lands in the same variant, and two experiments (two names) split users
independently of each other. A request with neither id gets a random bucket: it is its own
unit.

Buckets are handed to variants by an :class:`Allocation` that remembers the previous one:
when weights change, a variant over its new share gives up only its surplus buckets and
only variants under their share receive them, so exactly the users that must move do (the
least possible: the sum of the positive share changes), whatever the number of variants.
The allocation is kept in the serving state (:class:`llmrec.experiments.impressions.
ImpressionLog`) so that every ingress replica, and a restarted one, buckets alike.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmrec.api.experiment import ExperimentSpec

BUCKETS = 10_000
"""Buckets of the hash space: weights are honoured to 1/10,000."""

UnitKind = Literal["user", "session", "request"]


def bucket_of(experiment: str, unit: str) -> int:
    """The bucket of ``unit`` (a user or session id) in ``experiment``: a 64-bit BLAKE2b of
    both, modulo :data:`BUCKETS` (stable across processes, machines and Python versions)."""
    digest = hashlib.blake2b(f"{experiment}\x1f{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def shares(weights: Sequence[tuple[str, float]], buckets: int = BUCKETS) -> dict[str, int]:
    """Buckets per variant: the weights apportioned by largest remainder (ties: listed
    order), so that the counts add up to ``buckets`` exactly."""
    total = sum(w for _, w in weights)
    exact = [(name, buckets * w / total) for name, w in weights]
    counts = {name: int(x) for name, x in exact}
    left = buckets - sum(counts.values())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
    for i in order[:left]:
        counts[exact[i][0]] += 1
    return counts


@dataclass(frozen=True)
class Allocation:
    """Which variant owns each bucket, and the weights it implements."""

    weights: tuple[tuple[str, float], ...]
    owners: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name, _ in self.weights}
        for owner in self.owners:
            out[owner] += 1
        return out

    def moved(self, other: Allocation) -> int:
        """Buckets whose variant differs between the two allocations."""
        return sum(a != b for a, b in zip(self.owners, other.owners, strict=True))

    def to_json(self) -> str:
        names = [name for name, _ in self.weights]
        codes = "".join(chr(48 + names.index(o)) for o in self.owners)
        return json.dumps({"weights": self.weights, "owners": codes})

    @classmethod
    def from_json(cls, text: str) -> Allocation:
        raw = json.loads(text)
        weights = tuple((str(n), float(w)) for n, w in raw["weights"])
        names = [n for n, _ in weights]
        return cls(weights, tuple(names[ord(c) - 48] for c in raw["owners"]))


def allocate(
    weights: Sequence[tuple[str, float]], previous: Allocation | None = None
) -> Allocation:
    """Buckets for ``weights``, moving as few as possible from ``previous``.

    Every bucket of a variant still present and within its new share stays; a variant over
    its share gives up its highest buckets, a removed variant all of its buckets; the freed
    buckets go, lowest first, to the variants under their share in listed order. Without a
    previous allocation the variants get contiguous ranges in listed order.
    """
    target = shares(weights)
    owners: list[str | None] = [None] * BUCKETS
    if previous is not None and len(previous.owners) == BUCKETS:
        kept = dict.fromkeys(target, 0)
        for b, was in enumerate(previous.owners):
            if was in target:
                owners[b] = was
                kept[was] += 1
        for b in range(BUCKETS - 1, -1, -1):
            now = owners[b]
            if now is not None and kept[now] > target[now]:
                owners[b] = None
                kept[now] -= 1
    have = dict.fromkeys(target, 0)
    for now in owners:
        if now is not None:
            have[now] += 1
    wanting = iter([name for name in target for _ in range(target[name] - have[name])])
    filled = [o if o is not None else next(wanting) for o in owners]
    return Allocation(tuple((n, float(w)) for n, w in weights), tuple(filled))


def unit_of(user_id: str | None, session_id: str | None, request_id: str) -> tuple[str, UnitKind]:
    """Who a request is for, as experiments count: the user, else the session, else the
    request itself."""
    if user_id:
        return user_id, "user"
    if session_id:
        return session_id, "session"
    return request_id, "request"


@dataclass(frozen=True)
class Assignment:
    """The variant a request is served by, and the unit that was hashed."""

    experiment: str
    variant: str
    unit: str
    unit_kind: UnitKind
    bucket: int


class Assigner:
    """Assigns requests of one experiment to its variants.

    Args:
        spec: the experiment.
        allocation: its buckets (:func:`allocate`); must implement the spec's weights.
    """

    def __init__(self, spec: ExperimentSpec, allocation: Allocation) -> None:
        if spec.problems():
            raise ValueError("; ".join(spec.problems()))
        if allocation.weights != spec.weights():
            raise ValueError(
                f"allocation implements {allocation.weights}, the spec asks {spec.weights()}"
            )
        self.spec = spec
        self.allocation = allocation

    def assign(self, user_id: str | None, session_id: str | None, request_id: str) -> Assignment:
        """``user_id`` first, else ``session_id`` (sticky); with neither, a random bucket
        and the request is its own unit."""
        unit, kind = unit_of(user_id, session_id, request_id)
        b = secrets.randbelow(BUCKETS) if kind == "request" else bucket_of(self.spec.name, unit)
        return Assignment(self.spec.name, self.allocation.owners[b], unit, kind, b)

    def split(self) -> dict[str, float]:
        """The share of units each variant receives (buckets owned / all)."""
        return {name: n / BUCKETS for name, n in self.allocation.counts().items()}


__all__ = [
    "BUCKETS",
    "Allocation",
    "Assigner",
    "Assignment",
    "allocate",
    "bucket_of",
    "shares",
    "unit_of",
]
