"""Figures against scikit-learn, the budget rule, the paired bootstrap, the verdict, drift."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from kafer.errors import ModelError
from kafer.metrics import (compare, data_summary, drift, evaluate, gain_curve, metric_names, threshold_at,
                           verdict)

BUDGETS = (0.05, 0.10, 0.20)


def scores(n: int, *, seed: int, rate: float = 0.1, lift: float = 0.3, digits: int | None = None):
    """Labels and probabilities with some signal; rounded to ``digits`` to make ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    y[:2] = [0, 1]
    p = np.clip(rng.random(n) * 0.6 + lift * y * rng.random(n), 0, 1)
    return y, (np.round(p, digits) if digits is not None else p)


@pytest.mark.parametrize("seed,digits", [(0, None), (1, 1), (2, 2), (3, 0)])
def test_aucs_and_brier_equal_scikit_learn_ties_included(seed, digits):
    y, p = scores(150, seed=seed, digits=digits)
    figures = evaluate(y, p, budgets=BUDGETS)
    assert figures["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert figures["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert figures["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert tuple(figures) == metric_names(BUDGETS)


def test_recall_and_precision_at_a_budget_count_the_riskiest_cars():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.linspace(0.95, 0.0, 20)
    figures = evaluate(y, p, budgets=(0.1, 0.2, 0.45))
    assert figures["recall_at_10"] == pytest.approx(1 / 3)  # 2 cars inspected: one failure
    assert figures["precision_at_10"] == pytest.approx(1 / 2)
    assert figures["recall_at_20"] == pytest.approx(2 / 3)  # 4 cars
    assert figures["precision_at_20"] == pytest.approx(2 / 4)
    assert figures["recall_at_45"] == pytest.approx(3 / 3)  # ceil(9) = 9 cars
    assert figures["precision_at_45"] == pytest.approx(3 / 9)


def test_a_tie_at_the_cut_counts_each_tied_car_for_its_share():
    # 10 cars, budget 10 % = 1 car; the two riskiest tie, one of them fails: half a failure found
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.0])
    figures = evaluate(y, p, budgets=(0.1,))
    assert figures["recall_at_10"] == pytest.approx(0.5 / 2)
    assert figures["precision_at_10"] == pytest.approx(0.5)
    flipped = evaluate(y, np.r_[p[1], p[0], p[2:]], budgets=(0.1,))
    assert flipped == figures  # the order of the cars does not matter


def test_the_gain_curve_passes_through_each_recall_at_budget():
    y, p = scores(300, seed=4, digits=2)
    share, found = gain_curve(y, p)
    figures = evaluate(y, p, budgets=BUDGETS)
    for b in BUDGETS:
        at = math.ceil(b * len(y)) / len(y)
        assert np.interp(at, share, found) == pytest.approx(figures[f"recall_at_{round(b * 100)}"])
    assert (share[0], found[0], share[-1], found[-1]) == (0, 0, 1, 1)


def test_the_operating_threshold_is_the_score_of_the_last_car_inside_the_budget():
    assert threshold_at(np.arange(100) / 100, budget=0.1) == 0.9
    with pytest.raises(ModelError):
        threshold_at([], budget=0.1)


@pytest.mark.parametrize("y,p,match", [
    ([0, 0, 0], [0.1, 0.2, 0.3], "must include road-test failures"),
    ([0, 1], [0.1, 0.2, 0.3], "same length"),
    ([0, 1, 2], [0.1, 0.2, 0.3], "0 or 1"),
    ([0, 1, 0], [0.1, 1.2, 0.3], "between 0 and 1"),
    ([0, 1, 0], [0.1, np.nan, 0.3], "between 0 and 1"),
])
def test_unusable_inputs_are_refused(y, p, match):
    with pytest.raises(ModelError, match=match):
        evaluate(y, p, budgets=BUDGETS)


def test_budgets_must_be_shares():
    with pytest.raises(ModelError, match="budgets"):
        evaluate([0, 1], [0.1, 0.2], budgets=(10,))


def test_every_interval_contains_its_value():
    y, p = scores(400, seed=5)
    _, q = scores(400, seed=6)
    comparison = compare(y, p, np.clip(p * 0.5 + q * 0.5, 0, 1), budgets=BUDGETS, rounds=500, seed=1)
    for part in ("candidate", "production", "difference"):
        assert set(comparison[part]) == set(metric_names(BUDGETS))
        for name, figure in comparison[part].items():
            assert figure["low"] <= figure["value"] <= figure["high"], (part, name)
    assert comparison["cars"] == 400 and comparison["positives"] == int(y.sum()) and comparison["rounds"] == 500


def test_point_values_equal_evaluate_and_the_difference_is_candidate_minus_production():
    y, p = scores(300, seed=7)
    q = np.clip(p + np.random.default_rng(0).normal(0, 0.1, len(p)), 0, 1)
    comparison = compare(y, p, q, budgets=BUDGETS, rounds=50, seed=0)
    own, theirs = evaluate(y, p, budgets=BUDGETS), evaluate(y, q, budgets=BUDGETS)
    for name in own:
        assert comparison["candidate"][name]["value"] == pytest.approx(own[name])
        assert comparison["production"][name]["value"] == pytest.approx(theirs[name])
        assert comparison["difference"][name]["value"] == pytest.approx(own[name] - theirs[name])


def test_identical_models_differ_by_exactly_zero():
    y, p = scores(300, seed=8, digits=2)
    comparison = compare(y, p, p.copy(), budgets=BUDGETS, rounds=300, seed=3)
    for figure in comparison["difference"].values():
        assert figure == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_without_production_there_is_no_difference():
    y, p = scores(200, seed=9)
    comparison = compare(y, p, None, budgets=BUDGETS, rounds=100, seed=0)
    assert comparison["production"] is None and comparison["difference"] is None


def test_the_bootstrap_resamples_cars_as_scikit_learn_on_each_resample_would():
    y, p = scores(60, seed=10, rate=0.2, digits=2)
    rounds, seed = 200, 42
    comparison = compare(y, p, None, budgets=BUDGETS, rounds=rounds, seed=seed)
    drawn = np.random.default_rng(seed).integers(0, len(y), size=(rounds, len(y)))
    aucs = [roc_auc_score(y[i], p[i]) for i in drawn if 0 < y[i].sum() < len(y)]
    aps = [average_precision_score(y[i], p[i]) for i in drawn if 0 < y[i].sum() < len(y)]
    briers = [brier_score_loss(y[i], p[i]) for i in drawn]
    for name, values in (("roc_auc", aucs), ("pr_auc", aps), ("brier", briers)):
        low, high = np.percentile(values, [2.5, 97.5])
        assert comparison["candidate"][name]["low"] == pytest.approx(low, abs=1e-12)
        assert comparison["candidate"][name]["high"] == pytest.approx(high, abs=1e-12)


def test_resamples_with_a_single_class_are_skipped():
    y = np.zeros(40, dtype=int)
    y[0] = 1
    p = np.linspace(1, 0, 40)
    comparison = compare(y, p, None, budgets=(0.1,), rounds=300, seed=0)
    assert 0 < comparison["single_class_rounds"] < 300
    assert comparison["candidate"]["roc_auc"]["low"] is not None


def test_the_same_seed_gives_the_same_intervals():
    y, p = scores(300, seed=11)
    assert compare(y, p, None, budgets=BUDGETS, rounds=200, seed=5) == compare(
        y, p, None, budgets=BUDGETS, rounds=200, seed=5)


def test_a_thousand_paired_rounds_on_two_thousand_cars_take_seconds():
    y, p = scores(2000, seed=12, rate=0.07)
    q = np.clip(p + np.random.default_rng(1).normal(0, 0.1, len(p)), 0, 1)
    started = time.perf_counter()
    compare(y, p, q, budgets=BUDGETS, rounds=1000, seed=0)
    assert time.perf_counter() - started < 10


def test_compare_refuses_mismatched_production_and_no_rounds():
    y, p = scores(100, seed=13)
    with pytest.raises(ModelError, match="production"):
        compare(y, p, p[:-1], budgets=BUDGETS, rounds=10, seed=0)
    with pytest.raises(ModelError, match="rounds"):
        compare(y, p, None, budgets=BUDGETS, rounds=0, seed=0)


def test_the_verdict_against_production_gives_the_numbers_and_says_whether_it_is_clear():
    y, p = scores(1000, seed=14, lift=0.5)
    weaker = np.clip(p * 0.3 + np.random.default_rng(2).random(len(p)) * 0.7, 0, 1)
    comparison = compare(y, p, weaker, budgets=BUDGETS, rounds=500, seed=0)
    words = verdict(comparison, budget=0.1)
    diff = comparison["difference"]["recall_at_10"]
    assert f"{diff['value'] * 100:.1f} more of every 100 road-test failures" in words
    assert f"{diff['low'] * 100:.1f} to {diff['high'] * 100:.1f}" in words
    assert "At a 10 % inspection budget" in words and "clearly better" in words
    assert f"{comparison['cars']:,} evaluation cars with {comparison['positives']:,}" in words
    reverse = verdict(compare(y, weaker, p, budgets=BUDGETS, rounds=500, seed=0), budget=0.1)
    assert "fewer of every 100" in reverse and "clearly worse" in reverse and "\u2212" in reverse


def test_the_verdict_says_when_the_difference_is_not_clear():
    y, p = scores(300, seed=15, lift=0.2)
    q = np.clip(p + np.random.default_rng(3).normal(0, 0.02, len(p)), 0, 1)
    words = verdict(compare(y, p, q, budgets=BUDGETS, rounds=300, seed=0), budget=0.2)
    assert "At a 20 % inspection budget" in words and "the difference is not clear" in words


def test_the_verdict_without_production_compares_with_chance():
    y, p = scores(800, seed=16, lift=0.5)
    comparison = compare(y, p, None, budgets=BUDGETS, rounds=300, seed=0)
    own = comparison["candidate"]["recall_at_10"]
    words = verdict(comparison, budget=0.1)
    assert f"finds {own['value'] * 100:.0f} of every 100 road-test failures" in words
    assert f"95 % interval {own['low'] * 100:.0f} to {own['high'] * 100:.0f}" in words
    assert "vs 10 by chance" in words


def test_the_verdict_needs_a_compared_budget():
    y, p = scores(100, seed=17)
    with pytest.raises(ModelError, match="15 %"):
        verdict(compare(y, p, None, budgets=BUDGETS, rounds=10, seed=0), budget=0.15)


def test_a_pure_noise_score_has_a_roc_auc_near_one_half():
    rng = np.random.default_rng(18)
    y = (rng.random(5000) < 0.07).astype(int)
    assert abs(evaluate(y, rng.random(5000), budgets=BUDGETS)["roc_auc"] - 0.5) < 0.04


def frame(n: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"n_nok_id2": rng.poisson(2 + shift, n), "dwell_min_ZP7": rng.gamma(2, 30 + 30 * shift, n),
                         "label_rod": (rng.random(n) < 0.07).astype(int), "label_known": rng.random(n) < 0.9,
                         "produced_at": pd.Timestamp("2024-04-01") + pd.to_timedelta(rng.integers(0, 9999, n), "min")})


def test_drift_finds_a_shifted_feature_and_not_an_unchanged_one():
    old, new = frame(3000, seed=1), frame(3000, seed=2, shift=2.0)
    out = drift(old, new, features=["n_nok_id2", "dwell_min_ZP7"])
    assert list(out.columns) == ["mean_old", "mean_new", "psi", "ks", "shift"]
    assert out.loc["dwell_min_ZP7", "shift"] == "large" and out.loc["n_nok_id2", "psi"] > 0.25
    same = drift(old, old, features=["n_nok_id2", "dwell_min_ZP7"])
    assert (same["psi"] == 0).all() and (same["ks"] == 0).all() and (same["shift"] == "none").all()
    calm = drift(old, frame(3000, seed=3), features=["n_nok_id2", "dwell_min_ZP7"])
    assert (calm["psi"] < 0.1).all()


def test_drift_names_a_missing_feature():
    with pytest.raises(ModelError, match="n_falhas_ZP5"):
        drift(frame(10, seed=1), frame(10, seed=2), features=["n_falhas_ZP5"])


def test_data_summary_counts_cars_labels_and_the_period():
    table = frame(500, seed=4)
    summary = data_summary(table)
    known = table["label_known"]
    assert summary["cars"] == 500 and summary["labelled cars"] == known.sum()
    assert summary["road-test failures"] == table.loc[known, "label_rod"].sum()
    assert summary["failure rate"] == pytest.approx(table.loc[known, "label_rod"].mean())
    assert summary["produced from"] == table["produced_at"].min().isoformat()
    assert summary["produced to"] == table["produced_at"].max().isoformat()
    with pytest.raises(ModelError, match="label_known"):
        data_summary(table.drop(columns="label_known"))
