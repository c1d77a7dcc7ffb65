"""What the serving benchmarks (``serve_latency.py``, ``soak.py``) do alike: find a free
port, summarise latencies, fetch the model's bundle from the registry it lives in and
register copies of it as new versions in the benchmark's own temporary MLflow store.

Each benchmark serves copies of one registered model from a store of its own, so that its
aliases and versions never touch the store the model came from.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from llmrec.config import RegistryConfig
    from llmrec.registry.store import RegisteredVersion


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(times_ms: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 of ``times_ms``."""
    t = np.sort(np.asarray(times_ms))
    return (float(np.percentile(t, 50)), float(np.percentile(t, 95)), float(np.percentile(t, 99)))


def source_bundle(model: str, tracking_uri: str, dst: Path | None = None) -> Path:
    """The bundle folder of ``model`` (a ``models:/`` URI) in the store at ``tracking_uri``
    (a relative sqlite path is taken from here), downloaded to ``dst`` (None: a temporary
    folder). Leaves MLflow pointed at that store.

    Raises:
        ModelNotFoundError: no such model or version.
    """
    import mlflow
    from llmrec.registry import store as registry
    from llmrec.serving.settings import absolute_tracking_uri

    mlflow.set_tracking_uri(absolute_tracking_uri(tracking_uri))
    _, source = registry.download_bundle(model, dst)
    return source


def register_copy(cfg: RegistryConfig, run_name: str, bundle_dir: Path) -> RegisteredVersion:
    """``bundle_dir`` logged as a run named ``run_name`` and registered as a new version of
    ``cfg.model_name`` in ``cfg``'s store (no params, metrics or tags: a benchmark's copy)."""
    from llmrec.registry import runs

    return runs.log_and_register(
        cfg,
        run_name=run_name,
        params={},
        history=[],
        metrics={},
        bundle_dir=bundle_dir,
        model_card=run_name,
        tags={},
    )
