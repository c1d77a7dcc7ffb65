"""The fine-tuning workflow: data -> Ray Data -> Ray Train -> evaluation -> MLflow registry.

``jobs/finetune.py`` parses arguments, starts or joins Ray and calls :func:`finetune`; this
module wires the library pieces and holds no Ray start-up and no argument parsing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from llmrec import lifecycle, registry
from llmrec.bundle import ModelBundle, write_bundle
from llmrec.config import Config
from llmrec.data.catalogue import Catalogue
from llmrec.data.pipeline import item_log_frequency
from llmrec.data.prepare import Prepared, load_source, prepare, split_and_save
from llmrec.lineage import (
    data_fingerprint,
    git_commit,
    model_card,
    objective_name,
    training_summary,
)
from llmrec.modeling.baselines import Popularity, interaction_matrix
from llmrec.modeling.scorer import HEAD_FILE
from llmrec.modeling.sequential import load_trained
from llmrec.modeling.towers import Towers
from llmrec.ranking.hybrid import HybridScorer
from llmrec.training import designs, offline, reports
from llmrec.training.metrics import target_ranks
from llmrec.training.trainer import run_training


class IncompatibleInitError(ValueError):
    """``train.init_from`` names a version trained with another base or adapter shape."""


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run produced."""

    version: registry.RegisteredVersion
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float
    data_summary: str
    gate: lifecycle.GateDecision | None


def finetune(cfg: Config, log: Any = print) -> FinetuneResult:
    """Run the whole workflow on an initialised Ray; returns the registered version."""
    registry.use_tracking(cfg.registry)
    if cfg.train.init_from:  # fail before the data work when the version is unusable
        registry.download_bundle(cfg.train.init_from)
    log(f"data: reading {cfg.data.source}")
    prepared = prepare(load_source(cfg.data.source, cfg.data), cfg.data.work_dir)
    log(prepared.summary())
    split, cold = split_and_save(
        prepared, cfg.data.min_core, cfg.data.cold_items, cfg.data.cold_seed
    )
    catalogue = prepared.catalogue
    sequences = prepared.out_dir / "train_sequences.parquet"
    init = init_weights(cfg, catalogue) if cfg.train.init_from else None
    protocol = offline.Protocol.create(split, catalogue, cold)
    if cold:
        log(f"cold start: {len(cold)} items held out of training")
    data = designs.training_data(cfg, sequences, catalogue, protocol, init)
    log(
        f"split: {split.num_users} users, {len(protocol.catalogue)} items after "
        f"{cfg.data.min_core}-core (catalogue {len(catalogue)}); training the "
        f"{cfg.model.architecture} design on Ray Train with {cfg.train.num_workers} workers"
    )
    with tempfile.TemporaryDirectory(prefix="llmrec-") as tmp:
        log_q = item_log_frequency(sequences, catalogue) if cfg.train.logq_correction else None
        outcome = run_training(
            cfg,
            data.dataset,
            data.eval_set,
            Path(tmp) / "checkpoint",
            init,
            catalogue.texts(),
            log_q,
            data.inputs,
        )
        log(training_summary(outcome))
        towers, vectors = designs.trained_towers(cfg, outcome.checkpoint_dir, catalogue, data)
        item_emb = torch.as_tensor(vectors)
        index = catalogue.index
        rows = torch.as_tensor([index[i] for i in protocol.catalogue.ids], dtype=torch.long)
        table, fit, groups_md = evaluation_table(
            cfg, protocol, towers, item_emb[rows].numpy(), prepared.users
        )
        metrics = {
            ("" if r["method"] == "llm" else f"{r['method']}_") + f"{r['split']}_{k}": float(v)
            for r in table.to_dict("records")
            for k, v in r.items()
            if k not in ("method", "split")
        }
        hybrid = None
        if fit is not None:
            hybrid = serving_hybrid(cfg, fit, catalogue, item_emb.numpy(), prepared)
            log(f"hybrid: {fit.weights.describe()} (EASE lambda {fit.ease_lambda:g})")
        metrics["train_seconds"] = outcome.seconds
        fingerprint = data_fingerprint(prepared)
        champion = _champion_metrics(cfg)
        card = model_card(cfg, prepared, fingerprint, metrics, outcome, towers, champion)
        bundle = write_bundle(
            Path(tmp) / "bundle",
            cfg,
            towers,
            catalogue,
            item_emb,
            prepared.interactions,
            card,
            hybrid,
            fit.meta() | {"weights_text": fit.weights.describe()} if fit else None,
        )
        version = registry.log_and_register(
            cfg.registry,
            run_name=outcome.run_name,
            params=cfg.flat(),
            history=outcome.history,
            metrics=metrics,
            bundle_dir=bundle,
            model_card=card,
            tags={
                "dataset_fingerprint": fingerprint,
                "data_source": cfg.data.source,
                "base_model": cfg.model.base,
                "adapter": cfg.model.adapter,
                "objective": objective_name(cfg),
                "git_commit": git_commit(),
                "ray_train_run": outcome.run_name,
                "init_from": cfg.train.init_from or "none",
            },
            extra_dicts={
                "train/workers.json": {
                    "epochs": [
                        {"epoch": r["epoch"], "workers": r.get("workers", [])}
                        for r in outcome.history
                    ]
                },
                "data/summary.json": {
                    "rejected": prepared.rejected,
                    "users": split.num_users,
                    "items": len(catalogue),
                    "interactions": prepared.interactions.num_rows,
                },
            },
            extra_texts={
                "evaluation/table.md": offline.to_markdown(table) + "\n\n" + groups_md,
                "evaluation/table.csv": table.to_csv(index=False),
            },
        )
    gate = None
    if cfg.registry.auto_promote:
        gate = lifecycle.promotion_gate(cfg.registry, version.version)
        log(f"promotion gate: {gate.reason}")
        version = registry.get_version(version.name, version.version, version.run_id)
    return FinetuneResult(
        version, metrics, outcome.history, outcome.seconds, prepared.summary(), gate
    )


def evaluation_table(
    cfg: Config,
    protocol: offline.Protocol,
    towers: Towers,
    item_emb: np.ndarray,
    users: Any = None,
) -> tuple[pd.DataFrame, offline.HybridFit | None, str]:
    """The trained model, and the hybrid tuned on validation (``rank.hybrid``), on
    validation and test: accuracy and beyond-accuracy measures; and the test quality per
    user group (activity, and ``users``' attributes) as a Markdown section."""
    parts = {name: protocol.part(name) for name in ("val", "test")}
    queries = {name: offline.user_vectors(towers, part) for name, part in parts.items()}
    rows = []
    scored = {"llm": {name: queries[name] @ item_emb.T for name in parts}}
    fit = None
    if cfg.rank.hybrid:
        fit = offline.fit_hybrid(protocol, item_emb, queries["val"], cfg.rank.cf, rank=cfg.rank)
        scored["hybrid"] = {
            name: fit.scorers[name].scores(
                queries[name], part.histories, requests=offline.requests_of(part)
            )
            for name, part in parts.items()
        }
    for method, by_part in scored.items():
        for name, part in parts.items():
            rows.append(
                {"method": method, "split": name, **offline.evaluate(protocol, part, by_part[name])}
            )
            if name == "test" and len(part.cold_rows):
                rows.append(offline.cold_row(protocol, part, by_part[name], method))
    test = parts["test"]
    ranks = {m: target_ranks(s["test"], test.targets, test.histories) for m, s in scored.items()}
    groups_md, _ = reports.group_section(protocol, reports.users_frame(users), ranks)
    return pd.DataFrame(rows), fit, groups_md


def serving_hybrid(
    cfg: Config,
    fit: offline.HybridFit,
    catalogue: Catalogue,
    item_emb: np.ndarray,
    prepared: Prepared,
) -> HybridScorer:
    """The hybrid a served version uses: the tuned weights, with the CF part and popularity
    refitted on every user's whole history over the whole catalogue."""
    index = catalogue.index
    df = prepared.interactions.select(["user_id", "item_id", "timestamp"]).to_pandas()
    histories = [[index[i] for i in items] for _, items in df.groupby("user_id")["item_id"]]
    x = interaction_matrix(histories, len(catalogue))
    counts = Popularity().fit(x).counts
    return HybridScorer(item_emb, fit.weights, fit.refit(x), counts, fit.request_weights)


def init_weights(cfg: Config, catalogue: Catalogue) -> dict[str, torch.Tensor]:
    """The trained tensors of the registered version ``train.init_from``, checked for
    compatibility; the sequential design's item-ID rows are mapped onto ``catalogue`` by item
    id (items the version did not know start at zero).

    Raises:
        IncompatibleInitError: that version has another design, base model or shape.
        registry.ModelNotFoundError: the URI does not resolve.
    """
    version, path = registry.download_bundle(cfg.train.init_from)
    theirs = ModelBundle(path).config.model
    ours = cfg.model
    keys = ["architecture", "base", "adapter", "lora_r", "target_modules"]
    if ours.architecture == "sequential":
        keys += ["dim", "layers", "heads", "seq_len", "item_ids", "adapter_layers"]
    for key in keys:
        if getattr(theirs, key) != getattr(ours, key):
            raise IncompatibleInitError(
                f"train.init_from={cfg.train.init_from} (version {version.version}) has "
                f"model.{key}={getattr(theirs, key)!r}, this run has {getattr(ours, key)!r}"
            )
    if ours.architecture == "sequential":
        state = load_trained(path / "scorer")
        return remap_item_ids(state, ModelBundle(path).catalogue.ids, catalogue.ids)
    state = load_file(str(path / "scorer" / "adapter" / "adapter_model.safetensors"))
    state.update(load_file(str(path / "scorer" / HEAD_FILE)))
    return state


def remap_item_ids(
    state: dict[str, torch.Tensor], theirs: Sequence[str], ours: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``state`` with its item-ID table in the order of ``ours`` (zeros for new items)."""
    key = "sequential.item_ids.weight"
    if key not in state or tuple(theirs) == tuple(ours):
        return state
    old = state[key]
    rows = {item_id: row for row, item_id in enumerate(theirs)}
    new = torch.zeros(len(ours), old.shape[1], dtype=old.dtype)
    for row, item_id in enumerate(ours):
        if item_id in rows and rows[item_id] < len(old):
            new[row] = old[rows[item_id]]
    return {**state, key: new}


def _champion_metrics(cfg: Config) -> tuple[str, dict[str, float], str] | None:
    try:
        champion = registry.current_champion(cfg.registry.model_name)
    except Exception:  # no registered model yet
        return None
    if champion is None:
        return None
    metrics, tags = registry.version_info(cfg.registry.model_name, champion)
    return champion, metrics, tags.get("dataset_fingerprint", "?")
