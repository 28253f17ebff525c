"""The comparison's figures and table: what they draw, and that they leave nothing open."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kafer.errors import ModelError
from kafer.metrics import compare, threshold_at
from kafer.report import (calibration, confusion_matrices, metrics_table, pr_curves, recall_by_budget, risk_chart,
                          roc_curves)

BUDGETS = (0.05, 0.10, 0.20)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    candidate = np.clip(0.05 + 0.3 * y * rng.random(400) + 0.2 * rng.random(400), 0, 1)
    production = np.round(np.clip(0.05 + 0.1 * y * rng.random(400) + 0.2 * rng.random(400), 0, 1), 2)
    return y, {"candidate": candidate, "production": production}


def drawn(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


@pytest.mark.parametrize("plot", [roc_curves, pr_curves, calibration, recall_by_budget])
def test_each_curve_figure_draws_every_model_and_leaves_no_figure_open(scored, plot):
    y, probs = scored
    open_before = plt.get_fignums()
    fig = plot(y, probs)
    assert isinstance(fig, Figure) and plt.get_fignums() == open_before
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any(label.startswith("candidate") for label in labels)
    assert any(label.startswith("production") for label in labels)
    assert drawn(fig).startswith(b"\x89PNG")


def test_one_model_is_enough(scored):
    y, probs = scored
    fig = roc_curves(y, {"candidate": probs["candidate"]})
    assert [line.get_label() for line in fig.axes[0].get_lines()][0].startswith("candidate (ROC-AUC")


def test_the_budget_curve_marks_each_budget_with_the_recall_found(scored):
    y, probs = scored
    fig = recall_by_budget(y, probs, budgets=BUDGETS)
    comparison = compare(y, probs["candidate"], probs["production"], budgets=BUDGETS, rounds=10, seed=0)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for model in ("candidate", "production"):
        for pct in (5, 10, 20):
            assert f"{comparison[model][f'recall_at_{pct}']['value'] * 100:.0f}" in texts


def test_confusion_matrices_count_the_cars_at_the_operating_threshold(scored):
    y, probs = scored
    fig = confusion_matrices(y, probs, budget=0.1)
    assert len(fig.axes) == 2
    for ax, (name, p) in zip(fig.axes, probs.items()):
        flagged = p >= threshold_at(p, budget=0.1)
        counts = {t.get_text() for t in ax.texts}
        assert f"{int(np.sum(flagged & (y == 1))):,}" in counts
        assert f"{int(np.sum(~flagged & (y == 0))):,}" in counts
        assert f"{int(flagged.sum()):,} of 400 cars inspected" in ax.get_title() and name in ax.get_title()
    assert drawn(fig).startswith(b"\x89PNG")


def test_mismatched_or_no_probabilities_are_refused(scored):
    y, probs = scored
    with pytest.raises(ModelError, match="production"):
        roc_curves(y, {"candidate": probs["candidate"], "production": probs["production"][:-1]})
    with pytest.raises(ModelError, match="no model"):
        pr_curves(y, {})
    with pytest.raises(ModelError, match="bins"):
        calibration(y, probs, bins=0)


def test_the_metrics_table_shows_value_and_interval_for_each_model_and_the_difference(scored):
    y, probs = scored
    comparison = compare(y, probs["candidate"], probs["production"], budgets=BUDGETS, rounds=200, seed=0)
    table = metrics_table(comparison)
    assert list(table.columns) == ["candidate", "production", "difference"]
    assert list(table.index) == ["ROC-AUC", "PR-AUC (average precision)", "Brier score (lower is better)",
                                 "Recall at 5 %", "Precision at 5 %", "Recall at 10 %", "Precision at 10 %",
                                 "Recall at 20 %", "Precision at 20 %"]
    auc = comparison["candidate"]["roc_auc"]
    assert table.loc["ROC-AUC", "candidate"] == f"{auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]"
    assert table.loc["ROC-AUC", "difference"].startswith(("+", "\u2212"))
    alone = metrics_table(compare(y, probs["candidate"], None, budgets=BUDGETS, rounds=50, seed=0))
    assert list(alone.columns) == ["candidate"]


def test_the_risk_chart_names_the_riskiest_cars():
    ranked = pd.DataFrame({"KNR": [f"2024-20{i:05d}" for i in range(100)],
                           "probability": np.linspace(0.5, 0.01, 100), "rank": np.arange(1, 101)})
    ranked["in_budget"] = ranked["rank"] <= 10
    fig = risk_chart(ranked, top=15)
    names = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert len(names) == 15 and "2024-2000000" in names
    assert drawn(fig).startswith(b"\x89PNG")
    with pytest.raises(ModelError, match="in_budget"):
        risk_chart(ranked.drop(columns="in_budget"))
