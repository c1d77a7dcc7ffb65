"""The per-worker training loop: the only Ray Train code in the library.

Every worker reads its shard of the examples, trains the adapter with the in-batch softmax
loss (DDP keeps replicas equal), and after each epoch rank 0 evaluates on the validation
users and writes a checkpoint: adapter + temperature, optimizer state, the epoch reached and
the metric history so far. A restarted or resumed run continues from the last checkpoint.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from llmrec.config import ModelConfig, TrainConfig
from llmrec.modeling.losses import in_batch_softmax
from llmrec.modeling.scorer import LLMScorer
from llmrec.training.evaluation import EvalSet, evaluate_scorer

OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "train_state.json"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config`` holds ``model``, ``train`` and ``eval_set``."""
    model_cfg: ModelConfig = config["model"]
    train_cfg: TrainConfig = config["train"]
    eval_set: EvalSet = config["eval_set"]
    torch.set_num_threads(train_cfg.torch_threads)
    torch.manual_seed(train_cfg.seed)
    rank = ray.train.get_context().get_world_rank()

    scorer = LLMScorer(model_cfg)
    optimizer = torch.optim.AdamW(
        [p for p in scorer.parameters() if p.requires_grad],
        lr=train_cfg.lr,
        weight_decay=train_cfg.weight_decay,
    )
    start_epoch, history = _restore(scorer, optimizer)
    model = ray.train.torch.prepare_model(scorer)
    use_autocast = train_cfg.use_gpu and torch.cuda.is_available()
    shard = ray.train.get_dataset_shard("train")

    for epoch in range(start_epoch, train_cfg.epochs):
        scorer.train()
        total, steps, seen, start = 0.0, 0, 0, time.perf_counter()
        for batch in shard.iter_batches(
            batch_size=train_cfg.batch_size, batch_format="numpy", drop_last=True
        ):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                q, i, scale = model(list(batch["query_text"]), list(batch["item_text"]))
            ids = torch.as_tensor(batch["item_index"], device=q.device)
            loss = in_batch_softmax(q, i, ids, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps, seen = total + loss.item(), steps + 1, seen + len(ids)
        elapsed = time.perf_counter() - start
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": _mean_across_workers(total / max(steps, 1), scorer.device),
            "samples_per_s": _sum_across_workers(seen / max(elapsed, 1e-9), scorer.device),
            "temperature": float(1.0 / scorer.scale.item()),
        }
        if rank == 0:
            metrics.update({f"val_{k}": v for k, v in evaluate_scorer(scorer, eval_set).items()})
            history.append(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                _save(Path(tmp), scorer, optimizer, epoch + 1, history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def _restore(scorer: LLMScorer, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as d:
        scorer.load_trained(d)
        optimizer.load_state_dict(torch.load(Path(d) / OPTIMIZER_FILE, weights_only=True))
        state = json.loads((Path(d) / STATE_FILE).read_text())
    return int(state["epoch"]), list(state["history"])


def _save(
    d: Path, scorer: LLMScorer, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]
) -> None:
    scorer.save(d)
    torch.save(optimizer.state_dict(), d / OPTIMIZER_FILE)
    (d / STATE_FILE).write_text(json.dumps({"epoch": epoch, "history": history}))


def read_history(checkpoint_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch metrics stored in a checkpoint written by this loop."""
    return list(json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())["history"])


def _mean_across_workers(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    return _sum_across_workers(value, device) / dist.get_world_size()


def _sum_across_workers(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
