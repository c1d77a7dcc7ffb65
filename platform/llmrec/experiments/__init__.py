"""Online experiments: assignment and routing of requests to variants, the impression log and
feedback attribution, analysis and report, simulated users, the guard on aliases. Imports
api, registry, understanding and serving; never evaluation, training or workflows.
"""

from llmrec.experiments.analysis import Analysis, Comparison, compare, ratio
from llmrec.experiments.report import analyse, figure, from_log, markdown, metrics

__all__ = [
    "Analysis",
    "Comparison",
    "analyse",
    "compare",
    "figure",
    "from_log",
    "markdown",
    "metrics",
    "ratio",
]
