"""jobs/build_index.py: Ray Data batch inference over the catalogue with an actor pool."""

import build_index  # jobs/build_index.py
import mlflow
import numpy as np
import pandas as pd
import pytest
from llmrec.registry import store as registry
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def test_actor_pool_embeddings_equal_the_registered_ones(trained, tmp_path, capsys):
    out = tmp_path / "index"
    args = [
        "--model",
        "models:/llmrec-scorer@champion",
        "--out",
        str(out),
        "--actors",
        "2",
        "--batch-size",
        "64",
        "--set",
        f"registry.tracking_uri={trained['tracking_uri']}",
    ]
    assert build_index.main(args) == 0
    assert "embedded 200 items" in capsys.readouterr().out
    got = pd.read_parquet(out).set_index("item_id").sort_index()
    mlflow.set_tracking_uri(trained["tracking_uri"])
    _, bundle = registry.download_bundle("models:/llmrec-scorer@champion")
    want = pd.read_parquet(bundle / "items.parquet").set_index("item_id").sort_index()
    assert list(got.index) == list(want.index)
    assert np.allclose(np.stack(got["embedding"]), np.stack(want["embedding"]), atol=1e-5)
    tags = MlflowClient().get_model_version("llmrec-scorer", "1").tags
    run = MlflowClient().get_run(tags["embeddings_run_id"])
    assert run.data.tags["llmrec.model_version"] == "1"
    assert run.data.metrics["items"] == 200
