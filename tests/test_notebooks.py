"""The notebooks are views: committed without outputs, one typed parameters cell, no logic of their own."""

from __future__ import annotations

import ast

import nbformat
import papermill as pm
import pytest

from kafer.pipeline import NOTEBOOKS, step_parameters
from kafer.runrecord import STEPS

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_six_notebooks_exist():
    assert [p.stem for p in ALL] == list(STEPS) + ["05_decide", "06_predict"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_no_outputs_one_parameters_cell_no_logic(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for node in ast.walk(ast.parse(tagged[0].source)):
        if isinstance(node, ast.AnnAssign):
            assert isinstance(node.value, (ast.Constant, ast.List)), "parameters must be primitive values"
    for cell in code:
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.For, ast.If))]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("step", STEPS)
def test_pipeline_passes_exactly_the_declared_parameters(step):
    declared = set(pm.inspect_notebook(str(NOTEBOOKS / f"{step}.ipynb")))
    passed = set(step_parameters(step, upload=["x"], runs="r", run_id="i"))
    assert passed == declared


def test_the_decision_notebook_runs_under_nbval_as_committed(tmp_path, months):
    """nbval runs the committed 05 with nothing filled in: the settings (here KAFER_LAKE / KAFER_RUNS)
    decide where it looks, and it shows the pending run without an error."""
    import os
    import subprocess
    import sys

    from kafer.config import load_settings
    from worlds import SMALL, quick_retrain

    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)
    quick_retrain(months[0], settings=settings, run_id="r1")
    env = {**os.environ, "KAFER_LAKE": settings.lake, "KAFER_RUNS": settings.runs}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-kernel-name", "kafer", str(NOTEBOOKS / "05_decide.ipynb")],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
