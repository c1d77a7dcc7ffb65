"""The fine-tuning workflow: data -> Ray Data -> Ray Train -> evaluation -> MLflow registry.

``jobs/finetune.py`` parses arguments, starts or joins Ray and calls :func:`finetune`; this
module wires the library pieces and holds no Ray start-up and no argument parsing.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from llmrec.config import Config
from llmrec.data.pipeline import item_log_frequency
from llmrec.data.prepare import Prepared, load_source, prepare, split_and_save
from llmrec.evaluation import group_report, offline, references, tuning
from llmrec.evaluation.metrics import target_ranks
from llmrec.experiments import guard
from llmrec.modeling.cf import choose_cf
from llmrec.modeling.towers import Towers
from llmrec.registry import store as registry
from llmrec.training import designs
from llmrec.training.trainer import run_training
from llmrec.workflows import promotion
from llmrec.workflows.lineage import Lineage, data_fingerprint, model_card, training_summary
from llmrec.workflows.steps import (
    IncompatibleInitError,
    champion_metrics,
    init_weights,
    promote,
    register,
    remap_item_ids,
    serving_hybrid,
    towers_parts,
)

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
    gate: promotion.GateDecision | None
    comparison: pd.DataFrame | None = None
    """The model and the hybrid beside the baselines (:func:`references.comparison`)."""


def finetune(
    cfg: Config, log: Any = print, experiment_state: str | Path | None = None
) -> FinetuneResult:
    """Run the whole workflow on an initialised Ray; returns the registered version.

    ``experiment_state``: serving's impression log; while its running experiment has a
    variant following ``champion``, ``registry.auto_promote`` does not move it (None: not
    checked), and a variant following ``candidate``, which the new version takes, is warned
    about."""
    registry.use_tracking(cfg.registry)
    if cfg.train.init_from:  # fail before the data work when the version is unusable
        registry.download_bundle(cfg.train.init_from)
    log(f"data: reading {cfg.data.source}")
    prepared = prepare(load_source(cfg.data.source, cfg.data), cfg.data.work_dir, cfg.data.events)
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
    data = designs.training_data(
        cfg, sequences, catalogue, protocol, init, prepared.negatives, frozenset(cold)
    )
    log(
        f"split: {split.num_users} users, {len(protocol.catalogue)} items after "
        f"{cfg.data.min_core}-core (catalogue {len(catalogue)}); training the "
        f"{cfg.model.architecture} design on Ray Train with {cfg.train.num_workers} workers"
    )
    with tempfile.TemporaryDirectory(prefix="llmrec-") as tmp:
        log_q = item_log_frequency(sequences, catalogue) if cfg.train.logq_correction else None
        if data.batch_windows and data.batch_windows != cfg.train.batch_size:
            log(
                f"batches: {data.batch_windows} windows a worker per step (about "
                f"{cfg.train.batch_size} windows of {cfg.model.seq_len} positions; "
                "train.batch_positions)"
            )
        outcome = run_training(
            cfg,
            data.dataset,
            data.eval_set,
            Path(tmp) / "checkpoint",
            init,
            catalogue.texts(),
            log_q,
            data.inputs,
            data.loop_options(),
        )
        log(training_summary(outcome))
        towers, vectors = designs.trained_towers(cfg, outcome.checkpoint_dir, catalogue, data)
    item_emb = torch.as_tensor(vectors)
    rows = torch.as_tensor([catalogue.index[i] for i in protocol.catalogue.ids], dtype=torch.long)
    table, fit, groups_md = evaluation_table(
        cfg, protocol, towers, item_emb[rows].numpy(), prepared.users
    )
    metrics = table_metrics(table)
    compared = references.comparison(table, MODEL_ROWS)
    compared_md = offline.to_markdown(compared)
    log("\nvalidation and test, beside the baselines (same split, history masked):\n" + compared_md)
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
    card = model_card(
        cfg, prepared, fingerprint, metrics, outcome, towers, champion_metrics(cfg), compared_md
    )
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
            "evaluation/comparison.md": compared_md,
        },
    )
    warning = guard.candidate_warning(experiment_state, version)
    if warning is not None:
        log(warning)
    gate = None
    if cfg.registry.auto_promote:
        version, gate = promote(cfg.registry, version, log, None, experiment_state)
    return FinetuneResult(
        version, metrics, outcome.history, outcome.seconds, prepared.summary(), gate, compared
    )


MODEL_ROWS = {"llm": "model alone", "hybrid": "served hybrid"}
"""The trained model's rows in the evaluation table, and how the comparison names them."""

COLD_FIRST = "cold items first (random order)"
"""The cold-start yardstick's row (``test_cold`` only)."""

BASELINE_METRICS = ("hr_at_10", "ndcg_at_10", "hr_at_20", "ndcg_at_20", "mrr")


def table_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The evaluation table as MLflow metrics: every measure of the model (``val_...``) and
    the hybrid (``hybrid_val_...``); the accuracy of each baseline (``baseline_ease_...``,
    ``baseline_markov_1_...``)."""
    out = {}
    for r in table.to_dict("records"):
        method = str(r["method"])
        if method in MODEL_ROWS:
            prefix, keep = ("" if method == "llm" else "hybrid_"), None
        else:
            slug = re.sub(r"[^a-z0-9]+", "_", method.split(" (")[0].lower()).strip("_")
            prefix, keep = f"baseline_{slug}_", BASELINE_METRICS
        for k, v in r.items():
            if k in ("method", "split") or (keep is not None and k not in keep):
                continue
            if v is not None and not np.isnan(float(v)):  # a measure another row has
                out[f"{prefix}{r['split']}_{k}"] = float(v)
    return out


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
) -> tuple[pd.DataFrame, tuning.HybridFit | None, str]:
    """The trained model, the hybrid tuned on validation (``rank.hybrid``) and the baselines
    (:mod:`references`), on validation and test: accuracy and beyond-accuracy measures; and
    the test quality per user group (activity, and ``users``' attributes) as a Markdown
    section."""
    parts = {name: protocol.part(name) for name in ("val", "test")}
    queries = {name: offline.user_vectors(towers, part) for name, part in parts.items()}
    rows = []
    scored = {"llm": {name: queries[name] @ item_emb.T for name in parts}}
    fit = None
    if cfg.rank.hybrid:
        fit = tuning.fit_hybrid(protocol, item_emb, queries["val"], cfg.rank.cf, rank=cfg.rank)
        scored["hybrid"] = {
            name: fit.scorers[name].scores(
                queries[name], part.histories, requests=tuning.requests_of(part)
            )
            for name, part in parts.items()
        }
        kind, params = fit.cf, fit.cf_params
        models = {name: sc.cf for name, sc in fit.scorers.items() if sc.cf is not None}
    else:
        kind = choose_cf(
            cfg.rank.cf, len(protocol.catalogue), cfg.rank.ease_max_items, cfg.rank.sparse_max_items
        )
        params = tuning.tune_cf(protocol, kind, cfg.rank, tuning.EASE_LAMBDAS)[0]
        models = references.fit_cf_models(protocol, kind, params)
    label = tuning.cf_label(kind, params)
    scored |= references.reference_scores(protocol, cfg.rank, label, models)
    for method, by_part in scored.items():
        for name, part in parts.items():
            rows.append(
                {"method": method, "split": name, **offline.evaluate(protocol, part, by_part[name])}
            )
            if name == "test" and len(part.cold_rows):
                rows.append(offline.cold_row(protocol, part, by_part[name], method))
    test = parts["test"]
    if len(test.cold_rows):
        cold_first = offline.cold_first_scores(protocol, len(test.targets), cfg.train.seed)
        rows.append(offline.cold_row(protocol, test, cold_first, COLD_FIRST))
    ranks = {
        m: target_ranks(s["test"], test.targets, test.histories)
        for m, s in scored.items()
        if m in MODEL_ROWS
    }
    groups_md, _ = group_report.group_section(protocol, group_report.users_frame(users), ranks)
    return pd.DataFrame(rows), fit, groups_md
