"""Where online experiments hold the model's life: the alias a running experiment's variant
follows does not move while it runs (:func:`experiment_guard`, read from serving's
impression log), and the challenger an experiment promotes (:func:`experiment_gate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec.registry import aliases
from llmrec.registry import store as registry

if TYPE_CHECKING:
    from llmrec.api.experiment import ExperimentSpec, Variant
    from llmrec.experiments.analysis import Analysis


class ExperimentStateError(RuntimeError):
    """Serving's experiment state cannot be read (not an impression log, a bad spec)."""


def running_experiment(state_path: str | Path | None) -> ExperimentSpec | None:
    """The experiment serving runs now, as kept in its impression log (the SQLite file of
    the serve setting ``impression_db``); None when there is none, or no such file (nothing
    is created).

    Raises:
        ExperimentStateError: the file is not an impression log, or its spec is invalid.
    """
    if state_path is None or not Path(state_path).is_file():
        return None
    import sqlite3

    from pydantic import ValidationError

    from llmrec.experiments.impressions import ImpressionLog

    try:
        log = ImpressionLog(state_path, Path(state_path).with_name("impressions"))
        return log.experiments.current()
    except (sqlite3.Error, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExperimentStateError(
            f"cannot read the running experiment from {state_path}: {first}"
        ) from exc


def followed_by(
    state_path: str | Path | None, model: str, alias: str
) -> tuple[ExperimentSpec, Variant] | None:
    """The running experiment (:func:`running_experiment`) and its first variant that
    follows ``models:/<model>@<alias>``; None when no variant does."""
    spec = running_experiment(state_path)
    if spec is None:
        return None
    followed = f"models:/{model}@{alias}".casefold()
    for variant in spec.variants:
        if variant.model_uri.strip().casefold() == followed:
            return spec, variant
    return None


def experiment_guard(
    state_path: str | Path | None, model: str, alias: str, *, allow: str | None = None
) -> str | None:
    """Why ``alias`` of ``model`` must not move now, in one line: a variant of the running
    experiment follows it (:func:`followed_by`); None when it may move (no experiment, no
    file at ``state_path``, no variant following it, or the running experiment is the one
    named ``allow``: the one whose result is being promoted).

    Raises:
        ExperimentStateError: the state cannot be read.
    """
    found = followed_by(state_path, model, alias)
    if found is None or found[0].name == allow:
        return None
    spec, variant = found
    return (
        f"{alias} not moved: experiment {spec.name} is running and its variant "
        f"{variant.name} follows {variant.model_uri} (serving state {state_path}); "
        "end the experiment first (DELETE /admin/experiment), or pass --force"
    )


def candidate_warning(
    state_path: str | Path | None, version: registry.RegisteredVersion
) -> str | None:
    """A warning when a variant of the running experiment follows ``candidate``, which the
    newly registered ``version`` took (registration always moves it): that variant answers
    with the new version from now on. None otherwise."""
    found = followed_by(state_path, version.name, aliases.CANDIDATE)
    if found is None:
        return None
    spec, variant = found
    return (
        f"warning: variant {variant.name} of the running experiment {spec.name} follows "
        f"{variant.model_uri}, which every new version takes: version {version.version} "
        "answers for it now; let experiments follow challenger instead "
        "(python jobs/promote.py --alias challenger --version N)"
    )


@dataclass(frozen=True)
class ExperimentDecision:
    """Whether an online experiment's challenger becomes champion, and why."""

    promote: bool
    reason: str
    model: str | None = None
    version: str | None = None
    variant: str | None = None


def experiment_gate(analysis: Analysis) -> ExperimentDecision:
    """The challenger to promote after an online experiment: only one whose difference from
    the control is significantly positive (:class:`~llmrec.experiments.Comparison` decided
    ``better``), and that was served by one version all along; with several winners, the one
    with the highest lower bound. Otherwise the reason names each challenger's result."""
    winners = sorted(
        (c for c in analysis.comparisons if c.decision == "better"), key=lambda c: -c.low
    )
    if not winners:
        results = "; ".join(c.sentence() for c in analysis.comparisons) or "no challenger"
        return ExperimentDecision(False, f"no significant win, champion unchanged: {results}")
    best = winners[0]
    served = analysis.served.get(best.challenger, [])
    if len(served) != 1:
        return ExperimentDecision(
            False,
            f"{best.challenger} won but was answered by {len(served)} versions "
            f"({', '.join(served)}): the experiment does not say which one is better",
        )
    winner = registry.resolve(served[0])
    return ExperimentDecision(
        True,
        f"{best.sentence()}; version {winner.version} of {winner.name} becomes champion",
        winner.name,
        winner.version,
        best.challenger,
    )
