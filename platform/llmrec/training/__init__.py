"""Training: the Ray Train loop and driver, the designs (two-tower, sequential), validation
during training. Imports data, modeling, evaluation (the protocol), console.

The loop and driver import Ray Train; import them from their modules
(``llmrec.training.loop``, ``llmrec.training.trainer``).
"""

__all__: list[str] = []
