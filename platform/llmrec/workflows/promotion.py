"""The promotion gate between ``candidate`` and ``champion``.

A new version is always registered as ``candidate``. It becomes ``champion`` only when it
beats the current champion on the primary metric, measured on the same evaluation data, by
more than a configured margin (:func:`promotion_gate`), or when it won an online experiment
significantly (:func:`llmrec.experiments.guard.experiment_gate`); otherwise the champion
stays and the decision says why. A running experiment whose variant follows ``champion``
holds it (:func:`llmrec.experiments.guard.experiment_guard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmrec.config import RegistryConfig
from llmrec.experiments.guard import experiment_guard
from llmrec.registry import aliases
from llmrec.registry import store as registry


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why."""

    promoted: bool
    candidate: str
    champion: str | None
    metric: str
    candidate_value: float | None
    champion_value: float | None
    reason: str
    held: str | None = None
    """Why the candidate won but ``champion`` did not move (:func:`experiment_guard`)."""


def promotion_gate(
    cfg: RegistryConfig,
    candidate: str | None = None,
    scores: dict[str, float] | None = None,
    experiment_state: str | Path | None = None,
) -> GateDecision:
    """Compare ``candidate`` (default: the version aliased ``candidate``) with the champion
    and move ``champion`` when the candidate wins, unless a running experiment's variant
    follows ``champion``.

    Args:
        cfg: Registry config: model name, primary metric, margin.
        candidate: Version number to consider.
        scores: ``{version: value}`` of the primary metric measured now on one data set
            (``jobs/promote.py --data``). Without it, the metric logged with each version is
            used, which is only comparable when both versions carry the same dataset
            fingerprint.
        experiment_state: Serving's impression log, whose running experiment may hold
            ``champion`` (:func:`experiment_guard`); None: not checked (``--force``).
    """
    name, metric = cfg.model_name, cfg.primary_metric
    if candidate is None:
        candidate = registry.resolve(f"models:/{name}@{aliases.CANDIDATE}").version
    champion = aliases.current_champion(name)

    def decide(
        promoted: bool, reason: str, cv: float | None = None, pv: float | None = None
    ) -> GateDecision:
        if promoted:
            held = experiment_guard(experiment_state, name, aliases.CHAMPION)
            if held is not None:
                return GateDecision(
                    False, candidate, champion, metric, cv, pv, f"{reason}; {held}", held
                )
            aliases.set_champion(name, candidate)
        return GateDecision(promoted, candidate, champion, metric, cv, pv, reason)

    if champion is None:
        return decide(True, f"no champion yet: version {candidate} becomes champion")
    if champion == candidate:
        return decide(False, f"version {candidate} is already the champion")
    if scores is not None:
        cand_value, champ_value = scores[candidate], scores[champion]
    else:
        cand_metrics, cand_tags = registry.version_info(name, candidate)
        champ_metrics, champ_tags = registry.version_info(name, champion)
        cand_fp, champ_fp = (
            cand_tags.get("dataset_fingerprint"),
            champ_tags.get("dataset_fingerprint"),
        )
        if cand_fp != champ_fp:
            return decide(
                False,
                f"versions {candidate} and {champion} were evaluated on different "
                f"data (fingerprints {cand_fp} and {champ_fp}); evaluate both on "
                "the same data: jobs/promote.py --data SOURCE",
            )
        if metric not in cand_metrics or metric not in champ_metrics:
            return decide(
                False,
                f"metric {metric!r} is missing on version "
                f"{candidate if metric not in cand_metrics else champion}",
            )
        cand_value, champ_value = cand_metrics[metric], champ_metrics[metric]
    if cand_value > champ_value + cfg.promote_margin:
        return decide(
            True,
            f"version {candidate} {metric} {cand_value:.4f} beats champion "
            f"{champion} {champ_value:.4f} by more than {cfg.promote_margin:g}",
            cand_value,
            champ_value,
        )
    return decide(
        False,
        f"version {candidate} {metric} {cand_value:.4f} does not beat champion "
        f"{champion} {champ_value:.4f} by more than {cfg.promote_margin:g}; "
        "champion unchanged",
        cand_value,
        champ_value,
    )
