"""The per-worker Ray Train loop of the sequential design.

Every worker reads its shard of history windows, trains the sequential recommender (and the
top layers' adapter when the text encoder is tuned) under DDP; every ``train.eval_every``
epochs rank 0 evaluates on the validation users and every worker reports a checkpoint holding
the current weights (to resume from), the best weights on validation so far (what the driver
registers), the optimizer state and the metric history. Training stops early when validation
NDCG@10 has not improved for ``train.patience`` evaluations.
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
from safetensors.torch import load_file, save_file

from llmrec.config import ModelConfig, TrainConfig
from llmrec.modeling.scorer import LLMScorer
from llmrec.training.distributed import (
    gather_placement,
    is_distributed,
    mean_across_workers,
    sum_across_workers,
)
from llmrec.training.sequential import (
    SequenceEvalSet,
    SequenceInputs,
    SequenceObjective,
    evaluate_sequential,
    load_state,
    optimizer_for,
    trained_state,
)

OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "train_state.json"
CURRENT, BEST = "model.safetensors", "best.safetensors"
SHUFFLE_BUFFER = 4096  # windows; each worker reshuffles its shard every epoch


def sequential_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point of the sequential design.

    ``config`` holds ``model`` and ``train`` (config sections), ``inputs``
    (:class:`SequenceInputs`), ``eval_set`` (:class:`SequenceEvalSet`) and optionally
    ``init_state`` (tensors of :func:`trained_state` to start from: incremental training;
    ignored when the run resumes from its own checkpoint), ``max_steps`` (stop after this
    many optimizer steps per worker; 0: none), ``keep_last`` (register the last epoch,
    not the best on ``eval_set``: an update whose evaluation data must stay unseen),
    ``batch_windows`` (windows per step; default ``train.batch_size``) and ``negatives``
    (explicit negatives: per user, item rows; a window's ``user`` is its place there).
    """
    model_cfg: ModelConfig = config["model"]
    train_cfg: TrainConfig = config["train"]
    inputs: SequenceInputs = config["inputs"]
    eval_set: SequenceEvalSet = config["eval_set"]
    torch.set_num_threads(train_cfg.torch_threads)
    torch.manual_seed(train_cfg.seed)
    rank = ray.train.get_context().get_world_rank()

    text = None
    if model_cfg.text_tuning == "adapter":
        text = LLMScorer(model_cfg, total_steps=int(config.get("total_steps") or 1000))
    objective = SequenceObjective(model_cfg, train_cfg, inputs, text)
    optimizer = optimizer_for(objective, train_cfg)
    state, best = _restore(objective, optimizer)
    if state["epoch"] == 0 and config.get("init_state"):
        load_state(objective, config["init_state"])
    if best is None:
        best = trained_state(objective)
    model = ray.train.torch.prepare_model(
        objective,
        parallel_strategy_kwargs={"find_unused_parameters": True, "broadcast_buffers": False},
    )
    shard = ray.train.get_dataset_shard("train")
    started, first = time.perf_counter(), state["epoch"]
    steps = int(config.get("total_steps") or 0)
    progress = {"step": state["epoch"] * steps // max(train_cfg.epochs, 1)}
    max_steps = int(config.get("max_steps") or 0)
    batch = int(config.get("batch_windows") or train_cfg.batch_size)
    negatives = config.get("negatives") or None
    for epoch in range(state["epoch"], train_cfg.epochs):
        stats = _train_epoch(
            model,
            objective,
            optimizer,
            shard,
            train_cfg,
            epoch,
            progress,
            max_steps,
            batch,
            negatives,
        )
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": mean_across_workers(stats["loss"], objective.device),
            "samples_per_s": sum_across_workers(stats["samples_per_s"], objective.device),
            "data_wait_share": mean_across_workers(stats["data_wait_share"], objective.device),
        }
        placement = gather_placement(int(stats["samples"]))
        evaluate = (epoch + 1) % train_cfg.eval_every == 0 or epoch + 1 == train_cfg.epochs
        if evaluate:
            if text is not None:
                objective.items.refresh()
            value = 0.0
            if rank == 0:
                scores = evaluate_sequential(objective, eval_set)
                metrics.update({f"val_{k}": v for k, v in scores.items()})
                value = scores["ndcg_at_10"]
            value = _from_rank_zero(value, objective.device)
            metrics["val_ndcg_at_10"] = value
            if value > state["best_value"]:
                state.update(best_value=value, best_epoch=epoch + 1, bad_evals=0)
                best = trained_state(objective)
            else:
                state["bad_evals"] += 1
            metrics["best_epoch"] = state["best_epoch"]
        if config.get("keep_last"):
            best = trained_state(objective)
        state["epoch"] = epoch + 1
        stop = train_cfg.patience > 0 and state["bad_evals"] >= train_cfg.patience
        stop = stop or 0 < max_steps <= progress["step"]
        if rank == 0:
            state["history"].append({**metrics, "workers": placement})
            print(_epoch_line(metrics, train_cfg.epochs, started, first, state, stop), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                _save(Path(tmp), objective, optimizer, state, best)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        if stop:
            break


def _epoch_line(
    metrics: dict[str, Any],
    epochs: int,
    started: float,
    first: int,
    state: dict[str, Any],
    stop: bool,
) -> str:
    """``epoch 3/40: loss 6.91, val NDCG@10 0.0612 (best 0.0612 at 3), 880 windows/s, ETA
    2m10s``: one line per epoch."""
    done = metrics["epoch"]
    elapsed = time.perf_counter() - started
    per_epoch = elapsed / max(done - first, 1)
    eta = per_epoch * (epochs - done)
    line = f"epoch {done}/{epochs}: loss {metrics['train_loss']:.4f}"
    if "val_ndcg_at_10" in metrics:
        line += (
            f", val NDCG@10 {metrics['val_ndcg_at_10']:.4f} "
            f"(best {state['best_value']:.4f} at epoch {state['best_epoch']})"
        )
    line += f", {metrics['samples_per_s']:.0f} windows/s, {elapsed:.0f} s"
    if stop:
        return line + f"; stopping: no improvement in {state['bad_evals']} evaluations"
    return line + (f", ETA {eta:.0f} s" if done < epochs else "")


def _train_epoch(
    model: torch.nn.Module,
    objective: SequenceObjective,
    optimizer: torch.optim.Optimizer,
    shard: Any,
    cfg: TrainConfig,
    epoch: int = 0,
    progress: dict[str, int] | None = None,
    max_steps: int = 0,
    batch_size: int = 0,
    negatives: list[list[int]] | None = None,
) -> dict[str, float]:
    """One pass over this worker's windows (shuffled anew each epoch): loss, throughput and
    the data-wait share. ``progress["step"]`` counts optimizer steps across epochs (AdaLoRA's
    rank schedule, when the text adapter is AdaLoRA and tuned); ``negatives``: the explicit
    negatives of the users that windows name in ``user``."""
    progress = progress if progress is not None else {"step": 0}
    text = objective.text
    adalora = getattr(text.model.base_model, "update_and_allocate", None) if text else None
    autocast = cfg.use_gpu and torch.cuda.is_available() and text is not None
    objective.train()
    total, steps, seen, waited = 0.0, 0, 0, 0.0
    start = time.perf_counter()
    batches = iter(
        shard.iter_batches(
            batch_size=batch_size or cfg.batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=SHUFFLE_BUFFER,
            local_shuffle_seed=cfg.seed * 1000 + epoch,
        )
    )
    while not 0 < max_steps <= progress["step"]:
        t0 = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        windows = [list(w) for w in batch["items"]]
        queries = [list(q) for q in batch["queries"]]
        values = [list(v) for v in batch["values"]] if cfg.objective != "contrastive" else None
        first = [int(f) for f in batch["first"]] if "first" in batch else None
        against = None
        if negatives and "user" in batch:
            owners = [int(u) for u in batch["user"]]
            against = [negatives[u] if 0 <= u < len(negatives) else [] for u in owners]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(windows, queries, values, first, against)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if adalora is not None:  # reallocates ranks from the gradients of this step
            adalora(progress["step"])
        progress["step"] += 1
        total, steps, seen = total + float(loss.item()), steps + 1, seen + len(windows)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return {
        "loss": total / max(steps, 1),
        "samples": float(seen),
        "samples_per_s": seen / elapsed,
        "data_wait_share": waited / elapsed,
    }


def _from_rank_zero(value: float, device: torch.device) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def _save(
    d: Path,
    objective: SequenceObjective,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    best: dict[str, torch.Tensor],
) -> None:
    save_file(trained_state(objective), str(d / CURRENT))
    save_file(best, str(d / BEST))
    torch.save(optimizer.state_dict(), d / OPTIMIZER_FILE)
    (d / STATE_FILE).write_text(json.dumps(state))


def _restore(
    objective: SequenceObjective, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    state: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "best_value": -1.0,
        "best_epoch": 0,
        "bad_evals": 0,
    }
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return state, None
    with checkpoint.as_directory() as d:
        load_state(objective, load_file(str(Path(d) / CURRENT)))
        optimizer.load_state_dict(torch.load(Path(d) / OPTIMIZER_FILE, weights_only=True))
        state.update(json.loads((Path(d) / STATE_FILE).read_text()))
        best = load_file(str(Path(d) / BEST))
    return state, best


__all__ = ["BEST", "load_state", "sequential_loop_per_worker", "trained_state"]
