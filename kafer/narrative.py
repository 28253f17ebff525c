"""The comparison in words and numbers written for people: the verdict, figure names, intervals.

The one place that decides how a figure reads (``0.710 [0.619, 0.798]``, a true minus sign, never
``-0.0``), so the report, the decision panel and the command line say the same thing.
"""

from __future__ import annotations

from typing import Mapping

from .errors import ModelError
from .i18n import mark, percent, tr
from .i18n import number as written
from .metrics import budget_key

#: How each figure of :func:`kafer.metrics.evaluate` is named for people.
LABELS = {"roc_auc": mark("ROC-AUC"), "pr_auc": mark("PR-AUC (average precision)"),
          "brier": mark("Brier score (lower is better)")}


def number(x: float, digits: int, *, sign: bool = False) -> str:
    """``x`` with a true minus sign, never ``-0.0``, its decimal mark the current language's
    (``0,710`` in pt-BR)."""
    value = round(float(x), digits) + 0.0
    text = written(abs(value), digits)
    return ("\u2212" if value < 0 else "+" if sign else "") + text


def interval(figure: Mapping | None, digits: int = 3, *, sign: bool = False) -> str:
    """A figure as ``value [low, high]`` (its 95 % interval), ``value`` alone without one, ``—`` for none."""
    if not figure or figure.get("value") is None:
        return "—"
    text = number(figure["value"], digits, sign=sign)
    if figure.get("low") is None or figure.get("high") is None:
        return text
    return f"{text} [{number(figure['low'], digits, sign=sign)}, {number(figure['high'], digits, sign=sign)}]"


def metric_label(name: str) -> str:
    """How a figure's key is written for people: ``recall_at_10`` → ``Recall at 10 %`` (in the current language)."""
    if name in LABELS:
        return tr(LABELS[name])
    kind, _, pct = name.rpartition("_at_")
    if kind == "recall":
        return tr("Recall at {budget}", budget=f"{pct} %")
    if kind == "precision":
        return tr("Precision at {budget}", budget=f"{pct} %")
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
        return {"choice": KEEP_OLD, "text": tr("Keep the old model: no fair comparison is possible yet ({why}). "
                                               "Keeping production is the safe default; retrain when more months "
                                               "are in.", why=fair["why"])}
    against = production and comparison.get("difference") is not None
    judged = judgements(comparison, against_production=against)
    better = [j["label"] for j in judged if j["judgement"] == "better"]
    worse = [j["label"] for j in judged if j["judgement"] == "worse"]
    if not against:
        if better and not worse:
            return {"choice": KEEP_NEW, "text": tr("Keep the new model: there is no production model yet, and this "
                                                   "one ranks cars clearly better than chance ({figures}), so "
                                                   "inspecting in its order finds more failures than testing at "
                                                   "random.", figures=_listed(better))}
        return {"choice": KEEP_OLD, "text": tr("Keep the old model (no model in production): the new model is not "
                                               "clearly better than chance on any ranking figure; inspectors picking "
                                               "cars at random would do as well. Upload more months and retrain.")}
    if better and not worse:
        return {"choice": KEEP_NEW, "text": tr("Keep the new model: it is clearly better on {better} and clearly "
                                               "worse on none.", better=_listed(better))}
    if worse and not better:
        return {"choice": KEEP_OLD, "text": tr("Keep the old model: the new one is clearly worse on {worse} and "
                                               "clearly better on none.", worse=_listed(worse))}
    if worse and better:
        return {"choice": KEEP_OLD, "text": tr("Mixed evidence: the new model is clearly better on {better} but "
                                               "clearly worse on {worse}. Keeping production is the safe default "
                                               "unless the figure that matters most to inspectors is among the "
                                               "better ones.", better=_listed(better), worse=_listed(worse))}
    return {"choice": KEEP_OLD, "text": tr("No clear difference: keeping production is the safe default. Every "
                                           "interval of the difference includes zero.")}


def _listed(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else tr("{some} and {last}", some=", ".join(labels[:-1]), last=labels[-1])


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
    cars = tr("Measured on {cars} evaluation cars with {failures} road-test failures, none of them seen by either "
              "model in training.", cars=written(comparison["cars"]), failures=written(comparison["positives"]))
    against = production and comparison.get("difference") is not None
    judged = {j["metric"]: j for j in judgements(comparison, against_production=against)}
    budget_words = f"{pct} %"
    if against:
        diff = comparison["difference"][key]
        value = diff["value"] * 100
        if round(value, 1) == 0:
            finds = tr("as many road-test failures as the production model")
        elif value > 0:
            finds = tr("{count} more of every 100 road-test failures than the production model",
                       count=number(abs(value), 1))
        else:
            finds = tr("{count} fewer of every 100 road-test failures than the production model",
                       count=number(abs(value), 1))
        span = "" if diff["low"] is None else tr(" (95 % interval {low} to {high})", low=number(diff["low"] * 100, 1),
                                                 high=number(diff["high"] * 100, 1))
        words = {"better": tr("clearly better"), "worse": tr("clearly worse"), "unclear": tr("not clearly different")}
        figures = "; ".join(tr("{figure} {new} against {old}, {judgement}", figure=j["label"],
                               new=number(comparison["candidate"][m]["value"], 3),
                               old=number(comparison["production"][m]["value"], 3), judgement=words[j["judgement"]])
                            for m, j in judged.items() if not m.startswith("recall"))
        head = tr("At a {budget} inspection budget the new model finds {finds}{span}. {figures}.",
                  budget=budget_words, finds=finds, span=span, figures=figures)
    else:
        own = candidate[key]
        span = "" if own["low"] is None else tr(" (95 % interval {low} to {high})", low=number(own["low"] * 100, 0),
                                                high=number(own["high"] * 100, 0))
        words = {"better": tr("clearly better than chance"), "worse": tr("clearly worse than chance"),
                 "unclear": tr("not clearly better than chance")}
        figures = "; ".join(tr("{figure} {value}, {judgement}", figure=j["label"], value=interval(candidate[m]),
                               judgement=words[j["judgement"]])
                            for m, j in judged.items() if not m.startswith("recall"))
        first = tr("There is no production model yet, so the new model is judged against chance. ") if not production \
            else ""
        head = tr("{first}At a {budget} inspection budget the new model finds {found} of every 100 road-test "
                  "failures{span}, against {chance} by chance. {figures}.", first=first, budget=budget_words,
                  found=number(own["value"] * 100, 0), span=span, chance=pct, figures=figures)
        if production:
            head = tr("No fair comparison with production is possible yet. ") + head
    return f"{head} {cars}"


#: How each feature family is named for people.
FAMILY_WORDS = {"contract": mark("the contract's counts and dwell times"),
                "configuration": mark("the configuration (model, colour, engine)"),
                "tests": mark("which tests were NOK"),
                "route": mark("the route (rework loops, checkpoints, time on the line, shifts)"),
                "defects": mark("which defects, in which hall and at which station")}
_TABLE_WORDS = {
    "n_results_id1": "machine operation results", "n_results_id2": "screw tightening results",
    "n_results_id718": "electronics and section results", "n_nok_id1": "NOK machine operations",
    "n_nok_id2": "NOK screw tightenings", "n_nok_id718": "NOK electronics and section tests",
    "n_nok_tests_distinct": "different tests NOK", "n_tests_distinct": "different tests run",
    "n_falhas_pre_road": "defects before the road test", "n_falhas_stations_pre_road": "stations that found defects",
    "n_status_events_pre_road": "checkpoint passages", "n_status_codes_pre_road": "different checkpoints passed",
    "n_checkpoints_repeated_pre_road": "checkpoints passed more than once",
    "n_repeat_passages_pre_road": "repeated checkpoint passages",
}
_ATTRIBUTE_WORDS = {"MODELO": "model", "COR": "colour", "MOTOR": "engine"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _times(n: float) -> str:
    return "" if n <= 1 else " twice" if n == 2 else f" {n:g} times"


def _table_words(column: str, value: float) -> str:
    if column == "dwell_min_pre_road":
        return f"{value / 60:.1f} h on the line"
    if column.startswith("dwell_min_"):
        return f"{value:.0f} min in {column.removeprefix('dwell_min_')}"
    return f"{value:g} {column_words(column)}"


def input_words(column: str, value: float = 1.0, *, typical: float | None = None, category: str | None = None) -> str:
    """One of a car's model inputs as an inspector reads it.

    ``test 131200 NOK``, ``passed M594 twice``, ``ZP7 defect PAINEL LATERAL 01. AMASSADO``,
    ``engine CWL``, ``52 min in ZP6 (typical 30)``.

    Parameters
    ----------
    column : str
        A curated table's column or a fact column (``kind:key``, :mod:`kafer.facts`).
    value : float
        The car's value.
    typical : float, optional
        A typical car's value, said after a table column's.
    category : str, optional
        The car's category, for a configuration column.
    """
    kind, _, key = column.partition(":")
    if kind == "config":
        return f"{_ATTRIBUTE_WORDS.get(key, key)} {category or '(blank)'}"
    if kind == "nok_test":
        return f"test {key} NOK{_times(value)}"
    if kind == "nok_test_family":
        return f"{value:g} NOK in {key} tests"
    if kind == "repeated_checkpoint":
        return f"passed {key}{_times(value)}"
    if kind == "defect":
        hall, _, text = key.partition("|")
        return f"{hall} defect {text}{_times(value)}"
    if kind == "station":
        return f"{value:g} defect{'s' if value != 1 else ''} at station {key}"
    if column.startswith("shift_at_"):
        return f"passed {column.removeprefix('shift_at_')} on shift {value:g}"
    if column.startswith("weekday_at_"):
        return f"passed {column.removeprefix('weekday_at_')} on a {_WEEKDAYS[int(value) % 7]}"
    text = _table_words(column, value)
    return text if typical is None else f"{text} (typical {_table_words(column, typical).split(' ', 1)[0]})"


def column_words(column: str) -> str:
    """What a curated table's column (or a configuration attribute) is, for a table's row:
    ``NOK screw tightenings``, ``minutes in ZP6``, ``shift at ZP7``, ``engine``."""
    if column in _TABLE_WORDS:
        return _TABLE_WORDS[column]
    if column.startswith("config:"):
        return _ATTRIBUTE_WORDS.get(column.removeprefix("config:"), column)
    if column == "dwell_min_pre_road":
        return "minutes on the line"
    for prefix, words in (("dwell_min_", "minutes in"), ("n_falhas_", "defects in"), ("shift_at_", "shift at"),
                          ("weekday_at_", "weekday at")):
        if column.startswith(prefix):
            return f"{words} {column.removeprefix(prefix)}"
    return column


def condition_words(column: str, *, above: float | None = None, value: float | None = None,
                    category: str | None = None) -> str:
    """Which cars "have" an input, in words: ``test 131200 NOK``, ``more than 2 NOK screw tightenings``."""
    kind, _, key = column.partition(":")
    if kind == "config" or column.startswith(("shift_at_", "weekday_at_")):
        return input_words(column, value if value is not None else 1.0, category=category)
    if kind == "repeated_checkpoint":
        return f"passed {key} more than once"
    if kind == "station":
        return f"a defect at station {key}"
    if kind == "nok_test_family":
        return f"a NOK in {key} tests"
    if kind in ("nok_test", "defect"):
        return input_words(column)
    if above is None:
        return column
    if above == 0 and column.startswith("n_"):
        return f"any {_table_words(column, 0).split(' ', 1)[1]}"
    return f"more than {_table_words(column, above)}"


def drivers_summary(families, inputs, *, cars: int, failures: int) -> str:
    """What drives the risk, in plain words, or that nothing stands out from noise.

    Parameters
    ----------
    families : pandas.DataFrame
        Per feature family: ``importance``, ``low``, ``high``, ``stands_out`` (see
        :func:`kafer.explain.permutation_importance`).
    inputs : pandas.DataFrame
        The strongest single inputs: ``with``, ``stands_out``, ``cars_with``, ``failure_rate_with``,
        ``failure_rate_without``.
    cars, failures : int
        The cars it was measured on.
    """
    measured = tr("Measured on {cars} evaluation cars with {failures} road-test failures.", cars=written(cars),
                  failures=written(failures))
    strong = families[families["stands_out"]].sort_values("importance", ascending=False)
    if strong.empty:
        return tr("Nothing stands out from noise: shuffling any one family of inputs among the cars does not clearly "
                  "lower the ROC-AUC. {measured} The model's ranking rests on no input it could show to be real; "
                  "treat any pattern in the tables below as chance.", measured=measured)
    named = "; ".join(tr("{family} (ROC-AUC falls by {fall} [{low}, {high}] without it)",
                         family=tr(FAMILY_WORDS[f]) if f in FAMILY_WORDS else f, fall=number(r.importance, 3),
                         low=number(r.low, 3), high=number(r.high, 3)) for f, r in strong.iterrows())
    others = [tr(FAMILY_WORDS[f]) if f in FAMILY_WORDS else f for f in families.index if f not in strong.index]
    text = tr("What drives the risk: {named}.", named=named)
    if others:
        text += " " + tr("The other families ({others}) do not stand out from noise.", others="; ".join(others))
    clear = inputs[inputs["stands_out"]] if len(inputs) else inputs
    if len(clear):
        text += " " + tr("Single inputs that stand out: {inputs}.", inputs="; ".join(
            tr("{input} ({rate_with} of {cars} such cars failed, {rate_without} of the others)", input=r["with"],
               rate_with=_share(r["failure_rate_with"]), cars=written(r["cars_with"]),
               rate_without=_share(r["failure_rate_without"])) for _, r in clear.iterrows()))
    return f"{text} {measured}"


def _share(rate: float) -> str:
    """A failure rate as a whole percentage (``12%``, ``12 %`` in pt-BR)."""
    return percent(rate, 0)
