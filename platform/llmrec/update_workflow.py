"""The update workflow: the champion learns what happened after its data, cheaply.

``jobs/update.py`` calls :func:`update` on an initialised Ray. The champion's lineage tags
say what it was trained on (sources, cut-off); the events after the cut-off (its sources
again, serving's feedback folder, new logs) and the new catalogue rows (``--items``, the
items added live) are the new data. The champion is fine-tuned on the new interactions
(the newest ``update.holdout`` share held back) mixed with replayed older ones, with Ray
Train; the collaborative part and popularity are refitted on all data; the grown catalogue
is embedded; candidate and champion are compared on the held-back slice; the candidate is
registered with its lineage and the comparison, and the promotion gate may run.

The steps shared with the fine-tune workflow (:mod:`llmrec.workflow`) live in
:mod:`llmrec.steps`.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from llmrec import lifecycle, registry
from llmrec.bundle import ModelBundle
from llmrec.config import Config
from llmrec.data.catalogue import Catalogue
from llmrec.data.incoming import Sources, as_raw, gather
from llmrec.data.prepare import Prepared, prepare
from llmrec.lineage import data_fingerprint, training_summary
from llmrec.modeling.cf import CFParams
from llmrec.modeling.towers import Towers
from llmrec.ranking.hybrid import HybridScorer, HybridWeights
from llmrec.steps import Lineage, init_weights, promote, register, serving_hybrid, towers_parts
from llmrec.training import designs
from llmrec.training.incremental import PeriodUsers, Timeline, period_metrics, period_users
from llmrec.training.incremental import replay as replay_windows
from llmrec.training.incremental import windows as new_windows
from llmrec.training.trainer import TrainOutcome, run_training

RUNTIME_KEYS = (
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "placement_strategy",
    "torch_threads",
    "storage_path",
    "run_name",
    "max_failures",
    "seed",
)
"""``train.*`` taken from the update's own config; the rest of the model, data, train and
rank settings are the champion's (the update must be able to load its weights)."""


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the registered candidate (None: nothing to learn from), what it
    said, the held-out comparison and the gate's decision."""

    version: registry.RegisteredVersion | None
    message: str
    comparison: dict[str, dict[str, float]]
    gate: lifecycle.GateDecision | None = None
    train_seconds: float = 0.0


@dataclass(frozen=True)
class NewData:
    """Everything the champion's update reads, on one timeline: positions ``[start,
    holdout)`` are learned from, ``[holdout, end)`` held back; ``grown`` are the catalogue's
    items the champion did not have."""

    prepared: Prepared
    timeline: Timeline
    sources: Sources
    start: int
    holdout: int
    grown: list[str]

    @property
    def catalogue(self) -> Any:
        return self.prepared.catalogue


@dataclass(frozen=True)
class Champion:
    """The version being updated."""

    version: registry.RegisteredVersion
    bundle: ModelBundle
    tags: dict[str, str]


def update(
    cfg: Config,
    logs: list[str] | None = None,
    items: list[str] | None = None,
    log: Any = print,
) -> UpdateResult:
    """Update the champion of ``cfg.registry.model_name`` with what arrived since its data
    (``logs``: extra interaction sources; ``items``: catalogue rows), on an initialised
    Ray."""
    planned = plan(cfg, logs or [], items or [], log)
    if isinstance(planned, str):
        return UpdateResult(None, planned, {})
    return learn(cfg, *planned, log)


def plan(
    cfg: Config, logs: list[str], items: list[str], log: Any = print
) -> tuple[Config, Champion, NewData] | str:
    """The champion, the config its update runs with, and the new data; or why there is
    nothing to learn from (no Ray needed to find out)."""
    registry.use_tracking(cfg.registry)
    name = cfg.registry.model_name
    version, path = registry.download_bundle(f"models:/{name}@{registry.CHAMPION}")
    champion = Champion(version, ModelBundle(path), registry.version_info(name, version.version)[1])
    run_cfg = run_config(cfg, champion.bundle.config, version.uri)
    if run_cfg.model.architecture != "sequential":
        raise ValueError(
            f"{version.uri} is a {run_cfg.model.architecture} design: updates fine-tune the "
            "sequential design"
        )
    data = read_new_data(cfg, champion, logs, items, log)
    return data if isinstance(data, str) else (run_cfg, champion, data)


def run_config(cfg: Config, champion: Config, uri: str) -> Config:
    """The champion's config with this run's registry, update, Ray and training runtime;
    ``update.epochs`` / ``update.lr`` for the optimisation, starting from ``uri``."""
    runtime = {k: getattr(cfg.train, k) for k in RUNTIME_KEYS}
    train = replace(
        champion.train,
        **runtime,
        epochs=cfg.update.epochs,
        lr=cfg.update.lr or champion.train.lr,
        init_from=uri,
        patience=0,
        eval_every=1,
    )
    data = replace(champion.data, work_dir=cfg.data.work_dir)
    return replace(
        champion, data=data, train=train, registry=cfg.registry, update=cfg.update, ray=cfg.ray
    )


def read_new_data(
    cfg: Config, champion: Champion, logs: list[str], items: list[str], log: Any
) -> NewData | str:
    """Every source the champion's data came from, and this run's; the events after its
    cut-off. Returns why there is nothing to learn from, when there is not."""
    tags = champion.tags
    recorded = Sources.from_dict(
        json.loads(tags.get("data_sources") or "{}")
        or {"base": tags.get("data_source") or champion.bundle.config.data.source}
    )
    ours = Sources(
        recorded.base, logs, [cfg.update.feedback_path()], items, [cfg.update.catalogue_path()]
    )
    sources = recorded.with_(ours)
    log(f"champion: version {champion.version.version}; reading {_describe(sources)}")
    live = [(f"live items ({p})", _live_items(p)) for p in sources.live]
    work = Path(cfg.data.work_dir) / f"update-{time.strftime('%Y%m%d-%H%M%S')}"
    prepared = prepare(as_raw(gather(sources, champion.bundle.config.data, live)), work)
    log(prepared.summary())
    timeline = Timeline.build(prepared.interactions)
    cutoff = int(tags.get("data_cutoff") or _cutoff_of(champion.bundle, timeline))
    start = timeline.after(cutoff)
    fresh = len(timeline) - start
    grown = [i for i in prepared.catalogue.ids if i not in champion.bundle.catalogue]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff))
    if fresh < 2:
        said = f"{fresh} new interactions since the champion's cut-off ({when})"
        said += f" and {len(grown)} new catalogue rows" if grown else ""
        return said + ": nothing to learn from (2 needed: one to learn, one to compare on)"
    held = max(1, min(fresh - 1, round(cfg.update.holdout * fresh)))
    log(
        f"new data: {fresh} interactions after {when} ({fresh - held} to learn from, the "
        f"newest {held} held back to compare on), {len(grown)} new catalogue rows"
    )
    return NewData(prepared, timeline, sources, start, len(timeline) - held, grown)


def learn(
    cfg: Config, run_cfg: Config, champion: Champion, data: NewData, log: Any = print
) -> UpdateResult:
    """Fine-tune, compare on the held-back slice, register, and run the gate if asked."""
    catalogue, timeline = data.catalogue, data.timeline
    rows = catalogue.index
    queries = timeline.queries(0, data.holdout)
    query_ids = {q: k + 1 for k, q in enumerate(queries)}
    length, seed = run_cfg.model.seq_len, run_cfg.train.seed
    new = new_windows(timeline, rows, query_ids, length, data.start, data.holdout)
    if not new:
        return UpdateResult(
            None,
            "no new interaction follows an earlier one of its user: nothing to learn "
            "from, nothing registered",
            {},
        )
    count = round(cfg.update.replay_ratio * len(new))
    old = replay_windows(timeline, rows, query_ids, length, data.start, count, seed)
    users = period_users(timeline, rows, data.holdout, len(timeline), data.start)
    seen = timeline.items_before(data.holdout)
    init = init_weights(run_cfg, catalogue, champion.version.uri)
    known = np.array([i in seen for i in catalogue.ids], dtype=bool)
    base, inputs = designs.sequence_inputs(run_cfg, catalogue, queries, known, init)
    every = np.arange(len(catalogue))
    held = designs.user_eval_set(users.histories, users.targets, users.queries, every, base)
    run_cfg = sized(run_cfg, len(new) + len(old))
    log(
        f"fine-tuning version {champion.version.version} on {len(new)} new and {len(old)} "
        f"replayed windows: {run_cfg.train.epochs} epochs, {run_cfg.train.num_workers} Ray "
        "Train workers"
    )
    import ray.data

    dataset = ray.data.from_items(new + old).random_shuffle(seed=seed).materialize()
    training = designs.TrainingData(dataset, held, inputs)
    options = {"max_steps": cfg.update.max_steps, "keep_last": True}
    with tempfile.TemporaryDirectory(prefix="llmrec-update-") as tmp:
        outcome = run_training(
            run_cfg, dataset, held, Path(tmp) / "ckpt", init, inputs=inputs, loop_options=options
        )
        log(training_summary(outcome))
        towers, vectors = designs.trained_towers(
            run_cfg, outcome.checkpoint_dir, catalogue, training
        )
    weights, kind, params = cf_settings(champion.bundle)
    before = pa.Table.from_pandas(timeline.frame.iloc[: data.holdout][["user_id", "item_id"]])
    comparison = {
        "candidate": scores_of(
            towers,
            serving_hybrid(weights, kind, params, catalogue, vectors, before),
            catalogue.ids,
            users,
        ),
        "champion": champion_scores(champion.bundle, catalogue, users),
    }
    primary = "hybrid_ndcg_at_10" if run_cfg.rank.hybrid else "llm_ndcg_at_10"
    for who, m in comparison.items():
        log(
            f"held back, {who}: NDCG@10 {m[primary]:.4f} (LLM alone "
            f"{m['llm_ndcg_at_10']:.4f}) over {int(m['users'])} users"
        )
    hybrid = serving_hybrid(weights, kind, params, catalogue, vectors, data.prepared.interactions)
    strategy = (
        f"fine-tune with replay (ratio {cfg.update.replay_ratio:g})"
        if cfg.update.replay_ratio > 0
        else "fine-tune on new data only"
    ) + f", {run_cfg.train.epochs} epochs"
    lineage = Lineage(
        data.sources.as_dict(),
        data_fingerprint(data.prepared),
        timeline.timestamp(data.start),
        timeline.timestamp(len(timeline) - 1),
        timeline.timestamp(len(timeline) - 1),  # the cut-off: every event read
        champion.version.version,
        strategy,
    )
    metrics = {f"holdout_{k}": v for k, v in comparison["candidate"].items()}
    metrics |= {f"champion_holdout_{k}": v for k, v in comparison["champion"].items()}
    metrics |= {
        "train_seconds": outcome.seconds,
        "new_interactions": float(len(timeline) - data.start),
        "new_windows": float(len(new)),
        "replayed_windows": float(len(old)),
    }
    card = update_card(run_cfg, champion, data, lineage, comparison, primary, outcome)
    meta = json.loads((champion.bundle.path / "hybrid" / "weights.json").read_text())
    parts = towers_parts(
        towers, catalogue, torch.as_tensor(vectors), data.prepared.interactions, card, hybrid, meta
    )
    version = register(
        run_cfg,
        outcome,
        parts,
        metrics,
        lineage.tags(run_cfg, outcome),
        extra_dicts={
            "data/summary.json": {"rejected": data.prepared.rejected, "new_items": data.grown}
        },
        extra_texts={"evaluation/holdout.json": json.dumps(comparison, indent=2)},
    )
    said = f"registered {version.name} version {version.version} ({strategy})"
    gate = None
    if cfg.update.auto_promote:
        scores = {
            version.version: comparison["candidate"][primary],
            champion.version.version: comparison["champion"][primary],
        }
        version, gate = promote(run_cfg, version, log, scores)
    return UpdateResult(version, said, comparison, gate, outcome.seconds)


def sized(cfg: Config, windows: int) -> Config:
    """Fewer Ray Train workers for a small update: each worker must get at least a batch
    (Ray Train splits the examples equally and drops the remainder)."""
    workers = max(1, min(cfg.train.num_workers, windows // cfg.train.batch_size))
    return replace(cfg, train=replace(cfg.train, num_workers=workers))


def cf_settings(bundle: ModelBundle) -> tuple[HybridWeights, str, CFParams]:
    """The version's hybrid weights, CF kind and CF hyper-parameters (to refit on new data)."""
    hybrid = bundle.hybrid
    cf = hybrid.cf
    if cf is None:
        return hybrid.weights, "ease", CFParams()
    p = {k: float(v) for k, v in getattr(cf, "params", {}).items()}
    if cf.kind == "als":
        return (
            hybrid.weights,
            "als",
            CFParams(
                factors=int(p.get("factors", 32)),
                iterations=int(p.get("iterations", 15)),
                regularization=float(getattr(cf, "regularization", 1.0)),
                alpha=float(getattr(cf, "alpha", 5.0)),
            ),
        )
    params = CFParams(ease_lambda=p.get("lambda", 200.0), neighbours=int(p.get("neighbours", 100)))
    return hybrid.weights, cf.kind, params


def scores_of(
    towers: Towers, hybrid: HybridScorer, ids: tuple[str, ...] | list[str], users: PeriodUsers
) -> dict[str, float]:
    """The LLM part alone and the hybrid on ``users``, over every row of ``ids``."""
    queries = towers.encode_users(users.history_ids, users.queries)
    every = np.arange(len(ids))
    out = {f"llm_{k}": v for k, v in period_metrics(queries @ hybrid.items.T, users, every).items()}
    mixed = hybrid.scores(queries, users.histories)
    return out | {f"hybrid_{k}": v for k, v in period_metrics(mixed, users, every).items()}


def champion_scores(
    bundle: ModelBundle, catalogue: Catalogue, users: PeriodUsers
) -> dict[str, float]:
    """The champion as served now: its own item vectors and hybrid; the items it lacks are
    embedded by its item tower and appended as serving appends live items (no CF or
    popularity part)."""
    towers = bundle.load_towers()
    own = bundle.catalogue.index
    extra = [i for i in catalogue.ids if i not in own]
    hybrid = bundle.hybrid
    if extra:
        texts = [catalogue.items[i] for i in extra]
        vectors = towers.encode_new_items(texts)
        towers.add_items(extra, texts, vectors)
        hybrid.extend(vectors)
    order = {**own, **{i: len(own) + k for k, i in enumerate(extra)}}
    perm = np.array([order[i] for i in catalogue.ids], dtype=np.int64)  # our row -> theirs
    theirs = PeriodUsers(
        users.user_ids,
        [[int(perm[r]) for r in h] for h in users.histories],
        users.history_ids,
        perm[users.targets],
        users.queries,
        users.returning,
    )
    return scores_of(towers, hybrid, list(order), theirs)


def update_card(
    cfg: Config,
    champion: Champion,
    data: NewData,
    lineage: Lineage,
    comparison: dict[str, dict[str, float]],
    primary: str,
    outcome: TrainOutcome,
) -> str:
    """The Markdown model card of an updated version: its lineage and the held-out
    comparison with the version it updates."""
    day = "%Y-%m-%d %H:%M"
    start, end = (
        time.strftime(day, time.gmtime(t)) for t in (lineage.window_start, lineage.window_end)
    )
    theirs = champion.version.version
    lines = [
        f"| measure (held back: the newest interactions) | this version | version {theirs} |",
        "|---|---|---|",
    ]
    for key in (
        "hybrid_ndcg_at_10",
        "hybrid_hr_at_10",
        "llm_ndcg_at_10",
        "llm_hr_at_10",
        "hybrid_returning_ndcg_at_10",
        "hybrid_new_ndcg_at_10",
        "users",
    ):
        a, b = comparison["candidate"][key], comparison["champion"][key]
        lines.append(f"| {key}{' (gate)' if key == primary else ''} | {a:.4f} | {b:.4f} |")
    command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else "n/a"
    return (
        f"# {cfg.registry.model_name}\n\n"
        f"**Update** of version {theirs}: {lineage.strategy}, from `{champion.version.uri}`. "
        f"New data: {len(data.timeline) - data.start} interactions from {start} to {end} UTC "
        f"(the newest {len(data.timeline) - data.holdout} held back, never trained on), "
        f"{len(data.grown)} new catalogue rows.\n\n"
        f"**Data**: {_describe(data.sources)}; {data.prepared.interactions.num_rows} "
        f"interactions, {len(data.catalogue)} items, fingerprint `{lineage.fingerprint}`; "
        f"CF part and popularity refitted on all of it.\n\n"
        f"**Training**: {outcome.seconds:.0f} s on Ray Train (run `{outcome.run_name}`), "
        f"{cfg.train.num_workers} workers, learning rate {cfg.train.lr:g}.\n\n"
        "**Held-out comparison** (full ranking over the catalogue, history masked):\n\n"
        + "\n".join(lines)
        + f"\n\n**Reproduce**: `{command}`\n"
    )


def _describe(sources: Sources) -> str:
    parts = [f"`{sources.base}`"]
    for label, values in (
        ("logs", sources.logs),
        ("feedback", sources.feedback),
        ("items", sources.items),
        ("live items", sources.live),
    ):
        if values:
            parts.append(f"{label} " + ", ".join(f"`{v}`" for v in values))
    return "; ".join(parts)


def _live_items(path: str) -> pa.Table:
    """The items of a live catalogue record (none when there is no record)."""
    from llmrec.data.contract import ITEMS_SCHEMA
    from llmrec.serving.catalogue_state import CatalogueState

    if not Path(path).exists():
        return ITEMS_SCHEMA.empty_table()
    return CatalogueState(path).items_table()


def _cutoff_of(bundle: ModelBundle, timeline: Timeline) -> int:
    """A version registered before versions recorded their cut-off: the time of the last
    interaction among those its bundle holds."""
    pairs = {(u, i) for u, items in bundle.histories.items() for i in items}
    frame = timeline.frame
    seen = [(u, i) in pairs for u, i in zip(frame["user_id"], frame["item_id"], strict=True)]
    return int(frame["timestamp"][seen].max()) if any(seen) else 0


__all__ = [
    "Champion",
    "NewData",
    "UpdateResult",
    "learn",
    "plan",
    "read_new_data",
    "run_config",
    "update",
]
