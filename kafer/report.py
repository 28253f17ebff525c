"""Figures, tables and headings for the comparison and scoring notebooks.

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
from .drift import PSI_LARGE, PSI_MODERATE
from .i18n import current, mark, percent, tr
from .i18n import datetime as moment
from .i18n import number as written
from .narrative import FAMILY_WORDS, interval, metric_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def _figure(ncols: int = 1, *, width: float = 6.2, height: float = 4.4):
    """A new figure with ``ncols`` axes side by side, already released by pyplot."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, layout="constrained")
    plt.close(fig)
    return fig, list(axes[0])


#: One colour per model on every chart of Käfer, the same everywhere: the model in production, the new
#: model of a run, and greys for the models that were in production before.
PRODUCTION_COLOUR, NEW_COLOUR = "#1f5fa8", "#e07b00"
_EARLIER_COLOURS = ("#7f7f7f", "#a6a6a6", "#595959", "#c4c4c4")
#: The names a comparison gives its models (``candidate``, ``production``), and how a chart names them.
MODEL_NAMES = {"candidate": mark("new model"), "production": mark("production model")}


def model_name(name: str) -> str:
    """How a chart's legend names a model: ``candidate`` is the new model, in the current language."""
    return tr(MODEL_NAMES[name]) if name in MODEL_NAMES else name


def _colors(names) -> dict:
    """Each model's colour: the new model's and production's always the same (by their key or their
    translated name), any other model a grey."""
    fixed = {"candidate": NEW_COLOUR, "production": PRODUCTION_COLOUR,
             model_name("candidate"): NEW_COLOUR, model_name("production"): PRODUCTION_COLOUR}
    others = [name for name in names if name not in fixed]
    return {name: fixed.get(name) or _EARLIER_COLOURS[others.index(name) % len(_EARLIER_COLOURS)] for name in names}


def _percent_axis():
    """Tick labels of an axis counted of every 100 (``20 %``), written as the current language writes them."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _position: percent(value / 100, 0))


def _checked(y_true, probs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    if not probs:
        raise ModelError("no model's probabilities were given")
    y = np.asarray(y_true)
    out = {name: np.asarray(p, dtype=float) for name, p in probs.items()}
    wrong = [name for name, p in out.items() if p.shape != y.shape]
    if wrong:
        raise ModelError(f"the probabilities of {', '.join(wrong)} are not one per car ({y.size} cars)")
    return y, out


def ranking_curves(y_true, probs: Mapping[str, np.ndarray]) -> Figure:
    """How well each model ranks the cars: ROC curves (left) and precision against recall (right),
    with ROC-AUC and average precision in the legends and chance drawn for reference.

    Parameters
    ----------
    y_true : array-like of 0/1
        Whether each evaluation car failed the road test.
    probs : dict of str to array-like
        Each model's probabilities for the same cars.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: ROC, then precision-recall.

    Raises
    ------
    ModelError
        When no model is given or the arrays differ in length.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y, probs = _checked(y_true, probs)
    fig, (roc, pr) = _figure(2)
    colors = _colors(probs)
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, color=colors[name], label=f"{model_name(name)} (ROC-AUC {roc_auc_score(y, p):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        pr.step(recall, precision, where="post", color=colors[name],
                label=f"{model_name(name)} (PR-AUC {average_precision_score(y, p):.3f})")
    roc.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance (0.5)")
    roc.set(xlabel="share of cars without failure flagged (false positive rate)",
            ylabel="share of failures flagged (recall)", title="ROC curves", xlim=(0, 1), ylim=(0, 1))
    roc.legend(loc="lower right")
    pr.axhline(y.mean(), color="grey", linestyle="--", label=f"chance (failure rate {y.mean():.3f})")
    pr.set(xlabel="share of failures found (recall)", ylabel="share of flagged cars that fail (precision)",
           title="Precision-recall curves", xlim=(0, 1), ylim=(0, 1))
    pr.legend(loc="upper right")
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
        ax.plot(predicted, observed, marker="o", color=colors[name], label=model_name(name))
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
    fig, (ax,) = _figure(width=12.4, height=4.4)
    colors = _colors(probs)
    for row, (name, p) in enumerate(probs.items()):
        share, found = gain_curve(y, p)
        ax.plot(share * 100, found * 100, color=colors[name], label=model_name(name))
        for budget in budgets:
            at = inspected(y.size, budget=budget) / y.size
            recall = float(np.interp(at, share, found)) * 100
            ax.plot([at * 100], [recall], marker="o", color=colors[name])
            ax.annotate(f"{recall:.0f}", (at * 100, 100), textcoords="offset points", xytext=(3, -14 - 13 * row),
                        color=colors[name], fontweight="bold", ha="left")
    ax.plot([0, 100], [0, 100], color="grey", linestyle="--", label=tr("cars picked at random"))
    for budget in budgets:
        ax.axvline(budget * 100, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=tr("cars inspected, riskiest first (of every 100 cars)"),
           ylabel=tr("road-test failures found (of every 100)"), xlim=(0, 100), ylim=(0, 100),
           title=tr("Failures found by inspection budget (numbers at the top: failures found of every 100, "
                    "at each budget)"))
    ax.xaxis.set_major_formatter(_percent_axis())
    ax.yaxis.set_major_formatter(_percent_axis())
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
        ax.set_title(f"{model_name(name)}\nthreshold {threshold:.3f}, {int(flagged.sum()):,} of {y.size:,} cars "
                     "inspected")
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


def risk_chart(ranked: pd.DataFrame, *, top: int = 20, threshold: float | None = None) -> Figure:
    """The scored cars: risk by rank with the inspection budget, and the riskiest cars by KNR.

    Parameters
    ----------
    ranked : pandas.DataFrame
        ``KNR``, ``probability``, ``rank`` and ``in_budget``, riskiest first (as
        :func:`kafer.predict.rank` returns); other columns are ignored.
    top : int
        Cars named in the right-hand panel.
    threshold : float, optional
        The production model's operating threshold, drawn as a line on both panels.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ModelError
        When a column is missing.
    """
    from matplotlib.ticker import PercentFormatter

    missing = [c for c in ("KNR", "probability", "rank", "in_budget") if c not in ranked.columns]
    if missing:
        raise ModelError(f"the ranked list has no column {', '.join(missing)}")
    fig, (left, right) = _figure(2, width=6.0, height=4.8)
    inside = ranked["in_budget"].to_numpy(dtype=bool)
    left.plot(ranked["rank"], ranked["probability"], color="grey", linewidth=1)
    left.scatter(ranked["rank"][inside], ranked["probability"][inside], s=8, color="tab:red",
                 label=f"in the inspection budget ({int(inside.sum()):,} cars)")
    left.set(xlabel="rank (1 = riskiest)", ylabel="risk of failing the road test",
             title=f"{len(ranked):,} cars scored")
    head = ranked.head(top)
    right.barh(head["KNR"].astype(str)[::-1], head["probability"][::-1],
               color=np.where(head["in_budget"].to_numpy(dtype=bool)[::-1], "tab:red", "tab:grey"))
    right.set(xlabel="risk of failing the road test", title=f"Riskiest {len(head)} cars")
    if threshold is not None:
        left.axhline(threshold, color="tab:red", linestyle="--", linewidth=1,
                     label=f"operating threshold {threshold * 100:.1f} %")
        right.axvline(threshold, color="tab:red", linestyle="--", linewidth=1)
    left.legend(loc="upper right")
    for axis in (left.yaxis, right.xaxis):
        axis.set_major_formatter(PercentFormatter(xmax=1, decimals=0, symbol=" %"))
    return fig


def _day(iso: str | None) -> str:
    return "—" if not iso else moment(str(iso)[:16])


def _trained(model: Mapping) -> str:
    trained = model.get("trained_on") or {}
    if not trained:
        return "—"
    return tr("{cars} cars ({failures} road-test failures) built {start} to {end}", cars=written(trained["cars"]),
              failures=written(trained["positives"]), start=_day(trained["produced_from"]),
              end=_day(trained["produced_to"]))


#: The comparison report's sections (notebook 04_compare): each heading and the sentences under it,
#: English being the message ids; :func:`section` shows them in the run's language.
SECTIONS: dict[str, tuple[str, str]] = {
    "report": (mark("Comparison report"), mark(
        "The new model and the production model score the **same evaluation cars**: the latest labelled cars, "
        "none of which either model was trained on. Every figure has a 95 % bootstrap interval; the difference "
        "between the models is a paired bootstrap (the same resampled cars for both), so it says how sure the "
        "difference is. Inspectors test the riskiest cars first: *recall at 10 %* is the share of all road-test "
        "failures found when the riskiest 10 % of cars are tested.")),
    "promise": (mark("Is production keeping its promise?"), mark(
        "The production model's figures on the cars it scored since it was kept (their road test reached the lake "
        "after it was kept; none of its training cars), per month of road test with 95 % intervals, beside what its "
        "report promised (dashed); each decision is marked where the data it was made on ended. It is flagged as "
        "slipping only when the figures pooled since it was kept are clearly below the promise, allowing for the "
        "several figures tested and for the promise's own uncertainty.")),
    "verdict": (mark("Verdict"), ""),
    "figures": (mark("Figures with 95 % intervals"), mark(
        "*new − production* is the paired difference: above 0 the new model is better (for the Brier score, below "
        "0). An interval that includes 0 means the difference is not clear.")),
    "budgets": (mark("Failures found by inspection budget"), ""),
    "ranking": (mark("How well each model ranks the cars"), ""),
    "calibration": (mark("Calibration"), mark("Do predicted probabilities match observed failure rates?")),
    "threshold": (mark("At the operating threshold"), ""),
    "drivers": (mark("What drives the risk"), mark(
        "How much the new model's ROC-AUC falls on the evaluation cars when one family of inputs (or one input) is "
        "shuffled among the cars, with 95 % bootstrap intervals. A family *stands out* only when the fall is clearly "
        "above zero even allowing for all the families compared; the strongest single inputs were picked on these "
        "same cars. For each, the failure rate of the cars with and without it.")),
    "family": (mark("How the model family was chosen"), ""),
    "changes": (mark("What changed in the data since the production model was trained"), mark(
        "The cars then and now; then each feature family of production's inputs, on the cars it learned from "
        "against the cars it scored since it was kept: an input *moved clearly* when the change is beyond chance "
        "even allowing for every input compared (Holm) and not negligible (PSI of at least 0.1).")),
    "settings": (mark("The settings this run used"), mark(
        "Snapshotted when the run started; every step read them. Those that shape a label or a feature are part of "
        "the data version's definitions: a table built with others is never reused.")),
}


def section(name: str) -> str:
    """One section's heading and the sentences under it (:data:`SECTIONS`), as Markdown in the current
    language: the report reads in the plant's language like its figures."""
    heading, text = SECTIONS[name]
    return f"## {tr(heading)}" + (f"\n\n{tr(text)}" if text else "")


def report_header(metrics: Mapping) -> str:
    """The report's first lines (Markdown, in the current language): the run, both models and the data
    version, and what the figures mean when there is no production model yet or no fair comparison."""
    candidate, production = metrics["models"]["candidate"], metrics["models"]["production"]
    against = (tr("production model {version}", version=production["version"]) if production
               else tr("no production model (first run)"))
    none = "—"
    lines = ["## " + tr("Run {run}: new model {new} against {against}", run=metrics["run_id"],
                        new=candidate["version"], against=against), "",
             f"| | {tr('new model')} | {tr('production model')} |", "|---|---|---|",
             f"| {tr('version')} | {candidate['version']} | "
             f"{production['version'] if production else tr('none yet')} |",
             f"| {tr('family')} | {candidate['family']} | {production['family'] if production else none} |",
             f"| {tr('trained on')} | {_trained(candidate)} | {_trained(production) if production else none} |",
             f"| {tr('data version')} | {metrics['data_version']} | "
             f"{production.get('data_version') or none if production else none} |",
             "", tr("Evaluated on {cars} cars built after every training car of the new model, {failures} of them "
                    "failed the road test.", cars=written(metrics["compared_cars"]),
                    failures=written(metrics["compared_positives"]))]
    fair = metrics.get("fair_comparison") or {}
    if metrics.get("libraries"):
        lines += ["", f"**{metrics['libraries']}**"]
    if production is None:
        lines += ["", tr("**There is no production model yet.** The figures below compare the new model with testing "
                         "cars at random (chance): keeping it puts a model in production for the first time.")]
    elif not fair.get("possible", True):
        lines += ["", tr("**No fair comparison with production is possible yet:** {why}. The figures below are the new "
                         "model's alone, against chance.", why=fair["why"])]
    elif fair.get("seen_by_production"):
        lines += ["", tr("{cars} evaluation cars were left out because production was trained on them: both models "
                         "are judged only on cars neither has seen.", cars=written(fair["seen_by_production"]))]
    shaped = metrics.get("shaped_by_lists") or {}
    if shaped.get("training") or shaped.get("evaluation"):
        lines += ["", tr("**Outcomes shaped by the inspection lists:** {training} training cars and {evaluation} "
                         "evaluation cars were flagged on lists that were acted on, so their outcome says what the "
                         "inspection did (a fault fixed before the road test, or found by a harder test), not what "
                         "the car would have done. The new model was not trained on them and neither model is judged "
                         "on them; the operating threshold is still set from every evaluation car's risk. The "
                         "comparison is then made on cars production did not flag, where both models rank less well "
                         "than on all cars (docs/monitoring.md).", training=written(shaped.get("training", 0)),
                         evaluation=written(shaped.get("evaluation", 0)))]
    return "\n".join(lines)


def verdict_markdown(metrics: Mapping) -> str:
    """The verdict, then what the evidence supports, in bold."""
    return f"{metrics['verdict']}\n\n**{metrics['recommendation']['text']}**"


def data_changes_table(changes: pd.DataFrame) -> pd.DataFrame:
    """The data summary (:func:`kafer.steps.data_changes`) in people's words and formats."""
    names = {"cars": "cars", "labelled cars": "cars with a known label",
             "road-test failures": "road-test failures among them", "failure rate": "failure rate",
             "produced from": "first car built", "produced to": "last car built"}

    def shown(what: str, value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "—"
        if what == "failure rate":
            return f"{value:.1%}"
        if what.startswith("produced"):
            return _day(value)
        return f"{int(value):,}"

    out = pd.DataFrame({column: [shown(what, changes.loc[what, column]) for what in changes.index]
                        for column in changes.columns}, index=[names.get(w, w) for w in changes.index])
    return out.rename_axis("")


def drift_sentence(record) -> str:
    """What moved in production's inputs since it was kept (a :class:`kafer.monitor.TrackRecord`), in words."""
    if record.production is None:
        return "There is no production model yet, so there are no cars it scored to compare with those it learned from."
    if record.drift is None:
        return ("Production has scored no car at its road test since it was kept (or its training cars are no longer "
                "in the lake), so nothing can be compared yet.")
    return (f"{record.drift.summary} The population stability index (PSI) says how far a distribution moved: below "
            f"{PSI_MODERATE} no real shift, up to {PSI_LARGE} moderate, above that large. A model that meets cars unlike "
            "those it learned from may rank them worse.")


def drift_table(record) -> pd.DataFrame:
    """Per feature family, how many of production's inputs moved since it was kept, and which most."""
    if record.drift is None:
        return pd.DataFrame(columns=["inputs compared", "moved clearly", "moved most"])
    families = record.drift.families
    return pd.DataFrame({"inputs compared": [f"{n:,}" for n in families["inputs"]],
                         "moved clearly": [f"{n:,}" if n else "none" for n in families["moved"]],
                         "moved most": families["most"].to_numpy()},
                        index=pd.Index([FAMILY_WORDS.get(f, f) for f in families.index], name="family"))


def drift_inputs_table(record, *, top: int = 12) -> pd.DataFrame:
    """The inputs that moved (else the ``top`` that moved most): then and now, PSI, the adjusted p-value."""
    columns = ["family", "then", "now", "PSI", "p (adjusted)", "moved clearly"]
    if record.drift is None:
        return pd.DataFrame(columns=columns)
    inputs = record.drift.inputs
    shown = inputs[inputs["moved"]] if inputs["moved"].any() else inputs.sort_values("psi", ascending=False).head(top)

    def value(v, share: bool) -> str:
        if isinstance(v, str):
            return v
        return "—" if pd.isna(v) else f"{v:.1%}" if share else f"{v:,.2f}"

    share = shown.index.str.contains(":") & ~shown.index.str.startswith("config:")
    return pd.DataFrame({"family": shown["family"].to_numpy(),
                         "then": [value(v, s) for v, s in zip(shown["then"], share)],
                         "now": [value(v, s) for v, s in zip(shown["now"], share)],
                         "PSI": ["—" if pd.isna(v) else f"{v:.2f}" for v in shown["psi"]],
                         "p (adjusted)": ["< 0.001" if v < 0.001 else f"{v:.3f}" for v in shown["p_adjusted"]],
                         "moved clearly": ["yes" if v else "" for v in shown["moved"]]},
                        index=pd.Index(shown["what"].to_numpy(), name="input"))


def record_chart(record) -> Figure:
    """Production's track record (a :class:`kafer.monitor.TrackRecord`), and the models' before it.

    Per calendar month of road test: ROC-AUC, recall at the operating budget and the share of cars
    at or above the operating threshold, each with its 95 % interval; each model's promise as a
    dashed line over its months; each decision as a vertical line where the data it was made on
    ended. Months with a sliver of cars (the ends of the data, see
    :attr:`kafer.monitor.Record.latest_month`) are left to the table: their intervals would hide the rest.
    """
    from matplotlib.dates import DateFormatter, MonthLocator

    pct = budget_key(record.budget)
    panels = (("roc_auc", tr("ROC-AUC (0.5: chance, 1: perfect)")),
              (f"recall_at_{pct}", tr("failures found in the riskiest {budget} (of every 100)", budget=f"{pct} %")),
              ("inside_budget", tr("cars flagged by the threshold\n(of every 100; budget {budget})",
                                   budget=f"{pct} %")))
    fig, axes = _figure(len(panels), width=3.9, height=3.5)
    earlier = _colors([r.version for r in record.records if r is not record.production])
    colors = {r.version: PRODUCTION_COLOUR if r is record.production else earlier[r.version] for r in record.records}
    dates = ([pd.Timestamp(f"{p.period}-15") for r in record.records for p in r.months]
             + [pd.Timestamp(m.data_end) for m in record.marks if m.data_end])
    first, last = (min(dates), max(dates)) if dates else (pd.Timestamp.now(), pd.Timestamp.now())
    spread = max(1, round((last - first).days / 30 / 8))
    for ax, (name, title) in zip(axes, panels):
        scale = 1 if name == "roc_auc" else 100  # shares are drawn of every 100, as the sentences say them
        for model in record.records:
            colour = colors[model.version]
            label = (tr("{version} (production)", version=_short_version(model.version))
                     if model is record.production else _short_version(model.version))
            months = [p for p in model.months if p.triple(name)]
            when = [pd.Timestamp(f"{p.period}-15") for p in months]
            values = np.array([p.triple(name) for p in months], dtype=float).reshape(-1, 3) * scale
            ax.errorbar(when, values[:, 0], yerr=np.abs(values[:, 1:].T - values[:, 0]), fmt="o", color=colour,
                        capsize=3, label=label)
            promised = (model.promise.get(name) or {}).get("value")
            if promised is not None and when:
                ax.hlines(promised * scale, when[0] - pd.Timedelta(days=15), when[-1] + pd.Timedelta(days=15),
                          colors=colour, linestyles="--",
                          label=tr("promised by {version}", version=_short_version(model.version)))
        for mark_ in record.marks:
            if mark_.data_end:
                at = pd.Timestamp(mark_.data_end)
                ax.axvline(at, color="grey", linestyle=":", linewidth=1)
                ax.annotate(_mark_words(mark_), (at, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                            va="top", ha="right", color="dimgrey")
        if name == "inside_budget":
            ax.axhline(record.budget * 100, color="black", linewidth=0.8)
            ax.axhspan(record.budget * (1 - record.tolerance) * 100, record.budget * (1 + record.tolerance) * 100,
                       color="tab:green", alpha=0.08, label=tr("about the budget"))
        if scale == 100:
            ax.yaxis.set_major_formatter(_percent_axis())
        ax.set(title=title, xlabel=tr("month of road test"), ylabel="ROC-AUC" if scale == 1 else tr("of every 100"),
               xlim=(first - pd.Timedelta(days=20), last + pd.Timedelta(days=20)))
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(MonthLocator(interval=spread))
        ax.xaxis.set_major_formatter(DateFormatter("%m/%Y" if current() == "pt-BR" else "%Y-%m"))
        ax.tick_params(axis="x", labelrotation=45)
    handles, labels = axes[0].get_legend_handles_labels()
    band = dict(zip(*reversed(axes[-1].get_legend_handles_labels())))[tr("about the budget")]
    fig.legend([*handles, band], [*labels, tr("about the budget")], loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle(tr("Track record of production model {version}", version=_short_version(record.production.version))
                 if record.production else tr("Track record: no model in production"), fontsize=10)
    return fig


def _short_version(version: str) -> str:
    """``m20241126T201753.123456Z`` → ``m20241126T2017``: enough to tell a lake's models apart on a chart."""
    return version[:14]


def _mark_words(decision) -> str:
    if decision.choice == "keep-old":
        return (tr("keep old ({version})", version=_short_version(decision.before)) if decision.before
                else tr("keep old"))
    if decision.choice == "keep-new":
        return tr("keep new → {version}", version=_short_version(decision.after or ""))
    return tr("roll back → {version}", version=_short_version(decision.after or ""))


def figure_html(fig: Figure, *, alt: str) -> str:
    """A figure as an HTML ``<img>`` (PNG inline), for a page built of HTML widgets."""
    import base64
    import html
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def importance_chart(drivers) -> Figure:
    """What drives the risk: the fall in ROC-AUC when each family, and each strongest input, is shuffled.

    Parameters
    ----------
    drivers : kafer.explain.Drivers

    Returns
    -------
    matplotlib.figure.Figure
        Bars with their 95 % intervals; families and inputs that stand out from noise in colour.
    """
    parts = [("feature families", drivers.families, list(drivers.families.index))]
    if len(drivers.inputs):
        parts.append(("strongest single inputs", drivers.inputs, list(drivers.inputs["with"])))
    fig, axes = _figure(len(parts), width=6.4, height=4.2)
    for ax, (title, frame, names) in zip(axes, parts):
        value = frame["importance"].to_numpy(dtype=float)
        low = value - frame["low"].to_numpy(dtype=float)
        high = frame["high"].to_numpy(dtype=float) - value
        colours = np.where(frame["stands_out"].to_numpy(dtype=bool), "tab:red", "tab:grey")
        rows = np.arange(len(frame))[::-1]
        ax.barh(rows, value, xerr=np.vstack([low, high]), color=colours, capsize=3)
        ax.set_yticks(rows, [n if len(n) <= 40 else n[:37] + "…" for n in names])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(xlabel="fall in ROC-AUC when shuffled", title=title)
    fig.suptitle(f"What drives the risk ({drivers.cars:,} evaluation cars, {drivers.failures:,} failures)")
    return fig


def _fall(row) -> str:
    return interval({"value": row["importance"], "low": row["low"], "high": row["high"]}, 3, sign=True)


def family_importance_table(drivers) -> pd.DataFrame:
    """The feature families' importance for people: inputs, fall in ROC-AUC when shuffled with its
    interval, and whether it stands out from noise."""
    families = drivers.families.reset_index()
    count = families["inputs"].map(lambda n: "—" if pd.isna(n) else f"{int(n):,}")
    return pd.DataFrame({"family": families["group"], "inputs": count,
                         "fall in ROC-AUC when shuffled": families.apply(_fall, axis=1),
                         "stands out": families["stands_out"].map({True: "yes", False: ""})}).set_index("family")


def input_importance_table(drivers) -> pd.DataFrame:
    """The strongest single inputs for people: what it is in words, its family, its importance, and
    the failure rate of the cars with and without it."""
    inputs = drivers.inputs.reset_index()

    def rate(cars, share) -> list[str]:
        return [f"{r:.1%} of {n:,}" if n else "—" for n, r in zip(cars, share)]

    return pd.DataFrame({"input": inputs["with"], "family": inputs["family"],
                         "fall in ROC-AUC when shuffled": inputs.apply(_fall, axis=1),
                         "stands out": inputs["stands_out"].map({True: "yes", False: ""}),
                         "failed, with it": rate(inputs["cars_with"], inputs["failure_rate_with"]),
                         "failed, without it": rate(inputs["cars_without"], inputs["failure_rate_without"])}
                        ).set_index("input")


def family_choice(metrics: Mapping) -> pd.DataFrame:
    """How the candidate's model family was chosen: named, or compared on the same validation cars.

    Parameters
    ----------
    metrics : dict
        A run's ``metrics.json``.

    Returns
    -------
    pandas.DataFrame
        One row per family compared with its ROC-AUC, PR-AUC and recall at 10 % on the held-out
        training cars, or one line saying the family was named.
    """
    choice = metrics["models"]["candidate"].get("family_choice") or {}
    chosen = choice.get("chosen", metrics["models"]["candidate"]["family"])
    if not choice.get("scores"):
        return pd.DataFrame({"family": [chosen], "how chosen": [choice.get("rule", "named")]}).set_index("family")
    rows = [{"family": family, "chosen": "yes" if family == chosen else "", **{metric_label(k): f"{v:.3f}"
            for k, v in scores.items()}} for family, scores in choice["scores"].items()]
    return pd.DataFrame(rows).set_index("family")


def family_choice_note(metrics: Mapping) -> str:
    """How the candidate's family was chosen, in one sentence (the rule, and the cars it ranked)."""
    choice = metrics["models"]["candidate"].get("family_choice") or {}
    family = choice.get("chosen", metrics["models"]["candidate"]["family"])
    rule = choice.get("rule", "named")
    cars = f" ({choice['cars']:,} cars, {choice['failures']:,} failures)" if "cars" in choice else ""
    stack = metrics["models"]["candidate"].get("stack")
    weights = "" if not stack else (" It adds its members' log-odds with the weights " + ", ".join(
        f"{name} {weight:.2f}" for name, weight in stack["weights"].items()) + (
        f", fitted on the latest {stack['cars']:,} training cars ({stack['positives']:,} failures), which neither "
        "member learned or stopped on" if "cars" in stack else ", fitted on the validation cars") + " (0: that "
        "member is ignored).")
    return f"The new model is `{family}`; the family was chosen by: {rule}{cars}.{weights}"


#: The settings a comparison report names, in its order, with what each decides.
_RUN_SETTINGS = {
    "road_test_code": "the checkpoint that starts the road test: every feature uses rows before a car's first one",
    "label_hall": "the hall whose defects make the label",
    "label_maturity_hours": "a road test this close to the falhas period's end leaves the label unknown (hours)",
    "falhas_gap_hours": "falhas periods this close are joined (hours)",
    "filtered_falhas_chance": "a falhas export with fewer failures than this chance allows is taken as filtered",
    "filtered_falhas_rate_share": "... and only when below this share of the lake's failure rate",
    "expected_failure_rate": "the failure rate assumed before the lake has seen many road tests",
    "expected_failure_rate_road_tests": "road tests' worth of weight the assumed rate keeps",
    "hall_groups": "halls before the road test whose defects are counted",
    "zones": "checkpoints whose dwell time is counted",
    "post_road_sections": "resultados sections never used",
    "shift_start_hours": "hours at which shifts start",
    "eval_fraction": "share of the labelled cars, latest built, that evaluate",
    "min_compare_cars": "fewest cars unseen by both models for a fair comparison",
    "min_compare_failures": "fewest failures among them",
    "budgets": "inspection budgets reported",
    "operating_budget": "the budget whose threshold flags cars in the inspection list",
    "family": "model family (ensemble: both stacked; auto: both compared, the better kept)",
    "fact_min_cars": "training cars a learned input needs",
    "fact_max_columns": "learned inputs of each kind, at most",
    "bootstrap_rounds": "bootstrap rounds behind every interval",
    "seed": "random seed",
}


def settings_table(settings: Settings) -> pd.DataFrame:
    """The settings the run used that decide its labels, features, model and comparison, in words."""
    def shown(value) -> str:
        if isinstance(value, Mapping):
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in value.items())
        if isinstance(value, tuple):
            return ", ".join(map(str, value))
        return str(value)

    rows = [{"setting": name, "value": shown(getattr(settings, name)), "what it decides": text}
            for name, text in _RUN_SETTINGS.items()]
    return pd.DataFrame(rows).set_index("setting")
