"""The ``train`` section: workers, optimisation, objectives and checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainConfig:
    """The Ray Train run: workers, optimisation, checkpoints."""

    epochs: int = 50
    """Passes over the training examples (the ``text`` design needs 2 to 3)."""
    batch_size: int = 32
    """Examples per worker per step: user windows (``sequential``; every position of a window
    is scored) or (user, item) pairs (``text``; the other items of a batch are the
    negatives)."""
    batch_positions: bool = False
    """``sequential``: size a step by the positions it scores, not by its windows. Histories
    shorter than ``model.seq_len`` give short windows, so a step takes ``batch_size x
    seq_len / (mean positions per window)`` windows: about as many scored positions as
    ``batch_size`` full windows. Faster on short histories (amazon-games: 18 minutes a seed
    instead of 51), but fewer optimizer steps an epoch: the demo data trained 10 epochs
    reached a third of its validation NDCG@10, so it is off by default (see
    docs/training.md)."""
    lr: float = 2e-3
    """AdamW learning rate (the ``text`` design's adapter wants about 5e-4)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    num_workers: int = 2
    """Ray Train workers (data-parallel, one model replica each)."""
    use_gpu: bool = False
    """One GPU per worker when true."""
    cpus_per_worker: float = 1.0
    """Logical CPUs reserved per worker."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How workers are placed on nodes (``STRICT_SPREAD``: one worker per node)."""
    torch_threads: int = 1
    """Intra-op threads per worker (keep workers x threads <= cores)."""
    seed: int = 0
    """Seed of model init, shuffling and sampling."""
    storage_path: str = "runs/train"
    """Where Ray Train writes checkpoints (a local folder or an ``s3://``-style URI)."""
    run_name: str = ""
    """Ray Train run name; empty = a fresh timestamped name. Reusing a name resumes that run."""
    num_to_keep: int = 2
    """Checkpoints kept."""
    max_failures: int = 1
    """Worker-group restarts allowed before the run fails."""
    eval_users: int = 0
    """Users in the per-epoch validation (0 = all), to bound its cost on big data."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x this x workers)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for big bases, more compute."""
    objective: Literal["contrastive", "rating", "both"] = "contrastive"
    """``contrastive``: softmax of each user's item against the other items (ranking);
    ``rating``: mean squared error of a score head (``a * cos(user, item) + b``) against the
    interaction's value (explicit-rating regression); ``both``: their sum, the rating term
    weighted by ``rating_weight``."""
    rating_weight: float = 0.1
    """Weight of the rating term when ``objective`` is ``both``."""
    catalogue_negatives: bool = False
    """Besides the batch's other items, score every catalogue item as a negative, from item
    embeddings cached at the start of each epoch (no gradient through them): mixed negative
    sampling. Costs one catalogue encoding per epoch, shared by the workers."""
    logq_correction: bool = False
    """Subtract the log of each item's share of the training interactions from its in-batch
    logits (sampling-bias correction, Yi et al. 2019). In-batch negatives are popular items
    in proportion to their popularity; uncorrected, the softmax learns to rank popular items
    down. On ml-100k (seed 0) it raised the LLM's validation NDCG@10 from 0.0384 to 0.0478
    but not its test NDCG@10 (0.0399 -> 0.0394), and lowered the hybrid's (which adds a
    popularity prior of its own): off by default."""
    eval_every: int = 1
    """Evaluate on validation (and checkpoint) every this many epochs."""
    patience: int = 10
    """Stop when validation NDCG@10 has not improved for this many evaluations (0 = never);
    the registered model is the best one on validation either way."""
    id_dropout: float = 0.5
    """``sequential``: share of items whose ID embedding is left out in each step, so that the
    text part of an item vector learns to rank on its own (items never trained on). At 0.1 the
    ID embeddings overfit the small demo data (validation NDCG@10 0.07 against 0.19 at 0.5);
    on ml-100k 0.1 and 0.5 tie on validation (0.0966 and 0.0962, one seed)."""
    query_align_weight: float = 0.1
    """``sequential``: weight of the request-alignment term: an item's own text, given as the
    request of a user with no history, must rank that item first. Teaches the request
    projection on data without typed requests."""
    negatives: int = 0
    """``sequential``: 0 scores every position against the whole catalogue (full softmax);
    N > 0 against N uniformly sampled items shared by the batch (large catalogues)."""
    negative_weight: float = 1.0
    """``sequential``: weight of the explicit-negative term: at every scored position of a
    user who gave an item a ``negative`` event (``data.events``, e.g. ``dislike``), that
    item must score below the position's target (``softplus(s_neg - s_target)``). 0: such
    items are only kept out of the positives."""
    text_lr: float = 1e-4
    """``sequential`` with ``model.text_tuning: adapter``: learning rate of the text adapter
    (the sequential model learns at ``lr``; at 2e-3 the adapter moved the text embeddings
    faster than the item vectors could follow)."""
    text_batch: int = 64
    """``sequential`` with ``model.text_tuning: adapter``: texts re-encoded with gradient per
    step (the rest come from a cache updated as texts are re-encoded)."""
    init_from: str = ""
    """Start from a registered adapter (``models:/llmrec-scorer@champion``) instead of a fresh
    one: incremental fine-tuning. Ignored when the run resumes from its own checkpoint."""

    def problems(self) -> list[str]:
        out = []
        for name in (
            "epochs",
            "batch_size",
            "num_workers",
            "torch_threads",
            "num_to_keep",
            "grad_accum_steps",
        ):
            if getattr(self, name) < 1:
                out.append(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            out.append(f"train.batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if self.lr <= 0:
            out.append(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            out.append(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.cpus_per_worker < 0:
            out.append(f"train.cpus_per_worker must be >= 0, got {self.cpus_per_worker}")
        if self.max_failures < 0:
            out.append(f"train.max_failures must be >= 0, got {self.max_failures}")
        if self.rating_weight < 0:
            out.append(f"train.rating_weight must be >= 0, got {self.rating_weight}")
        if self.eval_users < 0:
            out.append(f"train.eval_users must be >= 0, got {self.eval_users}")
        for name in ("eval_every", "text_batch"):
            if getattr(self, name) < 1:
                out.append(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("patience", "negatives"):
            if getattr(self, name) < 0:
                out.append(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.id_dropout < 1.0:
            out.append(f"train.id_dropout must be in [0, 1), got {self.id_dropout}")
        if not self.text_lr > 0:
            out.append(f"train.text_lr must be > 0, got {self.text_lr}")
        if self.query_align_weight < 0:
            out.append(f"train.query_align_weight must be >= 0, got {self.query_align_weight}")
        if self.negative_weight < 0:
            out.append(f"train.negative_weight must be >= 0, got {self.negative_weight}")
        return out

    def resource_problems(self, nodes: Sequence[Mapping[str, float]]) -> list[str]:
        """Why a cluster whose alive nodes have ``nodes`` resources (``{"CPU": 4.0,
        "GPU": 1.0, ...}`` each) cannot run these workers; empty when it can.

        Ray would otherwise wait for the resources forever: a GPU that is not there, more
        CPUs than the cluster has, or no CPU left for the Ray Data tasks that feed the
        workers.
        """
        n, cpus = self.num_workers, self.cpus_per_worker
        total_cpu = sum(node.get("CPU", 0.0) for node in nodes)
        total_gpu = sum(node.get("GPU", 0.0) for node in nodes)
        out = []
        if self.use_gpu and total_gpu < n:
            out.append(
                f"train.use_gpu=true needs one GPU per worker (train.num_workers={n}), "
                f"the cluster has {total_gpu:g} GPUs"
            )
        need = n * cpus
        if need > total_cpu:
            out.append(
                f"train.num_workers x train.cpus_per_worker = {n} x {cpus:g} = {need:g} CPUs, "
                f"the cluster has {total_cpu:g}"
            )
        elif total_cpu - need < 1:
            out.append(
                f"train.num_workers x train.cpus_per_worker = {n} x {cpus:g} reserve all "
                f"{total_cpu:g} CPUs of the cluster, none is left for the Ray Data tasks "
                "that feed the workers"
            )
        largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
        if cpus > largest:
            out.append(
                f"train.cpus_per_worker={cpus:g} fits on no node (the largest has {largest:g} CPUs)"
            )
        fits = sum(node.get("CPU", 0.0) >= cpus for node in nodes)
        if self.placement_strategy == "STRICT_SPREAD" and fits < n:
            out.append(
                f"train.placement_strategy=STRICT_SPREAD puts each of the {n} workers on its "
                f"own node, {fits} nodes can hold one"
            )
        if self.placement_strategy == "STRICT_PACK" and need > largest:
            out.append(
                f"train.placement_strategy=STRICT_PACK puts all workers ({need:g} CPUs) on "
                f"one node, the largest has {largest:g} CPUs"
            )
        return out
