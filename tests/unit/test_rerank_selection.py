"""Choosing a re-ranking knob on validation (the selection rules) and the combined re-rankers
of the sweep, each served as one SlateSpec."""

import numpy as np
import pandas as pd
import pytest
from llmrec.evaluation import sweep
from llmrec.evaluation.selection import DEFAULT, SINGLE, Rule, losses
from llmrec.ranking import SlateSpec, greedy
from llmrec.ranking.measures import tail_share
from llmrec.ranking.rerank import Candidates, category_distribution


def _gains(rng: np.random.Generator, users: int, hit: float) -> np.ndarray:
    """Per-user NDCG of a list that finds the target with probability ``hit`` at rank 1."""
    return (rng.random(users) < hit).astype(float)


def test_single_charges_the_point_estimate_and_bootstrap_a_lower_quantile():
    rng = np.random.default_rng(0)
    base = _gains(rng, 400, 0.2)
    knob = np.where(rng.random(400) < 0.06, 0.0, base)  # loses ~6% of the hits
    point = 1 - knob.mean() / base.mean()
    (single,) = losses(base, knob[None], SINGLE)
    (lower,) = losses(base, knob[None], DEFAULT)
    assert single == pytest.approx(point)
    assert 0.0 <= lower < point  # a lower quantile of the resampled loss
    # a setting that changes nothing is charged nothing by either rule
    assert losses(base, base[None], SINGLE)[0] == 0.0
    assert losses(base, base[None], DEFAULT)[0] == pytest.approx(0.0)
    # reproducible: the same seed, the same charge
    assert losses(base, knob[None], DEFAULT)[0] == lower


def _val_table(base: np.ndarray, settings: dict[float, np.ndarray]) -> pd.DataFrame:
    gains = np.stack([base, *settings.values()])
    rows = pd.DataFrame(
        {
            "reranker": ["none", *(["msd"] * len(settings))],
            "knob": [0.0, *settings],
            "depth": [10, *([50] * len(settings))],
            "ndcg_at_10": gains.mean(1),
            "diversity": [0.60, *(0.60 + 0.3 * np.array(list(settings)))],
        }
    )
    for rule in (SINGLE, DEFAULT):
        rows[sweep.loss_column(rule)] = losses(base, gains, rule)
    return rows


def test_the_rule_decides_which_knob_is_chosen():
    # knob 0.3 loses 3% of NDCG, knob 0.5 about 6% with 300 users (noise ~2.5%),
    # knob 0.7 30%: the point estimate stops at 0.3, the bootstrap admits 0.5, no rule 0.7
    rng = np.random.default_rng(1)
    base = _gains(rng, 300, 0.3)
    drop = rng.random(300)
    val = _val_table(
        base,
        {
            0.3: np.where(drop < 0.03, 0.0, base),
            0.5: np.where(drop < 0.06, 0.0, base),
            0.7: np.where(drop < 0.30, 0.0, base),
        },
    )
    assert 0.05 < val.loc[2, "ndcg_loss"] < 0.08
    assert sweep.choose(val, "msd", 0.05, rule=SINGLE)["knob"] == 0.3
    assert sweep.choose(val, "msd", 0.05, rule=DEFAULT)["knob"] == 0.5
    # nothing within a budget of 1%: the un-re-ranked lists
    assert sweep.choose(val, "msd", 0.01, rule=SINGLE)["reranker"] == "none"


def test_a_rule_with_a_bad_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="selection rule"):
        Rule("median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantile"):
        Rule("bootstrap", quantile=1.5)
    assert Rule("bootstrap", 0.25).label == "bootstrap q0.25" and SINGLE.label == "single"


def test_a_combined_family_is_one_slate_spec_as_served():
    assert sweep.family("msd+cap4").spec(0.4) == SlateSpec(
        "msd", diversity=0.4, max_per={"categories": 4}
    )
    assert sweep.family("calibrated+msd0.2").spec(0.35) == SlateSpec(
        "msd", diversity=0.2, calibration=0.35
    )
    assert sweep.family("calibrated+tail0.2").spec(0.5) == SlateSpec(
        calibration=0.5, tail_share=0.2
    )
    assert sweep.family("cap").spec(3.0) == SlateSpec(max_per={"categories": 3})
    assert sweep.family("msd+cap4").needs_categories and not sweep.family("msd").needs_categories


def _genre_pool(users: int = 20, n: int = 40, genres: int = 6, seed: int = 0) -> Candidates:
    """Candidates whose most relevant items crowd into genre 0; every third is long-tail."""
    rng = np.random.default_rng(seed)
    g = np.where(rng.random((users, n)) < 0.6, 0, rng.integers(1, genres, (users, n)))
    onehot = np.eye(genres)[g]
    rel = -np.arange(n, dtype=float)[None].repeat(users, 0) + 3.0 * (g == 0)
    history = np.full((users, genres), 1.0 / genres)
    tail = (np.arange(n) % 3 == 2)[None].repeat(users, 0)
    return Candidates(
        rel,
        vectors=onehot,
        genres=category_distribution(onehot.reshape(-1, genres)).reshape(users, n, genres),
        history=history,
        tail=tail,
        codes={"categories": g[:, :, None]},
    )


def _diversity(picked: np.ndarray, cands: Candidates) -> float:
    v = np.take_along_axis(cands.vectors, picked[:, :, None], axis=1)
    sim = np.einsum("ukf,ulf->ukl", v, v)
    k = picked.shape[1]
    return float((1 - sim).sum((1, 2)).mean() / (k * (k - 1)))


def test_msd_with_a_cap_respects_the_cap_and_diversifies_more_than_the_cap_alone():
    cands = _genre_pool()
    capped = greedy(cands, 10, sweep.family("cap").spec(4.0))
    both = greedy(cands, 10, sweep.family("msd+cap4").spec(0.5))
    relevance = greedy(cands, 10, SlateSpec())
    per_genre = np.take_along_axis(cands.codes["categories"][:, :, 0], both, axis=1)
    assert max(np.bincount(row).max() for row in per_genre) <= 4  # at most 4 of genre 0
    assert _diversity(relevance, cands) < _diversity(capped, cands) < _diversity(both, cands)


def test_calibration_with_a_tail_share_raises_the_tail_and_keeps_calibrating():
    cands = _genre_pool(seed=1)
    calibrated = greedy(cands, 10, SlateSpec(calibration=0.5))
    both = greedy(cands, 10, sweep.family("calibrated+tail0.2").spec(0.5))
    tail_of = np.zeros(40, dtype=bool)
    tail_of[2::3] = True
    # every list holds at least 2 long-tail items of 10 (the tail items are rows 2, 5, ...)
    assert (tail_of[both].sum(1) >= 2).all()
    assert tail_share(both, tail_of) >= 0.2
    # and its genre mix stays about as close to the uniform history as calibration's alone

    def top_genre(picked: np.ndarray) -> float:
        """Mean count of the most frequent genre in a list of 10."""
        genres = np.take_along_axis(cands.codes["categories"][:, :, 0], picked, 1)
        return float(np.mean([np.bincount(row, minlength=6).max() for row in genres]))

    relevance = greedy(cands, 10, SlateSpec())
    assert top_genre(both) <= top_genre(calibrated) + 1 < top_genre(relevance)
