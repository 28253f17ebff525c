"""Keep the new model or the old one, or roll back: two functions, and a thin ipywidgets view over them.

:func:`decide` and :func:`rollback` are the single entries that ``kafer decide``, ``kafer rollback``
and :class:`DecisionPanel` call; the panel only shows what a person needs to decide (the run, both
models, the figures, the verdict, what the evidence supports, the full report, the decision
history) and turns a click into one of those calls. Widgets do nothing headless, so the panel
holds no logic the functions do not. The same panel is the decision desk (``kafer desk`` serves
``notebooks/05_decide.ipynb`` with Voila, code hidden).

Who decides is never typed: the panel asks who acts (:func:`kafer.desk.person.current_person`: the
person signed in to the desk, else the operating system's user) when it is built, to build only
the controls their rights allow, and again at every click, which checks the right itself
(:func:`kafer.desk.rights.require`): a button fires on a widget message whatever the page shows.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs

from . import registry, runrecord
from .config import load_settings
from .desk.person import current_person
from .desk.rights import Person, allowed, require, role_names
from .errors import DecisionError, KaferError, RightsError, RunError
from .i18n import datetime as moment, mark, number, tr
from .lake import Lake
from .narrative import interval, judgements, metric_label, recommendation, verdict

#: Key figures shown for both models: metrics.json key, label, whether higher is better.
FIGURES = (("roc_auc", mark("ROC-AUC"), True), ("pr_auc", mark("PR-AUC"), True), ("brier", mark("Brier score"), False))
_CELL = "padding:4px 14px;border-bottom:1px solid #d0d7de"
_WORD = f"{_CELL};white-space:nowrap"
_NUMBER = f"{_CELL};text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap"
_OK, _BAD = "#1a7f37", "#b42318"


def decide(run_id: str, choice: str, *, by: str, why: str, lake: str | None = None,
           runs: str | os.PathLike | None = None, by_source: str | None = None) -> dict:
    """Decide a run: ``keep-new`` puts its candidate in production, ``keep-old`` rejects it.

    Parameters
    ----------
    run_id : str
    choice : {"keep-new", "keep-old"}
    by, why : str
        Who decides and why; neither may be blank.
    lake, runs : str, optional
        Lake URL and run records folder; the settings' (``KAFER_LAKE``, ``kafer.toml``…) when omitted.
    by_source : str, optional
        How ``by`` was known (``desk account``, ``os user``, ``--by``…), logged with it.

    Returns
    -------
    dict
        The logged decision record (see :func:`kafer.registry.decide`) plus ``message``, one
        sentence saying what happened.

    Raises
    ------
    DecisionError
        When the decision is refused (blank reason, unknown run, already decided…).
    LockTimeout
        When another registry change holds the lake's lock too long.
    """
    settings = load_settings(lake=lake, runs=runs)
    record = registry.decide(Lake(settings.lake), run_id, choice, by=by, why=why, runs_dir=settings.runs,
                             settings=settings, by_source=by_source)
    return {**record, "message": _outcome(record)}


def rollback(to_version: str, *, by: str, why: str, lake: str | None = None, by_source: str | None = None) -> dict:
    """Put a version that was once in production back in production, logged like any decision
    (``by_source`` as in :func:`decide`).

    Returns
    -------
    dict
        The logged record (see :func:`kafer.registry.rollback`) plus ``message``.

    Raises
    ------
    DecisionError
        When the rollback is refused (blank reason, unknown version, never in production…).
    """
    settings = load_settings(lake=lake)
    record = registry.rollback(Lake(settings.lake), to_version=to_version, by=by, why=why, settings=settings,
                               by_source=by_source)
    return {**record, "message": tr("Rolled back: {after} is in production again (was {before}). Logged at {at}.",
                                    after=record["after"], before=record["before"], at=record["at"])}


def run_summary(run_id: str, *, runs: str | os.PathLike) -> dict:
    """What the person deciding needs from a run's record.

    Returns
    -------
    dict
        ``run_id, status, started_at, finished_at, data_version, verdict, recommendation``
        (``{"choice", "text"}``), ``drivers`` (what drives the candidate's risk, in words, or ``None``
        for a run made before Käfer said it), ``compared_cars, compared_positives, operating_budget, fair``
        (``{"possible", "why", "seen_by_production"}``), ``report`` (path of the full report, or
        ``None``), ``candidate`` and ``production`` (``{"version", "family", "trained_on",
        "data_version"}``, production ``None`` on a first run) and ``figures``: one
        ``{"metric", "label", "higher_is_better", "candidate", "production", "difference",
        "judgement"}`` per key figure, each value ``{"value", "low", "high"}`` or ``None``.

    Raises
    ------
    DecisionError
        When the run's manifest.json or metrics.json is missing, unreadable or incomplete.
    """
    try:
        folder = runrecord.run_dir(runs, run_id)
        manifest = runrecord.read_json(folder / runrecord.MANIFEST)
        metrics = runrecord.read_json(folder / runrecord.METRICS)
    except RunError as exc:
        raise DecisionError(f"run {run_id} cannot be shown: {exc}") from None
    try:
        budget = metrics["operating_budget"]
        models = {name: metrics["models"][name] for name in ("candidate", "production")}
        difference = metrics.get("difference") or {}
        percent = round(budget * 100)
        figures = tuple((key, tr(label), higher) for key, label, higher in FIGURES) + (
            (f"recall_at_{percent}", metric_label(f"recall_at_{percent}"), True),
            (f"precision_at_{percent}", metric_label(f"precision_at_{percent}"), True))
        compared = {"candidate": models["candidate"]["metrics"], "cars": metrics["compared_cars"],
                    "positives": metrics["compared_positives"], "budgets": metrics["budgets"],
                    "difference": metrics.get("difference")}
        judged = {j["metric"]: j["judgement"]
                  for j in judgements(compared, against_production=metrics.get("difference") is not None)}
        report = folder / runrecord.REPORT
        said = _in_words(metrics)
        return {
            "run_id": run_id,
            "status": manifest.get("status"),
            "started_at": manifest.get("started_at"),
            "finished_at": manifest.get("finished_at"),
            "data_version": metrics["data_version"],
            "verdict": said["verdict"],
            "recommendation": said["recommendation"],
            "drivers": _drivers_in_words(metrics.get("drivers")),
            "compared_cars": metrics["compared_cars"],
            "compared_positives": metrics["compared_positives"],
            "budgets": metrics["budgets"],
            "operating_budget": budget,
            "fair": metrics["fair_comparison"],
            "report": report if report.is_file() else None,
            "candidate": _model(models["candidate"], version=manifest.get("candidate_version"),
                                data_version=metrics["data_version"]),
            "production": _model(models["production"]) if models["production"] else None,
            "figures": [{"metric": key, "label": label, "higher_is_better": higher,
                         "candidate": models["candidate"]["metrics"].get(key),
                         "production": models["production"]["metrics"].get(key) if models["production"] else None,
                         "difference": difference.get(key), "judgement": judged.get(key)}
                        for key, label, higher in figures],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise DecisionError(f"run {run_id}: {folder / runrecord.METRICS} is incomplete ({exc!r} missing or "
                            "malformed): rerun the comparison") from None


def _in_words(metrics: dict) -> dict:
    """The run's verdict and recommendation said again in the current language, from the figures its
    metrics.json holds (the text it stored, in the language of the retrain, when they cannot be)."""
    models = metrics["models"]
    comparison = {"candidate": models["candidate"]["metrics"],
                  "production": (models["production"] or {}).get("metrics"),
                  "difference": metrics.get("difference"), "cars": metrics["compared_cars"],
                  "positives": metrics["compared_positives"], "budgets": metrics["budgets"]}
    production, fair = models["production"] is not None, metrics["fair_comparison"]
    try:
        return {"verdict": verdict(comparison, budget=metrics["operating_budget"], production=production, fair=fair),
                "recommendation": recommendation(comparison, production=production, fair=fair)}
    except (KaferError, KeyError, TypeError):
        return {"verdict": metrics["verdict"], "recommendation": metrics["recommendation"]}


def _drivers_in_words(drivers: dict | None) -> str | None:
    """What drives the new model's risk, said again in the current language from the figures the run
    kept (its stored text when they cannot be read; ``None`` for a run made before Käfer said it)."""
    import pandas as pd

    from .narrative import drivers_summary

    if not drivers:
        return None
    try:
        families = pd.DataFrame(drivers["families"]).set_index("group")
        inputs = pd.DataFrame(drivers["inputs"])
        families["stands_out"] = families["stands_out"].astype(bool)
        if len(inputs):
            inputs = inputs.set_index("input")
            inputs["stands_out"] = inputs["stands_out"].astype(bool)
        return drivers_summary(families, inputs, cars=drivers["cars"], failures=drivers["failures"])
    except (KeyError, TypeError, ValueError):
        return drivers.get("summary")


def _model(entry: dict, *, version: str | None = None, data_version: str | None = None) -> dict:
    return {"version": entry.get("version") or version, "family": entry.get("family"),
            "trained_on": entry.get("trained_on"), "data_version": entry.get("data_version") or data_version}


def requested_run(run_id: str | None) -> str | None:
    """The run to show: ``run_id`` when given, else the ``run`` of the page's address when the
    panel is served by Voila (``…/?run=r2024…``), else ``None`` (the newest pending run)."""
    if run_id:
        return run_id
    asked = parse_qs(os.environ.get("QUERY_STRING", "")).get("run")
    return asked[0] if asked else None


class DecisionPanel:
    """The decision desk: a run's comparison, what the evidence supports, and the decision.

    Display it as a cell's last expression. Clicking *keep new* or *keep old* calls
    :func:`decide`, and *roll back* calls :func:`rollback`, exactly as the command line does, in
    the name of the person acting; a refusal, a right they lack or a busy lake shows in ``message``
    and changes nothing. After a decision the page says what happened and its buttons are disabled.
    A person without the approver's rights gets a page without its controls (none is even made).

    Parameters
    ----------
    run_id : str or None
        The run to decide; empty or ``None``: the page address's ``run`` under Voila, else the
        run of the newest pending candidate.
    lake, runs : str, optional
        Lake URL and run records folder; the settings' when empty or omitted.
    person : callable, optional
        Returns the :class:`~kafer.desk.rights.Person` acting now; asked when the panel is built
        and again at every click (default :func:`~kafer.desk.person.current_person`).
    """

    def __init__(self, run_id: str | None, lake: str | None = None, runs: str | os.PathLike | None = None, *,
                 person: Callable[[], Person] | None = None):
        import ipywidgets as widgets

        self._person = person or current_person
        try:
            self.person = self._person()
        except RightsError as exc:
            self.person, refused = None, str(exc)
        else:
            refused = "" if allowed(self.person, "read") else tr("{person} may not read the desk",
                                                                   person=self.person.describe())
        may_decide, may_roll_back = allowed(self.person, "decide"), allowed(self.person, "rollback")
        settings = load_settings(lake=lake or None, runs=runs or None)
        self.settings = settings
        self.lake = settings.lake
        self.runs = settings.runs
        self.run_id = requested_run(run_id)
        self.summary = None
        self.record = None
        self.said = ""
        wide = widgets.Layout(width="56em")
        self.title = widgets.HTML(_title_html(may_decide=may_decide))
        self.header = widgets.HTML()
        self.track = widgets.HTML()
        self.gain = widgets.HTML()
        self.figures = widgets.HTML()
        self.verdict = widgets.HTML(layout=wide)
        self.show_report = widgets.Button(description=tr("show the full report"), disabled=True,
                                          tooltip=tr("the comparison report of this run, with every figure, below"))
        self.refresh_button = widgets.Button(description=tr("refresh"), icon="refresh",
                                             tooltip=tr("read production and the decisions again (one may have been "
                                                        "made elsewhere)"))
        self.report = widgets.HTML()
        self.who = widgets.HTML(_who_html(self.person))
        self.message = widgets.HTML()
        self.production = widgets.HTML()
        self.history = widgets.HTML()
        self.show_report.on_click(lambda _button: self._report())
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.why = self.keep_new = self.keep_old = self.buttons = None
        self.rollback_to = self.rollback_why = self.roll_back = self.rolling_back = self.no_rollback = None
        deciding = [self.show_report, self.report]
        if may_decide:  # only an approver's page holds the controls (and their widget models) at all
            self.why = widgets.Textarea(description=tr("why"),
                                        placeholder=tr("What in the comparison decides it (required)"),
                                        layout=widgets.Layout(width="56em", height="5em"))
            self.keep_new = widgets.Button(description=tr("keep new"), button_style="success", disabled=True,
                                           tooltip=tr("the new model becomes the production model"))
            self.keep_old = widgets.Button(description=tr("keep old"), button_style="warning", disabled=True,
                                           tooltip=tr("production stays; the new model is rejected"))
            self.keep_new.on_click(lambda _button: self._decide("keep-new"))
            self.keep_old.on_click(lambda _button: self._decide("keep-old"))
            self.buttons = widgets.HBox([self.keep_new, self.keep_old])
            deciding += [widgets.HTML(f"<h3>{_e(tr('Your decision'))}</h3>"), self.why, self.buttons]
        elif self.person is not None:
            deciding.append(widgets.HTML("<p style='color:#57606a'>" + _e(tr(
                "You can read this page; keeping a model or rolling back takes the approver role.")) + "</p>"))
        rolling = []
        if may_roll_back:
            self.rollback_to = widgets.Dropdown(description=tr("version"), options=[], disabled=True)
            self.rollback_why = widgets.Textarea(description=tr("why"), placeholder=tr("Why go back (required)"),
                                                 layout=widgets.Layout(width="56em", height="3.5em"))
            self.roll_back = widgets.Button(description=tr("roll back"), button_style="danger", disabled=True,
                                            tooltip=tr("put this earlier production model back in production"))
            self.roll_back.on_click(lambda _button: self._rollback())
            self.no_rollback = widgets.HTML(f"<p>{_e(tr('No earlier production model to go back to.'))}</p>")
            self.rolling_back = widgets.VBox([self.rollback_to, self.rollback_why, self.roll_back])
            rolling = [widgets.HTML(f"<h4>{_e(tr('Roll back to an earlier production model'))}</h4>"),
                       self.no_rollback, self.rolling_back]
        self.deciding = widgets.VBox(deciding)
        self.widget = widgets.VBox([
            self.who, self.title, self.header, self.verdict, self.figures, self.gain, self.deciding, self.message,
            widgets.HTML(f"<h3>{_e(tr('Production and decisions so far'))}</h3>"), self.refresh_button,
            self.production, self.history, *rolling, self.track],
            layout=widgets.Layout(max_width="84em"))
        if refused:
            self._stop(refused)
            _show(self.deciding, shown=False)
            return
        self._load()

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, with a plain-text account for viewers without widgets."""
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": self._plain()}

    def _plain(self) -> str:
        lines = [tr("Decision on run {run}", run=self.run_id)]
        if self.summary is not None:
            lines += ["  " + tr("{figure}: new model {new}, production {old}", figure=f["label"],
                                new=_figure(f, "candidate"), old=_figure(f, "production"))
                      for f in self.summary["figures"]]
            lines += [tr("Verdict: {verdict}", verdict=self.summary["verdict"]), self.summary["recommendation"]["text"]]
            if self.summary["drivers"]:
                lines.append(tr("What drives the new model's risk: {drivers}", drivers=self.summary["drivers"]))
        return "\n".join(lines + ([self.said] if self.said else []))

    def _load(self) -> None:
        self._refresh_registry()
        self.track.value = _track_html(self.settings)
        try:
            if self.run_id is None:
                self.run_id = registry.latest_pending_run(Lake(self.lake))
            if self.run_id is None:
                self.header.value = (f"<h2>{_e(tr('Nothing to decide'))}</h2><p>" + tr(
                    "No new model waits for a decision in the lake {lake}: retrain first (bring the month's exports "
                    "and retrain). Production and the decisions so far are below.",
                    lake=f"<code>{_e(self.lake)}</code>") + "</p>")
                _show(self.deciding, shown=False)
                return
            self.summary = run_summary(self.run_id, runs=self.runs)
            earlier = self._earlier()
        except (KaferError, OSError) as exc:
            self._stop(str(exc))
            return
        self.header.value = _header_html(self.summary, pending=self._pending_others())
        self.gain.value = _gain_html(self.summary, runs=self.runs)
        self.figures.value = _figures_html(self.summary)
        self.verdict.value = _verdict_html(self.summary)
        self.show_report.disabled = self.summary["report"] is None
        if earlier is not None:
            self._stop(tr("Run {run} was already decided: {choice} by {by} at {at} ({why!r}).", run=self.run_id,
                          choice=_choice(earlier["choice"]), by=earlier["by"], at=_when(earlier["at"]),
                          why=earlier["why"]))
        else:
            self._buttons(enabled=True)

    def _acting(self, right: str, *, asked: str, nothing: str) -> Person | None:
        """Who acts now, when they still have ``right``; else the page says why and ``None``."""
        try:
            return require(self._person(), right)
        except RightsError as exc:
            self._stop(tr("Your {asked} was refused: {reason}. Nothing was {nothing}.", asked=asked, reason=exc,
                          nothing=nothing))
            if self.roll_back is not None:
                self.roll_back.disabled = True
            return None

    def _decide(self, choice: str) -> None:
        person = self._acting("decide", asked=tr(_CHOICES[choice]), nothing=tr("decided"))
        if person is None:
            return
        if not self.why.value.strip():
            self._say(tr("Write why first (what in the comparison decides it): nothing was decided."), ok=False)
            return
        self._buttons(enabled=False)
        try:
            self.record = decide(self.run_id, choice, by=person.name, by_source=person.by_source, why=self.why.value,
                                 lake=self.lake, runs=self.runs)
        except (KaferError, OSError) as exc:
            self._say(str(exc), ok=False)
            self._buttons(enabled=self._still_open())
            self._refresh_registry()  # a decision made elsewhere meanwhile shows in the history at once
            return
        self._say(self.record["message"], ok=True)
        self._refresh_registry()

    def _rollback(self) -> None:
        person = self._acting("rollback", asked=tr("roll back"), nothing=tr("rolled back"))
        if person is None:
            return
        if not self.rollback_why.value.strip():
            self._say(tr("Write why you roll back first: nothing was rolled back."), ok=False)
            return
        self.roll_back.disabled = True
        try:
            self.record = rollback(self.rollback_to.value, by=person.name, by_source=person.by_source,
                                   why=self.rollback_why.value, lake=self.lake)
        except (KaferError, OSError) as exc:
            self._say(str(exc), ok=False)
            self._refresh_registry()
            return
        self._say(self.record["message"], ok=True)
        self._buttons(enabled=False)
        self._refresh_registry()

    def _report(self) -> None:
        if self._acting("read", asked=tr("report"), nothing=tr("shown")) is None:
            return
        page = Path(self.summary["report"]).read_text(encoding="utf-8")
        # sandbox="" (no allow-scripts, no allow-same-origin): the report's HTML and images show, but no script
        # of it runs, and it gets an origin of its own: it can reach neither the desk nor its kernel
        self.report.value = (f'<iframe sandbox="" title="{_e(tr("comparison report of run {run}", run=self.run_id))}" '
                             f'srcdoc="{html.escape(page, quote=True)}" '
                             'style="width:100%;min-width:56em;height:70vh;border:1px solid #d0d7de"></iframe>')
        self.show_report.disabled = True

    def _refresh_registry(self) -> None:
        """Production, the decision history and the versions one can roll back to, as the lake has them."""
        try:
            lake = Lake(self.lake)
            current = registry.production(lake)
            log = registry.decisions(lake)
            earlier = [v for v in registry.versions(lake) if v["status"] == "superseded"]
        except (KaferError, OSError) as exc:
            self.production.value = f'<p style="color:{_BAD}">{html.escape(str(exc))}</p>'
            return
        self.production.value = _production_html(current, self.lake)
        self.history.value = _history_html(log)
        if self.roll_back is None:
            return
        self.rollback_to.options = [(tr("{version} ({family}, run {run})", version=v["version"], family=v["family"],
                                       run=v["run"]), v["version"]) for v in reversed(earlier)]
        self.rollback_to.value = earlier[-1]["version"] if earlier else None
        self.rollback_to.disabled = self.roll_back.disabled = not earlier
        _show(self.rolling_back, shown=bool(earlier))
        _show(self.no_rollback, shown=not earlier)

    def refresh(self) -> None:
        """Read the lake again: production, the decision history, and whether this run was decided
        meanwhile (from another page or the command line); the refresh button calls it."""
        if self._acting("read", asked=tr("refresh"), nothing=tr("shown")) is None:
            return
        self.said = ""
        self.message.value = ""
        self._load()

    def _earlier(self) -> dict | None:
        """This run's logged decision, if any."""
        return next((d for d in registry.decisions(Lake(self.lake)) if d["run"] == self.run_id), None)

    def _pending_others(self) -> list[str]:
        return [c["run"] for c in registry.candidates(Lake(self.lake)) if c["run"] != self.run_id]

    def _still_open(self) -> bool:
        try:
            return self._earlier() is None
        except (KaferError, OSError):
            return True

    def _stop(self, text: str) -> None:
        self._say(text, ok=False)
        self._buttons(enabled=False)

    def _buttons(self, *, enabled: bool) -> None:
        if self.keep_new is not None:
            self.keep_new.disabled = self.keep_old.disabled = not enabled

    def _say(self, text: str, *, ok: bool) -> None:
        self.said = text
        self.message.value = f'<p style="color:{_OK if ok else _BAD};font-weight:600">{html.escape(text)}</p>'


def _show(*widgets, shown: bool) -> None:
    """Show or hide widgets (hidden ones take no room)."""
    for widget in widgets:
        widget.layout.display = None if shown else "none"


#: The choices as a sentence says them ("Your keep new was refused").
_CHOICES = {"keep-new": mark("keep new"), "keep-old": mark("keep old"), "rollback": mark("roll back")}
_GREY = "#57606a"


def _title_html(*, may_decide: bool) -> str:
    """What the page is for, in the words of a person who decides (the notebook's own text stays out
    of the page: the desk shows this instead); the invitation to decide only to whoever may."""
    text = tr("A retrain made a new model. Below: how many road-test failures each model finds among the cars the "
              "inspectors can test, what the evidence supports, and the decisions so far.")
    if may_decide:
        text += " " + tr("Write why, then keep the new model or the old one: the decision is logged in your name.")
    return f"<h2>{_e(tr('Keep the new model or the old one'))}</h2><p style='color:{_GREY}'>{_e(text)}</p>"


def _who_html(person: Person | None) -> str:
    """Who acts on this page, and (signed in with a desk account) the way to sign out."""
    if person is None:
        return ""
    out = ""
    if person.source == "account":
        base = os.environ.get("VOILA_BASE_URL", "/")
        out = f' · <a href="{html.escape(base.rstrip("/") + "/logout", quote=True)}">{_e(tr("sign out"))}</a>'
    roles = role_names(person.roles)
    source = tr(_SOURCES[person.source]) if person.source in _SOURCES else person.by_source
    return (f"<p style='color:{_GREY};text-align:right'>"
            + tr("Signed in as {name} ({roles}; {source})", name=f"<b>{_e(person.name)}</b>", roles=_e(roles),
                 source=_e(source)) + f"{out}</p>")


#: The desk's roles and the ways it knows a person, as this page names them (the log keeps the keys).
_SOURCES = {"proxy": mark("desk sign-in (proxy)"), "account": mark("desk account"), "os user": mark("os user")}


def _outcome(record: dict) -> str:
    if record["choice"] == "keep-new":
        if record["before"]:
            return tr("Kept the new model: {after} is now in production (was {before}). Logged at {at}.",
                      after=record["after"], before=record["before"], at=record["at"])
        return tr("Kept the new model: {after} is now in production. Logged at {at}.", after=record["after"],
                  at=record["at"])
    if record["before"]:
        return tr("Kept the old model: {before} stays in production; {new} is rejected. Logged at {at}.",
                  before=record["before"], new=record["candidate"], at=record["at"])
    return tr("Kept the old model: no model is in production; {new} is rejected. Logged at {at}.",
              new=record["candidate"], at=record["at"])


def _e(value) -> str:
    return html.escape("—" if value is None else str(value))


def _when(iso: str | None) -> str:
    """A recorded moment (UTC) to the minute, as the current language writes it."""
    return "—" if not iso else moment(str(iso)[:16])


def _trained(model: dict | None) -> str:
    trained = (model or {}).get("trained_on")
    if not trained:
        return "—"
    return tr("{cars} cars ({failures} failures), built {start} to {end}", cars=number(trained["cars"]),
              failures=number(trained["positives"]), start=_when(trained["produced_from"]),
              end=_when(trained["produced_to"]))


def _header_html(summary: dict, *, pending: list[str]) -> str:
    candidate, production = summary["candidate"], summary["production"]
    against = (tr("production model {version}", version=production["version"]) if production
               else tr("no production model (first run)"))
    rows = [(tr("version"), candidate["version"], production["version"] if production else tr("none yet")),
            (tr("kind of model"), candidate["family"], production["family"] if production else "—"),
            (tr("trained on"), _trained(candidate), _trained(production) if production else "—"),
            (tr("data version"), candidate["data_version"], production["data_version"] if production else "—")]
    table = "".join(f'<tr><th style="{_WORD};text-align:left">{_e(what)}</th><td style="{_CELL}">{_e(new)}</td>'
                    f'<td style="{_CELL}">{_e(old)}</td></tr>' for what, new, old in rows)
    others = ""
    if pending:
        links = ", ".join(f'<a href="?run={_e(r)}">{_e(r)}</a>' for r in pending)
        others = "<p>" + tr("Also waiting for a decision: {runs}.", runs=links) + "</p>"
    title = tr("Run {run}: new model {new} against {against}", run=summary["run_id"], new=candidate["version"],
               against=against)
    return (f"<h3>{_e(title)}</h3>"
            "<p>" + _e(tr("Retrained {when} UTC on data version {data}; compared on {cars} evaluation cars ({failures} "
                          "road-test failures) that neither model was trained on.", when=_when(summary["started_at"]),
                          data=summary["data_version"], cars=number(summary["compared_cars"]),
                          failures=number(summary["compared_positives"]))) + "</p>"
            f'<table style="border-collapse:collapse"><tr><th style="{_CELL}"></th>'
            f'<th style="{_CELL};text-align:left">{_swatch(NEW)} {_e(tr("new model"))}</th>'
            f'<th style="{_CELL};text-align:left">{_swatch(PRODUCTION)} {_e(tr("production model"))}'
            f"</th></tr>{table}</table>{others}")


#: The colours of the models on this page, the same as on every chart (:mod:`kafer.report`).
NEW, PRODUCTION = "candidate", "production"


def _swatch(model: str) -> str:
    """A small square of a model's colour, the legend of the page's tables."""
    from .report import NEW_COLOUR, PRODUCTION_COLOUR

    colour = NEW_COLOUR if model == NEW else PRODUCTION_COLOUR
    return (f"<span style='display:inline-block;width:0.8em;height:0.8em;background:{colour};"
            "vertical-align:baseline'></span>")


#: How the page names each figure for a person who is no statistician (the full report keeps the names of
#: the trade); the shares are shown of every 100, as the verdict says them.
_PLAIN = {"roc_auc": mark("How well it orders the cars, riskiest first (ROC-AUC: 0.5 is chance, 1 perfect)"),
          "pr_auc": mark("How well it puts the failing cars first (PR-AUC: the failure rate is chance, 1 perfect)"),
          "brier": mark("How far its risks are from what happened (Brier score: lower is better)")}


def _label(figure: dict) -> str:
    """A figure's name on the page, in the current language."""
    key = figure["metric"]
    if key in _PLAIN:
        return tr(_PLAIN[key])
    kind, _, pct = key.rpartition("_at_")
    if kind == "recall":
        return tr("Failures found when the riskiest {budget} of cars are inspected (Recall at {budget}, of every 100 "
                  "failures)", budget=f"{pct} %")
    return tr("Inspected cars that fail, riskiest {budget} inspected (Precision at {budget}, of every 100 cars)",
              budget=f"{pct} %")


def _figures_html(summary: dict) -> str:
    marks = {"better": (tr("clearly better"), _OK), "worse": (tr("clearly worse"), _BAD),
             "unclear": (tr("not clear"), _GREY)}
    chance = {"better": tr("better than chance"), "worse": tr("worse than chance"),
              "unclear": tr("not clearly better than chance")}
    against = summary["production"] is not None and any(f["difference"] for f in summary["figures"])
    rows = []
    for f in sorted(summary["figures"], key=lambda f: not f["metric"].startswith("recall")):  # the verdict's first
        word, colour = marks.get(f["judgement"], ("", _GREY))
        if word and not against:
            word = chance[f["judgement"]]
        rows.append(f"<tr><td style='{_CELL}'>{_e(_label(f))} {'↑' if f['higher_is_better'] else '↓'}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'candidate')}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'production')}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'difference')}</td>"
                    f"<td style='{_WORD};color:{colour}'>{_e(word)}</td></tr>")
    head = "".join(f"<th style='{_WORD};text-align:{align}'>{name}</th>" for name, align in (
        (_e(tr("figure (↑ higher is better, ↓ lower)")), "left"),
        (f"{_swatch(NEW)} {_e(tr('new model'))}", "right"),
        (f"{_swatch(PRODUCTION)} {_e(tr('production model'))}", "right"), (_e(tr("new − production")), "right"),
        ("", "left")))
    return (f"<h3>{_e(tr('The figures the verdict cites'))}</h3><table style='border-collapse:collapse'>"
            f"<tr>{head}</tr>{''.join(rows)}</table><p style='color:{_GREY}'>" + _e(tr(
                "Each figure with its 95 % interval in brackets: the range the figure would likely fall in on other "
                "cars like these. When the interval of the difference includes 0, the difference is not clear.")) +
            "</p>")


def _track_html(settings) -> str:
    """Production's track record: the warning in words above its chart, or words alone when there is
    nothing to draw."""
    from .monitor import track_record
    from .report import figure_html, record_chart

    title = f"<h3>{_e(tr('Is production keeping its promise?'))}</h3>"
    try:
        record = track_record(Lake(settings.lake), settings=settings)
    except (KaferError, OSError) as exc:
        said = tr("The track record cannot be worked out: {problem}", problem=exc)
        return f"{title}<p style='color:{_BAD}'>{_e(said)}</p>"
    production = record.production
    if production is None:
        return title + "<p>" + _e(tr("No model is in production yet: there is no promise to keep and nothing to "
                                     "draw.")) + "</p>"
    colour = _BAD if record.alert else _OK if production.check.judged else _GREY
    said = (f"{title}<p style='border-left:4px solid {colour};padding:6px 12px;background:#f6f8fa'>"
            f"{_e(_track_words(record))}</p>")
    if not any(r.months for r in record.records):
        return said + f"<p>{_e(tr('No car road-tested since then has its outcome yet: nothing to draw.'))}</p>"
    alt = tr("Track record of production {version}: failures found among the riskiest cars and the share of cars "
             "flagged, of every 100, per month of road test, with 95 % intervals; the promise as a dashed line, "
             "each decision marked", version=production.version)
    return said + figure_html(record_chart(record), alt=alt)


def _track_words(record) -> str:
    """Whether production keeps its promise, in a sentence for a person who is no statistician."""
    production = record.production
    pooled = production.pooled
    cars, failures = (pooled.cars, pooled.failures) if pooled else (0, 0)
    if not production.check.judged:
        return tr("Production model {version}: {cars} cars road-tested since it was kept have their outcome "
                  "({failures} failed): too few yet to say whether it keeps its promise.", version=production.version,
                  cars=number(cars), failures=number(failures))
    if not record.alert:
        return tr("Production model {version} keeps its promise: on {cars} cars road-tested since it was kept "
                  "({failures} failed), it finds the failures about as well as its report promised.",
                  version=production.version, cars=number(cars), failures=number(failures))
    return tr("Production model {version} is slipping: on {cars} cars road-tested since it was kept ({failures} "
              "failed), it finds clearly fewer failures than its report promised. A retrain on the latest exports "
              "tells whether a new model does better.", version=production.version, cars=number(cars),
              failures=number(failures))


def _gain_html(summary: dict, *, runs) -> str:
    """Both models' gain curves on the compared cars: failures found against cars inspected, of every
    100; words instead when there is nothing to draw."""
    import pandas as pd

    from .report import figure_html, recall_by_budget

    title = f"<h3>{_e(tr('Failures found by inspection budget'))}</h3>"
    path = runrecord.run_dir(runs, summary["run_id"]) / runrecord.PREDICTIONS
    nothing = title + "<p>" + _e(tr("This run kept no score per car, so there is no curve to draw; the figures "
                                    "above say what each model finds.")) + "</p>"
    if not path.is_file():
        return nothing
    scored = pd.read_csv(path, dtype={"KNR": str})
    compared = scored[scored["compared"].astype(bool)]
    probs = {NEW: compared["p_candidate"].to_numpy()}
    if summary["production"] is not None and compared["p_production"].notna().all():
        probs[PRODUCTION] = compared["p_production"].to_numpy()
    try:
        chart = recall_by_budget(compared["y_true"].to_numpy(), probs, budgets=summary["budgets"])
    except KaferError:
        return nothing
    named = " " + tr("and") + " "
    alt = tr("Failures found by {models}, of every 100 road-test failures, against the cars inspected riskiest "
             "first, of every 100 cars", models=named.join(tr("new model") if m == NEW else tr("production model")
                                                           for m in probs))
    return (title + "<p>" + _e(tr("Inspect the riskiest cars first: each line says how many of every 100 road-test "
                                  "failures are found for each share of cars inspected. Higher is better; the dashed "
                                  "line is picking cars at random.")) + "</p>" + figure_html(chart, alt=alt))


def _verdict_html(summary: dict) -> str:
    advice = summary["recommendation"]
    colour = _OK if advice["choice"] == "keep-new" else "#9a6700"
    drivers = (f"<h3>{_e(tr('What drives the new model’s risk'))}</h3><p>{_e(summary['drivers'])}</p>"
               if summary["drivers"] else "")
    return (f"<h3>{_e(tr('Verdict'))}</h3><p>{_e(summary['verdict'])}</p>"
            f"<p style='border-left:4px solid {colour};padding:6px 12px;background:#f6f8fa'>"
            f"<b>{_e(tr('What the evidence supports:'))}</b> {_e(advice['text'])}</p>{drivers}")


def _production_html(current: dict | None, lake: str) -> str:
    if current is None:
        return "<p>" + tr("No model is in production in the lake {lake} yet.", lake=f"<code>{_e(lake)}</code>") + "</p>"
    return "<p>" + tr("In production: {version} ({family}, run {run}), since {since} UTC.",
                      version=f"<b>{_e(current['version'])}</b>", family=_e(current["family"]), run=_e(current["run"]),
                      since=_e(_when(current["since"]))) + "</p>"


def _history_html(log: list[dict]) -> str:
    if not log:
        return f"<p>{_e(tr('No decision yet.'))}</p>"
    head = "".join(f"<th style='{_CELL};text-align:left'>{_e(tr(name))}</th>"
                   for name in (mark("when (UTC)"), mark("who"), mark("decision"), mark("run"),
                                mark("production before → after"), mark("why")))
    rows = "".join(f"<tr><td style='{_WORD}'>{_e(_when(d['at']))}</td><td style='{_CELL}'>{_by(d)}"
                   f"</td><td style='{_WORD}'>{_e(_choice(d['choice']))}</td>"
                   f"<td style='{_WORD}'>{_e(d.get('run'))}</td>"
                   f"<td style='{_CELL}'>{_e(d['before'])} → {_e(d['after'])}</td><td style='{_CELL}'>{_e(d['why'])}</td>"
                   "</tr>" for d in reversed(log))
    return f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"


def _choice(choice: str) -> str:
    """A logged choice as a person reads it: ``keep new`` (in the current language)."""
    return tr(_CHOICES[choice]) if choice in _CHOICES else choice


def _by(decision: dict) -> str:
    """Who decided, and how they were known when the log says it."""
    known = decision.get("by_source")
    return _e(decision["by"]) + (f" <span style='color:{_GREY}'>({_e(known)})</span>" if known else "")


def _figure(figure: dict, column: str) -> str:
    """One cell of the figures table: shares of every 100 with one decimal (as the verdict says them),
    the Brier score with four digits, the others three; differences signed."""
    value = figure[column]
    if figure["metric"].startswith(("recall_at_", "precision_at_")) and value:
        value = {k: (None if v is None else v * 100) for k, v in value.items() if k in ("value", "low", "high")}
        return interval(value, 1, sign=column == "difference")
    return interval(value, 4 if figure["metric"] == "brier" else 3, sign=column == "difference")
