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


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf", "1e999"])
def test_non_finite_numbers_fail_validation(value):
    with pytest.raises(ConfigError, match=r"train.lr must be a finite number, got "):
        load_config(None, [f"train.lr={value}"])


def test_value_errors_are_reported_with_type_errors():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.epochs=two", "train.lr=-1", "model.lora_r=0"])
    msg = str(err.value)
    assert "train.epochs must be an int, got 'two'" in msg
    assert "train.lr must be > 0, got -1.0" in msg
    assert "model.lora_r must be >= 1, got 0" in msg


def test_yaml_syntax_errors_name_the_file_or_override(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: not valid YAML (")
    assert "line 3" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"override 'train.epochs=\[1,': not valid YAML \("):
        load_config(None, ["train.epochs=[1,"])
    with pytest.raises(ConfigError, match=r"nope.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")
    flat = tmp_path / "flat.yaml"
    flat.write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"train must be a mapping, got 5"):
        load_config(flat)


def test_impossible_resources_name_the_key_and_what_the_cluster_has():
    two_cpus = [{"CPU": 2.0}]
    cfg = load_config(None, ["train.use_gpu=true"])
    (gpu,) = [p for p in cfg.train.resource_problems(two_cpus) if "GPU" in p]
    assert gpu == (
        "train.use_gpu=true needs one GPU per worker (train.num_workers=2), the cluster has 0 GPUs"
    )
    many = load_config(None, ["train.num_workers=8", "train.cpus_per_worker=1"]).train
    assert many.resource_problems([{"CPU": 4.0}]) == [
        "train.num_workers x train.cpus_per_worker = 8 x 1 = 8 CPUs, the cluster has 4"
    ]
    full = load_config(None, ["train.num_workers=4"]).train
    (starved,) = full.resource_problems([{"CPU": 4.0}])
    assert "none is left for the Ray Data tasks" in starved
    spread = load_config(None, ["train.placement_strategy=STRICT_SPREAD"]).train
    assert "1 nodes can hold one" in spread.resource_problems([{"CPU": 8.0}])[0]
    assert load_config(None, []).train.resource_problems([{"CPU": 4.0}]) == []
    assert (
        load_config(None, ["train.use_gpu=true"]).train.resource_problems(
            [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
        )
        == []
    )


def test_a_local_cluster_too_small_stops_before_training(monkeypatch, capsys):
    import _common  # jobs/_common.py
    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 4.0}}])
    cfg = load_config(None, ["train.use_gpu=true"])
    with pytest.raises(SystemExit) as exit_info:
        _common.check_cluster(cfg, joined=False)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.use_gpu=true needs one GPU per worker")
    assert err.rstrip().endswith("the cluster has 0 GPUs (a local cluster: ray.num_cpus=4)")
    _common.check_cluster(cfg, joined=True)  # an autoscaler may add GPU nodes: a warning
    assert "warning: train.use_gpu=true needs one GPU" in capsys.readouterr().out


def test_an_override_can_set_one_entry_of_a_mapping():
    cfg = load_config(None, ["data.columns.value=rating", "data.events.skip=negative"])
    assert cfg.data.columns == {"value": "rating"}
    assert cfg.data.events == {"skip": "negative"}
    with pytest.raises(ConfigError, match=r"train\.epochs must be an int"):
        load_config(None, ["train.epochs.x=3"])
