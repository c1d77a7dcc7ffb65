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
The allocation is kept in the serving state (:class:`llmrec.serving.impressions.
ImpressionLog`) so that every ingress replica, and a restarted one, buckets alike.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUCKETS = 10_000
"""Buckets of the hash space: weights are honoured to 1/10,000."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Experiment and variant names: they become MLflow tags and file names."""

UnitKind = Literal["user", "session", "request"]


class Variant(BaseModel):
    """One arm of an experiment."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=NAME_PATTERN, description="e.g. control, challenger.")
    model_uri: str = Field(
        pattern=r"^models:/[A-Za-z0-9_.-]+(/[0-9]+|@[A-Za-z0-9_-]+)$",
        max_length=300,
        description="The alias or version this variant follows, e.g. "
        "models:/llmrec-scorer@challenger; it is followed like the app's model_uri (hot swaps).",
    )
    weight: float = Field(
        ge=0.0, le=1e6, allow_inf_nan=False, description="Relative share of units (users)."
    )


class ExperimentSpec(BaseModel):
    """A champion/challenger experiment: the first variant is the control."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Identifies the experiment: its users' buckets, its log and its report.",
    )
    variants: list[Variant] = Field(
        min_length=2,
        max_length=10,
        description="The control first, then the challengers; at least one weight > 0, "
        "names all different.",
        json_schema_extra={
            "contains": {"required": ["weight"], "properties": {"weight": {"exclusiveMinimum": 0}}}
        },
    )

    @model_validator(mode="after")
    def _weighted(self) -> ExperimentSpec:
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("at least one variant needs a weight > 0")
        return self

    def problems(self) -> list[str]:
        """What JSON Schema cannot say about a spec: its variant names must differ."""
        names = [v.name for v in self.variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        return [f"variant names must differ; repeated: {', '.join(twice)}"] if twice else []

    @property
    def control(self) -> str:
        return self.variants[0].name

    def weights(self) -> tuple[tuple[str, float], ...]:
        return tuple((v.name, float(v.weight)) for v in self.variants)


def decode_spec(value: Any) -> Any:
    """What a serve config may give for an experiment, made ready for validation: JSON text
    (``serve run serve_deployments:build_app 'experiment={"name": ...}'``) is decoded, an
    empty value means none.

    Raises:
        ValueError: the text is not JSON.
    """
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"experiment is not JSON: {exc}") from None
    return value


def parse_spec(value: Any) -> ExperimentSpec | None:
    """An experiment from a serve config (a mapping, or JSON text); None when empty.

    Raises:
        pydantic.ValidationError: the spec is not valid (each problem named).
        ValueError: the text is not JSON.
    """
    value = decode_spec(value)
    if value is not None and not isinstance(value, ExperimentSpec):
        value = ExperimentSpec.model_validate(value, strict=False)
    if value is not None and value.problems():
        raise ValueError("; ".join(value.problems()))
    return value


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
    "ExperimentSpec",
    "Variant",
    "allocate",
    "bucket_of",
    "decode_spec",
    "parse_spec",
    "shares",
    "unit_of",
]
