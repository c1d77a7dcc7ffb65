"""Query understanding without a model or Ray: what requests are read as, on a MovieLens-
style catalogue and on the demo's, with words alone and with (fake) embeddings; how the
intent changes a ranking; bad input never raises."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmrec.data.catalogue import Catalogue
from llmrec.data.demo import generate_demo
from llmrec.evaluation.queries import TEMPLATES, build_query_set, typo
from llmrec.serving import CandidateRanker, QueryBuilder, RecommendRequest
from llmrec.understanding.constraints import Constraints, years_label
from llmrec.understanding.intent import IntentParser
from llmrec.understanding.lexicon import Lexicon, category_forms, display_title, title_forms
from llmrec.understanding.query import Intent, understood

from tests.unit.serving_bundle import GENRES, item_table
from tests.unit.test_serving_rerank import make_bundle

CATALOGUE = Catalogue.from_table(item_table())
PARSER = IntentParser(Lexicon.build(CATALOGUE))


def read(query: str, parser: IntentParser = PARSER) -> dict:
    it = parser.parse(query)
    return {k: v for k, v in it.__dict__.items() if v not in ((), None) and k != "text"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a mystery but nothing romantic", {"categories": ("Mystery",), "without": ("Romance",)}),
        ("A MYSTERY, NO ROMANCE", {"categories": ("Mystery",), "without": ("Romance",)}),
        ("comedies without horror", {"categories": ("Comedy",), "without": ("Horror",)}),
        ("anything except sci-fi", {"without": ("Sci-Fi",)}),
        ("anything but comedies", {"without": ("Comedy",)}),
        ("nothing but comedies", {"categories": ("Comedy",)}),
        (
            "i don't like horror, give me a comedy",
            {"categories": ("Comedy",), "without": ("Horror",)},
        ),
        ("no horror and a comedy", {"categories": ("Comedy",), "without": ("Horror",)}),
        ("no horror or romance", {"without": ("Horror", "Romance")}),
        ("a mystrey withuot romanse", {"categories": ("Mystery",), "without": ("Romance",)}),
        ("scifi", {"categories": ("Sci-Fi",)}),
        ("films like Toy Story", {"like": ("m00",)}),
        ("something similar to heat", {"like": ("m01",)}),
        ("like the usual suspects", {"like": ("m02",)}),
        ("like toy stroy but funnier", {"like": ("m00",)}),
        ('"Crimson Alibi"', {"like": ("m08",)}),
        ("like Heat (1976) and Star Drift", {"like": ("m01", "m07")}),
        ("I'd like a comedy", {"categories": ("Comedy",)}),
        ("a mystery from the 90s", {"categories": ("Mystery",), "years": (1990, 1999)}),
        ("horror before 1980", {"categories": ("Horror",), "years": (1975, 1979)}),
        ("romance after the 80s", {"categories": ("Romance",), "years": (1990, 2014)}),
        ("since 2000", {"years": (2000, 2014)}),
        ("early 80s sci-fi", {"categories": ("Sci-Fi",), "years": (1980, 1983)}),
        ("comedies from 1985-1989", {"categories": ("Comedy",), "years": (1985, 1989)}),
        ("between 1980 and 1985", {"years": (1980, 1985)}),
        ("nothing from the nineties", {"without_years": (1990, 1999)}),
        ("something for tonight", {}),
        ("一本关于龙的书", {}),
    ],
)
def test_requests_are_read_into_constraints(query, expected):
    assert read(query) == expected


def test_the_text_left_for_the_model_drops_negated_clauses_and_years():
    assert PARSER.parse("a mystery but nothing romantic").text == "a mystery"
    assert PARSER.parse("I don't like horror, give me a comedy").text == "I give me a comedy"
    assert PARSER.parse("comedies from the 90s").text == "comedies"
    assert PARSER.parse("no romance").text is None
    assert PARSER.parse("films like Toy Story").text == "films like Toy Story"


def test_the_demo_catalogues_categories():
    demo = Catalogue.from_table(generate_demo(num_users=5, num_items=120).items)
    parser = IntentParser(Lexicon.build(demo))
    assert read("a mystery but nothing romantic", parser) == {
        "categories": ("Mystery",),
        "without": ("Romance",),
    }
    assert read("health and fitness, not business", parser) == {
        "categories": ("Health & Fitness",),
        "without": ("Business",),
    }
    assert read("science fiction by kite studios", parser) == {
        "categories": ("Science Fiction",),
        "attributes": (("provider", "Kite Studios"),),
    }
    assert not Lexicon.build(demo).has_years  # no years in the titles: "90s" stays text


def test_catalogue_forms():
    assert title_forms("Usual Suspects, The (1995)") == ["the usual suspects", "usual suspects"]
    assert "yao a yao yao dao waipo qiao" in title_forms(
        "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)"
    )
    assert display_title("Usual Suspects, The (1995)") == "The Usual Suspects"
    assert {"sci fi", "scifi", "sci fis"} <= set(category_forms("Sci-Fi"))
    assert {"comedy", "comedies"} == set(category_forms("Comedy"))
    assert {"children's", "childrens", "children"} <= set(category_forms("Children's"))
    assert {"health", "fitness"} <= set(category_forms("Health & Fitness"))
    assert years_label((1990, 1999)) == "1990s" and years_label((1995, 1995)) == "1995"


def fake_embed(table: dict[str, str]):
    """Each text embeds as its category's one-hot (a word the table maps to a category
    gets that category's vector); anything else an even spread."""
    names = list(GENRES)

    def embed(texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), len(names)), 0.1, dtype=np.float32)
        for row, text in enumerate(texts):
            name = table.get(text.lower(), text)
            if name in names:
                out[row] = 0.0
                out[row, names.index(name)] = 1.0
        return out

    return embed


def test_the_language_model_finds_what_words_cannot():
    embed = fake_embed({"funny": "Comedy", "scary": "Horror", "romantic": "Romance"})
    parser = IntentParser.build(Lexicon.build(CATALOGUE), embed)
    assert parser.category_vectors is not None and parser.title_vectors is not None
    assert read("something funny, nothing scary", parser) == {
        "categories": ("Comedy",),
        "without": ("Horror",),
    }
    assert read("something dull", parser) == {}  # no category leads: nothing matched


def test_serving_fills_the_phrase_cache_before_parsing():
    embed = fake_embed({"funny": "Comedy"})
    lexicon = Lexicon.build(CATALOGUE)
    names, titles = lexicon.vocabulary()
    parser = IntentParser(lexicon, embed(names), embed(titles))  # no embed: like the ingress
    assert read("something funny", parser) == {}
    missing = parser.missing("something funny")
    assert missing == ["funny"]
    parser.remember(missing, embed(missing))
    assert parser.missing("something funny") == []
    assert read("something funny", parser) == {"categories": ("Comedy",)}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses(text):
    intent = PARSER.parse(text)
    assert set(intent.categories) <= set(CATALOGUE.categories)
    assert set(intent.like) <= set(CATALOGUE.ids)


def test_a_long_query_parses_quickly():
    query = ("a mystery like heat but nothing romantic from the 90s, " * 20)[:1000]
    start = time.perf_counter()
    intent = PARSER.parse(query)
    assert time.perf_counter() - start < 2.0
    assert intent.without == ("Romance",) and intent.like == ("m01",)


def test_constraints_filter_unwanted_and_boost_or_require_wanted():
    c = Constraints(CATALOGUE, boost=2.0)
    intent = Intent(categories=("Mystery",), without=("Romance",), years=(1990, 1999))
    excluded = c.excluded(intent)
    for row, item in enumerate(CATALOGUE.ids):
        cats = CATALOGUE.items[item].categories
        assert excluded[row] == ("Romance" in cats)
    boosts = c.boosts(intent)
    assert boosts[CATALOGUE.index["m20"]] == 4.0  # Mystery, 1995
    assert boosts[CATALOGUE.index["m05"]] == 2.0  # Mystery, 1980
    strict = c.excluded(intent, strict=True)
    assert not strict[CATALOGUE.index["m20"]] and strict[CATALOGUE.index["m05"]]
    assert c.matched(intent, CATALOGUE.index["m20"]) == ["Mystery", "not Romance", "1990s"]


def test_the_ranking_applies_the_intent(tmp_path):
    bundle = make_bundle(tmp_path / "b")  # 40 items: Drama, Comedy, Horror, Western in turn
    builder, ranker = QueryBuilder(bundle), CandidateRanker(bundle)
    vector = np.array([1.0, 0.0])

    def ids(**body):
        q = builder.build(RecommendRequest(**body))
        return [i.item_id for i in ranker.rank(vector, q)]

    def genres(items):
        return [bundle.catalogue.items[i].categories[0] for i in items]

    plain = genres(ids(query="something", k=10))
    assert "Horror" in plain and "Comedy" in plain
    assert "Horror" not in genres(ids(query="a comedy but nothing scary or horror", k=10))
    boosted = genres(ids(query="a comedy", k=10))
    assert boosted[:5] == ["Comedy"] * 5 and set(boosted) != {"Comedy"}  # boost, then others
    strict = genres(ids(query="a comedy", strict=True, k=12))
    assert strict == ["Comedy"] * 10  # only the 10 comedies
    unread = genres(ids(query="a comedy", parse_query=False, k=10))
    assert unread == plain


def test_referred_items_join_the_history_and_are_never_recommended(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    builder = QueryBuilder(bundle)
    q = builder.build(RecommendRequest(history=["i05"], query="like title 3 and title 7"))
    assert q.intent is not None and q.intent.like == ("i03", "i07")
    assert q.history == ("i05", "i03", "i07") and {"i03", "i07"} <= set(q.exclude)
    shown = understood(q.intent, q.strict, bundle.catalogue)
    assert [r.item_id for r in shown.like] == ["i03", "i07"] and shown.strict is False
    off = builder.build(RecommendRequest(history=["i05"], query="like title 3", parse_query=False))
    assert off.intent is None and off.history == ("i05",) and off.request == "like title 3"
    assert understood(off.intent, False, bundle.catalogue) is None


def test_the_labelled_query_set_is_built_from_the_catalogue():
    """jobs/query_eval.py's query set: every template, labels drawn from the catalogue and
    visible in the text, a share lower-cased and a share with one typo, reproducible."""
    queries = build_query_set(CATALOGUE, 90, seed=3, typo_share=0.3, lower_share=0.4)
    assert len(queries) == 90 and queries == build_query_set(CATALOGUE, 90, seed=3)
    assert {q.template for q in queries} == {t for _, t in TEMPLATES}  # titles carry years
    for q in queries:
        assert set(q.categories) | set(q.without) <= set(GENRES)
        assert not set(q.categories) & set(q.without)
        assert set(q.like) <= set(CATALOGUE.ids) and len(q.like) == ("{t}" in q.template)
        assert q.text == q.text.lower() if q.lower else q.text[0].isupper()
        if q.like and not q.typo:
            assert display_title(CATALOGUE.title(q.like[0])).lower() in q.text.lower()
        if q.years is not None:
            assert 1970 <= q.years[0] <= q.years[1] <= 2019  # the catalogue's decades
    typos, lower = sum(q.typo for q in queries), sum(q.lower for q in queries)
    assert 10 <= typos <= 45 and 20 <= lower <= 55
    clean = [q for q in queries if not q.typo and q.template == "{C1} without {c2}"]
    assert clean and all(read(q.text)["without"] == q.without for q in clean)
    assert typo("Mystery", np.random.default_rng(0)) != "Mystery"
    assert typo("Sci", np.random.default_rng(0)) == "Sci"  # too short to slip
