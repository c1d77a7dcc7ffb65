"""Training and evaluation: the Ray Train loop and driver, metrics, the protocol table.

The loop and driver import Ray Train; import them from their modules
(``llmrec.training.loop``, ``llmrec.training.trainer``). Metrics are plain numpy.
"""

from llmrec.training.metrics import (
    beyond_accuracy,
    gini,
    ranking_metrics,
    target_ranks,
    top_k_lists,
)

__all__ = ["beyond_accuracy", "gini", "ranking_metrics", "target_ranks", "top_k_lists"]
