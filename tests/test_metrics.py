"""Figures against scikit-learn, the budget rule, the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from kafer.errors import ModelError
from kafer.metrics import compare, evaluate, gain_curve, holm, metric_names, proportion, threshold_at, threshold_share

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


def test_every_interval_is_ordered_and_within_what_the_figure_can_be():
    y, p = scores(400, seed=5)
    _, q = scores(400, seed=6)
    comparison = compare(y, p, np.clip(p * 0.5 + q * 0.5, 0, 1), budgets=BUDGETS, rounds=500, seed=1)
    for part in ("candidate", "production", "difference"):
        assert set(comparison[part]) == set(metric_names(BUDGETS))
        bound = (-1, 1) if part == "difference" else (0, 1)
        for name, figure in comparison[part].items():
            assert bound[0] <= figure["low"] <= figure["high"] <= bound[1], (part, name)
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


def test_compare_refuses_mismatched_production_and_no_rounds():
    y, p = scores(100, seed=13)
    with pytest.raises(ModelError, match="production"):
        compare(y, p, p[:-1], budgets=BUDGETS, rounds=10, seed=0)
    with pytest.raises(ModelError, match="rounds"):
        compare(y, p, None, budgets=BUDGETS, rounds=0, seed=0)


def test_a_pure_noise_score_has_a_roc_auc_near_one_half():
    rng = np.random.default_rng(18)
    y = (rng.random(5000) < 0.07).astype(int)
    assert abs(evaluate(y, rng.random(5000), budgets=BUDGETS)["roc_auc"] - 0.5) < 0.04


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, 0.5]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    with pytest.raises(ModelError):
        holm([1.2])


def test_the_threshold_drifts_far_only_beyond_the_tolerance_and_the_noise():
    assert threshold_share(210, 1000, budget=0.1, tolerance=0.5)["far"]
    assert not threshold_share(130, 1000, budget=0.1, tolerance=0.5)["far"]  # 30 % over: within the tolerance
    assert not threshold_share(4, 20, budget=0.1, tolerance=0.5)["far"]  # 20 % of 20 cars: noise
    assert threshold_share(0, 0, budget=0.1, tolerance=0.5) == {"value": None, "low": None, "high": None,
                                                                 "budget": 0.1, "far": False}


def test_a_share_s_interval_is_wilson_s():
    share = proportion(7, 70)
    assert share["value"] == 0.1 and share["low"] == pytest.approx(0.0493, abs=1e-4)
    assert share["high"] == pytest.approx(0.1923, abs=1e-4)
    assert proportion(0, 0) == {"value": None, "low": None, "high": None}


def test_figures_at_another_failure_rate_are_those_of_the_cars_weighted_to_it():
    """100 failures and 650 other cars (13.3 %) counted at 100 / 1,400 (7.1 %) are the same cars with every
    other car counted twice: same ranking, the plant failing about half as often."""
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(100), np.zeros(650)].astype(int)
    p = np.clip(rng.beta(2, 8, 750) + 0.08 * y, 0, 1)
    weighted = compare(y, p, budgets=(0.1, 0.2), rounds=200, seed=1, at_rate=100 / 1400)["candidate"]
    twice = evaluate(np.r_[y, y[y == 0]], np.r_[p, p[y == 0]], budgets=(0.1, 0.2))
    assert {name: weighted[name]["value"] for name in twice} == pytest.approx(twice)
    plain = compare(y, p, budgets=(0.1, 0.2), rounds=200, seed=1)["candidate"]
    assert weighted["roc_auc"]["value"] == pytest.approx(plain["roc_auc"]["value"])
    assert weighted["recall_at_10"]["value"] > plain["recall_at_10"]["value"]
    assert weighted["recall_at_10"]["low"] < weighted["recall_at_10"]["value"] < weighted["recall_at_10"]["high"]
    with pytest.raises(ModelError, match="between 0 and 1"):
        compare(y, p, budgets=(0.1,), rounds=10, seed=1, at_rate=1.0)
