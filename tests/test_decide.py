"""The decision function both the CLI and the panel call, the run summary, and the panel driven by clicks."""

from __future__ import annotations

import json

import pytest

from conftest import lake_snapshot
from kafer import decide as decide_module
from kafer import registry
from kafer.cli import main
from kafer.decide import DecisionPanel, decide, run_summary
from kafer.errors import DecisionError
from test_registry import FIGURES, RUN1, RUN2, retrain, write_run


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def test_decide_resolves_lake_and_runs_and_says_what_happened(lake, runs):
    version = retrain(lake, runs, RUN1)
    record = decide(RUN1, "keep-new", by="Ana", why="better", lake=lake.url, runs=str(runs))
    assert record["message"].startswith(f"Kept the new model: {version} is now in production.")
    assert {k: v for k, v in record.items() if k != "message"} == registry.decisions(lake)[0]
    retrain(lake, runs, RUN2)
    record = decide(RUN2, "keep-old", by="Ana", why="worse", lake=lake.url, runs=str(runs))
    assert record["message"].startswith(f"Kept the old model: {version} stays in production; "
                                        f"{record['candidate']} is rejected.")


def test_decide_takes_lake_and_runs_from_the_environment(lake, runs, monkeypatch):
    version = retrain(lake, runs, RUN1)
    monkeypatch.setenv("KAFER_LAKE", lake.url)
    monkeypatch.setenv("KAFER_RUNS", str(runs))
    decide(RUN1, "keep-new", by="Ana", why="better")
    assert registry.production(lake)["version"] == version


def test_decide_refuses_and_changes_nothing(lake, runs):
    retrain(lake, runs, RUN1)
    before = lake_snapshot(lake)
    with pytest.raises(DecisionError, match="needs a reason"):
        decide(RUN1, "keep-new", by="Ana", why="   ", lake=lake.url, runs=str(runs))
    assert lake_snapshot(lake) == before


def test_the_cli_decides_through_the_same_function(lake, runs, capsys):
    version = retrain(lake, runs, RUN1)
    assert main(["decide", RUN1, "keep-new", "--by", "Ana", "--why", "better", "--lake", lake.url,
                 "--runs", str(runs)]) == 0
    assert f"Kept the new model: {version} is now in production" in capsys.readouterr().out
    assert main(["decide", RUN1, "keep-old", "--by", "Rui", "--why", "again", "--lake", lake.url,
                 "--runs", str(runs)]) == 1
    assert f"run {RUN1} was already decided: keep-new by Ana" in capsys.readouterr().err
    assert main(["status", "--json", "--lake", lake.url]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["production"]["version"] == version and [d["by"] for d in state["decisions"]] == ["Ana"]


def test_run_summary(runs):
    write_run(runs, RUN2, candidate="m2", production="m1")
    summary = run_summary(RUN2, runs=runs)
    assert (summary["candidate"], summary["production"]) == ({"version": "m2", "family": "hgb"},
                                                             {"version": "m1", "family": "hgb"})
    assert [f["metric"] for f in summary["figures"]] == ["roc_auc", "pr_auc", "brier", "recall_at_10",
                                                         "precision_at_10"]
    assert [f["label"] for f in summary["figures"]][3:] == ["Recall at 10 %", "Precision at 10 %"]
    assert [f["higher_is_better"] for f in summary["figures"]] == [True, True, False, True, True]
    brier = summary["figures"][2]
    assert brier["production"] == FIGURES["brier"] and brier["candidate"]["value"] == pytest.approx(0.071)
    assert brier["difference"] == {"value": 0.01, "low": -0.02, "high": 0.04}
    assert summary["verdict"].startswith("The new model") and summary["status"] == "succeeded"
    assert (summary["eval_cars"], summary["eval_positives"], summary["operating_budget"]) == (1200, 48, 0.1)


def test_run_summary_of_a_first_run(runs):
    write_run(runs, RUN1, candidate="m1", production=None)
    summary = run_summary(RUN1, runs=runs)
    assert summary["production"] is None
    assert all(f["production"] is None and f["difference"] is None for f in summary["figures"])


def test_run_summary_refuses_a_missing_or_incomplete_record(runs):
    with pytest.raises(DecisionError, match=f"run {RUN1} cannot be shown: .*manifest.json does not exist"):
        run_summary(RUN1, runs=runs)
    write_run(runs, RUN1, candidate="m1", production=None)
    (runs / RUN1 / "metrics.json").unlink()
    with pytest.raises(DecisionError, match="metrics.json does not exist"):
        run_summary(RUN1, runs=runs)
    (runs / RUN1 / "metrics.json").write_text('{"run_id": "x"}', encoding="utf-8")
    with pytest.raises(DecisionError, match="metrics.json is incomplete"):
        run_summary(RUN1, runs=runs)


def panel_state(panel: DecisionPanel) -> tuple[bool, bool]:
    return panel.keep_new.disabled, panel.keep_old.disabled


def test_the_panel_shows_both_models_and_the_verdict(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    second = retrain(lake, runs, RUN2)
    panel = DecisionPanel(RUN2, lake=lake.url, runs=str(runs), user="Rui")
    assert panel.by.value == "Rui" and panel.why.value == "" and panel_state(panel) == (False, False)
    assert first in panel.header.value and second in panel.header.value
    for label in ("ROC-AUC", "PR-AUC", "Brier score", "Recall at 10 %", "Precision at 10 %"):
        assert label in panel.figures.value
    assert "0.810 [0.780, 0.840]" in panel.figures.value and "+0.010 [\u22120.020, +0.040]" in panel.figures.value
    assert "within chance" in panel.verdict.value
    assert panel.message.value == ""
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"].startswith(f"Decision on run {RUN2}\n  ROC-AUC: new 0.820 [0.790, 0.850], "
                                           "production 0.810 [0.780, 0.840]")


def test_the_panel_prefills_the_login_name(lake, runs, monkeypatch):
    retrain(lake, runs, RUN1)
    monkeypatch.setenv("USER", "ana.souza")
    assert DecisionPanel(RUN1, lake=lake.url, runs=str(runs)).by.value == "ana.souza"


def test_clicking_without_a_reason_refuses_and_changes_nothing(lake, runs):
    retrain(lake, runs, RUN1)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Ana")
    before = lake_snapshot(lake)
    panel.why.value = "  \n "
    panel.keep_new.click()
    panel.keep_old.click()
    assert "Write why first" in panel.message.value and "nothing was decided" in panel.message.value
    assert lake_snapshot(lake) == before and panel.record is None
    assert panel_state(panel) == (False, False)


def test_keep_new_click_promotes_exactly_as_the_cli_function(lake, runs, monkeypatch):
    version = retrain(lake, runs, RUN1)
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return decide(*args, **kwargs)

    monkeypatch.setattr(decide_module, "decide", spy)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Ana")
    panel.why.value = "finds 4 more failures per 100 at 10 %"
    panel.keep_new.click()
    assert calls == [((RUN1, "keep-new"), {"by": "Ana", "why": "finds 4 more failures per 100 at 10 %",
                                           "lake": lake.url, "runs": str(runs)})]
    assert registry.production(lake)["version"] == version
    [logged] = registry.decisions(lake)
    assert (logged["by"], logged["why"], logged["choice"], logged["run"]) == (
        "Ana", "finds 4 more failures per 100 at 10 %", "keep-new", RUN1)
    assert panel.record == {**logged, "message": panel.record["message"]}
    assert f"Kept the new model: {version} is now in production" in panel.message.value
    assert panel_state(panel) == (True, True)


def test_keep_old_click(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    retrain(lake, runs, RUN2)
    panel = DecisionPanel(RUN2, lake=lake.url, runs=str(runs), user="Rui")
    panel.why.value = "intervals overlap"
    panel.keep_old.click()
    assert registry.production(lake)["version"] == first
    assert [d["choice"] for d in registry.decisions(lake)] == ["keep-new", "keep-old"]
    assert f"Kept the old model: {first} stays in production" in panel.message.value
    assert panel_state(panel) == (True, True)


def test_an_already_decided_run_opens_disabled(lake, runs):
    retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-old", by="Ana", why="not convinced", runs_dir=runs)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Rui")
    assert panel_state(panel) == (True, True)
    assert f"Run {RUN1} was already decided: keep-old by Ana" in panel.message.value
    assert panel._repr_mimebundle_()["text/plain"].endswith(panel.said) and "already decided" in panel.said
    assert "ROC-AUC" in panel.figures.value


def test_a_decision_made_elsewhere_meanwhile_shows_in_the_message(lake, runs):
    retrain(lake, runs, RUN1)
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Rui")
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="from the CLI", runs_dir=runs)
    before = lake_snapshot(lake)
    panel.why.value = "my reason"
    panel.keep_old.click()
    assert f"run {RUN1} was already decided: keep-new by Ana" in panel.message.value
    assert "Traceback" not in panel.message.value
    assert panel_state(panel) == (True, True) and lake_snapshot(lake) == before


def test_a_busy_lake_shows_in_the_message_and_allows_a_retry(lake, runs, tmp_path, monkeypatch):
    version = retrain(lake, runs, RUN1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kafer.toml").write_text("[kafer]\nlock_timeout = 0.2\n", encoding="utf-8")
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Rui")
    panel.why.value = "better"
    with lake.lock(registry.LOCK, purpose="ingest of the May exports"):
        panel.keep_new.click()
    assert "is busy: ingest of the May exports" in panel.message.value
    assert registry.decisions(lake) == [] and panel_state(panel) == (False, False)
    panel.keep_new.click()
    assert registry.production(lake)["version"] == version and panel_state(panel) == (True, True)


def test_the_panel_picks_the_latest_pending_run(lake, runs):
    retrain(lake, runs, RUN1)
    retrain(lake, runs, RUN2)
    assert DecisionPanel(None, lake=lake.url, runs=str(runs)).run_id == RUN2


def test_the_panel_without_anything_to_decide(lake, runs):
    panel = DecisionPanel(None, lake=lake.url, runs=str(runs), user="Ana")
    assert "No candidate waits for a decision" in panel.message.value and panel_state(panel) == (True, True)


def test_the_panel_on_a_missing_run_record(lake, runs):
    panel = DecisionPanel(RUN1, lake=lake.url, runs=str(runs), user="Ana")
    assert f"run {RUN1} cannot be shown" in panel.message.value and panel_state(panel) == (True, True)
