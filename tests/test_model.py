"""Training both families: no label among the features, same seed same model, one artifact, signal learned."""

from __future__ import annotations

import json
import io
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from kafer.errors import ModelError
from kafer.metrics import evaluate
from kafer.model import DEFAULT_PARAMS, Model, _platt, load_model, train

FEATURES = ("n_results_id1", "n_results_id2", "n_results_id718", "n_nok_id1", "n_nok_id2", "n_nok_id718",
            "n_falhas_ZP5", "n_falhas_ZP5A", "n_falhas_ZP6", "n_falhas_CAB", "n_falhas_ZP7",
            "dwell_min_ZP5", "dwell_min_ZP5A", "dwell_min_ZP6", "dwell_min_CAB", "dwell_min_ZP7",
            "n_tests_distinct", "dwell_min_pre_road")
#: Few epochs keep the network tests fast; the signal is strong enough to be learned in them.
FAST_KERAS = {"max_epochs": 25, "patience": 5}


def cars(n: int, *, seed: int, signal: float = 2.0, start: str = "2024-04-01") -> pd.DataFrame:
    """Cars in the curated table's shape; the label depends on NOKs, ZP7 defects and ZP6 dwell."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "KNR": [f"2024-{seed:02d}{i:05d}" for i in range(n)],
        "produced_at": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * 5, "min"),
    })
    for name in FEATURES:
        if name.startswith("n_results"):
            table[name] = rng.poisson(300, n)
        elif name.startswith(("n_nok", "n_falhas")):
            table[name] = rng.negative_binomial(1, 0.4, n)
        else:
            table[name] = rng.gamma(2.0, 20.0, n).round(2)
    z = sum(np.log1p(table[c]) / np.log1p(table[c]).std() for c in ("n_nok_id2", "n_falhas_ZP7", "dwell_min_ZP6"))
    logit = -2.6 + signal * (z - z.mean()) / z.std()
    table["label_rod"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    table["label_known"] = True
    table["road_test_at"] = table["produced_at"] + pd.Timedelta(hours=20)
    return table


@pytest.fixture(scope="module")
def data():
    return cars(500, seed=1), cars(2000, seed=2, start="2024-05-01")


@pytest.fixture(scope="module")
def fitted(data):
    train_df, _ = data
    return {"hgb": train(train_df, features=FEATURES, family="hgb", seed=7),
            "keras": train(train_df, features=FEATURES, family="keras", seed=7, params=FAST_KERAS)}


def auc(model: Model, table: pd.DataFrame) -> float:
    return evaluate(table["label_rod"], model.predict_proba(table), budgets=(0.1,))["roc_auc"]


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_a_planted_signal_is_learned(fitted, data, family):
    assert auc(fitted[family], data[1]) > 0.7


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_a_pure_noise_label_gives_chance(family):
    noise = cars(500, seed=1, signal=0.0)
    model = train(noise, features=FEATURES, family=family, seed=7, params=FAST_KERAS if family == "keras" else None)
    assert abs(auc(model, cars(2000, seed=2, signal=0.0, start="2024-05-01")) - 0.5) < 0.06


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_the_same_seed_gives_the_same_model(fitted, data, family):
    again = train(data[0], features=FEATURES, family=family, seed=7, params=FAST_KERAS if family == "keras" else None)
    np.testing.assert_array_equal(again.predict_proba(data[1]), fitted[family].predict_proba(data[1]))


def test_another_seed_gives_another_network(fitted, data):
    other = train(data[0], features=FEATURES, family="keras", seed=8, params=FAST_KERAS)
    assert not np.array_equal(other.predict_proba(data[1]), fitted["keras"].predict_proba(data[1]))


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_the_artifact_round_trip_gives_identical_predictions(fitted, data, family):
    model = fitted[family]
    blob = model.to_bytes()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        names = set(archive.namelist())
        meta = json.loads(archive.read("meta.json"))
    assert names == {"meta.json", f"{family}.npz", f"{family}.json"}
    assert meta["family"] == family and meta["features"] == list(FEATURES)
    assert meta["preprocessing"]["features"] == list(FEATURES)
    loaded = load_model(blob)
    assert loaded.family == family and loaded.features == FEATURES and loaded.meta == model.meta
    np.testing.assert_array_equal(loaded.predict_proba(data[1]), model.predict_proba(data[1]))
    header = load_model(blob, estimators=False)
    assert not header.predicts and header.table_features == model.table_features and header.meta == model.meta
    with pytest.raises(ModelError, match="loaded without its estimator"):
        header.predict_proba(data[1])


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_meta_says_what_the_model_was_trained_on(fitted, data, family):
    meta = fitted[family].meta
    assert meta["family"] == family and meta["features"] == list(FEATURES) and meta["seed"] == 7
    assert meta["trained_on"]["cars"] == 500 and meta["trained_on"]["positives"] == int(data[0]["label_rod"].sum())
    assert meta["trained_on"]["produced_to"] == data[0]["produced_at"].max().isoformat()
    assert 0 < meta["validation"]["positives"] < meta["validation"]["cars"] < 500
    assert {"numpy", "pandas", "scikit-learn", "kafer"} <= set(meta["versions"])
    assert ("tensorflow" in meta["versions"]) == (family == "keras")
    json.dumps(meta)


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_probabilities_are_calibrated_on_average(fitted, data, family):
    p = fitted[family].predict_proba(data[1])
    assert ((p > 0) & (p < 1)).all()
    assert abs(p.mean() - data[1]["label_rod"].mean()) < 0.05


@pytest.mark.parametrize("forbidden", ["label_rod", "label_known", "KNR", "produced_at", "road_test_at",
                                       "label_rod_last_week"])
def test_the_label_and_car_metadata_are_never_features(data, forbidden):
    table = data[0].assign(label_rod_last_week=data[0]["label_rod"])
    with pytest.raises(ModelError, match=f"{forbidden} may never be a feature"):
        train(table, features=FEATURES + (forbidden,), family="hgb", seed=0)


@pytest.mark.parametrize("features,match", [((), "empty"), (FEATURES + ("n_nok_id2",), "more than once"),
                                            ("n_nok_id2", "not the string"),
                                            (FEATURES + ("n_unknown",), "n_unknown")])
def test_a_bad_feature_list_is_refused(data, features, match):
    with pytest.raises(ModelError, match=match):
        train(data[0], features=features, family="hgb", seed=0)


def test_a_missing_feature_at_prediction_is_named(fitted, data):
    with pytest.raises(ModelError, match="n_falhas_ZP7, dwell_min_CAB"):
        fitted["hgb"].predict_proba(data[1].drop(columns=["n_falhas_ZP7", "dwell_min_CAB"]))


def test_a_text_feature_is_refused(fitted, data):
    table = data[1].assign(n_nok_id2=data[1]["n_nok_id2"].astype(str))
    with pytest.raises(ModelError, match="n_nok_id2.*not numeric"):
        fitted["hgb"].predict_proba(table)


def test_column_order_extra_columns_and_gaps_are_handled(fitted, data):
    table = data[1].head(50)
    model = fitted["keras"]
    shuffled = table[list(reversed(table.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(table))
    gaps = table.astype({"dwell_min_ZP6": float}).copy()
    gaps.loc[gaps.index[:5], "dwell_min_ZP6"] = np.nan
    filled = gaps.assign(dwell_min_ZP6=gaps["dwell_min_ZP6"].fillna(model.preprocessing.medians[13]))
    np.testing.assert_array_equal(model.predict_proba(gaps), model.predict_proba(filled))
    assert model.predict_proba(table.head(0)).shape == (0,)
    assert fitted["hgb"].predict_proba(table.head(0)).shape == (0,)


def test_training_does_not_change_the_cars(data):
    table = data[0].copy()
    train(table, features=FEATURES, family="hgb", seed=0)
    pd.testing.assert_frame_equal(table, data[0])


def test_unknown_labels_are_refused(data):
    table = data[0].assign(label_known=np.arange(500) % 7 != 0)
    with pytest.raises(ModelError, match="unknown label"):
        train(table, features=FEATURES, family="hgb", seed=0)


def test_too_few_failures_are_refused(data):
    table = data[0].assign(label_rod=np.r_[1, np.zeros(499, dtype=int)])
    with pytest.raises(ModelError, match="at least 2 failures"):
        train(table, features=FEATURES, family="hgb", seed=0)
    two = data[0].assign(label_rod=np.r_[1, 1, np.zeros(498, dtype=int)])
    with pytest.raises(ModelError, match="2 road-test failure.*the ensemble needs at least 3 of each"):
        train(two, features=FEATURES, family="ensemble", seed=0)


def test_an_unknown_family_or_parameter_is_refused(data):
    with pytest.raises(ModelError, match="family"):
        train(data[0], features=FEATURES, family="xgboost", seed=0)
    with pytest.raises(ModelError, match="max_epochs"):
        train(data[0], features=FEATURES, family="hgb", seed=0, params={"max_epochs": 3})
    assert "max_epochs" in DEFAULT_PARAMS["keras"]


def test_bytes_that_are_not_an_artifact_are_refused():
    with pytest.raises(ModelError, match="not a Käfer model artifact"):
        load_model(b"not a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("meta.json", json.dumps({"family": "hgb"}))
    with pytest.raises(ModelError, match="not a Käfer model artifact"):
        load_model(buffer.getvalue())


def test_recalibration_never_reverses_the_ranking():
    rng = np.random.default_rng(0)
    raw = rng.random(300)
    y = (rng.random(300) < 0.3 * (1 - raw)).astype(int)  # higher raw score, fewer failures
    slope, intercept = _platt(raw, y)
    assert slope > 0
    calibrated = 1 / (1 + np.exp(-(slope * np.log(raw / (1 - raw)) + intercept)))
    assert calibrated.mean() == pytest.approx(y.mean(), abs=1e-6)


def test_importing_the_model_module_does_not_import_tensorflow():
    code = "import sys, kafer.model; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def with_facts(table: pd.DataFrame, *, seed: int) -> tuple[pd.DataFrame, object]:
    """The cars with facts: a test NOK in ~15 % of them and an engine; both raise the risk."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = len(table)
    nok = rng.random(n) < 0.15
    engine = rng.choice(["DHS", "CWL", "CWS"], n, p=[.6, .3, .1])
    engine[:3] = "XYZ" if seed > 1 else engine[:3]  # unseen in training: scored as "other"
    known = rng.random(n) < 0.9
    logit = -3.2 + 2.0 * nok + 1.2 * (engine == "CWL")
    out = table.assign(label_rod=(rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    knr = out["KNR"].to_numpy()
    rows = [(k, "nok_test", "131200", 1.0) for k in knr[nok]]
    rows += [(k, "config", f"MOTOR={e}", 1.0) for k, e in zip(knr[known], engine[known])]
    rows += [(k, "defect", "ZP7|RISCO", 1.0) for k in knr[rng.random(n) < 0.3]]
    facts = pa.table({"KNR": [r[0] for r in rows], "kind": [r[1] for r in rows], "key": [r[2] for r in rows],
                      "value": [r[3] for r in rows]})
    return out, facts


@pytest.fixture(scope="module")
def factual(data):
    train_df, facts = with_facts(data[0].head(400).pipe(lambda t: pd.concat([t, cars(1200, seed=3)])), seed=1)
    test_df, test_facts = with_facts(data[1], seed=2)
    models = {family: train(train_df, features=FEATURES, family=family, seed=7, facts=facts, min_fact_cars=20,
                            params={"max_epochs": 60, "patience": 10} if family == "keras" else None)
              for family in ("hgb", "keras")}
    return models, (train_df, facts), (test_df, test_facts)


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_facts_and_categories_are_learned_and_kept_in_the_artifact(factual, family):
    models, _, (test_df, test_facts) = factual
    model = models[family]
    assert model.fact_columns.columns == ("nok_test:131200", "defect:ZP7|RISCO", "config:MOTOR")
    assert model.fact_columns.levels("config:MOTOR") == ("DHS", "CWL", "CWS", "other")
    p = model.predict_proba(test_df, test_facts)
    assert evaluate(test_df["label_rod"], p, budgets=(0.1,))["roc_auc"] > 0.65
    again = load_model(model.to_bytes())
    np.testing.assert_array_equal(again.predict_proba(test_df, test_facts), p)
    assert again.fact_columns == model.fact_columns and again.families()["config:MOTOR"] == "configuration"
    with pytest.raises(ModelError, match="uses the cars' facts"):
        model.predict_proba(test_df)


def test_boosting_splits_categories_natively_and_the_network_gets_them_one_hot(factual):
    models, (train_df, facts), _ = factual
    trees = models["hgb"].estimator
    categorical = trees.category >= 0
    assert categorical.any() and set(trees.feature[categorical]) == {models["hgb"].features.index("config:MOTOR")}
    assert {"nok_test:131200", "config:MOTOR"} <= set(models["hgb"].used_inputs())
    x = models["keras"].inputs(train_df.head(5), facts)
    assert models["keras"].preprocessing.scaled(x).shape == (5, len(FEATURES) + 2 + 4)
    assert models["keras"].used_inputs() == models["keras"].features


def test_families_are_compared_on_the_same_latest_training_cars(factual):
    from kafer.model import select_family

    _, (train_df, facts), _ = factual
    choice = select_family(train_df, features=FEATURES, seed=7, facts=facts,
                           params={"keras": FAST_KERAS, "ensemble": {"keras": FAST_KERAS}})
    assert set(choice["scores"]) == {"hgb", "keras", "ensemble"} and choice["chosen"] in choice["scores"]
    best = max(choice["scores"], key=lambda f: choice["scores"][f]["pr_auc"])
    assert choice["chosen"] == best and choice["cars"] == round(0.2 * len(train_df))
    assert "PR-AUC" in choice["rule"]


def test_too_few_failures_to_rank_families_keep_the_first_and_say_why(factual):
    from kafer.dataset import production_order
    from kafer.model import select_family

    _, (train_df, facts), _ = factual
    failures = int(train_df["label_rod"].to_numpy()[production_order(train_df)[-round(0.2 * len(train_df)):]].sum())
    choice = select_family(train_df, features=FEATURES, seed=7, facts=facts, min_failures=failures + 1)
    assert choice["chosen"] == "hgb" and choice["scores"] == {}
    assert choice["failures"] == failures and "not compared" in choice["rule"]


def test_a_configuration_with_more_categories_than_boosting_takes_keeps_the_most_common(data):
    """300 colours each on 20+ cars: the 254 most common are kept, the rest count as other."""
    import pyarrow as pa

    from kafer.facts import MAX_CATEGORIES, OTHER

    table = pd.concat([cars(7000, seed=5), data[0]], ignore_index=True).drop_duplicates("KNR", ignore_index=True)
    colour = np.arange(len(table)) % 300
    facts = pa.table({"KNR": table["KNR"].to_numpy(), "kind": ["config"] * len(table),
                      "key": [f"COR=C{c:03d}" for c in colour], "value": np.ones(len(table))})
    model = train(table, features=FEATURES, family="hgb", seed=7, facts=facts, min_fact_cars=20, max_fact_columns=300)
    levels = model.fact_columns.levels("config:COR")
    assert len(levels) == MAX_CATEGORIES + 1 and levels[-1] == OTHER
    assert np.isfinite(model.predict_proba(table.head(50), facts)).all()


def latest_per_class(table: pd.DataFrame, share: float) -> np.ndarray:
    """Whether each car is among the latest ``share`` of its class (failures, the others) by production time."""
    order = table.sort_values(["produced_at", "KNR"], kind="stable").index
    latest = np.zeros(len(table), dtype=bool)
    for label in (0, 1):
        of_class = order[table.loc[order, "label_rod"].to_numpy() == label]
        latest[table.index.get_indexer(of_class[len(of_class) - int(np.ceil(share * len(of_class))):])] = True
    return latest


def test_the_ensemble_stacks_both_families_log_odds_with_weights_fitted_on_cars_neither_member_saw(factual,
                                                                                                     monkeypatch):
    """Its probability is the logistic of the members' weighted log-odds, the weights fitted on the latest
    15 % of each class, which neither member learned or stopped on; it round-trips; it ranks at least
    about as well as the better member and stays calibrated on average."""
    import kafer.model as fitting

    models, (train_df, facts), (test_df, test_facts) = factual
    seen = {}
    stack, fit_hgb = fitting._stack, fitting._fit_hgb

    def stacked(logits, y):
        seen["stack"] = logits, y
        return stack(logits, y)

    def boosted(x_fit, y_fit, x_val, y_val, **options):
        seen["members"] = len(y_fit), len(y_val)
        return fit_hgb(x_fit, y_fit, x_val, y_val, **options)

    monkeypatch.setattr(fitting, "_stack", stacked)
    monkeypatch.setattr(fitting, "_fit_hgb", boosted)
    model = train(train_df, features=FEATURES, family="ensemble", seed=7, facts=facts, min_fact_cars=20,
                  params={"keras": {"max_epochs": 60, "patience": 10}})
    hgb, keras = model.estimator
    assert (hgb.family, keras.family) == ("hgb", "keras")
    weights, intercept = np.asarray(model.calibration[:2]), model.calibration[2]
    assert (weights >= 0).all() and weights.sum() > 0
    train_df = train_df.reset_index(drop=True)
    held = latest_per_class(train_df, 0.15)
    assert model.meta["stack"] == {"weights": {"hgb": weights[0], "keras": weights[1]}, "intercept": intercept,
                                   "cars": held.sum(), "positives": train_df.loc[held, "label_rod"].sum()}
    unseen = model.inputs(train_df[held], facts)
    np.testing.assert_allclose(seen["stack"][0], np.column_stack(
        [np.log(p / (1 - p)) for p in (hgb.predict_inputs(unseen), keras.predict_inputs(unseen))]), rtol=1e-6)
    np.testing.assert_array_equal(seen["stack"][1], train_df.loc[held, "label_rod"].to_numpy())
    validated = latest_per_class(train_df[~held].reset_index(drop=True), 0.15)
    assert seen["members"] == ((~validated).sum(), validated.sum()) and len(train_df) - held.sum() == len(validated)
    x = model.inputs(test_df, test_facts)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expected = 1 / (1 + np.exp(-(weights[0] * logit(hgb.predict_inputs(x)) + weights[1] * logit(keras.predict_inputs(x))
                                  + intercept)))
    p = model.predict_proba(test_df, test_facts)
    np.testing.assert_allclose(p, expected, rtol=1e-9)
    np.testing.assert_array_equal(load_model(model.to_bytes()).predict_proba(test_df, test_facts), p)
    assert model.predicts and not load_model(model.to_bytes(), estimators=False).predicts
    y = test_df["label_rod"]
    best = max(evaluate(y, models[f].predict_proba(test_df, test_facts), budgets=(0.1,))["roc_auc"] for f in models)
    assert evaluate(y, p, budgets=(0.1,))["roc_auc"] > best - 0.02
    assert abs(p.mean() - y.mean()) < 0.03
    assert set(model.used_inputs()) == set(model.features)


def test_stacking_ignores_a_member_that_ranks_nothing_and_never_reverses_one():
    from kafer.model import _stack

    rng = np.random.default_rng(0)
    signal = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(-2.5 + 1.5 * signal)))).astype(int)
    weights, _ = _stack(np.column_stack([-2.5 + 1.5 * signal, rng.normal(size=3000) - 2.5]), y)
    assert weights[0] > 0.8 and weights[1] < 0.1
    reversed_, _ = _stack(np.column_stack([-2.5 + 1.5 * signal, 2.5 - 1.5 * signal + rng.normal(size=3000)]), y)
    assert reversed_[1] == 0 < reversed_[0]
    noise = rng.normal(size=(3000, 2))
    flat, intercept = _stack(noise * 0, y)
    assert flat == (0.5, 0.5) and 1 / (1 + np.exp(-intercept)) == pytest.approx(y.mean(), abs=1e-3)


def test_the_network_scores_in_numpy_what_keras_gives_to_float32_rounding(data, monkeypatch):
    """A trained network with a category one-hot: Keras's inference pass (dropout off) then the
    calibration, against the model's NumPy pass; Keras with dropout on gives something else."""
    import kafer.model as module

    networks = []
    fit = module._fit_keras

    def kept(*args, **kwargs):
        network, fitted = fit(*args, **kwargs)
        networks.append(network)
        return network, fitted

    monkeypatch.setattr(module, "_fit_keras", kept)
    train_df, facts = with_facts(pd.concat([data[0], cars(800, seed=4)], ignore_index=True), seed=1)
    test_df, test_facts = with_facts(data[1], seed=2)
    model = train(train_df, features=FEATURES, family="keras", seed=7, facts=facts, params=FAST_KERAS)
    assert "config:MOTOR" in model.preprocessing.categorical and model.calibration != (1.0, 0.0)
    x = model.inputs(test_df, test_facts)
    scaled = model.preprocessing.scaled(x).astype(np.float32)
    assert scaled.shape[1] == len(model.preprocessing.features) + 4  # DHS, CWL, CWS, other
    (network,) = networks
    by_keras = np.asarray(network(scaled, training=False), dtype=float)[:, 0]
    slope, intercept = model.calibration
    expected = 1 / (1 + np.exp(-(slope * np.log(by_keras / (1 - by_keras)) + intercept)))
    np.testing.assert_allclose(model.predict_inputs(x), expected, rtol=2e-6)
    dropped = np.asarray(network(scaled, training=True), dtype=float)[:, 0]
    assert not np.allclose(dropped, by_keras, rtol=1e-3)


def test_scoring_a_network_or_an_ensemble_never_imports_tensorflow(factual, tmp_path):
    models, _, (test_df, test_facts) = factual
    (tmp_path / "model.bin").write_bytes(models["keras"].to_bytes())
    test_df.to_parquet(tmp_path / "cars.parquet")
    test_facts.to_pandas().to_parquet(tmp_path / "facts.parquet")
    code = ("import sys, pandas as pd, pyarrow as pa; from kafer.model import load_model; "
            f"m = load_model(open({str(tmp_path / 'model.bin')!r}, 'rb').read()); "
            f"p = m.predict_proba(pd.read_parquet({str(tmp_path / 'cars.parquet')!r}), "
            f"pa.Table.from_pandas(pd.read_parquet({str(tmp_path / 'facts.parquet')!r}), preserve_index=False)); "
            "assert len(p) and 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_edits_score_as_the_edited_cars_do(factual, family):
    """predict_edits (one input of a car changed, no copy of the car) gives what scoring the edited
    copies gives: bit for bit for the trees, to float32 rounding for the network; a category edited to
    a code no car had, or to missing, and a number to missing, included."""
    models, _, (test_df, test_facts) = factual
    model = models[family]
    raw = model.preprocessing.raw(model.inputs(test_df, test_facts))
    rng = np.random.default_rng(5)
    rows, columns = rng.integers(0, len(raw), 3000), rng.integers(0, raw.shape[1], 3000)
    values = raw[rng.integers(0, len(raw), 3000), columns]
    values[::5] = np.nan
    values[columns == model.features.index("config:MOTOR")] = np.r_[9.0, 2.5, -1.0, 1.0][np.arange(
        int((columns == model.features.index("config:MOTOR")).sum())) % 4]
    edited = raw[rows].copy()
    edited[np.arange(rows.size), columns] = values
    fast, slow = model.predict_edits(raw, rows, columns, values), model.predict_values(edited)
    if family == "hgb":
        np.testing.assert_array_equal(fast, slow)
    else:
        np.testing.assert_allclose(fast, slow, rtol=1e-5)
    assert not np.allclose(slow, model.predict_values(raw)[rows])


def test_inputs_come_in_the_models_order_after_a_round_trip(data):
    """Three configuration attributes: the artifact's JSON sorts them (COR, MODELO, MOTOR) while the model
    was trained MODELO first; a loaded model's inputs still come in its features' order, as arrays read them."""
    import pyarrow as pa

    train_df, facts = with_facts(data[0], seed=1)
    n = len(train_df)
    more = pa.table({"KNR": np.tile(train_df["KNR"].to_numpy(), 2), "kind": ["config"] * (2 * n),
                     "key": [f"COR={c}" for c in np.where(np.arange(n) % 3 == 0, "BRANCO", "PRETO")]
                     + [f"MODELO={m}" for m in np.where(np.arange(n) % 4 == 0, "Q3", "TCROSS")],
                     "value": np.ones(2 * n)})
    facts = pa.concat_tables([facts, more])
    model = train(train_df, features=FEATURES, family="hgb", seed=7, facts=facts)
    loaded = load_model(model.to_bytes())
    assert loaded.fact_columns.categorical != loaded.preprocessing.categorical  # the JSON's order differs
    x = loaded.inputs(train_df, facts)
    assert list(x.columns) == list(loaded.features)
    np.testing.assert_array_equal(loaded.predict_values(x.to_numpy(dtype=float)), model.predict_proba(train_df, facts))


def test_a_model_built_with_other_libraries_says_so_in_words(fitted):
    from kafer.model import library_differences

    meta = fitted["hgb"].meta
    assert library_differences(meta, name="production model m1") is None
    older = {**meta, "versions": {**meta["versions"], "numpy": "1.26.0", "scikit-learn": "0.0.1"}}
    note = library_differences(older, name="production model m1")
    assert note.startswith("production model m1 was built with other versions") and f"numpy 1.26.0 (here {np.__version__})" in note
    assert "scikit-learn" not in note  # it only trained the model: its arrays are scored by Käfer's own code


@pytest.mark.parametrize("family", ["hgb", "keras"])
def test_a_shuffled_group_scores_as_the_shuffled_copies_do(factual, family):
    """Model.shuffler gives what scoring shuffled copies gives: for a group with a category, a single
    number, and a group of inputs no tree reads (whose shuffle leaves the trees' scores as they are)."""
    models, _, (test_df, test_facts) = factual
    model = models[family]
    raw = model.preprocessing.raw(model.inputs(test_df, test_facts))
    shuffled = model.shuffler(raw)
    order = np.random.default_rng(3).permutation(len(raw))
    unread = [i for i, name in enumerate(model.features) if name not in models["hgb"].used_inputs()]
    for columns in ([model.features.index("config:MOTOR"), 0], [model.features.index("nok_test:131200")], unread):
        copy = raw.copy()
        copy[:, columns] = raw[np.ix_(order, columns)]
        fast, slow = shuffled(columns, order), model.predict_values(copy)
        if family == "hgb":
            np.testing.assert_array_equal(fast, slow)
        else:
            np.testing.assert_allclose(fast, slow, rtol=1e-5)
    assert unread and not np.allclose(shuffled([model.features.index("nok_test:131200")], order),
                                      model.predict_values(raw))
