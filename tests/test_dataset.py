"""Labelled cars only, and an evaluation set of the latest cars: never random, never overlapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kafer.dataset import MIN_LABELLED, Split, labelled, time_split
from kafer.errors import KaferError, ModelError


def cars(n: int, *, seed: int = 0, rate: float = 0.1, known: float = 1.0) -> pd.DataFrame:
    """``n`` cars in shuffled order, built a few minutes apart, some labels unknown."""
    rng = np.random.default_rng(seed)
    produced = pd.Timestamp("2024-04-01 06:00") + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24 * 30, n)), "min")
    table = pd.DataFrame({
        "KNR": [f"2024-{1400000 + i:07d}" for i in range(n)],
        "label_rod": (rng.random(n) < rate).astype(int),
        "label_known": rng.random(n) < known,
        "produced_at": produced,
        "road_test_at": produced + pd.Timedelta(hours=20),
        "n_nok_id2": rng.poisson(2, n),
    })
    return table.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_labelled_keeps_only_cars_with_a_known_label():
    table = cars(200, known=0.7)
    out = labelled(table)
    assert out["label_known"].all() and len(out) == table["label_known"].sum()
    assert list(out.index) == list(range(len(out)))


def test_every_evaluation_car_was_built_after_every_training_car():
    split = time_split(cars(500), eval_fraction=0.2)
    assert isinstance(split, Split)
    assert split.train["produced_at"].max() <= split.eval["produced_at"].min()
    last_train = (split.train["produced_at"].iloc[-1], split.train["KNR"].iloc[-1])
    first_eval = (split.eval["produced_at"].iloc[0], split.eval["KNR"].iloc[0])
    assert last_train < first_eval
    assert split.train["produced_at"].is_monotonic_increasing and split.eval["produced_at"].is_monotonic_increasing


def test_no_car_is_in_both_and_none_is_lost():
    table = cars(500, known=0.9)
    split = time_split(table, eval_fraction=0.2)
    assert not set(split.train["KNR"]) & set(split.eval["KNR"])
    assert set(split.train["KNR"]) | set(split.eval["KNR"]) == set(labelled(table)["KNR"])
    assert len(split.eval) == round(0.2 * len(labelled(table)))


def test_the_split_is_not_random_the_order_of_rows_does_not_matter():
    table = cars(400)
    one = time_split(table, eval_fraction=0.25)
    other = time_split(table.sample(frac=1, random_state=7), eval_fraction=0.25)
    pd.testing.assert_frame_equal(one.eval, other.eval)
    pd.testing.assert_frame_equal(one.train, other.train)
    newest = labelled(table).sort_values(["produced_at", "KNR"]).tail(len(one.eval))
    assert set(one.eval["KNR"]) == set(newest["KNR"])


def test_cars_built_in_the_same_instant_are_ordered_by_knr():
    table = cars(100, rate=0.3)
    table["produced_at"] = pd.Timestamp("2024-05-02 10:00")
    split = time_split(table, eval_fraction=0.2)
    assert split.train["KNR"].max() < split.eval["KNR"].min()


def test_unlabelled_cars_are_left_out():
    table = cars(300, known=0.5)
    split = time_split(table, eval_fraction=0.2)
    assert split.train["label_known"].all() and split.eval["label_known"].all()


def test_the_argument_is_not_changed():
    table = cars(300, known=0.8)
    before = table.copy()
    time_split(table, eval_fraction=0.2)
    labelled(table)
    pd.testing.assert_frame_equal(table, before)


def test_too_few_labelled_cars_is_refused_with_the_count():
    table = cars(MIN_LABELLED + 20, known=1.0)
    table.loc[: 30, "label_known"] = False
    with pytest.raises(ModelError, match=r"only \d+ car\(s\) have a known label"):
        time_split(table, eval_fraction=0.2)


def test_no_failure_among_the_evaluation_cars_is_refused():
    table = cars(300, rate=0.1)
    latest = table["produced_at"] >= table["produced_at"].quantile(0.7)
    table.loc[latest, "label_rod"] = 0
    with pytest.raises(ModelError, match="evaluation cars hold no road-test failure"):
        time_split(table, eval_fraction=0.2)


def test_no_failure_among_the_training_cars_is_refused():
    table = cars(300, rate=0.1)
    order = table["produced_at"].rank(method="first")
    table["label_rod"] = (order > 295).astype(int)
    with pytest.raises(ModelError, match="training cars hold no road-test failure"):
        time_split(table, eval_fraction=0.2)


def test_a_car_twice_is_refused():
    table = cars(200)
    table = pd.concat([table, table.iloc[:1]], ignore_index=True)
    with pytest.raises(ModelError, match="more than once"):
        time_split(table, eval_fraction=0.2)


def test_a_labelled_car_without_production_time_is_refused():
    table = cars(200)
    table.loc[3, "produced_at"] = pd.NaT
    with pytest.raises(ModelError, match="no production time"):
        time_split(table, eval_fraction=0.2)


@pytest.mark.parametrize("column", ["label_known", "produced_at", "label_rod", "KNR"])
def test_a_missing_column_is_named(column):
    with pytest.raises(ModelError, match=column):
        time_split(cars(100).drop(columns=column), eval_fraction=0.2)


def test_labelled_needs_label_known():
    with pytest.raises(KaferError, match="label_known"):
        labelled(cars(10).drop(columns="label_known"))


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_the_evaluation_share_must_lie_between_0_and_1(fraction):
    with pytest.raises(ModelError, match="eval_fraction"):
        time_split(cars(100), eval_fraction=fraction)
