"""llmrec: train, register and serve recommenders scored by a language model, on Ray.

Packages, lowest layer first (a package imports only from layers below it; docs/
architecture.md has the map): ``config`` and ``console``; ``data`` (where data enters) and
``api`` (the HTTP contract); ``modeling`` (the models); ``ranking`` (hybrid scores,
re-rankers, the index); ``registry`` (a version's files and MLflow); ``understanding``
(reading requests, explaining answers); ``serving`` (the recommender as plain classes);
``experiments`` and ``evaluation``; ``training`` (Ray Train); ``workflows`` (what the jobs
run). Importing ``llmrec`` itself loads nothing heavy.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

from llmrec import _moved

_moved.install()  # versions registered before the 2026-12 layout import their old paths
