"""Train a road-test risk model, apply it, and keep it as one self-contained artifact.

Two families share one preprocessing and one artifact format:

- ``hgb`` (the default): scikit-learn's histogram gradient boosting on the (median-imputed) feature values,
  regularized for a weak signal: small steps, four leaves per tree, L2 penalty, early stopping on
  the validation loss, at least 20 cars per leaf (a fact needs a leaf of its own: with 40, the facts
  20 to 40 training cars have, as many kept ones do in a 2,000-car upload, could never be split on).
- ``keras``: a small dense network (64 and 32 ReLU units, dropout 0.3, L2 penalty) on the signed
  ``log1p`` of the features, standardized (fact counts only ``log1p``: mostly 0, standardizing would
  blow a rare fact up to a huge input); failures weighted up to balance the ~7 % positives,
  Adam, early stopping on the (weighted) validation loss, keeping the best epoch's weights.
  Training is seeded and TensorFlow's ops made deterministic, so the same cars, parameters and
  seed give the same network (this sets the process's global random seeds).

- ``ensemble``: both of the above, trained alike; a car's probability is a logistic
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

What a model keeps is plain arrays (:mod:`kafer.scorers`): the boosting model's trees and the
network's weights, each an ``.npz`` read without unpickling and a JSON description, in one zip with
the model's record. Scoring runs those arrays in NumPy: only training imports scikit-learn's
boosting and TensorFlow (inside the functions that fit them), so scoring, and importing this
module, stay fast. Artifacts of formats 1 and 2 held a pickle and a ``.keras`` file: they are
refused until ``kafer models convert`` rewrote them (:mod:`kafer.convert`).
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import zipfile
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import FAMILIES
from .dataset import production_order
from .errors import ModelError
from .facts import FactColumns
from .features import META_COLUMNS, family_of
from .scorers import Network, Trees, load_arrays, probability, save_arrays

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
#: The artifact format written: the estimators as arrays and JSON (:mod:`kafer.scorers`).
FORMAT = 3
#: Formats whose estimators were a pickle (boosting) and a ``.keras`` file (network): their record is
#: read, their estimators only by ``kafer models convert``.
PICKLED_FORMATS = (1, 2)
_META = "meta.json"
#: Each family's arrays and their description in a format-3 artifact.
_ARRAYS = {"hgb": ("hgb.npz", "hgb.json"), "keras": ("keras.npz", "keras.json")}
#: The libraries a kept model's scores depend on (its arrays are read and scored by Käfer's own code).
SCORING_LIBRARIES = ("kafer", "numpy")
#: How to convert a model kept by an older Käfer.
CONVERT = "kafer models convert"


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

    def raw(self, df: pd.DataFrame) -> np.ndarray:
        """The inputs of ``df`` as they are: the numeric ones, then the category codes (NaN: missing)."""
        return _numeric(df, self.features + self.categorical)

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The boosting model's input: the numeric inputs, gaps filled with the training medians, then the
        category codes."""
        return self.matrix_of(self.raw(df))

    def scaled(self, df: pd.DataFrame) -> np.ndarray:
        """The network's input: signed ``log1p`` of the numeric inputs (gaps filled with the training
        medians), standardized, then the categories one-hot."""
        return self.scaled_of(self.raw(df))

    def matrix_of(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`matrix` from the inputs as :meth:`raw` gives them."""
        k = len(self.features)
        return np.hstack([self._filled(raw[:, :k]), raw[:, k:]])

    def scaled_of(self, raw: np.ndarray, *, dtype=np.float64) -> np.ndarray:
        """:meth:`scaled` from the inputs as :meth:`raw` gives them, as ``dtype``."""
        k = len(self.features)
        numeric = (_signed_log(self._filled(raw[:, :k])) - np.asarray(self.centers)) / np.asarray(self.scales)
        out = np.zeros((len(raw), k + sum(self.levels)), dtype=dtype)
        out[:, :k] = numeric
        start = k
        for j, levels in enumerate(self.levels):
            out[:, start:start + levels] = np.equal.outer(raw[:, k + j], np.arange(levels))
            start += levels
        return out

    def _filled(self, numeric: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(numeric), numeric, np.asarray(self.medians))

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
    estimator : Trees or Network
        The boosting model's trees or the network's layers as arrays (:mod:`kafer.scorers`); for an
        ensemble, its member models (same preprocessing and fact columns), in :data:`MEMBERS`' order.
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
        if self.family != "hgb" or self.estimator is None:
            return self.features
        return tuple(name for i, name in enumerate(self.features) if i in self.estimator.used)

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
        return _inputs(cars, facts, self.table_features, self.fact_columns)[list(self.features)]

    @property
    def predicts(self) -> bool:
        """Whether its estimators were loaded (see :func:`load_model`'s ``estimators``)."""
        if self.family == ENSEMBLE:
            return all(member.predicts for member in self.estimator)
        return self.estimator is not None

    def predict_inputs(self, x: pd.DataFrame) -> np.ndarray:
        """Probabilities from the model's inputs as :meth:`inputs` gives them (permuted or edited at will)."""
        return self.predict_values(_numeric(x, self.features))

    def predict_values(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities from the model's inputs as an array: one row per car, the columns :attr:`features`.

        What :meth:`predict_inputs` does without a DataFrame: the explanations score thousands of
        shuffled or edited copies of the inputs this way.
        """
        if not self.predicts:
            raise ModelError(f"this {self.family} model was loaded without its estimator (load_model(..., "
                             "estimators=False)): load it whole to predict")
        raw = np.asarray(raw, dtype=float)
        if self.family == ENSEMBLE:
            logits = np.column_stack([_logit(member.predict_values(raw)) for member in self.estimator])
            weights, intercept = np.asarray(self.calibration[:-1]), self.calibration[-1]
            return 1 / (1 + np.exp(-(logits @ weights + intercept)))
        if not len(raw):
            return np.empty(0)
        if self.family == "hgb":
            return _calibrated(self.estimator.predict(self.preprocessing.matrix_of(raw)), self.calibration)
        return _calibrated(self.estimator.predict(self.preprocessing.scaled_of(raw, dtype=np.float32)),
                           self.calibration)

    def predict_edits(self, raw: np.ndarray, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Probabilities of edited cars: for each edit ``e``, car ``rows[e]`` of ``raw`` (as
        :meth:`predict_values` takes it) with its input ``columns[e]`` set to ``values[e]``.

        The same numbers as :meth:`predict_values` on copies of the edited cars (to float rounding),
        without the copies: the trees read only the inputs they split on, and an edit changes the
        network's first layer by the edited input's change times its weights, so an edit costs the
        network's small layers, not a pass over every input. Shuffling one input among the cars
        and setting a car's fact back to a typical value are such edits (:mod:`kafer.explain`).
        """
        if not self.predicts:
            raise ModelError(f"this {self.family} model was loaded without its estimator (load_model(..., "
                             "estimators=False)): load it whole to predict")
        raw = np.asarray(raw, dtype=float)
        rows, columns = np.asarray(rows, dtype=np.intp), np.asarray(columns, dtype=np.intp)
        values = np.asarray(values, dtype=float)
        if self.family == ENSEMBLE:
            logits = np.column_stack([_logit(m.predict_edits(raw, rows, columns, values)) for m in self.estimator])
            weights, intercept = np.asarray(self.calibration[:-1]), self.calibration[-1]
            return 1 / (1 + np.exp(-(logits @ weights + intercept)))
        out = np.empty(rows.size)
        edit = _edited_trees if self.family == "hgb" else _edited_network
        prepared = edit(self, raw)
        for start in range(0, rows.size, _EDITS):
            at = slice(start, start + _EDITS)
            out[at] = prepared(rows[at], columns[at], values[at])
        return _calibrated(out, self.calibration)

    def shuffler(self, raw: np.ndarray):
        """A function scoring the cars ``raw`` with a group of inputs shuffled among them: ``shuffled(columns,
        order)`` gives what :meth:`predict_values` gives on a copy where car ``i`` has car ``order[i]``'s
        values of the inputs at ``columns`` (to float rounding).

        Prepared once for many shuffles: the trees keep the cars' scores when no shuffled input is one
        they read, and the network shuffles its inputs as already scaled and moves its first layer by
        the shuffled inputs' change alone, rather than scaling every input of every car again.
        """
        if not self.predicts:
            raise ModelError(f"this {self.family} model was loaded without its estimator (load_model(..., "
                             "estimators=False)): load it whole to predict")
        raw = np.asarray(raw, dtype=float)
        if self.family == ENSEMBLE:
            parts = [member.shuffler(raw) for member in self.estimator]
            weights, intercept = np.asarray(self.calibration[:-1]), self.calibration[-1]
            return lambda columns, order: 1 / (1 + np.exp(-(np.column_stack(
                [_logit(part(columns, order)) for part in parts]) @ weights + intercept)))
        prep = self.preprocessing
        if self.family == "hgb":
            read, trees = self.estimator.compact()
            base = prep.matrix_of(raw)[:, read]
            unshuffled = probability(trees.raw(base))
            where = {int(c): i for i, c in enumerate(read)}

            def shuffled_trees(columns, order):
                at = [where[c] for c in columns if c in where]
                if not at:
                    return _calibrated(unshuffled, self.calibration)
                matrix = base.copy()
                matrix[:, at] = base[np.ix_(order, at)]
                return _calibrated(trees.predict(matrix), self.calibration)

            return shuffled_trees
        scaled = prep.scaled_of(raw, dtype=np.float32)
        first = self.estimator.first(scaled)
        k = len(prep.features)
        starts = k + np.concatenate([[0], np.cumsum(prep.levels)]).astype(int)
        slots = [[c] for c in range(k)] + [list(range(starts[j], starts[j + 1])) for j in range(len(prep.levels))]

        def shuffled_network(columns, order):
            at = [slot for c in columns for slot in slots[c]]
            change = scaled[np.ix_(order, at)] - scaled[:, at]
            return _calibrated(self.estimator.predict_from_first(first + change @ self.estimator.weights[0][at]),
                               self.calibration)

        return shuffled_network

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
        """The model as one artifact, for :func:`load_model`: a zip of ``meta.json`` and, per estimator,
        its arrays (``.npz``) and their description (``.json``); nothing in it is code."""
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
                arrays, description = member.estimator.to_arrays()
                npz, described = _ARRAYS[member.family]
                _write(archive, npz, save_arrays(arrays))
                _write(archive, described, json.dumps(description, indent=2, sort_keys=True).encode("utf-8"))
        return buffer.getvalue()


#: Edits scored at once by :meth:`Model.predict_edits` (bounds the memory of the edited copies).
_EDITS = 50_000


def _edited_trees(model: Model, raw: np.ndarray):
    """For a boosting model: a function scoring a block of edits of the cars ``raw``; an edit of an
    input no tree reads keeps its car's score."""
    columns, trees = model.estimator.compact()
    base = model.preprocessing.matrix_of(raw)[:, columns]
    unedited = trees.raw(base)
    where = np.full(raw.shape[1], -1)
    where[columns] = np.arange(columns.size)
    numeric = len(model.preprocessing.features)
    medians = np.asarray(model.preprocessing.medians)

    def score(rows, cols, values):
        out = unedited[rows]
        read = np.nonzero(where[cols] >= 0)[0]
        edited = base[rows[read]]
        filled = values[read].copy()
        fill = (cols[read] < numeric) & ~np.isfinite(filled)
        filled[fill] = medians[cols[read][fill]]
        edited[np.arange(read.size), where[cols[read]]] = filled
        out[read] = trees.raw(edited)
        return probability(out)

    return score


def _edited_network(model: Model, raw: np.ndarray):
    """For a network: a function scoring a block of edits of the cars ``raw`` from their first layer."""
    prep, network = model.preprocessing, model.estimator
    scaled = prep.scaled_of(raw, dtype=np.float32)
    first = network.first(scaled)
    kernel = network.weights[0]
    numeric = len(prep.features)
    starts = numeric + np.concatenate([[0], np.cumsum(prep.levels)[:-1]]).astype(np.intp)
    levels = np.asarray(prep.levels, dtype=np.intp)
    medians, centers, scales = (np.asarray(a) for a in (prep.medians, prep.centers, prep.scales))

    def slot(cols, codes):
        """The one-hot input a category code sets (-1: none, as :meth:`Preprocessing.scaled_of` does)."""
        j = cols - numeric
        known = (codes >= 0) & (codes < levels[j]) & (codes == np.floor(codes))
        return np.where(known, starts[j] + np.where(known, codes, 0).astype(np.intp), -1)

    def score(rows, cols, values):
        sums = first[rows]
        number = cols < numeric
        if number.any():
            e, c, v = np.nonzero(number)[0], cols[number], values[number]
            filled = np.where(np.isfinite(v), v, medians[c])
            new = ((_signed_log(filled) - centers[c]) / scales[c]).astype(np.float32)  # as scaled_of makes it
            sums[e] += (new - scaled[rows[e], c])[:, None] * kernel[c]
        if (~number).any():
            e, c = np.nonzero(~number)[0], cols[~number]
            old, new = slot(c, raw[rows[e], c]), slot(c, values[~number])
            sums[e] -= np.where((old >= 0)[:, None], kernel[np.maximum(old, 0)], 0)
            sums[e] += np.where((new >= 0)[:, None], kernel[np.maximum(new, 0)], 0)
        return network.predict_from_first(sums)

    return score


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

    Nothing in an artifact is run: the record is JSON, the estimators are arrays read with
    ``allow_pickle=False`` and checked against their description (:mod:`kafer.scorers`). An
    artifact of an older format, whose estimators were a pickle and a ``.keras`` file, is read
    only for its record (``estimators=False``): scoring it is refused until ``kafer models
    convert`` has rewritten it.

    Parameters
    ----------
    data : bytes
        The artifact.
    estimators : bool
        ``False`` reads what the model takes in (features, fact columns, record) without its
        estimators, for work that needs no probability; such a model refuses to predict.

    Returns
    -------
    Model
        A model whose predictions equal those of the saved one.

    Raises
    ------
    ModelError
        When the bytes are not a Käfer model artifact, its estimators cannot be read, or they are of
        an older format (pickled) and ``estimators`` is true.
    """
    parts = artifact_parts(data)
    if parts.format in PICKLED_FORMATS:
        if estimators:
            raise ModelError(f"this {parts.family} model was kept by an older Käfer, whose artifacts hold a pickle that "
                             f"would run code when read: it is not loaded; an administrator converts the lake's "
                             f"models once with `{CONVERT} --lake URL`, then it scores as before")
    elif parts.format != FORMAT:
        raise ModelError(f"model artifact format {parts.format} is not one this Käfer reads ({FORMAT}, or "
                         f"{' and '.join(map(str, PICKLED_FORMATS))} once converted): it was made by a newer Käfer; "
                         "install that Käfer or retrain")
    read = {}
    if estimators:
        prep = parts.preprocessing
        width = {"hgb": len(prep.features) + len(prep.categorical), "keras": len(prep.features) + sum(prep.levels)}
        for family in parts.families:
            npz, described = _ARRAYS[family]
            try:
                description = json.loads(parts.files[described].decode("utf-8"))
                blob = parts.files[npz]
            except (KeyError, ValueError) as exc:
                raise ModelError(f"the {family} estimator of this artifact is missing or unreadable ({exc!r})") from None
            read[family] = _read_estimator(family, blob, description, inputs=width[family])
    return assemble(parts, read)


@dataclass(frozen=True)
class ArtifactParts:
    """What an artifact holds, read without running anything: its record, preprocessing, calibration,
    fact columns, format, and its other files as bytes (estimators, unread)."""

    family: str
    meta: dict
    members: tuple[dict, ...]
    preprocessing: Preprocessing
    calibration: tuple[float, ...]
    fact_columns: FactColumns | None
    format: int
    files: Mapping[str, bytes]

    @property
    def families(self) -> tuple[str, ...]:
        """The families of its estimators: the model's, or its members'."""
        return tuple(m["family"] for m in self.members) if self.members else (self.family,)


def artifact_parts(data: bytes) -> ArtifactParts:
    """The parts of an artifact of any format (:class:`ArtifactParts`).

    Raises
    ------
    ModelError
        When the bytes are not a Käfer model artifact.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read(_META).decode("utf-8"))
            files = {name: archive.read(name) for name in archive.namelist() if name != _META}
        family = meta["family"]
        members = tuple(meta.pop("members", None) or ())
        preprocessing = Preprocessing.from_dict(meta.pop("preprocessing"))
        calibration = tuple(float(c) for c in meta.pop("calibration"))
        version = meta.pop("format")
        columns = meta.pop("fact_columns", None)
        fact_columns = FactColumns.from_dict(columns) if columns else None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"not a Käfer model artifact ({exc!r}): save models with Model.to_bytes") from None
    return ArtifactParts(family, meta, members, preprocessing, calibration, fact_columns, version, files)


def assemble(parts: ArtifactParts, estimators: Mapping[str, Any], *, meta: Mapping | None = None) -> Model:
    """The model of ``parts`` with ``estimators`` (per family; a family left out is not loaded), its
    record ``meta`` when given (else the artifact's)."""
    meta = dict(parts.meta if meta is None else meta)
    if parts.family != ENSEMBLE:
        return Model(parts.family, parts.preprocessing, estimators.get(parts.family), parts.calibration, meta,
                     parts.fact_columns)
    members = tuple(Model(m["family"], parts.preprocessing, estimators.get(m["family"]),
                          tuple(float(c) for c in m["calibration"]), {k: v for k, v in m.items() if k != "calibration"},
                          parts.fact_columns) for m in parts.members)
    return Model(parts.family, parts.preprocessing, members, parts.calibration, meta, parts.fact_columns)


def _read_estimator(family: str, blob: bytes, description: Mapping, *, inputs: int) -> Trees | Network:
    kind = Trees if family == "hgb" else Network
    return kind.from_arrays(load_arrays(blob), description, inputs=inputs)


def library_differences(meta: Mapping, *, name: str) -> str | None:
    """In words, how the libraries a model's scores depend on differ from this Käfer's; ``None`` when
    they do not.

    A format-3 model is arrays scored by Käfer's own code (:mod:`kafer.scorers`), so only Käfer's
    and NumPy's versions bear on its scores; scikit-learn and TensorFlow only trained it.

    Parameters
    ----------
    meta : dict
        The model's record (:attr:`Model.meta`), whose ``versions`` it was built with.
    name : str
        How the words call the model, e.g. ``production model m2024…``.
    """
    recorded = meta.get("versions") or {}
    here = _installed(SCORING_LIBRARIES)
    differ = [f"{library} {recorded[library]} (here {here[library]})" for library in SCORING_LIBRARIES
              if recorded.get(library) and recorded[library] != here[library]]
    if not differ:
        return None
    return (f"{name} was built with other versions of the libraries its scores rest on: {', '.join(differ)}. "
            "Its trees and weights are read as saved (nothing in them runs) and scored by Käfer's own NumPy code, "
            "so its scores stay those it was judged on unless that code or NumPy's arithmetic changed; if its track "
            "record (kafer monitor) looks off, retrain.")


def _installed(names: Sequence[str]) -> dict[str, str]:
    from . import __version__

    return {name: {"kafer": __version__, "numpy": np.__version__}[name] for name in names}


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
            boosting = _fit_hgb(x[fit], y[fit], x[val], y[val], seed=seed, params=options,
                                categorical=len(numeric) * [False] + len(categorical) * [True])
            estimator = _exported_trees(boosting, x)
            calibration, fitted = (1.0, 0.0), {"iterations": int(boosting.n_iter_)}
        else:
            x = preprocessing.scaled(inputs).astype(np.float32)
            network, fitted = _fit_keras(x[fit], y[fit], x[val], y[val], seed=seed, params=options)
            estimator = _exported_network(network, x)
            calibration = _platt(estimator.predict(x[val]), y[val])
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


def _exported_trees(boosting, x: np.ndarray) -> Trees:
    """The fitted boosting model's trees as arrays, checked to give its probabilities on ``x``.

    Raises
    ------
    ModelError
        When they differ: this scikit-learn's trees are not what :class:`kafer.scorers.Trees` reads.
    """
    trees = Trees.from_sklearn(boosting)
    expected = boosting.predict_proba(x)[:, 1]
    if not np.allclose(trees.predict(x), expected, rtol=0, atol=1e-12):
        raise ModelError("the boosting model's trees, read as arrays, do not give its own probabilities: this "
                         "scikit-learn stores its trees otherwise; install the version of the lock file")
    return trees


def _exported_network(network, x: np.ndarray) -> Network:
    """The fitted Keras network's layers as arrays, checked to give its outputs on ``x`` (to float32 rounding).

    Raises
    ------
    ModelError
        When they differ: the network holds a layer the NumPy pass does not compute alike.
    """
    exported = Network.from_keras(network)
    expected = np.asarray(network(x, training=False), dtype=float)[:, 0]
    if not np.allclose(exported.predict(x), expected, rtol=1e-4, atol=1e-6):
        raise ModelError("the network's layers, computed in NumPy, do not give Keras's outputs: its layers are "
                         "not the dense ones Käfer trains")
    return exported


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sample weights that give both classes the same total weight (mean weight 1)."""
    share = np.bincount(y, minlength=2) / len(y)
    return (0.5 / share)[y]


def _tensorflow():
    """TensorFlow and Keras, imported without the log lines their C++ start-up writes to the process's
    stderr (absl, oneDNN, the CPU feature guard): a notebook would show them above its results and
    they are nothing a user can act on. Keras's own errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                import keras  # noqa: F401
                import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import keras
    import tensorflow as tf

    return keras, tf


def _fit_keras(x_fit, y_fit, x_val, y_val, *, seed: int, params: Mapping[str, Any]) -> tuple[Any, dict]:
    """The fitted Keras network, and how many epochs ran and which one's weights it kept."""
    keras, tf = _tensorflow()
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
        keras, tf = _tensorflow()
        out.update({"tensorflow": tf.__version__, "keras": keras.__version__})
    return out
