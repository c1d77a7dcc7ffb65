"""Serving settings: the application arguments of ``serve_deployments:app``.

They come from ``serve_deployments/serve_config.yaml`` (``applications[].args``), from
``serve run serve_deployments:build_app key=value``, or from the environment
(``LLMREC_MODEL_URI``, ``MLFLOW_TRACKING_URI``, ``LLMREC_HISTORY_DB``, ``LLMREC_FEEDBACK_DIR``,
``LLMREC_CATALOGUE_DB``, ``LLMREC_IMPRESSION_DB``, ``LLMREC_IMPRESSIONS_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from llmrec.api.experiment import ExperimentSpec, decode_spec
from llmrec.config import DEFAULT_TRACKING_URI

EDGE: dict[str, Any] = {
    "max_body_bytes": 64 * 1024,
    "max_admin_body_bytes": 16 * 1024 * 1024,
    "requests": None,
    "secured": False,
}
"""Per-process state of the HTTP edge (body limit, request counter, whether a bearer token is
set: :mod:`llmrec.serving.http.edge`), set by the ingress replica. It lives in this importable
module, read as ``settings.EDGE``, because Ray Serve ships the deployment's own module by
value: a dict global there would be a copy."""


class SettingsError(ValueError):
    """Bad application arguments; the message names each one."""


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(default="", description="Alias or version; default: <model>@champion.")
    tracking_uri: str = Field(
        default="",
        description="The MLflow store the versions are read from; default: "
        "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (a relative sqlite path is taken "
        "from where the app is built).",
    )
    encoder_threads: int = Field(
        default=1, ge=1, description="torch threads of each query encoder replica (CPU)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the query encoder runs; auto: CUDA when the replica has a GPU.",
    )
    encoder_backend: Literal["torch", "int8"] = Field(
        default="torch",
        description="torch: the query tower as trained (float32); int8: LoRA merged and "
        "every Linear layer dynamically quantized to int8 (CPU only; see "
        "benchmarks/encoder_backends.py).",
    )
    max_batch_size: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Requests the ingress groups into one encoder call and one ranker call "
        "(and texts per forward pass in the encoder).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="How long the encoder's @serve.batch waits for more texts. The ingress "
        "already groups its requests, so 0 unless several ingress replicas feed one encoder.",
    )
    max_groups_in_flight: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Request groups the ingress serves at once; each group holds what "
        "arrived while the previous one was served (at most max_batch_size requests).",
    )
    index: Literal["auto", "exact", "hnsw", "hnsw_sq8", "hnsw_fp16", "ivfpq", "ivf_flat"] = Field(
        default="auto",
        description="The item index: exact (every item scored), FAISS HNSW over float32, "
        "8-bit or 16-bit vectors, IVF-PQ, or IVF over float32 (ivf_flat: see "
        "docs/scale.md for where it beats HNSW); auto: by catalogue size (ann_min_items, "
        "compact_min_items).",
    )
    ann_min_items: int = Field(
        default=20000,
        ge=1,
        description="auto: HNSW from this many items up. With any approximate index, from "
        "this many items up typed requests' text matches come from an IVF index over 8-bit "
        "text vectors too.",
    )
    compact_min_items: int = Field(
        default=200000,
        ge=1,
        description="auto: a compact index (HNSW over 8-bit vectors) and float16 item "
        "embeddings from this many items up.",
    )
    hnsw_m: int = Field(default=32, ge=4, description="HNSW links per node (index build).")
    hnsw_ef_search: int = Field(
        default=128,
        ge=1,
        description="HNSW search breadth (IVF kinds probe hnsw_ef_search // 4 lists): higher "
        "finds more, slower.",
    )
    candidates: int = Field(default=200, ge=1, description="ANN candidates scored by the hybrid.")
    max_query_chars: int = Field(
        default=1000, ge=1, le=1000, description="Longer queries are refused (422)."
    )
    query_boost: float = Field(
        default=2.0,
        ge=0.0,
        le=100.0,
        description="What each wanted category, year range or attribute value read from a "
        "query adds to a matching item's score (the hybrid's units); strict requests filter.",
    )
    intent_title_vectors: int = Field(
        default=20000,
        ge=0,
        description="Embed the titles of catalogues up to this many items once per version, "
        "so that the language model helps recognise titles in queries; larger catalogues "
        "match titles by their words alone.",
    )
    explain_max_occlusions: int = Field(
        default=50,
        ge=0,
        le=200,
        description="Explanations re-encode the user without each of at most this many most "
        "recent history items (the items the user tower reads).",
    )
    max_history: int = Field(
        default=200,
        ge=1,
        le=200,
        description="Longest history a request may send (422 above), and the most recent "
        "items kept per user from the history store.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger request bodies are refused (413)."
    )
    max_admin_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Body limit of the /admin/ routes (POST /admin/items takes up to 100 "
        "items of up to 5,000 characters each: a valid batch can be far over max_body_bytes).",
    )
    history_db: str = Field(
        default="runs/serve/history.sqlite",
        description="The users' histories (SQLite, WAL): seeded from each served version's "
        "training logs, then every feedback event; one file every ingress replica reaches.",
    )
    feedback_dir: str = Field(
        default="runs/feedback",
        description="Accepted feedback appended as Parquet in the interaction contract "
        "(read by jobs/update.py); storage every ingress replica and the update job reach.",
    )
    catalogue_db: str = Field(
        default="",
        description="Live catalogue changes (POST /admin/items, /admin/items/retire) and each "
        "version's vectors of them; empty: catalogue.sqlite beside history_db.",
    )
    experiment: Annotated[ExperimentSpec | None, BeforeValidator(decode_spec)] = Field(
        default=None,
        description="A champion/challenger experiment ({name, variants: [{name, model_uri, "
        "weight}, ...]}, the control first; JSON text on the command line); none: every "
        "request is served by model_uri. See docs/experiments.md.",
    )
    impressions: bool = Field(
        default=True,
        description="Log every answer (what was shown, to whom, by which variant and "
        "version, latency) before sending it; feedback can then name its request_id.",
    )
    impression_db: str = Field(
        default="",
        description="The impression log (SQLite); default: impressions.sqlite beside history_db.",
    )
    impressions_dir: str = Field(
        default="",
        description="Parquet segments of the impression log; default: "
        "impressions/ beside feedback_dir.",
    )
    impression_export_s: float = Field(
        default=60.0,
        ge=0.0,
        description="How often each ingress replica exports new log rows as Parquet "
        "segments; 0: only when the report job (or export()) asks.",
    )
    explore_pool: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="Exploration (a request's explore, the version's rank.explore): "
        "candidates beyond k the ranker returns for the exploration slots to choose from "
        "(the model still filters: only its wider top k + explore_pool). See docs/serving.md.",
    )
    explore_unproven: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="Exploration: candidates the ranker adds after its wider list, the "
        "best-scored (for the user) of the items the version has little training evidence "
        "of (fewer than explore_max_impressions / explore_trained_worth interactions; items "
        "added live have none), however the model ranks them among all items.",
    )
    explore_max_impressions: int = Field(
        default=300,
        ge=1,
        description="Items with this much evidence (impressions in the log, plus "
        "explore_trained_worth per training interaction) are no longer explored.",
    )
    explore_trained_worth: float = Field(
        default=100.0,
        ge=0.0,
        le=1e6,
        description="Impressions one of the version's training interactions with an item is "
        "worth as exploration's evidence (0: training is not counted).",
    )
    explore_prior_strength: float = Field(
        default=20.0,
        gt=0.0,
        le=1e6,
        description="Looks (impressions weighted by position) the model's score is worth as "
        "the prior of an item's click rate, against the item's own clicks and looks.",
    )
    watch_interval_s: float = Field(default=10.0, ge=0.0, description="0: do not watch the alias.")
    user_cache_size: int = Field(
        default=20000,
        ge=0,
        le=10_000_000,
        description="Query vectors of known users kept in each ingress replica (about "
        "1.5 KiB each at 384 dimensions); 0 turns the cache off.",
    )
    precompute_users: bool = Field(
        default=True,
        description="Encode the training logs' users in the background when a version "
        "loads (up to user_cache_size), so that their first request is a cache hit.",
    )
    review_versions: int = Field(
        default=2,
        ge=0,
        le=8,
        description="Versions outside the routing that a request may name (model_uri, the "
        "review page /ui) kept loaded in each replica beside the served ones; 0: requests "
        "may not name a version.",
    )
    retry_deadline_s: float = Field(
        default=20.0,
        gt=0.0,
        le=300.0,
        description="How long the ingress retries an encoder/ranker call whose replica died "
        "(waiting for its replacement) before answering 503; keep it under the HTTP proxy's "
        "request_timeout_s.",
    )

    @property
    def catalogue_path(self) -> Path:
        """``catalogue_db``, or ``catalogue.sqlite`` beside ``history_db``."""
        return Path(self.catalogue_db or Path(self.history_db).with_name("catalogue.sqlite"))

    @field_validator("experiment")
    @classmethod
    def _experiment_names(cls, spec: ExperimentSpec | None) -> ExperimentSpec | None:
        if spec is not None and spec.problems():
            raise ValueError("; ".join(spec.problems()))
        return spec

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ServeSettings:
        """Settings from app args over the environment; relative paths made absolute here,
        where the app is built, since replicas run in other working directories."""
        values = dict(args)
        env = {
            "model_uri": "LLMREC_MODEL_URI",
            "tracking_uri": "MLFLOW_TRACKING_URI",
            "history_db": "LLMREC_HISTORY_DB",
            "feedback_dir": "LLMREC_FEEDBACK_DIR",
            "catalogue_db": "LLMREC_CATALOGUE_DB",
            "impression_db": "LLMREC_IMPRESSION_DB",
            "impressions_dir": "LLMREC_IMPRESSIONS_DIR",
        }
        for key, var in env.items():
            if not values.get(key) and os.environ.get(var):
                values[key] = os.environ[var]
        try:
            s = cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise SettingsError(f"serving settings: {problems}") from None
        history, feedback = Path(s.history_db).resolve(), Path(s.feedback_dir).resolve()
        return s.model_copy(
            update={
                "tracking_uri": absolute_tracking_uri(s.tracking_uri or DEFAULT_TRACKING_URI),
                "history_db": str(history),
                "feedback_dir": str(feedback),
                "catalogue_db": str(s.catalogue_path.resolve()),
                "impression_db": str(
                    Path(s.impression_db).resolve()
                    if s.impression_db
                    else history.with_name("impressions.sqlite")
                ),
                "impressions_dir": str(
                    Path(s.impressions_dir).resolve()
                    if s.impressions_dir
                    else feedback.with_name("impressions")
                ),
            }
        )


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` relative to where the app is built; other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri
