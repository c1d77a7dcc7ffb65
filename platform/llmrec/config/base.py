"""Defaults shared by every section of the configuration, and its one error type."""

from __future__ import annotations

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_MODEL_NAME = "llmrec-scorer"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message lists them all."""
