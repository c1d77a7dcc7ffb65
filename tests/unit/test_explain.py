"""Explanations over a tiny real version (random BERT, sequential tower, EASE/sparse/ALS
hybrid), without Ray: parts add up to the score, ``because`` names only the history, the
collaborative split is exact, occlusion rides in the one encoder call of the request."""

import numpy as np
import pandas as pd
import pytest
from llmrec.api.schemas import BecauseItem, ScoreParts
from llmrec.data.splits import leave_one_out
from llmrec.evaluation.faithfulness import faithfulness
from llmrec.evaluation.offline import Protocol
from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
from llmrec.understanding.explain import Explainer, occlusion_targets, sentence

from tests.unit.serving_bundle import histories, make_bundle


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_base):
    bundle = make_bundle(tmp_path_factory.mktemp("explain") / "b", tiny_base)
    encoder = QueryEncoder(bundle)
    return bundle, QueryBuilder(bundle, parser=encoder.parser()), encoder, CandidateRanker(bundle)


def answer(version, **body):
    _, builder, encoder, ranker = version
    q = builder.build(RecommendRequest(**body))
    return q, ranker.rank(encoder.encode([q]), q)


def test_parts_add_up_to_the_score_and_because_names_only_the_history(version):
    bundle = version[0]
    history = ["m03", "m08", "m13", "m18", "m01"]
    for body in (
        {"history": history, "explain": True},
        {"history": history, "query": "a mystery but nothing romantic", "explain": True},
        {"user_id": "u02", "explain": True, "k": 8},
    ):
        q, items = answer(version, **body)
        assert items and all(i.explanation is not None for i in items)
        assert any(i.explanation.because for i in items)
        for item in items:
            why = item.explanation
            p = why.parts
            total = p.llm + p.cf + p.popularity + p.transition + p.text + p.query
            assert total == pytest.approx(item.score, abs=1e-4), (body, item)
            assert len(why.because) <= 3  # only history items that raised the score
            assert {b.item_id for b in why.because} <= set(q.history)
            shares = [b.share for b in why.because]
            assert shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-6
            assert all(s > 0 for s in shares)
            assert why.text.endswith(".")
    # a query's boost is a part of its own, and the constraints met are named
    _, items = answer(version, history=history, query="a mystery", explain=True)
    first = items[0].explanation
    cats = bundle.catalogue.items[items[0].item_id].categories
    assert ("Mystery" in cats) == (first.parts.query > 0)
    assert ("Mystery" in first.matched) == ("Mystery" in cats)


def test_without_explain_there_is_no_explanation_and_the_answer_is_the_same(version):
    _, plain = answer(version, history=["m03", "m08"], k=6)
    _, explained = answer(version, history=["m03", "m08"], k=6, explain=True)
    assert all(i.explanation is None for i in plain)
    assert [i.item_id for i in plain] == [i.item_id for i in explained]
    assert [i.score for i in plain] == pytest.approx([i.score for i in explained], abs=1e-5)


def test_explanations_change_when_the_history_does(version):
    base = ["m03", "m08", "m13"]
    _, first = answer(version, history=base, explain=True, k=15)
    _, other = answer(version, history=[*base, "m22"], explain=True, k=15)

    def because(items):
        return {b.item_id for i in items for b in i.explanation.because}

    assert because(first) <= set(base) and "m22" not in because(first)
    assert "m22" in because(other)  # the new history item drives some recommendation
    before = {i.item_id: i.explanation.parts for i in first}
    shared = [i for i in other if i.item_id in before]
    assert shared and all(
        (i.explanation.parts.llm, i.explanation.parts.cf)
        != (before[i.item_id].llm, before[i.item_id].cf)
        for i in shared
    )


def test_occlusion_rides_in_the_one_encoder_call_of_the_request(version, monkeypatch):
    _, builder, encoder, ranker = version
    calls = []
    real = encoder.towers.encode_users

    def spy(histories, queries, encoded=None):
        calls.append(len(histories))
        return real(histories, queries, encoded)

    monkeypatch.setattr(encoder.towers, "encode_users", spy)
    history = ["m01", "m02", "m03", "m04", "m05", "m06", "m07", "m03"]
    q = builder.build(RecommendRequest(history=history, query="heat", explain=True))
    assert q.occlude == occlusion_targets(q.history, builder.window)
    # the window the tower reads (seq_len 6), each item once, most recent first
    assert q.occlude == ("m03", "m07", "m06", "m05", "m04")
    vectors = encoder.encode([q])
    assert calls == [6] and len(vectors) == 6
    items = ranker.rank(vectors, q)
    assert calls == [6] and all(i.explanation for i in items)
    # each occluded vector is the user without that item, as if encoded alone
    without = [i for i in history if i != q.occlude[0]]
    alone = encoder.encode([builder.build(RecommendRequest(history=without, query="heat"))])
    assert np.allclose(vectors[1], alone[0], atol=1e-5)


def test_occlusion_targets_are_the_items_the_tower_reads():
    assert occlusion_targets(["a", "b", "c", "b", "d"], 3) == ("d", "b", "c")
    assert occlusion_targets(["a"], 0) == ()


@pytest.mark.parametrize("kind", ["ease", "sparse", "als"])
def test_the_collaborative_split_adds_up_to_the_cf_part(tmp_path, tiny_base, kind):
    bundle = make_bundle(tmp_path / "b", tiny_base, cf_kind=kind)
    builder, ranker = QueryBuilder(bundle), CandidateRanker(bundle)
    q = builder.build(RecommendRequest(user_id="u03", explain=True))
    rows = np.arange(10)
    explainer: Explainer = ranker.explainer
    parts = explainer.parts(np.ones((1, 16), np.float32), q, rows, None)
    block = np.ones((1, 16), np.float32)  # no occlusion rows: the CF term alone
    contributions = explainer.contributions(block, q, rows)
    assert set(contributions) == set(q.history)
    summed = sum(contributions.values())
    # the transition term is the last history item's doing, all of it
    history = parts["cf"] + parts["transition"]
    assert np.abs(parts["transition"]).sum() > 0
    if kind == "als":  # occlusion of a nonlinear solve: same sign and size, not exact
        assert np.corrcoef(summed, history)[0, 1] > 0.5
    else:
        assert np.allclose(summed, history, atol=1e-4)


@pytest.mark.parametrize("kind", ["ease", "sparse", "als"])
def test_items_added_live_are_explained_in_histories_and_answers(tmp_path, tiny_base, kind):
    """Live items have no CF row: in a history they add nothing through the CF term, as
    answers they get none (a history with one used to fail with an IndexError: a 500 the
    API fuzzer found with a control-character query)."""
    from llmrec.serving.catalogue_state import LiveChanges, LiveItem

    bundle = make_bundle(tmp_path / "b", tiny_base, cf_kind=kind)
    encoder = QueryEncoder(bundle)
    builder, ranker = QueryBuilder(bundle, parser=encoder.parser()), CandidateRanker(bundle)
    items = [
        LiveItem("0", "\x00", None, ("\x96",)),
        LiveItem("新品", "新的标题 \U0009a0a7", "文字", ("Comedy",)),
    ]
    changes = LiveChanges(1, items, encoder.embed_items(items), frozenset())
    for target in (builder, encoder, ranker):
        target.apply_live(changes)
    odd = "\u0096\u0099\u0018\u00c0H\U0009a0a7"
    for history in (["0"], ["新品", "m00"], ["m03", "0", "新品"]):
        for query in (None, odd):
            q = builder.build(RecommendRequest(history=history, query=query, explain=True, k=50))
            answered = ranker.rank(encoder.encode([q]), q)
            assert answered and {"0", "新品"} - set(history) <= {i.item_id for i in answered}
            for item in answered:
                p = item.explanation.parts
                total = p.llm + p.cf + p.popularity + p.transition + p.text + p.query
                assert total == pytest.approx(item.score, abs=1e-4), (history, item)
                if item.item_id in {"0", "新品"}:
                    assert p.cf == 0.0
                assert {b.item_id for b in item.explanation.because} <= set(q.history)


def test_removing_the_explained_item_moves_the_recommendation_down_more(version):
    """jobs/evaluate.py --explain on the tiny version: every test user with 2+ history items
    is explained or counted as skipped; the item the explanation names matters more than a
    random history item."""
    bundle = version[0]
    logs = histories()
    rows = [(u, i, t, 1.0, None) for u, items in logs.items() for t, i in enumerate(items)]
    columns = ["user_id", "item_id", "timestamp", "value", "query"]
    split = leave_one_out(pd.DataFrame(rows, columns=columns), 2)
    protocol = Protocol.create(split, bundle.catalogue)
    part = protocol.part("test")
    found = faithfulness(bundle, protocol, part, batch=8)
    assert found.users + found.skipped == sum(len(h) >= 2 for h in part.histories) > 20
    assert len(found.explained) == len(found.random) == found.users
    assert found.explained.mean() > found.random.mean() >= 0
    table = found.table("tiny/1")
    assert "| the top `because` item | " in table and "| a random item | " in table
    assert f"explained / random: {found.ratio:.2f}x" in table


def test_sentences_say_why_in_words():
    parts = ScoreParts(llm=1.0, cf=0.5, popularity=0.2, query=0.0)
    heat = BecauseItem(item_id="m01", title="Heat (1995)", share=0.6, source="history")
    toy = BecauseItem(item_id="m00", title="Toy Story (1995)", share=0.4, source="query")
    casino = BecauseItem(item_id="m09", title="Casino (1995)", share=0.3, source="history")
    assert sentence([heat, casino], ["Crime", "not Romance"], parts, False) == (
        "Because you watched Heat (1995) and Casino (1995); matches Crime, not Romance."
    )
    assert sentence([toy], [], parts, True) == (
        "Because you asked for something like Toy Story (1995)."
    )
    assert sentence([], ["1990s"], parts, True) == "Matches 1990s."
    popular = ScoreParts(llm=0.1, cf=0.0, popularity=0.9, query=0.0)
    assert sentence([], [], popular, False) == "Popular with other users."
