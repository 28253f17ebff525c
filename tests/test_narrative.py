"""The verdict in words, and how figures are written for people."""

from __future__ import annotations

import numpy as np
import pytest

from kafer.errors import ModelError
from kafer.metrics import compare
from kafer.narrative import interval, number, verdict
from test_metrics import BUDGETS, scores


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


def test_numbers_use_a_true_minus_and_never_minus_zero():
    assert number(-0.00001, 3) == "0.000" and number(-0.5, 1) == "\u22120.5" and number(0.25, 2, sign=True) == "+0.25"


def test_an_interval_reads_value_then_bounds_and_says_when_there_is_none():
    assert interval({"value": 0.7104, "low": 0.619, "high": 0.7981}) == "0.710 [0.619, 0.798]"
    assert interval({"value": 0.0005, "low": -0.0012, "high": 0.0021}, 4, sign=True) == "+0.0005 [\u22120.0012, +0.0021]"
    assert interval({"value": 0.5, "low": None, "high": None}) == "0.500"
    assert interval(None) == "—"
