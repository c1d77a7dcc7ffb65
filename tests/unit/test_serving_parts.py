"""Serving pieces without Ray: the serve config, the settings, the history store, the index."""

import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from llmrec.api.schemas import FeedbackRequest
from llmrec.data.contract import INTERACTIONS_SCHEMA
from llmrec.ranking.index import ExactIndex, HNSWIndex, build_index, recall_at
from llmrec.serving import ServeSettings, SettingsError
from llmrec.serving.history import Event, FeedbackLog, HistoryStore
from pydantic import ValidationError

CONFIG = Path(__file__).resolve().parents[2] / "serve_deployments" / "serve_config.yaml"


def test_serve_config_is_valid_for_serve_and_binds_localhost():
    from ray.serve.schema import ServeDeploySchema

    from serve_deployments import encoder as encoder_module

    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    app = schema.applications[0]
    assert app.import_path == "serve_deployments:build_app"
    names = {d.name for d in app.deployments}
    assert names == {"QueryEncoderDeployment", "CandidateRankerDeployment", "Ingress"}
    settings = ServeSettings.from_args(app.args)  # every arg is a known setting
    assert settings.max_batch_size == 8 and settings.index == "auto"
    encoder = next(d for d in app.deployments if d.name == "QueryEncoderDeployment")
    assert encoder.max_ongoing_requests >= settings.max_batch_size  # batches can fill
    # what the decorator sets, the config (which replaces ray_actor_options) keeps
    env = encoder.ray_actor_options.runtime_env["env_vars"]
    assert env == encoder_module.ENCODER_ENV


def test_settings_name_every_bad_argument():
    with pytest.raises(SettingsError) as err:
        ServeSettings.from_args({"max_batch_size": 0, "index": "annoy", "colour": 1})
    message = str(err.value)
    assert "max_batch_size" in message and "got 0" in message
    assert "index" in message and "'annoy'" in message
    assert "colour" in message


def test_settings_make_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = ServeSettings.from_args({"tracking_uri": "sqlite:///m.db", "history_db": "h.sqlite"})
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'm.db'}"
    assert s.history_db == str(tmp_path / "h.sqlite")


def test_history_store_seeds_once_and_appends_feedback(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite", max_history=3)
    assert store.seed("models:/m/1", {"u1": ["a", "b"], "u2": ["c"]}) == 3
    assert store.seed("models:/m/1", {"u1": ["zzz"]}) == 0  # the same version: no-op
    assert store.user("u1").history == ("a", "b")
    store.append(
        [Event("u1", "d", "click", 1.0, "q", 100), Event("u1", "e", "dislike", 1, None, 101)]
    )
    state = store.user("u1")
    assert state.history == ("a", "b", "d")  # dislike masks only
    assert state.seen == {"a", "b", "d", "e"}
    store.append([Event("u1", "f", "view", 1.0, None, 102)])
    assert store.user("u1").history == ("b", "d", "f")  # the most recent max_history
    assert store.user("nobody") is None
    # a new version's logs replace the training rows, feedback stays
    store.seed("models:/m/2", {"u1": ["x"]})
    assert store.user("u1").history == ("x", "d", "f")
    assert store.user("u2") is None
    mode = sqlite3.connect(tmp_path / "h.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_feedback_log_writes_the_interaction_contract(tmp_path):
    log = FeedbackLog(tmp_path / "fb")
    path = log.append([Event("u1", "i1", "rating", 4.0, None, 1700000000)])
    table = pq.read_table(path)
    assert table.schema.equals(INTERACTIONS_SCHEMA, check_metadata=False)
    assert table.to_pylist()[0]["value"] == 4.0
    log.append([Event("u2", "i2", "click", 1.0, "query", 1700000001)])
    assert log.read().num_rows == 2
    assert not list((tmp_path / "fb").glob(".*tmp"))  # no partial files left


def test_feedback_request_takes_one_event_or_a_batch():
    one = FeedbackRequest.model_validate({"user_id": "u", "item_id": "i"})
    assert len(one.events) == 1 and one.events[0].event == "click"
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"events": [{"user_id": "u"}]})


def test_every_index_build_uses_every_core_and_searches_use_one(monkeypatch):
    """FAISS's thread count is process-wide: the search setting (1) left by one index must
    not make the next build (a second version loaded by a ranker, a swap) single-threaded."""
    import faiss
    from llmrec.ranking import index as index_module

    items = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    monkeypatch.setattr(index_module, "all_cores", lambda: 7)
    calls: list[int] = []
    real = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), real(1)))
    for kind in ("hnsw", "hnsw_sq8", "hnsw"):
        calls.clear()
        build_index(items, kind)
        assert calls == [7, 1], (kind, calls)  # built on every core, then searched on one


def test_hnsw_finds_most_of_the_exact_top_100():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    items = centres[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 32))
    items = (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)
    queries = items[:50] + 0.1 * rng.standard_normal((50, 32)).astype(np.float32)
    exact = ExactIndex(items)
    hnsw = HNSWIndex(items, ef_search=128)
    assert recall_at(hnsw, exact, queries, 100) > 0.9
    rows, scores = exact.search(queries[:1], 5)
    assert np.all(np.diff(scores[0]) <= 0)  # best first
    assert np.allclose(scores[0], items[rows[0]] @ queries[0], atol=1e-5)
    assert build_index(items, "auto", min_items_for_ann=10000).kind == "exact"
    assert build_index(items, "auto", min_items_for_ann=1000).kind == "hnsw"
