"""Train a road-test risk model, apply it, and keep it as one self-contained artifact.

Two families share one preprocessing and one artifact format:

- ``hgb``: scikit-learn's histogram gradient boosting on the (median-imputed) feature values,
  regularized for a weak signal: small steps, four leaves per tree, L2 penalty, early stopping on
  the validation loss, at least 20 cars per leaf (a fact needs a leaf of its own: with 40, the facts
  20 to 40 training cars have, as many kept ones do in a 2,000-car upload, could never be split on).
- ``keras``: a small dense network (64 and 32 ReLU units, dropout 0.3, L2 penalty) on the signed
  ``log1p`` of the features, standardized (fact counts only ``log1p``: mostly 0, standardizing would
  blow a rare fact up to a huge input); failures weighted up to balance the ~7 % positives,
  Adam, early stopping on the (weighted) validation loss, keeping the best epoch's weights.
  Training is seeded and TensorFlow's ops made deterministic, so the same cars, parameters and
  seed give the same network (this sets the process's global random seeds).

- ``ensemble`` (the default): both of the above, trained alike; a car's probability is a logistic
  function of a weighted sum of the two members' log-odds, the non-negative weights and the
  intercept fitted on cars neither member saw (stacking): the latest 15 % of each class of the
  training cars are held out for the stack, and the members learn and stop early on the others. A
  stack fitted on the members' own validation cars would favour whichever member tuned itself to
  those cars most. Where one family sees what the other misses (boosting splits on categories and
  rare facts, the network adds smooth effects of the counts) the sum ranks better than either;
  where one sees nothing its weight falls towards 0.

Both stop early on the same validation cars: the latest 15 % of the training failures and the
latest 15 % of the other training cars, by production time (in an ensemble, of the cars not held
out for the stack). Taking the latest cars mirrors how
a model is used (on cars built after those it learned from); taking them per class guarantees
failures among them even in small trainings. Class weighting shifts a network's probabilities
upwards, so the network's scores are recalibrated on those validation cars (Platt scaling,
logistic in the score's log-odds) to keep its Brier score honest. The boosting model is trained
unweighted, so its probabilities need no correction: on synthetic plant data with a planted weak
signal, weighting it lowered its ROC-AUC and PR-AUC and doubled its Brier score.

Inputs are the curated table's columns and, when the model is trained with the cars' facts
(:mod:`kafer.facts`), the fact columns chosen on its training cars. Configuration columns are
categories: the boosting model splits on them natively (``categorical_features``), the network
gets them one-hot (a slot per kept category and one for ``other``; a missing configuration sets
none). Both families thus see the same inputs.

TensorFlow is imported inside the functions that need it, so importing this module stays fast.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import FAMILIES
from .dataset import production_order
from .errors import ModelError
from .facts import FactColumns
from .features import META_COLUMNS, family_of

#: Share of each class among the training cars, latest first, kept to stop training and calibrate.
VALIDATION_FRACTION = 0.15
#: Share of the training cars, latest by production time, on which :func:`select_family` compares families.
SELECTION_FRACTION = 0.2
#: The stacked family, and its members in order.
ENSEMBLE = "ensemble"
MEMBERS = ("hgb", "keras")
_MEMBER_PARAMS = {
    "hgb": MappingProxyType({"learning_rate": 0.03, "max_leaf_nodes": 4, "min_samples_leaf": 20,
                             "l2_regularization": 1.0, "max_iter": 500, "n_iter_no_change": 30}),
    "keras": MappingProxyType({"hidden": (64, 32), "dropout": 0.3, "l2": 1e-3, "learning_rate": 1e-3,
                               "batch_size": 128, "max_epochs": 200, "patience": 15}),
}
#: Hyperparameters of each family (an ensemble's: its members', by member); ``train(..., params=...)``
#: overrides any of them.
DEFAULT_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {**_MEMBER_PARAMS, ENSEMBLE: MappingProxyType(_MEMBER_PARAMS)})
#: The artifact format written; format 1 (table columns only, before facts) is still read.
FORMAT = 2
_READABLE_FORMATS = (1, 2)
_META = "meta.json"
_ESTIMATOR = {"hgb": "estimator.pkl", "keras": "estimator.keras"}


@dataclass(frozen=True)
class Preprocessing:
    """What training learned about the inputs: medians to fill gaps, the network's scaling, the categories.

    Attributes
    ----------
    features : tuple of str
        The numeric inputs, in order.
    medians : tuple of float
        Each numeric input's training median, which replaces a missing or infinite value.
    centers, scales : tuple of float
        Mean and standard deviation of each numeric input's signed ``log1p`` over the training cars.
    categorical : tuple of str
        The category inputs (integer codes, missing allowed), after the numeric ones.
    levels : tuple of int
        How many codes each category input has (its kept categories and ``other``).
    """

    features: tuple[str, ...]
    medians: tuple[float, ...]
    centers: tuple[float, ...]
    scales: tuple[float, ...]
    categorical: tuple[str, ...] = ()
    levels: tuple[int, ...] = ()

    def values(self, df: pd.DataFrame) -> np.ndarray:
        """The numeric inputs of ``df``, gaps filled with the training medians."""
        raw = _numeric(df, self.features)
        return np.where(np.isfinite(raw), raw, np.asarray(self.medians))

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        """The category inputs of ``df`` as codes (NaN: missing)."""
        return _numeric(df, self.categorical)

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The boosting model's input: :meth:`values`, then :meth:`codes`."""
        return np.hstack([self.values(df), self.codes(df)])

    def scaled(self, df: pd.DataFrame) -> np.ndarray:
        """The network's input: signed ``log1p`` of :meth:`values`, standardized, then the categories one-hot."""
        numeric = (_signed_log(self.values(df)) - np.asarray(self.centers)) / np.asarray(self.scales)
        codes = self.codes(df)
        hot = [np.equal.outer(codes[:, j], np.arange(levels)).astype(float) for j, levels in enumerate(self.levels)]
        return np.hstack([numeric, *hot]) if hot else numeric

    def to_dict(self) -> dict:
        """JSON-ready, for the model artifact."""
        return {"features": list(self.features), "medians": list(self.medians), "centers": list(self.centers),
                "scales": list(self.scales), "categorical": list(self.categorical), "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Preprocessing":
        """The preprocessing saved by :meth:`to_dict` (format 1 artifacts have no categories)."""
        return cls(features=tuple(data["features"]), medians=tuple(data["medians"]), centers=tuple(data["centers"]),
                   scales=tuple(data["scales"]), categorical=tuple(data.get("categorical", ())),
                   levels=tuple(int(n) for n in data.get("levels", ())))


@dataclass(frozen=True, eq=False)
class Model:
    """A fitted model: its preprocessing, estimator and calibration, and what it was trained on.

    Attributes
    ----------
    family : {"hgb", "keras", "ensemble"}
    preprocessing : Preprocessing
    estimator : object
        The fitted ``HistGradientBoostingClassifier`` or Keras model; for an ensemble, its member
        models (same preprocessing and fact columns), in :data:`MEMBERS`' order.
    calibration : tuple of float
        ``(slope, intercept)`` applied to the estimator's log-odds; ``(1.0, 0.0)`` leaves them as they
        are. For an ensemble, one weight per member's log-odds, then the intercept.
    meta : dict
        JSON-ready facts: ``family``, ``features``, ``params``, ``seed``, ``trained_on`` (``cars``,
        ``positives``, ``produced_from``, ``produced_to``), ``validation`` (``cars``, ``positives``),
        ``fitted`` (boosting iterations, or epochs run and the best one kept) and ``versions``
        of the libraries.
    """

    family: str
    preprocessing: Preprocessing
    estimator: Any
    calibration: tuple[float, ...]
    meta: dict
    fact_columns: FactColumns | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The model's inputs, in order: numeric ones, then categories."""
        return self.preprocessing.features + self.preprocessing.categorical

    @property
    def table_features(self) -> tuple[str, ...]:
        """The inputs read from the curated table's columns as they are."""
        return tuple(self.meta["features"])

    def used_inputs(self) -> tuple[str, ...]:
        """The inputs the estimator reacts to: those some boosting tree splits on; every input of a network.

        Shuffling or editing any other input cannot change a probability, so explanations skip them.
        """
        if self.family == ENSEMBLE:
            used = set().union(*(member.used_inputs() for member in self.estimator))
            return tuple(name for name in self.features if name in used)
        if self.family != "hgb":
            return self.features
        try:
            used = _split_inputs(self.estimator)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):  # another scikit-learn's internals
            return self.features
        return tuple(name for i, name in enumerate(self.features) if i in used)

    def families(self) -> dict[str, str]:
        """Each input's feature family (:data:`kafer.features.FEATURE_FAMILIES`)."""
        facts = set(self.fact_columns.columns) if self.fact_columns else set()
        return {name: self.fact_columns.family(name) if name in facts else family_of(name) for name in self.features}

    def inputs(self, cars: pd.DataFrame, facts=None) -> pd.DataFrame:
        """The model's inputs for ``cars``: its table columns, and its fact columns built from ``facts``.

        Parameters
        ----------
        cars : pandas.DataFrame
            Cars with at least ``KNR`` and the model's table columns (others are ignored).
        facts : pyarrow.Table, optional
            Facts of (at least) these cars (:func:`kafer.facts.build_facts`); a car without a fact
            gets 0 for it, without a configuration a missing value. Needed when the model uses facts.

        Returns
        -------
        pandas.DataFrame
            One row per car, in order; columns :attr:`features`.

        Raises
        ------
        ModelError
            When a table column is missing or not numeric, or the model uses facts and none are given.
        """
        return _inputs(cars, facts, self.table_features, self.fact_columns)

    @property
    def predicts(self) -> bool:
        """Whether its estimators were loaded (see :func:`load_model`'s ``estimators``)."""
        if self.family == ENSEMBLE:
            return all(member.predicts for member in self.estimator)
        return self.estimator is not None

    def predict_inputs(self, x: pd.DataFrame) -> np.ndarray:
        """Probabilities from the model's inputs as :meth:`inputs` gives them (permuted or edited at will)."""
        if not self.predicts:
            raise ModelError(f"this {self.family} model was loaded without its estimator (load_model(..., "
                             "estimators=False)): load it whole to predict")
        if self.family == ENSEMBLE:
            logits = np.column_stack([_logit(member.predict_inputs(x)) for member in self.estimator])
            weights, intercept = np.asarray(self.calibration[:-1]), self.calibration[-1]
            return 1 / (1 + np.exp(-(logits @ weights + intercept)))
        if self.family == "hgb":
            matrix = self.preprocessing.matrix(x)
            raw = self.estimator.predict_proba(matrix)[:, 1] if len(matrix) else np.empty(0)
        else:
            matrix = self.preprocessing.scaled(x).astype(np.float32)
            raw = np.asarray(self.estimator(matrix, training=False), dtype=float)[:, 0] if len(matrix) else np.empty(0)
        return _calibrated(raw, self.calibration)

    def predict_proba(self, df: pd.DataFrame, facts=None) -> np.ndarray:
        """Each car's probability of failing the road test.

        Parameters
        ----------
        df : pandas.DataFrame
            Cars with at least the model's table columns (others are ignored), and ``KNR``.
        facts : pyarrow.Table, optional
            Their facts, when the model uses facts (see :meth:`inputs`).

        Returns
        -------
        numpy.ndarray
            Probabilities of ``label_rod = 1``, one per row of ``df``, in its order.

        Raises
        ------
        ModelError
            When a feature column is missing or not numeric, or facts are needed and not given.
        """
        return self.predict_inputs(self.inputs(df, facts))

    def to_bytes(self) -> bytes:
        """The model as one artifact: a zip of ``meta.json`` and the estimator, for :func:`load_model`."""
        meta = {**self.meta, "format": FORMAT, "calibration": list(self.calibration),
                "preprocessing": self.preprocessing.to_dict(),
                "fact_columns": self.fact_columns.to_dict() if self.fact_columns else None}
        members = self.estimator if self.family == ENSEMBLE else (self,)
        if self.family == ENSEMBLE:
            meta["members"] = [{**m.meta, "calibration": list(m.calibration)} for m in members]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            _write(archive, _META, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
            for member in members:
                _write(archive, _ESTIMATOR[member.family], _estimator_bytes(member.family, member.estimator))
        return buffer.getvalue()


def _split_inputs(estimator) -> set[int]:
    """Positions (in the model's input order) of the inputs some tree of a fitted boosting model splits on.

    Reads scikit-learn's fitted trees; with categorical inputs, scikit-learn reorders the columns
    (categories first) through its fitted ``_preprocessor``, whose output slices map them back.
    """
    positions = np.arange(estimator.n_features_in_)
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is not None:
        parts = []
        for name, _, columns in preprocessor.transformers_:
            out = preprocessor.output_indices_.get(name)
            if out is not None and out.stop > out.start:
                columns = np.asarray(columns)
                parts.append((out.start, np.nonzero(columns)[0] if columns.dtype == bool else columns))
        positions = np.concatenate([columns for _, columns in sorted(parts, key=lambda part: part[0])])
    split = set()
    for iteration in estimator._predictors:
        for tree in iteration:
            split.update(tree.nodes["feature_idx"][tree.nodes["is_leaf"] == 0].tolist())
    return {int(positions[i]) for i in split}


def _inputs(cars: pd.DataFrame, facts, table_features: tuple[str, ...], fact_columns: FactColumns | None) -> pd.DataFrame:
    table = pd.DataFrame(_numeric(cars, table_features), columns=list(table_features))
    if not fact_columns or not fact_columns.columns:
        return table
    if facts is None:
        raise ModelError("this model uses the cars' facts (tests NOK, defects, configuration…): pass them "
                         "(kafer.catalog.facts for the lake's cars, kafer.facts.build_facts for an upload)")
    if "KNR" not in cars.columns:
        raise ModelError("the cars lack the KNR column, which links them to their facts")
    return pd.concat([table, fact_columns.frame(cars["KNR"].astype(str).to_numpy(), facts)], axis=1)


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _estimator_bytes(family: str, estimator: Any) -> bytes:
    if family == "hgb":
        return pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / _ESTIMATOR["keras"]
        estimator.save(path)
        return path.read_bytes()


def read_meta(data: bytes) -> dict:
    """The facts an artifact records (family, features, ``trained_on``…), without loading its estimator.

    Raises
    ------
    ModelError
        When the bytes are not a Käfer model artifact.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return json.loads(archive.read(_META).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(f"not a Käfer model artifact ({exc!r}): save models with Model.to_bytes") from None


def load_model(data: bytes, *, estimators: bool = True) -> Model:
    """The model saved by :meth:`Model.to_bytes`.

    Load only artifacts from a trusted place (the registry checks their SHA-256): a boosting
    model's estimator is a pickle.

    Parameters
    ----------
    data : bytes
        The artifact.
    estimators : bool
        ``False`` reads what the model takes in (features, fact columns, record) without its
        estimators: seconds faster for a network, for work that needs no probability; such a
        model refuses to predict.

    Returns
    -------
    Model
        A model whose predictions equal those of the saved one.

    Raises
    ------
    ModelError
        When the bytes are not a Käfer model artifact, or its estimator cannot be read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read(_META).decode("utf-8"))
            family = meta["family"]
            members = meta.pop("members", None) or [meta]
            blobs = {m["family"]: archive.read(_ESTIMATOR[m["family"]]) for m in members}
            kept = meta.pop("preprocessing")
            calibration = meta.pop("calibration")
            version = meta.pop("format")
            columns = meta.pop("fact_columns", None)
            preprocessing = Preprocessing.from_dict(kept)
            fact_columns = FactColumns.from_dict(columns) if columns else None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"not a Käfer model artifact ({exc!r}): save models with Model.to_bytes") from None
    if version not in _READABLE_FORMATS:
        raise ModelError(f"model artifact format {version} is not one of {_READABLE_FORMATS}: retrain the model "
                         "with this Käfer")
    try:
        read = {name: _read_estimator(name, blob) if estimators else None for name, blob in blobs.items()}
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, KeyError, OSError, TypeError,
            ValueError) as exc:
        raise ModelError(f"the {family} estimator in the artifact cannot be read ({exc!r}); it was saved with "
                         f"{meta.get('versions')}: install those versions or retrain") from None
    calibration = tuple(float(c) for c in calibration)
    if family != ENSEMBLE:
        return Model(family, preprocessing, read[family], calibration, meta, fact_columns)
    parts = tuple(Model(m["family"], preprocessing, read[m["family"]],
                        tuple(float(c) for c in m.pop("calibration")), m, fact_columns) for m in members)
    return Model(family, preprocessing, parts, calibration, meta, fact_columns)


def _read_estimator(family: str, blob: bytes) -> Any:
    if family == "hgb":
        return pickle.loads(blob)
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / _ESTIMATOR["keras"]
        path.write_bytes(blob)
        return keras.saving.load_model(path, compile=False)


def train(train_df: pd.DataFrame, *, features: Sequence[str], family: str, seed: int,
          params: Mapping[str, Any] | None = None, facts=None, min_fact_cars: int = 20,
          max_fact_columns: int = 300) -> Model:
    """Fit a model on labelled training cars.

    Parameters
    ----------
    train_df : pandas.DataFrame
        Training cars, all with a known label: ``KNR``, ``produced_at``, ``label_rod`` and the features.
    features : sequence of str
        The table columns the model may use, in order. Never the label, ``label_known``, ``KNR`` or a timestamp.
    family : {"hgb", "keras"}
        Gradient boosting or a dense network.
    seed : int
        The same cars, features, family, params, facts and seed give the same model.
    params : mapping, optional
        Overrides of :data:`DEFAULT_PARAMS` for the family (e.g. ``{"max_epochs": 20}``).
    facts : pyarrow.Table, optional
        The cars' facts (:func:`kafer.facts.build_facts`); the facts at least ``min_fact_cars`` of
        these training cars have (at most ``max_fact_columns`` of each kind) become columns too.
        Only the training cars' facts are looked at to choose them.

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        When the feature list is empty, repeats a name or names the label or car metadata, a
        column is missing or not numeric, a car's label is unknown or not 0/1, there are too few
        failures or cars without one, or ``family`` or a parameter is unknown.
    """
    features = _check_features(features)
    if family not in FAMILIES:
        raise ModelError(f"model family must be one of {', '.join(FAMILIES)}, not {family!r}")
    chosen = _params(family, params)
    y = _labels(train_df)
    if family == ENSEMBLE:
        fit, val, held = _stacking_split(train_df, y)
    else:
        fit, val = _validation_split(train_df, y)
    fact_columns = None
    if facts is not None:
        fact_columns = FactColumns.fit(facts, train_df["KNR"].astype(str).to_numpy(), min_cars=min_fact_cars,
                                       max_columns=max_fact_columns)
    inputs = _inputs(train_df, facts, features, fact_columns)
    categorical = fact_columns.categorical if fact_columns else ()
    numeric = tuple(c for c in inputs.columns if c not in categorical)
    preprocessing = _fit_preprocessing(inputs, numeric, categorical,
                                       tuple(len(fact_columns.levels(c)) for c in categorical),
                                       sparse=set(fact_columns.columns) - set(categorical) if fact_columns else set())
    produced = pd.to_datetime(train_df["produced_at"])
    shared = {"features": list(features), "seed": int(seed),
              "trained_on": {"cars": int(len(y)), "positives": int(y.sum()),
                             "produced_from": produced.min().isoformat(), "produced_to": produced.max().isoformat()},
              "validation": {"cars": int(val.sum()), "positives": int(y[val].sum())}}

    def member(name: str, options: Mapping[str, Any]) -> Model:
        if name == "hgb":
            x = preprocessing.matrix(inputs)
            estimator = _fit_hgb(x[fit], y[fit], x[val], y[val], seed=seed, params=options,
                                 categorical=len(numeric) * [False] + len(categorical) * [True])
            calibration, fitted = (1.0, 0.0), {"iterations": int(estimator.n_iter_)}
        else:
            x = preprocessing.scaled(inputs).astype(np.float32)
            estimator, fitted = _fit_keras(x[fit], y[fit], x[val], y[val], seed=seed, params=options)
            calibration = _platt(np.asarray(estimator(x[val], training=False), dtype=float)[:, 0], y[val])
        meta = {"family": name, **shared, "params": _json_params(options), "fitted": fitted,
                "versions": _versions(name)}
        return Model(name, preprocessing, estimator, calibration, meta, fact_columns)

    if family != ENSEMBLE:
        return member(family, chosen)
    members = tuple(member(name, chosen[name]) for name in MEMBERS)
    unseen = inputs.iloc[np.nonzero(held)[0]]
    logits = np.column_stack([_logit(m.predict_inputs(unseen)) for m in members])
    weights, intercept = _stack(logits, y[held])
    meta = {"family": family, **shared, "params": {name: _json_params(chosen[name]) for name in MEMBERS},
            "fitted": {name: m.meta["fitted"] for name, m in zip(MEMBERS, members)},
            "stack": {"weights": dict(zip(MEMBERS, weights)), "intercept": intercept,
                      "cars": int(held.sum()), "positives": int(y[held].sum())},
            "versions": _versions(family)}
    return Model(family, preprocessing, members, (*weights, intercept), meta, fact_columns)


def _params(family: str, params: Mapping[str, Any] | None) -> dict:
    """:data:`DEFAULT_PARAMS` of the family with ``params`` applied (for an ensemble, per member).

    Raises
    ------
    ModelError
        When a parameter is unknown.
    """
    defaults = DEFAULT_PARAMS[family]
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise ModelError(f"unknown {family} parameter(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    if family == ENSEMBLE:
        return {name: _params(name, (params or {}).get(name)) for name in MEMBERS}
    return {**defaults, **(params or {})}


def _json_params(params: Mapping[str, Any]) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _stack(logits: np.ndarray, y: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Non-negative weights of the members' log-odds, and an intercept, that make the weighted sum a
    calibrated log-odds on ``y`` (logistic regression, a small L2 penalty towards equal weights of 1/k).

    Non-negative: a member is trusted or ignored, never turned upside down. When the cars show no
    ranking at all, the weights stay equal and only the intercept is fitted.
    """
    from scipy.optimize import minimize

    k = logits.shape[1]
    prior = np.full(k, 1.0 / k)

    def loss(theta: np.ndarray) -> float:
        z = logits @ theta[:k] + theta[k]
        return float(np.sum(np.logaddexp(0, z) - y * z) + 0.5 * np.sum((theta[:k] - prior) ** 2))

    start = np.r_[prior, 0.0]
    found = minimize(loss, start, method="L-BFGS-B", bounds=[(0, None)] * k + [(None, None)])
    if found.x[:k].sum() > 1e-3:
        weights, intercept = found.x[:k], found.x[k]
    else:
        weights, intercept = prior, _platt_intercept(logits @ prior, y)
    return tuple(float(w) for w in weights), float(intercept)


def select_family(train_df: pd.DataFrame, *, features: Sequence[str], seed: int, facts=None,
                  min_fact_cars: int = 20, max_fact_columns: int = 300, families: Sequence[str] = FAMILIES,
                  params: Mapping[str, Mapping[str, Any]] | None = None, min_failures: int = 10) -> dict:
    """Which family ranks the latest training cars best, each family trained on the earlier ones.

    The latest :data:`SELECTION_FRACTION` of the training cars by production time are held out
    (never the evaluation cars); every family is trained on the others with the same inputs and
    seed and scores the held-out cars; the one with the highest PR-AUC (average precision: how well
    the riskiest cars are ranked, what inspectors use) is chosen, the first listed on a tie.

    Parameters
    ----------
    train_df : pandas.DataFrame
        The training cars (see :func:`train`).
    features, seed, facts, min_fact_cars, max_fact_columns
        As for :func:`train`.
    families : sequence of str
        The families compared.
    params : mapping, optional
        Per family, overrides of its parameters.
    min_failures : int
        Fewer failures (or non-failures) than this among the held-out cars rank nothing but noise:
        the first family is kept without comparing, and the rule says why.

    Returns
    -------
    dict
        ``rule`` (in words), ``chosen``, ``cars`` and ``failures`` (the held-out cars) and
        ``scores``: per family ``roc_auc``, ``pr_auc`` and ``recall_at_10``.

    Raises
    ------
    ModelError
        As :func:`train`.
    """
    from .metrics import evaluate

    y = _labels(train_df)
    order = production_order(train_df)
    held = max(1, round(SELECTION_FRACTION * len(order)))
    early, late = train_df.iloc[order[:-held]], train_df.iloc[order[-held:]]
    failures = int(y[order[-held:]].sum())
    if failures < min_failures or held - failures < min_failures:
        return {"rule": f"not compared: the latest {held} training cars hold {failures} failures and "
                        f"{held - failures} cars without, and fewer than {min_failures} of either rank families by "
                        f"noise; {families[0]}, the first family, is kept",
                "chosen": families[0], "cars": int(held), "failures": failures, "scores": {}}
    scores = {}
    for family in families:
        model = train(early, features=features, family=family, seed=seed, params=(params or {}).get(family),
                      facts=facts, min_fact_cars=min_fact_cars, max_fact_columns=max_fact_columns)
        figures = evaluate(late["label_rod"], model.predict_proba(late, facts), budgets=(0.1,))
        scores[family] = {k: figures[k] for k in ("roc_auc", "pr_auc", "recall_at_10")}
    chosen = max(families, key=lambda f: (scores[f]["pr_auc"], -list(families).index(f)))
    return {"rule": f"best PR-AUC on the latest {SELECTION_FRACTION:.0%} of the training cars, each family trained "
                    "on the earlier ones", "chosen": chosen, "cars": int(held), "failures": failures,
            "scores": scores}


def _check_features(features: Sequence[str]) -> tuple[str, ...]:
    if isinstance(features, str):
        raise ModelError(f"features must be a sequence of column names, not the string {features!r}")
    names = tuple(features)
    if not names:
        raise ModelError("the feature list is empty: pass the feature columns (kafer.features.feature_columns)")
    forbidden = [name for name in names if name in META_COLUMNS or str(name).lower().startswith("label")]
    if forbidden:
        raise ModelError(f"{', '.join(forbidden)} may never be a feature: they are the label or describe the car, "
                         "not what is known before the road test; remove them from the feature list")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ModelError(f"feature(s) {', '.join(repeated)} appear more than once in the feature list")
    return names


def _numeric(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    missing = [name for name in features if name not in df.columns]
    if missing:
        raise ModelError(f"the cars lack feature column(s) {', '.join(missing)}: build them with the same "
                         "feature code the model was trained with")
    wrong = [name for name in features
             if not (pd.api.types.is_numeric_dtype(df[name]) or pd.api.types.is_bool_dtype(df[name]))]
    if wrong:
        raise ModelError(f"feature column(s) {', '.join(wrong)} are not numeric")
    return df[list(features)].to_numpy(dtype=float, na_value=np.nan)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _labels(train_df: pd.DataFrame) -> np.ndarray:
    missing = [c for c in ("KNR", "produced_at", "label_rod") if c not in train_df.columns]
    if missing:
        raise ModelError(f"the training cars lack column(s) {', '.join(missing)}")
    if "label_known" in train_df.columns and not train_df["label_known"].fillna(False).astype(bool).all():
        raise ModelError("some training cars have an unknown label: train on kafer.dataset.labelled(table) only")
    if pd.to_datetime(train_df["produced_at"]).isna().any():
        raise ModelError("some training cars have no production time (produced_at)")
    y = pd.to_numeric(train_df["label_rod"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not np.isin(y, (0, 1)).all():
        raise ModelError("label_rod must be 0 or 1 for every training car")
    positives = int(y.sum())
    if positives < 2 or len(y) - positives < 2:
        raise ModelError(f"the {len(y)} training cars hold {positives} road-test failure(s); at least 2 failures "
                         "and 2 cars without one are needed: train on more months of labelled cars")
    return y.astype(int)


def _validation_split(train_df: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the cars to fit on and of the validation cars (latest per class)."""
    order = production_order(train_df)
    val = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        of_class = order[y[order] == label]
        val[of_class[len(of_class) - math.ceil(VALIDATION_FRACTION * len(of_class)):]] = True
    return ~val, val


def _stacking_split(train_df: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks of an ensemble's cars: those its members fit on, their validation cars (early
    stopping, the network's calibration) and the cars the stack is fitted on, which neither member
    saw: per class, the latest :data:`VALIDATION_FRACTION` of the training cars are held out for the
    stack, and the members split the others as a single family splits all of them.

    Raises
    ------
    ModelError
        When a class has fewer than 3 cars: each of the three parts needs one.
    """
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise ModelError(f"the {len(y)} training cars hold {counts[1]} road-test failure(s) and {counts[0]} cars "
                         "without one; the ensemble needs at least 3 of each (its members learn, stop and are "
                         "stacked on different cars): train on more months of labelled cars, or family hgb")
    rest, held = _validation_split(train_df, y)
    kept = np.nonzero(rest)[0]
    fit_rest, val_rest = _validation_split(train_df.iloc[kept], y[kept])
    fit, val = np.zeros(len(y), dtype=bool), np.zeros(len(y), dtype=bool)
    fit[kept[fit_rest]], val[kept[val_rest]] = True, True
    return fit, val, held


def _fit_preprocessing(inputs: pd.DataFrame, numeric: tuple[str, ...], categorical: tuple[str, ...] = (),
                       levels: tuple[int, ...] = (), sparse: set[str] = frozenset()) -> Preprocessing:
    """Medians, and the network's centering and scaling: standardized ``log1p`` for the table's
    columns; ``log1p`` alone for the ``sparse`` fact counts, which are 0 for most cars and would
    otherwise turn a rare fact into a huge input."""
    raw = _numeric(inputs, numeric)
    finite = np.isfinite(raw)
    medians = tuple(float(np.median(raw[finite[:, j], j])) if finite[:, j].any() else 0.0
                    for j in range(raw.shape[1]))
    logged = _signed_log(np.where(finite, raw, np.asarray(medians)))
    keep = np.array([name in sparse for name in numeric], dtype=bool)
    centers = np.where(keep, 0.0, logged.mean(axis=0))
    scales = np.where(keep | (logged.std(axis=0) <= 0), 1.0, logged.std(axis=0))
    return Preprocessing(features=numeric, medians=medians, centers=tuple(float(c) for c in centers),
                         scales=tuple(float(s) for s in scales), categorical=categorical, levels=levels)


def _fit_hgb(x_fit, y_fit, x_val, y_val, *, seed: int, params: Mapping[str, Any], categorical: list[bool]):
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"], max_leaf_nodes=params["max_leaf_nodes"],
        min_samples_leaf=params["min_samples_leaf"], l2_regularization=params["l2_regularization"],
        max_iter=params["max_iter"], early_stopping=True, scoring="loss", validation_fraction=None,
        n_iter_no_change=params["n_iter_no_change"], random_state=seed,
        categorical_features=np.asarray(categorical, dtype=bool) if any(categorical) else None)
    return estimator.fit(x_fit, y_fit, X_val=x_val, y_val=y_val)


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sample weights that give both classes the same total weight (mean weight 1)."""
    share = np.bincount(y, minlength=2) / len(y)
    return (0.5 / share)[y]


def _fit_keras(x_fit, y_fit, x_val, y_val, *, seed: int, params: Mapping[str, Any]) -> tuple[Any, dict]:
    """The fitted network, and how many epochs ran and which one's weights it kept."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    inputs = keras.Input(shape=(x_fit.shape[1],))
    layer = inputs
    for units in params["hidden"]:
        layer = keras.layers.Dense(units, activation="relu",
                                   kernel_regularizer=keras.regularizers.L2(params["l2"]))(layer)
        layer = keras.layers.Dropout(params["dropout"], seed=seed)(layer)
    outputs = keras.layers.Dense(1, activation="sigmoid")(layer)
    network = keras.Model(inputs, outputs)
    network.compile(optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
                    loss="binary_crossentropy")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params["patience"], restore_best_weights=True)
    history = network.fit(x_fit, y_fit.astype(np.float32), sample_weight=_balanced_weights(y_fit),
                          validation_data=(x_val, y_val.astype(np.float32), _balanced_weights(y_val)),
                          epochs=params["max_epochs"], batch_size=params["batch_size"], callbacks=[stop],
                          verbose=0)
    return network, {"epochs": len(history.epoch), "best_epoch": int(stop.best_epoch) + 1}


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(clipped / (1 - clipped))


def _calibrated(raw: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
    slope, intercept = calibration
    if (slope, intercept) == (1.0, 0.0):
        return np.asarray(raw, dtype=float)
    return 1 / (1 + np.exp(-(slope * _logit(raw) + intercept)))


def _platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept on the log-odds that make ``raw`` calibrated on ``y`` (Platt scaling).

    The slope is kept positive, so the ranking of the cars never changes: when the validation
    cars show no ranking, or a reversed one, only the intercept is fitted (with slope 1), which
    sets the average probability right.
    """
    from sklearn.linear_model import LogisticRegression

    z = _logit(raw)[:, None]
    fitted = LogisticRegression(C=1e4).fit(z, y)
    slope, intercept = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if slope > 1e-3:
        return slope, intercept
    return 1.0, _platt_intercept(z[:, 0], y)


def _platt_intercept(z: np.ndarray, y: np.ndarray) -> float:
    """The shift of the log-odds ``z`` that makes their mean probability the failure rate of ``y``."""
    low, high = -30.0, 30.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if np.sum(1 / (1 + np.exp(-(z + middle)))) < y.sum() else (low, middle)
    return (low + high) / 2


def _versions(family: str) -> dict:
    import sklearn

    from . import __version__

    out = {"kafer": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "pandas": pd.__version__, "scikit-learn": sklearn.__version__}
    if family in ("keras", ENSEMBLE):
        import keras
        import tensorflow as tf

        out.update({"tensorflow": tf.__version__, "keras": keras.__version__})
    return out
