"""Driver side of training: build the TorchTrainer from config and run it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.data
import ray.train
import torch
from ray.train.torch import TorchTrainer

from llmrec import console
from llmrec.config import Config
from llmrec.training.loop import read_history, train_loop_per_worker
from llmrec.training.sequential import SequenceEvalSet, SequenceInputs
from llmrec.training.sequential_loop import sequential_loop_per_worker
from llmrec.training.validation import EvalSet


@dataclass(frozen=True)
class TrainOutcome:
    """Where the final checkpoint was copied, the per-epoch metrics and the run's identity."""

    checkpoint_dir: Path
    history: list[dict[str, Any]]
    run_name: str
    storage_path: str
    seconds: float


def default_run_name() -> str:
    return time.strftime("llmrec-%Y%m%d-%H%M%S")


def _total_steps(cfg: Config, train_ds: ray.data.Dataset) -> int:
    """Optimizer steps of the whole run (counts the examples: one pass of the pipeline)."""
    t = cfg.train
    per_worker = train_ds.count() // t.num_workers
    accumulate = t.grad_accum_steps if cfg.model.architecture == "text" else 1
    return t.epochs * max(per_worker // (t.batch_size * accumulate), 1)


def run_training(
    cfg: Config,
    train_ds: ray.data.Dataset,
    eval_set: EvalSet | SequenceEvalSet,
    local_dir: str | Path,
    init_weights: dict[str, torch.Tensor] | None = None,
    catalogue_texts: list[str] | None = None,
    item_log_q: np.ndarray | None = None,
    inputs: SequenceInputs | None = None,
    loop_options: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Fine-tune the scorer with Ray Train and copy the last checkpoint to ``local_dir``.

    Running again with the same ``train.run_name`` and ``train.storage_path`` resumes that run
    from its last checkpoint (Ray Train V2 semantics). ``init_weights`` (trained tensors of a
    registered version) start a fresh run from that version. The ``text`` design takes
    ``catalogue_texts`` (item texts in catalogue index order: the catalogue negatives of
    ``train.catalogue_negatives``) and ``item_log_q`` (log popularity: the sampling-bias
    correction of ``train.logq_correction``); the ``sequential`` design takes ``inputs`` (the
    catalogue's and the requests' texts and base-model embeddings) and ``loop_options``
    (``max_steps``, ``keep_last``: see :func:`sequential_loop_per_worker`).
    """
    t = cfg.train
    storage = t.storage_path if "://" in t.storage_path else str(Path(t.storage_path).resolve())
    run_name = t.run_name or default_run_name()
    resources = {"CPU": t.cpus_per_worker, **({"GPU": 1.0} if t.use_gpu else {})}
    steps = _total_steps(cfg, train_ds) if cfg.model.adapter == "adalora" else 0
    loop: Any
    if cfg.model.architecture == "sequential":
        loop = sequential_loop_per_worker
        loop_config: dict[str, Any] = {
            "model": cfg.model,
            "train": t,
            "inputs": inputs,
            "eval_set": eval_set.head(t.eval_users),
            "init_state": init_weights,
            "total_steps": steps,
            **(loop_options or {}),
        }
    else:
        loop = train_loop_per_worker
        loop_config = {
            "model": cfg.model,
            "train": t,
            "eval_set": eval_set.head(t.eval_users),
            "init_weights": init_weights,
            "catalogue_texts": catalogue_texts,
            "item_log_q": item_log_q,
            "total_steps": steps,
        }
    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.num_workers,
            use_gpu=t.use_gpu,
            resources_per_worker=resources,
            placement_strategy=t.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=t.num_to_keep),
            # Ray Train V2's RunConfig (the stubs mypy reads are V1's)
            logging_config=ray.train.LoggingConfig(  # type: ignore[call-arg]
                log_level=console.train_log_level()
            ),
        ),
        datasets={"train": train_ds},
    )
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    target = Path(local_dir)
    result.checkpoint.to_directory(str(target))
    return TrainOutcome(target, read_history(target), run_name, storage, seconds)
