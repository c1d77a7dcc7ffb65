"""The update workflow: the champion learns what happened after its data, cheaply.

``jobs/update.py`` calls :func:`update` on an initialised Ray. The champion's lineage tags
say what it was trained on (sources, cut-off); the events after the cut-off (its sources
again, serving's feedback folder, new logs) and the new catalogue rows (``--items``, the
items added live) are the new data. The champion is fine-tuned on the new interactions
(the newest ``update.holdout`` share held back) mixed with replayed older ones, with Ray
Train; the collaborative part and popularity are refitted on all data; the grown catalogue
is embedded; candidate and champion are compared on the held-back slice; the candidate is
registered with its lineage and the comparison, and the promotion gate may run.

What an update starts from (the champion, the config its update runs with, the new data)
is read by :mod:`llmrec.workflows.update_plan`; the steps shared with the fine-tune workflow
(:mod:`llmrec.workflows.finetune`) live in :mod:`llmrec.workflows.steps`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from llmrec.config import Config
from llmrec.data.events import negative_rows
from llmrec.evaluation.incremental import PeriodUsers, period_users
from llmrec.evaluation.incremental import replay as replay_windows
from llmrec.evaluation.incremental import windows as new_windows
from llmrec.experiments import guard
from llmrec.modeling.towers import Towers
from llmrec.registry import store as registry
from llmrec.training import designs
from llmrec.training.trainer import TrainOutcome, run_training
from llmrec.workflows import holdout, promotion
from llmrec.workflows.lineage import (
    Lineage,
    data_fingerprint,
    describe_sources,
    training_summary,
    update_card,
)
from llmrec.workflows.steps import (
    cf_settings,
    init_weights,
    promote,
    register,
    serving_hybrid,
    towers_parts,
)
from llmrec.workflows.update_plan import Champion, NewData, plan


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the registered candidate (None: nothing to learn from), what it
    said, the held-out comparison and the gate's decision."""

    version: registry.RegisteredVersion | None
    message: str
    comparison: dict[str, dict[str, float]]
    gate: promotion.GateDecision | None = None
    train_seconds: float = 0.0


def update(
    cfg: Config,
    logs: list[str] | None = None,
    items: list[str] | None = None,
    log: Any = print,
    experiment_state: str | Path | None = None,
) -> UpdateResult:
    """Update the champion of ``cfg.registry.model_name`` with what arrived since its data
    (``logs``: extra interaction sources; ``items``: catalogue rows), on an initialised
    Ray (``experiment_state``: see :func:`learn`)."""
    planned = plan(cfg, logs or [], items or [], log)
    if isinstance(planned, str):
        return UpdateResult(None, planned, {})
    return learn(cfg, *planned, log, experiment_state=experiment_state)


@dataclass(frozen=True)
class Tuned:
    """The fine-tuned candidate: its towers, item vectors and Ray Train outcome, and what it
    learned from."""

    towers: Towers
    vectors: np.ndarray
    outcome: TrainOutcome
    new_windows: int
    replayed_windows: int


def learn(
    cfg: Config,
    run_cfg: Config,
    champion: Champion,
    data: NewData,
    log: Any = print,
    experiment_state: str | Path | None = None,
) -> UpdateResult:
    """Fine-tune, compare on the held-back slice, register, and run the gate if asked.

    ``experiment_state``: serving's impression log; while its running experiment has a
    variant following ``champion``, the gate does not move it (None: not checked), and a
    variant following ``candidate``, which every new version takes, is warned about."""
    users = period_users(
        data.timeline, data.catalogue.index, data.holdout, len(data.timeline), data.start
    )
    tuned = fine_tune(cfg, run_cfg, champion, data, users, log)
    if tuned is None:
        return UpdateResult(
            None,
            "no new interaction follows an earlier one of its user: nothing to learn from, "
            "nothing registered",
            {},
        )
    before = data.timeline.frame.iloc[: data.holdout][["user_id", "item_id"]]
    comparison = holdout.compare(
        tuned.towers, tuned.vectors, data.catalogue, champion.bundle, users,
        pa.Table.from_pandas(before, preserve_index=False),
    )  # fmt: skip
    primary = "hybrid_ndcg_at_10" if run_cfg.rank.hybrid else "llm_ndcg_at_10"
    for who, m in comparison.items():
        log(
            f"held back, {who}: NDCG@10 {m[primary]:.4f} (LLM alone "
            f"{m['llm_ndcg_at_10']:.4f}) over {int(m['llm_users'])} users"
        )
    version = register_update(cfg, run_cfg, champion, data, tuned, comparison, primary)
    said = f"registered {version.name} version {version.version} ({version_strategy(cfg)})"
    warning = guard.candidate_warning(experiment_state, version)
    if warning is not None:
        log(warning)
    gate = None
    if cfg.update.auto_promote:
        scores = {
            version.version: comparison["candidate"][primary],
            champion.version.version: comparison["champion"][primary],
        }
        held_back = replace(run_cfg.registry, primary_metric=f"held-back {primary}")
        version, gate = promote(held_back, version, log, scores, experiment_state)
    return UpdateResult(version, said, comparison, gate, tuned.outcome.seconds)


def fine_tune(
    cfg: Config,
    run_cfg: Config,
    champion: Champion,
    data: NewData,
    users: PeriodUsers,
    log: Any,
) -> Tuned | None:
    """The champion fine-tuned with Ray Train on the new windows and the replayed ones
    (None: no new interaction to learn from); ``users`` (the held-back ones) are
    watched per epoch, never trained on, and do not choose the epoch."""
    catalogue, timeline = data.catalogue, data.timeline
    rows = catalogue.index
    queries = timeline.queries(0, data.holdout)
    query_ids = {q: k + 1 for k, q in enumerate(queries)}
    length, seed = run_cfg.model.seq_len, run_cfg.train.seed
    # explicit negatives: those no later than the last interaction learned from
    owners, negatives = negative_rows(
        data.prepared.negatives, rows, until=timeline.timestamp(data.holdout - 1)
    )
    if run_cfg.train.negative_weight <= 0:
        owners, negatives = {}, []
    users_of = owners or None
    new = new_windows(timeline, rows, query_ids, length, data.start, data.holdout, users=users_of)
    if not new:
        return None
    count = round(cfg.update.replay_ratio * len(new))
    old = replay_windows(timeline, rows, query_ids, length, data.start, count, seed, users=users_of)
    seen = timeline.items_before(data.holdout)
    init = init_weights(run_cfg, catalogue, champion.version.uri)
    known = np.array([i in seen for i in catalogue.ids], dtype=bool)
    base, inputs = designs.sequence_inputs(run_cfg, catalogue, queries, known, init)
    every = np.arange(len(catalogue))
    watch = designs.user_eval_set(users.histories, users.targets, users.queries, every, base)
    run_cfg = sized(run_cfg, len(new) + len(old))
    log(
        f"fine-tuning version {champion.version.version} on {len(new)} new and {len(old)} "
        f"replayed windows: {run_cfg.train.epochs} epochs, {run_cfg.train.num_workers} Ray "
        "Train workers"
        + (
            f"; {sum(map(len, negatives))} explicit negatives ({len(negatives)} users)"
            if negatives
            else ""
        )
    )
    import ray.data

    dataset = ray.data.from_items(new + old).random_shuffle(seed=seed).materialize()
    options: dict[str, Any] = {"max_steps": cfg.update.max_steps, "keep_last": True}
    if negatives:
        options["negatives"] = negatives
    with tempfile.TemporaryDirectory(prefix="llmrec-update-") as tmp:
        outcome = run_training(
            run_cfg, dataset, watch, Path(tmp) / "ckpt", init, inputs=inputs, loop_options=options
        )
        log(training_summary(outcome))
        training = designs.TrainingData(dataset, watch, inputs)
        towers, vectors = designs.trained_towers(
            run_cfg, outcome.checkpoint_dir, catalogue, training
        )
    return Tuned(towers, vectors, outcome, len(new), len(old))


def version_strategy(cfg: Config) -> str:
    """How an update learns, in words (the ``update_strategy`` tag)."""
    u = cfg.update
    how = (
        f"fine-tune with replay (ratio {u.replay_ratio:g})"
        if u.replay_ratio > 0
        else ("fine-tune on new data only")
    )
    return how + f", {u.epochs} epochs" + (f", at most {u.max_steps} steps" if u.max_steps else "")


def register_update(
    cfg: Config,
    run_cfg: Config,
    champion: Champion,
    data: NewData,
    tuned: Tuned,
    comparison: dict[str, dict[str, float]],
    primary: str,
) -> registry.RegisteredVersion:
    """Register the candidate: the grown catalogue embedded, the champion's hybrid weights
    with the CF part and popularity refitted on all data, lineage tags, the comparison."""
    timeline, catalogue = data.timeline, data.catalogue
    hybrid, meta = None, None
    weights_file = champion.bundle.path / "hybrid" / "weights.json"
    if weights_file.exists():
        weights, kind, params = cf_settings(champion.bundle)
        interactions = data.prepared.interactions
        asked = champion.bundle.hybrid.request_weights
        hybrid = serving_hybrid(
            weights, kind, params, catalogue, tuned.vectors, interactions, asked
        )
        meta = {  # what the champion's tuning recorded; the weights are written by the scorer
            k: v
            for k, v in json.loads(weights_file.read_text()).items()
            if k not in ("weights", "request_weights")
        }
    last = timeline.timestamp(len(timeline) - 1)  # the cut-off: every event read
    lineage = Lineage(
        data.sources.as_dict(),
        data_fingerprint(data.prepared),
        timeline.timestamp(data.start),
        last,
        last,
        champion.version.version,
        version_strategy(cfg),
    )
    metrics = {f"holdout_{k}": v for k, v in comparison["candidate"].items()}
    metrics |= {f"champion_holdout_{k}": v for k, v in comparison["champion"].items()}
    metrics |= {
        "train_seconds": tuned.outcome.seconds,
        "new_interactions": float(len(timeline) - data.start),
        "new_windows": float(tuned.new_windows),
        "replayed_windows": float(tuned.replayed_windows),
    }
    card = update_card(
        run_cfg,
        champion.version.uri,
        lineage,
        describe_sources(data.sources.as_dict()),
        (len(timeline) - data.start, len(timeline) - data.holdout, len(data.grown)),
        (data.prepared.interactions.num_rows, len(catalogue)),
        comparison,
        primary,
        tuned.outcome,
    )
    parts = towers_parts(
        tuned.towers, catalogue, torch.as_tensor(tuned.vectors), data.prepared.interactions,
        card, hybrid, meta,
    )  # fmt: skip
    return register(
        run_cfg,
        tuned.outcome,
        parts,
        metrics,
        lineage.tags(run_cfg, tuned.outcome),
        extra_dicts={
            "data/summary.json": {"rejected": data.prepared.rejected, "new_items": data.grown}
        },
        extra_texts={"evaluation/holdout.json": json.dumps(comparison, indent=2)},
    )


def sized(cfg: Config, windows: int) -> Config:
    """Fewer Ray Train workers for a small update: each worker must get at least a batch
    (Ray Train splits the examples equally and drops the remainder)."""
    workers = max(1, min(cfg.train.num_workers, windows // cfg.train.batch_size))
    return replace(cfg, train=replace(cfg.train, num_workers=workers))


__all__ = [
    "Tuned",
    "UpdateResult",
    "fine_tune",
    "learn",
    "register_update",
    "sized",
    "update",
    "version_strategy",
]
