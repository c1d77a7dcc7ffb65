"""cluster.yaml cannot be launched here: check it against what the Ray launcher expects."""

import copy

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO


def _config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_the_launcher_schema():
    # prepare_config fills the launcher defaults exactly as `ray up` does, then the schema check
    validate_config(prepare_config(copy.deepcopy(_config())))


def test_cluster_has_a_cpu_head_and_gpu_workers_with_the_project_and_mlflow():
    cfg = _config()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] >= t["min_workers"] for t in gpu)
    assert any("pip install" in c and "llmrec" in c for c in cfg["setup_commands"])
    head_setup = " ".join(cfg["head_setup_commands"])
    assert "mlflow server" in head_setup and "--artifacts-destination" in head_setup
    starts = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert starts.count("MLFLOW_TRACKING_URI=") == 2


def test_the_schema_check_catches_a_typo():
    import pytest
    from jsonschema import ValidationError

    cfg = _config()
    cfg["available_node_types"]["gpu_worker"]["resourcez"] = {"GPU": 1}
    with pytest.raises(ValidationError, match="'resourcez' was unexpected"):
        validate_config(prepare_config(cfg))
