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
from .desk.rights import Person, allowed, require
from .errors import DecisionError, KaferError, RightsError, RunError
from .lake import Lake
from .narrative import interval, judgements

#: Key figures shown for both models: metrics.json key, label, whether higher is better.
FIGURES = (("roc_auc", "ROC-AUC", True), ("pr_auc", "PR-AUC", True), ("brier", "Brier score", False))
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
    return {**record, "message": f"Rolled back: {record['after']} is in production again (was {record['before']}). "
                                 f"Logged at {record['at']}."}


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
        figures = FIGURES + ((f"recall_at_{percent}", f"Recall at {percent} %", True),
                             (f"precision_at_{percent}", f"Precision at {percent} %", True))
        compared = {"candidate": models["candidate"]["metrics"], "cars": metrics["compared_cars"],
                    "positives": metrics["compared_positives"], "budgets": metrics["budgets"],
                    "difference": metrics.get("difference")}
        judged = {j["metric"]: j["judgement"]
                  for j in judgements(compared, against_production=metrics.get("difference") is not None)}
        report = folder / runrecord.REPORT
        return {
            "run_id": run_id,
            "status": manifest.get("status"),
            "started_at": manifest.get("started_at"),
            "finished_at": manifest.get("finished_at"),
            "data_version": metrics["data_version"],
            "verdict": metrics["verdict"],
            "recommendation": metrics["recommendation"],
            "drivers": (metrics.get("drivers") or {}).get("summary"),
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
            refused = "" if allowed(self.person, "read") else f"{self.person.describe()} may not read the desk"
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
        self.header = widgets.HTML()
        self.track = widgets.HTML()
        self.gain = widgets.HTML()
        self.figures = widgets.HTML()
        self.verdict = widgets.HTML(layout=wide)
        self.show_report = widgets.Button(description="show the full report", disabled=True,
                                          tooltip="the comparison report of this run, below")
        self.report = widgets.HTML()
        self.who = widgets.HTML(_who_html(self.person))
        self.message = widgets.HTML()
        self.production = widgets.HTML()
        self.history = widgets.HTML()
        self.show_report.on_click(lambda _button: self._report())
        self.why = self.keep_new = self.keep_old = self.buttons = None
        self.rollback_to = self.rollback_why = self.roll_back = self.rolling_back = self.no_rollback = None
        deciding = [self.show_report, self.report]
        if may_decide:  # only an approver's page holds the controls (and their widget models) at all
            self.why = widgets.Textarea(description="why", placeholder="What in the comparison decides it (required)",
                                        layout=widgets.Layout(width="56em", height="5em"))
            self.keep_new = widgets.Button(description="keep new", button_style="success", disabled=True,
                                           tooltip="the candidate becomes the production model")
            self.keep_old = widgets.Button(description="keep old", button_style="warning", disabled=True,
                                           tooltip="production stays; the candidate is rejected")
            self.keep_new.on_click(lambda _button: self._decide("keep-new"))
            self.keep_old.on_click(lambda _button: self._decide("keep-old"))
            self.buttons = widgets.HBox([self.keep_new, self.keep_old])
            deciding += [widgets.HTML("<h3>Your decision</h3>"), self.why, self.buttons]
        elif self.person is not None:
            deciding.append(widgets.HTML("<p style='color:#57606a'>You can read this page; keeping a model or rolling "
                                         "back takes the approver role.</p>"))
        rolling = []
        if may_roll_back:
            self.rollback_to = widgets.Dropdown(description="version", options=[], disabled=True)
            self.rollback_why = widgets.Textarea(description="why", placeholder="Why go back (required)",
                                                 layout=widgets.Layout(width="56em", height="3.5em"))
            self.roll_back = widgets.Button(description="roll back", button_style="danger", disabled=True,
                                            tooltip="put this earlier production model back in production")
            self.roll_back.on_click(lambda _button: self._rollback())
            self.no_rollback = widgets.HTML("<p>No earlier production model to go back to.</p>")
            self.rolling_back = widgets.VBox([self.rollback_to, self.rollback_why, self.roll_back])
            rolling = [widgets.HTML("<h4>Roll back to an earlier production model</h4>"), self.no_rollback,
                       self.rolling_back]
        self.deciding = widgets.VBox(deciding)
        self.widget = widgets.VBox([
            self.who, self.header, self.track, self.gain, self.figures, self.verdict, self.deciding, self.message,
            widgets.HTML("<h3>Production and decisions so far</h3>"), self.production, self.history, *rolling],
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
        lines = [f"Decision on run {self.run_id}"]
        if self.summary is not None:
            lines += [f"  {f['label']}: new {_figure(f, 'candidate')}, production {_figure(f, 'production')}"
                      for f in self.summary["figures"]]
            lines += [f"Verdict: {self.summary['verdict']}", self.summary["recommendation"]["text"]]
            if self.summary["drivers"]:
                lines.append(f"What drives the new model's risk: {self.summary['drivers']}")
        return "\n".join(lines + ([self.said] if self.said else []))

    def _load(self) -> None:
        self._refresh_registry()
        self.track.value = _track_html(self.settings)
        try:
            if self.run_id is None:
                self.run_id = registry.latest_pending_run(Lake(self.lake))
            if self.run_id is None:
                self.header.value = ("<h2>Nothing to decide</h2><p>No new model waits for a decision in the lake "
                                     f"<code>{html.escape(self.lake)}</code>: retrain first (<code>make retrain</code>)."
                                     " Production and the decisions so far are below.</p>")
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
            self._stop(f"Run {self.run_id} was already decided: {earlier['choice']} by {earlier['by']} at "
                       f"{earlier['at']} ({earlier['why']!r}).")
        else:
            self._buttons(enabled=True)

    def _acting(self, right: str, *, asked: str, nothing: str) -> Person | None:
        """Who acts now, when they still have ``right``; else the page says why and ``None``."""
        try:
            return require(self._person(), right)
        except RightsError as exc:
            self._stop(f"Your {asked} was refused: {exc}. Nothing was {nothing}.")
            if self.roll_back is not None:
                self.roll_back.disabled = True
            return None

    def _decide(self, choice: str) -> None:
        person = self._acting("decide", asked=choice.replace("-", " "), nothing="decided")
        if person is None:
            return
        if not self.why.value.strip():
            self._say("Write why first (what in the comparison decides it): nothing was decided.", ok=False)
            return
        self._buttons(enabled=False)
        try:
            self.record = decide(self.run_id, choice, by=person.name, by_source=person.by_source, why=self.why.value,
                                 lake=self.lake, runs=self.runs)
        except (KaferError, OSError) as exc:
            self._say(str(exc), ok=False)
            self._buttons(enabled=self._still_open())
            return
        self._say(self.record["message"], ok=True)
        self._refresh_registry()

    def _rollback(self) -> None:
        person = self._acting("rollback", asked="roll back", nothing="rolled back")
        if person is None:
            return
        if not self.rollback_why.value.strip():
            self._say("Write why you roll back first: nothing was rolled back.", ok=False)
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
        if self._acting("read", asked="report", nothing="shown") is None:
            return
        page = Path(self.summary["report"]).read_text(encoding="utf-8")
        # sandbox="" (no allow-scripts, no allow-same-origin): the report's HTML and images show, but no script
        # of it runs, and it gets an origin of its own: it can reach neither the desk nor its kernel
        self.report.value = (f'<iframe sandbox="" title="comparison report of run {html.escape(self.run_id)}" '
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
        self.rollback_to.options = [(f"{v['version']} ({v['family']}, run {v['run']})", v["version"])
                                    for v in reversed(earlier)]
        self.rollback_to.value = earlier[-1]["version"] if earlier else None
        self.rollback_to.disabled = self.roll_back.disabled = not earlier
        _show(self.rolling_back, shown=bool(earlier))
        _show(self.no_rollback, shown=not earlier)

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


def _who_html(person: Person | None) -> str:
    """Who acts on this page, and (signed in with a desk account) the way to sign out."""
    if person is None:
        return ""
    out = ""
    if person.source == "account":
        base = os.environ.get("VOILA_BASE_URL", "/")
        out = f' · <a href="{html.escape(base.rstrip("/") + "/logout", quote=True)}">sign out</a>'
    return f"<p style='color:#57606a;text-align:right'>Signed in as <b>{_e(person.name)}</b> " \
           f"({_e(', '.join(person.roles) or 'no role')}; {_e(person.by_source)}){out}</p>"


def _outcome(record: dict) -> str:
    if record["choice"] == "keep-new":
        was = f" (was {record['before']})" if record["before"] else ""
        return f"Kept the new model: {record['after']} is now in production{was}. Logged at {record['at']}."
    stays = f"{record['before']} stays in production" if record["before"] else "no model is in production"
    return f"Kept the old model: {stays}; {record['candidate']} is rejected. Logged at {record['at']}."


def _e(value) -> str:
    return html.escape("—" if value is None else str(value))


def _when(iso: str | None) -> str:
    return "—" if not iso else str(iso)[:16].replace("T", " ")


def _trained(model: dict | None) -> str:
    trained = (model or {}).get("trained_on")
    if not trained:
        return "—"
    return (f"{trained['cars']:,} cars ({trained['positives']:,} failures), built {_when(trained['produced_from'])} "
            f"to {_when(trained['produced_to'])}")


def _header_html(summary: dict, *, pending: list[str]) -> str:
    candidate, production = summary["candidate"], summary["production"]
    against = f"production model {_e(production['version'])}" if production else "no production model (first run)"
    rows = [("version", candidate["version"], production["version"] if production else "none yet"),
            ("family", candidate["family"], production["family"] if production else "—"),
            ("trained on", _trained(candidate), _trained(production) if production else "—"),
            ("data version", candidate["data_version"], production["data_version"] if production else "—")]
    table = "".join(f'<tr><th style="{_WORD};text-align:left">{_e(what)}</th><td style="{_CELL}">{_e(new)}</td>'
                    f'<td style="{_CELL}">{_e(old)}</td></tr>' for what, new, old in rows)
    others = ""
    if pending:
        links = ", ".join(f'<a href="?run={_e(r)}">{_e(r)}</a>' for r in pending)
        others = f"<p>Also waiting for a decision: {links}.</p>"
    return (f"<h2>Run {_e(summary['run_id'])}: new model {_e(candidate['version'])} against {against}</h2>"
            f"<p>Retrained {_when(summary['started_at'])} UTC on data version {_e(summary['data_version'])}; "
            f"compared on {summary['compared_cars']:,} evaluation cars ({summary['compared_positives']:,} road-test "
            "failures) that neither model was trained on.</p>"
            f'<table style="border-collapse:collapse"><tr><th style="{_CELL}"></th>'
            f'<th style="{_CELL};text-align:left">new model</th><th style="{_CELL};text-align:left">production model'
            f"</th></tr>{table}</table>{others}")


def _figures_html(summary: dict) -> str:
    marks = {"better": ("clearly better", _OK), "worse": ("clearly worse", _BAD), "unclear": ("not clear", "#57606a")}
    against = summary["production"] is not None and any(f["difference"] for f in summary["figures"])
    rows = []
    for f in summary["figures"]:
        word, colour = marks.get(f["judgement"], ("", "#57606a"))
        if word and not against:
            word = {"clearly better": "better than chance", "clearly worse": "worse than chance",
                    "not clear": "not clearly better than chance"}[word]
        rows.append(f"<tr><td style='{_WORD}'>{_e(f['label'])} {'↑' if f['higher_is_better'] else '↓'}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'candidate')}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'production')}</td>"
                    f"<td style='{_NUMBER}'>{_figure(f, 'difference')}</td>"
                    f"<td style='{_WORD};color:{colour}'>{word}</td></tr>")
    head = "".join(f"<th style='{_WORD};text-align:{align}'>{name}</th>" for name, align in (
        ("figure (↑ higher is better, ↓ lower)", "left"), ("new model", "right"), ("production", "right"),
        ("new − production", "right"), ("", "left")))
    return (f"<h3>Key figures</h3><table style='border-collapse:collapse'><tr>{head}</tr>{''.join(rows)}</table>"
            "<p style='color:#57606a'>Each figure with its 95 % interval in brackets; an interval of the "
            "difference that includes 0 means the difference is not clear.</p>")


def _track_html(settings) -> str:
    """Production's track record: the warning in words above its chart (or why there is none)."""
    from .monitor import track_record
    from .report import figure_html, record_chart

    title = "<h3>Is production keeping its promise?</h3>"
    try:
        record = track_record(Lake(settings.lake), settings=settings)
    except (KaferError, OSError) as exc:
        return f"{title}<p style='color:{_BAD}'>The track record cannot be worked out: {_e(exc)}</p>"
    if record.production is None:
        return f"{title}<p>{_e(record.why)}</p>"
    colour = _BAD if record.alert else _OK if record.production.check.judged else "#57606a"
    alt = (f"Track record of production {record.production.version}: ROC-AUC, recall at the budget and the share of "
           "cars inside it per month of road test, with 95 % intervals, the promise as a dashed line, each decision "
           "marked")
    return (f"{title}<p style='border-left:4px solid {colour};padding:6px 12px;background:#f6f8fa'>{_e(record.why)}</p>"
            f"{figure_html(record_chart(record), alt=alt)}")


def _gain_html(summary: dict, *, runs) -> str:
    """Both models' gain curves on the compared cars: share of failures found against share of cars inspected."""
    import pandas as pd

    from .report import figure_html, recall_by_budget

    path = runrecord.run_dir(runs, summary["run_id"]) / runrecord.PREDICTIONS
    if not path.is_file():
        return ""
    scored = pd.read_csv(path, dtype={"KNR": str})
    compared = scored[scored["compared"].astype(bool)]
    probs = {"new model": compared["p_candidate"].to_numpy()}
    if summary["production"] is not None and compared["p_production"].notna().all():
        probs["production"] = compared["p_production"].to_numpy()
    try:
        chart = recall_by_budget(compared["y_true"].to_numpy(), probs, budgets=summary["budgets"])
    except KaferError:
        return ""
    alt = f"Gain curve of {' and '.join(probs)}: share of road-test failures found against share of cars inspected"
    return f"<h3>Failures found by inspection budget</h3>{figure_html(chart, alt=alt)}"


def _verdict_html(summary: dict) -> str:
    advice = summary["recommendation"]
    colour = _OK if advice["choice"] == "keep-new" else "#9a6700"
    drivers = (f"<h3>What drives the new model's risk</h3><p>{_e(summary['drivers'])}</p>"
               if summary["drivers"] else "")
    return (f"<h3>Verdict</h3><p>{_e(summary['verdict'])}</p>"
            f"<p style='border-left:4px solid {colour};padding:6px 12px;background:#f6f8fa'>"
            f"<b>What the evidence supports:</b> {_e(advice['text'])}</p>{drivers}")


def _production_html(current: dict | None, lake: str) -> str:
    if current is None:
        return f"<p>No model is in production in the lake <code>{_e(lake)}</code> yet.</p>"
    return (f"<p>In production: <b>{_e(current['version'])}</b> ({_e(current['family'])}, run {_e(current['run'])}), "
            f"since {_when(current['since'])} UTC.</p>")


def _history_html(log: list[dict]) -> str:
    if not log:
        return "<p>No decision yet.</p>"
    head = "".join(f"<th style='{_CELL};text-align:left'>{name}</th>"
                   for name in ("when (UTC)", "who", "decision", "run", "production before → after", "why"))
    rows = "".join(f"<tr><td style='{_WORD}'>{_when(d['at'])}</td><td style='{_CELL}'>{_by(d)}"
                   f"</td><td style='{_WORD}'>{_e(d['choice'])}</td><td style='{_WORD}'>{_e(d.get('run'))}</td>"
                   f"<td style='{_CELL}'>{_e(d['before'])} → {_e(d['after'])}</td><td style='{_CELL}'>{_e(d['why'])}</td>"
                   "</tr>" for d in reversed(log))
    return f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"


def _by(decision: dict) -> str:
    """Who decided, and how they were known when the log says it."""
    known = decision.get("by_source")
    return _e(decision["by"]) + (f" <span style='color:#57606a'>({_e(known)})</span>" if known else "")


def _figure(figure: dict, column: str) -> str:
    """One cell of the figures table: the Brier score with four digits, differences signed."""
    return interval(figure[column], 4 if figure["metric"] == "brier" else 3, sign=column == "difference")
