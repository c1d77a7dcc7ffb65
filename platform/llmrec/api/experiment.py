"""An online experiment as serving takes it (serve config, ``POST /admin/experiment``): its
variants, the alias or version each follows, their weights.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Experiment and variant names: they become MLflow tags and file names."""


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
