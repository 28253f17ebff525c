"""What drives the risk, and why a car is flagged.

Pure: a model's inputs (DataFrames, as :meth:`kafer.model.Model.inputs` builds them) and its
prediction functions in; DataFrames and words out. Shuffled and edited cars are scored as arrays:
a group's shuffle through :meth:`kafer.model.Model.predict_values`, one input's shuffle and a
car's fact set back through :meth:`kafer.model.Model.predict_edits`, which scores an edit without
a pass over every input (the same probabilities to float rounding).

- :func:`permutation_importance`: how much the ROC-AUC falls when a group of inputs is shuffled
  among the cars, which breaks what the model learned from them and nothing else. Its interval is a
  paired bootstrap over cars (the same resampled cars with and without the shuffle). A group
  *stands out from noise* when even the one-sided lower bound at ``alpha / comparisons`` (a
  Bonferroni correction for looking at several groups) is above zero.
- :func:`drivers`: the comparison's view of a model: every feature family, the strongest single
  inputs, and for each the failure rate of the cars with and without it.
- :func:`reasons`: per car, the facts that raise its probability most: each of its inputs is set
  back to a typical car's value (a fact it lacks: 0; a table column: the training median; a
  category: the most common one) and the fall of its probability is that fact's share. Only the
  inputs a car has and the model reacts to are edited, all cars' edits scored together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ModelError
from .facts import CONFIG_ATTRIBUTES, facts_of
from .features import FEATURE_FAMILIES
from .metrics import auc_rounds, roc_auc
from .narrative import condition_words, drivers_summary, input_words

#: Probabilities from an array of inputs (one row per car, columns in the inputs' order).
Predict = Callable[[np.ndarray], np.ndarray]
#: Probabilities of edited cars: ``edit(values, rows, columns, new)`` scores, for each ``e``, car
#: ``rows[e]`` of ``values`` with its input ``columns[e]`` set to ``new[e]``.
Edit = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: Probabilities of a set of cars with a group of inputs shuffled: ``shuffled(columns, order)``, car ``i``
#: taking car ``order[i]``'s values of the inputs at positions ``columns``.
Shuffled = Callable[[Sequence[int], np.ndarray], np.ndarray]

#: Shuffles of each group; their mean fall in ROC-AUC is the importance.
REPEATS = 5
#: Strongest single inputs shown besides the families.
TOP_INPUTS = 8
#: Cars the screening looks at, at most (a seeded sample beyond): it only ranks the inputs.
_SCREEN_CARS = 2000


def _shuffled(values: np.ndarray, columns: Sequence[int], order: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[:, columns] = values[np.ix_(order, columns)]
    return out


def permutation_importance(predict: Predict, inputs: pd.DataFrame, y_true, groups: Mapping[str, Sequence[str]], *,
                           repeats: int = REPEATS, rounds: int = 1000, seed: int = 0, alpha: float = 0.05,
                           comparisons: int | None = None, shuffled: Shuffled | None = None) -> pd.DataFrame:
    """The fall in ROC-AUC when each group of inputs is shuffled among the cars, with intervals.

    Parameters
    ----------
    predict : callable
        Probabilities from an array of inputs (:data:`Predict`), columns in ``inputs``' order.
    inputs : pandas.DataFrame
        The inputs of the cars (e.g. the evaluation cars), numeric.
    y_true : array-like of 0/1
        Their labels.
    groups : mapping
        Group name → the input columns shuffled together (the same shuffle of cars for all of them).
    repeats : int
        Shuffles per group; the importance is the mean fall over them.
    rounds, seed : int
        Bootstrap rounds over cars, and the seed of the shuffles and the resampling.
    alpha : float
        Error rate of the "stands out" judgement, shared by ``comparisons`` groups.
    comparisons : int, optional
        How many groups were looked at to pick these (default: ``len(groups)``).
    shuffled : callable, optional
        Probabilities of these cars with a group shuffled (:data:`Shuffled`, e.g.
        :meth:`kafer.model.Model.shuffler`); by default ``predict`` scores shuffled copies.

    Returns
    -------
    pandas.DataFrame
        Indexed by group: ``inputs`` (how many), ``importance`` (ROC-AUC without shuffle minus with),
        ``low`` and ``high`` (95 % bootstrap interval), ``stands_out`` (bool).

    Raises
    ------
    ModelError
        When a group is empty or names an unknown input, or the labels hold a single class.
    """
    for name, columns in groups.items():
        unknown = [c for c in columns if c not in inputs.columns]
        if not columns or unknown:
            raise ModelError(f"importance group {name!r} names no input or unknown ones ({', '.join(unknown)})")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(inputs)) for _ in range(repeats)]
    values = inputs.to_numpy(dtype=float)
    scores = [predict(values)]
    for columns in groups.values():
        at = [inputs.columns.get_loc(c) for c in columns]
        scores += [shuffled(at, order) if shuffled else predict(_shuffled(values, at, order)) for order in orders]
    resampled = auc_rounds(y_true, scores, rounds=rounds, seed=seed)
    points = np.array([roc_auc(y_true, s) for s in scores])
    level = 100 * alpha / max(1, comparisons or len(groups))
    rows = []
    for g, (name, columns) in enumerate(groups.items()):
        own = slice(1 + g * repeats, 1 + (g + 1) * repeats)
        fall = resampled[0] - resampled[own].mean(axis=0)
        fall = fall[np.isfinite(fall)]
        low, high = np.percentile(fall, [2.5, 97.5]) if fall.size else (np.nan, np.nan)
        rows.append({"group": name, "inputs": len(columns), "importance": float(points[0] - points[own].mean()),
                     "low": float(low), "high": float(high),
                     "stands_out": bool(fall.size and np.percentile(fall, level) > 0)})
    return pd.DataFrame(rows, columns=["group", "inputs", "importance", "low", "high", "stands_out"]).set_index("group")


def screen(predict: Predict, edit: Edit, inputs: pd.DataFrame, y_true, *, columns: Sequence[str] | None = None,
           seed: int = 0) -> pd.Series:
    """Each input's fall in ROC-AUC under one shuffle: a cheap first look to pick the strongest.

    Looks at ``columns`` (default: all) on at most :data:`_SCREEN_CARS` cars, a seeded sample that
    keeps both classes in proportion when there are more. Each input's shuffle is a set of edits
    (every car gets that input of the car the shuffle gives it), scored by ``edit``.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y_true, dtype=float)
    values = inputs.to_numpy(dtype=float)
    if len(y) > _SCREEN_CARS:
        keep = np.sort(np.concatenate([rng.choice(np.nonzero(y == k)[0], round(_SCREEN_CARS * np.mean(y == k)),
                                                  replace=False) for k in (0, 1)]))
        values, y = values[keep], y[keep]
    order = rng.permutation(len(values))
    base = roc_auc(y, predict(values))
    columns = list(inputs.columns if columns is None else columns)
    at = np.array([inputs.columns.get_loc(c) for c in columns], dtype=np.intp)
    n = len(values)
    p = edit(values, np.tile(np.arange(n), at.size), np.repeat(at, n), values[np.ix_(order, at)].T.ravel())
    p = p.reshape(at.size, n)
    falls = {c: base - roc_auc(y, p[i]) for i, c in enumerate(columns)}
    return pd.Series(falls, dtype=float).sort_values(ascending=False, kind="stable")


@dataclass(frozen=True)
class Drivers:
    """What drives a model's risk on a set of cars (see :func:`drivers`)."""

    cars: int
    failures: int
    families: pd.DataFrame
    inputs: pd.DataFrame
    summary: str

    def to_dict(self) -> dict:
        """JSON-ready, for ``metrics.json``."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                    for row in frame.reset_index().to_dict("records")]

        return {"cars": self.cars, "failures": self.failures, "summary": self.summary,
                "families": records(self.families), "inputs": records(self.inputs)}


def _with_mask(column: str, values: np.ndarray, p: np.ndarray, *, typical: float | None,
               levels: tuple[str, ...] | None) -> tuple[np.ndarray, str]:
    """Which cars "have" an input, and in words: a category or moment, the riskiest one by the model's
    own scores; a fact, having it; a table column, a value above the training median."""
    if levels is not None or column.startswith(("shift_at_", "weekday_at_")):
        present = np.unique(values[np.isfinite(values)])
        if present.size == 0:
            return np.zeros(len(values), dtype=bool), condition_words(column)
        best = max(present, key=lambda v: (p[values == v].mean(), -v))
        category = levels[int(best)] if levels is not None else None
        return values == best, condition_words(column, value=float(best), category=category)
    threshold = 0.0 if ":" in column else float(typical if typical is not None else np.nanmedian(values))
    return values > threshold, condition_words(column, above=threshold)


def drivers(model, cars: pd.DataFrame, facts, y_true, *, rounds: int = 1000, seed: int = 0,
            top: int = TOP_INPUTS, repeats: int = REPEATS) -> Drivers:
    """The feature families and the strongest inputs behind a model's scores on ``cars``.

    Parameters
    ----------
    model : kafer.model.Model
    cars : pandas.DataFrame
        The cars (e.g. the evaluation cars) with the model's table columns and ``KNR``.
    facts : pyarrow.Table or None
        Their facts, when the model uses facts.
    y_true : array-like of 0/1
        Their labels.
    rounds, seed : int
        Bootstrap rounds and seed.
    top : int
        How many single inputs to show, the strongest by a first shuffle of every input. They are
        picked on these same cars, so a single input stands out only against every input compared.

    Returns
    -------
    Drivers
        ``families``: per family, its number of inputs and the fall in ROC-AUC when they are
        shuffled (exactly 0 when the model reacts to none of them); ``inputs``: the strongest.

    Raises
    ------
    ModelError
        When the labels hold a single class or the cars lack an input.
    """
    y = np.asarray(y_true, dtype=float)
    x = model.inputs(cars, facts)
    family_of = model.families()
    used = set(model.used_inputs())
    groups = {f: [c for c in x.columns if family_of[c] == f] for f in FEATURE_FAMILIES}
    groups = {f: columns for f, columns in groups.items() if columns}
    reacting = {f: [c for c in columns if c in used] for f, columns in groups.items()}
    values = x.to_numpy(dtype=float)
    shuffled = model.shuffler(values)
    families = permutation_importance(model.predict_values, x, y, {f: c for f, c in reacting.items() if c},
                                      repeats=repeats, rounds=rounds, seed=seed, comparisons=len(groups),
                                      shuffled=shuffled)
    unused = pd.DataFrame([{"group": f, "importance": 0.0, "low": 0.0, "high": 0.0, "stands_out": False}
                           for f, c in reacting.items() if not c], columns=families.reset_index().columns)
    families = pd.concat([families.reset_index(), unused]).set_index("group").loc[list(groups)]
    families["inputs"] = [len(groups[f]) for f in families.index]
    first = screen(model.predict_values, model.predict_edits, x, y, columns=[c for c in x.columns if c in used],
                   seed=seed)
    strongest = [c for c in first.index[:top] if first[c] > 0]
    single = permutation_importance(model.predict_values, x, y, {c: [c] for c in strongest}, repeats=repeats,
                                    rounds=rounds, seed=seed, comparisons=len(x.columns),
                                    shuffled=shuffled) if strongest else None
    p = model.predict_values(values)
    typical = dict(zip(model.preprocessing.features, model.preprocessing.medians))
    rows = []
    for column in strongest:
        values = x[column].to_numpy(dtype=float)
        levels = model.fact_columns.levels(column) if column in model.preprocessing.categorical else None
        has, words = _with_mask(column, values, p, typical=typical.get(column), levels=levels)
        rows.append({"input": column, "family": family_of[column], "with": words,
                     **single.loc[column, ["importance", "low", "high", "stands_out"]].to_dict(),
                     "cars_with": int(has.sum()), "failure_rate_with": float(y[has].mean()) if has.any() else np.nan,
                     "cars_without": int((~has).sum()),
                     "failure_rate_without": float(y[~has].mean()) if (~has).any() else np.nan})
    columns = ["input", "family", "with", "importance", "low", "high", "stands_out", "cars_with", "failure_rate_with",
               "cars_without", "failure_rate_without"]
    inputs = pd.DataFrame(rows, columns=columns).set_index("input")
    summary = drivers_summary(families, inputs, cars=len(y), failures=int(y.sum()))
    return Drivers(cars=len(y), failures=int(y.sum()), families=families, inputs=inputs, summary=summary)


def reasons(model, cars: pd.DataFrame, facts=None, *, top: int = 3) -> pd.DataFrame:
    """The facts that raise each car's probability most, in words an inspector reads.

    Each input of a car that differs from a typical car's (a fact it has, a table value other than
    the training median, a category other than the most common) and that the model reacts to
    (:meth:`kafer.model.Model.used_inputs`) is set back to the typical value;
    how much the car's probability falls is what that fact adds to its risk. Only facts that add
    to it are kept, at most ``top`` per car, largest first.

    Parameters
    ----------
    model : kafer.model.Model
    cars : pandas.DataFrame
        Cars with ``KNR`` and the model's table columns.
    facts : pyarrow.Table, optional
        Their facts, when the model uses facts.
    top : int
        Reasons per car at most.

    Returns
    -------
    pandas.DataFrame
        ``KNR``, ``rank`` (1 = adds most), ``input``, ``value``, ``words`` and ``adds`` (probability
        points the fact adds); cars without any fact that adds to their risk have no row.
    """
    x = model.inputs(cars, facts)
    names = list(x.columns)
    categorical = set(model.preprocessing.categorical)
    medians = dict(zip(model.preprocessing.features, model.preprocessing.medians))
    typical = np.array([0.0 if (":" in c or c in categorical) else medians[c] for c in names])
    used = np.isin(names, model.used_inputs())
    values = x.to_numpy(dtype=float)
    config = _configuration(facts, cars["KNR"].astype(str)) if categorical else {}
    knr = cars["KNR"].astype(str).to_numpy()
    car, col = np.nonzero(np.isfinite(values) & (values != typical) & used)
    columns = ["KNR", "rank", "input", "value", "words", "adds"]
    if car.size == 0:
        return pd.DataFrame(columns=columns)
    adds = model.predict_values(values)[car] - model.predict_edits(values, car, col, typical[col])
    ranked = pd.DataFrame({"car": car, "col": col, "adds": adds})
    ranked = ranked[ranked["adds"] > 0].sort_values(["car", "adds"], ascending=[True, False], kind="stable")
    ranked = ranked.groupby("car").head(top)
    rows = []
    for car, col, adds in ranked[["car", "col", "adds"]].itertuples(index=False):
        name, value = names[col], values[car, col]
        category = None
        if name in categorical:
            attribute = name.split(":", 1)[1]
            category = config.get((knr[car], attribute), model.fact_columns.levels(name)[int(value)])
        words = input_words(name, value, typical=None if ":" in name else medians.get(name), category=category)
        rows.append({"KNR": knr[car], "input": name, "value": float(value), "words": words, "adds": float(adds)})
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "rank"])
    out.insert(1, "rank", out.groupby("KNR").cumcount() + 1)
    return out


def _configuration(facts, knr: pd.Series) -> dict:
    """(KNR, attribute) → the car's own category, from its configuration facts."""
    if facts is None:
        return {}
    own = facts_of(facts, knr).to_pandas()
    own = own[own["kind"] == "config"]
    attribute, value = own["key"].str.split("=", n=1).str[0], own["key"].str.split("=", n=1).str[1]
    return {(k, a): v for k, a, v in zip(own["KNR"], attribute, value) if a in CONFIG_ATTRIBUTES}
