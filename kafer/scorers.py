"""The fitted estimators as plain arrays, scored in NumPy: boosting trees and a dense network.

Training fits a boosting model with scikit-learn and a network with Keras (:mod:`kafer.model`);
what a model keeps, and what scores cars, is what this module makes of them:

- :class:`Trees`: every tree of a ``HistGradientBoostingClassifier`` as node arrays (the input a
  split reads, its threshold, where a missing value goes, which categories go left, the leaves'
  values) and the baseline log-odds. Scored for all trees and cars at once, it gives the
  classifier's own log-odds bit for bit and its probabilities to the last bit (checked when it is
  made, and tested), categorical splits and missing values included.
- :class:`Network`: each dense layer's weights, bias and activation; the inference pass (dropout
  off) in float32, as Keras computes it.

Saved, each is an ``.npz`` of numeric arrays, read with ``allow_pickle=False``, and a JSON
description: loading a model runs no code from the lake, and scoring imports neither TensorFlow
nor scikit-learn. Pure: arrays in, arrays out; no I/O.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from .errors import ModelError

#: Tree nodes times cars scored at once: bounds the memory of one block of the traversal (the
#: decisions of every split for every car, the node each car is at in every tree).
_BLOCK = 1 << 21
#: Activations a network's layers may have.
ACTIVATIONS = ("relu", "sigmoid")


@dataclass(frozen=True, eq=False)
class Trees:
    """Gradient-boosted trees as arrays, nodes of every tree numbered together.

    Attributes
    ----------
    baseline : float
        The log-odds before any tree.
    roots : numpy.ndarray of int32
        Each tree's first node, in the order the trees add up.
    feature : numpy.ndarray of int32
        Per node, the input column (in the model's input order) its split reads; 0 at a leaf.
    threshold : numpy.ndarray of float64
        Per node of a numeric split, the largest value that goes left.
    left, right : numpy.ndarray of int32
        Per node, its children; a leaf is its own child on both sides, so a car that reached one stays.
    missing_left : numpy.ndarray of bool
        Per node, whether a missing value (or a category the tree never saw) goes left.
    value : numpy.ndarray of float64
        Per leaf, what it adds to the log-odds (0 at a split).
    category : numpy.ndarray of int32
        Per node of a categorical split, its row of ``goes_left``; -1 for a numeric split or a leaf.
    goes_left : numpy.ndarray of bool, shape (categorical splits, codes)
        Whether each category code goes left at each categorical split (codes the training cars
        never had go where missing values go).
    depth : int
        The longest path from a root to a leaf.
    """

    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    category: np.ndarray
    goes_left: np.ndarray
    depth: int

    @property
    def used(self) -> frozenset[int]:
        """The input columns some split reads."""
        split = self.left != np.arange(self.left.size)
        return frozenset(int(f) for f in np.unique(self.feature[split]))

    def compact(self) -> tuple[np.ndarray, "Trees"]:
        """The input columns some split reads (sorted), and these trees reading only them, in that
        order: editing any other column cannot change a score, and copies of the cars stay small."""
        columns = np.array(sorted(self.used), dtype=np.int64)
        return columns, replace(self, feature=np.searchsorted(columns, self.feature).astype(np.int32))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The log-odds of each row of ``x`` (inputs in the model's order, missing values NaN)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty(len(x))
        step = max(1, _BLOCK // max(1, self.roots.size, self.left.size))
        for start in range(0, len(x), step):
            block = x[start:start + step]
            leaves = self._leaves(block)
            # Added one tree after another from the baseline, as scikit-learn adds them.
            out[start:start + step] = np.cumsum(np.column_stack([np.full(len(block), self.baseline),
                                                                 self.value[leaves]]), axis=1)[:, -1]
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The probability of a road-test failure for each row of ``x`` (:func:`probability` of :meth:`raw`)."""
        return probability(self.raw(x))

    def _leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree: shape (rows, trees).

        Every split's decision for every row is taken first, in one pass over the split nodes; the
        walk down the trees then only looks decisions up, one level at a time for all trees at once.
        """
        n = len(x)
        ids = np.arange(self.left.size)
        split = np.nonzero(self.left != ids)[0]
        value = x[:, self.feature[split]]
        missing = np.isnan(value)
        go = np.where(missing, self.missing_left[split], value <= self.threshold[split])
        category = self.category[split]
        at = np.nonzero(category >= 0)[0]
        if at.size:
            code, codes = value[:, at], self.goes_left.shape[1]
            known = ~missing[:, at] & (code >= 0) & (code < codes) & (code == np.floor(code))
            go[:, at] = np.where(known, self.goes_left[category[at], np.where(known, code, 0).astype(np.intp)],
                                 self.missing_left[split[at]])
        decision = np.zeros(self.left.size, dtype=np.intp)  # a node's column of ``go`` (a leaf's: any)
        decision[split] = np.arange(split.size)
        flat = go.ravel()
        start = (np.arange(n) * max(1, split.size))[:, None]
        children = np.column_stack([self.right, self.left]).ravel()  # node i: right at 2i, left at 2i + 1
        node = np.broadcast_to(self.roots, (n, self.roots.size)).copy()
        for _ in range(self.depth):
            node = children[2 * node + flat[start + decision[node]]]
        return node

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The arrays to save (``.npz``) and their JSON description."""
        arrays = {"roots": self.roots, "feature": self.feature, "threshold": self.threshold, "left": self.left,
                  "right": self.right, "missing_left": self.missing_left, "value": self.value,
                  "category": self.category, "goes_left": self.goes_left}
        return arrays, {"kind": "trees", "baseline": float(self.baseline), "trees": int(self.roots.size),
                        "nodes": int(self.left.size), "depth": int(self.depth)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], description: Mapping, *, inputs: int) -> "Trees":
        """The trees saved by :meth:`to_arrays`, checked: every child after its parent (no loops), every
        index inside its array, ``inputs`` columns at most.

        Raises
        ------
        ModelError
            When the arrays are not trees of this shape.
        """
        try:
            nodes = int(description["nodes"])
            kinds = {"roots": np.int32, "feature": np.int32, "threshold": np.float64, "left": np.int32,
                     "right": np.int32, "missing_left": np.bool_, "value": np.float64, "category": np.int32,
                     "goes_left": np.bool_}
            got = {name: np.asarray(arrays[name]) for name in kinds}
            wrong = [name for name, kind in kinds.items() if got[name].dtype != kind]
            if wrong:
                raise ValueError(f"arrays {', '.join(wrong)} are not of their type")
            if any(got[name].shape != (nodes,) for name in kinds if name not in ("roots", "goes_left")):
                raise ValueError("node arrays differ in length")
            ids = np.arange(nodes)
            leaf = got["left"] == ids
            if not np.array_equal(leaf, got["right"] == ids):
                raise ValueError("a node is a leaf on one side only")
            if np.any(~leaf & ((got["left"] <= ids) | (got["right"] <= ids) | (got["left"] >= nodes)
                               | (got["right"] >= nodes))):
                raise ValueError("a child comes before its parent or lies outside the tree")
            roots = got["roots"]
            if roots.ndim != 1 or np.any((roots < 0) | (roots >= nodes)):
                raise ValueError("a root lies outside the trees")
            if np.any((got["feature"] < 0) | (got["feature"] >= max(1, inputs))):
                raise ValueError(f"a split reads a column outside the model's {inputs} inputs")
            goes_left = got["goes_left"]
            if goes_left.ndim != 2 or np.any((got["category"] < -1) | (got["category"] >= goes_left.shape[0])):
                raise ValueError("a categorical split has no row of categories")
            depth = _depth(got["left"], got["right"], leaf)
            return cls(float(description["baseline"]), roots, got["feature"], got["threshold"], got["left"],
                       got["right"], got["missing_left"], got["value"], got["category"], goes_left, depth)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the boosting trees in the artifact are not readable ({exc})") from None

    @classmethod
    def from_sklearn(cls, estimator: Any) -> "Trees":
        """The trees of a fitted binary ``HistGradientBoostingClassifier``, in its input order.

        Reads its fitted trees (``_predictors``), its baseline and, with categorical inputs, the
        ordinal encoder that maps their codes to what the trees split on (``_preprocessor``).

        Raises
        ------
        ModelError
            When the estimator is not a binary classifier of this form (another scikit-learn's internals).
        """
        try:
            n_inputs = int(estimator.n_features_in_)
            position, categories = _input_positions(estimator, n_inputs)
            codes = 1 + max((int(np.nanmax(c)) for c in categories.values() if len(c)), default=-1)
            parts, rows, offset = [], [], 0
            for iteration in estimator._predictors:
                (tree,) = iteration
                nodes = tree.nodes
                count = len(nodes)
                leaf = nodes["is_leaf"].astype(bool)
                ids = np.arange(count) + offset
                cats = nodes["is_categorical"].astype(bool) & ~leaf
                category = np.full(count, -1, dtype=np.int32)
                for i in np.nonzero(cats)[0]:
                    column = int(nodes["feature_idx"][i])
                    bits = tree.raw_left_cat_bitsets[nodes["bitset_idx"][i]]
                    known = categories[column]
                    row = np.full(codes, bool(nodes["missing_go_to_left"][i]))
                    for ordinal, raw in enumerate(known):
                        if np.isnan(raw):
                            continue
                        if raw < 0 or raw != np.floor(raw):
                            raise ValueError(f"category code {raw} is not a whole number from 0")
                        row[int(raw)] = bool((bits[ordinal // 32] >> np.uint32(ordinal % 32)) & 1)
                    category[i] = len(rows)
                    rows.append(row)
                parts.append({
                    "feature": np.where(leaf, 0, position[nodes["feature_idx"]]).astype(np.int32),
                    "threshold": np.where(leaf | cats, 0.0, nodes["num_threshold"]).astype(np.float64),
                    "left": np.where(leaf, ids, nodes["left"].astype(np.int64) + offset).astype(np.int32),
                    "right": np.where(leaf, ids, nodes["right"].astype(np.int64) + offset).astype(np.int32),
                    "missing_left": nodes["missing_go_to_left"].astype(bool),
                    "value": np.where(leaf, nodes["value"], 0.0).astype(np.float64),
                    "category": category, "root": offset})
                offset += count
            baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
            if baseline.size != 1:
                raise ValueError("not a binary classifier")
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"cannot read the fitted boosting model's trees ({exc!r}): this scikit-learn "
                             f"stores them otherwise; install the version in pyproject.toml's lock") from None
        arrays = {name: np.concatenate([p[name] for p in parts]) if parts else np.empty(0, dtype=kind)
                  for name, kind in (("feature", np.int32), ("threshold", np.float64), ("left", np.int32),
                                     ("right", np.int32), ("missing_left", np.bool_), ("value", np.float64),
                                     ("category", np.int32))}
        roots = np.array([p["root"] for p in parts], dtype=np.int32)
        goes_left = np.array(rows, dtype=bool).reshape(len(rows), codes)
        return cls.from_arrays({**arrays, "roots": roots, "goes_left": goes_left},
                               {"baseline": float(baseline[0]), "nodes": offset}, inputs=n_inputs)


def _input_positions(estimator: Any, n_inputs: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Where each column the trees split on comes from in the model's input order, and for each of
    the trees' categorical columns, the input codes its ordinal codes stand for.

    With categorical inputs, scikit-learn reorders the columns (categories first) and encodes each
    category input's values as 0, 1, … through a fitted ``OrdinalEncoder``.
    """
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return np.arange(n_inputs), {}
    position = np.empty(n_inputs, dtype=np.int64)
    categories: dict[int, np.ndarray] = {}
    for name, transformer, columns in preprocessor.transformers_:
        out = preprocessor.output_indices_.get(name)
        if out is None or out.stop <= out.start:
            continue
        columns = np.asarray(columns)
        columns = np.nonzero(columns)[0] if columns.dtype == bool else columns
        position[out.start:out.stop] = columns
        if name == "encoder":
            for j, known in enumerate(transformer.categories_):
                categories[out.start + j] = np.asarray(known, dtype=np.float64)
    return position, categories


def _depth(left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    """The longest path from any node to a leaf (children come after their parents)."""
    below = np.zeros(left.size, dtype=np.int64)
    for i in range(left.size - 1, -1, -1):
        if not leaf[i]:
            below[i] = 1 + max(below[left[i]], below[right[i]])
    return int(below.max()) if below.size else 0


@dataclass(frozen=True, eq=False)
class Network:
    """A dense network's inference pass: each layer ``x @ weights + bias``, then its activation.

    Dropout is off at inference, so it has no part here. Computed in float32, as Keras does.

    Attributes
    ----------
    weights, biases : tuple of numpy.ndarray of float32
        Per layer, its kernel (inputs × units) and bias (units).
    activations : tuple of str
        Per layer, ``relu`` or ``sigmoid`` (:data:`ACTIVATIONS`).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activations: tuple[str, ...]

    @property
    def inputs(self) -> int:
        """How many inputs the first layer takes."""
        return int(self.weights[0].shape[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The network's output (its last unit, a probability) for each row of ``x``, as float64."""
        return self.predict_from_first(self.first(x))

    def first(self, x: np.ndarray) -> np.ndarray:
        """The first layer's sums (before its activation) for each row of ``x``, in float32.

        Changing one input of a row changes them by that input's change times its row of the first
        kernel: :meth:`kafer.model.Model.predict_edits` scores edited cars from them that way.
        """
        out = np.asarray(x, dtype=np.float32) @ self.weights[0]
        out += self.biases[0]
        return out

    def predict_from_first(self, first: np.ndarray) -> np.ndarray:
        """The network's output from the first layer's sums (:meth:`first`), as float64."""
        out = _activated(np.asarray(first, dtype=np.float32), self.activations[0])
        for kernel, bias, activation in zip(self.weights[1:], self.biases[1:], self.activations[1:]):
            out = out @ kernel
            out += bias
            out = _activated(out, activation)
        return out[:, 0].astype(np.float64)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The arrays to save (``.npz``) and their JSON description."""
        arrays = {}
        for i, (kernel, bias) in enumerate(zip(self.weights, self.biases)):
            arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = kernel, bias
        layers = [{"units": int(k.shape[1]), "activation": a} for k, a in zip(self.weights, self.activations)]
        return arrays, {"kind": "dense network", "inputs": self.inputs, "layers": layers,
                        "dropout": "off at inference (training only)"}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], description: Mapping, *, inputs: int) -> "Network":
        """The network saved by :meth:`to_arrays`, checked against its description and ``inputs``.

        Raises
        ------
        ModelError
            When the arrays do not make the described layers.
        """
        try:
            layers = list(description["layers"])
            weights, biases, activations = [], [], []
            width = int(description["inputs"])
            if width != inputs:
                raise ValueError(f"it takes {width} inputs, the model gives it {inputs}")
            for i, layer in enumerate(layers):
                kernel, bias = np.asarray(arrays[f"kernel_{i}"]), np.asarray(arrays[f"bias_{i}"])
                units, activation = int(layer["units"]), str(layer["activation"])
                if kernel.dtype != np.float32 or bias.dtype != np.float32:
                    raise ValueError(f"layer {i} is not float32")
                if kernel.shape != (width, units) or bias.shape != (units,):
                    raise ValueError(f"layer {i} has weights of shape {kernel.shape}, not ({width}, {units})")
                if activation not in ACTIVATIONS:
                    raise ValueError(f"layer {i} has the unknown activation {activation!r}")
                weights.append(kernel)
                biases.append(bias)
                activations.append(activation)
                width = units
            if not layers or width != 1 or activations[-1] != "sigmoid":
                raise ValueError("its last layer is not one sigmoid unit")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the network in the artifact is not readable ({exc})") from None
        return cls(tuple(weights), tuple(biases), tuple(activations))

    @classmethod
    def from_keras(cls, network: Any) -> "Network":
        """The dense layers of a fitted Keras model (its dropout layers have no weights and do nothing
        at inference).

        Raises
        ------
        ModelError
            When a layer is neither dense with a known activation, nor dropout, nor the input.
        """
        weights, biases, activations = [], [], []
        for layer in network.layers:
            kind = type(layer).__name__
            if kind in ("InputLayer", "Dropout"):
                continue
            activation = getattr(getattr(layer, "activation", None), "__name__", None)
            if kind != "Dense" or activation not in ACTIVATIONS or not layer.use_bias:
                raise ModelError(f"cannot export the network's layer {layer.name} ({kind}, {activation}): only "
                                 f"dense layers with a bias and a {' or '.join(ACTIVATIONS)} activation are scored")
            kernel, bias = layer.get_weights()
            weights.append(np.asarray(kernel, dtype=np.float32))
            biases.append(np.asarray(bias, dtype=np.float32))
            activations.append(activation)
        return cls.from_arrays({**{f"kernel_{i}": w for i, w in enumerate(weights)},
                                **{f"bias_{i}": b for i, b in enumerate(biases)}},
                               {"inputs": int(weights[0].shape[0]) if weights else 0,
                                "layers": [{"units": int(w.shape[1]), "activation": a}
                                           for w, a in zip(weights, activations)]},
                               inputs=int(weights[0].shape[0]) if weights else 0)


def probability(log_odds: np.ndarray) -> np.ndarray:
    """The logistic function of float64 log-odds, without overflow for large ``|log_odds|``.

    scikit-learn applies ``scipy.special.expit``, whose ``exp`` is the C library's; NumPy's may differ
    from it in the last bit, so a probability can differ from scikit-learn's by one unit in the last
    place (2e-16) while the log-odds are equal bit for bit. Importing SciPy's special functions would
    cost scoring a car about a second.
    """
    z = np.asarray(log_odds, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _activated(z: np.ndarray, activation: str) -> np.ndarray:
    """``relu`` or ``sigmoid`` of float32 sums, in float32 (the logistic without overflow for large ``|z|``)."""
    if activation == "relu":
        return np.maximum(z, np.float32(0))
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)


def save_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as ``.npz`` bytes (numbers only: no object array is ever written)."""
    objects = [name for name, a in arrays.items() if np.asarray(a).dtype.hasobject]
    if objects:
        raise ModelError(f"arrays {', '.join(objects)} hold Python objects and cannot be saved safely")
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(a) for name, a in arrays.items()})
    return buffer.getvalue()


def load_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of ``.npz`` bytes, refusing any that would need unpickling.

    Raises
    ------
    ModelError
        When the bytes are not such arrays.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as found:
            return {name: found[name] for name in found.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(f"the model's arrays are not readable without running code ({exc})") from None
