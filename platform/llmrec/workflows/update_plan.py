"""What an update starts from: the champion, the config its update runs with, the new data.

The champion's lineage tags say what it was trained on (sources, cut-off); every source its
data came from is read again with this run's (``--logs``, serving's feedback folder, the
catalogue rows of ``--items`` and the items added live), and the events after its cut-off
are the new data: the newest ``update.holdout`` share held back to compare on, the rest
learned from (:mod:`llmrec.workflows.update`). None of this needs Ray.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from llmrec.config import Config
from llmrec.data.incoming import Sources, as_raw, gather
from llmrec.data.prepare import Prepared, prepare
from llmrec.evaluation.incremental import Timeline
from llmrec.registry import aliases
from llmrec.registry import store as registry
from llmrec.registry.bundle import ModelBundle
from llmrec.workflows.lineage import describe_sources

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


def plan(
    cfg: Config, logs: list[str], items: list[str], log: Any = print
) -> tuple[Config, Champion, NewData] | str:
    """The champion, the config its update runs with, and the new data; or why there is
    nothing to learn from (no Ray needed to find out)."""
    registry.use_tracking(cfg.registry)
    name = cfg.registry.model_name
    version, path = registry.download_bundle(f"models:/{name}@{aliases.CHAMPION}")
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
    ``update.epochs`` / ``update.lr`` for the optimisation, starting from ``uri``; the
    champion's event policy with this run's ``data.events`` over it."""
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
    data = replace(champion.data, work_dir=cfg.data.work_dir, events=event_overrides(cfg, champion))
    return replace(
        champion, data=data, train=train, registry=cfg.registry, update=cfg.update, ray=cfg.ray
    )


def event_overrides(cfg: Config, champion: Config) -> dict[str, str]:
    """The ``data.events`` of an update: the champion's, with this run's over them."""
    return {**champion.data.events, **cfg.data.events}


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
    described = describe_sources(sources.as_dict())
    log(f"champion: version {champion.version.version}; reading {described}")
    live = [(f"live items ({p})", _live_items(p)) for p in sources.live]
    work = Path(cfg.data.work_dir) / f"update-{time.strftime('%Y%m%d-%H%M%S')}"
    events = event_overrides(cfg, champion.bundle.config)
    prepared = prepare(as_raw(gather(sources, champion.bundle.config.data, live)), work, events)
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
        stamps = prepared.negatives.column("timestamp").to_numpy()
        if (stamps > cutoff).any():
            said += (
                f" ({int((stamps > cutoff).sum())} new negative user-item pairs: never "
                "trained on as positives, masked by serving)"
            )
        return said + ": nothing to learn from (2 needed: one to learn, one to compare on)"
    held = max(1, min(fresh - 1, round(cfg.update.holdout * fresh)))
    log(
        f"new data: {fresh} interactions after {when} ({fresh - held} to learn from, the "
        f"newest {held} held back to compare on), {len(grown)} new catalogue rows"
    )
    return NewData(prepared, timeline, sources, start, len(timeline) - held, grown)


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
    "RUNTIME_KEYS",
    "Champion",
    "NewData",
    "event_overrides",
    "plan",
    "read_new_data",
    "run_config",
]
