"""Keep the new model or the old one: one function, and a thin ipywidgets view over it.

:func:`decide` is the single entry both ``kafer decide`` and :class:`DecisionPanel` call; the
panel only shows the run's comparison and turns a click into that call. Widgets do nothing
headless, so the panel holds no logic the function does not.
"""

from __future__ import annotations

import html
import os

from . import registry, runrecord
from .config import load_settings
from .errors import DecisionError, KaferError, RunError
from .lake import Lake
from .narrative import interval

#: Key figures shown for both models: metrics.json key, label, whether higher is better.
FIGURES = (("roc_auc", "ROC-AUC", True), ("pr_auc", "PR-AUC", True), ("brier", "Brier score", False))


def decide(run_id: str, choice: str, *, by: str, why: str, lake: str | None = None,
           runs: str | os.PathLike | None = None) -> dict:
    """Decide a run: ``keep-new`` puts its candidate in production, ``keep-old`` rejects it.

    Parameters
    ----------
    run_id : str
    choice : {"keep-new", "keep-old"}
    by, why : str
        Who decides and why; neither may be blank.
    lake, runs : str, optional
        Lake URL and run records folder; the settings' (``KAFER_LAKE``, ``KAFER_RUNS``…) when omitted.

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
                             settings=settings)
    return {**record, "message": _outcome(record)}


def run_summary(run_id: str, *, runs: str | os.PathLike) -> dict:
    """What the person deciding needs from a run's record: both models' key figures and the verdict.

    Returns
    -------
    dict
        ``run_id, status, verdict, eval_cars, eval_positives, operating_budget``, ``candidate`` and
        ``production`` (``{"version", "family"}``, production ``None`` on a first run) and
        ``figures``: one ``{"metric", "label", "higher_is_better", "candidate", "production",
        "difference"}`` per key figure, each value ``{"value", "low", "high"}`` or ``None``.

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
        return {
            "run_id": run_id,
            "status": manifest.get("status"),
            "verdict": metrics["verdict"],
            "eval_cars": metrics["eval_cars"],
            "eval_positives": metrics["eval_positives"],
            "operating_budget": budget,
            "candidate": {"version": models["candidate"].get("version") or manifest.get("candidate_version"),
                          "family": models["candidate"].get("family")},
            "production": ({"version": models["production"].get("version"),
                            "family": models["production"].get("family")} if models["production"] else None),
            "figures": [{"metric": key, "label": label, "higher_is_better": higher,
                         "candidate": models["candidate"]["metrics"].get(key),
                         "production": models["production"]["metrics"].get(key) if models["production"] else None,
                         "difference": difference.get(key)}
                        for key, label, higher in figures],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise DecisionError(f"run {run_id}: {folder / runrecord.METRICS} is incomplete ({exc!r} missing or "
                            "malformed): rerun the comparison") from None


class DecisionPanel:
    """The decision view for a notebook: the comparison's key figures, a reason, two buttons.

    Display it as a cell's last expression. Clicking *keep new* or *keep old* calls
    :func:`decide`, exactly as ``kafer decide`` does; a refusal or a busy lake shows in
    ``message`` and changes nothing.

    Parameters
    ----------
    run_id : str or None
        The run to decide; ``None``: the run of the newest pending candidate.
    lake, runs : str, optional
        Lake URL and run records folder; the settings' when omitted.
    user : str, optional
        Who decides (the ``by`` field's initial value); ``$USER`` when omitted.
    """

    def __init__(self, run_id: str | None, lake: str | None = None, runs: str | os.PathLike | None = None,
                 user: str | None = None):
        import ipywidgets as widgets

        settings = load_settings(lake=lake, runs=runs)
        self.lake = settings.lake
        self.runs = settings.runs
        self.run_id = run_id
        self.summary = None
        self.record = None
        self.said = ""
        self.header = widgets.HTML()
        self.figures = widgets.HTML()
        self.verdict = widgets.HTML()
        self.by = widgets.Text(value=user or os.environ.get("USER") or os.environ.get("USERNAME", ""),
                               description="by")
        self.why = widgets.Textarea(description="why", placeholder="What in the comparison decides it (required)",
                                    layout=widgets.Layout(width="48em", height="5em"))
        self.keep_new = widgets.Button(description="keep new", button_style="success",
                                       tooltip="the candidate becomes the production model")
        self.keep_old = widgets.Button(description="keep old", button_style="warning",
                                       tooltip="production stays; the candidate is rejected")
        self.message = widgets.HTML()
        self.keep_new.on_click(lambda _button: self._decide("keep-new"))
        self.keep_old.on_click(lambda _button: self._decide("keep-old"))
        self.widget = widgets.VBox([self.header, self.figures, self.verdict, self.by, self.why,
                                    widgets.HBox([self.keep_new, self.keep_old]), self.message])
        self._load()

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, with a plain-text account for viewers without widgets."""
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": self._plain()}

    def _plain(self) -> str:
        lines = [f"Decision on run {self.run_id}"]
        if self.summary is not None:
            lines += [f"  {f['label']}: new {_figure(f, 'candidate')}, production {_figure(f, 'production')}"
                      for f in self.summary["figures"]]
            lines.append(f"Verdict: {self.summary['verdict']}")
        return "\n".join(lines + ([self.said] if self.said else []))

    def _load(self) -> None:
        try:
            if self.run_id is None:
                self.run_id = registry.latest_pending_run(Lake(self.lake))
            if self.run_id is None:
                self._stop(f"No candidate waits for a decision in the lake {self.lake}: retrain first.")
                return
            self.summary = run_summary(self.run_id, runs=self.runs)
            earlier = self._earlier()
        except (KaferError, OSError) as exc:
            self._stop(str(exc))
            return
        self.header.value = _header_html(self.summary)
        self.figures.value = _figures_html(self.summary)
        self.verdict.value = f"<p><b>Verdict:</b> {html.escape(str(self.summary['verdict']))}</p>"
        if earlier is not None:
            self._stop(f"Run {self.run_id} was already decided: {earlier['choice']} by {earlier['by']} at "
                       f"{earlier['at']} ({earlier['why']!r}).")

    def _decide(self, choice: str) -> None:
        if not self.why.value.strip():
            self._say("Write why first (what in the comparison decides it): nothing was decided.", ok=False)
            return
        self._buttons(enabled=False)
        try:
            self.record = decide(self.run_id, choice, by=self.by.value, why=self.why.value, lake=self.lake,
                                 runs=self.runs)
        except (KaferError, OSError) as exc:
            self._say(str(exc), ok=False)
            self._buttons(enabled=self._still_open())
            return
        self._say(self.record["message"], ok=True)

    def _earlier(self) -> dict | None:
        """This run's logged decision, if any."""
        return next((d for d in registry.decisions(Lake(self.lake)) if d["run"] == self.run_id), None)

    def _still_open(self) -> bool:
        try:
            return self._earlier() is None
        except (KaferError, OSError):
            return True

    def _stop(self, text: str) -> None:
        self._say(text, ok=False)
        self._buttons(enabled=False)

    def _buttons(self, *, enabled: bool) -> None:
        self.keep_new.disabled = self.keep_old.disabled = not enabled

    def _say(self, text: str, *, ok: bool) -> None:
        self.said = text
        colour = "#1a7f37" if ok else "#b42318"
        self.message.value = f'<p style="color:{colour}">{html.escape(text)}</p>'


def _outcome(record: dict) -> str:
    if record["choice"] == "keep-new":
        was = f" (was {record['before']})" if record["before"] else ""
        return f"Kept the new model: {record['after']} is now in production{was}. Logged at {record['at']}."
    stays = f"{record['before']} stays in production" if record["before"] else "no model is in production"
    return f"Kept the old model: {stays}; {record['candidate']} is rejected. Logged at {record['at']}."


def _header_html(summary: dict) -> str:
    production = summary["production"]
    against = f"production model {_model_html(production)}" if production else "no production model (first run)"
    return (f"<h3>Run {html.escape(summary['run_id'])}</h3>"
            f"<p>New model {_model_html(summary['candidate'])} against {against}, on {summary['eval_cars']} "
            f"evaluation cars with {summary['eval_positives']} road-test failures. Brackets: the interval "
            "around each figure.</p>")


def _model_html(model: dict) -> str:
    return f"<b>{html.escape(str(model['version']))}</b> ({html.escape(str(model['family']))})"


def _figures_html(summary: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f['label'])} {'↑' if f['higher_is_better'] else '↓'}</td>"
        f"<td>{_figure(f, 'candidate')}</td><td>{_figure(f, 'production')}</td>"
        f"<td>{_figure(f, 'difference')}</td></tr>"
        for f in summary["figures"])
    return ("<table><tr><th>figure (↑ higher is better, ↓ lower)</th><th>new model</th><th>production</th>"
            f"<th>new − production</th></tr>{rows}</table>")


def _figure(figure: dict, column: str) -> str:
    """One cell of the figures table: the Brier score with four digits, differences signed."""
    return interval(figure[column], 4 if figure["metric"] == "brier" else 3, sign=column == "difference")
