"""What moved in the inputs between two sets of cars, and their headline counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kafer.drift import data_summary, input_drift
from kafer.errors import ModelError
from kafer.facts import FACT_SCHEMA


def frame(n: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"n_nok_id2": rng.poisson(2 + shift, n), "dwell_min_ZP7": rng.gamma(2, 30 + 30 * shift, n),
                         "label_rod": (rng.random(n) < 0.07).astype(int), "label_known": rng.random(n) < 0.9,
                         "produced_at": pd.Timestamp("2024-04-01") + pd.to_timedelta(rng.integers(0, 9999, n), "min")})


def facts_of_cars(knr, *, seed: int, engines=("CWL", "DHS"), new_test_share: float = 0.0) -> pa.Table:
    """Each car's engine, and test 131200 NOK for a third of them (and 999999 NOK for a share)."""
    rng = np.random.default_rng(seed)
    rows = [(k, "config", f"MOTOR={engines[rng.integers(len(engines))]}", 1.0) for k in knr]
    rows += [(k, "nok_test", "131200", 1.0) for k in knr if rng.random() < 1 / 3]
    rows += [(k, "nok_test", "999999", 1.0) for k in knr if rng.random() < new_test_share]
    return pa.table(dict(zip(["KNR", "kind", "key", "value"], map(list, zip(*rows)))), schema=FACT_SCHEMA)


def cars(n: int, *, seed: int, shift: float = 0.0, start: int = 0) -> pd.DataFrame:
    return frame(n, seed=seed, shift=shift).assign(KNR=[f"2024-{start + i:07d}" for i in range(n)])


def test_input_drift_finds_what_moved_per_family_and_names_what_is_new():
    old, new = cars(3000, seed=1), cars(3000, seed=2, shift=2.0, start=5000)
    old_facts = facts_of_cars(old["KNR"], seed=1)
    new_facts = facts_of_cars(new["KNR"], seed=2, engines=("CWL", "DHS", "CXY"), new_test_share=0.05)
    out = input_drift(old, new, columns=["n_nok_id2", "dwell_min_ZP7"], old_facts=old_facts, new_facts=new_facts,
                      facts=[("nok_test", "131200")], attributes=["MOTOR"], alpha=0.05)
    assert set(out.inputs.index[out.inputs["moved"]]) == {"n_nok_id2", "dwell_min_ZP7", "config:MOTOR"}
    assert not out.inputs.loc["nok_test:131200", "moved"]
    assert out.inputs.loc["nok_test:131200", "then"] == pytest.approx(1 / 3, abs=0.03)
    assert out.families.loc["contract", "moved"] == 2 and out.families.loc["tests", "moved"] == 0
    assert out.families.loc["configuration", "most"] == "engine"
    assert out.new_categories[["what", "cars"]].values.tolist()[0][0] == "engine CXY"
    assert "test 999999 NOK" in out.new_categories["what"].tolist()
    assert "engine CXY" in out.summary and "moved clearly" in out.summary


def test_input_drift_adjusts_for_the_many_inputs_it_looks_at():
    # 40 unchanged inputs: some reach p < 0.05 by chance; Holm multiplies the smallest by 40, the next by 39…
    rng = np.random.default_rng(7)
    old = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(40)}).assign(KNR=[f"a{i}" for i in range(2000)])
    new = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(40)}).assign(KNR=[f"b{i}" for i in range(2000)])
    out = input_drift(old, new, columns=[f"x{i}" for i in range(40)], alpha=0.05)
    ranked = out.inputs.sort_values("p_value")
    p, adjusted = ranked["p_value"].to_numpy(), ranked["p_adjusted"].to_numpy()
    assert (p < 0.05).sum() >= 2 and adjusted[0] == pytest.approx(40 * p[0])
    assert adjusted[1] == pytest.approx(min(1, max(39 * p[1], adjusted[0])))
    assert (np.diff(adjusted) >= 0).all() and (adjusted[1:] > 0.05).all()
    assert not out.inputs["moved"].any() and "none moved clearly" in out.summary
    assert out.new_categories.empty


def test_input_drift_names_a_missing_column_and_needs_cars_on_both_sides():
    with pytest.raises(ModelError, match="n_falhas_ZP5"):
        input_drift(cars(10, seed=1), cars(10, seed=2), columns=["n_falhas_ZP5"])
    with pytest.raises(ModelError, match="0 new cars"):
        input_drift(cars(10, seed=1), cars(0, seed=2), columns=["n_nok_id2"])
    with pytest.raises(ModelError, match="facts"):
        input_drift(cars(10, seed=1), cars(10, seed=2), columns=[], attributes=["MOTOR"])


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
