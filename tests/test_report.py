"""The comparison's figures and table: what they draw, and that they leave nothing open."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kafer.errors import ModelError
from kafer.metrics import compare, threshold_at
from kafer.drift import input_drift
from kafer.report import (NEW_COLOUR, PRODUCTION_COLOUR, calibration, confusion_matrices, data_changes_table,
                          drift_inputs_table, drift_sentence, drift_table, figure_html, metrics_table, model_name,
                          ranking_curves, recall_by_budget, record_chart, report_header, risk_chart)
from kafer.steps import data_changes

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


@pytest.mark.parametrize("plot", [ranking_curves, calibration, recall_by_budget])
def test_each_curve_figure_draws_every_model_and_leaves_no_figure_open(scored, plot):
    y, probs = scored
    open_before = plt.get_fignums()
    fig = plot(y, probs)
    assert isinstance(fig, Figure) and plt.get_fignums() == open_before
    for ax in fig.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert any(label.startswith("new model") for label in labels)  # "candidate" is a key, not a word
        assert any(label.startswith("production model") for label in labels)
        colours = {line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()}
        assert (colours["new model"], colours["production model"]) == (NEW_COLOUR, PRODUCTION_COLOUR)
    assert drawn(fig).startswith(b"\x89PNG")


def test_ranking_curves_show_roc_and_precision_recall_side_by_side(scored):
    y, probs = scored
    fig = ranking_curves(y, {"candidate": probs["candidate"]})
    roc, pr = fig.axes
    assert [line.get_label() for line in roc.get_lines()][0].startswith("new model (ROC-AUC")
    assert [line.get_label() for line in pr.get_lines()][0].startswith("new model (PR-AUC")


def test_the_budget_curve_marks_each_budget_with_the_recall_found_off_the_curves(scored):
    y, probs = scored
    fig = recall_by_budget(y, probs, budgets=BUDGETS)
    comparison = compare(y, probs["candidate"], probs["production"], budgets=BUDGETS, rounds=10, seed=0)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for model in ("candidate", "production"):
        for pct in (5, 10, 20):
            assert f"{comparison[model][f'recall_at_{pct}']['value'] * 100:.0f}" in texts
    assert all(t.xy[1] == 100 for t in fig.axes[0].texts)  # written along the top, not on the curves


def test_confusion_matrices_count_the_cars_at_the_operating_threshold(scored):
    y, probs = scored
    fig = confusion_matrices(y, probs, budget=0.1)
    assert len(fig.axes) == 2
    for ax, (name, p) in zip(fig.axes, probs.items()):
        flagged = p >= threshold_at(p, budget=0.1)
        counts = {t.get_text() for t in ax.texts}
        assert f"{int(np.sum(flagged & (y == 1))):,}" in counts
        assert f"{int(np.sum(~flagged & (y == 0))):,}" in counts
        assert f"{int(flagged.sum()):,} of 400 cars inspected" in ax.get_title() and model_name(name) in ax.get_title()
    assert drawn(fig).startswith(b"\x89PNG")


def test_mismatched_or_no_probabilities_are_refused(scored):
    y, probs = scored
    with pytest.raises(ModelError, match="production"):
        ranking_curves(y, {"candidate": probs["candidate"], "production": probs["production"][:-1]})
    with pytest.raises(ModelError, match="no model"):
        ranking_curves(y, {})
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


def metrics_of(production: bool, fair: bool = True) -> dict:
    trained = {"cars": 1612, "positives": 105, "produced_from": "2024-04-01T06:00:00",
               "produced_to": "2024-04-12T21:10:00"}
    return {"run_id": "r20241126T201753Z-3fa9", "data_version": "v20241126T201700.000000Z",
            "compared_cars": 400 if fair else 1200, "compared_positives": 28,
            "fair_comparison": {"possible": fair, "seen_by_production": 0 if fair else 1100,
                                "why": None if fair else "of the 1,200 evaluation cars, 1,100 were production's"},
            "models": {"candidate": {"version": "m2", "family": "hgb", "trained_on": trained},
                       "production": {"version": "m1", "family": "keras", "data_version": "v1",
                                      "trained_on": trained} if production else None}}


def test_the_report_header_names_the_run_both_models_and_the_data_version():
    text = report_header(metrics_of(production=True))
    first = text.splitlines()[0]
    assert first == "## Run r20241126T201753Z-3fa9: new model m2 against production model m1"
    assert "v20241126T201700.000000Z" in text and "keras" in text and "1,612 cars" in text
    assert "2024-04-01 06:00 to 2024-04-12 21:10" in text and "no production model" not in text


def test_the_report_header_in_brazilian_portuguese():
    from kafer.i18n import using

    with using("pt-BR"):
        text = report_header(metrics_of(production=True))
        first = text.splitlines()[0]
        assert first == "## Execução r20241126T201753Z-3fa9: modelo novo m2 contra modelo de produção m1"
        assert "| | modelo novo | modelo de produção |" in text and "1.612 carros" in text
        assert "01/04/2024 06:00 a 12/04/2024 21:10" in text and "Avaliado em" in text
        assert "Ainda não há modelo de produção" in report_header(metrics_of(production=False))
    assert report_header(metrics_of(production=True)).startswith("## Run r20241126T201753Z-3fa9")


def test_a_first_run_says_there_is_no_production_model_yet():
    text = report_header(metrics_of(production=False))
    assert "against no production model (first run)" in text.splitlines()[0]
    assert "There is no production model yet" in text and "chance" in text


def test_an_unfair_comparison_says_so_in_the_header():
    assert "No fair comparison with production is possible yet" in report_header(metrics_of(True, fair=False))


def test_data_changes_read_in_people_s_formats():
    rng = np.random.default_rng(3)

    def table(n):
        return pd.DataFrame({"label_rod": (rng.random(n) < 0.07).astype(int), "label_known": rng.random(n) < 0.9,
                             "produced_at": pd.Timestamp("2024-04-01 06:00") + pd.to_timedelta(np.arange(n), "min"),
                             "n_nok_id2": rng.poisson(2, n)})

    old, new = table(2000), table(12345)
    shown = data_changes_table(data_changes(old, new))
    assert list(shown.columns) == ["when production was trained", "now"]
    assert shown.loc["cars", "now"] == "12,345" and shown.loc["cars", "when production was trained"] == "2,000"
    assert shown.loc["failure rate", "now"].endswith("%") and shown.loc["first car built", "now"] == "2024-04-01 06:00"


def test_what_moved_in_production_s_inputs_reads_per_family_in_words():
    rng = np.random.default_rng(3)

    def cars(n, start, factor=1):
        return pd.DataFrame({"KNR": [f"2024-{start + i:07d}" for i in range(n)], "n_nok_id2": rng.poisson(2, n) * factor,
                             "dwell_min_ZP7": rng.gamma(2, 30, n)})

    shift = input_drift(cars(2000, 0), cars(3000, 5000, factor=3), columns=["n_nok_id2", "dwell_min_ZP7"])
    record = SimpleNamespace(production=object(), drift=shift)
    families = drift_table(record)
    assert families.loc["the contract's counts and dwell times"].tolist() == ["2", "1", "NOK screw tightenings"]
    moved = drift_inputs_table(record)
    assert moved.index.tolist() == ["NOK screw tightenings"] and moved.iloc[0]["moved clearly"] == "yes"
    assert "1 moved clearly" in drift_sentence(record) and "PSI" in drift_sentence(record)
    assert "no production model" in drift_sentence(SimpleNamespace(production=None, drift=None))
    assert drift_table(SimpleNamespace(production=object(), drift=None)).empty


def test_the_track_record_chart_draws_every_month_the_promise_and_each_decision():
    from kafer.config import load_settings
    from kafer.monitor import Mark, TrackRecord, judge

    rng = np.random.default_rng(4)
    n = 1800
    p = rng.beta(1, 12, n)
    cars = pd.DataFrame({"KNR": [f"k{i}" for i in range(n)], "label_known": True,
                         "label_rod": (rng.random(n) < p).astype(int),
                         "road_test_at": pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), "h")})
    promise = {"roc_auc": {"value": 0.7, "low": 0.65, "high": 0.75},
               "recall_at_10": {"value": 0.3, "low": 0.2, "high": 0.4}, "operating_threshold": 0.15}
    record = judge("m20240501T101010.000000Z", cars, p, promise=promise, settings=load_settings(bootstrap_rounds=50))
    marks = (Mark("2024-05-02T10:00:00", "2024-04-30T22:00:00", "keep-new", "Ana", None, record.version),
             Mark("2024-06-03T10:00:00", "2024-05-31T22:00:00", "keep-old", "Ana", record.version, record.version))
    track = TrackRecord("memory://x", "v1", 0.1, 0.5, record, (), marks, None)
    open_before = plt.get_fignums()
    fig = record_chart(track)
    assert len(fig.axes) == 3 and drawn(fig) and plt.get_fignums() == open_before
    roc = fig.axes[0]
    assert [c.get_label() for c in roc.containers] == ["m20240501T1010 (production)"]
    assert len(roc.containers[0].lines[0].get_xdata()) == 3  # May, June, July
    assert [t.get_text() for t in roc.texts] == ["keep new → m20240501T1010", "keep old (m20240501T1010)"]
    assert any(line.get_label() == "promised by m20240501T1010" for line in roc.collections)
    assert figure_html(fig, alt='a "chart"').startswith('<img alt="a &quot;chart&quot;" src="data:image/png;base64,')


def test_the_importance_chart_and_the_family_choice():
    from kafer.explain import Drivers
    from kafer.report import family_choice, family_choice_note, importance_chart

    families = pd.DataFrame({"inputs": [17, 40], "importance": [0.05, 0.0], "low": [0.02, -0.01],
                             "high": [0.08, 0.01], "stands_out": [True, False]},
                            index=pd.Index(["contract", "tests"], name="group"))
    inputs = pd.DataFrame({"with": ["test 131200 NOK"], "importance": [0.03], "low": [0.01], "high": [0.05],
                           "stands_out": [True]}, index=pd.Index(["nok_test:131200"], name="input"))
    open_before = plt.get_fignums()
    fig = importance_chart(Drivers(cars=400, failures=28, families=families, inputs=inputs, summary="…"))
    assert len(fig.axes) == 2 and drawn(fig) and plt.get_fignums() == open_before
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["test 131200 NOK"]
    named = {"models": {"candidate": {"family": "hgb", "family_choice": {"rule": "named", "chosen": "hgb"}}}}
    assert family_choice(named).loc["hgb", "how chosen"] == "named"
    compared = {"models": {"candidate": {"family": "keras", "family_choice": {
        "rule": "best PR-AUC", "chosen": "keras", "cars": 320, "failures": 22,
        "scores": {"hgb": {"roc_auc": 0.7, "pr_auc": 0.2, "recall_at_10": 0.3},
                   "keras": {"roc_auc": 0.72, "pr_auc": 0.25, "recall_at_10": 0.35}}}}}}
    table = family_choice(compared)
    assert table.loc["keras", "chosen"] == "yes" and table.loc["hgb", "PR-AUC (average precision)"] == "0.200"
    assert family_choice_note(compared) == ("The new model is `keras`; the family was chosen by: best PR-AUC "
                                            "(320 cars, 22 failures).")
    assert family_choice_note(named) == "The new model is `hgb`; the family was chosen by: named."
    stacked = {"models": {"candidate": {"family": "ensemble", "family_choice": {"rule": "named", "chosen": "ensemble"},
                                        "stack": {"weights": {"hgb": 0.815, "keras": 0.0}, "intercept": -0.2}}}}
    assert family_choice_note(stacked) == ("The new model is `ensemble`; the family was chosen by: named. It adds "
                                           "its members' log-odds with the weights hgb 0.81, keras 0.00, fitted on "
                                           "the validation cars (0: that member is ignored).")
    stacked["models"]["candidate"]["stack"].update(cars=310, positives=22)
    assert family_choice_note(stacked).endswith("hgb 0.81, keras 0.00, fitted on the latest 310 training cars (22 "
                                                "failures), which neither member learned or stopped on (0: that member "
                                                "is ignored).")


def test_the_drivers_tables_are_in_words_and_percentages():
    from kafer.explain import Drivers
    from kafer.report import family_importance_table, input_importance_table

    families = pd.DataFrame({"inputs": [17, np.nan], "importance": [0.05, 0.0], "low": [0.02, 0.0],
                             "high": [0.08, 0.0], "stands_out": [True, False]},
                            index=pd.Index(["contract", "route"], name="group"))
    inputs = pd.DataFrame({"with": ["test 131200 NOK"], "family": ["tests"], "importance": [0.03], "low": [-0.01],
                           "high": [0.05], "stands_out": [False], "cars_with": [40], "failure_rate_with": [0.25],
                           "cars_without": [1360], "failure_rate_without": [0.05]},
                          index=pd.Index(["nok_test:131200"], name="input"))
    drivers = Drivers(cars=1400, failures=78, families=families, inputs=inputs, summary="…")
    table = family_importance_table(drivers)
    assert table.loc["contract"].tolist() == ["17", "+0.050 [+0.020, +0.080]", "yes"]
    assert table.loc["route", "inputs"] == "—" and table.loc["route", "stands out"] == ""
    row = input_importance_table(drivers).loc["test 131200 NOK"]
    assert row.tolist() == ["tests", "+0.030 [−0.010, +0.050]", "", "25.0% of 40", "5.0% of 1,360"]


def test_every_section_of_the_comparison_report_is_shown_once_and_reads_in_the_plants_language():
    import re

    from kafer.i18n import using
    from kafer.pipeline import NOTEBOOKS
    from kafer.report import SECTIONS, section

    cells = json.loads((NOTEBOOKS / "04_compare.ipynb").read_text(encoding="utf-8"))["cells"]
    shown = [name for c in cells if c["cell_type"] == "code"
             for name in re.findall(r'section\("(\w+)"\)', "".join(c["source"]))]
    assert sorted(shown) == sorted(SECTIONS)
    assert [c for c in cells[1:] if c["cell_type"] == "markdown"] == []  # no heading left in one language only
    for name in SECTIONS:
        english = section(name)
        with using("pt-BR"):
            portuguese = section(name)
        assert english.startswith("## ") and portuguese.startswith("## ") and portuguese != english
    assert section("settings").startswith("## The settings this run used")
