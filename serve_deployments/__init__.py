"""Ray Serve graph of llmrec: ``serve run serve_deployments:app``.

``app`` serves the version that ``$LLMREC_MODEL_URI`` resolves to (default
``models:/llmrec-scorer@champion``) from the MLflow store at ``$MLFLOW_TRACKING_URI`` (default
``sqlite:///mlflow.db``).
``serve run serve_deployments:build_app model_uri=models:/llmrec-scorer/2`` picks a version.
The app is built on first access, so importing this package
needs no registry.
"""

from __future__ import annotations

from typing import Any

from serve_deployments.graph import build_app

__all__ = ["app", "build_app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        return build_app({})
    raise AttributeError(f"module 'serve_deployments' has no attribute {name!r}")
