"""Steps that the fine-tune workflow (:mod:`llmrec.workflows.finetune`) and the update workflow
(:mod:`llmrec.workflows.update`) share: starting from a registered version, the hybrid a
served version ranks with, what a version records about its data (lineage tags), writing
and registering its bundle, and the promotion gate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load_file

from llmrec.config import Config, RegistryConfig
from llmrec.data.catalogue import Catalogue
from llmrec.data.splits import in_time_order
from llmrec.modeling.baselines import Popularity, interaction_matrix
from llmrec.modeling.cf import CFParams, fit_cf
from llmrec.modeling.scorer import HEAD_FILE
from llmrec.modeling.sequential import load_trained
from llmrec.modeling.towers import Towers
from llmrec.modeling.transitions import Transitions
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.weights import HybridWeights
from llmrec.registry import aliases, runs
from llmrec.registry import store as registry
from llmrec.registry.bundle import ModelBundle, write_bundle
from llmrec.training.trainer import TrainOutcome
from llmrec.workflows import promotion


class IncompatibleInitError(ValueError):
    """``train.init_from`` names a version trained with another base or adapter shape."""


def init_weights(cfg: Config, catalogue: Catalogue, uri: str = "") -> dict[str, torch.Tensor]:
    """The trained tensors of the registered version ``uri`` (default ``train.init_from``),
    checked for compatibility; the sequential design's item-ID rows are mapped onto
    ``catalogue`` by item id (items the version did not know start at zero).

    Raises:
        IncompatibleInitError: that version has another design, base model or shape.
        registry.ModelNotFoundError: the URI does not resolve.
    """
    uri = uri or cfg.train.init_from
    version, path = registry.download_bundle(uri)
    theirs = ModelBundle(path).config.model
    ours = cfg.model
    keys = ["architecture", "base", "adapter", "lora_r", "target_modules"]
    if ours.architecture == "sequential":
        keys += ["dim", "layers", "heads", "seq_len", "item_ids", "adapter_layers"]
    for key in keys:
        if getattr(theirs, key) != getattr(ours, key):
            raise IncompatibleInitError(
                f"train.init_from={uri} (version {version.version}) has "
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


def serving_hybrid(
    weights: HybridWeights,
    cf: str,
    cf_params: CFParams,
    catalogue: Catalogue,
    item_emb: np.ndarray,
    interactions: pa.Table,
    request_weights: HybridWeights | None = None,
) -> HybridScorer:
    """The hybrid a served version uses: ``weights`` (tuned on validation) and
    ``request_weights`` (for users who typed a request; None: ``weights`` with the model's
    term raised to 1), with the CF part (``cf`` fitted with ``cf_params``), popularity and
    the transitions fitted on every user's whole history (in time order, ties by item id, as
    the split orders them) over the whole catalogue."""
    index = catalogue.index
    if "timestamp" in interactions.column_names:
        df = in_time_order(interactions.select(["user_id", "item_id", "timestamp"]).to_pandas())
    else:  # already in the order they happened (held-back slices of an update)
        df = interactions.select(["user_id", "item_id"]).to_pandas()
    histories = [[index[i] for i in items] for _, items in df.groupby("user_id")["item_id"]]
    x = interaction_matrix(histories, len(catalogue))
    counts = Popularity().fit(x).counts
    cf_model = fit_cf(cf, x, cf_params)
    chain = Transitions.fit(histories, len(catalogue))
    return HybridScorer(item_emb, weights, cf_model, counts, request_weights, chain)


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


def champion_metrics(cfg: Config) -> tuple[str, dict[str, float], str] | None:
    """(version, logged metrics, data fingerprint) of the champion, for the model card."""
    try:
        champion = aliases.current_champion(cfg.registry.model_name)
    except Exception:  # no registered model yet
        return None
    if champion is None:
        return None
    metrics, tags = registry.version_info(cfg.registry.model_name, champion)
    return champion, metrics, tags.get("dataset_fingerprint", "?")


def register(
    cfg: Config,
    outcome: TrainOutcome,
    parts: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    extra_dicts: dict[str, Any] | None = None,
    extra_texts: dict[str, str] | None = None,
) -> registry.RegisteredVersion:
    """Write the version's bundle (``parts``: the keyword arguments of
    :func:`llmrec.registry.bundle.write_bundle` after ``cfg``) and register it with its run."""
    with tempfile.TemporaryDirectory(prefix="llmrec-bundle-") as tmp:
        bundle = write_bundle(Path(tmp) / "bundle", cfg, **parts)
        return runs.log_and_register(
            cfg.registry,
            run_name=outcome.run_name,
            params=cfg.flat(),
            history=outcome.history,
            metrics=metrics,
            bundle_dir=bundle,
            model_card=parts["model_card"],
            tags=tags,
            extra_dicts={
                "train/workers.json": {
                    "epochs": [
                        {"epoch": r["epoch"], "workers": r.get("workers", [])}
                        for r in outcome.history
                    ]
                },
                **(extra_dicts or {}),
            },
            extra_texts=extra_texts,
        )


def promote(
    cfg: RegistryConfig,
    version: registry.RegisteredVersion,
    log: Callable[[str], Any],
    scores: dict[str, float] | None = None,
    experiment_state: str | Path | None = None,
) -> tuple[registry.RegisteredVersion, promotion.GateDecision]:
    """Run the promotion gate on ``version`` (``scores``: the primary metric of candidate
    and champion measured now on the same data; ``experiment_state``: the serving
    impression log, whose running experiment may hold the champion alias); returns it with
    its new aliases."""
    gate = promotion.promotion_gate(cfg, version.version, scores, experiment_state)
    log(f"promotion gate: {gate.reason}")
    return registry.get_version(version.name, version.version, version.run_id), gate


def towers_parts(
    towers: Towers,
    catalogue: Catalogue,
    item_emb: torch.Tensor,
    interactions: pa.Table,
    card: str,
    hybrid: HybridScorer | None,
    hybrid_meta: dict[str, object] | None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`register`'s ``parts``."""
    return {
        "towers": towers,
        "catalogue": catalogue,
        "item_embeddings": item_emb,
        "interactions": interactions,
        "model_card": card,
        "hybrid": hybrid,
        "hybrid_meta": hybrid_meta,
    }


__all__ = [
    "IncompatibleInitError",
    "cf_settings",
    "champion_metrics",
    "init_weights",
    "promote",
    "register",
    "remap_item_ids",
    "serving_hybrid",
    "towers_parts",
]
