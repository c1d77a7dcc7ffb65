"""What a registered version records about itself: the model card, the data fingerprint,
the objective and design in words, the code revision.

The fine-tuning workflow (and any later workflow that registers versions) builds these here, so
that every version describes itself the same way.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from llmrec.config import Config
from llmrec.data.prepare import Prepared
from llmrec.modeling.towers import SequentialTowers, Towers
from llmrec.training.trainer import TrainOutcome


def objective_name(cfg: Config) -> str:
    """The training objective in words: ``next-item softmax over the catalogue, every
    position`` (sequential design), ``contrastive (in-batch negatives)`` (text design), ...
    """
    t = cfg.train
    if cfg.model.architecture == "sequential":
        ranking = (
            "next-item softmax over the catalogue, every position"
            if t.negatives <= 0
            else f"next-item softmax over {t.negatives} sampled items, every position"
        )
    else:
        negatives = (
            "in-batch + catalogue negatives" if t.catalogue_negatives else "in-batch negatives"
        )
        if t.logq_correction:
            negatives += ", logQ-corrected"
        ranking = f"contrastive ({negatives})"
    return {
        "contrastive": ranking,
        "rating": "rating (MSE of a score head)",
        "both": f"{ranking} + {t.rating_weight:g} x rating MSE",
    }[t.objective]


def describe_model(cfg: Config) -> str:
    """The design in words (for the model card)."""
    m = cfg.model
    if m.architecture == "sequential":
        text = (
            f"{m.adapter} adapter on the top {m.adapter_layers} layers (r={m.lora_r})"
            if m.text_tuning == "adapter"
            else "frozen"
        )
        ids = " + item IDs" if m.item_ids else ""
        return (
            f"sequential design: `{m.base}` text embeddings ({text}){ids}, a "
            f"{m.layers}-layer self-attention user tower (dim {m.dim}, last {m.seq_len} items)"
        )
    return f"text design: `{m.base}` + {m.adapter} (r={m.lora_r}), {m.pooling} pooling"


def trainable_parameters(towers: Towers) -> int:
    """How many tensors' values training set (adapter, and the sequential model)."""
    count = sum(t.numel() for t in towers.scorer.state().values())
    if isinstance(towers, SequentialTowers):
        count = sum(p.numel() for p in towers.model.parameters())
        if towers.tuned_text:
            count += sum(t.numel() for t in towers.text.state().values())
    return int(count)


def training_summary(outcome: TrainOutcome) -> str:
    """``trained 23 epochs in 312 s; best validation NDCG@10 0.0712 (epoch 13)``."""
    history = outcome.history
    scored = [r for r in history if "val_ndcg_at_10" in r]
    line = f"trained {len(history)} epochs in {outcome.seconds:.0f} s"
    if scored:
        best = max(scored, key=lambda r: r["val_ndcg_at_10"])
        line += f"; best validation NDCG@10 {best['val_ndcg_at_10']:.4f} (epoch {best['epoch']})"
    return line


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
    towers: Towers,
    champion: tuple[str, dict[str, float], str] | None,
    comparison: str = "",
) -> str:
    """The Markdown model card that becomes the registered version's description
    (``comparison``: the model and its hybrid beside the baselines, as Markdown)."""
    params = trainable_parameters(towers)
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
        f"**Model**: {describe_model(cfg)}; {params:,} trainable parameters "
        f"({params * 4 / 2**20:.1f} MiB), {objective_name(cfg)} objective"
        + (f", initialised from `{cfg.train.init_from}`" if cfg.train.init_from else "")
        + ".\n\n"
        f"**Data**: `{cfg.data.source}` ({prepared.items.num_rows} items, "
        f"{prepared.interactions.num_rows} interactions, fingerprint `{fingerprint}`), "
        f"{cfg.data.min_core}-core, chronological leave-one-out.\n\n"
        f"**Training**: {cfg.train.epochs} epochs, {cfg.train.num_workers} workers, "
        f"{outcome.seconds:.0f} s, Ray Train run `{outcome.run_name}`, "
        f"trained {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
        + (
            "**Beside the baselines** (same split; test NDCG@10 as a multiple of the "
            f"strongest baseline's):\n\n{comparison}\n\n"
            if comparison
            else ""
        )
        + "**Metrics** (full ranking over the catalogue, history masked):\n\n"
        + "\n".join(lines)
        + f"\n\n**Reproduce**: `{command}`\n"
    )


@dataclass(frozen=True)
class Lineage:
    """What a version was trained on: its data sources (``base``: the source of its first
    ancestor; ``logs``, ``feedback``, ``items``, ``live``: what updates added), fingerprint,
    the window of time it learned from (the whole data for a fine-tune, the new events for
    an update), its cut-off (an update of it takes the events after this time) and where it
    came from."""

    sources: dict[str, Any]
    fingerprint: str
    window_start: int
    window_end: int
    cutoff: int
    parent: str
    strategy: str

    def tags(self, cfg: Config, outcome: TrainOutcome) -> dict[str, str]:
        """The registered version's tags."""
        return {
            "dataset_fingerprint": self.fingerprint,
            "data_source": str(self.sources.get("base", cfg.data.source)),
            "data_sources": json.dumps(self.sources, ensure_ascii=False),
            "data_cutoff": str(self.cutoff),
            "data_window_start": str(self.window_start),
            "data_window_end": str(self.window_end),
            "parent_version": self.parent,
            "update_strategy": self.strategy,
            "base_model": cfg.model.base,
            "adapter": cfg.model.adapter,
            "objective": objective_name(cfg),
            "git_commit": git_commit(),
            "ray_train_run": outcome.run_name,
            "init_from": cfg.train.init_from or "none",
        }


def update_card(
    cfg: Config,
    parent_uri: str,
    lineage: Lineage,
    sources: str,
    new: tuple[int, int, int],
    size: tuple[int, int],
    comparison: dict[str, dict[str, float]],
    primary: str,
    outcome: TrainOutcome,
) -> str:
    """The Markdown model card of an updated version: its lineage and the held-out
    comparison with the version it updates (``new``: interactions, held back, new items;
    ``size``: interactions and items in all)."""
    day = "%Y-%m-%d %H:%M"
    start, end = (
        time.strftime(day, time.gmtime(t)) for t in (lineage.window_start, lineage.window_end)
    )
    theirs = lineage.parent
    lines = [
        f"| measure (the held-back interactions) | this version | version {theirs} |",
        "|---|---|---|",
    ]
    for key in (
        "hybrid_ndcg_at_10",
        "hybrid_hr_at_10",
        "llm_ndcg_at_10",
        "llm_hr_at_10",
        "hybrid_returning_ndcg_at_10",
        "hybrid_new_ndcg_at_10",
        "hybrid_users",
    ):
        a, b = comparison["candidate"][key], comparison["champion"][key]
        lines.append(f"| {key}{' (gate)' if key == primary else ''} | {a:.4f} | {b:.4f} |")
    command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else "n/a"
    return (
        f"# {cfg.registry.model_name}\n\n"
        f"**Update** of version {theirs}: {lineage.strategy}, from `{parent_uri}`. New data: "
        f"{new[0]} interactions from {start} to {end} UTC (the newest {new[1]} held back, "
        f"never trained on), {new[2]} new catalogue rows.\n\n"
        f"**Data**: {sources}; {size[0]} interactions, {size[1]} items, fingerprint "
        f"`{lineage.fingerprint}`; CF part and popularity refitted on all of it.\n\n"
        f"**Training**: {outcome.seconds:.0f} s on Ray Train (run `{outcome.run_name}`), "
        f"{cfg.train.num_workers} workers, learning rate {cfg.train.lr:g}.\n\n"
        "**Held-out comparison** (full ranking over the catalogue, history masked):\n\n"
        + "\n".join(lines)
        + f"\n\n**Reproduce**: `{command}`\n"
    )


def describe_sources(sources: dict[str, Any]) -> str:
    """```demo`; feedback `runs/feedback`; ...``: a version's data sources in words."""
    parts = [f"`{sources.get('base', '?')}`"]
    labels = {"logs": "logs", "feedback": "feedback", "items": "items", "live": "live items"}
    for key, label in labels.items():
        if sources.get(key):
            parts.append(f"{label} " + ", ".join(f"`{v}`" for v in sources[key]))
    return "; ".join(parts)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


__all__ = [
    "Lineage",
    "data_fingerprint",
    "describe_model",
    "describe_sources",
    "git_commit",
    "model_card",
    "objective_name",
    "trainable_parameters",
    "training_summary",
    "update_card",
]
