"""The estimators as arrays: the trees give scikit-learn's probabilities bit for bit, nothing loads code."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from kafer.errors import ModelError
from kafer.scorers import Network, Trees, load_arrays, save_arrays


def categorical_world(n: int = 3000, *, seed: int = 0):
    """Numbers with gaps and two category inputs (codes 0-11, some missing) that carry the risk."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 4))
    numbers[rng.random(numbers.shape) < 0.1] = np.nan
    codes = rng.integers(0, 12, size=(n, 2)).astype(float)
    codes[rng.random(codes.shape) < 0.1] = np.nan
    logit = np.nan_to_num(numbers[:, 0]) - 1.5 * np.isin(codes[:, 0], (2, 5, 7)) + (codes[:, 1] == 3) - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.hstack([numbers, codes]), y


@pytest.fixture(scope="module")
def boosting():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = categorical_world()
    estimator = HistGradientBoostingClassifier(max_leaf_nodes=4, learning_rate=0.1, max_iter=150, min_samples_leaf=20,
                                               categorical_features=np.array([False] * 4 + [True] * 2),
                                               random_state=0).fit(x, y)
    return estimator, x


def test_the_trees_give_scikit_learns_log_odds_bit_for_bit_and_its_probabilities_to_the_last_bit(boosting):
    estimator, x = boosting
    trees = Trees.from_sklearn(estimator)
    assert (trees.category >= 0).any(), "the world must make categorical splits"
    odd = np.array([[0.0, 0.0, 0.0, 0.0, 15.0, 3.0],       # a code no training car had
                    [np.nan] * 6,                           # nothing known
                    [0.0, 0.0, 0.0, 0.0, -1.0, 2.5],        # a negative and a fractional code
                    [9.0, -9.0, 0.0, 0.0, 11.0, 12.0]])
    cars = np.vstack([x, odd])
    np.testing.assert_array_equal(trees.raw(cars), estimator._raw_predict(cars)[:, 0])
    np.testing.assert_allclose(trees.predict(cars), estimator.predict_proba(cars)[:, 1], rtol=0, atol=4e-16)
    assert trees.used == frozenset(range(6))


def test_the_trees_round_trip_through_arrays_and_refuse_a_loop(boosting):
    estimator, x = boosting
    trees = Trees.from_sklearn(estimator)
    arrays, description = trees.to_arrays()
    again = Trees.from_arrays(load_arrays(save_arrays(arrays)), description, inputs=6)
    np.testing.assert_array_equal(again.predict(x), trees.predict(x))
    split = int(np.nonzero(trees.left != np.arange(trees.left.size))[0][1])
    looped = {**arrays, "left": arrays["left"].copy()}
    looped["left"][split] = 0
    with pytest.raises(ModelError, match="child comes before its parent"):
        Trees.from_arrays(looped, description, inputs=6)
    with pytest.raises(ModelError, match="outside the model's 3 inputs"):
        Trees.from_arrays(arrays, description, inputs=3)


def test_a_network_is_its_layers_in_float32():
    rng = np.random.default_rng(1)
    layers = [(rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32), "relu"),
              (rng.normal(size=(4, 1)).astype(np.float32), rng.normal(size=1).astype(np.float32), "sigmoid")]
    network = Network(tuple(w for w, _, _ in layers), tuple(b for _, b, _ in layers), tuple(a for _, _, a in layers))
    x = rng.normal(size=(7, 5))
    hidden = np.maximum(x @ layers[0][0] + layers[0][1], 0)
    expected = 1 / (1 + np.exp(-(hidden @ layers[1][0] + layers[1][1])))[:, 0]
    np.testing.assert_allclose(network.predict(x), expected, rtol=1e-5)
    arrays, description = network.to_arrays()
    again = Network.from_arrays(load_arrays(save_arrays(arrays)), description, inputs=5)
    np.testing.assert_array_equal(again.predict(x), network.predict(x))
    with pytest.raises(ModelError, match="takes 5 inputs, the model gives it 6"):
        Network.from_arrays(arrays, description, inputs=6)
    with pytest.raises(ModelError, match="unknown activation"):
        Network.from_arrays(arrays, {**description, "layers": [{"units": 4, "activation": "exec"},
                                                               description["layers"][1]]}, inputs=5)


class _Planted:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_arrays_that_would_run_code_are_refused_and_never_run(tmp_path):
    planted = tmp_path / "ran"
    with pytest.raises(ModelError, match="not readable without running code"):
        load_arrays(pickle.dumps(_Planted(str(planted))))
    buffer = io.BytesIO()
    np.savez(buffer, roots=np.array([_Planted(str(planted))], dtype=object))
    with pytest.raises(ModelError, match="not readable without running code"):
        load_arrays(buffer.getvalue())
    assert not planted.exists()
    with pytest.raises(ModelError, match="hold Python objects"):
        save_arrays({"roots": np.array([object()], dtype=object)})
