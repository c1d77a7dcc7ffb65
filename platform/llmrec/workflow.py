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

import torch

from llmrec import registry
from llmrec.bundle import write_bundle
from llmrec.config import Config
from llmrec.data.pipeline import build_train_dataset
from llmrec.data.prepare import Prepared, load_source, prepare, split_and_save
from llmrec.modeling.scorer import build_scorer
from llmrec.training.evaluation import build_eval_set, evaluate_scorer
from llmrec.training.trainer import TrainOutcome, run_training


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run produced."""

    version: registry.RegisteredVersion
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float
    data_summary: str


def finetune(cfg: Config, log: Any = print) -> FinetuneResult:
    """Run the whole workflow on an initialised Ray; returns the registered version."""
    log(f"data: reading {cfg.data.source}")
    prepared = prepare(load_source(cfg.data.source, cfg.data), cfg.data.work_dir)
    log(prepared.summary())
    split = split_and_save(prepared, cfg.data.min_core)
    catalogue = prepared.catalogue
    val = build_eval_set(split, "val", catalogue, cfg.data.max_history)
    test = build_eval_set(split, "test", catalogue, cfg.data.max_history)
    train_ds = build_train_dataset(
        prepared.out_dir / "train_sequences.parquet",
        catalogue,
        cfg.data.max_history,
        cfg.data.examples_per_user,
        cfg.train.seed,
    )
    log(
        f"split: {split.num_users} users, {len(catalogue)} items; training on Ray Train with "
        f"{cfg.train.num_workers} workers"
    )
    with tempfile.TemporaryDirectory(prefix="llmrec-") as tmp:
        outcome = run_training(cfg, train_ds, val, Path(tmp) / "checkpoint")
        for row in outcome.history:
            log(
                "epoch {epoch}: loss {train_loss:.4f}, val NDCG@10 {val_ndcg_at_10:.4f}, "
                "HR@10 {val_hr_at_10:.4f}".format(**row)
            )
        scorer = build_scorer(cfg.model, outcome.checkpoint_dir)
        item_emb = scorer.encode(catalogue.texts(), kind="item")
        metrics = {f"val_{k}": v for k, v in evaluate_scorer(scorer, val, item_emb).items()}
        metrics |= {f"test_{k}": v for k, v in evaluate_scorer(scorer, test, item_emb).items()}
        metrics["train_seconds"] = outcome.seconds
        fingerprint = data_fingerprint(prepared)
        card = model_card(cfg, prepared, fingerprint, metrics, outcome)
        bundle = write_bundle(
            Path(tmp) / "bundle",
            cfg,
            scorer,
            catalogue,
            torch.as_tensor(item_emb),
            prepared.interactions,
            card,
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
                "base_model": cfg.model.base,
                "adapter": cfg.model.adapter,
                "git_commit": _git_commit(),
                "ray_train_run": outcome.run_name,
            },
            extra_dicts={
                "data/summary.json": {
                    "rejected": prepared.rejected,
                    "users": split.num_users,
                    "items": len(catalogue),
                    "interactions": prepared.interactions.num_rows,
                }
            },
        )
    return FinetuneResult(version, metrics, outcome.history, outcome.seconds, prepared.summary())


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


def model_card(
    cfg: Config,
    prepared: Prepared,
    fingerprint: str,
    metrics: dict[str, float],
    outcome: TrainOutcome,
) -> str:
    """The Markdown model card that becomes the registered version's description."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else "n/a"
    return (
        f"# {cfg.registry.model_name}\n\n"
        f"LLM scorer: `{cfg.model.base}` + {cfg.model.adapter} (r={cfg.model.lora_r}), "
        f"{cfg.model.pooling} pooling, in-batch softmax.\n\n"
        f"**Data**: `{cfg.data.source}` ({prepared.items.num_rows} items, "
        f"{prepared.interactions.num_rows} interactions, fingerprint `{fingerprint}`), "
        f"{cfg.data.min_core}-core, chronological leave-one-out.\n\n"
        f"**Training**: {cfg.train.epochs} epochs, {cfg.train.num_workers} workers, "
        f"{outcome.seconds:.0f} s, Ray Train run `{outcome.run_name}`, "
        f"trained {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
        f"**Metrics** (full ranking, history masked):\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"**Reproduce**: `{command}`\n"
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"
