"""The decision functions both the CLI and the panel call, the run summary, and the panel driven by clicks.

Every run here is a real one (tests/worlds.py): its metrics.json is what the real evaluation writes.
The panel acts for a person (tests/people: ``acting``), asked again at every click.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import lake_snapshot
from kafer import decide as decide_module
from kafer import registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.decide import DecisionPanel, decide, requested_run, rollback, run_summary
from kafer.desk import person as person_module
from kafer.desk.rights import Person
from kafer.errors import DecisionError, RightsError
from kafer.narrative import interval
from kafer.lake import Lake
from kafer.locks import hold
from worlds import SMALL, quick_retrain

RUN1, RUN2, RUN3 = "r20241026T101500Z-ab12", "r20241126T101500Z-cd34", "r20241226T101500Z-ef56"


@pytest.fixture
def world(tmp_path, months):
    """A local lake and runs folder, and a function making a real run on the next month's upload."""
    lake = Lake(str(tmp_path / "lake"))
    settings = load_settings(lake=lake.url, runs=str(tmp_path / "runs"), **SMALL)
    uploads = iter(months)

    def run(run_id: str) -> str:
        return quick_retrain(next(uploads), settings=settings, run_id=run_id)

    return lake, settings, run


def acting(name: str, role: str = "approver", source: str = "account"):
    """The ``person`` of a panel: ``name`` with ``role``, whoever asks."""
    return lambda: Person(name, (role,), source)


def metrics_of(settings, run_id: str) -> dict:
    return json.loads((Path(settings.runs) / run_id / "metrics.json").read_text(encoding="utf-8"))


def test_decide_resolves_lake_and_runs_and_says_what_happened(world):
    lake, settings, run = world
    version = run(RUN1)
    record = decide(RUN1, "keep-new", by="Ana", why="better", lake=lake.url, runs=settings.runs)
    assert record["message"].startswith(f"Kept the new model: {version} is now in production.")
    assert {k: v for k, v in record.items() if k != "message"} == registry.decisions(lake)[0]
    run(RUN2)
    record = decide(RUN2, "keep-old", by="Ana", why="worse", lake=lake.url, runs=settings.runs)
    assert record["message"].startswith(f"Kept the old model: {version} stays in production; "
                                        f"{record['candidate']} is rejected.")


def test_decide_takes_lake_and_runs_from_the_environment(world, monkeypatch):
    lake, settings, run = world
    version = run(RUN1)
    monkeypatch.setenv("KAFER_LAKE", lake.url)
    monkeypatch.setenv("KAFER_RUNS", settings.runs)
    decide(RUN1, "keep-new", by="Ana", why="better")
    assert registry.production(lake)["version"] == version


def test_decide_refuses_and_changes_nothing(world):
    lake, settings, run = world
    run(RUN1)
    before = lake_snapshot(lake)
    with pytest.raises(DecisionError, match="needs a reason"):
        decide(RUN1, "keep-new", by="Ana", why="   ", lake=lake.url, runs=settings.runs)
    assert lake_snapshot(lake) == before


def test_the_cli_decides_and_rolls_back_through_the_same_functions(world, capsys, monkeypatch):
    lake, settings, run = world
    first = run(RUN1)
    monkeypatch.setattr(person_module.getpass, "getuser", lambda: "rui")
    where = ["--lake", lake.url, "--runs", settings.runs]
    assert main(["decide", RUN1, "keep-new", "--by", "Ana", "--why", "better", *where]) == 0
    assert f"Kept the new model: {first} is now in production" in capsys.readouterr().out
    assert main(["decide", RUN1, "keep-old", "--by", "Rui", "--why", "again", *where]) == 1
    assert f"run {RUN1} was already decided: keep-new by Ana" in capsys.readouterr().err
    second = run(RUN2)
    assert main(["decide", RUN2, "keep-new", "--why", "newer", *where]) == 0
    assert main(["rollback", "--to", first, "--why", "second one misses a hall", *where]) == 0
    assert f"Rolled back: {first} is in production again (was {second})" in capsys.readouterr().out
    assert main(["status", "--json", "--lake", lake.url]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["production"]["version"] == first
    assert [(d["by"], d["by_source"]) for d in state["decisions"]] == [("Ana", "--by"), ("rui", "os user"),
                                                                      ("rui", "os user")]
    assert main(["status", "--lake", lake.url]) == 0
    assert re.search(r"keep new +run r20241026T101500Z-ab12  by Ana \(--by\): better", capsys.readouterr().out)


def test_run_summary_reads_what_the_real_evaluation_wrote(world):
    lake, settings, run = world
    first = run(RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=settings.runs)
    second = run(RUN2)
    metrics = metrics_of(settings, RUN2)
    summary = run_summary(RUN2, runs=settings.runs)
    assert (summary["candidate"]["version"], summary["production"]["version"]) == (second, first)
    assert summary["candidate"]["trained_on"] == metrics["models"]["candidate"]["trained_on"]
    assert summary["production"]["trained_on"]["cars"] > 0 and summary["data_version"] == metrics["data_version"]
    assert [f["metric"] for f in summary["figures"]] == ["roc_auc", "pr_auc", "brier", "recall_at_10",
                                                         "precision_at_10"]
    assert [f["higher_is_better"] for f in summary["figures"]] == [True, True, False, True, True]
    brier = summary["figures"][2]
    assert brier["production"] == metrics["models"]["production"]["metrics"]["brier"]
    assert brier["difference"] == metrics["difference"]["brier"]
    assert all(f["judgement"] in ("better", "worse", "unclear") for f in summary["figures"][:2])
    assert summary["verdict"] == metrics["verdict"] and summary["recommendation"] == metrics["recommendation"]
    assert summary["compared_cars"] == metrics["compared_cars"] and summary["status"] == "succeeded"


def test_run_summary_of_a_first_run(world):
    lake, settings, run = world
    run(RUN1)
    summary = run_summary(RUN1, runs=settings.runs)
    assert summary["production"] is None
    assert all(f["production"] is None and f["difference"] is None for f in summary["figures"])


def test_run_summary_refuses_a_missing_or_incomplete_record(world):
    lake, settings, run = world
    with pytest.raises(DecisionError, match=f"run {RUN1} cannot be shown: .*manifest.json does not exist"):
        run_summary(RUN1, runs=settings.runs)
    run(RUN1)
    path = Path(settings.runs) / RUN1 / "metrics.json"
    path.unlink()
    with pytest.raises(DecisionError, match="metrics.json does not exist"):
        run_summary(RUN1, runs=settings.runs)
    path.write_text('{"run_id": "x"}', encoding="utf-8")
    with pytest.raises(DecisionError, match="metrics.json is incomplete"):
        run_summary(RUN1, runs=settings.runs)


def panel_state(panel: DecisionPanel) -> tuple[bool, bool]:
    return panel.keep_new.disabled, panel.keep_old.disabled


def test_the_panel_shows_the_run_both_models_the_figures_and_what_to_do(world):
    lake, settings, run = world
    first = run(RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=settings.runs)
    second = run(RUN2)
    metrics = metrics_of(settings, RUN2)
    panel = DecisionPanel(RUN2, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    assert panel.why.value == "" and panel_state(panel) == (False, False)
    assert "Signed in as <b>Rui</b> (approver; desk account)" in panel.who.value and "/logout" in panel.who.value
    assert f"Run {RUN2}" in panel.header.value and first in panel.header.value and second in panel.header.value
    assert metrics["data_version"] in panel.header.value and "cars (" in panel.header.value
    for label in ("ROC-AUC", "PR-AUC", "Brier score", "Recall at 10 %", "Precision at 10 %"):
        assert label in panel.figures.value
    auc = metrics["models"]["production"]["metrics"]["roc_auc"]
    assert interval(auc) in panel.figures.value
    assert interval(metrics["difference"]["brier"], 4, sign=True) in panel.figures.value
    assert "text-align:right" in panel.figures.value and "padding" in panel.figures.value
    assert metrics["recommendation"]["text"].split(":")[0] in panel.verdict.value
    assert "keep new" in panel.history.value and "Ana" in panel.history.value and first in panel.production.value
    assert panel.message.value == ""
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"].startswith(f"Decision on run {RUN2}\n  ROC-AUC: new model ")


def test_outside_the_desk_the_operating_system_user_decides_and_the_log_says_so(world, monkeypatch):
    lake, settings, run = world
    version = run(RUN1)
    for name in person_module.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(person_module.getpass, "getuser", lambda: "ana.souza")
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs)
    assert "Signed in as <b>ana.souza</b> (approver; os user)" in panel.who.value and "logout" not in panel.who.value
    assert not [w for w in panel.deciding.children if getattr(w, "description", "") == "by"], "no 'by' field"
    panel.why.value = "first model"
    panel.keep_new.click()
    [logged] = registry.decisions(lake)
    assert (logged["by"], logged["by_source"], logged["after"]) == ("ana.souza", "os user", version)
    assert "ana.souza <span style='color:#57606a'>(os user)</span>" in panel.history.value


def test_the_run_comes_from_the_page_address_under_voila(monkeypatch):
    monkeypatch.setenv("QUERY_STRING", f"run={RUN2}&x=1")
    assert requested_run("") == RUN2 and requested_run(RUN1) == RUN1
    monkeypatch.setenv("QUERY_STRING", "")
    assert requested_run(None) is None


def test_clicking_without_a_reason_refuses_and_changes_nothing(world):
    lake, settings, run = world
    run(RUN1)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Ana"))
    before = lake_snapshot(lake)
    panel.why.value = "  \n "
    panel.keep_new.click()
    panel.keep_old.click()
    assert "Write why first" in panel.message.value and "nothing was decided" in panel.message.value
    assert lake_snapshot(lake) == before and panel.record is None
    assert panel_state(panel) == (False, False)


def test_a_viewers_panel_has_no_approver_controls_a_forged_click_changes_nothing_and_the_report_is_sandboxed(world):
    lake, settings, run = world
    run(RUN1)
    report = Path(settings.runs) / RUN1 / "04_compare.html"
    report.write_text('<h1>Run r1</h1><script>parent.document.title = "owned"</script><img src="data:," alt="chart">',
                      encoding="utf-8")
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Vic", "viewer"))
    assert None is panel.keep_new is panel.keep_old is panel.why is panel.roll_back is panel.rollback_to
    assert "takes the approver role" in panel.deciding.children[-1].value and f"Run {RUN1}" in panel.header.value
    before = lake_snapshot(lake)
    panel._decide("keep-new")  # what a widget message forged from the page could reach at most
    assert lake_snapshot(lake) == before and registry.decisions(lake) == []
    assert "Your keep new was refused: Vic (viewer, desk account) may not keep a new model or the old one: that " \
           "takes the approver role" in panel.message.value and "Nothing was decided" in panel.message.value
    panel._rollback()
    assert lake_snapshot(lake) == before and "Your roll back was refused" in panel.message.value
    panel.show_report.click()  # reading is a viewer's right
    frame = panel.report.value
    assert frame.startswith('<iframe sandbox="" title="comparison report of run') and "allow-" not in frame
    assert "&lt;script&gt;" in frame and "<script>" not in frame  # the page travels as an escaped srcdoc


def test_a_right_withdrawn_after_the_page_was_built_is_refused_at_the_click(world):
    lake, settings, run = world
    run(RUN1)
    roles = ["approver"]
    ana = lambda: Person("Ana", tuple(roles), "account")  # noqa: E731 (her role as it is at each click)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=ana)
    assert panel_state(panel) == (False, False)
    roles[:] = ["viewer"]
    before = lake_snapshot(lake)
    panel.why.value = "better"
    panel.keep_new.click()
    assert lake_snapshot(lake) == before and registry.decisions(lake) == []
    assert "Ana (viewer, desk account) may not keep a new model" in panel.message.value
    assert panel_state(panel) == (True, True)

    def removed():
        raise RightsError("ana no longer has a desk account: sign in with another")

    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=removed)
    assert panel.keep_new is None and panel.person is None and panel.summary is None
    assert "ana no longer has a desk account" in panel.message.value


def test_keep_new_click_promotes_exactly_as_the_cli_function(world, monkeypatch):
    lake, settings, run = world
    version = run(RUN1)
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return decide(*args, **kwargs)

    monkeypatch.setattr(decide_module, "decide", spy)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Ana", source="proxy"))
    panel.why.value = "finds 4 more failures per 100 at 10 %"
    panel.keep_new.click()
    assert calls == [((RUN1, "keep-new"), {"by": "Ana", "by_source": "desk sign-in (proxy)",
                                           "why": "finds 4 more failures per 100 at 10 %",
                                           "lake": lake.url, "runs": settings.runs})]
    assert registry.production(lake)["version"] == version
    [logged] = registry.decisions(lake)
    assert (logged["by"], logged["by_source"], logged["why"], logged["choice"], logged["run"]) == (
        "Ana", "desk sign-in (proxy)", "finds 4 more failures per 100 at 10 %", "keep-new", RUN1)
    assert panel.record == {**logged, "message": panel.record["message"]}
    assert f"Kept the new model: {version} is now in production" in panel.message.value
    assert panel_state(panel) == (True, True)
    assert version in panel.production.value and "finds 4 more failures" in panel.history.value


def test_keep_old_click_then_roll_back_from_the_same_panel(world):
    lake, settings, run = world
    first = run(RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=settings.runs)
    run(RUN2)
    panel = DecisionPanel(RUN2, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    assert panel.roll_back.disabled  # nothing was ever superseded
    panel.why.value = "intervals overlap"
    panel.keep_old.click()
    assert registry.production(lake)["version"] == first
    assert [d["choice"] for d in registry.decisions(lake)] == ["keep-new", "keep-old"]
    assert f"Kept the old model: {first} stays in production" in panel.message.value
    assert panel_state(panel) == (True, True)
    third = run(RUN3)
    registry.decide(lake, RUN3, "keep-new", by="Ana", why="June", runs_dir=settings.runs)
    panel = DecisionPanel(None, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    assert "Nothing to decide" in panel.header.value and panel_state(panel) == (True, True)
    assert third in panel.production.value and not panel.roll_back.disabled
    assert panel.rollback_to.value == first
    panel.roll_back.click()
    assert "why you roll back" in panel.message.value and registry.production(lake)["version"] == third
    panel.rollback_why.value = "June's model flags the wrong engines"
    panel.roll_back.click()
    assert registry.production(lake)["version"] == first
    assert f"Rolled back: {first} is in production again (was {third})" in panel.message.value
    assert registry.decisions(lake)[-1]["why"] == "June's model flags the wrong engines"
    assert registry.decisions(lake)[-1]["by_source"] == "desk account"


def test_rollback_refuses_a_version_never_in_production(world):
    lake, settings, run = world
    version = run(RUN1)
    with pytest.raises(DecisionError, match="was never in production"):
        rollback(version, by="Ana", why="x", lake=lake.url)


def test_an_already_decided_run_opens_disabled(world):
    lake, settings, run = world
    run(RUN1)
    registry.decide(lake, RUN1, "keep-old", by="Ana", why="not convinced", runs_dir=settings.runs)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    assert panel_state(panel) == (True, True)
    assert f"Run {RUN1} was already decided: keep old by Ana" in panel.message.value
    assert panel._repr_mimebundle_()["text/plain"].endswith(panel.said) and "already decided" in panel.said
    assert "ROC-AUC" in panel.figures.value


def test_a_decision_made_elsewhere_meanwhile_shows_in_the_message(world):
    lake, settings, run = world
    run(RUN1)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="from the CLI", runs_dir=settings.runs)
    before = lake_snapshot(lake)
    panel.why.value = "my reason"
    panel.keep_old.click()
    assert f"run {RUN1} was already decided: keep-new by Ana" in panel.message.value
    assert "Traceback" not in panel.message.value
    assert panel_state(panel) == (True, True) and lake_snapshot(lake) == before


def test_a_busy_lake_shows_in_the_message_and_allows_a_retry(world, tmp_path, monkeypatch):
    lake, settings, run = world
    version = run(RUN1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kafer.toml").write_text("[kafer]\nlock_timeout = 0.2\n", encoding="utf-8")
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    panel.why.value = "better"
    with hold(lake, registry.LOCK, purpose="ingest of the May exports"):
        panel.keep_new.click()
    assert "is busy: ingest of the May exports" in panel.message.value
    assert registry.decisions(lake) == [] and panel_state(panel) == (False, False)
    panel.keep_new.click()
    assert registry.production(lake)["version"] == version and panel_state(panel) == (True, True)


def test_the_panel_picks_the_latest_pending_run_and_names_the_others(world):
    lake, settings, run = world
    run(RUN1)
    run(RUN2)
    panel = DecisionPanel(None, lake=lake.url, runs=settings.runs)
    assert panel.run_id == RUN2 and f'href="?run={RUN1}"' in panel.header.value


def test_the_panel_without_anything_to_decide(lake, tmp_path):
    panel = DecisionPanel(None, lake=lake.url, runs=str(tmp_path / "runs"), person=acting("Ana"))
    assert "Nothing to decide" in panel.header.value and panel_state(panel) == (True, True)
    assert "No model is in production" in panel.production.value and "No decision yet" in panel.history.value


def test_the_panel_on_a_missing_run_record(lake, tmp_path):
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(tmp_path / "runs"), person=acting("Ana"))
    assert f"run {RUN1} cannot be shown" in panel.message.value and panel_state(panel) == (True, True)


#: Words of the full report and of notebooks and tests that a person deciding never reads on the page.
NOT_ON_THE_PAGE = ("candidate", "Candidate", "Holm", "PSI", "log-odds", "stack weight", "05 ·", "Run all cells")


def page_text(panel) -> str:
    """Every word the panel shows (its HTML and its controls' labels), images left out."""
    import ipywidgets as widgets

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    said = []
    for w in walk(panel.widget):
        if isinstance(w, widgets.HTML):
            said.append(re.sub(r'src="data:image/png;base64,[^"]*"', "", w.value))
        for name in ("description", "placeholder", "tooltip"):
            said.append(str(getattr(w, name, "") or ""))
    return "\n".join(said)


def chart_of(html_text: str):
    """The chart an HTML widget shows, as its ``<img>`` alt text and PNG bytes."""
    import base64

    found = re.search(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', html_text)
    return (found.group(1), base64.b64decode(found.group(2))) if found else None


def test_the_page_in_brazilian_portuguese_speaks_to_a_person_who_is_no_statistician(world, monkeypatch):
    from kafer.i18n import using
    from kafer.report import NEW_COLOUR, PRODUCTION_COLOUR, recall_by_budget

    lake, settings, run = world
    first = run(RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="primeiro", runs_dir=settings.runs)
    run(RUN2)
    metrics = metrics_of(settings, RUN2)
    charts = []
    real = recall_by_budget

    def kept(*args, **kwargs):  # the gain chart the page draws, kept to read its legend and axes
        charts.append(real(*args, **kwargs))
        return charts[-1]

    monkeypatch.setattr("kafer.report.recall_by_budget", kept)
    with using("pt-BR"):
        panel = DecisionPanel(RUN2, lake=lake.url, runs=settings.runs, person=acting("Rui"))
        text = page_text(panel)
        assert "Manter o modelo novo ou o antigo" in panel.title.value and "Veredito" in panel.verdict.value
        assert "modelo novo" in panel.header.value and "modelo de produção" in panel.header.value
        assert (panel.keep_new.description, panel.keep_old.description) == ("manter o novo", "manter o antigo")
        assert "Conectado como <b>Rui</b>" in panel.who.value and "Nenhuma decisão" not in panel.history.value
        assert "manter o novo" in panel.history.value and "Ana" in panel.history.value
        recall = metrics["models"]["production"]["metrics"]["recall_at_10"]
        shown = f"{recall['value'] * 100:.1f}".replace(".", ",")
        assert shown in panel.figures.value, "a share of every 100, with a decimal comma"
        assert "Falhas encontradas ao inspecionar os 10 % de carros mais arriscados" in panel.figures.value
        difference = metrics["difference"]["recall_at_10"]["value"] * 100
        cited = f"{abs(difference):.1f}".replace(".", ",")
        assert cited in panel.verdict.value and cited in panel.figures.value, "the verdict's figure is on the page"
        auc = metrics["models"]["candidate"]["metrics"]["roc_auc"]["value"]
        assert f"{auc:.3f}".replace(".", ",") in panel.verdict.value and f"{auc:.3f}".replace(".", ",") in \
            panel.figures.value
        assert "Falhas encontradas por orçamento de inspeção" in panel.gain.value
        [chart] = charts
        [ax] = chart.axes
        assert ax.get_xlabel() == "carros inspecionados, os mais arriscados primeiro (a cada 100 carros)"
        assert ax.get_ylabel() == "falhas no teste de rodagem encontradas (a cada 100)"
        legend = {t.get_text(): line.get_color() for t, line in zip(ax.get_legend().get_texts(),
                                                                     ax.get_legend().get_lines())}
        assert legend["modelo novo"] == NEW_COLOUR and legend["modelo de produção"] == PRODUCTION_COLOUR
        assert chart_of(panel.gain.value)[1].startswith(b"\x89PNG")
        assert NEW_COLOUR in panel.header.value and PRODUCTION_COLOUR in panel.figures.value  # the page's legend
    for word in NOT_ON_THE_PAGE:
        assert word not in text, word
    english = page_text(DecisionPanel(RUN2, lake=lake.url, runs=settings.runs, person=acting("Rui")))
    for word in NOT_ON_THE_PAGE:
        assert word not in english, word
    assert "Keep the new model or the old one" in english and "keep new" in english and first in english


def test_the_page_draws_no_empty_chart_it_says_so_in_words(world):
    from kafer import runrecord

    lake, settings, run = world
    run(RUN1)
    (Path(settings.runs) / RUN1 / runrecord.PREDICTIONS).unlink()
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Rui"))
    assert chart_of(panel.gain.value) is None and "no curve to draw" in panel.gain.value
    assert chart_of(panel.track.value) is None and "No model is in production yet" in panel.track.value
    assert "Failures found" in panel.figures.value  # the figures stay, in words and numbers


def test_a_decision_made_elsewhere_shows_in_the_history_after_a_refresh(world):
    lake, settings, run = world
    run(RUN1)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=settings.runs, person=acting("Rui", role="viewer"))
    assert "No decision yet" in panel.history.value
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="from the CLI", runs_dir=settings.runs)
    panel.refresh_button.click()
    assert "from the CLI" in panel.history.value and "Ana" in panel.history.value
    assert f"Run {RUN1} was already decided: keep new by Ana" in panel.message.value

