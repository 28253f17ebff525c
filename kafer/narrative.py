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


#: Ranking figures a recommendation weighs (recall at every budget is added from the comparison).
_RANKING = ("roc_auc", "pr_auc")
#: What a choice means, for the recommendation's first words.
KEEP_NEW, KEEP_OLD = "keep-new", "keep-old"


def judgements(comparison: Mapping, *, against_production: bool) -> list[dict]:
    """Each ranking figure (ROC-AUC, PR-AUC, recall at every budget) judged from its 95 % interval.

    Against production the difference's interval decides (``better`` when it lies above 0,
    ``worse`` below, else ``unclear``); without production the candidate's own interval is set
    against chance (0.5 for ROC-AUC, the failure rate for PR-AUC, the budget for recall).

    Returns
    -------
    list of dict
        ``{"metric", "label", "value", "low", "high", "reference", "judgement"}`` per figure,
        the value and interval those of the difference against production, else the candidate's.
    """
    budgets = comparison.get("budgets", [])
    names = list(_RANKING) + [f"recall_at_{budget_key(b)}" for b in budgets]
    rate = comparison["positives"] / comparison["cars"]
    out = []
    for name in names:
        figure = (comparison["difference"] if against_production else comparison["candidate"])[name]
        if against_production:
            reference = 0.0
        elif name == "roc_auc":
            reference = 0.5
        elif name == "pr_auc":
            reference = rate
        else:
            reference = budget_key(budgets[names.index(name) - len(_RANKING)]) / 100
        low, high = figure.get("low"), figure.get("high")
        if low is None or high is None:
            judgement = "unclear"
        elif low > reference:
            judgement = "better"
        elif high < reference:
            judgement = "worse"
        else:
            judgement = "unclear"
        out.append({"metric": name, "label": metric_label(name), "value": figure["value"], "low": low, "high": high,
                    "reference": reference, "judgement": judgement})
    return out


def recommendation(comparison: Mapping, *, production: bool, fair: Mapping | None = None) -> dict:
    """What the evidence supports, in plain words: keep the new model, keep the old one, or keep
    production as the safe default when the difference is not clear.

    Parameters
    ----------
    comparison : dict
        What :func:`kafer.metrics.compare` returned.
    production : bool
        Whether a production model exists.
    fair : dict, optional
        ``{"possible", "why"}``: whether the candidate and production could be compared on cars
        neither was trained on.

    Returns
    -------
    dict
        ``choice`` (``keep-new`` or ``keep-old``) and ``text``, one or two sentences.
    """
    if production and fair is not None and not fair.get("possible", True):
        return {"choice": KEEP_OLD, "text": f"Keep the old model: no fair comparison is possible yet ({fair['why']}). "
                                            "Keeping production is the safe default; retrain when more months are in."}
    against = production and comparison.get("difference") is not None
    judged = judgements(comparison, against_production=against)
    better = [j["label"] for j in judged if j["judgement"] == "better"]
    worse = [j["label"] for j in judged if j["judgement"] == "worse"]
    if not against:
        if better and not worse:
            return {"choice": KEEP_NEW, "text": "Keep the new model: there is no production model yet, and this one "
                                                f"ranks cars clearly better than chance ({_listed(better)}), so "
                                                "inspecting in its order finds more failures than testing at random."}
        return {"choice": KEEP_OLD, "text": "Keep the old model (no model in production): the new model is not clearly "
                                            "better than chance on any ranking figure; inspectors picking cars at "
                                            "random would do as well. Upload more months and retrain."}
    if better and not worse:
        return {"choice": KEEP_NEW, "text": f"Keep the new model: it is clearly better on {_listed(better)} and "
                                            "clearly worse on none."}
    if worse and not better:
        return {"choice": KEEP_OLD, "text": f"Keep the old model: the new one is clearly worse on {_listed(worse)} and "
                                            "clearly better on none."}
    if worse and better:
        return {"choice": KEEP_OLD, "text": f"Mixed evidence: the new model is clearly better on {_listed(better)} but "
                                            f"clearly worse on {_listed(worse)}. Keeping production is the safe "
                                            "default unless the figure that matters most to inspectors is among "
                                            "the better ones."}
    return {"choice": KEEP_OLD, "text": "No clear difference: keeping production is the safe default. Every "
                                        "interval of the difference includes zero."}


def _listed(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def verdict(comparison: Mapping, *, budget: float, production: bool, fair: Mapping | None = None) -> str:
    """The comparison in plain words: what the new model finds at the operating budget and how it
    ranks cars on every figure (what to do is :func:`recommendation`'s).

    Parameters
    ----------
    comparison : dict
        What :func:`kafer.metrics.compare` returned.
    budget : float
        The operating inspection budget; one of the comparison's budgets.
    production : bool
        Whether a production model exists (its figures are in ``comparison`` when the comparison
        was fair).
    fair : dict, optional
        ``{"possible", "why"}`` (see :func:`kafer.steps.fair_cars`).

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
    cars = (f"Measured on {comparison['cars']:,} evaluation cars with {comparison['positives']:,} road-test failures, "
            "none of them seen by either model in training.")
    against = production and comparison.get("difference") is not None
    judged = {j["metric"]: j for j in judgements(comparison, against_production=against)}
    if against:
        diff = comparison["difference"][key]
        value = diff["value"] * 100
        finds = ("as many road-test failures as the production model" if round(value, 1) == 0 else
                 f"{abs(value):.1f} {'more' if value > 0 else 'fewer'} of every 100 road-test failures than the "
                 "production model")
        span = "" if diff["low"] is None else \
            f" (95 % interval {number(diff['low'] * 100, 1)} to {number(diff['high'] * 100, 1)})"
        words = {"better": "clearly better", "worse": "clearly worse", "unclear": "not clearly different"}
        figures = "; ".join(f"{j['label']} {number(comparison['candidate'][m]['value'], 3)} against "
                            f"{number(comparison['production'][m]['value'], 3)}, {words[j['judgement']]}"
                            for m, j in judged.items() if not m.startswith("recall"))
        head = f"At a {pct} % inspection budget the new model finds {finds}{span}. {figures}."
    else:
        own = candidate[key]
        span = "" if own["low"] is None else \
            f" (95 % interval {own['low'] * 100:.0f} to {own['high'] * 100:.0f})"
        words = {"better": "clearly better than chance", "worse": "clearly worse than chance",
                 "unclear": "not clearly better than chance"}
        figures = "; ".join(f"{j['label']} {interval(candidate[m])}, {words[j['judgement']]}"
                            for m, j in judged.items() if not m.startswith("recall"))
        first = ("There is no production model yet, so the new model is judged against chance. "
                 if not production else "")
        head = (f"{first}At a {pct} % inspection budget the new model finds {own['value'] * 100:.0f} of every 100 "
                f"road-test failures{span}, against {pct} by chance. {figures}.")
        if production:
            head = "No fair comparison with production is possible yet. " + head
    return f"{head} {cars}"
