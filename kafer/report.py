"""Figures and tables for the comparison and scoring notebooks.

Each figure function takes the evaluation cars' labels and ``{model name: probabilities}`` and
returns a matplotlib ``Figure``: a notebook shows it as the cell's value, a script saves it with
``fig.savefig``. Nothing is shown or left open: figures are closed in pyplot as soon as they are
made, so no window opens and no figure piles up, whatever the backend (Agg when headless).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import Settings
from .errors import ModelError
from .metrics import budget_key, gain_curve, inspected, threshold_at
from .narrative import interval, metric_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def _figure(ncols: int = 1, *, width: float = 6.4, height: float = 4.8):
    """A new figure with ``ncols`` axes side by side, already released by pyplot."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, layout="constrained")
    plt.close(fig)
    return fig, list(axes[0])


def _colors(names) -> dict:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _checked(y_true, probs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    if not probs:
        raise ModelError("no model's probabilities were given")
    y = np.asarray(y_true)
    out = {name: np.asarray(p, dtype=float) for name, p in probs.items()}
    wrong = [name for name, p in out.items() if p.shape != y.shape]
    if wrong:
        raise ModelError(f"the probabilities of {', '.join(wrong)} are not one per car ({y.size} cars)")
    return y, out


def roc_curves(y_true, probs: Mapping[str, np.ndarray]) -> Figure:
    """ROC curve of each model, with its ROC-AUC and the chance line.

    Parameters
    ----------
    y_true : array-like of 0/1
        Whether each evaluation car failed the road test.
    probs : dict of str to array-like
        Each model's probabilities for the same cars.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When no model is given or the arrays differ in length.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y, probs = _checked(y_true, probs)
    fig, (ax,) = _figure()
    colors = _colors(probs)
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=colors[name], label=f"{name} (ROC-AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance (0.5)")
    ax.set(xlabel="share of cars without failure flagged (false positive rate)",
           ylabel="share of failures flagged (recall)", title="ROC curves", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    return fig


def pr_curves(y_true, probs: Mapping[str, np.ndarray]) -> Figure:
    """Precision against recall for each model, with its average precision and the failure rate.

    Parameters
    ----------
    y_true : array-like of 0/1
    probs : dict of str to array-like

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When no model is given or the arrays differ in length.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, probs = _checked(y_true, probs)
    fig, (ax,) = _figure()
    colors = _colors(probs)
    for name, p in probs.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.step(recall, precision, where="post", color=colors[name],
                label=f"{name} (PR-AUC {average_precision_score(y, p):.3f})")
    ax.axhline(y.mean(), color="grey", linestyle="--", label=f"chance (failure rate {y.mean():.3f})")
    ax.set(xlabel="share of failures found (recall)", ylabel="share of flagged cars that fail (precision)",
           title="Precision-recall curves", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper right")
    return fig


def calibration(y_true, probs: Mapping[str, np.ndarray], *, bins: int = 10) -> Figure:
    """Reliability diagram: observed failure rate against mean predicted probability, by quantile bin.

    Parameters
    ----------
    y_true : array-like of 0/1
    probs : dict of str to array-like
    bins : int
        Bins of equal numbers of cars per model (fewer where probabilities repeat).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When no model is given, the arrays differ in length, or ``bins`` is below 1.
    """
    if bins < 1:
        raise ModelError(f"bins must be at least 1, not {bins}")
    y, probs = _checked(y_true, probs)
    fig, (ax,) = _figure()
    colors = _colors(probs)
    top = 0.0
    for name, p in probs.items():
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]))
        which = np.searchsorted(edges, p, side="right")
        count = np.bincount(which, minlength=edges.size + 1)
        used = count > 0
        predicted = np.bincount(which, weights=p, minlength=edges.size + 1)[used] / count[used]
        observed = np.bincount(which, weights=y, minlength=edges.size + 1)[used] / count[used]
        ax.plot(predicted, observed, marker="o", color=colors[name], label=name)
        top = max(top, predicted.max(), observed.max())
    top = min(1.0, top * 1.1) or 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect calibration")
    ax.set(xlabel="mean predicted probability", ylabel="observed failure rate", xlim=(0, top), ylim=(0, top),
           title=f"Calibration ({bins} bins of equal car counts)")
    ax.legend(loc="upper left")
    return fig


def recall_by_budget(y_true, probs: Mapping[str, np.ndarray], *,
                     budgets: Sequence[float] = Settings.budgets) -> Figure:
    """Share of failures found against share of cars inspected (riskiest first), with chance.

    Parameters
    ----------
    y_true : array-like of 0/1
    probs : dict of str to array-like
    budgets : sequence of float
        Inspection budgets marked on the curve.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When no model is given, the arrays differ in length or hold a single class.
    """
    y, probs = _checked(y_true, probs)
    fig, (ax,) = _figure()
    colors = _colors(probs)
    for name, p in probs.items():
        share, found = gain_curve(y, p)
        ax.plot(share * 100, found * 100, color=colors[name], label=name)
        for budget in budgets:
            at = inspected(y.size, budget=budget) / y.size
            recall = float(np.interp(at, share, found)) * 100
            ax.plot([at * 100], [recall], marker="o", color=colors[name])
            ax.annotate(f"{recall:.0f}", (at * 100, recall), textcoords="offset points", xytext=(4, -12),
                        color=colors[name])
    ax.plot([0, 100], [0, 100], color="grey", linestyle="--", label="chance")
    for budget in budgets:
        ax.axvline(budget * 100, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="cars inspected, riskiest first (%)", ylabel="road-test failures found (%)",
           title="Failures found by inspection budget", xlim=(0, 100), ylim=(0, 100))
    ax.legend(loc="lower right")
    return fig


def confusion_matrices(y_true, probs: Mapping[str, np.ndarray], *, budget: float) -> Figure:
    """Each model's confusion matrix when the riskiest ``budget`` share of cars is inspected.

    A car is flagged when its score reaches the score of the last car inside that share
    (so ties at the threshold are all flagged).

    Parameters
    ----------
    y_true : array-like of 0/1
    probs : dict of str to array-like
    budget : float
        Share of cars inspected.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When no model is given, the arrays differ in length or the budget is not between 0 and 1.
    """
    y, probs = _checked(y_true, probs)
    fig, axes = _figure(len(probs), width=4.6, height=4.2)
    for ax, (name, p) in zip(axes, probs.items()):
        threshold = threshold_at(p, budget=budget)
        flagged = p >= threshold
        counts = np.array([[np.sum(~flagged & (y == 0)), np.sum(flagged & (y == 0))],
                           [np.sum(~flagged & (y == 1)), np.sum(flagged & (y == 1))]])
        ax.imshow(counts, cmap="Blues")
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, f"{count:,}", ha="center", va="center",
                    color="white" if count > counts.max() / 2 else "black", fontsize=13)
        ax.set_xticks([0, 1], ["not inspected", "inspected"])
        ax.set_yticks([0, 1], ["no failure", "failure"])
        ax.set_title(f"{name}\nthreshold {threshold:.3f}, {int(flagged.sum()):,} of {y.size:,} cars inspected")
    fig.suptitle(f"Riskiest {budget_key(budget)} % of cars inspected")
    return fig


def metrics_table(comparison: Mapping) -> pd.DataFrame:
    """Every figure of a comparison as ``value [low, high]`` (95 % bootstrap interval).

    Parameters
    ----------
    comparison : dict
        What :func:`kafer.metrics.compare` returned.

    Returns
    -------
    pandas.DataFrame
        One row per figure; columns ``candidate`` and, when there is a production model,
        ``production`` and ``difference`` (candidate − production, from the paired bootstrap).
    """
    columns = [name for name in ("candidate", "production", "difference") if comparison.get(name) is not None]
    rows = {}
    for key in comparison["candidate"]:
        digits = 4 if key == "brier" else 3
        rows[metric_label(key)] = [interval(comparison[c][key], digits, sign=c == "difference") for c in columns]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("metric")


def risk_chart(ranked: pd.DataFrame, *, top: int = 20) -> Figure:
    """The scored cars: probability by rank with the inspection budget, and the riskiest cars by KNR.

    Parameters
    ----------
    ranked : pandas.DataFrame
        ``KNR``, ``probability``, ``rank`` and ``in_budget``, riskiest first (as
        :func:`kafer.predict.rank` returns).
    top : int
        Cars named in the right-hand panel.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When a column is missing.
    """
    missing = [c for c in ("KNR", "probability", "rank", "in_budget") if c not in ranked.columns]
    if missing:
        raise ModelError(f"the ranked list has no column {', '.join(missing)}")
    fig, (left, right) = _figure(2, width=6.0, height=4.8)
    inside = ranked["in_budget"].to_numpy(dtype=bool)
    left.plot(ranked["rank"], ranked["probability"], color="grey", linewidth=1)
    left.scatter(ranked["rank"][inside], ranked["probability"][inside], s=8, color="tab:red",
                 label=f"in the inspection budget ({int(inside.sum()):,} cars)")
    left.set(xlabel="rank (1 = riskiest)", ylabel="probability of failing the road test",
             title=f"{len(ranked):,} cars scored")
    left.legend(loc="upper right")
    head = ranked.head(top)
    right.barh(head["KNR"].astype(str)[::-1], head["probability"][::-1],
               color=np.where(head["in_budget"].to_numpy(dtype=bool)[::-1], "tab:red", "tab:grey"))
    right.set(xlabel="probability of failing the road test", title=f"Riskiest {len(head)} cars")
    return fig
