"""The protocol and what it reports: metrics, offline scoring, tuning on validation,
baselines, a team's predictions (and the split written out for them), the report, re-rank
sweeps, group and faithfulness reports, query reports, the incremental protocol's windows.
Imports data, modeling, ranking, registry, understanding, serving; never training.
"""

from llmrec.evaluation.metrics import ranking_metrics, target_ranks, top_k_lists

__all__ = ["ranking_metrics", "target_ranks", "top_k_lists"]
