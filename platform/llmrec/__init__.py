"""llmrec: train, register and serve recommenders scored by a language model, on Ray.

Subpackages: ``data`` (contract, readers, splits, text, Ray Data pipeline), ``modeling``
(the LLM scorer, losses, baselines), ``training`` (Ray Train loop, metrics, evaluation),
``serving`` (plain serving classes); modules ``config``, ``registry`` (MLflow),
``lifecycle`` (promotion gate), ``bundle`` (a registered version's files), ``workflow``
(the fine-tuning workflow) and ``console`` (what jobs print: quiet logs, one-line errors,
progress lines). Importing ``llmrec`` itself loads nothing heavy.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
