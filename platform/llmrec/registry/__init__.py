"""A registered version: its files (``bundle``) and the MLflow registry (``store``: logging,
versions, aliases). Imports config, console, data, modeling, ranking; never serving.

``store`` is the only module that imports mlflow at import time; import it as a module
(``from llmrec.registry import store as registry``) where a version is logged or resolved.
"""

from llmrec.registry.bundle import ModelBundle

__all__ = ["ModelBundle"]
