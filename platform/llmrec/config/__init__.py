"""Typed, frozen configuration: one dataclass per concern, loaded from YAML plus overrides.

A config file is a YAML mapping with the sections ``data``, ``model``, ``train``, ``rank``,
``registry``, ``update`` and ``ray``. Any field can be overridden from the command line with a
dotted key (``--set train.epochs=3``); the value is parsed as YAML (``3`` is an int, ``[a, b]``
a list). Every problem in a config (unknown key, wrong type, value out of range) is collected and
reported at once in a :class:`ConfigError`.

The sections live in one module each (``data``, ``model``, ``train``, ``rank``,
``operations``: registry, update, ray), the whole config and its loading in ``loading``;
everything is importable from ``llmrec.config``, which imports nothing else of llmrec.
"""

from llmrec.config.base import (
    DEFAULT_MODEL_NAME,
    DEFAULT_TRACKING_URI,
    PACKAGED_MINILM,
    ConfigError,
)
from llmrec.config.data import DATA_COLUMNS, DEFAULT_EVENTS, EVENT_ACTIONS, OTHER_EVENTS, DataConfig
from llmrec.config.loading import RETIRED_KEYS, Config, config_from_dict, load_config
from llmrec.config.model import ModelConfig
from llmrec.config.operations import RayConfig, RegistryConfig, UpdateConfig
from llmrec.config.rank import RankConfig
from llmrec.config.train import TrainConfig

__all__ = [
    "DATA_COLUMNS",
    "DEFAULT_EVENTS",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_TRACKING_URI",
    "EVENT_ACTIONS",
    "OTHER_EVENTS",
    "PACKAGED_MINILM",
    "RETIRED_KEYS",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RankConfig",
    "RayConfig",
    "RegistryConfig",
    "TrainConfig",
    "UpdateConfig",
    "config_from_dict",
    "load_config",
]
