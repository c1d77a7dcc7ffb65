"""A registered version: its files (``bundle``) and the MLflow registry: ``store`` (where it
is, the versions it holds: resolve, download), ``runs`` (what is logged: a training run
registered as a version, evaluations, reports, embeddings) and ``aliases`` (``candidate``,
``champion`` and its history, aliases set by hand). Imports config, console, data,
modeling, ranking; never serving.

``store``, ``runs`` and ``aliases`` are the only modules that import mlflow at import time;
import them as modules (``from llmrec.registry import store as registry``,
``from llmrec.registry import aliases, runs``) where a version is logged or resolved.
"""

from llmrec.registry.bundle import ModelBundle

__all__ = ["ModelBundle"]
