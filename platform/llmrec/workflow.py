"""The fine-tuning workflow: data -> Ray Data -> Ray Train -> evaluation -> MLflow registry.

``jobs/finetune.py`` parses arguments, starts or joins Ray and calls :func:`finetune`; this
module wires the library pieces and holds no Ray start-up and no argument parsing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from llmrec import lifecycle, registry
from llmrec.config import Config
from llmrec.data.pipeline import item_log_frequency
from llmrec.data.prepare import Prepared, load_source, prepare, split_and_save
from llmrec.lineage import Lineage, data_fingerprint, model_card, training_summary
from llmrec.modeling.towers import Towers
from llmrec.steps import (
    IncompatibleInitError,
    champion_metrics,
    init_weights,
    promote,
    register,
    remap_item_ids,
    serving_hybrid,
    towers_parts,
)
from llmrec.training import designs, offline, reports
from llmrec.training.metrics import target_ranks
from llmrec.training.trainer import run_training

__all__ = [
    "FinetuneResult",
    "IncompatibleInitError",
    "evaluation_table",
    "finetune",
    "full_lineage",
    "init_weights",
    "remap_item_ids",
]


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
    rows = torch.as_tensor([catalogue.index[i] for i in protocol.catalogue.ids], dtype=torch.long)
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
        hybrid = serving_hybrid(
            fit.weights,
            fit.cf,
            fit.cf_params,
            catalogue,
            item_emb.numpy(),
            prepared.interactions,
            fit.request_weights,
        )
        log(f"hybrid: {fit.weights.describe()} (EASE lambda {fit.ease_lambda:g})")
    metrics["train_seconds"] = outcome.seconds
    fingerprint = data_fingerprint(prepared)
    card = model_card(cfg, prepared, fingerprint, metrics, outcome, towers, champion_metrics(cfg))
    lineage = full_lineage(cfg, prepared, fingerprint)
    version = register(
        cfg,
        outcome,
        towers_parts(
            towers,
            catalogue,
            item_emb,
            prepared.interactions,
            card,
            hybrid,
            fit.meta() | {"weights_text": fit.weights.describe()} if fit else None,
        ),
        metrics,
        lineage.tags(cfg, outcome),
        extra_dicts={
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
        version, gate = promote(cfg, version, log)
    return FinetuneResult(
        version, metrics, outcome.history, outcome.seconds, prepared.summary(), gate
    )


def full_lineage(cfg: Config, prepared: Prepared, fingerprint: str) -> Lineage:
    """A version trained on all of ``cfg.data.source``: its window is the whole data, its
    cut-off the last interaction; its parent the version it started from, if any."""
    stamps = prepared.interactions.column("timestamp")
    first, last = int(pc.min(stamps).as_py()), int(pc.max(stamps).as_py())
    parent = "none"
    if cfg.train.init_from:
        parent = registry.resolve(cfg.train.init_from).version
    sources = {"base": cfg.data.source}
    return Lineage(sources, fingerprint, first, last, last, parent, "full training")


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
