"""The fine-tuning workflow: data -> Ray Data -> Ray Train -> evaluation -> MLflow registry.

``jobs/finetune.py`` parses arguments, starts or joins Ray and calls :func:`finetune`; this
module wires the library pieces and holds no Ray start-up and no argument parsing.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import tempfile
import time
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
from llmrec.data.pipeline import build_train_dataset, item_log_frequency
from llmrec.data.prepare import Prepared, load_source, prepare, split_and_save
from llmrec.modeling.baselines import Popularity, interaction_matrix
from llmrec.modeling.scorer import HEAD_FILE, build_scorer
from llmrec.ranking.hybrid import HybridScorer, cf_matrix_from
from llmrec.training import offline, reports
from llmrec.training.evaluation import build_eval_set
from llmrec.training.metrics import target_ranks
from llmrec.training.trainer import TrainOutcome, run_training


def objective_name(cfg: Config) -> str:
    """``contrastive (in-batch + catalogue negatives)``, ``rating (MSE)``, ..."""
    t = cfg.train
    negatives = "in-batch + catalogue negatives" if t.catalogue_negatives else "in-batch negatives"
    if t.logq_correction:
        negatives += ", logQ-corrected"
    return {
        "contrastive": f"contrastive ({negatives})",
        "rating": "rating (MSE of a score head)",
        "both": f"contrastive ({negatives}) + {t.rating_weight:g} x rating MSE",
    }[t.objective]


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
    init = init_weights(cfg) if cfg.train.init_from else None
    log(f"data: reading {cfg.data.source}")
    prepared = prepare(load_source(cfg.data.source, cfg.data), cfg.data.work_dir)
    log(prepared.summary())
    split, cold = split_and_save(
        prepared, cfg.data.min_core, cfg.data.cold_items, cfg.data.cold_seed
    )
    catalogue = prepared.catalogue
    sequences = prepared.out_dir / "train_sequences.parquet"
    train_ds = build_train_dataset(
        sequences,
        catalogue,
        cfg.data.max_history,
        cfg.data.examples_per_user,
        cfg.train.seed,
    )
    protocol = offline.Protocol.create(split, catalogue, cold)
    if cold:
        log(f"cold start: {len(cold)} items held out of training")
    log(
        f"split: {split.num_users} users, {len(protocol.catalogue)} items after "
        f"{cfg.data.min_core}-core (catalogue {len(catalogue)}); training on Ray Train with "
        f"{cfg.train.num_workers} workers"
    )
    val = build_eval_set(split, "val", protocol.catalogue, cfg.data.max_history)
    with tempfile.TemporaryDirectory(prefix="llmrec-") as tmp:
        log_q = item_log_frequency(sequences, catalogue) if cfg.train.logq_correction else None
        outcome = run_training(
            cfg, train_ds, val, Path(tmp) / "checkpoint", init, catalogue.texts(), log_q
        )
        for row in outcome.history:
            log(
                "epoch {epoch}: loss {train_loss:.4f}, val NDCG@10 {val_ndcg_at_10:.4f}, "
                "HR@10 {val_hr_at_10:.4f}".format(**row)
            )
        scorer = build_scorer(cfg.model, outcome.checkpoint_dir)
        item_emb = scorer.encode(catalogue.texts(), kind="item")
        index = catalogue.index
        rows = torch.as_tensor([index[i] for i in protocol.catalogue.ids], dtype=torch.long)
        table, fit, groups_md = evaluation_table(
            cfg, protocol, scorer, item_emb[rows].numpy(), prepared.users
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
        card = model_card(cfg, prepared, fingerprint, metrics, outcome, scorer.state(), champion)
        bundle = write_bundle(
            Path(tmp) / "bundle",
            cfg,
            scorer,
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
                "git_commit": _git_commit(),
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
    scorer: Any,
    item_emb: np.ndarray,
    users: Any = None,
) -> tuple[pd.DataFrame, offline.HybridFit | None, str]:
    """The trained scorer, and the hybrid tuned on validation (``rank.hybrid``), on
    validation and test: accuracy and beyond-accuracy measures; and the test quality per
    user group (activity, and ``users``' attributes) as a Markdown section."""
    parts = {name: protocol.part(name) for name in ("val", "test")}
    queries = {
        name: offline.llm_queries(scorer, protocol, part, cfg.data.max_history)
        for name, part in parts.items()
    }
    rows = []
    scored = {"llm": {name: queries[name] @ item_emb.T for name in parts}}
    fit = None
    if cfg.rank.hybrid and len(protocol.catalogue) <= cfg.rank.max_cf_items:
        fit = offline.fit_hybrid(protocol, item_emb, queries["val"], cfg.rank.cf)
        scored["hybrid"] = {
            name: fit.scorers[name].scores(queries[name], part.histories)
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
    cf = offline.cf_model(cfg.rank.cf, fit.ease_lambda).fit(x)
    counts = Popularity().fit(x).counts
    return HybridScorer(item_emb, fit.weights, cf_matrix_from(cf), counts)


def init_weights(cfg: Config) -> dict[str, torch.Tensor]:
    """The adapter of the registered version ``train.init_from``, checked for compatibility.

    Raises:
        IncompatibleInitError: that version has another base model or adapter shape.
        registry.ModelNotFoundError: the URI does not resolve.
    """
    version, path = registry.download_bundle(cfg.train.init_from)
    theirs = ModelBundle(path).config.model
    ours = cfg.model
    for key in ("base", "adapter", "lora_r", "target_modules"):
        if getattr(theirs, key) != getattr(ours, key):
            raise IncompatibleInitError(
                f"train.init_from={cfg.train.init_from} (version {version.version}) has "
                f"model.{key}={getattr(theirs, key)!r}, this run has {getattr(ours, key)!r}"
            )
    state = load_file(str(path / "scorer" / "adapter" / "adapter_model.safetensors"))
    state.update(load_file(str(path / "scorer" / HEAD_FILE)))
    return state


def data_fingerprint(prepared: Prepared) -> str:
    """A short hash of the clean interactions and items (same data, same fingerprint)."""
    h = hashlib.sha256()
    for table in (prepared.interactions, prepared.items):
        for batch in table.to_batches():
            for col in batch.columns:
                for buf in col.buffers():
                    if buf is not None:
                        h.update(buf)
    return h.hexdigest()[:16]


def _champion_metrics(cfg: Config) -> tuple[str, dict[str, float], str] | None:
    try:
        champion = registry.current_champion(cfg.registry.model_name)
    except Exception:  # no registered model yet
        return None
    if champion is None:
        return None
    metrics, tags = registry.version_info(cfg.registry.model_name, champion)
    return champion, metrics, tags.get("dataset_fingerprint", "?")


def model_card(
    cfg: Config,
    prepared: Prepared,
    fingerprint: str,
    metrics: dict[str, float],
    outcome: TrainOutcome,
    adapter: dict[str, torch.Tensor],
    champion: tuple[str, dict[str, float], str] | None,
) -> str:
    """The Markdown model card that becomes the registered version's description."""
    params = sum(t.numel() for t in adapter.values())
    header = "| metric | this version |"
    if champion is not None:
        header += f" champion (v{champion[0]}, data `{champion[2]}`) |"
    lines = [header, "|---|---|" + ("---|" if champion else "")]
    for key, value in sorted(metrics.items()):
        row = f"| {key} | {value:.4f} |"
        if champion is not None:
            other = champion[1].get(key)
            row += f" {other:.4f} |" if other is not None else " - |"
        lines.append(row)
    command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else "n/a"
    return (
        f"# {cfg.registry.model_name}\n\n"
        f"**Model**: `{cfg.model.base}` + {cfg.model.adapter} (r={cfg.model.lora_r}, "
        f"{params:,} trainable parameters, {params * 4 / 2**20:.1f} MiB), {cfg.model.pooling} "
        f"pooling, {objective_name(cfg)} objective"
        + (f", initialised from `{cfg.train.init_from}`" if cfg.train.init_from else "")
        + ".\n\n"
        f"**Data**: `{cfg.data.source}` ({prepared.items.num_rows} items, "
        f"{prepared.interactions.num_rows} interactions, fingerprint `{fingerprint}`), "
        f"{cfg.data.min_core}-core, chronological leave-one-out.\n\n"
        f"**Training**: {cfg.train.epochs} epochs, {cfg.train.num_workers} workers, "
        f"{outcome.seconds:.0f} s, Ray Train run `{outcome.run_name}`, "
        f"trained {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
        "**Metrics** (full ranking over the catalogue, history masked):\n\n"
        + "\n".join(lines)
        + f"\n\n**Reproduce**: `{command}`\n"
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"
