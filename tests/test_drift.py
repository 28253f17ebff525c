"""Drift between two tables of cars, and their headline counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kafer.drift import data_summary, drift
from kafer.errors import ModelError


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
