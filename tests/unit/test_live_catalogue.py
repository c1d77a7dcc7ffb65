"""Live catalogue changes without Ray: the durable record, what each consumer applies (query
builder, ranker over exact and FAISS indexes, the encoder's item and user towers), the
ingress's add/retire/prepare steps, and the request models."""

import asyncio
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from llmrec.api.schemas import NewItems, RetireItems
from llmrec.config import load_config
from llmrec.data.catalogue import Catalogue
from llmrec.modeling.baselines import EASE, interaction_matrix
from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.sequential import SequentialRecommender
from llmrec.modeling.towers import SequentialTowers
from llmrec.ranking import HybridScorer, HybridWeights
from llmrec.registry.bundle import ModelBundle, write_bundle
from llmrec.serving import (
    CandidateRanker,
    QueryBuilder,
    QueryEncoder,
    RecommendRequest,
    RequestError,
    ServeSettings,
)
from llmrec.serving.catalogue_state import CatalogueState, LiveItem, sync
from llmrec.serving.live_catalogue import LiveCatalogue
from llmrec.understanding.query import Intent
from pydantic import ValidationError

N = 30
GENRES = ["Drama", "Comedy", "Horror"]


WEIGHTS = HybridWeights(1.0, 0.5, 0.1)


def make_bundle(path, weights=WEIGHTS, **rank) -> ModelBundle:
    """30 items in 2 dimensions (item i at angle i/N), genre i % 3; EASE and popularity in
    the hybrid, so that live items meet every part of the score."""
    angles = np.arange(N) / N * np.pi
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    items = pa.table(
        {
            "item_id": [f"i{i:02d}" for i in range(N)],
            "title": [f"title {i}" for i in range(N)],
            "text": [None] * N,
            "categories": [[GENRES[i % 3]] for i in range(N)],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 2),
        }
    )
    path.mkdir()
    pq.write_table(items, path / "items.parquet")
    overrides = [f"rank.{k}={v}" for k, v in rank.items()]
    (path / "config.yaml").write_text(yaml.safe_dump(load_config(None, overrides).to_dict()))
    users = {"u1": ["i00", "i01", "i02"], "u2": ["i10", "i11"], "u3": ["i00", "i10", "i20"]}
    pd.DataFrame({"user_id": list(users), "items": list(users.values())}).to_parquet(
        path / "histories.parquet", index=False
    )
    x = interaction_matrix([[int(i[1:]) for i in h] for h in users.values()], N)
    counts = np.arange(N, 0, -1).astype(np.float32)
    cf = EASE(10.0).fit(x).weights
    HybridScorer(emb, weights, cf, counts).save(path / "hybrid")
    return ModelBundle(path)


def ids(answer) -> list[str]:
    return [i.item_id for i in answer]


@pytest.fixture
def state(tmp_path) -> CatalogueState:
    return CatalogueState(tmp_path / "state" / "catalogue.sqlite")


URI = "models:/m/1"


def test_the_record_keeps_items_vectors_and_retirements_across_reopening(tmp_path, state):
    assert state.seq() == 0
    a, b = LiveItem("new-1", "A film", "about dragons", ("Fantasy",)), LiveItem("新", "书")
    first = state.upsert([a, b], URI, np.ones((2, 2)))
    assert first == 1 and state.seq() == 1
    assert state.retire(["new-1", "i00"]) == (["new-1", "i00"], [])
    assert state.retire(["i00"]) == ([], ["i00"])  # nothing changed: no new change number
    assert state.seq() == 2
    again = CatalogueState(state.path)  # a restart reads the same record
    changes = again.changes(URI, 0, vectors=True)
    assert [i.item_id for i in changes.items] == ["new-1", "新"]
    assert changes.items[0] == a and changes.vectors.shape == (2, 2)
    assert changes.retired == {"new-1", "i00"}
    assert again.changes("models:/m/2", 0, vectors=True).items == []  # no vectors for v2
    assert [i.item_id for i, _ in again.missing("models:/m/2")] == ["new-1", "新"]
    # posting an item again updates it, brings it back, and outdates other versions' vectors
    again.put_vectors("models:/m/2", [("new-1", 1), ("新", 1)], np.zeros((2, 2)))
    assert again.missing("models:/m/2") == []
    again.upsert([LiveItem("new-1", "A film, revised")], URI, np.full((1, 2), 2.0))
    assert "new-1" not in again.retired()
    assert [i.item_id for i, _ in again.missing("models:/m/2")] == ["new-1"]
    since = again.changes(URI, 2, vectors=True)
    assert [i.title for i in since.items] == ["A film, revised"]
    assert since.vectors.tolist() == [[2.0, 2.0]]
    table = again.items_table()  # what the update job reads: the item contract
    assert table.column("item_id").to_pylist() == ["新", "new-1"]
    assert table.schema.field("categories").type == pa.list_(pa.string())


def test_the_ranker_serves_live_items_and_never_retired_ones(tmp_path, state):
    bundle = make_bundle(tmp_path / "b")
    ranker, builder = CandidateRanker(bundle), QueryBuilder(bundle)
    query = np.array([0.0, 1.0])  # points at item 15 (angle pi/2)
    before = ids(ranker.rank(query, builder.build(RecommendRequest(query="x", k=3))))
    assert before[0] == "i15"
    # a new item right on the query, one in a new category, an update moving i00 there too
    new = [LiveItem("n1", "New one", None, ("Drama",)), LiveItem("n2", "Other", None, ("Jazz",))]
    vectors = np.array([[0.0, 2.0], [-1.0, 0.0]])
    state.upsert(new, URI, vectors)
    state.upsert([LiveItem("i00", "title 0 revised", None, ("Comedy",))], URI, [[0.0, 1.5]])
    for target in (ranker, builder):
        assert sync(state, URI, target) and not sync(state, URI, target)
    q = builder.build(RecommendRequest(query="x", k=3))
    top = ranker.rank(query, q)
    assert ids(top) == ["n1", "i00", "i15"] and top[1].title == "title 0 revised"
    assert ranker.num_items == N + 2
    jazz = builder.build(RecommendRequest(query="x", k=5, categories=["Jazz"]))
    assert ids(ranker.rank(query, jazz)) == ["n2"]  # a live category filters

    def within(category):
        req = RecommendRequest(query="x", categories=[category])
        return ids(ranker.rank(query, builder.build(req)))

    comedy, drama = within("Comedy"), within("Drama")
    assert "i00" in comedy and "i00" not in drama  # the update moved its category
    # a request read into constraints covers the live items too (their categories filter)
    read = replace(q, k=N + 2, intent=Intent(categories=("Jazz",), without=("Drama",)))
    got = ids(ranker.rank(query, read))
    assert "n2" in got and "n1" not in got  # n1 is Drama: a hard filter
    # a history holding a live item is valid; re-ranking reads the live items' facts
    hist = builder.build(RecommendRequest(history=["n2", "i03"], k=5, diversity=0.5))
    assert not {"n2", "i03"} & set(ids(ranker.rank(query, hist)))
    # retired items leave every path: the full ranking, category filters, re-ranking
    state.retire(["n1", "i15"])
    sync(state, URI, ranker)
    for req in (q, builder.build(RecommendRequest(query="x", k=N + 2, diversity=0.3))):
        assert not {"n1", "i15"} & set(ids(ranker.rank(query, req)))
    drama = builder.build(RecommendRequest(query="x", k=N, categories=["Drama"]))
    assert "i15" not in ids(ranker.rank(query, drama))
    state.upsert([new[0]], URI, vectors[:1])  # posted again: back
    sync(state, URI, ranker)
    assert ids(ranker.rank(query, q))[0] == "n1"
    # a restart: new replicas over the bundle and the reopened record answer the same
    fresh, fresh_builder = CandidateRanker(bundle), QueryBuilder(bundle)
    record = CatalogueState(state.path)
    assert sync(record, URI, fresh) and sync(record, URI, fresh_builder)
    for req in (RecommendRequest(query="x", k=N + 2), RecommendRequest(query="x", k=N)):
        want = [(i.item_id, i.title) for i in ranker.rank(query, builder.build(req))]
        got = [(i.item_id, i.title) for i in fresh.rank(query, fresh_builder.build(req))]
        assert got == want and "i15" not in dict(got) and "n1" in dict(got)
    assert fresh.num_items == ranker.num_items == N + 2


def test_live_items_join_an_hnsw_index(tmp_path, state):
    bundle = make_bundle(tmp_path / "b")
    ranker = CandidateRanker(bundle, ServeSettings(index="hnsw", candidates=5))
    builder = QueryBuilder(bundle)
    q = builder.build(RecommendRequest(query="x", k=3))
    state.upsert([LiveItem("n1", "New")], URI, [[0.0, 2.0]])
    state.upsert([LiveItem("i00", "moved")], URI, [[0.0, 1.5]])
    sync(state, URI, ranker)
    assert ranker.items.kind == "hnsw" and ranker.items.num_items == N + 2
    assert ids(ranker.rank(np.array([0.0, 1.0]), q))[:2] == ["n1", "i00"]
    state.retire(["n1"])
    sync(state, URI, ranker)
    assert "n1" not in ids(ranker.rank(np.array([0.0, 1.0]), q))


def test_a_typed_query_counts_even_where_the_hybrid_gives_the_llm_no_weight(tmp_path, state):
    bundle = make_bundle(tmp_path / "b", weights=HybridWeights(0.0, 1.0, 0.0))  # EASE alone
    ranker, builder = CandidateRanker(bundle), QueryBuilder(bundle)
    state.upsert([LiveItem("n1", "New")], URI, [[0.0, 2.0]])
    sync(state, URI, ranker), sync(state, URI, builder)
    query = np.array([0.0, 1.0])
    typed = ids(ranker.rank(query, builder.build(RecommendRequest(query="x", k=2))))
    assert typed == ["n1", "i15"]  # ranked by the LLM part: a live item can be found
    history = builder.build(RecommendRequest(history=["i00", "i01"], k=5))
    ease = ranker.hybrid.cf_part([[0, 1]])[0]
    ease[[0, 1]] = -np.inf
    ranked = ranker.rank(query, history)  # no typed query: EASE alone, as tuned
    assert [i.score for i in ranked] == pytest.approx(sorted(ease, reverse=True)[:5], abs=1e-5)


def test_live_items_get_the_mean_cf_and_popularity_parts(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    scorer = bundle.hybrid
    before = scorer.scores(np.array([[1.0, 0.0]]), [[0, 1]])
    scorer.extend(np.array([[1.0, 0.0]]))
    after = scorer.scores(np.array([[1.0, 0.0]]), [[0, 1, N]])  # a live item in the history
    assert np.allclose(after[0, :N], before[0], atol=1e-5)  # the trained items score as before
    assert scorer.cf_part([[0, 1]])[0, N] == 0.0 and scorer.popularity_part()[N] == 0.0
    assert after[0, N] == pytest.approx(scorer.llm_part(np.array([[1.0, 0.0]]))[0, N])


def test_the_query_builder_knows_live_items_and_their_categories(tmp_path, state):
    bundle = make_bundle(tmp_path / "b")
    builder = QueryBuilder(bundle)
    with pytest.raises(RequestError, match="unknown item ids in history: 'n1'"):
        builder.build(RecommendRequest(history=["n1"]))
    state.upsert([LiveItem("n1", "New", None, ("Jazz",))], URI, [[1.0, 0.0]])
    sync(state, URI, builder)
    assert builder.build(RecommendRequest(history=["n1"], exclude=["n1"])).history == ("n1",)
    assert "Jazz" in builder.categories and builder.knows("n1")


def _sequential_bundle(tmp_path, tiny_base) -> ModelBundle:
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [f"model.base={tiny_base}", "model.dim=16", "model.seq_len=8", "model.layers=1"],
    )
    texts = [f"a story about topic {k}" for k in range(6)]
    items = pa.table(
        {
            "item_id": [f"i{k}" for k in range(6)],
            "title": [f"Title {k}" for k in range(6)],
            "text": texts,
            "categories": [["Drama"]] * 6,
        }
    )
    catalogue = Catalogue.from_table(items)
    text = LLMScorer(cfg.model).eval()
    model = SequentialRecommender(cfg.model, 32, 6).eval()
    with torch.no_grad():
        model.item_ids.weight.normal_(0, 1.0)  # trained ID parts, large enough to see
        vectors = model.items(text.encode(catalogue.texts()), torch.ones(6, dtype=bool))
    towers = SequentialTowers(text, model, catalogue.ids, vectors.numpy())
    log = pa.table({"user_id": ["u"] * 3, "item_id": ["i0", "i1", "i2"], "timestamp": [1, 2, 3]})
    path = write_bundle(tmp_path / "seq", cfg, towers, catalogue, vectors, log, "card")
    return ModelBundle(path)


def test_the_encoder_embeds_live_items_and_reads_them_in_histories(tmp_path, tiny_base, state):
    bundle = _sequential_bundle(tmp_path, tiny_base)
    encoder = QueryEncoder(bundle, device="cpu")
    trained = bundle.item_embeddings
    # an unchanged trained item keeps its trained vector (text part + learned ID part)
    same = LiveItem("i1", "Title 1", "a story about topic 1", ("Drama",))
    new = LiveItem("n1", "A brand new title", "about something else", ("Jazz",))
    vectors = encoder.embed_items([same, new])
    assert np.allclose(vectors[0], trained[1], atol=1e-4)
    text_only = encoder.towers.encode_new_items([new.item_text()])[0]
    assert np.allclose(vectors[1], text_only, atol=1e-5)
    other = LiveItem("i1", "Another title", "a different story")
    revised = encoder.embed_items([other])[0]
    id_part = trained[1] - encoder.towers.encode_new_items([same.item_text()])[0]
    changed = encoder.towers.encode_new_items([other.item_text()])[0]
    assert np.allclose(revised, changed + id_part, atol=1e-4)
    # a history holding the live item reads it once the encoder has applied the change
    query = QueryBuilder(bundle)
    state.upsert([new], URI, vectors[1:])
    sync(state, URI, query)
    q = query.build(RecommendRequest(history=["i0", "n1"]))
    skipped = encoder.encode([q])[0]
    assert np.allclose(skipped, encoder.encode([query.build(RecommendRequest(history=["i0"]))])[0])
    sync(state, URI, encoder)
    assert not np.allclose(encoder.encode([q])[0], skipped)


def test_add_classifies_and_prepare_embeds_what_a_version_lacks(tmp_path, state):
    calls = []

    async def embed(uri, items):
        calls.append((uri, [i.item_id for i in items]))
        return np.full((len(items), 2), float(len(calls)))

    live = LiveCatalogue(state, embed, batch=2)
    known = {"i00"}.__contains__
    items = [LiveItem("i00", "t"), LiveItem("n1", "t"), LiveItem("n2", "t")]
    done = asyncio.run(live.add(URI, items, known))
    assert (done.added, done.updated) == (["n1", "n2"], ["i00"])
    assert calls == [(URI, ["i00", "n1"]), (URI, ["n2"])]  # batched
    again = asyncio.run(live.add(URI, [LiveItem("n1", "t2")], known))
    assert (again.added, again.updated) == ([], ["n1"])
    assert asyncio.run(live.prepare(URI)) == 0  # the served version has every vector
    assert asyncio.run(live.prepare("models:/m/2")) == 3  # a new version embeds all
    assert asyncio.run(live.prepare("models:/m/2")) == 0
    retired = asyncio.run(live.retire(["n1", "n1", "n2"]))
    assert (retired.retired, retired.unchanged) == (["n1", "n2"], [])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": []}, "at least 1 item"),
        ({"items": [{"item_id": "x", "title": " \n"}]}, "should match pattern"),
        ({"items": [{"item_id": "x"}]}, "Field required"),
        ({"items": [{"item_id": "x" * 201, "title": "t"}]}, "at most 200 characters"),
        ({"items": [{"item_id": "x", "title": "t", "price": 3}]}, "Extra inputs"),
        ({"items": [{"item_id": "x", "title": "t", "categories": "a|b"}]}, "valid list"),
        ({"items": [{"item_id": str(k), "title": "t"} for k in range(101)]}, "at most 100"),
    ],
)
def test_bad_item_bodies_are_refused_naming_the_field(body, message):
    with pytest.raises(ValidationError, match=message):
        NewItems.model_validate(body)


def test_an_id_given_twice_is_its_last_entry_and_retire_takes_ids():
    body = NewItems.model_validate(
        {
            "items": [
                {"item_id": "a", "title": "1"},
                {"item_id": "b", "title": "2"},
                {"item_id": "a", "title": "3"},
            ]
        }
    )
    assert [(i.item_id, i.title) for i in body.unique()] == [("a", "3"), ("b", "2")]
    with pytest.raises(ValidationError, match="at least 1 item"):
        RetireItems.model_validate({"item_ids": []})
