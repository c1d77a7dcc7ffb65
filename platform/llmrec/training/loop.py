"""The per-worker training loop: the only Ray Train code in the library.

Every worker reads its shard of the examples, trains the adapter with the in-batch softmax
loss (DDP keeps replicas equal), and after each epoch rank 0 evaluates on the validation
users and writes a checkpoint: adapter + temperature, optimizer state, the epoch reached and
the metric history so far. A restarted or resumed run continues from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from llmrec.config import ModelConfig, TrainConfig
from llmrec.modeling.losses import in_batch_softmax
from llmrec.modeling.scorer import LLMScorer
from llmrec.training.distributed import gather_placement, mean_across_workers, sum_across_workers
from llmrec.training.validation import EvalSet, evaluate_scorer

OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "train_state.json"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point.

    ``config`` holds ``model`` and ``train`` (config sections), ``eval_set`` (validation users)
    and optionally ``init_weights`` (adapter and temperature tensors to start from, for
    incremental fine-tuning; ignored when resuming from a checkpoint).
    """
    model_cfg: ModelConfig = config["model"]
    train_cfg: TrainConfig = config["train"]
    eval_set: EvalSet = config["eval_set"]
    torch.set_num_threads(train_cfg.torch_threads)
    torch.manual_seed(train_cfg.seed)
    rank = ray.train.get_context().get_world_rank()

    total_steps = int(config.get("total_steps") or 1000)
    scorer = LLMScorer(
        model_cfg, rating_head=train_cfg.objective != "contrastive", total_steps=total_steps
    )
    if train_cfg.gradient_checkpointing:
        scorer.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(
        [p for p in scorer.parameters() if p.requires_grad],
        lr=train_cfg.lr,
        weight_decay=train_cfg.weight_decay,
    )
    start_epoch, history = _restore(scorer, optimizer)
    if start_epoch == 0 and config.get("init_weights"):
        scorer.load_state(config["init_weights"])
    model = ray.train.torch.prepare_model(scorer)
    shard = ray.train.get_dataset_shard("train")

    texts: list[str] = config.get("catalogue_texts") or []
    use_cache = train_cfg.catalogue_negatives and train_cfg.objective != "rating"
    log_q = None
    if train_cfg.logq_correction and config.get("item_log_q") is not None:
        log_q = torch.tensor(config["item_log_q"], dtype=torch.float32, device=scorer.device)
    progress = {"step": start_epoch * total_steps // train_cfg.epochs}
    for epoch in range(start_epoch, train_cfg.epochs):
        cache = _encode_catalogue(scorer, texts) if use_cache else None
        stats = _train_epoch(model, scorer, optimizer, shard, train_cfg, cache, progress, log_q)
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": mean_across_workers(stats["loss"], scorer.device),
            "samples_per_s": sum_across_workers(stats["samples_per_s"], scorer.device),
            "data_wait_share": mean_across_workers(stats["data_wait_share"], scorer.device),
            "temperature": float(1.0 / scorer.scale.item()),
        }
        placement = gather_placement(int(stats["samples"]))
        if rank == 0:
            metrics.update({f"val_{k}": v for k, v in evaluate_scorer(scorer, eval_set).items()})
            history.append({**metrics, "workers": placement})
            print(
                f"epoch {epoch + 1}/{train_cfg.epochs}: loss {metrics['train_loss']:.4f}, "
                f"val NDCG@10 {metrics['val_ndcg_at_10']:.4f}, "
                f"{metrics['samples_per_s']:.1f} samples/s, "
                f"waiting for data {100 * metrics['data_wait_share']:.1f}% of the time",
                flush=True,
            )
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                _save(Path(tmp), scorer, optimizer, epoch + 1, history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def _train_epoch(
    model: torch.nn.Module,
    scorer: LLMScorer,
    optimizer: torch.optim.Optimizer,
    shard: Any,
    cfg: TrainConfig,
    cache: torch.Tensor | None = None,
    progress: dict[str, int] | None = None,
    log_q: torch.Tensor | None = None,
) -> dict[str, float]:
    """One pass over this worker's shard; returns loss, throughput and the data-wait share.

    ``cache`` (catalogue item embeddings) adds every catalogue item as a negative;
    ``progress["step"]`` counts optimizer steps across epochs (AdaLoRA's rank schedule);
    ``log_q`` (log share of each catalogue item in the training interactions) corrects the
    in-batch softmax for popularity-proportional negatives."""
    progress = progress if progress is not None else {"step": 0}
    adalora = getattr(scorer.model.base_model, "update_and_allocate", None)
    scorer.train()
    use_autocast = cfg.use_gpu and torch.cuda.is_available()
    total, steps, seen, waited = 0.0, 0, 0, 0.0
    start = time.perf_counter()
    batches = iter(
        shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy", drop_last=True)
    )
    optimizer.zero_grad(set_to_none=True)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        steps += 1
        sync = steps % cfg.grad_accum_steps == 0
        # DDP all-reduces gradients only on the micro-batch that ends an accumulation.
        no_sync = getattr(model, "no_sync", None)
        with no_sync() if (no_sync and not sync) else contextlib.nullcontext():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                q, i, scale, rating = model(list(batch["query_text"]), list(batch["item_text"]))
            ids = torch.tensor(batch["item_index"], device=q.device)
            loss = objective_loss(cfg, q, i, ids, scale, rating, batch, cache, log_q)
            (loss / cfg.grad_accum_steps).backward()
        if sync:
            optimizer.step()
            if adalora is not None:  # reallocates ranks from the gradients, before zeroing
                adalora(progress["step"])
            progress["step"] += 1
            optimizer.zero_grad(set_to_none=True)
        total, seen = total + loss.item(), seen + len(ids)
    if steps % cfg.grad_accum_steps:  # a partial accumulation at the end of the shard
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return {
        "loss": total / max(steps, 1),
        "samples": float(seen),
        "samples_per_s": seen / elapsed,
        "data_wait_share": waited / elapsed,
    }


def objective_loss(
    cfg: TrainConfig,
    q: torch.Tensor,
    i: torch.Tensor,
    ids: torch.Tensor,
    scale: torch.Tensor,
    rating: torch.Tensor | None,
    batch: dict[str, Any],
    cache: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of ``train.objective`` on one batch."""
    if cfg.objective == "contrastive":
        return in_batch_softmax(q, i, ids, scale, cache, log_q)
    assert rating is not None, "the rating objective needs the scorer's rating head"
    target = torch.as_tensor(batch["value"], dtype=rating.dtype, device=rating.device)
    mse = F.mse_loss(rating, target)
    if cfg.objective == "rating":
        return mse
    return in_batch_softmax(q, i, ids, scale, cache, log_q) + cfg.rating_weight * mse


def _encode_catalogue(scorer: LLMScorer, texts: list[str]) -> torch.Tensor | None:
    """Item embeddings of the whole catalogue, each worker encoding its share."""
    if not texts:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return scorer.encode(texts, kind="item").to(scorer.device)
    world, rank = dist.get_world_size(), dist.get_rank()
    per = -(-len(texts) // world)
    mine = scorer.encode(texts[rank * per : (rank + 1) * per], kind="item").to(scorer.device)
    padded = torch.zeros(per, mine.shape[1], device=scorer.device, dtype=mine.dtype)
    padded[: len(mine)] = mine
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[: len(texts)]


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
