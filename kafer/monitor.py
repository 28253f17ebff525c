"""Is production keeping its promise? Each kept model's track record, month by month, and a warning when it slips.

A model promised, when it was kept, the figures its comparison report measured (the registry
entry's ``metrics``). Every later month's exports bring the road-test outcomes of cars it scored
for the inspectors. A model is judged on the cars whose road test reached the lake while it was in
production (a car not road-tested in the curated version the lake held when the model was kept,
and road-tested in the one it held when the model left), whose label is known and that it never
trained or validated on: per calendar month of road test and pooled, with the same figures,
bootstrap, budgets, rounds and seed as the comparison (:func:`kafer.metrics.compare`), so that a
figure here equals what ``04_compare`` computes for that model on those cars. Production periods
come from the decision log; a model rolled back to is judged over all its periods.

The warning is earned, and speaks only of what the inspection list loses: for ROC-AUC (how well
the cars that fail are ranked above the others) and recall at every budget (how many of the
failures the riskiest cars hold), a one-sided test that the pooled figure since the model was kept
is below the promised one, each side's standard error read from its 95 % interval (the promise
was measured on a finite set of cars too); the p-values are adjusted together (Holm), and
production is flagged only when at least one stays at most ``monitor_alpha`` and the pooled cars
reach ``min_compare_cars`` and ``min_compare_failures``. No single month is ever tested on its
own. PR-AUC and precision are on the record as figures, never tested: they fall and rise with how
often the plant fails however well the model ranks (at a budget, precision over the failure rate is
recall over the budget: nothing the recall does not say already).

Once inspectors act on the lists, a car an acted-on list flagged has an outcome the list shaped
(:func:`kafer.lists.shaped_cars`, read as the judged curated version was made): such cars are never
judged, and a model judged on any of them is judged on its cars below its operating threshold
against what it did below it on its evaluation cars (:func:`judged_without_lists`).

A change of how often the plant fails is news of its own (:func:`failure_rate_news`): the share of
the cars road-tested since the model was kept that failed, against the share of the cars it learned
from, tested two-sided. Beside the figures: the share of cars at or above the model's operating
threshold each month (:func:`kafer.metrics.threshold_share`), read together with that news (fewer
risky cars in a plant that fails less often is no fault of the model), and what moved in its inputs
between its training cars and the cars it scored since (:func:`kafer.drift.input_drift`).

Scores are computed once per model and car and kept with the model
(:func:`kafer.catalog.save_model_scores`, one immutable key per curated version): a car's score is
reused as long as its inputs' fingerprint is unchanged, so a new month scores the new month's cars
only, and models kept before this existed are scored on demand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from . import catalog, lists, registry
from .config import Settings
from .dataset import labelled
from .drift import InputDrift, input_drift
from .errors import KaferError, LakeError
from .facts import CONFIG_ATTRIBUTES
from .lake import Lake
from .metrics import budget_key, compare, holm, proportion, threshold_share
from .model import Model, load_model
from .i18n import current, ntr, percent, tr
from .i18n import number as written
from .narrative import interval, metric_label, number

#: The z of a two-sided 95 % interval: an interval's half width over it is a standard error.
_Z95 = norm.ppf(0.975)
#: A month with fewer cars than this share of the median month's is a sliver at an end of the data:
#: the threshold's drift is read off the latest month that is not one.
MIN_MONTH_SHARE = 0.25
#: Decisions that change which model is in production.
_CHANGES = ("keep-new", "rollback")


def watched(budgets: Sequence[float]) -> tuple[str, ...]:
    """The figures the warning tests: ROC-AUC and recall at every budget (what the inspection list loses)."""
    return ("roc_auc",) + tuple(f"recall_at_{budget_key(b)}" for b in budgets)


@dataclass(frozen=True)
class Tenure:
    """One stretch of time a version was in production, bounded by what the lake held at each end.

    ``start_data`` is the curated version the lake held when it was kept (its cars' road tests came
    before), ``end_data`` the one it held when another model replaced it (``None``: still in production).
    """

    version: str
    kept_at: str
    kept_by: str
    choice: str
    start_data: str | None
    left_at: str | None = None
    end_data: str | None = None


@dataclass(frozen=True)
class Mark:
    """A decision where the chart draws it: at the end of the data the lake held when it was made."""

    at: str
    data_end: str | None
    choice: str
    by: str
    before: str | None
    after: str | None


def tenures(log: Sequence[Mapping], *, boundaries: Sequence[str | None]) -> tuple[Tenure, ...]:
    """Each stretch of time a version was in production, from the decision log.

    Parameters
    ----------
    log : sequence of dict
        The decision records, oldest first (``at``, ``by``, ``choice``, ``before``, ``after``).
    boundaries : sequence of str or None
        For each record, the curated version the lake held when it was made.

    Returns
    -------
    tuple of Tenure
        Oldest first; a keep-old changes nothing and starts none.
    """
    out: list[Tenure] = []
    current: Tenure | None = None
    for record, boundary in zip(log, boundaries):
        if record["choice"] not in _CHANGES or record["after"] == record["before"]:
            continue
        if current is not None:
            out.append(replace(current, left_at=record["at"], end_data=boundary))
        current = None if record["after"] is None else Tenure(record["after"], record["at"], record["by"],
                                                              record["choice"], boundary)
    return tuple(out + ([current] if current is not None else []))


def tenure_cars(table: pd.DataFrame, spans: Sequence[Tenure], *, road_tested: Mapping[str, frozenset]) -> np.ndarray:
    """Which cars of ``table`` reached their road test in the lake during any of ``spans``.

    Parameters
    ----------
    table : pandas.DataFrame
        A curated table (``KNR``, ``road_test_at``).
    spans : sequence of Tenure
    road_tested : mapping
        Per curated version a span starts or ends at, the KNRs road-tested in it.

    Returns
    -------
    numpy.ndarray of bool
    """
    knr = table["KNR"].astype(str)
    tested = table["road_test_at"].notna().to_numpy()
    inside = np.zeros(len(table), dtype=bool)
    for span in spans:
        after = ~knr.isin(road_tested[span.start_data]).to_numpy() if span.start_data else np.ones(len(table), bool)
        before = knr.isin(road_tested[span.end_data]).to_numpy() if span.end_data else np.ones(len(table), bool)
        inside |= after & before
    return tested & inside


@dataclass(frozen=True)
class Period:
    """A model's figures on the cars road-tested in one calendar month (or pooled since it was kept).

    ``cars`` and ``failures`` are the labelled cars judged; ``road_tested`` every car scored at its
    road test, labelled or not, of which ``inside_budget`` is the share at or above the operating
    threshold (:func:`kafer.metrics.threshold_share`). ``figures`` are :func:`kafer.metrics.compare`'s
    (empty when the cars hold a single class); ``recall_at_threshold`` and
    ``precision_at_threshold`` are what the inspection list's flag delivered. ``at_rate`` holds the
    same figures counted at another failure rate (``{"rate", "figures"}``: the failing cars and the
    others weighted to it, see :func:`kafer.metrics.compare`), when asked for.
    """

    period: str
    cars: int
    failures: int
    road_tested: int
    figures: Mapping[str, dict] = field(default_factory=dict)
    inside_budget: Mapping | None = None
    recall_at_threshold: Mapping | None = None
    precision_at_threshold: Mapping | None = None
    at_rate: Mapping | None = None

    def triple(self, name: str) -> list | None:
        """A figure as ``[point, low, high]``; ``None`` when undefined."""
        figure = {"inside_budget": self.inside_budget, "recall_at_threshold": self.recall_at_threshold,
                  "precision_at_threshold": self.precision_at_threshold}.get(name, self.figures.get(name))
        return None if not figure or figure.get("value") is None else [figure["value"], figure["low"], figure["high"]]

    def to_dict(self, *, budget: float) -> dict:
        """JSON-ready: every figure as ``[point, low, high]``, ``recall_at_budget`` that at the operating budget."""
        named = {name: self.triple(name) for name in self.figures}
        pct = budget_key(budget)
        return {"period": self.period, "cars": self.cars, "failures": self.failures, "road_tested": self.road_tested,
                "roc_auc": self.triple("roc_auc"), "recall_at_budget": self.triple(f"recall_at_{pct}"),
                "precision_at_budget": self.triple(f"precision_at_{pct}"), **named,
                "inside_budget": self.triple("inside_budget"),
                "threshold_far": bool(self.inside_budget and self.inside_budget.get("far")),
                "recall_at_threshold": self.triple("recall_at_threshold"),
                "precision_at_threshold": self.triple("precision_at_threshold"),
                "at_rate": None if not self.at_rate else {
                    "rate": self.at_rate["rate"],
                    "figures": {name: _triple(f) for name, f in self.at_rate["figures"].items()}}}


def period_figures(period: str, cars: pd.DataFrame, p: np.ndarray, *, threshold: float | None,
                   settings: Settings, at_rate: float | None = None) -> Period:
    """One :class:`Period`: the comparison's figures on the labelled cars, the threshold's share on all.

    Parameters
    ----------
    period : str
        Its name (``"2024-05"``, ``"since kept"``).
    cars : pandas.DataFrame
        Cars scored at their road test: ``label_known``, ``label_rod``.
    p : numpy.ndarray
        The model's probabilities for them.
    threshold : float or None
        The model's operating threshold (``None`` for a model registered without one).
    settings : Settings
        ``budgets``, ``bootstrap_rounds``, ``seed`` (as the comparison uses them), ``operating_budget``
        and ``threshold_tolerance``.
    at_rate : float, optional
        Count the figures at this failure rate too (:attr:`Period.at_rate`).
    """
    known = cars["label_known"].fillna(False).astype(bool).to_numpy()
    y, q = cars["label_rod"].to_numpy(dtype=int)[known], p[known]
    figures, counted = {}, None
    if 0 < y.sum() < y.size:
        options = {"budgets": settings.budgets, "rounds": settings.bootstrap_rounds, "seed": settings.seed}
        figures = compare(y, q, **options)["candidate"]
        if at_rate is not None:
            counted = {"rate": at_rate, "figures": compare(y, q, **options, at_rate=at_rate)["candidate"]}
    flag = None if threshold is None else p >= threshold
    return Period(
        period, int(y.size), int(y.sum()), int(len(cars)), figures,
        None if flag is None else threshold_share(int(flag.sum()), int(flag.size), budget=settings.operating_budget,
                                                  tolerance=settings.threshold_tolerance),
        None if flag is None else proportion(int((flag[known] & (y == 1)).sum()), int(y.sum())),
        None if flag is None else proportion(int((flag[known] & (y == 1)).sum()), int(flag[known].sum())), counted)


@dataclass(frozen=True)
class Check:
    """Whether a model is worse now than it promised: the warning, and the test behind it.

    ``tests`` is indexed by figure: ``promised`` and ``now`` (``{"value", "low", "high"}``; a recall
    counted at the promise's failure rate, ``at_rate``, when the pooled figures hold it),
    ``difference`` (now minus promised), ``p_value`` (one-sided: now is below the promise),
    ``p_adjusted`` (Holm, over the figures tested) and ``slipped``. ``judged`` is false while too
    few cars have their outcome.
    """

    alert: bool
    judged: bool
    tests: pd.DataFrame
    why: str
    headline: str


def check_promise(pooled: Period | None, promise: Mapping, *, version: str, budgets: Sequence[float], budget: float,
                  alpha: float, min_cars: int, min_failures: int, span: str = "") -> Check:
    """Test whether the pooled figures since a model was kept fell below those it promised.

    Parameters
    ----------
    pooled : Period or None
        The model's figures on every car it was judged on (``None``: no car yet). When it holds them
        counted at the promise's failure rate (:attr:`Period.at_rate`), the recalls are tested so: at
        a budget, a plant failing more often leaves a smaller share of its failures inside the list
        however well the model ranks, and one failing less often a larger share.
    promise : dict
        Its registry entry's ``metrics``: ``{figure: {"value", "low", "high"}}``.
    version : str
        Named in the words.
    budgets : sequence of float
        The recall at each is tested (see :func:`watched`).
    budget : float
        The operating budget, whose recall the words name beside ROC-AUC.
    alpha : float
        Chance of a false warning, shared by the figures tested.
    min_cars, min_failures : int
        Fewest labelled cars, and failures among them, before anything is judged.
    span : str
        When the cars were road-tested (``2024-05 to 2024-07``), for the words.

    Returns
    -------
    Check
    """
    columns = ["promised", "now", "at_rate", "difference", "p_value", "p_adjusted", "slipped"]
    cars, failures = (pooled.cars, pooled.failures) if pooled else (0, 0)
    counted = (pooled.at_rate if pooled else None) or {"rate": None, "figures": {}}
    rows = []
    for name in watched(budgets):
        recall = name.startswith("recall_at_") and name in counted["figures"]
        then = promise.get(name)
        now = counted["figures"][name] if recall else (pooled.figures.get(name) if pooled else None)
        if not then or not now or None in (then.get("low"), then.get("high"), now.get("low"), now.get("high")):
            continue
        spread = np.hypot((then["high"] - then["low"]) / (2 * _Z95), (now["high"] - now["low"]) / (2 * _Z95))
        gap = now["value"] - then["value"]
        p = float(norm.cdf(gap / spread)) if spread > 0 else float(gap >= 0)
        rows.append({"figure": name, "promised": then, "now": now, "at_rate": counted["rate"] if recall else None,
                     "difference": gap, "p_value": p})
    tests = pd.DataFrame(rows, columns=["figure", *columns[:-2]]).set_index("figure")
    tests["p_adjusted"] = holm(tests["p_value"].to_numpy()) if len(tests) else []
    tests["slipped"] = tests["p_adjusted"] <= alpha
    judged = cars >= min_cars and failures >= min_failures and len(tests) > 0
    on = tr("{cars} cars road-tested since it was kept{span}, {failures} of them failed", cars=written(cars),
            span=f" ({span})" if span else "", failures=written(failures))
    if not judged:
        why = tr("Production {version}: {cars} cars road-tested since it was kept have their outcome ({failures} "
                 "road-test failures); its track record is judged from {min_cars} cars and {min_failures} failures, "
                 "so it cannot say yet whether the model keeps its promise.", version=version, cars=written(cars),
                 failures=written(failures), min_cars=written(min_cars), min_failures=written(min_failures))
        return Check(False, False, tests, why, tr("too few cars yet ({cars} with their outcome, {failures} failures)",
                                                  cars=written(cars), failures=written(failures)))
    slipped = tests[tests["slipped"]]
    if slipped.empty:
        shown = "; ".join(tr("{figure} {now} against {promised} promised", figure=metric_label(name),
                             now=interval(row.now), promised=interval(row.promised))
                          for name, row in tests.iterrows() if name in ("roc_auc", f"recall_at_{budget_key(budget)}"))
        why = tr("Production {version} keeps its promise: on {on}, no figure is clearly below what its report "
                 "promised when it was kept ({shown}).", version=version, on=on, shown=shown)
        head = tests.iloc[0]
        return Check(False, True, tests, why, tr("keeps its promise ({cars} cars since kept; {figure} {now}, promised "
                                                 "{promised})", cars=written(cars), figure=metric_label(tests.index[0]),
                                                 now=number(head.now["value"], 3),
                                                 promised=number(head.promised["value"], 3)))
    said = "; ".join(tr("{figure} {now}{counted} against {promised} promised ({lower} lower; one-sided p {p} allowing "
                        "for the {tested} figures tested)", figure=metric_label(name), now=interval(row.now),
                        counted=tr(" (counted at the {rate} failure rate of the promise)", rate=percent(row.at_rate))
                        if pd.notna(row.at_rate) else "", promised=interval(row.promised),
                        lower=number(-row.difference, 3), p=_p(row.p_adjusted), tested=len(tests))
                     for name, row in slipped.iterrows())
    if any(name.startswith("recall_at_") for name in slipped.index):
        lost = tr("It finds fewer of the road-test failures among the cars it puts first than it did")
    else:
        lost = tr("It ranks the cars that fail less well than it did")
    why = tr("Production {version} is slipping: on {on}, it does clearly worse than its report promised when it was "
             "kept. {said}. {lost}: retrain with the latest exports (kafer retrain EXPORTS, or make retrain "
             "DATA=EXPORTS); the comparison will tell whether a new model does better.", version=version, on=on,
             said=said, lost=lost)
    first = slipped.iloc[0]
    return Check(True, True, tests, why, tr("SLIPPING: {figure} {now} against {promised} promised on {cars} cars since "
                                            "kept; retrain", figure=metric_label(slipped.index[0]),
                                            now=number(first.now["value"], 3),
                                            promised=number(first.promised["value"], 3), cars=written(cars)))


def _p(value: float) -> str:
    """A p-value for people: three decimals, ``< 0.001`` below that (``< 0,001`` in pt-BR)."""
    return f"< {written(0.001, 3)}" if value < 0.001 else written(value, 3)


def promised_rate(promise: Mapping, budgets: Sequence[float]) -> float | None:
    """The failure rate of the cars a promise was measured on, read off its figures.

    At a budget ``b``, precision over recall is the failures over the ``ceil(b * n)`` cars inspected,
    so the rate is ``b`` times their ratio (to within one car of the budget); ``None`` when no budget
    has both figures and a recall above 0.
    """
    for budget in budgets:
        recall = (promise.get(f"recall_at_{budget_key(budget)}") or {}).get("value")
        precision = (promise.get(f"precision_at_{budget_key(budget)}") or {}).get("value")
        if recall and precision is not None and 0 < precision * budget / recall < 1:
            return float(precision * budget / recall)
    return None


@dataclass(frozen=True)
class RateNews:
    """How often the plant fails now against when a model learned: the share of road tests that failed.

    ``then_*`` count the cars the model learned from (its training cars), ``now_*`` the labelled cars
    it was judged on (since it was kept, or in one month). ``p_value`` is two-sided (two proportions);
    ``moved`` is ``"less"`` or ``"more"`` when it is at most the test's level, else ``None``.
    """

    then_cars: int
    then_failures: int
    now_cars: int
    now_failures: int
    p_value: float
    moved: str | None

    @property
    def then(self) -> float:
        """The failure rate of the cars the model learned from."""
        return self.then_failures / self.then_cars

    @property
    def now(self) -> float:
        """The failure rate of the cars it was judged on."""
        return self.now_failures / self.now_cars

    @property
    def change(self) -> str:
        """``7.0% → 3.4%`` (``7,0 % → 3,4 %`` in pt-BR)."""
        return f"{percent(self.then)} → {percent(self.now)}"

    def words(self) -> str | None:
        """The news in words when the plant clearly fails more or less often, else ``None``."""
        if self.moved is None:
            return None
        counts = tr("{now} of the {now_cars} cars road-tested since it was kept failed their road test, against {then} "
                    "of the {then_cars} cars the model learned from ({change}; two-sided p {p})",
                    now=percent(self.now), now_cars=written(self.now_cars), then=percent(self.then),
                    then_cars=written(self.then_cars), change=self.change, p=_p(self.p_value))
        if self.moved == "less":
            return tr("The plant fails less often: {counts}. That is news of the plant, not of the model: with fewer "
                      "failures to find, PR-AUC and precision fall however well the model ranks (they are shown, not "
                      "tested), and the inspection list holds fewer failures.", counts=counts)
        return tr("The plant fails more often: {counts}. That is news of the plant, not of the model: with more "
                  "failures, PR-AUC and precision rise however well the model ranks (they are shown, not tested), and "
                  "a list of the same length can hold a smaller share of all failures.", counts=counts)

    def to_dict(self) -> dict:
        """JSON-ready: the counts, both rates, ``p_value``, ``moved`` and the news in words."""
        return {"then": {"cars": self.then_cars, "failures": self.then_failures, "rate": self.then},
                "now": {"cars": self.now_cars, "failures": self.now_failures, "rate": self.now},
                "p_value": self.p_value, "moved": self.moved, "news": self.words()}


def failure_rate_news(learned: Mapping | None, now: Period | None, *, alpha: float) -> RateNews | None:
    """Whether the plant fails more or less often than on the cars a model learned from.

    Parameters
    ----------
    learned : dict or None
        The model's ``trained_on`` (``cars``, ``positives``); ``None`` when it recorded none.
    now : Period or None
        The cars it was judged on (their ``cars`` and ``failures``).
    alpha : float
        Level of the two-sided test of two proportions: the rate moved when its p-value is at most this.

    Returns
    -------
    RateNews or None
        ``None`` when either side has no labelled car.
    """
    if not learned or not learned.get("cars") or now is None or not now.cars:
        return None
    n0, k0, n1, k1 = int(learned["cars"]), int(learned["positives"]), now.cars, now.failures
    pooled = (k0 + k1) / (n0 + n1)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    gap = k1 / n1 - k0 / n0
    p = float(2 * norm.sf(abs(gap) / spread)) if spread > 0 else 1.0
    return RateNews(n0, k0, n1, k1, p, ("less" if gap < 0 else "more") if p <= alpha else None)


@dataclass(frozen=True)
class Record:
    """One model's track record over the time it was in production.

    ``cars`` holds every car it was judged on (``KNR``, ``road_test_at``, ``label_known``,
    ``label_rod``, ``probability``); ``periods`` one :class:`Period` per calendar month of road test;
    ``pooled`` all of them together; ``check`` the warning; ``learned`` the cars and failures it
    learned from (its ``trained_on``), against which :attr:`rate` tells whether the plant fails more
    or less often now, at the level ``alpha``.
    """

    version: str
    family: str | None
    tenures: tuple[Tenure, ...]
    promise: Mapping
    threshold: float | None
    cars: pd.DataFrame
    periods: tuple[Period, ...]
    pooled: Period | None
    check: Check
    learned: Mapping | None = None
    alpha: float = 0.05
    #: Which cars it is judged on when acted-on lists shaped some outcomes (:func:`judged_without_lists`).
    judged_on: str | None = None

    @property
    def rate(self) -> RateNews | None:
        """How often the plant fails since the model was kept against the cars it learned from."""
        return failure_rate_news(self.learned, self.pooled, alpha=self.alpha)

    @property
    def span(self) -> str:
        """The months of road test it was judged on, ``2024-05 to 2024-07``."""
        return _span(self.periods)

    @property
    def months(self) -> tuple[Period, ...]:
        """The periods that are months: at least :data:`MIN_MONTH_SHARE` of the median month's cars at their
        road test (the first and last months of the data are often slivers of a few days)."""
        if not self.periods:
            return ()
        typical = float(np.median([p.road_tested for p in self.periods]))
        return tuple(p for p in self.periods if p.road_tested >= MIN_MONTH_SHARE * typical)

    @property
    def latest_month(self) -> Period | None:
        """The latest of :attr:`months`, whose share of cars inside the budget says whether the threshold drifted."""
        return self.months[-1] if self.months else None

    def threshold_note(self, *, budget: float) -> str | None:
        """A sentence when the latest month's share of cars inside the budget drifted far from it, else ``None``."""
        latest = self.latest_month
        if latest is None or not latest.inside_budget or not latest.inside_budget["far"]:
            return None
        share = latest.inside_budget
        fewer = share["value"] < budget
        figures = dict(month=period_words(latest.period), threshold=percent(self.threshold),
                       share=percent(share["value"]), low=percent(share["low"]), high=percent(share["high"]),
                       cars=written(latest.road_tested), budget=percent(budget, 0))
        if fewer:
            said = tr("In {month} the operating threshold ({threshold}) flagged {share} [{low}, {high}] of the {cars} "
                      "cars at their road test, fewer than the budget of {budget} it was set for: fewer cars look as "
                      "risky as the riskiest {budget} did when the model was kept", **figures)
        else:
            said = tr("In {month} the operating threshold ({threshold}) flagged {share} [{low}, {high}] of the {cars} "
                      "cars at their road test, more than the budget of {budget} it was set for: more cars look as "
                      "risky as the riskiest {budget} did when the model was kept", **figures)
        month = failure_rate_news(self.learned, latest, alpha=self.alpha)
        retrain = tr("A retrain sets a threshold on the latest cars; its comparison says whether the new model ranks "
                     "better.")
        if month is not None and month.moved == ("less" if fewer else "more"):
            why = (tr(", and the plant fails less often too ({change} of road tests that month): the threshold follows "
                      "the plant, this is no fault of the model.", change=month.change) if fewer else
                   tr(", and the plant fails more often too ({change} of road tests that month): the threshold follows "
                      "the plant, this is no fault of the model.", change=month.change))
        elif month is not None:
            why = tr(", while the plant fails about as often as when the model learned ({change} of road tests that "
                     "month): the cars' inputs moved (what moved in them is below). {retrain}", change=month.change,
                     retrain=retrain)
        else:
            why = tr(" (what moved in its inputs is below). {retrain}", retrain=retrain)
        use = (tr(" The flagged list is shorter than planned: to use the whole budget, inspect the riskiest {budget} "
                  "by rank (kafer predict ranks every car), the flagged ones first.", budget=percent(budget, 0))
               if fewer else
               tr(" The flagged list is longer than planned: when the inspectors cannot test every flagged car, test "
                  "the riskiest {budget} by rank first.", budget=percent(budget, 0)))
        return said + why + use

    def to_dict(self, *, budget: float) -> dict:
        """JSON-ready."""
        rate = self.rate
        return {"version": self.version, "family": self.family, "alert": self.check.alert,
                "judged": self.check.judged, "why": self.check.why,
                "learned_from": ({"cars": int(self.learned["cars"]), "failures": int(self.learned["positives"])}
                                 if self.learned else None),
                "failure_rate": rate.to_dict() if rate else None,
                "tenures": [asdict(t) for t in self.tenures], "threshold": self.threshold,
                "promise": {name: _triple(f) for name, f in self.promise.items() if isinstance(f, Mapping)},
                "pooled": self.pooled.to_dict(budget=budget) if self.pooled else None,
                "tests": [{"figure": name, "promised": _triple(row.promised), "now": _triple(row.now),
                           "at_rate": None if pd.isna(row.at_rate) else row.at_rate, "difference": row.difference, "p_value": row.p_value, "p_adjusted": row.p_adjusted,
                           "slipped": bool(row.slipped)} for name, row in self.check.tests.iterrows()],
                "threshold_note": self.threshold_note(budget=budget), "judged_on": self.judged_on,
                "periods": [p.to_dict(budget=budget) for p in self.periods]}


def _span(periods: Sequence[Period]) -> str:
    if not periods:
        return ""
    first, last = period_words(periods[0].period), period_words(periods[-1].period)
    return first if first == last else tr("{first} to {last}", first=first, last=last)


#: How each language writes a month of road test (English: as the record keys it).
_MONTH = {"en": "{year}-{month}", "pt-BR": "{month}/{year}"}


def period_words(period: str) -> str:
    """A period's name for people: a month of road test as the current language writes it (``2024-05``;
    ``05/2024`` in pt-BR), the pooled period in words (``since kept``); the record keeps the keys."""
    if period == "since kept":
        return tr("since kept")
    year, dash, month = period.partition("-")
    return _MONTH[current()].format(year=year, month=month) if dash and year.isdigit() and month.isdigit() else period


def _triple(figure: Mapping | None) -> list | None:
    return None if not figure or figure.get("value") is None else [figure["value"], figure.get("low"),
                                                                    figure.get("high")]


Measure = Callable[..., Period]


def judge(version: str, cars: pd.DataFrame, p: np.ndarray, *, promise: Mapping, settings: Settings,
          family: str | None = None, spans: Sequence[Tenure] = (), measure: Measure = period_figures,
          learned: Mapping | None = None) -> Record:
    """A model's track record from its scores on the cars it is judged on (pure).

    Parameters
    ----------
    version : str
    cars : pandas.DataFrame
        The cars scored at their road test while it was in production, none of its training cars:
        ``KNR``, ``road_test_at``, ``label_known``, ``label_rod``.
    p : numpy.ndarray
        Its probabilities for them.
    promise : dict
        Its registry entry's ``metrics`` (with ``operating_threshold`` when it has one).
    settings : Settings
    family : str, optional
    spans : sequence of Tenure
        When it was in production (kept in the record).
    measure : callable
        :func:`period_figures`, or a function that gives what it would (a cache of it).
    learned : dict, optional
        The cars it learned from, its ``trained_on`` (``cars``, ``positives``): the failure rate the
        plant's is set against (:func:`failure_rate_news`).

    Returns
    -------
    Record
    """
    scored = cars[["KNR", "road_test_at", "label_known", "label_rod"]].assign(probability=np.asarray(p, dtype=float))
    scored = scored.sort_values(["road_test_at", "KNR"], ignore_index=True, kind="stable")
    threshold = promise.get("operating_threshold")
    month = pd.to_datetime(scored["road_test_at"]).dt.strftime("%Y-%m")
    periods = tuple(measure(name, scored[month == name], scored.loc[month == name, "probability"].to_numpy(),
                            threshold=threshold, settings=settings) for name in sorted(month.unique()))
    pooled = (measure("since kept", scored, scored["probability"].to_numpy(), threshold=threshold,
                      settings=settings, at_rate=promised_rate(promise, settings.budgets)) if len(scored) else None)
    check = check_promise(pooled, promise, version=version, budgets=settings.budgets,
                          budget=settings.operating_budget, alpha=settings.monitor_alpha,
                          min_cars=settings.min_compare_cars, min_failures=settings.min_compare_failures,
                          span=_span(periods))
    return Record(version, family, tuple(spans), promise, threshold, scored, periods, pooled, check, learned,
                  settings.monitor_alpha)


@dataclass(frozen=True)
class TrackRecord:
    """Production's track record, those of the models before it, the decisions, and its inputs' drift."""

    lake: str
    data_version: str
    budget: float
    tolerance: float
    production: Record | None
    earlier: tuple[Record, ...]
    marks: tuple[Mark, ...]
    drift: InputDrift | None

    @property
    def alert(self) -> bool:
        """Whether production is flagged as slipping."""
        return bool(self.production and self.production.check.alert)

    @property
    def why(self) -> str:
        """The warning (or its absence) in words, then the failure-rate news when the plant clearly fails
        more or less often, then the threshold's share when it drifted far from the budget."""
        if self.production is None:
            return tr("No model is in production in the lake {lake} yet: there is no promise to keep. Keep one first "
                      "(kafer decide RUN keep-new --by NAME --why TEXT, or the decision desk).", lake=self.lake)
        rate = self.production.rate
        parts = (self.production.check.why, rate.words() if rate else None, self.production.judged_on,
                 self.production.threshold_note(budget=self.budget))
        return " ".join(part for part in parts if part)

    @property
    def news(self) -> str | None:
        """The failure-rate news in words (``None`` when the plant fails about as often as when production learned)."""
        rate = self.production.rate if self.production else None
        return rate.words() if rate else None

    @property
    def headline(self) -> str:
        """One line: production, whether it keeps its promise, and whether the plant fails more or less often."""
        if self.production is None:
            return tr("no model in production")
        rate = self.production.rate
        moved = ""
        if rate and rate.moved:
            moved = (tr("; the plant fails less often ({change})", change=rate.change) if rate.moved == "less" else
                     tr("; the plant fails more often ({change})", change=rate.change))
        latest = self.production.latest_month
        note = ""
        if self.production.threshold_note(budget=self.budget):
            note = (tr("; its threshold flags fewer cars than the budget")
                    if latest.inside_budget["value"] < self.budget else
                    tr("; its threshold flags more cars than the budget"))
        return tr("production {version} {headline}{moved}{note}", version=self.production.version,
                  headline=self.production.check.headline, moved=moved, note=note)

    @property
    def records(self) -> tuple[Record, ...]:
        """Every model ever in production, oldest first (production last)."""
        return self.earlier + ((self.production,) if self.production else ())

    def to_dict(self) -> dict:
        """JSON-ready: ``alert``, ``why``, ``production`` (its version), ``failure_rate`` (then, now, whether it
        moved, the news in words), ``periods`` (its months) and the rest."""
        record = self.production.to_dict(budget=self.budget) if self.production else None
        return {"alert": self.alert, "why": self.why, "production": self.production.version if self.production else None,
                "failure_rate": record["failure_rate"] if record else None,
                "lake": self.lake, "data_version": self.data_version, "budget": self.budget,
                "periods": record["periods"] if record else [], "record": record,
                "earlier": [r.to_dict(budget=self.budget) for r in self.earlier],
                "decisions": [asdict(m) for m in self.marks],
                "drift": self.drift.to_dict() if self.drift else None}


def track_record(lake: Lake, *, settings: Settings, data_version: str | None = None, earlier: bool = True,
                 drift: bool = True) -> TrackRecord:
    """Production's track record (and each earlier production model's) on a curated version of the lake.

    Parameters
    ----------
    lake : Lake
    settings : Settings
    data_version : str, optional
        The curated version read (default: the current one; a run passes the version it pinned).
    earlier : bool
        Judge the models in production before the current one too.
    drift : bool
        Compare production's inputs on its training cars and on the cars it scored since.

    Returns
    -------
    TrackRecord

    Raises
    ------
    LakeError
        When the lake holds no curated table yet, or a model's artifact is damaged.
    """
    data_version = data_version or catalog.current_version(lake)
    if data_version is None:
        raise LakeError(tr("the lake {lake} holds no curated table yet: ingest an upload first (kafer ingest FOLDER)",
                           lake=lake.url))
    table = catalog.features(lake, data_version)
    shaped = frozenset(lists.shaped_as_of(lake, data_version)["KNR"])
    log = registry.decisions(lake)
    metas = {m["version"]: m for m in registry.versions(lake)}
    boundaries = [_boundary(lake, record, metas) for record in log]
    spans = tenures(log, boundaries=boundaries)
    road_tested = {v: _road_tested(lake, v) for v in {s.start_data for s in spans} | {s.end_data for s in spans} if v}
    current = registry.production(lake)
    versions = list(dict.fromkeys(s.version for s in spans))
    chosen = [v for v in versions if earlier or (current and v == current["version"])]
    models = {v: load_model(registry.load_artifact(lake, v), estimators=False) for v in chosen}
    records = {v: _record(lake, models[v], metas[v], [s for s in spans if s.version == v], table, road_tested,
                          data_version=data_version, settings=settings, shaped=shaped) for v in chosen}
    production = records.get(current["version"]) if current else None
    marks = tuple(Mark(record["at"], _data_end(lake, boundary), record["choice"], record["by"], record["before"],
                       record["after"]) for record, boundary in zip(log, boundaries))
    shift = None
    if drift and production is not None and len(production.cars):
        shift = _drift(lake, production, models[production.version], table, data_version=data_version,
                       settings=settings)
    return TrackRecord(lake.url, data_version, settings.operating_budget, settings.threshold_tolerance, production,
                       tuple(records[v] for v in chosen if production is None or v != production.version), marks, shift)


def _boundary(lake: Lake, record: Mapping, metas: Mapping[str, dict]) -> str | None:
    """The curated version the lake held when a decision was made: a kept candidate's is the version
    its run pinned (what it and the person saw); otherwise the newest one made by then."""
    candidate = metas.get(record.get("candidate") or "")
    if candidate is not None and candidate.get("data_version"):
        return candidate["data_version"]
    made = [v for v in catalog.curated_versions(lake)
            if catalog.curated_manifest(lake, v)["created_at"][:19] <= str(record["at"])[:19]]
    return made[-1] if made else None


def _road_tested(lake: Lake, version: str) -> frozenset:
    if not catalog.has_features(lake, version):
        return frozenset()
    table = catalog.features(lake, version)
    return frozenset(table.loc[table["road_test_at"].notna(), "KNR"].astype(str))


def _data_end(lake: Lake, version: str | None) -> str | None:
    """Where the exports of a curated version end: the chart's place for a decision made on it."""
    if version is None:
        return None
    periods = catalog.curated_manifest(lake, version).get("periods") or {}
    return max((end for _, end in periods.values()), default=None)


def _record(lake: Lake, model: Model, meta: Mapping, spans: list[Tenure], table: pd.DataFrame,
            road_tested: Mapping[str, frozenset], *, data_version: str, settings: Settings,
            shaped: frozenset = frozenset()) -> Record:
    version = meta["version"]
    inside = tenure_cars(table, spans, road_tested=road_tested)
    trained = registry.training_cars(lake, version, table=table)
    cars = table[inside & ~table["KNR"].astype(str).isin(trained).to_numpy()].reset_index(drop=True)
    p = scores(lake, version, model, cars, data_version=data_version) if len(cars) else np.empty(0)
    promise, judged_on = meta.get("metrics") or {}, None
    listed = cars["KNR"].astype(str).isin(shaped).to_numpy()
    if listed.any():
        below = _promise_below(lake, model, meta, settings=settings)
        cars, promise, judged_on = judged_without_lists(cars, p, listed, promise=promise, below=below)

    def measure(name: str, cars: pd.DataFrame, p: np.ndarray, *, threshold: float | None, settings: Settings,
                at_rate: float | None = None) -> Period:
        """:func:`period_figures`, kept with the model: the bootstrap of a month is run once."""
        digest = _digest(cars, p, threshold=threshold, settings=settings, at_rate=at_rate)
        cached = catalog.model_figures(lake, version, digest)
        if cached is not None:
            return Period(**{**cached, "period": name})
        figures = period_figures(name, cars, p, threshold=threshold, settings=settings, at_rate=at_rate)
        catalog.save_model_figures(lake, version, digest, asdict(figures))
        return figures

    record = judge(version, cars, p, promise=promise, settings=settings, family=meta.get("family"), spans=spans,
                   measure=measure, learned=meta.get("trained_on"))
    if judged_on is None:
        return record

    def unflagged(period: Period) -> Period:  # no judged car reached the threshold: what the flag found is unknown
        return replace(period, recall_at_threshold=None, precision_at_threshold=None)

    return replace(record, periods=tuple(map(unflagged, record.periods)), judged_on=judged_on,
                   pooled=unflagged(record.pooled) if record.pooled else None)


def judged_without_lists(cars: pd.DataFrame, p: np.ndarray, listed: np.ndarray, *, promise: Mapping,
                         below: Mapping | None) -> tuple[pd.DataFrame, Mapping, str]:
    """The documented correction for cars whose outcome an acted-on list shaped (pure).

    A car flagged on a list that was acted on was inspected because the model chose it: its outcome
    says what the inspection did (a fault fixed before the road test, or found by a harder test),
    not what the model foresaw, so it is never judged. Leaving those cars out alone would judge the
    model on its safest cars against a promise measured on all of them, which it cannot keep; so the
    model is judged on its cars below its operating threshold, against what it did below that
    threshold on its evaluation cars (``below``). Cars are left out by their ``label_known`` (they
    still count among the cars scored at their road test, for the threshold's share).

    Parameters
    ----------
    cars : pandas.DataFrame
        The cars the model is judged on (``label_known``).
    p : numpy.ndarray
        Its probabilities for them.
    listed : numpy.ndarray of bool
        Whether an acted-on list flagged each car.
    promise : dict
        Its registry entry's ``metrics`` (``operating_threshold``).
    below : dict or None
        Its figures on its evaluation cars below its operating threshold (:func:`kafer.metrics.compare`'s);
        ``None`` when they cannot be worked out (no threshold, or its training data is gone).

    Returns
    -------
    cars, promise, words
        The cars with the left-out ones not known, the promise to judge them against, and which cars
        are judged, in words.
    """
    known = cars["label_known"].fillna(False).astype(bool).to_numpy()
    threshold = promise.get("operating_threshold")
    flagged = written(int((listed & known).sum()))
    if threshold is None or below is None:
        keep = known & ~listed
        return cars.assign(label_known=keep), promise, tr(
            "Inspection lists that were acted on flagged {flagged} of the cars with an outcome: their outcome says what "
            "the inspection did, not what the model foresaw, so they are left out, and it is judged on the other "
            "{kept}. Its promise was measured on all its evaluation cars and cannot be restricted alike (its registry "
            "entry records no operating threshold, or its training data is gone): on cars the list left it reads low.",
            flagged=flagged, kept=written(int(keep.sum())))
    keep = known & ~listed & (np.asarray(p) < threshold)
    return cars.assign(label_known=keep), {**below, "operating_threshold": threshold}, tr(
        "Inspection lists that were acted on flagged {flagged} of the cars with an outcome: their outcome says what the "
        "inspection did, not what the model foresaw, so they are left out. So that the others are not its safest cars "
        "judged against a promise made on all, it is judged on its cars below its operating threshold ({threshold} %; "
        "{kept} with an outcome), against what it did below that threshold on its evaluation cars (ROC-AUC {roc_auc}).",
        flagged=flagged, threshold=written(threshold * 100, 1), kept=written(int(keep.sum())),
        roc_auc=interval(below.get("roc_auc")))


def _promise_below(lake: Lake, model: Model, meta: Mapping, *, settings: Settings) -> dict | None:
    """A model's figures on its evaluation cars below its operating threshold, kept with the model; ``None``
    without a threshold, without its training data, or when those cars hold a single class."""
    version, data_version = meta["version"], meta.get("data_version")
    threshold = (meta.get("metrics") or {}).get("operating_threshold")
    if threshold is None or not data_version or not catalog.has_features(lake, data_version):
        return None
    digest = hashlib.sha256(json.dumps({"below": threshold, "data_version": data_version,
                                        "budgets": list(settings.budgets), "rounds": settings.bootstrap_rounds,
                                        "seed": settings.seed}, sort_keys=True).encode()).hexdigest()
    cached = catalog.model_figures(lake, version, digest)
    if cached is not None:
        return cached or None
    table = catalog.features(lake, data_version)
    left_out = registry.training_cars(lake, version, table=table) | set(lists.shaped_as_of(lake, data_version)["KNR"])
    cars = labelled(table)
    cars = cars[~cars["KNR"].astype(str).isin(left_out)].reset_index(drop=True)  # its evaluation cars, as compared
    p = scores(lake, version, model, cars, data_version=data_version) if len(cars) else np.empty(0)
    below = p < threshold
    y = cars["label_rod"].to_numpy(dtype=int)[below]
    figures = {}
    if 0 < y.sum() < y.size:
        figures = compare(y, p[below], budgets=settings.budgets, rounds=settings.bootstrap_rounds,
                          seed=settings.seed)["candidate"]
    catalog.save_model_figures(lake, version, digest, figures)
    return figures or None


def _digest(cars: pd.DataFrame, p: np.ndarray, *, threshold: float | None, settings: Settings,
            at_rate: float | None = None) -> str:
    """What a period's figures depend on: its cars, their labels and scores, and the settings used."""
    digest = hashlib.sha256(json.dumps({"threshold": threshold, "at_rate": at_rate, "budgets": list(settings.budgets),
                                        "rounds": settings.bootstrap_rounds, "seed": settings.seed,
                                        "operating_budget": settings.operating_budget,
                                        "tolerance": settings.threshold_tolerance}, sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(cars[["KNR", "label_known", "label_rod"]].reset_index(drop=True),
                                             index=False).to_numpy().tobytes())
    digest.update(np.asarray(p, dtype=float).tobytes())
    return digest.hexdigest()


def scores(lake: Lake, version: str, model: Model, cars: pd.DataFrame, *, data_version: str) -> np.ndarray:
    """The probability the model ``version`` gives each of ``cars`` (rows of the curated table ``data_version``).

    A car's score is taken from the model's cached scores when its inputs' fingerprint is unchanged
    (:func:`fingerprints`), else computed (``model`` may come without its estimators: it is then
    loaded whole, only when some car needs scoring); the scores of ``data_version`` are then cached
    with the model, written once.

    Raises
    ------
    ModelError
        When the model needs facts and the version holds none.
    """
    knr = pa.array(cars["KNR"].astype(str), pa.string())
    facts = catalog.facts(lake, data_version, cars=knr) if catalog.has_facts(lake, data_version) else None
    prints = fingerprints(cars, facts, columns=model.table_features)
    cached = catalog.model_scores(lake, version, data_version=data_version)
    stored = cached is not None
    cached = cached if stored else catalog.model_scores(lake, version)
    p = np.full(len(cars), np.nan)
    if cached is not None:
        known = pd.Series(cached["probability"].to_numpy(), index=pd.MultiIndex.from_arrays(
            [cached["KNR"].astype(str), cached["fingerprint"].astype("uint64")]))
        p = known.reindex(pd.MultiIndex.from_arrays([cars["KNR"].astype(str), prints])).to_numpy(dtype=float, copy=True)
    fresh = np.isnan(p)
    if fresh.any():
        if not model.predicts:
            model = load_model(registry.load_artifact(lake, version))
        p[fresh] = model.predict_proba(cars[fresh].reset_index(drop=True), facts)
    if not stored:
        catalog.save_model_scores(lake, version, data_version, pd.DataFrame(
            {"KNR": cars["KNR"].astype(str).to_numpy(), "fingerprint": prints, "probability": p}
        ).sort_values("KNR", ignore_index=True))
    return p


def fingerprints(cars: pd.DataFrame, facts: pa.Table | None, *, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit fingerprint of each car's inputs: its values of ``columns`` and all its facts.

    Two cars (or one car in two curated versions) with the same fingerprint get the same score from
    a model reading those columns and facts.
    """
    own = pd.util.hash_pandas_object(cars[list(columns)].reset_index(drop=True), index=False).to_numpy()
    if facts is None or facts.num_rows == 0:
        return own
    rows = facts.select(["KNR", "kind", "key", "value"]).to_pandas()
    codes, uniques = pd.factorize(rows["KNR"])
    summed = np.zeros(len(uniques), dtype=np.uint64)
    np.add.at(summed, codes, pd.util.hash_pandas_object(rows, index=False).to_numpy())
    per_car = pd.Series(summed, index=uniques).reindex(cars["KNR"].astype(str).to_numpy(), fill_value=0)
    return own ^ (per_car.to_numpy(dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _drift(lake: Lake, record: Record, model: Model, table: pd.DataFrame, *, data_version: str,
           settings: Settings) -> InputDrift | None:
    """Production's inputs on its training cars against the cars it scored since."""
    trained = registry.training_cars(lake, record.version, table=table)
    old = table[table["KNR"].astype(str).isin(trained)].reset_index(drop=True)
    if old.empty:
        return None
    new = table[table["KNR"].astype(str).isin(set(record.cars["KNR"]))].reset_index(drop=True)
    columns = model.fact_columns
    has_facts = catalog.has_facts(lake, data_version)
    facts = catalog.facts(lake, data_version) if has_facts else None
    return input_drift(old, new, columns=[c for c in model.table_features if c in table.columns],
                       old_facts=facts, new_facts=facts,
                       facts=columns.counts if columns and has_facts else (),
                       attributes=tuple(a for a in CONFIG_ATTRIBUTES if columns and a in columns.categories)
                       if has_facts else (), alpha=settings.monitor_alpha, min_new_cars=settings.fact_min_cars)


def outcome_line(lake: Lake, *, settings: Settings, before: str | None, after: str) -> str:
    """One line after an ingest or a retrain: how production did on the cars that just got their outcome.

    Parameters
    ----------
    lake : Lake
    settings : Settings
    before : str or None
        The curated version before the new exports were merged (``None``: there was none).
    after : str
        The curated version they were merged into (``before`` when nothing was new).

    Returns
    -------
    str
        Production's figures on the cars it scored whose label ``after`` knows and ``before`` did
        not, beside what it promised, and whether it keeps its promise since it was kept (the
        warning is judged on every car since, never on this month alone); what went wrong instead
        when the record cannot be worked out: the exports were taken whatever it says, so this
        never raises a :class:`~kafer.errors.KaferError`.
    """
    try:
        return _outcome_line(lake, settings=settings, before=before, after=after)
    except KaferError as exc:
        return tr("Track record: cannot be worked out ({problem})", problem=exc)


def _outcome_line(lake: Lake, *, settings: Settings, before: str | None, after: str) -> str:
    record = track_record(lake, settings=settings, data_version=after, earlier=False, drift=False)
    production = record.production
    if production is None:
        return tr("Track record: no model is in production yet, so there is no promise to track.")
    known = set()
    if before and before != after and catalog.has_features(lake, before):
        old = catalog.features(lake, before)
        known = set(old.loc[old["label_known"].fillna(False).astype(bool), "KNR"].astype(str))
    since = tr("since it was kept it {headline}", headline=production.check.headline)
    cars = production.cars[production.cars["label_known"].fillna(False).astype(bool)
                           & ~production.cars["KNR"].isin(known)] if before != after else production.cars.iloc[:0]
    if cars.empty:
        return tr("Track record: no car production {version} scored got its outcome with these exports; {since}.",
                  version=production.version, since=since)
    now = period_figures("new", cars, cars["probability"].to_numpy(), threshold=production.threshold,
                         settings=settings)
    budget = f"recall_at_{budget_key(settings.operating_budget)}"
    failures = ntr("{count} road-test failure", "{count} road-test failures", now.failures)
    if not now.figures:
        return tr("Track record: {cars} cars production {version} scored just got their outcome ({failures}: no figure "
                  "is defined on them alone); {since}.", cars=written(now.cars), version=production.version,
                  failures=failures, since=since)
    promised = production.promise
    return tr("Track record: on the {cars} cars that just got their outcome ({failures}) production {version} has "
              "ROC-AUC {roc_auc} and {recall_label} {recall} (promised {promised_roc_auc} and {promised_recall}); "
              "{since}.", cars=written(now.cars), failures=failures, version=production.version,
              roc_auc=interval(now.figures["roc_auc"]), recall_label=metric_label(budget).lower(),
              recall=interval(now.figures[budget]), promised_roc_auc=interval(promised.get("roc_auc")),
              promised_recall=interval(promised.get(budget)), since=since)
