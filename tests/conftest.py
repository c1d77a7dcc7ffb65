"""Shared fixtures: offline settings, the ml-100k path, a tiny random base model, one Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "jobs"
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
sys.path.insert(0, str(JOBS))  # the job scripts import their shared helpers as `_common`


@pytest.fixture(scope="session")
def ml100k() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (it is not redistributed with the repo)")
    return ML100K


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's tokenizer, on disk."""
    import torch
    from llmrec.config import PACKAGED_MINILM
    from llmrec.modeling.scorer import resolve_base
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(PACKAGED_MINILM))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster for the whole session (4 logical CPUs on 2 cores, see
    STACK_NOTES: data tasks must be able to run beside 2 training workers)."""
    import ray
    from llmrec.serving.http.proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    # Serve's HTTP proxy answers requests lost with a dead ingress replica with a 503
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def trained(ray_local, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the finetune job once, through its entry point, on small demo data with 2 workers
    on the session's Ray and a fresh sqlite MLflow store; later tests use its registry."""
    import finetune  # jobs/finetune.py

    root = tmp_path_factory.mktemp("finetune")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = [
        f"data.work_dir={root / 'data'}",
        "data.demo_users=120",
        "data.demo_items=200",
        "data.examples_per_user=2",
        "data.cold_items=0.1",  # the cold-start protocol: 10% of items never trained on
        "data.max_history=5",
        "model.max_query_tokens=64",
        "model.max_item_tokens=32",
        "train.epochs=10",  # the sequential design: ~8 steps an epoch on this data
        "train.batch_size=8",
        "train.num_workers=2",
        f"train.storage_path={root / 'train'}",
        "train.run_name=test-run",
        f"registry.tracking_uri={tracking_uri}",
        f"registry.artifact_location={root / 'mlartifacts'}",
    ]
    args = [a for o in overrides for a in ("--set", o)]
    assert finetune.main(args) == 0
    return {"root": root, "tracking_uri": tracking_uri, "overrides": overrides}
