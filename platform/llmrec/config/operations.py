"""The ``registry``, ``update`` and ``ray`` sections: versions, updates, the cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass

from llmrec.config.base import (
    DEFAULT_MODEL_NAME,
    DEFAULT_TRACKING_URI,
)


@dataclass(frozen=True)
class RegistryConfig:
    """MLflow tracking and the model registry."""

    tracking_uri: str = ""
    """MLflow tracking URI; empty = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``."""
    experiment: str = "llmrec"
    """MLflow experiment name."""
    artifact_location: str = "mlartifacts"
    """Artifact root of a newly created experiment (a folder or URI)."""
    model_name: str = DEFAULT_MODEL_NAME
    """Registered model name."""
    primary_metric: str = "val_ndcg_at_10"
    """The metric the promotion gate compares (higher is better)."""
    promote_margin: float = 0.0
    """A candidate becomes champion only if it beats the champion by more than this."""
    auto_promote: bool = False
    """Run the promotion gate at the end of fine-tuning (otherwise: ``jobs/promote.py``)."""

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI

    def problems(self) -> list[str]:
        return [] if self.model_name else ["registry.model_name must not be empty"]


@dataclass(frozen=True)
class UpdateConfig:
    """Incremental updates of the champion (``jobs/update.py``, ``evaluate.py --incremental``)."""

    replay_ratio: float = 1.0
    """Windows of older interactions replayed per window of new ones (0: the new data only).
    Replay keeps what the champion knew from being forgotten."""
    epochs: int = 3
    """Passes over the new and replayed windows."""
    max_steps: int = 0
    """Stop after this many optimizer steps per worker (0: ``epochs`` decide)."""
    lr: float = 0.0
    """Learning rate of the update (0: ``train.lr``)."""
    holdout: float = 0.2
    """Share of the new interactions, the newest by time, held back: candidate and champion
    are compared on it, and the candidate never trains on it."""
    feedback_dir: str = ""
    """Serving's feedback folder (Parquet in the interaction contract); empty:
    ``$LLMREC_FEEDBACK_DIR``, else ``runs/feedback``."""
    catalogue_db: str = ""
    """Serving's live catalogue record (items posted to ``/admin/items``); empty:
    ``$LLMREC_CATALOGUE_DB``, else ``runs/serve/catalogue.sqlite``."""
    auto_promote: bool = False
    """Run the promotion gate on the held-out comparison after registering the candidate."""

    def problems(self) -> list[str]:
        out = []
        if self.replay_ratio < 0:
            out.append(f"update.replay_ratio must be >= 0, got {self.replay_ratio}")
        if self.epochs < 1:
            out.append(f"update.epochs must be >= 1, got {self.epochs}")
        if self.max_steps < 0:
            out.append(f"update.max_steps must be >= 0, got {self.max_steps}")
        if self.lr < 0:
            out.append(f"update.lr must be >= 0 (0: train.lr), got {self.lr}")
        if not 0.0 < self.holdout < 1.0:
            out.append(f"update.holdout must be in (0, 1), got {self.holdout}")
        return out

    def feedback_path(self) -> str:
        """The feedback folder (the setting, the environment, or the serving default)."""
        return self.feedback_dir or os.environ.get("LLMREC_FEEDBACK_DIR") or "runs/feedback"

    def catalogue_path(self) -> str:
        """The live catalogue record (the setting, the environment, or the serving default)."""
        return (
            self.catalogue_db
            or os.environ.get("LLMREC_CATALOGUE_DB")
            or "runs/serve/catalogue.sqlite"
        )


@dataclass(frozen=True)
class RayConfig:
    """How the job reaches Ray."""

    address: str = ""
    """Cluster address; empty = ``$RAY_ADDRESS`` when set (``ray job submit``), else a local
    cluster started by the job."""
    num_cpus: int = 4
    """Logical CPUs of a local cluster. More than the physical cores on purpose: Ray Data read
    tasks and the train controller must be able to run beside the workers."""

    def problems(self) -> list[str]:
        return [] if self.num_cpus >= 1 else [f"ray.num_cpus must be >= 1, got {self.num_cpus}"]
