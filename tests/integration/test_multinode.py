"""The finetune job on a two-node Ray cluster with a shared storage path."""

import os
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from tests.conftest import JOBS, REPO

pytestmark = pytest.mark.slow


def test_shards_reach_workers_on_both_nodes_and_the_model_is_registered(tmp_path, tiny_base):
    # the tiny random base: placement and registration do not depend on the model's size
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"model.base={tiny_base}",
        f"data.work_dir={tmp_path / 'data'}",
        "data.demo_users=60",
        "data.demo_items=100",
        "data.examples_per_user=2",
        "data.max_history=5",
        "model.max_query_tokens=48",
        "model.max_item_tokens=24",
        "train.epochs=1",
        "train.batch_size=8",
        "train.placement_strategy=STRICT_SPREAD",
        f"train.storage_path={tmp_path / 'shared'}",
        "train.run_name=two-nodes",
        f"registry.tracking_uri={uri}",
        f"registry.artifact_location={tmp_path / 'art'}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{JOBS}{os.pathsep}{REPO}"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "integration" / "multinode_finetune.py"),
            *[a for o in overrides for a in ("--set", o)],
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "registered llmrec-scorer version 1" in out.stdout

    mlflow.set_tracking_uri(uri)
    version = MlflowClient().get_model_version("llmrec-scorer", "1")
    placement = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/train/workers.json")
    workers = placement["epochs"][0]["workers"]
    assert len({w["node_id"] for w in workers}) == 2  # one worker on each node
    assert all(w["samples"] > 0 for w in workers)  # and each trained on its shard
    assert (tmp_path / "shared" / "two-nodes").is_dir()
