from pathlib import Path

import pytest
from llmrec.config import ConfigError, load_config

from tests.conftest import JOBS


@pytest.mark.parametrize("path", sorted((JOBS / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_checked_in_config_loads(path: Path):
    cfg = load_config(path)
    assert cfg.train.epochs >= 1
    assert cfg.model.base


def test_defaults_and_dotted_overrides():
    cfg = load_config(
        None,
        [
            "train.epochs=3",
            "model.target_modules=[q_proj, v_proj]",
            "train.lr=1e-4",
            "data.source=/data/logs",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.model.target_modules == ("q_proj", "v_proj")
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.data.source == "/data/logs"
    assert cfg.flat()["train.epochs"] == 3


def test_every_problem_is_reported_at_once_with_key_and_value():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.lr=-1", "train.epochs=two", "train.nope=1", "model.pooling=max"])
    msg = str(err.value)
    assert "train.epochs must be an int, got 'two'" in msg
    assert "unknown key train.nope" in msg
    assert "model.pooling must be one of 'auto', 'mean', 'last', got 'max'" in msg
    with pytest.raises(ConfigError, match=r"train.lr must be > 0, got -1"):
        load_config(None, ["train.lr=-1"])


def test_malformed_override_and_unknown_section():
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_config(None, ["trian.epochs=1"])
