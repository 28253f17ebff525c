"""The people at the end of the pipeline, as they use it, in a real headless Chromium.

(a) JupyterLab started exactly as ``make lab`` starts it: open the decision notebook, run all, write
why, click *keep new*, and the registry has the candidate in production (and the committed notebook
is unchanged after saving). (b) ``kafer desk``: *keep new* on a first run, *keep old* on a second
(the page shows the verdict, the figures it cites, both models' gain curves, then production's track
record), *keep
new* on a third, then roll back from the same page. (c) the rendered comparison report names its
run and both models. See tests/browser.py for the fixtures and why each selector and wait is the
one it is.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from playwright.sync_api import expect

from browser import ROOT, VOILA_READY, free_port, lab_args, lab_panel, lab_run_all, lab_wait_for_kernel, serving
from kafer import registry
from kafer.config import load_settings
from kafer.decide import _track_words
from kafer.lake import Lake
from kafer.monitor import track_record
from kafer.pipeline import retrain
from worlds import SMALL, quick_retrain

DECIDE = ROOT / "notebooks" / "05_decide.ipynb"
WHY = "What in the comparison decides it (required)"


def _environment(tmp_path: Path, **extra: str) -> dict:
    """The servers' environment: the test's lake and runs, private Jupyter runtime files."""
    return {**os.environ, "KAFER_LAKE": str(tmp_path / "lake"), "KAFER_RUNS": str(tmp_path / "runs"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"), **extra}


def _settings(tmp_path: Path):
    return load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)


def test_jupyterlab_as_make_lab_starts_it_decides_keep_new(page, tmp_path, months):
    settings = _settings(tmp_path)
    version = quick_retrain(months[0], settings=settings, run_id="r1")
    committed = DECIDE.read_bytes()
    port, token = free_port(), secrets.token_hex(16)
    argv = ["make", "--no-print-directory", "-C", str(ROOT), "lab",
            f"LAB_ARGS={lab_args(port=port, token=token, home=tmp_path)}"]
    with serving(argv, port=port, ready=f"/api/status?token={token}", log=tmp_path / "lab.log",
                 env=_environment(tmp_path)) as server:
        page.goto(f"{server.url}/lab/tree/{DECIDE.name}?token={token}")
        lab_wait_for_kernel(page, server, token=token, notebook=DECIDE.name)
        lab_run_all(page, DECIDE.name)
        panel = lab_panel(page, DECIDE.name)
        expect(panel.get_by_role("heading", name="Run r1: new model")).to_be_visible()
        expect(panel.get_by_text("Signed in as")).to_contain_text("(approver; os user)")  # this computer's user
        keep_new = panel.get_by_role("button", name="keep new", exact=True)
        expect(keep_new).to_be_enabled()
        panel.get_by_placeholder(WHY).fill("first model, clearly better than chance")
        keep_new.click()
        expect(panel.get_by_text(f"Kept the new model: {version} is now in production")).to_be_visible()
        expect(keep_new).to_be_disabled()
        page.keyboard.press("Control+s")
        expect(page.get_by_role("tab", name=DECIDE.name)).not_to_have_class("jp-mod-dirty")
    assert registry.production(Lake(settings.lake))["version"] == version
    assert DECIDE.read_bytes() == committed, "running and saving the notebook in JupyterLab changed the committed file"


def test_the_desk_keeps_new_keeps_old_and_rolls_back_and_the_report_names_its_run(page, tmp_path, months):
    settings = _settings(tmp_path)
    first = retrain([str(months[0])], settings=settings, run_id="r1")
    lake = Lake(settings.lake)
    port = free_port()
    argv = [sys.executable, "-m", "kafer.cli", "desk", "--port", str(port), "--no-browser",
            "--lake", settings.lake, "--runs", settings.runs]
    with serving(argv, port=port, ready=VOILA_READY, log=tmp_path / "desk.log", env=_environment(tmp_path)) as server:
        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name=f"Run r1: new model {first.candidate_version} against no "
                                                "production model (first run)")).to_be_visible()
        assert "DecisionPanel(" not in page.content(), "the desk showed the notebook's code"
        expect(page.get_by_text("What the evidence supports:")).to_be_visible()
        page.get_by_role("button", name="show the full report").click()
        expect(page.locator("iframe[title='comparison report of run r1']")).to_have_attribute("sandbox", "")
        report = page.frame_locator("iframe[title='comparison report of run r1']")
        expect(report.get_by_text("There is no production model yet.", exact=True)).to_be_visible()
        expect(report.get_by_role("img").first).to_be_visible()  # its figures are images: no script needed

        keep_new = page.get_by_role("button", name="keep new", exact=True)
        # The sandboxed report is a frame of its own origin (out of process in Chromium): scrolled to first, or
        # Playwright's scroll-and-click can land before the page has settled and miss the button.
        keep_new.scroll_into_view_if_needed()
        keep_new.click()
        expect(page.get_by_text("Write why first")).to_be_visible()
        assert registry.production(lake) is None
        page.get_by_placeholder(WHY).fill("first model")
        keep_new.click()
        expect(page.get_by_text(f"Kept the new model: {first.candidate_version} is now in production")).to_be_visible()
        expect(keep_new).to_be_disabled()
        expect(page.get_by_role("cell", name="(os user)").first).to_be_visible()  # who, and how the desk knew
        expect(page.get_by_role("button", name="keep old", exact=True)).to_be_disabled()

        second = quick_retrain(months[1], settings=settings, run_id="r2")
        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name=f"Run r2: new model {second} against production model "
                                                f"{first.candidate_version}")).to_be_visible()
        expect(page.get_by_role("heading", name="Is production keeping its promise?")).to_be_visible()
        record = track_record(lake, settings=load_settings(lake=settings.lake), earlier=False, drift=False)
        expect(page.get_by_text(_track_words(record)[:80])).to_be_visible()
        chart = page.get_by_role("img", name=f"Track record of production {first.candidate_version}")
        expect(chart).to_be_visible()
        gain = page.get_by_role("img", name="Failures found by new model and production model")
        expect(gain).to_be_visible()
        figures = page.get_by_role("heading", name="The figures the verdict cites")
        assert page.get_by_role("heading", name="Verdict", exact=True).bounding_box()["y"] < figures.bounding_box()["y"] < \
            gain.bounding_box()["y"] < chart.bounding_box()["y"], "what decides first; production's record last"
        for word in ("candidate", "Holm", "PSI", "05 ·", "Run all cells"):
            assert word not in page.inner_text("body"), word
        page.screenshot(path=str(tmp_path / "desk-r2.png"), full_page=True)
        page.get_by_placeholder(WHY).fill("no clear difference")
        page.get_by_role("button", name="keep old", exact=True).click()
        expect(page.get_by_text(f"Kept the old model: {first.candidate_version} stays in production")).to_be_visible()
        assert registry.production(lake)["version"] == first.candidate_version

        third = quick_retrain(months[2], settings=settings, run_id="r3")
        page.goto(f"{server.url}/?run=r3")
        page.get_by_placeholder(WHY).fill("June's data")
        page.get_by_role("button", name="keep new", exact=True).click()
        expect(page.get_by_text(f"Kept the new model: {third} is now in production")).to_be_visible()

        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name="Nothing to decide")).to_be_visible()
        page.get_by_role("combobox", name="version").select_option(
            label=f"{first.candidate_version} ({settings.family}, run r1)")
        page.get_by_placeholder("Why go back (required)").fill("June's model flags the wrong engines")
        page.get_by_role("button", name="roll back", exact=True).click()
        expect(page.get_by_text(f"Rolled back: {first.candidate_version} is in production again "
                                f"(was {third})")).to_be_visible()
        page.screenshot(path=str(tmp_path / "desk.png"), full_page=True)
    assert registry.production(lake)["version"] == first.candidate_version
    assert [(d["run"], d["choice"], d["by_source"]) for d in registry.decisions(lake)] == [
        ("r1", "keep-new", "os user"), ("r2", "keep-old", "os user"), ("r3", "keep-new", "os user"),
        (None, "rollback", "os user")]

    page.goto((first.run_dir / "04_compare.html").as_uri())
    expect(page).to_have_title(f"Run r1: new model {first.candidate_version} against no production model (first run)")
    expect(page.get_by_role("heading", name=f"Run r1: new model {first.candidate_version}")).to_be_visible()
    data_version = json.loads((first.run_dir / "metrics.json").read_text())["data_version"]
    expect(page.get_by_text(data_version).first).to_be_visible()
    assert "def " not in page.content() and "import " not in page.content()


def test_the_desk_in_brazilian_portuguese_where_the_plant_speaks_it(page, tmp_path, months):
    settings = _settings(tmp_path)
    first = quick_retrain(months[0], settings=settings, run_id="r1")
    port = free_port()
    argv = [sys.executable, "-m", "kafer.cli", "desk", "--port", str(port), "--no-browser",
            "--lake", settings.lake, "--runs", settings.runs]
    with serving(argv, port=port, ready=VOILA_READY, log=tmp_path / "desk.log",
                 env=_environment(tmp_path, KAFER_LANG="pt-BR")) as server:
        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name="Manter o modelo novo ou o antigo")).to_be_visible()
        expect(page.get_by_role("heading", name=f"Execução r1: modelo novo {first} contra nenhum modelo de produção "
                                                "(primeira execução)")).to_be_visible()
        expect(page.get_by_text("O que as evidências sustentam:")).to_be_visible()
        expect(page.get_by_role("img", name="Falhas encontradas pelo modelo novo")).to_be_visible()
        figures = json.loads((Path(settings.runs) / "r1" / "metrics.json").read_text())["models"]["candidate"]
        auc = f"{figures['metrics']['roc_auc']['value']:.3f}".replace(".", ",")
        expect(page.get_by_role("cell", name=auc).first).to_be_visible()  # a decimal comma, as Brazilians write
        page.get_by_placeholder("O que na comparação decide (obrigatório)").fill("primeiro modelo")
        page.get_by_role("button", name="manter o novo", exact=True).click()
        expect(page.get_by_text(f"Modelo novo mantido: {first} agora está em produção")).to_be_visible()
        body = page.inner_text("body")
        for word in ("candidate", "Holm", "PSI", "05 ·", "Run all cells", "Keep the new model"):
            assert word not in body, word
    assert registry.production(Lake(settings.lake))["version"] == first
