"""End to end through papermill: retrain → keep-new → retrain on newer data → keep-old, and failures.

Notebook kernels are other processes, so these tests use a local lake (memory:// is per process).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kafer import registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.decide import decide
from kafer.demo import make_demo_upload
from kafer.errors import StepError
from kafer.lake import Lake
from kafer.pipeline import STEPS, retrain, run_notebook
from kafer.runrecord import read_manifest


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    first = make_demo_upload(root / "first", cars=500, seed=1, results_per_car=30, sheet_rows=2000)
    second = make_demo_upload(root / "second", cars=300, seed=2, results_per_car=30, sheet_rows=2000,
                              start="2024-05-06")
    settings = load_settings(lake=str(root / "lake"), runs=str(root / "runs"))
    return root, first, second, settings


@pytest.fixture(scope="module")
def history(world):
    """The whole story, run once: two retrains and two decisions."""
    root, first, second, settings = world
    one = retrain([str(first.folder)], settings=settings, run_id="r1")
    decide("r1", "keep-new", by="Ana", why="first model", lake=settings.lake, runs=settings.runs)
    two = retrain([str(second.folder)], settings=settings, run_id="r2")
    decide("r2", "keep-old", by="Rui", why="difference not clear", lake=settings.lake, runs=settings.runs)
    return one, two


def test_a_retrain_leaves_a_complete_record(world, history):
    one, _ = history
    folder = one.run_dir
    assert [p.stem for p in sorted(folder.glob("0*.ipynb"))] == list(STEPS)
    html = (folder / "04_compare.html").read_text()
    assert "data:image/png;base64" in html and "def " not in html
    metrics = json.loads((folder / "metrics.json").read_text())
    for figure in metrics["models"]["candidate"]["metrics"].values():
        if isinstance(figure, dict):
            assert figure["low"] <= figure["value"] <= figure["high"]
    assert metrics["models"]["production"] is None and metrics["difference"] is None
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"KNR": str})
    assert list(predictions.columns) == ["KNR", "y_true", "p_candidate", "p_production"]
    assert len(predictions) == metrics["eval_cars"] and predictions["p_candidate"].between(0, 1).all()
    assert predictions["p_production"].isna().all()
    manifest = read_manifest(world[3].runs, "r1")
    assert manifest["status"] == "succeeded" and set(STEPS) <= set(manifest["steps"])
    assert manifest["candidate_version"] == one.candidate_version and manifest["data_version"]


def test_keep_new_then_keep_old_leaves_the_first_candidate(world, history):
    one, two = history
    settings = world[3]
    lake = Lake(settings.lake)
    assert registry.production(lake)["version"] == one.candidate_version
    predictions = pd.read_csv(two.run_dir / "predictions.csv", dtype={"KNR": str})
    assert predictions["p_production"].notna().all() and predictions["p_candidate"].notna().all()
    metrics = json.loads((two.run_dir / "metrics.json").read_text())
    assert metrics["models"]["production"]["version"] == one.candidate_version
    assert set(metrics["difference"]) >= {"roc_auc", "pr_auc", "brier", "recall_at_10"}
    log = registry.status(lake)["decisions"]
    assert [(d["run"], d["choice"], d["by"], d["why"]) for d in log] == [
        ("r1", "keep-new", "Ana", "first model"), ("r2", "keep-old", "Rui", "difference not clear")]
    assert all(d["at"] for d in log)


def test_retrain_without_new_data_and_predict(world, history, tmp_path, capsys):
    root, first, second, settings = world
    three = retrain([], settings=settings, run_id="r3")
    assert read_manifest(settings.runs, "r3")["status"] == "succeeded"
    assert three.production_version == history[0].candidate_version
    out = tmp_path / "ranked.csv"
    assert main(["predict", str(second.folder), "--lake", settings.lake, "--out", str(out)]) == 0
    ranked = pd.read_csv(out, dtype={"KNR": str})
    truth = pd.read_csv(second.truth, dtype={"KNR": str})
    assert sorted(ranked["KNR"]) == sorted(truth["KNR"])
    assert (ranked["model_version"] == history[0].candidate_version).all()
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))


def test_decide_and_predict_notebooks_run(world, history, tmp_path):
    root, first, second, settings = world
    run_notebook("06_predict", tmp_path, {"upload": [str(second.folder)], "lake": settings.lake,
                                          "out": str(tmp_path / "ranked.csv")})
    assert (tmp_path / "ranked.csv").exists()
    run_notebook("05_decide", tmp_path, {"run_id": "r1", "lake": settings.lake, "runs": settings.runs})
    assert "already decided" in (tmp_path / "05_decide.ipynb").read_text()


def test_a_failing_step_marks_the_run_failed_and_leaves_no_candidate(tmp_path):
    demo = make_demo_upload(tmp_path / "demo", cars=60, seed=4, results_per_car=10)
    status_only = [str(p) for p in demo.files if p.name.startswith("STATUS")]
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))
    with pytest.raises(StepError) as info:
        retrain(status_only, settings=settings, run_id="bad")
    assert info.value.step == "03_retrain"
    manifest = read_manifest(settings.runs, "bad")
    assert manifest["status"] == "failed" and "03_retrain" in manifest["error"]
    assert registry.candidates(Lake(settings.lake)) == []
    assert not (tmp_path / "runs" / "bad" / "candidate.model").exists()
