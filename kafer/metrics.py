"""How good a model's scores are, and how sure that is.

Pure numpy, as scikit-learn's ``metrics``: labels and probabilities in, plain dicts of JSON-ready
floats out. The words that describe them live in :mod:`kafer.narrative`, drift in :mod:`kafer.drift`.

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
from typing import Sequence

import numpy as np

from .errors import ModelError

#: Cells of the rounds × cars index matrix drawn at once (bounds the bootstrap's memory).
_CHUNK_CELLS = 2_000_000


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
    n = tot.sum(axis=1)
    n_pos = pos.sum(axis=1)
    cum_pos, cum_tot = pos.cumsum(axis=1), tot.cumsum(axis=1)
    both = (n_pos > 0) & (n_pos < n)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision_curve = np.where(cum_tot > 0, cum_pos / np.where(cum_tot > 0, cum_tot, 1), 0.0)
        out = {
            "roc_auc": _roc_auc_rows(pos, tot),
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


def _at_rate(pos: np.ndarray, tot: np.ndarray, squared_pos: np.ndarray, squared: np.ndarray,
             rate: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-level counts and the sums of squared errors (of the failures, of all), the failures weighted
    to ``rate`` of each row's cars and the others to the rest (each row's total unchanged; a row of a
    single class as it is): the counts of a plant failing that often whose failing cars and other
    cars score as these do. Without ``rate``, as they are."""
    if rate is None:
        return pos, tot, squared
    n, n_pos = tot.sum(axis=1), pos.sum(axis=1)
    mixed = (n_pos > 0) & (n_pos < n)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(mixed, rate * n / n_pos, 1.0)
        down = np.where(mixed, (1 - rate) * n / (n - n_pos), 1.0)
    return pos * up[:, None], pos * up[:, None] + (tot - pos) * down[:, None], squared_pos * up + (
        squared - squared_pos) * down


def _roc_auc_rows(pos: np.ndarray, tot: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of per-level counts (ties count half); NaN where a row holds a single class."""
    neg = tot - pos
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        beaten = (pos * (n_neg[:, None] - neg.cumsum(axis=1) + 0.5 * neg)).sum(axis=1)
        return np.where((n_pos > 0) & (n_neg > 0), beaten / (n_pos * n_neg), np.nan)


def _point(y: np.ndarray, p: np.ndarray, budgets: tuple[float, ...], rate: float | None = None) -> dict:
    level, levels = _score_levels(p)
    pos = np.bincount(level, weights=y, minlength=levels)[None, :]
    tot = np.bincount(level, minlength=levels).astype(float)[None, :]
    squared = (p - y) ** 2
    counts = _at_rate(pos, tot, np.array([np.sum(squared * y)]), np.array([np.sum(squared)]), rate)
    return {name: float(values[0]) for name, values in _figures(*counts, budgets).items()}


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


def _with_interval(value: float, rounds: np.ndarray) -> dict:
    finite = rounds[np.isfinite(rounds)]
    if finite.size == 0:
        return {"value": value, "low": None, "high": None}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"value": value, "low": float(low), "high": float(high)}


def _bootstrap(y: np.ndarray, scores: list[np.ndarray], budgets: tuple[float, ...], rounds: int,
               seed: int, rate: float | None = None, *, auc_only: bool = False) -> tuple[list[dict], int]:
    """Every figure of every model on each of ``rounds`` resamples of the same cars (each resample's
    failures weighted to ``rate`` of its cars, when given; only ROC-AUC when ``auc_only``: the same
    resamples, and the same numbers, at a fraction of the work)."""
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
            if auc_only:
                parts[i].append({"roc_auc": _roc_auc_rows(pos, tot)})
                continue
            errors = squared[i][drawn]
            parts[i].append(_figures(*_at_rate(pos, tot, (errors * drawn_y).sum(axis=1), errors.sum(axis=1), rate),
                                     budgets))
    joined = [{name: np.concatenate([part[name] for part in model]) for name in model[0]} for model in parts]
    return joined, single_class


def compare(y_true, p_candidate, p_production=None, *, budgets: Sequence[float], rounds: int, seed: int,
            at_rate: float | None = None) -> dict:
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
    at_rate : float, optional
        The figures of a plant failing this often, whose failing cars and other cars score as these
        do: the failures are weighted to this share of the cars and the others to the rest, in the
        sample and in each bootstrap round. ROC-AUC does not change; recall and precision at a
        budget, PR-AUC and the Brier score become those at that failure rate.

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
    if at_rate is not None and not 0 < at_rate < 1:
        raise ModelError(f"a failure rate to weight the cars to must lie between 0 and 1, not {at_rate}")
    points = [_point(y, p, budgets, at_rate) for p in scores]
    resampled, single_class = _bootstrap(y, scores, budgets, int(rounds), seed, at_rate)
    per_model = [{name: _with_interval(point[name], resampled[i][name]) for name in point}
                 for i, point in enumerate(points)]
    difference = None
    if len(scores) == 2:
        difference = {name: _with_interval(points[0][name] - points[1][name], resampled[0][name] - resampled[1][name])
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


def auc_rounds(y_true, scores: Sequence, *, rounds: int, seed: int) -> np.ndarray:
    """ROC-AUC of each score vector on the same bootstrap resamples of the cars (a paired bootstrap).

    Parameters
    ----------
    y_true : array-like of 0/1
    scores : sequence of array-like of float
        Probabilities of the same cars, e.g. a model's and the same model's with an input permuted.
    rounds : int
        Bootstrap rounds.
    seed : int
        Seed of the resampling: round ``r`` draws the same cars for every score vector, and the
        same cars as :func:`compare` with this seed.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(scores), rounds)``; NaN in rounds that drew a single class.

    Raises
    ------
    ModelError
        As :func:`evaluate`, or when ``rounds`` is below 1 or no score vector is given.
    """
    if not len(scores) or int(rounds) < 1:
        raise ModelError(f"auc_rounds needs score vectors and at least one round (got {len(scores)}, {rounds})")
    checked = [_inputs(y_true, s, "auc_rounds") for s in scores]
    resampled, _ = _bootstrap(checked[0][0], [p for _, p in checked], (), int(rounds), seed, auc_only=True)
    return np.stack([r["roc_auc"] for r in resampled])


def roc_auc(y_true, p) -> float:
    """ROC-AUC of ``p`` (ties count half), as in :func:`evaluate`."""
    y, prob = _inputs(y_true, p, "roc_auc")
    return _point(y, prob, ())["roc_auc"]


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values for testing several hypotheses at once.

    A hypothesis is rejected at level ``alpha`` when its adjusted p-value is at most ``alpha``; the
    chance of rejecting any true one is then at most ``alpha``, whatever their dependence (uniformly
    more powerful than Bonferroni's ``m * p``).

    Parameters
    ----------
    p_values : array-like of float
        One p-value per hypothesis, in any order.

    Returns
    -------
    numpy.ndarray
        The adjusted p-values, in the same order, each at most 1.

    Raises
    ------
    ModelError
        When a p-value is not a number between 0 and 1.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ModelError(f"p-values must be a 1-d sequence of numbers between 0 and 1, not {p_values!r}")
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return out


def proportion(successes: int, trials: int) -> dict:
    """A share with its 95 % Wilson score interval: ``{"value", "low", "high"}`` (all ``None`` without trials).

    Used where a figure is one share of cars (cars inside the budget, failures the threshold
    flagged), for which a bootstrap adds nothing but time.
    """
    if trials <= 0:
        return {"value": None, "low": None, "high": None}
    z = 1.959963984540054
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return {"value": share, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def threshold_share(flagged: int, cars: int, *, budget: float, tolerance: float) -> dict:
    """How far the share of cars at or above an operating threshold is from the budget it was set for.

    A threshold is the risk of the last car inside the riskiest ``budget`` of a model's evaluation
    cars; on later cars like those it flags about ``budget`` of them. The share *drifts far* when
    it lies outside ``budget * (1 ± tolerance)`` and its 95 % interval leaves out the budget (so a
    small list's noise is not taken for a drift).

    Parameters
    ----------
    flagged, cars : int
        Cars at or above the threshold, and all cars scored.
    budget : float
        The share the threshold was set to flag.
    tolerance : float
        Relative distance from the budget still taken as "about the budget".

    Returns
    -------
    dict
        ``value``, ``low``, ``high`` (see :func:`proportion`), ``budget`` and ``far`` (bool).
    """
    share = proportion(flagged, cars)
    far = bool(cars > 0 and abs(share["value"] - budget) > tolerance * budget
               and not share["low"] <= budget <= share["high"])
    return {**share, "budget": budget, "far": far}
