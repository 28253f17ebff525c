"""End to end through papermill: retrain → keep-new → retrain on newer data → keep-old, a back-filled
month, an ingest landing in the middle of a run, and failures.

Notebook kernels are other processes, so these tests use a local lake (memory:// is per process).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kafer import catalog, registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.decide import decide, run_summary
from kafer.demo import make_demo_upload
from kafer.errors import StepError
from kafer.ingest import ingest
from kafer.lake import Lake
from kafer.metrics import compare
from kafer.monitor import track_record
from kafer.pipeline import retrain, run_notebook, step_parameters
from kafer.runrecord import STEPS, read_manifest, start_run

#: Small uploads evaluate on ~100-200 cars: let a comparison count as fair from 50 cars and 5 failures.
SMALL = {"min_compare_cars": 50, "min_compare_failures": 5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    first = make_demo_upload(root / "first", cars=500, seed=1, results_per_car=30, sheet_rows=2000)
    second = make_demo_upload(root / "second", cars=300, seed=2, results_per_car=30, sheet_rows=2000,
                              start="2024-05-06")
    # The ensemble, one setting away from the default: its network must score without TensorFlow.
    settings = load_settings(lake=str(root / "lake"), runs=str(root / "runs"), family="ensemble", **SMALL)
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


def _text_of(output: dict) -> str:
    """The words a notebook output shows (its stream text, its plain text and HTML), not its images:
    a figure's base64 may spell anything."""
    data = output.get("data", {})
    return "".join("".join(part) if isinstance(part, list) else str(part)
                   for part in (output.get("text", ""), data.get("text/plain", ""), data.get("text/html", "")))

def test_a_retrain_leaves_a_complete_and_true_record(world, history):
    one, _ = history
    folder = one.run_dir
    assert [p.stem for p in sorted(folder.glob("0*.ipynb"))] == list(STEPS)
    html = (folder / "04_compare.html").read_text()
    assert "data:image/png;base64" in html and "def " not in html and "import " not in html
    assert f"<title>Run r1: new model {one.candidate_version}" in html
    assert "There is no production model yet" in html
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["models"]["production"] is None and metrics["difference"] is None
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"KNR": str})
    assert list(predictions.columns) == ["KNR", "y_true", "p_candidate", "p_production", "compared"]
    assert len(predictions) == metrics["eval_cars"] == metrics["compared_cars"]
    auc = metrics["models"]["candidate"]["metrics"]["roc_auc"]
    assert auc["value"] == pytest.approx(roc_auc_score(predictions["y_true"], predictions["p_candidate"]))
    for figure in metrics["models"]["candidate"]["metrics"].values():
        if isinstance(figure, dict):
            assert 0 <= figure["low"] <= figure["high"] <= 1
    manifest = read_manifest(world[3].runs, "r1")
    assert manifest["status"] == "succeeded" and set(STEPS) <= set(manifest["steps"])
    assert manifest["candidate_version"] == one.candidate_version == metrics["models"]["candidate"]["version"]
    assert manifest["data_version"] == metrics["data_version"]
    snapshot = json.loads((folder / "settings.json").read_text())
    assert snapshot["min_compare_cars"] == 50 and snapshot["lake"] == world[3].lake
    drivers = metrics["drivers"]
    assert drivers["summary"] and drivers["cars"] == metrics["eval_cars"]
    assert [f["group"] for f in drivers["families"]] == ["contract", "configuration", "tests", "route", "defects"]
    assert metrics["models"]["candidate"]["family_choice"]["chosen"] == "ensemble" == metrics["models"]["candidate"]["family"]
    assert "What drives the risk" in html and run_summary("r1", runs=world[3].runs)["drivers"] == drivers["summary"]
    assert "The settings this run used" in html and "label_maturity_hours" in html
    for notebook in folder.glob("0*.ipynb"):  # quiet reports: no library's log line among the outputs
        said = [o for c in json.loads(notebook.read_text())["cells"] for o in c.get("outputs", [])
                if o.get("name") == "stderr" or any(word in _text_of(o) for word in ("absl", "oneDNN"))]
        assert said == [], f"{notebook.name} shows {said[:1]}"


def test_keep_new_then_keep_old_leaves_the_first_candidate(world, history):
    one, two = history
    lake = Lake(world[3].lake)
    assert registry.production(lake)["version"] == one.candidate_version
    predictions = pd.read_csv(two.run_dir / "predictions.csv", dtype={"KNR": str})
    assert predictions["p_production"].notna().all() and predictions["p_candidate"].notna().all()
    metrics = json.loads((two.run_dir / "metrics.json").read_text())
    assert metrics["models"]["production"]["version"] == one.candidate_version
    assert set(metrics["difference"]) >= {"roc_auc", "pr_auc", "brier", "recall_at_10"}
    ranking = ["roc_auc", "pr_auc"] + [f"recall_at_{round(b * 100)}" for b in metrics["budgets"]]
    better = [m for m in ranking if metrics["difference"][m]["low"] > 0]
    worse = [m for m in ranking if metrics["difference"][m]["high"] < 0]
    assert metrics["recommendation"]["choice"] == ("keep-new" if better and not worse else "keep-old")
    assert metrics["recommendation"]["text"].startswith(
        "Keep the new model" if better and not worse else ("Keep the old model" if worse and not better else
                                                           "Mixed evidence" if worse else "No clear difference"))
    html = (two.run_dir / "04_compare.html").read_text()
    assert one.candidate_version in html and two.candidate_version in html
    log = registry.status(lake)["decisions"]
    assert [(d["run"], d["choice"], d["by"], d["why"]) for d in log] == [
        ("r1", "keep-new", "Ana", "first model"), ("r2", "keep-old", "Rui", "difference not clear")]


def test_the_track_record_scores_production_as_the_comparison_did(world, history):
    """r2's report compared r1 on cars r1 scored since it was kept: the record gives them the same risk,
    and its figures on those cars are the report's (to float32 rounding: the network's sums depend on
    how many cars are scored together)."""
    one, two = history
    settings = world[3]
    metrics = json.loads((two.run_dir / "metrics.json").read_text())
    record = track_record(Lake(settings.lake), settings=settings, data_version=metrics["data_version"])
    assert record.production.version == one.candidate_version
    compared = pd.read_csv(two.run_dir / "predictions.csv", dtype={"KNR": str}).query("compared")
    risk = record.production.cars.set_index("KNR").loc[compared["KNR"], "probability"].to_numpy()
    assert risk == pytest.approx(compared["p_production"].to_numpy(), rel=1e-6, abs=1e-9)
    figures = compare(compared["y_true"], risk, budgets=settings.budgets, rounds=settings.bootstrap_rounds,
                      seed=settings.seed)["candidate"]
    reported = metrics["models"]["production"]["metrics"]
    assert set(figures) == set(reported)
    for name, figure in figures.items():
        assert figure == (pytest.approx(reported[name], rel=1e-6) if isinstance(figure, dict) else reported[name])
    html = (two.run_dir / "04_compare.html").read_text()
    assert "Is production keeping its promise?" in html and f"Production {one.candidate_version}" in html
    assert two.track_record.startswith("Track record: on the ") and one.candidate_version in two.track_record
    assert two.track_record in two.summary()


def test_production_is_never_scored_on_its_own_training_cars(world, history):
    _, two = history
    lake = Lake(world[3].lake)
    seen = catalog.model_training_cars(lake, registry.production(lake)["version"])
    predictions = pd.read_csv(two.run_dir / "predictions.csv", dtype={"KNR": str})
    compared = predictions[predictions["compared"]]
    assert len(compared) and not set(compared["KNR"]) & seen
    assert set(predictions.loc[~predictions["compared"], "KNR"]) <= seen


def test_a_backfilled_older_month_is_compared_only_on_cars_neither_model_saw(tmp_path):
    newer = make_demo_upload(tmp_path / "newer", cars=500, seed=5, results_per_car=20, start="2024-06-03")
    older = make_demo_upload(tmp_path / "older", cars=500, seed=6, results_per_car=20, start="2024-04-01")
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)
    first = retrain([str(newer.folder)], settings=settings, run_id="b1")
    decide("b1", "keep-new", by="Ana", why="first", lake=settings.lake, runs=settings.runs)
    second = retrain([str(older.folder)], settings=settings, run_id="b2")
    lake = Lake(settings.lake)
    seen = catalog.model_training_cars(lake, first.candidate_version)
    predictions = pd.read_csv(second.run_dir / "predictions.csv", dtype={"KNR": str})
    assert predictions["KNR"].isin(seen).any()  # the latest cars are production's own training cars …
    assert not predictions.loc[predictions["compared"], "KNR"].isin(seen).any()  # … and are never compared on
    training = set(pd.read_csv(second.run_dir / "training_cars.csv", dtype={"KNR": str})["KNR"])
    assert not predictions["KNR"].isin(training).any()
    metrics = json.loads((second.run_dir / "metrics.json").read_text())
    fair = metrics["fair_comparison"]
    assert fair["seen_by_production"] == int(predictions["KNR"].isin(seen).sum())


def test_an_ingest_between_steps_changes_nothing_the_run_reads(tmp_path):
    first = make_demo_upload(tmp_path / "first", cars=400, seed=8, results_per_car=20)
    later = make_demo_upload(tmp_path / "later", cars=300, seed=9, results_per_car=20, start="2024-04-15")
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)
    run = start_run(tmp_path / "runs", "p1", settings)
    for step in ("01_ingest", "02_merge", "03_retrain"):
        run_notebook(step, run.folder, step_parameters(step, upload=[str(first.folder)], runs=str(run.runs),
                                                       run_id="p1"))
    pinned = run.data_version
    ingest([str(later.folder)], lake=run.lake, settings=settings)
    assert catalog.current_version(run.lake) != pinned
    run_notebook("04_compare", run.folder, step_parameters("04_compare", upload=[], runs=str(run.runs), run_id="p1"))
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert metrics["data_version"] == pinned
    predictions = pd.read_csv(run.folder / "predictions.csv", dtype={"KNR": str})
    pinned_cars = set(catalog.features(run.lake, pinned)["KNR"])
    training = set(pd.read_csv(run.folder / "training_cars.csv", dtype={"KNR": str})["KNR"])
    assert set(predictions["KNR"]) <= pinned_cars and not set(predictions["KNR"]) & training


def test_retrain_without_new_data_and_predict(world, history, tmp_path):
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
    assert ranked["reasons"].notna().all() and ranked["reasons"].str.len().gt(0).all()


def test_decide_and_predict_notebooks_run_and_kernel_noise_stays_out_of_the_terminal(world, history, tmp_path,
                                                                                     capfd):
    root, first, second, settings = world
    run_notebook("06_predict", tmp_path, {"upload": [str(second.folder)], "lake": settings.lake,
                                          "out": str(tmp_path / "ranked.csv")})
    assert (tmp_path / "ranked.csv").exists()
    run_notebook("05_decide", tmp_path, {"run_id": "r1", "lake": settings.lake, "runs": settings.runs})
    assert "already decided" in (tmp_path / "05_decide.ipynb").read_text()
    assert "IPKernelApp" not in capfd.readouterr().err
    assert (tmp_path / "kernel.log").exists()


def test_predict_cars_the_lake_holds_by_their_knr(world, history, tmp_path, capsys):
    """kafer predict --car: each car as the lake's curated version knows it, the production model's risk,
    whether it reaches the bar, where it is and why; a KNR the lake lacks, or a malformed one, is refused."""
    from kafer.model import load_model

    root, first, second, settings = world
    lake = Lake(settings.lake)
    table = catalog.current_features(lake)
    tested = table.loc[table["road_test_at"].notna(), "KNR"].astype(str).tolist()[:2]
    on_line = table.loc[table["road_test_at"].isna(), "KNR"].astype(str).tolist()[:1]
    asked = tested + on_line
    out = tmp_path / "cars.csv"
    assert main(["predict", *[a for k in asked for a in ("--car", k)], "--lake", settings.lake,
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    production = registry.production(lake)
    model = load_model(registry.load_artifact(lake, production["version"]))
    rows = table[table["KNR"].astype(str).isin(asked)]
    risk = dict(zip(rows["KNR"].astype(str), model.predict_proba(rows, catalog.current_facts(lake))))
    ranked = pd.read_csv(out, dtype={"KNR": str})
    assert sorted(ranked["KNR"]) == sorted(asked) and ranked["rank"].tolist() == list(range(1, len(asked) + 1))
    np.testing.assert_allclose(ranked["probability"], [risk[k] for k in ranked["KNR"]], rtol=1e-12)
    threshold = production["metrics"]["operating_threshold"]
    for knr in asked:
        line = next(line for line in said.splitlines() if knr in line)
        assert f"risk {risk[knr] * 100:.1f} %" in line
        assert ("not in the inspection budget" in line) == (risk[knr] < threshold)
        assert ("at its road test" in line) == (knr in tested) and ("risk so far" in line) == (knr in on_line)
    assert said.count("Why: ") == len(asked) and f"{threshold * 100:.1f} %" in said
    assert main(["predict", "--car", "2099-0000001", "--lake", settings.lake]) == 2
    err = capsys.readouterr().err
    assert "2099-0000001 is not in the lake" in err and "check the number" in err and "Traceback" not in err
    assert main(["predict", "--car", "20991", "--lake", settings.lake]) == 2
    assert "'20991' is not a KNR" in capsys.readouterr().err
    assert main(["predict", str(second.folder), "--car", tested[0], "--lake", settings.lake]) == 2
    assert "not both" in capsys.readouterr().err


#: Runs a command or notebooks' cells in a fresh interpreter, then fails if TensorFlow or Keras was imported.
_WITHOUT_TENSORFLOW = """
import json, sys
from kafer.cli import main
kind, args = sys.argv[1], sys.argv[2:]
if kind == "cli":
    assert main(args) == 0
else:
    import matplotlib
    matplotlib.use("Agg")
    for path, parameters in zip(args[::2], args[1::2]):
        names = {}
        for cell in json.load(open(path))["cells"]:
            if cell["cell_type"] == "code":
                exec("".join(cell["source"]), names)
                if "parameters" in cell["metadata"].get("tags", []):
                    names.update(json.loads(parameters))  # as papermill injects them after the defaults
started = sorted(name for name in ("tensorflow", "keras") if name in sys.modules)
assert not started, f"{kind} {args[:2]} imported {started}"
"""


def test_scoring_never_starts_tensorflow_and_says_only_kaefers_words(world, history, tmp_path):
    """Production is an ensemble (a network inside): kafer predict, kafer monitor, the desk's notebook and
    06_predict score it without importing TensorFlow, and the terminal shows Käfer's progress only."""
    import subprocess
    import sys

    from kafer.pipeline import NOTEBOOKS

    root, first, second, settings = world
    assert registry.production(Lake(settings.lake))["family"] == "ensemble"
    runs = [["cli", "predict", str(second.folder), "--lake", settings.lake, "--out", str(tmp_path / "r.csv")],
            ["cli", "monitor", "--lake", settings.lake],
            ["cells", str(NOTEBOOKS / "05_decide.ipynb"), json.dumps({"run_id": "r1", "lake": settings.lake,
                                                                     "runs": settings.runs, "user": "Ana"}),
             str(NOTEBOOKS / "06_predict.ipynb"), json.dumps({"upload": [str(second.folder)], "lake": settings.lake,
                                                              "out": ""})]]
    for args in runs:
        done = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        noise = [line for line in done.stderr.splitlines() if line and not line.startswith("  ")]
        assert noise == [], noise[:3]


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


def test_any_exception_in_a_step_marks_the_run_failed(tmp_path, monkeypatch):
    import kafer.pipeline

    def broken(step, out_dir, parameters):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kafer.pipeline, "run_notebook", broken)
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))
    with pytest.raises(StepError, match="01_ingest.*No space left"):
        retrain([], settings=settings, run_id="r4")
    manifest = read_manifest(settings.runs, "r4")
    assert manifest["status"] == "failed" and manifest["failed_step"] == "01_ingest"
    assert registry.versions(Lake(settings.lake)) == []


def test_too_few_cars_unseen_by_production_make_no_fair_comparison(tmp_path, months):
    """Production trained on the first 90 % of April; a retrain on April alone, judged on its latest 20 %,
    has only production's own evaluation cars left unseen (its latest 10 %, 40 cars): too few for a
    comparison, and the run says so."""
    from worlds import quick_retrain

    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)
    quick_retrain(months[0], settings=settings.replace(eval_fraction=0.1), run_id="r1")
    decide("r1", "keep-new", by="Ana", why="first model", lake=settings.lake, runs=settings.runs)
    quick_retrain(None, settings=settings, run_id="r2")
    metrics = json.loads((tmp_path / "runs" / "r2" / "metrics.json").read_text())
    fair = metrics["fair_comparison"]
    assert metrics["eval_cars"] - fair["seen_by_production"] == 40 < 50 and not fair["possible"]
    assert "fewer than the 50 cars and 5 failures a fair comparison needs" in fair["why"]
    assert metrics["models"]["production"]["metrics"] is None and metrics["difference"] is None
    assert metrics["compared_cars"] == metrics["eval_cars"] and metrics["recommendation"]["choice"] == "keep-old"
    assert metrics["recommendation"]["text"].startswith("Keep the old model: no fair comparison is possible yet")
