"""The comparison in words and numbers written for people: the verdict, figure names, intervals.

The one place that decides how a figure reads (``0.710 [0.619, 0.798]``, a true minus sign, never
``-0.0``), so the report, the decision panel and the command line say the same thing.
"""

from __future__ import annotations

from typing import Mapping

from .errors import ModelError
from .metrics import budget_key

#: How each figure of :func:`kafer.metrics.evaluate` is named for people.
LABELS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC (average precision)", "brier": "Brier score (lower is better)"}


def number(x: float, digits: int, *, sign: bool = False) -> str:
    """``x`` with a true minus sign, never ``-0.0``."""
    return f"{round(x, digits) + 0.0:{'+' if sign else ''}.{digits}f}".replace("-", "\u2212")


def interval(figure: Mapping | None, digits: int = 3, *, sign: bool = False) -> str:
    """A figure as ``value [low, high]`` (its 95 % interval), ``value`` alone without one, ``—`` for none."""
    if not figure or figure.get("value") is None:
        return "—"
    text = number(figure["value"], digits, sign=sign)
    if figure.get("low") is None or figure.get("high") is None:
        return text
    return f"{text} [{number(figure['low'], digits, sign=sign)}, {number(figure['high'], digits, sign=sign)}]"


def metric_label(name: str) -> str:
    """How a figure's key is written for people: ``recall_at_10`` → ``Recall at 10 %``."""
    if name in LABELS:
        return LABELS[name]
    kind, _, pct = name.rpartition("_at_")
    return f"{kind.capitalize()} at {pct} %"


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
        span = f" (95 % interval {number(low, 1)} to {number(high, 1)})"
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
           f" (difference {number(difference['roc_auc']['value'], 3, sign=True)}).")
    return f"At a {pct} % inspection budget the new model finds {finds}{span}; {clear}. {cars}{auc}"


