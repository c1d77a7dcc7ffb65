"""Per-request re-ranking in serving (diversity, calibration, tail share, caps per attribute
value) over a hand-built bundle: the version's rank.* defaults, request overrides, and 4xx
for bad values; no model and no Ray."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from llmrec.config import load_config
from llmrec.ranking import HybridScorer, HybridWeights, long_tail
from llmrec.registry.bundle import ModelBundle
from llmrec.serving import CandidateRanker, QueryBuilder, RecommendRequest, RequestError
from pydantic import ValidationError

N = 40
GENRES = ["Drama", "Comedy", "Horror", "Western"]


def provider_of(i: int) -> str:
    return "p0" if i < 20 else "p1" if i < 30 else "p2"


def make_bundle(path, **rank) -> ModelBundle:
    """40 items: genre i % 4, provider p0 (items 0-19), p1 (20-29), p2 (30-39), popularity
    falling with i; the query vector points at item 0 and relevance falls with the index."""
    rng = np.random.default_rng(0)
    emb = np.linspace(1.0, 0.0, N)[:, None] * np.array([[1.0, 0.0]]) + [[0.0, 0.1]]
    emb = emb + 0.001 * rng.standard_normal((N, 2))
    items = pa.table(
        {
            "item_id": [f"i{i:02d}" for i in range(N)],
            "title": [f"title {i}" for i in range(N)],
            "text": [None] * N,
            "categories": [[GENRES[i % 4]] for i in range(N)],
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.astype(np.float32).reshape(-1)), 2
            ),
            "provider": pa.array([[provider_of(i)] for i in range(N)], pa.list_(pa.string())),
        }
    )
    path.mkdir()
    pq.write_table(items, path / "items.parquet")
    overrides = ["rank.similarity=categories"] + [f"rank.{k}={v}" for k, v in rank.items()]
    cfg = load_config(None, overrides).to_dict()
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # u1 watched only Westerns (items 3, 7); u2 half Drama, half Comedy
    pd.DataFrame({"user_id": ["u1", "u2"], "items": [["i03", "i07"], ["i00", "i01"]]}).to_parquet(
        path / "histories.parquet", index=False
    )
    counts = np.arange(N, 0, -1).astype(np.float32)  # item 0 the most popular
    HybridScorer(emb, HybridWeights(1.0, 0.0, 0.0), None, counts).save(path / "hybrid")
    return ModelBundle(path)


def answer(bundle, **body):
    builder, ranker = QueryBuilder(bundle), CandidateRanker(bundle)
    q = builder.build(RecommendRequest(**body))
    return [int(i.item_id[1:]) for i in ranker.rank(np.array([1.0, 0.0]), q)]


TAIL = long_tail(np.arange(N, 0, -1))  # items 8.. are the tail (top 20% = items 0-7)


def test_requests_override_the_versions_defaults(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    plain = answer(bundle, user_id="u2", k=6)
    assert plain == [2, 3, 4, 5, 6, 7]  # relevance order, history 0, 1 masked
    tailed = answer(bundle, user_id="u2", k=6, tail_share=0.5)
    assert TAIL[tailed].sum() == 3 and tailed[:3] == [2, 3, 4]
    assert answer(bundle, user_id="u2", k=6, max_per={"provider": 2}) == [2, 3, 20, 21, 30, 31]
    # at most 1 each of 3 providers for 6 slots: the 3 allowed, then the best of the rest
    assert answer(bundle, user_id="u2", k=6, max_per={"provider": 1}) == [2, 3, 4, 5, 20, 30]
    by_genre = answer(bundle, user_id="u2", k=4, max_per={"categories": 1})
    assert sorted(i % 4 for i in by_genre) == [0, 1, 2, 3]


def test_calibration_brings_the_history_genre_into_the_list(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    plain = answer(bundle, user_id="u1", k=4)
    calibrated = answer(bundle, user_id="u1", k=4, calibration=0.9)
    # u1 watched only Westerns (genre 3): calibration fills the list with them
    assert sum(i % 4 == 3 for i in calibrated) > sum(i % 4 == 3 for i in plain)
    assert sum(i % 4 == 3 for i in calibrated) == 4


def test_a_combination_chosen_by_the_sweep_is_served_as_one_request(tmp_path):
    """The sweep's combinations (calibration + tail share, MSD + cap per genre) are one
    request each: every knob of it holds in the one list served."""
    bundle = make_bundle(tmp_path / "b", diversity="msd")
    # u2 watched Drama and Comedy (genres 0, 1): calibration keeps to them (2 tail items)
    assert answer(bundle, user_id="u2", k=5, calibration=0.5) == [4, 5, 8, 9, 2]
    both = answer(bundle, user_id="u2", k=5, calibration=0.5, tail_share=0.6)
    assert TAIL[both].sum() == 3  # the tail share raises the long tail to 3 of 5 ...
    assert all(i % 4 in (0, 1) for i in both)  # ... and the list stays Drama and Comedy
    tail_only = answer(bundle, user_id="u2", k=5, tail_share=0.6)
    assert sum(i % 4 in (0, 1) for i in tail_only) == 2  # the tail alone ignores the history
    every = answer(
        bundle, user_id="u2", k=5, calibration=0.5, tail_share=0.6, diversity=0.3,
        max_per={"categories": 2},
    )  # fmt: skip
    assert max(sum(i % 4 == g for i in every) for g in range(4)) <= 2  # the cap holds too
    assert TAIL[every].sum() == 3


def test_version_defaults_apply_and_a_request_can_turn_them_off(tmp_path):
    bundle = make_bundle(tmp_path / "b", tail_share=0.5, max_per="{provider: 2}")
    default = answer(bundle, user_id="u2", k=6)
    assert default == [2, 3, 20, 21, 30, 31]  # 2 per provider, 4 tail items (3 owed)
    off = answer(bundle, user_id="u2", k=6, tail_share=0.0, max_per={})
    assert off == [2, 3, 4, 5, 6, 7]


def test_unknown_attribute_in_max_per_is_a_404_naming_the_known_ones(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(RequestError) as err:
        QueryBuilder(bundle).build(RecommendRequest(query="x", max_per={"colour": 2}))
    assert err.value.status == 404  # well-formed, but not in this catalogue (like categories)
    assert err.value.message == (
        "unknown attributes in max_per: 'colour' (known: categories, provider)"
    )


def test_a_version_whose_default_caps_name_a_missing_attribute_fails_to_load(tmp_path):
    bundle = make_bundle(tmp_path / "b", max_per="{brand: 2}")
    with pytest.raises(ValueError, match=r"unknown attribute\(s\) in max_per: 'brand'"):
        CandidateRanker(bundle)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("diversity", 1.5, "less than or equal to 1"),
        ("calibration", -0.1, "greater than or equal to 0"),
        ("tail_share", 2, "less than or equal to 1"),
        ("tail_share", float("nan"), "finite number"),
        ("max_per", {"provider": 0}, "greater than or equal to 1"),
        ("max_per", {"provider": 101}, "less than or equal to 100"),
        ("max_per", {"provider": "2"}, "valid integer"),
        ("max_per", {"": 2}, "at least 1 character"),
        ("max_per", ["provider"], "valid dictionary"),
    ],
)
def test_out_of_range_request_values_are_refused(field, value, message):
    with pytest.raises(ValidationError, match=message):
        RecommendRequest(query="x", **{field: value})


def test_list_measures_are_the_offline_report_measures_of_one_list(tmp_path):
    """Items 0, 1, 8, 12 for u1 (two Westerns): genres Drama, Comedy, Drama, Drama."""
    ranker = CandidateRanker(make_bundle(tmp_path / "b"))
    m = ranker.measure(["i00", "i01", "i08", "i12", "nope"], ["i03", "i07"])
    assert m.categories == 2
    assert m.tail_share == 0.5  # items 8 and 12 are outside the top 20%
    assert m.mean_popularity == (40 + 39 + 32 + 28) / 4
    # category vectors (rank.similarity=categories): 1 - cosine is 1 between genres, 0 within;
    # of the 12 ordered pairs, 6 join the Comedy to a Drama
    assert m.diversity == pytest.approx(6 / 12)
    # the list has no Western: far from u1's history (KL with the 0.01 smoothing)
    assert m.miscalibration == pytest.approx(np.log(1 / 0.01))
    assert ranker.measure([], []).diversity is None
    assert ranker.measure(["i00"], []).miscalibration is None  # no history to calibrate to
