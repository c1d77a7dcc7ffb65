"""The hybrid's text-match term (issue 22: a live item that its own description does not
find): on the tiny real version (random BERT, sequential tower) a live item is found by a
query that describes it, with or without a history and over an HNSW index; answers without
typed text do not change; explanations add up; versions written before the term load and
serve without it; and the term's arithmetic on its own."""

import json
import shutil

import numpy as np
import pytest
import torch
from llmrec.data.text import render_item
from llmrec.ranking.hybrid import TEXT_FILE, HybridScorer
from llmrec.ranking.text_match import STAND_OUT_MARGIN, STAND_OUT_RANK, TEXT_WEIGHT
from llmrec.ranking.weights import HybridWeights
from llmrec.registry.bundle import ModelBundle, add_text_match, has_text_match
from llmrec.serving import (
    CandidateRanker,
    QueryBuilder,
    QueryEncoder,
    RecommendRequest,
    ServeSettings,
)
from llmrec.serving.catalogue_state import LiveChanges, LiveItem

from tests.unit.serving_bundle import make_bundle

COOKBOOK = LiveItem(
    "live-cookbook",
    "Harbour Suppers",
    "A cookbook of coastal saffron stews and harbour-side fish suppers.",
    ("Cooking",),
)
QUERY = "coastal saffron stews and harbour fish suppers cookbook"  # issue 22's, word for word
OTHERS = [
    LiveItem("live-1", "Alpine Walks", "A field guide of alpine wild mushrooms.", ("Nature",)),
    LiveItem("live-2", "Night Trains", "A travel memoir of northern night trains.", ("Travel",)),
]


def serve(bundle: ModelBundle, settings: ServeSettings | None = None):
    """Builder, encoder and ranker of ``bundle`` with the live items posted (as serving
    posts them: the encoder embeds, every consumer applies the change)."""
    encoder = QueryEncoder(bundle, device="cpu")
    builder = QueryBuilder(bundle, parser=encoder.parser())
    ranker = CandidateRanker(bundle, settings)
    items = [COOKBOOK, *OTHERS]
    changes = LiveChanges(1, items, encoder.embed_items(items), frozenset())
    for target in (builder, encoder, ranker):
        target.apply_live(changes)
    return builder, encoder, ranker


def ask(served, **body):
    builder, encoder, ranker = served
    q = builder.build(RecommendRequest(**body))
    return q, ranker.rank(encoder.encode([q]), q)


def ids(items) -> list[str]:
    return [i.item_id for i in items]


def without_term(bundle: ModelBundle, path) -> ModelBundle:
    """A copy of ``bundle`` as a version written before the text-match term."""
    shutil.copytree(bundle.path, path)
    (path / "hybrid" / TEXT_FILE).unlink()
    meta = json.loads((path / "hybrid" / "weights.json").read_text())
    del meta["text_weights"]
    (path / "hybrid" / "weights.json").write_text(json.dumps(meta))
    return ModelBundle(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_base) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("text-match") / "b", tiny_base)


@pytest.fixture(scope="module")
def served(bundle):
    return serve(bundle)


def test_a_live_item_is_found_by_its_description(bundle, served):
    assert has_text_match(bundle.path)
    assert bundle.hybrid.request_weights.text == TEXT_WEIGHT
    assert bundle.hybrid.weights.text == 0.0  # requests without typed text: no such term
    _, top = ask(served, query=QUERY, k=5)
    assert "live-cookbook" in ids(top)
    # a query that describes the item among what a history asks for finds it too
    _, top = ask(served, query=QUERY, history=["m01", "m06", "m11"], k=5)
    assert "live-cookbook" in ids(top)


def test_the_model_alone_does_not_find_it(bundle, served, tmp_path):
    """What the term fixes: the same version without it (a version written before it)
    does not answer the cookbook for its description."""
    old = serve(without_term(bundle, tmp_path / "old"))
    _, top = ask(old, query=QUERY, k=5)
    assert "live-cookbook" not in ids(top)


def test_an_approximate_index_finds_the_described_item_too(bundle):
    """An HNSW index over the model's vectors need not hold the described item among its
    candidates: the best text matches join them."""
    served = serve(bundle, ServeSettings(index="hnsw", candidates=5))
    assert served[2].items.kind == "hnsw"
    _, top = ask(served, query=QUERY, k=5)
    assert "live-cookbook" in ids(top)


def test_the_text_matches_come_from_an_index_only_from_ann_min_items(bundle, served):
    """Below ``ann_min_items`` items, or over an exact item index, the described items are
    found by the exact product as before; from it, under an approximate item index, in an
    IVF index over the text vectors (llmrec.ranking.text_index) that live items join, and
    typed requests are answered the same."""
    assert served[2].hybrid.text_index is None  # the exact item index: every item scored
    below = serve(bundle, ServeSettings(index="hnsw", candidates=5))
    assert below[2].hybrid.text_index is None
    exact = serve(bundle, ServeSettings(index="exact", candidates=5, ann_min_items=10))
    assert exact[2].hybrid.text_index is None
    above = serve(bundle, ServeSettings(index="hnsw", candidates=5, ann_min_items=10))
    index = above[2].hybrid.text_index
    assert index is not None and len(index) == above[2].num_items  # live items included
    for body in ({"query": QUERY, "k": 5}, {"query": QUERY, "history": ["m01", "m06"], "k": 5}):
        _, now = ask(above, **body)
        _, before = ask(below, **body)
        assert "live-cookbook" in ids(now)
        assert [(i.item_id, round(i.score, 5)) for i in now] == [
            (i.item_id, round(i.score, 5)) for i in before
        ]


def test_answers_without_typed_text_do_not_change(bundle, served, tmp_path):
    old = serve(without_term(bundle, tmp_path / "old"))
    for body in (
        {"history": ["m01", "m06", "m11", "live-1"], "k": 10},
        {"user_id": "u03", "k": 10},
        {"history": ["m02", "m07"], "k": 10, "diversity": 0.3},
    ):
        _, now = ask(served, **body)
        _, before = ask(old, **body)
        assert [(i.item_id, round(i.score, 5)) for i in now] == [
            (i.item_id, round(i.score, 5)) for i in before
        ]


def test_parts_add_up_with_the_text_term(served):
    history = ["m03", "m08", "m13"]
    for body in (
        {"query": QUERY, "explain": True},
        {"query": QUERY, "history": history, "explain": True},
        {"query": "a mystery but nothing romantic", "history": history, "explain": True},
        {"history": history, "explain": True},
    ):
        q, items = ask(served, **body)
        assert items
        for item in items:
            p = item.explanation.parts
            total = p.llm + p.cf + p.popularity + p.transition + p.text + p.query
            assert total == pytest.approx(item.score, abs=1e-4), (body, item)
            if q.request is None:
                assert p.text == 0.0
        if body.get("query") == QUERY:
            first = next(i for i in items if i.item_id == "live-cookbook")
            assert first.explanation.parts.text > 0
            assert not {b.item_id for b in first.explanation.because} - set(q.history)


def test_a_version_written_before_the_term_serves_without_it(bundle, tmp_path):
    old = without_term(bundle, tmp_path / "old")
    assert not has_text_match(old.path) and old.text_match_dim == 0
    assert old.hybrid.item_text is None and "text" not in old.hybrid.weights.describe()
    builder, encoder, ranker = serve(old)
    q = builder.build(RecommendRequest(query=QUERY, history=["m01"], explain=True))
    vectors = encoder.encode([q])
    assert vectors.shape[1] == ranker.hybrid.dim  # user vectors alone, as before
    items = ranker.rank(vectors, q)
    assert items and all(i.explanation.parts.text == 0.0 for i in items)
    # what write_bundle now writes can be added to a copy
    add_text_match(old.path)
    again = ModelBundle(old.path)
    assert again.text_match_dim == bundle.text_match_dim
    assert np.allclose(again.hybrid.item_text, bundle.hybrid.item_text, atol=1e-5)
    assert again.hybrid.request_weights.text == TEXT_WEIGHT


def test_the_request_is_encoded_once_where_the_model_reads_text_as_the_base(served):
    builder, encoder, _ = served
    assert encoder.base is None and encoder.towers.text_is_base
    calls = []
    real = encoder.towers.scorer.encode

    def spy(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    encoder.towers.scorer.encode = spy
    try:
        q = builder.build(RecommendRequest(query=QUERY, history=["m01", "m02"], explain=True))
        vectors = encoder.encode([q])
    finally:
        del encoder.towers.scorer.encode
    assert calls == [[q.request]]  # the user tower and the text match share one encoding
    dim = encoder.bundle.item_embeddings.shape[1]
    text = vectors[:, dim:]
    assert np.allclose(text, text[0]) and np.abs(text[0]).sum() > 0  # every occlusion row
    expected = encoder.towers.scorer.encode([q.request], kind="query").numpy()[0]
    assert np.allclose(text[0], expected, atol=1e-6)


def test_a_tuned_language_model_matches_text_with_its_base(tmp_path, tiny_base):
    """Where training tuned the language model's adapter, the text match still reads the
    frozen base: a separate copy encodes requests, and the stored item vectors are the
    base's."""
    bundle = make_bundle(tmp_path / "tuned", tiny_base, tuned_text=True)
    encoder = QueryEncoder(bundle, device="cpu")
    assert not encoder.towers.text_is_base and encoder.base is not None
    base = bundle.load_base_scorer()
    texts = bundle.catalogue.texts()[:5]
    tuned = encoder.towers.scorer.encode(texts, kind="item").numpy()
    plain = base.encode(texts, kind="item").numpy()
    assert not np.allclose(tuned, plain, atol=1e-3)  # the adapter does change the text
    assert np.allclose(bundle.hybrid.item_text[:5], plain, atol=1e-5)
    q = QueryBuilder(bundle).build(RecommendRequest(query=QUERY))
    row = encoder.encode([q])[0, bundle.item_embeddings.shape[1] :]
    assert np.allclose(row, base.encode([q.request], kind="query").numpy()[0], atol=1e-5)
    vectors = encoder.embed_items([COOKBOOK])
    expected = base.encode([render_item(COOKBOOK.item_text())], kind="item").numpy()[0]
    assert np.allclose(vectors[0, bundle.item_embeddings.shape[1] :], expected, atol=1e-5)


# the term's arithmetic, on its own

RNG = np.random.default_rng(0)
ITEMS = RNG.standard_normal((40, 8)).astype(np.float32)
TEXT = RNG.standard_normal((40, 6)).astype(np.float32)
TEXT /= np.linalg.norm(TEXT, axis=1, keepdims=True)


def scorer() -> HybridScorer:
    return HybridScorer(ITEMS).with_text(TEXT)


def rows_with(text: np.ndarray) -> np.ndarray:
    """User rows as the encoder lays them out: a user vector, then the request's vector."""
    users = RNG.standard_normal((len(text), 8)).astype(np.float32)
    return np.concatenate([users, text], axis=1).astype(np.float32)


def test_the_text_part_is_the_standardised_cosine_and_the_same_on_candidates():
    h = scorer()
    text = np.stack([TEXT[3] + 0.1 * TEXT[5], np.zeros(6)]).astype(np.float32)
    queries = rows_with(text)
    full = h.text_part(queries)
    raw = text[0] @ TEXT.T
    assert np.allclose(full[0], (raw - raw.mean()) / raw.std(), atol=1e-4)
    assert int(np.argmax(full[0])) == 3
    assert np.all(full[1] == 0.0)  # no request: no text part
    rows = np.array([7, 3, 0])
    assert np.allclose(h.text_part(queries, rows), full[:, rows], atol=1e-6)
    # the user vectors alone: the model's part as before, no text part
    assert np.allclose(h.llm_part(queries), h.llm_part(queries[:, :8]))
    assert np.all(h.text_part(queries[:, :8]) == 0.0)
    with pytest.raises(ValueError, match="width 9"):
        h.llm_part(queries[:, :9])


def test_with_a_history_only_an_item_that_stands_out_is_lifted():
    h = scorer()
    text = np.stack([TEXT[3], TEXT[3]]).astype(np.float32)
    queries = rows_with(text)
    alone, held = h.text_part(queries, histories=[[], [1, 2]])
    z = np.sort(alone)[::-1]
    assert held[3] == pytest.approx(z[0] - z[STAND_OUT_RANK - 1] - STAND_OUT_MARGIN, abs=1e-4)
    assert np.count_nonzero(held) <= STAND_OUT_RANK - 1 and np.all(held >= 0)
    rows = np.array([3, 9, 12])
    assert np.allclose(h.text_part(queries, rows, [[], [1]]), np.stack([alone, held])[:, rows])
    # a request that many items match about as well (a genre's ten items) lifts none of them
    genre = TEXT.copy()
    genre[:10] = TEXT[0]
    vague = rows_with(TEXT[:1])
    h = HybridScorer(ITEMS).with_text(genre)
    assert h.text_part(vague)[0, :10].min() > 1.0  # without a history: each counts in full
    assert np.all(h.text_part(vague, histories=[[20]]) == 0.0)


def test_requests_weigh_the_text_part_and_others_never_do():
    h = HybridScorer(ITEMS, HybridWeights(1.0)).with_text(TEXT)
    assert h.request_weights.text == TEXT_WEIGHT and h.weights.text == 0.0
    queries = rows_with(np.stack([TEXT[3], TEXT[3]]))
    plain = h.scores(queries, [[], []], requests=[False, False])
    typed = h.scores(queries, [[], []], requests=[True, True])
    assert np.allclose(plain, h.llm_part(queries))
    assert np.allclose(typed, h.llm_part(queries) + TEXT_WEIGHT * h.text_part(queries))
    assert HybridScorer(ITEMS).with_text(TEXT, weight=0.5).request_weights.text == 0.5
    assert "text 4" in h.request_weights.describe()
    assert "text" not in HybridWeights(1.0, 0.5).describe()


def test_the_text_vectors_are_saved_loaded_and_extended(tmp_path):
    h = scorer()
    h.save(tmp_path)
    meta = json.loads((tmp_path / "weights.json").read_text())
    # the two weight sets as serving code from before the term reads them (no "text" field:
    # it serves a version written since without the term), the term's weights apart
    assert (
        set(meta["request_weights"])
        == set(meta["weights"])
        == {
            "llm",
            "cf",
            "popularity",
            "transition",
        }
    )
    assert meta["text_weights"] == {"weights": 0.0, "request_weights": TEXT_WEIGHT}
    back = HybridScorer.load(tmp_path, ITEMS)
    assert np.allclose(back.item_text, TEXT) and back.request_weights == h.request_weights
    queries = rows_with(np.stack([TEXT[5]]))
    typed = back.scores(queries, [[]], requests=[True])
    assert np.allclose(typed, h.scores(queries, [[]], requests=[True]))
    # a live item: its item vector, then its text vector (as the encoder embeds it)
    new = np.concatenate([RNG.standard_normal(8), TEXT[5]]).astype(np.float32)
    back.extend(new[None])
    n = len(ITEMS)
    assert back.num_items == n + 1 == len(back.item_text)
    part = back.text_part(queries)[0]
    assert part[n] == pytest.approx(part[5]) and int(np.argmax(part)) in (5, n)
    assert set(back.text_candidates(queries, 2)[0]) == {5, n}
    back.set_vectors(np.array([n]), np.concatenate([new[:8], TEXT[7]])[None])
    assert np.allclose(back.item_text[n], TEXT[7])
    # live items of a version without the term: user and item vectors alone, as before
    plain = HybridScorer(ITEMS)
    plain.extend(RNG.standard_normal((1, 8)).astype(np.float32))
    assert plain.item_text is None and plain.text_dim == 0


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
