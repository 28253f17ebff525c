"""How good a model's scores are, how sure that is, and what changed in the data.

Pure numpy: labels and probabilities in, plain dicts (JSON-ready floats) or DataFrames out.

Inspectors test the riskiest cars first, so besides ROC-AUC, PR-AUC (average precision) and the
Brier score every model is judged by *recall at b* (the share of all road-test failures among the
riskiest ``ceil(b * n)`` cars) and *precision at b* (the share of failures among those cars). When
cars with the same score straddle the cut, each of them counts for the share of the tied cars
that fits inside the budget: the expected result of testing a random pick of them. This is
deterministic and does not depend on the order of the cars.

Intervals come from a bootstrap over cars: every round draws ``n`` cars with replacement; both
models' figures are computed on the same drawn cars, so their difference is a paired bootstrap.
Rounds that draw no failure (or only failures) are skipped for the figures they leave undefined.
All rounds are computed at once from per-score-level counts, so 1,000 rounds on 2,000 cars take
well under a second.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ModelError

#: Cells of the rounds × cars index matrix drawn at once (bounds the bootstrap's memory).
_CHUNK_CELLS = 2_000_000
#: Population stability index from which a shift is called moderate, and large.
PSI_MODERATE, PSI_LARGE = 0.1, 0.25


def budget_key(budget: float) -> int:
    """The percentage that names a budget's figures: ``0.1`` → ``10`` (``recall_at_10``)."""
    return round(budget * 100)


def inspected(cars: int, *, budget: float) -> int:
    """How many of ``cars`` cars the inspectors test at ``budget``: ``ceil(budget * cars)``."""
    return math.ceil(round(budget * cars, 9))


def metric_names(budgets: Sequence[float]) -> tuple[str, ...]:
    """Every figure :func:`evaluate` returns, in order."""
    names = ["roc_auc", "pr_auc", "brier"]
    for budget in budgets:
        names += [f"recall_at_{budget_key(budget)}", f"precision_at_{budget_key(budget)}"]
    return tuple(names)


def _inputs(y_true, p, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        y = np.asarray(y_true, dtype=float)
        prob = np.asarray(p, dtype=float)
    except (TypeError, ValueError):
        raise ModelError(f"{name}: labels and probabilities must be numbers") from None
    if y.ndim != 1 or prob.shape != y.shape:
        raise ModelError(f"{name}: labels and probabilities must be 1-d arrays of the same length, "
                         f"not shapes {y.shape} and {prob.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ModelError(f"{name}: labels must be 0 or 1")
    if not np.isfinite(prob).all() or (prob < 0).any() or (prob > 1).any():
        raise ModelError(f"{name}: probabilities must be finite numbers between 0 and 1")
    if y.size == 0 or y.min() == y.max():
        raise ModelError(f"{name}: the {y.size} cars must include road-test failures and cars without one; "
                         "ROC-AUC and PR-AUC are undefined otherwise")
    return y, prob


def _check_budgets(budgets: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(b) for b in budgets)
    if not all(0 < b < 1 for b in out) or len({budget_key(b) for b in out}) != len(out):
        raise ModelError(f"budgets must be distinct shares between 0 and 1 (at least a percent apart), not {budgets}")
    return out


def _score_levels(p: np.ndarray) -> tuple[np.ndarray, int]:
    """Each car's score level, 0 for the riskiest; equal scores share a level."""
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    starts = np.r_[True, ranked[1:] != ranked[:-1]]
    level = np.empty(p.size, dtype=np.int64)
    level[order] = np.cumsum(starts) - 1
    return level, int(starts.sum())


def _figures(pos: np.ndarray, tot: np.ndarray, squared: np.ndarray, budgets: tuple[float, ...]) -> dict:
    """Every figure, for each row of per-level counts (rows = bootstrap rounds or the one sample).

    ``pos`` and ``tot`` are (rows, levels) counts of failures and of cars at each score level,
    riskiest level first; ``squared`` the per-row sums of squared errors.
    """
    neg = tot - pos
    n = tot.sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    cum_pos, cum_neg, cum_tot = pos.cumsum(axis=1), neg.cumsum(axis=1), tot.cumsum(axis=1)
    both = (n_pos > 0) & (n_neg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        beaten = (pos * (n_neg[:, None] - cum_neg + 0.5 * neg)).sum(axis=1)
        precision_curve = np.where(cum_tot > 0, cum_pos / np.where(cum_tot > 0, cum_tot, 1), 0.0)
        out = {
            "roc_auc": np.where(both, beaten / (n_pos * n_neg), np.nan),
            "pr_auc": np.where(both, (pos * precision_curve).sum(axis=1) / n_pos, np.nan),
            "brier": squared / n,
        }
        share_of_level = np.where(tot > 0, pos / np.where(tot > 0, tot, 1), 0.0)
        for budget in budgets:
            k = inspected(round(n[0]), budget=budget)
            taken = np.clip(k - (cum_tot - tot), 0, tot)
            found = (taken * share_of_level).sum(axis=1)
            out[f"recall_at_{budget_key(budget)}"] = np.where(n_pos > 0, found / n_pos, np.nan)
            out[f"precision_at_{budget_key(budget)}"] = found / k
    return out


def _point(y: np.ndarray, p: np.ndarray, budgets: tuple[float, ...]) -> dict:
    level, levels = _score_levels(p)
    pos = np.bincount(level, weights=y, minlength=levels)[None, :]
    tot = np.bincount(level, minlength=levels).astype(float)[None, :]
    squared = np.array([np.sum((p - y) ** 2)])
    return {name: float(values[0]) for name, values in _figures(pos, tot, squared, budgets).items()}


def gain_curve(y_true, p) -> tuple[np.ndarray, np.ndarray]:
    """Share of all road-test failures found against the share of cars inspected, riskiest first.

    Between two score levels the curve is straight, so tied cars count as in :func:`evaluate`:
    ``recall_at_b`` is the curve's value at ``ceil(b * n) / n``.

    Parameters
    ----------
    y_true : array-like of 0/1
    p : array-like of float

    Returns
    -------
    share, found : numpy.ndarray
        Corners of the curve, from ``(0, 0)`` to ``(1, 1)``.

    Raises
    ------
    ModelError
        As :func:`evaluate`.
    """
    y, prob = _inputs(y_true, p, "gain_curve")
    level, levels = _score_levels(prob)
    cars = np.bincount(level, minlength=levels).cumsum()
    failures = np.bincount(level, weights=y, minlength=levels).cumsum()
    return np.r_[0.0, cars / y.size], np.r_[0.0, failures / y.sum()]


def threshold_at(p, *, budget: float) -> float:
    """The score of the last car inside the riskiest ``ceil(budget * n)`` cars: the operating threshold.

    Parameters
    ----------
    p : array-like of float
        Scores of the cars.
    budget : float
        Share of cars inspected.

    Returns
    -------
    float
        Cars scoring at least this much are inspected (more than the budget when scores tie at it).

    Raises
    ------
    ModelError
        When there are no scores or the budget is not between 0 and 1.
    """
    scores = np.sort(np.asarray(p, dtype=float))[::-1]
    if scores.size == 0 or not 0 < budget < 1:
        raise ModelError(f"an operating threshold needs scores and a budget between 0 and 1 (got {scores.size} "
                         f"scores, budget {budget})")
    return float(scores[inspected(scores.size, budget=budget) - 1])


def evaluate(y_true, p, *, budgets: Sequence[float]) -> dict:
    """ROC-AUC, PR-AUC, Brier score, and recall and precision at each inspection budget.

    Parameters
    ----------
    y_true : array-like of 0/1
        Whether each car failed the road test.
    p : array-like of float
        Each car's predicted probability of failing.
    budgets : sequence of float
        Shares of cars inspected, riskiest first (``0.1`` gives ``recall_at_10``, ``precision_at_10``).

    Returns
    -------
    dict
        ``{name: float}`` for every name of :func:`metric_names`.

    Raises
    ------
    ModelError
        When the inputs differ in length, are out of range, or hold a single class.
    """
    y, prob = _inputs(y_true, p, "evaluate")
    return _point(y, prob, _check_budgets(budgets))


def _interval(value: float, rounds: np.ndarray) -> dict:
    finite = rounds[np.isfinite(rounds)]
    if finite.size == 0:
        return {"value": value, "low": None, "high": None}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"value": value, "low": float(low), "high": float(high)}


def _bootstrap(y: np.ndarray, scores: list[np.ndarray], budgets: tuple[float, ...], rounds: int,
               seed: int) -> tuple[list[dict], int]:
    """Every figure of every model on each of ``rounds`` resamples of the same cars."""
    n = y.size
    rng = np.random.default_rng(seed)
    levels = [_score_levels(p) for p in scores]
    squared = [(p - y) ** 2 for p in scores]
    chunk = max(1, _CHUNK_CELLS // n)
    parts: list[list[dict]] = [[] for _ in scores]
    single_class = 0
    for start in range(0, rounds, chunk):
        m = min(chunk, rounds - start)
        drawn = rng.integers(0, n, size=(m, n))
        offset = np.arange(m)[:, None]
        drawn_y = y[drawn]
        failures = drawn_y.sum(axis=1)
        single_class += int(np.sum((failures == 0) | (failures == n)))
        drawn_pos = drawn_y.ravel()
        for i, (level, count) in enumerate(levels):
            cell = (offset * count + level[drawn]).ravel()
            pos = np.bincount(cell, weights=drawn_pos, minlength=m * count).reshape(m, count)
            tot = np.bincount(cell, minlength=m * count).astype(float).reshape(m, count)
            parts[i].append(_figures(pos, tot, squared[i][drawn].sum(axis=1), budgets))
    joined = [{name: np.concatenate([part[name] for part in model]) for name in model[0]} for model in parts]
    return joined, single_class


def compare(y_true, p_candidate, p_production=None, *, budgets: Sequence[float], rounds: int, seed: int) -> dict:
    """Every figure with its 95 % bootstrap interval, for the candidate and the production model.

    Parameters
    ----------
    y_true : array-like of 0/1
        Whether each evaluation car failed the road test.
    p_candidate : array-like of float
        The candidate's probabilities for the same cars.
    p_production : array-like of float or None
        The production model's probabilities for the same cars; ``None`` when there is none.
    budgets : sequence of float
        Inspection budgets (see :func:`evaluate`).
    rounds : int
        Bootstrap rounds.
    seed : int
        Seed of the resampling: the same inputs and seed give the same intervals.

    Returns
    -------
    dict
        ``candidate``: ``{metric: {"value", "low", "high"}}``; ``production``: the same or ``None``;
        ``difference``: candidate − production per metric, ``{"value", "low", "high"}`` from the
        paired bootstrap, or ``None`` without a production model (for ``brier`` a negative
        difference is an improvement); ``cars``, ``positives``, ``budgets``, ``rounds`` and
        ``single_class_rounds`` (rounds skipped for ROC-AUC and PR-AUC).

    Raises
    ------
    ModelError
        When the inputs differ in length, are out of range or hold a single class, or
        ``rounds`` is below 1.
    """
    y, candidate = _inputs(y_true, p_candidate, "compare (candidate)")
    scores = [candidate]
    if p_production is not None:
        scores.append(_inputs(y_true, p_production, "compare (production)")[1])
    budgets = _check_budgets(budgets)
    if int(rounds) < 1:
        raise ModelError(f"rounds must be at least 1, not {rounds}")
    points = [_point(y, p, budgets) for p in scores]
    resampled, single_class = _bootstrap(y, scores, budgets, int(rounds), seed)
    per_model = [{name: _interval(point[name], resampled[i][name]) for name in point}
                 for i, point in enumerate(points)]
    difference = None
    if len(scores) == 2:
        difference = {name: _interval(points[0][name] - points[1][name], resampled[0][name] - resampled[1][name])
                      for name in points[0]}
    return {
        "candidate": per_model[0],
        "production": per_model[1] if len(scores) == 2 else None,
        "difference": difference,
        "cars": int(y.size),
        "positives": int(y.sum()),
        "budgets": list(budgets),
        "rounds": int(rounds),
        "single_class_rounds": single_class,
    }


def _number(x: float, digits: int, *, sign: bool = False) -> str:
    """``x`` with a true minus sign, never ``-0.0``."""
    return f"{round(x, digits) + 0.0:{'+' if sign else ''}.{digits}f}".replace("-", "\u2212")


def verdict(comparison: Mapping, *, budget: float = 0.10) -> str:
    """The comparison in plain words, at one inspection budget.

    Parameters
    ----------
    comparison : dict
        What :func:`compare` returned.
    budget : float
        The inspection budget to speak of; one of the comparison's budgets.

    Returns
    -------
    str
        How many of every 100 road-test failures the candidate finds, against production (with
        the 95 % interval of the difference and whether it is clear) or, without one, against chance.

    Raises
    ------
    ModelError
        When the comparison holds no figures for ``budget``.
    """
    pct = budget_key(budget)
    key = f"recall_at_{pct}"
    candidate = comparison["candidate"]
    if key not in candidate:
        raise ModelError(f"the comparison has no figures for a {pct} % budget; it was made for "
                         f"{', '.join(f'{budget_key(b)} %' for b in comparison.get('budgets', []))}")
    cars = f"Measured on {comparison['cars']:,} evaluation cars with {comparison['positives']:,} road-test failures."
    difference = comparison.get("difference")
    if difference is None:
        own = candidate[key]
        if own["low"] is None:
            return (f"At a {pct} % inspection budget the model finds {own['value'] * 100:.0f} of every 100 "
                    f"road-test failures, vs {pct} by chance. {cars}")
        clear = "clearly better than chance" if own["low"] * 100 > pct else "not clearly better than chance"
        return (f"At a {pct} % inspection budget the model finds {own['value'] * 100:.0f} of every 100 road-test "
                f"failures (95 % interval {own['low'] * 100:.0f} to {own['high'] * 100:.0f}), vs {pct} by chance: "
                f"{clear}. {cars}")
    diff = difference[key]
    value = diff["value"] * 100
    if diff["low"] is None:
        span, clear = "", "the difference cannot be judged"
    else:
        low, high = diff["low"] * 100, diff["high"] * 100
        span = f" (95 % interval {_number(low, 1)} to {_number(high, 1)})"
        if low == high == value == 0:
            clear = "the two models find the same failures"
        elif low > 0:
            clear = "the new model is clearly better"
        elif high < 0:
            clear = "the new model is clearly worse"
        else:
            clear = "the difference is not clear"
    if value == 0:
        finds = "as many road-test failures as the production model"
    else:
        finds = (f"{abs(value):.1f} {'more' if value > 0 else 'fewer'} of every 100 road-test failures than the "
                 "production model")
    auc = (f" ROC-AUC {candidate['roc_auc']['value']:.3f} against {comparison['production']['roc_auc']['value']:.3f}"
           f" (difference {_number(difference['roc_auc']['value'], 3, sign=True)}).")
    return f"At a {pct} % inspection budget the new model finds {finds}{span}; {clear}. {cars}{auc}"


def _psi(old: np.ndarray, new: np.ndarray) -> float:
    """Population stability index over the old values' deciles (fewer bins where values repeat)."""
    edges = np.unique(np.quantile(old, np.linspace(0.1, 0.9, 9)))
    share_old = np.bincount(np.searchsorted(edges, old), minlength=edges.size + 1) / old.size
    share_new = np.bincount(np.searchsorted(edges, new), minlength=edges.size + 1) / new.size
    share_old, share_new = np.maximum(share_old, 1e-4), np.maximum(share_new, 1e-4)
    return float(np.sum((share_new - share_old) * np.log(share_new / share_old)))


def _ks(old: np.ndarray, new: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two distributions."""
    old, new = np.sort(old), np.sort(new)
    values = np.concatenate([old, new])
    gap = np.searchsorted(old, values, side="right") / old.size - np.searchsorted(new, values, side="right") / new.size
    return float(np.max(np.abs(gap)))


def drift(old_table: pd.DataFrame, new_table: pd.DataFrame, *, features: Sequence[str]) -> pd.DataFrame:
    """How each feature's distribution moved between two tables of cars.

    Parameters
    ----------
    old_table, new_table : pandas.DataFrame
        Cars then (e.g. what production was trained on) and now.
    features : sequence of str
        The columns to compare.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``feature``, largest shift first: ``mean_old``, ``mean_new``, ``psi``
        (population stability index over the old deciles), ``ks`` (Kolmogorov-Smirnov statistic)
        and ``shift`` (``none`` below a PSI of 0.1, ``moderate`` below 0.25, else ``large``).
        Missing values are left out.

    Raises
    ------
    ModelError
        When a feature is missing from a table or has no value in it.
    """
    for name, table in (("old", old_table), ("new", new_table)):
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise ModelError(f"the {name} table has no column {', '.join(missing)}")
    rows = []
    for feature in features:
        old = pd.to_numeric(old_table[feature], errors="coerce").to_numpy(dtype=float)
        new = pd.to_numeric(new_table[feature], errors="coerce").to_numpy(dtype=float)
        old, new = old[np.isfinite(old)], new[np.isfinite(new)]
        if old.size == 0 or new.size == 0:
            raise ModelError(f"feature {feature} has no value in the {'old' if old.size == 0 else 'new'} table")
        psi = _psi(old, new)
        shift = "large" if psi >= PSI_LARGE else "moderate" if psi >= PSI_MODERATE else "none"
        rows.append({"feature": feature, "mean_old": float(old.mean()), "mean_new": float(new.mean()),
                     "psi": psi, "ks": _ks(old, new), "shift": shift})
    columns = ["feature", "mean_old", "mean_new", "psi", "ks", "shift"]
    out = pd.DataFrame(rows, columns=columns).set_index("feature")
    return out.sort_values("psi", ascending=False, kind="stable")


def data_summary(table: pd.DataFrame) -> dict:
    """Cars, labelled cars, road-test failures, failure rate and production period of a table.

    Parameters
    ----------
    table : pandas.DataFrame
        A curated table (``label_rod``, ``label_known``, ``produced_at``).

    Returns
    -------
    dict
        ``cars``, ``labelled cars``, ``road-test failures`` (among the labelled cars),
        ``failure rate`` (their share, ``None`` without labelled cars), ``produced from`` and
        ``produced to`` (ISO timestamps, ``None`` without any production time).

    Raises
    ------
    ModelError
        When a column is missing.
    """
    missing = [c for c in ("label_rod", "label_known", "produced_at") if c not in table.columns]
    if missing:
        raise ModelError(f"the table has no column {', '.join(missing)}")
    known = table["label_known"].fillna(False).astype(bool).to_numpy()
    failures = int(table["label_rod"].to_numpy()[known].sum())
    produced = pd.to_datetime(table["produced_at"]).dropna()
    return {
        "cars": int(len(table)),
        "labelled cars": int(known.sum()),
        "road-test failures": failures,
        "failure rate": failures / int(known.sum()) if known.any() else None,
        "produced from": produced.min().isoformat() if len(produced) else None,
        "produced to": produced.max().isoformat() if len(produced) else None,
    }
