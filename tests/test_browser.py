"""Prototypes of the browser tests: JupyterLab as `make lab` starts it, and the decision page served by Voila.

A real headless Chromium (Debian's) drives each page as a person would; see tests/browser.py for the
fixtures, the server helper and why each selector and wait is the one it is.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import nbformat
from playwright.sync_api import expect

from browser import (ROOT, VOILA_READY, free_port, lab_args, lab_panel, lab_run_all, lab_wait_for_kernel,
                     serving, voila_argv)
from kafer import registry
from kafer.lake import Lake
from test_registry import RUN1, RUN2, retrain

DECIDE = ROOT / "notebooks" / "05_decide.ipynb"
NO_CANDIDATE = "No candidate waits for a decision"


def _environment(tmp_path: Path, **extra: str) -> dict:
    """The servers' environment: an empty lake and runs of the test's own, private Jupyter runtime files."""
    return {**os.environ, "KAFER_LAKE": str(tmp_path / "lake"), "KAFER_RUNS": str(tmp_path / "runs"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"), **extra}


def test_jupyterlab_as_make_lab_starts_it_runs_the_decision_notebook(page, tmp_path):
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
        keep_new = panel.get_by_role("button", name="keep new", exact=True)
        expect(keep_new).to_be_visible()
        expect(keep_new).to_be_disabled()  # an empty lake: nothing to decide
        expect(panel.get_by_role("button", name="keep old", exact=True)).to_be_disabled()
        expect(panel.locator(".widget-html").filter(has_text=NO_CANDIDATE)).to_be_visible()
    assert DECIDE.read_bytes() == committed, "running the notebook in JupyterLab changed the committed file"


def test_voila_serves_the_decision_notebook_without_code(page, tmp_path):
    port = free_port()
    started = time.monotonic()
    with serving(voila_argv(DECIDE, port=port), port=port, ready=VOILA_READY, log=tmp_path / "voila.log",
                 env=_environment(tmp_path)) as server:
        listening = time.monotonic()
        page.goto(server.url + "/")
        keep_new = page.get_by_role("button", name="keep new", exact=True)
        expect(keep_new).to_be_visible()
        shown = time.monotonic()
        expect(page.locator(".widget-html").filter(has_text=NO_CANDIDATE)).to_be_visible()
        expect(page.get_by_role("heading", name="05 · Keep the new model or the old one")).to_be_visible()
        assert "DecisionPanel(" not in page.content(), "Voila showed the notebook's code"
        print(f"voila: listening after {listening - started:.1f} s, panel shown {shown - listening:.1f} s "
              "after the page was asked for (cold kernel)")


def _desk_notebook(folder: Path) -> Path:
    """The decision notebook as the team plans it: parameters "not given", so the settings decide.

    Voila runs no papermill: the lake and runs come from the server's environment (``KAFER_LAKE``,
    ``KAFER_RUNS``, inherited by every kernel it starts) and the run from the page's query string
    (``?run=ID``; Voila puts it in the kernel's ``QUERY_STRING``). The query parsing here stands in
    for a kafer function, so the real notebook keeps one call per cell.
    """
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "kafer", "display_name": "Käfer (.venv)",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Decision desk (prototype)"),
        nbformat.v4.new_code_cell('run_id: str = ""  # empty: ?run=ID, else the newest pending run\n'
                                  'lake: str = ""  # empty: the settings (KAFER_LAKE, kafer.toml, ./lake)\n'
                                  'runs: str = ""  # empty: the settings (KAFER_RUNS, kafer.toml, ./runs)',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('import os, urllib.parse\n'
                                  'run_id = run_id or urllib.parse.parse_qs(os.environ.get("QUERY_STRING", ""))'
                                  '.get("run", [""])[0]'),
        nbformat.v4.new_code_cell("from kafer.decide import DecisionPanel\n"
                                  "DecisionPanel(run_id or None, lake=lake or None, runs=runs or None)"),
    ]
    path = folder / "desk.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_voila_takes_the_lake_from_the_environment_and_the_run_from_the_query(page, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    first = retrain(lake, tmp_path / "runs", RUN1)
    retrain(lake, tmp_path / "runs", RUN2)
    port = free_port()
    with serving(voila_argv(_desk_notebook(tmp_path), port=port), port=port, ready=VOILA_READY,
                 log=tmp_path / "voila.log", env=_environment(tmp_path, USER="ana")) as server:
        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name=f"Run {RUN2}")).to_be_visible()  # the newest pending run

        page.goto(f"{server.url}/?run={RUN1}")
        expect(page.get_by_role("heading", name=f"Run {RUN1}")).to_be_visible()
        message = page.locator(".widget-html").last
        keep_new = page.get_by_role("button", name="keep new", exact=True)
        expect(keep_new).to_be_enabled()
        keep_new.click()
        expect(message).to_contain_text("Write why first")  # the click reached the kernel, which refused
        assert registry.production(lake) is None

        page.locator(".widget-textarea textarea").fill("better recall at 10 %")
        keep_new.click()
        expect(message).to_contain_text(f"Kept the new model: {first} is now in production")
        expect(keep_new).to_be_disabled()
        page.screenshot(path=str(tmp_path / "desk.png"), full_page=True)
    assert registry.production(lake)["version"] == first
    assert [(d["run"], d["by"], d["why"]) for d in registry.decisions(lake)] == [(RUN1, "ana", "better recall at 10 %")]
