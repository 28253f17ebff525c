"""The verdict and the recommendation in words, and how figures are written for people."""

from __future__ import annotations

import numpy as np
import pytest

from kafer.errors import ModelError
from kafer.metrics import compare
from kafer.narrative import interval, judgements, number, recommendation, verdict
from test_metrics import BUDGETS, scores


def test_the_verdict_against_production_gives_the_numbers_and_says_whether_it_is_clear():
    y, p = scores(1000, seed=14, lift=0.5)
    weaker = np.clip(p * 0.3 + np.random.default_rng(2).random(len(p)) * 0.7, 0, 1)
    comparison = compare(y, p, weaker, budgets=BUDGETS, rounds=500, seed=0)
    words = verdict(comparison, budget=0.1, production=True)
    diff = comparison["difference"]["recall_at_10"]
    assert f"{diff['value'] * 100:.1f} more of every 100 road-test failures" in words
    assert f"{diff['low'] * 100:.1f} to {diff['high'] * 100:.1f}" in words
    assert "At a 10 % inspection budget" in words and "ROC-AUC" in words and "clearly better" in words
    assert f"{comparison['cars']:,} evaluation cars with {comparison['positives']:,}" in words
    reverse = compare(y, weaker, p, budgets=BUDGETS, rounds=500, seed=0)
    words = verdict(reverse, budget=0.1, production=True)
    assert "fewer of every 100" in words and "clearly worse" in words and "\u2212" in words
    assert recommendation(comparison, production=True)["choice"] == "keep-new"
    assert recommendation(reverse, production=True)["choice"] == "keep-old"
    assert "clearly worse on" in recommendation(reverse, production=True)["text"]


def test_no_clear_difference_keeps_production_as_the_safe_default():
    y, p = scores(300, seed=15, lift=0.2)
    q = np.clip(p + np.random.default_rng(3).normal(0, 0.02, len(p)), 0, 1)
    comparison = compare(y, p, q, budgets=BUDGETS, rounds=300, seed=0)
    assert all(j["judgement"] == "unclear" for j in judgements(comparison, against_production=True))
    advice = recommendation(comparison, production=True)
    assert advice == {"choice": "keep-old", "text": advice["text"]}
    assert advice["text"].startswith("No clear difference: keeping production is the safe default")
    assert "not clearly different" in verdict(comparison, budget=0.2, production=True)


def test_a_first_run_weighs_every_figure_against_chance_not_recall_alone():
    y, p = scores(800, seed=16, lift=0.5)
    comparison = compare(y, p, None, budgets=BUDGETS, rounds=300, seed=0)
    own = comparison["candidate"]["recall_at_10"]
    words = verdict(comparison, budget=0.1, production=False)
    assert words.startswith("There is no production model yet")
    assert f"finds {own['value'] * 100:.0f} of every 100 road-test failures" in words
    assert f"95 % interval {own['low'] * 100:.0f} to {own['high'] * 100:.0f}" in words
    assert "against 10 by chance" in words and "ROC-AUC" in words and "PR-AUC" in words
    judged = {j["metric"]: j for j in judgements(comparison, against_production=False)}
    assert judged["roc_auc"]["reference"] == 0.5 and judged["recall_at_20"]["reference"] == 0.2
    assert judged["pr_auc"]["reference"] == pytest.approx(y.mean())
    assert recommendation(comparison, production=False)["choice"] == "keep-new"


def test_a_ranking_clearly_better_than_chance_on_roc_auc_alone_is_called_so():
    """The earlier verdict rested on recall at 10 % alone and called such a model no better than chance."""
    comparison = {"cars": 400, "positives": 28, "budgets": [0.1],
                  "candidate": {"roc_auc": {"value": 0.710, "low": 0.619, "high": 0.798},
                                "pr_auc": {"value": 0.11, "low": 0.06, "high": 0.18},
                                "recall_at_10": {"value": 0.18, "low": 0.07, "high": 0.32}},
                  "difference": None, "production": None}
    words = verdict(comparison, budget=0.1, production=False)
    assert "ROC-AUC 0.710 [0.619, 0.798], clearly better than chance" in words
    advice = recommendation(comparison, production=False)
    assert advice["choice"] == "keep-new" and "ROC-AUC" in advice["text"]


def test_pure_noise_is_not_recommended_on_a_first_run():
    rng = np.random.default_rng(5)
    y = (rng.random(600) < 0.07).astype(int)
    y[:2] = [0, 1]
    comparison = compare(y, rng.random(600), None, budgets=BUDGETS, rounds=300, seed=0)
    advice = recommendation(comparison, production=False)
    assert advice["choice"] == "keep-old" and "not clearly better than chance" in advice["text"]


def test_no_fair_comparison_says_why_and_keeps_production():
    y, p = scores(300, seed=17)
    comparison = compare(y, p, None, budgets=BUDGETS, rounds=50, seed=0)
    fair = {"possible": False, "why": "of the 400 evaluation cars, 380 were production's own training cars"}
    words = verdict(comparison, budget=0.1, production=True, fair=fair)
    assert words.startswith("No fair comparison with production is possible yet")
    advice = recommendation(comparison, production=True, fair=fair)
    assert advice["choice"] == "keep-old" and fair["why"] in advice["text"]


def test_the_verdict_needs_a_compared_budget():
    y, p = scores(100, seed=17)
    with pytest.raises(ModelError, match="15 %"):
        verdict(compare(y, p, None, budgets=BUDGETS, rounds=10, seed=0), budget=0.15, production=False)


def test_numbers_use_a_true_minus_and_never_minus_zero():
    assert number(-0.00001, 3) == "0.000" and number(-0.5, 1) == "\u22120.5" and number(0.25, 2, sign=True) == "+0.25"


def test_an_interval_reads_value_then_bounds_and_says_when_there_is_none():
    assert interval({"value": 0.7104, "low": 0.619, "high": 0.7981}) == "0.710 [0.619, 0.798]"
    assert interval({"value": 0.0005, "low": -0.0012, "high": 0.0021}, 4, sign=True) == "+0.0005 [\u22120.0012, +0.0021]"
    assert interval({"value": 0.5, "low": None, "high": None}) == "0.500"
    assert interval(None) == "—"


def test_inputs_read_as_an_inspector_says_them():
    from kafer.narrative import condition_words, input_words

    assert input_words("nok_test:131200") == "test 131200 NOK"
    assert input_words("nok_test:131200", 2) == "test 131200 NOK twice"
    assert input_words("config:MOTOR", 0, category="CWL") == "engine CWL"
    assert input_words("config:MOTOR", 3, category="") == "engine (blank)"
    assert input_words("repeated_checkpoint:M594", 2) == "passed M594 twice"
    assert input_words("repeated_checkpoint:M594", 3) == "passed M594 3 times"
    assert input_words("defect:ZP7|PAINEL LATERAL 01. AMASSADO") == "ZP7 defect PAINEL LATERAL 01. AMASSADO"
    assert input_words("station:PCEQS702", 2) == "2 defects at station PCEQS702"
    assert input_words("dwell_min_ZP6", 52.4, typical=30.1) == "52 min in ZP6 (typical 30)"
    assert input_words("n_nok_id2", 12, typical=1) == "12 NOK screw tightenings (typical 1)"
    assert input_words("n_falhas_ZP5", 2, typical=0) == "2 defects in ZP5 (typical 0)"
    assert input_words("n_falhas_pre_road", 20, typical=3) == "20 defects before the road test (typical 3)"
    assert input_words("dwell_min_pre_road", 720, typical=600) == "12.0 h on the line (typical 10.0)"
    assert input_words("weekday_at_ZP7", 5) == "passed ZP7 on a Saturday"
    assert input_words("shift_at_ZP6", 3) == "passed ZP6 on shift 3"
    assert condition_words("repeated_checkpoint:L66A", above=0) == "passed L66A more than once"
    assert condition_words("n_nok_id2", above=2) == "more than 2 NOK screw tightenings"
    assert condition_words("n_nok_id2", above=0) == "any NOK screw tightenings"
    assert condition_words("config:COR", value=1, category="2R2R") == "colour 2R2R"
