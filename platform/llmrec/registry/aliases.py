"""Aliases of a registered model: ``candidate``, ``champion`` and its history, the rest by hand.

Every new version becomes ``candidate`` (:func:`llmrec.registry.runs.log_and_register`);
``champion`` is set when the registered model has none yet, and otherwise only by the
promotion gates (:mod:`llmrec.workflows.promotion`, :mod:`llmrec.experiments.guard`) and
rollback, which :func:`set_champion` and :func:`rollback_champion` serve: the versions that
were champion are kept, oldest first, as a registered-model tag. Any other alias
(``challenger``, which an online experiment's variant follows) is set by hand with
:func:`set_alias`.
"""

from __future__ import annotations

import re

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from llmrec.config import DEFAULT_MODEL_NAME
from llmrec.registry.store import ModelNotFoundError, require_version

CHAMPION, CANDIDATE = "champion", "candidate"
HISTORY_TAG = "llmrec.champion_history"
PROTECTED = (CHAMPION,)
"""Aliases that move only through the promotion gates and rollback
(:mod:`llmrec.workflows.promotion`, ``jobs/promote.py``), never by :func:`set_alias`."""
_ALIAS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # what a variant's model_uri may follow


class AliasError(ValueError):
    """An alias that cannot be set by hand: protected, or not a valid name."""


def default_model_uri() -> str:
    """The champion of the default registered model."""
    return f"models:/{DEFAULT_MODEL_NAME}@{CHAMPION}"


def champion_history(name: str) -> list[str]:
    """Versions that were champion, oldest first (kept as a registered-model tag)."""
    tags = MlflowClient().get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def current_champion(name: str) -> str | None:
    """The version ``champion`` of model ``name`` points at; None when there is none."""
    aliases = MlflowClient().get_registered_model(name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def set_champion(name: str, version: str) -> None:
    """Point ``champion`` at ``version`` and remember it for rollbacks."""
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version)
    history = champion_history(name)
    if not history or history[-1] != version:
        client.set_registered_model_tag(name, HISTORY_TAG, ",".join([*history, version]))


def rollback_champion(name: str) -> tuple[str, str]:
    """Put the previous champion back; returns (demoted version, restored version).

    Raises:
        ModelNotFoundError: there is no earlier champion to go back to.
    """
    history = champion_history(name)
    current = current_champion(name)
    if current is None or len(history) < 2:
        raise ModelNotFoundError(
            f"{name}: no earlier champion to roll back to (champion history: {history or 'empty'})"
        )
    client = MlflowClient()
    previous = history[-2]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[:-1]))
    return current, previous


def alias_problem(alias: str) -> str | None:
    """Why ``alias`` cannot be set with :func:`set_alias`, in one line; None when it can."""
    if alias.casefold() in PROTECTED:
        return (
            f"{alias!r} moves only through the promotion gate: python jobs/promote.py "
            "(--data SOURCE, --experiment NAME, --rollback)"
        )
    if not _ALIAS_NAME.match(alias) or alias.casefold() == "latest":
        return (
            f"alias {alias!r} must be letters, digits, '_' or '-' (at most 255), and not 'latest'"
        )
    if re.fullmatch(r"[vV]\d+", alias):
        return f"alias {alias!r} reads as a version number (v<N>): MLflow does not allow it"
    return None


def alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` of model ``name`` points at; None when it is not set.

    Raises:
        ModelNotFoundError: no model of that name.
    """
    try:
        aliases = MlflowClient().get_registered_model(name).aliases
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"no registered model {name!r} at {mlflow.get_tracking_uri()}: "
            f"{exc.message.splitlines()[0]}"
        ) from exc
    return str(aliases[alias]) if alias in aliases else None


def set_alias(name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` of model ``name`` at registered ``version`` (``challenger`` for an
    online experiment); returns the version it pointed at before (None: it was not set).

    Raises:
        AliasError: ``alias`` is protected (:data:`PROTECTED`) or not a valid name.
        ModelNotFoundError: no such model or version.
    """
    problem = alias_problem(alias)
    if problem is not None:
        raise AliasError(problem)
    target = require_version(name, version).version
    before = alias_version(name, alias)
    MlflowClient().set_registered_model_alias(name, alias, target)
    return before
