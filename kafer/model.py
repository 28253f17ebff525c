"""Train a road-test risk model, apply it, and keep it as one self-contained artifact.

Two families share one preprocessing and one artifact format:

- ``hgb``: scikit-learn's histogram gradient boosting on the (median-imputed) feature values,
  regularized for a weak signal: small steps, four leaves per tree, at least 40 cars per leaf,
  L2 penalty, early stopping on the validation loss.
- ``keras``: a small dense network (64 and 32 ReLU units, dropout 0.3, L2 penalty) on the signed
  ``log1p`` of the features, standardized; failures weighted up to balance the ~7 % positives,
  Adam, early stopping on the (weighted) validation loss, keeping the best epoch's weights.
  Training is seeded and TensorFlow's ops made deterministic, so the same cars, parameters and
  seed give the same network (this sets the process's global random seeds).

Both stop early on the same validation cars: the latest 15 % of the training failures and the
latest 15 % of the other training cars, by production time. Taking the latest cars mirrors how
a model is used (on cars built after those it learned from); taking them per class guarantees
failures among them even in small trainings. Class weighting shifts a network's probabilities
upwards, so the network's scores are recalibrated on those validation cars (Platt scaling,
logistic in the score's log-odds) to keep its Brier score honest. The boosting model is trained
unweighted, so its probabilities need no correction: on synthetic plant data with a planted weak
signal, weighting it lowered its ROC-AUC and PR-AUC and doubled its Brier score.

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
from .features import META_COLUMNS

#: Share of each class among the training cars, latest first, kept to stop training and calibrate.
VALIDATION_FRACTION = 0.15
#: Hyperparameters of each family; ``train(..., params=...)`` overrides any of them.
DEFAULT_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "hgb": MappingProxyType({"learning_rate": 0.03, "max_leaf_nodes": 4, "min_samples_leaf": 40,
                             "l2_regularization": 1.0, "max_iter": 500, "n_iter_no_change": 30}),
    "keras": MappingProxyType({"hidden": (64, 32), "dropout": 0.3, "l2": 1e-3, "learning_rate": 1e-3,
                               "batch_size": 128, "max_epochs": 200, "patience": 15}),
})
FORMAT = 1
_META = "meta.json"
_ESTIMATOR = {"hgb": "estimator.pkl", "keras": "estimator.keras"}


@dataclass(frozen=True)
class Preprocessing:
    """What training learned about the features: medians to fill gaps, and the network's scaling.

    Attributes
    ----------
    features : tuple of str
        The model's inputs, in order.
    medians : tuple of float
        Each feature's training median, which replaces a missing or infinite value.
    centers, scales : tuple of float
        Mean and standard deviation of each feature's signed ``log1p`` over the training cars.
    """

    features: tuple[str, ...]
    medians: tuple[float, ...]
    centers: tuple[float, ...]
    scales: tuple[float, ...]

    def values(self, df: pd.DataFrame) -> np.ndarray:
        """The feature matrix of ``df``, gaps filled with the training medians."""
        raw = _numeric(df, self.features)
        return np.where(np.isfinite(raw), raw, np.asarray(self.medians))

    def scaled(self, df: pd.DataFrame) -> np.ndarray:
        """The network's input: signed ``log1p`` of :meth:`values`, standardized."""
        return (_signed_log(self.values(df)) - np.asarray(self.centers)) / np.asarray(self.scales)


@dataclass(frozen=True, eq=False)
class Model:
    """A fitted model: its preprocessing, estimator and calibration, and what it was trained on.

    Attributes
    ----------
    family : {"hgb", "keras"}
    preprocessing : Preprocessing
    estimator : object
        The fitted ``HistGradientBoostingClassifier`` or Keras model.
    calibration : tuple of float
        ``(slope, intercept)`` applied to the estimator's log-odds; ``(1.0, 0.0)`` leaves them as they are.
    meta : dict
        JSON-ready facts: ``family``, ``features``, ``params``, ``seed``, ``trained_on`` (``cars``,
        ``positives``, ``produced_from``, ``produced_to``), ``validation`` (``cars``, ``positives``),
        ``fitted`` (boosting iterations, or epochs run and the best one kept) and ``versions``
        of the libraries.
    """

    family: str
    preprocessing: Preprocessing
    estimator: Any
    calibration: tuple[float, float]
    meta: dict

    @property
    def features(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return self.preprocessing.features

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Each car's probability of failing the road test.

        Parameters
        ----------
        df : pandas.DataFrame
            Cars with at least the model's feature columns (others are ignored).

        Returns
        -------
        numpy.ndarray
            Probabilities of ``label_rod = 1``, one per row of ``df``, in its order.

        Raises
        ------
        ModelError
            When a feature column is missing or not numeric.
        """
        if self.family == "hgb":
            x = self.preprocessing.values(df)
            raw = self.estimator.predict_proba(x)[:, 1] if len(x) else np.empty(0)
        else:
            x = self.preprocessing.scaled(df).astype(np.float32)
            raw = np.asarray(self.estimator(x, training=False), dtype=float)[:, 0] if len(x) else np.empty(0)
        return _calibrated(raw, self.calibration)

    def to_bytes(self) -> bytes:
        """The model as one artifact: a zip of ``meta.json`` and the estimator, for :func:`load_model`."""
        meta = {**self.meta, "format": FORMAT, "calibration": list(self.calibration),
                "preprocessing": {"features": list(self.preprocessing.features),
                                  "medians": list(self.preprocessing.medians),
                                  "centers": list(self.preprocessing.centers),
                                  "scales": list(self.preprocessing.scales)}}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            _write(archive, _META, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
            _write(archive, _ESTIMATOR[self.family], _estimator_bytes(self.family, self.estimator))
        return buffer.getvalue()


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


def load_model(data: bytes) -> Model:
    """The model saved by :meth:`Model.to_bytes`.

    Load only artifacts from a trusted place (the registry checks their SHA-256): a boosting
    model's estimator is a pickle.

    Parameters
    ----------
    data : bytes
        The artifact.

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
            blob = archive.read(_ESTIMATOR[family])
            kept = meta.pop("preprocessing")
            calibration = meta.pop("calibration")
            version = meta.pop("format")
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"not a Käfer model artifact ({exc!r}): save models with Model.to_bytes") from None
    if version != FORMAT:
        raise ModelError(f"model artifact format {version} is not {FORMAT}: retrain the model with this Käfer")
    preprocessing = Preprocessing(features=tuple(kept["features"]), medians=tuple(kept["medians"]),
                                  centers=tuple(kept["centers"]), scales=tuple(kept["scales"]))
    try:
        estimator = _read_estimator(family, blob)
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, KeyError, OSError, TypeError,
            ValueError) as exc:
        raise ModelError(f"the {family} estimator in the artifact cannot be read ({exc!r}); it was saved with "
                         f"{meta.get('versions')}: install those versions or retrain") from None
    return Model(family, preprocessing, estimator, (float(calibration[0]), float(calibration[1])), meta)


def _read_estimator(family: str, blob: bytes) -> Any:
    if family == "hgb":
        return pickle.loads(blob)
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / _ESTIMATOR["keras"]
        path.write_bytes(blob)
        return keras.saving.load_model(path, compile=False)


def train(train_df: pd.DataFrame, *, features: Sequence[str], family: str, seed: int,
          params: Mapping[str, Any] | None = None) -> Model:
    """Fit a model on labelled training cars.

    Parameters
    ----------
    train_df : pandas.DataFrame
        Training cars, all with a known label: ``KNR``, ``produced_at``, ``label_rod`` and the features.
    features : sequence of str
        The columns the model may use, in order. Never the label, ``label_known``, ``KNR`` or a timestamp.
    family : {"hgb", "keras"}
        Gradient boosting or a dense network.
    seed : int
        The same cars, features, family, params and seed give the same model.
    params : mapping, optional
        Overrides of :data:`DEFAULT_PARAMS` for the family (e.g. ``{"max_epochs": 20}``).

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
    unknown = sorted(set(params or {}) - set(DEFAULT_PARAMS[family]))
    if unknown:
        raise ModelError(f"unknown {family} parameter(s) {', '.join(unknown)}; known: "
                         f"{', '.join(DEFAULT_PARAMS[family])}")
    chosen = {**DEFAULT_PARAMS[family], **(params or {})}
    y = _labels(train_df)
    fit, val = _validation_split(train_df, y)
    preprocessing = _fit_preprocessing(train_df, features)
    if family == "hgb":
        x = preprocessing.values(train_df)
        estimator = _fit_hgb(x[fit], y[fit], x[val], y[val], seed=seed, params=chosen)
        calibration = (1.0, 0.0)
        fitted = {"iterations": int(estimator.n_iter_)}
    else:
        x = preprocessing.scaled(train_df).astype(np.float32)
        estimator, fitted = _fit_keras(x[fit], y[fit], x[val], y[val], seed=seed, params=chosen)
        raw = np.asarray(estimator(x[val], training=False), dtype=float)[:, 0]
        calibration = _platt(raw, y[val])
    produced = pd.to_datetime(train_df["produced_at"])
    meta = {
        "family": family,
        "features": list(features),
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()},
        "seed": int(seed),
        "trained_on": {"cars": int(len(y)), "positives": int(y.sum()),
                       "produced_from": produced.min().isoformat(), "produced_to": produced.max().isoformat()},
        "validation": {"cars": int(val.sum()), "positives": int(y[val].sum())},
        "fitted": fitted,
        "versions": _versions(family),
    }
    return Model(family, preprocessing, estimator, calibration, meta)


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


def _fit_preprocessing(train_df: pd.DataFrame, features: tuple[str, ...]) -> Preprocessing:
    raw = _numeric(train_df, features)
    finite = np.isfinite(raw)
    medians = tuple(float(np.median(raw[finite[:, j], j])) if finite[:, j].any() else 0.0
                    for j in range(raw.shape[1]))
    logged = _signed_log(np.where(finite, raw, np.asarray(medians)))
    scales = logged.std(axis=0)
    return Preprocessing(features=features, medians=medians, centers=tuple(float(c) for c in logged.mean(axis=0)),
                         scales=tuple(float(s) if s > 0 else 1.0 for s in scales))


def _fit_hgb(x_fit, y_fit, x_val, y_val, *, seed: int, params: Mapping[str, Any]):
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"], max_leaf_nodes=params["max_leaf_nodes"],
        min_samples_leaf=params["min_samples_leaf"], l2_regularization=params["l2_regularization"],
        max_iter=params["max_iter"], early_stopping=True, scoring="loss", validation_fraction=None,
        n_iter_no_change=params["n_iter_no_change"], random_state=seed)
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
    low, high = -30.0, 30.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if np.sum(1 / (1 + np.exp(-(z[:, 0] + middle)))) < y.sum() else (low, middle)
    return 1.0, (low + high) / 2


def _versions(family: str) -> dict:
    import sklearn

    from . import __version__

    out = {"kafer": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "pandas": pd.__version__, "scikit-learn": sklearn.__version__}
    if family == "keras":
        import keras
        import tensorflow as tf

        out.update({"tensorflow": tf.__version__, "keras": keras.__version__})
    return out
