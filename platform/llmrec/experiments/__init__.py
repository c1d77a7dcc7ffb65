"""Online experiments: the analysis of an impression log, its report, and simulated users."""

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
