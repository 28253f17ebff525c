"""Models an older Käfer kept (a pickle and a .keras file) are refused until `kafer models convert`,
which rewrites them as arrays and keeps their record; a pickle that is not a Käfer model is never run."""

from __future__ import annotations

import io
import json
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kafer import catalog, registry, runrecord
from kafer.cli import main
from kafer.config import load_settings
from kafer.dataset import labelled
from kafer.errors import ModelError
from kafer.features import feature_columns
from kafer.ingest import ingest
from kafer.lake import Lake
from kafer.model import load_model, train
from kafer.monitor import fingerprints


def old_artifact(model, estimators: dict, *, fmt: int = 2, versions: dict | None = None) -> bytes:
    """The artifact Käfer's main branch wrote before arrays (Model.to_bytes then): meta.json, the boosting
    estimator pickled, the network saved by Keras."""
    meta = {**model.meta, "format": fmt, "calibration": list(model.calibration),
            "preprocessing": model.preprocessing.to_dict(),
            "fact_columns": model.fact_columns.to_dict() if model.fact_columns else None}
    if versions:
        meta["versions"] = {**meta["versions"], **versions}
    members = model.estimator if model.family == "ensemble" else (model,)
    if model.family == "ensemble":
        meta["members"] = [{**m.meta, "calibration": list(m.calibration), **({"versions": meta["versions"]}
                                                                            if versions else {})} for m in members]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.json", json.dumps(meta, indent=2, sort_keys=True))
        for member in members:
            if member.family == "hgb":
                archive.writestr("estimator.pkl", estimators["hgb"] if isinstance(estimators["hgb"], bytes)
                                 else pickle.dumps(estimators["hgb"], protocol=pickle.HIGHEST_PROTOCOL))
            else:
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "estimator.keras"
                    estimators["keras"].save(path)
                    archive.writestr("estimator.keras", path.read_bytes())
    return buffer.getvalue()


class Planted:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def kept_by_main(lake, settings, runs, *, run_id, artifact, model, cars, keep):
    """Register ``artifact`` as main's retrain did, and keep it as main's decide did."""
    version = registry.new_version()
    runrecord.start_run(runs, run_id, settings)
    runrecord.update_manifest(runs, run_id, status="succeeded", candidate_version=version, production_version=None)
    registry.register_candidate(lake, run_id=run_id, version=version, artifact=artifact, family=model.family,
                                data_version=catalog.current_version(lake),
                                metrics={"roc_auc": {"value": 0.7, "low": 0.6, "high": 0.8},
                                         "operating_threshold": 0.1},
                                trained_on=model.meta["trained_on"], training_cars=list(cars["KNR"]),
                                compared_with=registry.production(lake)["version"] if registry.production(lake) else None,
                                settings=settings)
    if keep:
        registry.decide(lake, run_id, "keep-new", by="Ana", why="kept by main", runs_dir=runs, settings=settings)
    return version


@pytest.fixture(scope="module")
def old_lake(tmp_path_factory, months):
    """A lake as main's code leaves it: a production ensemble as a pickle and a .keras file, its kept
    scores; a boosting pickle that is not a Käfer model; one pickled by another scikit-learn."""
    import kafer.model as module

    root = tmp_path_factory.mktemp("old-lake")
    settings = load_settings(lake=str(root / "lake"), runs=str(root / "runs"))
    lake = Lake(settings.lake)
    ingest([str(m) for m in months[:2]], lake=lake, settings=settings)
    table = labelled(catalog.current_features(lake))
    facts = catalog.current_facts(lake)
    fitted = {}
    with pytest.MonkeyPatch.context() as patch:
        fit_hgb, fit_keras = module._fit_hgb, module._fit_keras
        patch.setattr(module, "_fit_hgb", lambda *a, **k: fitted.setdefault("hgb", fit_hgb(*a, **k)))
        patch.setattr(module, "_fit_keras", lambda *a, **k: fitted.setdefault("keras", fit_keras(*a, **k)))
        model = train(table, features=feature_columns(settings), family="ensemble", seed=3, facts=facts,
                      params={"keras": {"max_epochs": 20, "patience": 5}})
    estimators = {"hgb": fitted["hgb"], "keras": fitted["keras"][0]}
    production = kept_by_main(lake, settings, settings.runs, run_id="r1", artifact=old_artifact(model, estimators),
                              model=model, cars=table, keep=True)
    cars = catalog.current_features(lake)
    catalog.save_model_scores(lake, production, catalog.current_version(lake), pd.DataFrame(
        {"KNR": cars["KNR"].astype(str), "fingerprint": fingerprints(cars, facts, columns=model.table_features),
         "probability": model.predict_proba(cars, facts)}))
    planted = root / "ran"
    hostile = kept_by_main(lake, settings, settings.runs, run_id="r2", model=model, cars=table, keep=False,
                           artifact=old_artifact(model, {**estimators, "hgb": pickle.dumps(Planted(str(planted)))}))
    elsewhere = kept_by_main(lake, settings, settings.runs, run_id="r3", model=model, cars=table, keep=False,
                             artifact=old_artifact(model, estimators, versions={"scikit-learn": "0.0.1"}))
    return {"settings": settings, "lake": lake, "model": model, "production": production, "hostile": hostile,
            "elsewhere": elsewhere, "planted": planted, "cars": cars, "facts": facts}


def test_a_model_kept_by_main_is_refused_until_converted_and_its_pickle_never_runs(old_lake, capsys):
    lake, settings = old_lake["lake"], old_lake["settings"]
    for version in (old_lake["production"], old_lake["hostile"]):
        with pytest.raises(ModelError, match="kafer models convert"):
            load_model(registry.load_artifact(lake, version))
        header = load_model(registry.load_artifact(lake, version), estimators=False)
        assert header.family == "ensemble" and not header.predicts and header.table_features
    knr = old_lake["cars"]["KNR"].iloc[0]
    assert main(["predict", "--car", knr, "--lake", settings.lake]) == 1
    assert "kafer models convert" in capsys.readouterr().err
    assert not old_lake["planted"].exists()


def test_convert_rewrites_main_s_models_as_arrays_and_keeps_their_record(old_lake, capsys):
    lake, settings, production = old_lake["lake"], old_lake["settings"], old_lake["production"]
    entry = catalog.model_meta(lake, production)
    before = {"training": catalog.model_training_cars(lake, production),
              "scores": catalog.model_scores(lake, production), "decisions": registry.decisions(lake),
              "pointer": catalog.production_pointer(lake), "old": lake.read_bytes(f"models/versions/{production}/model.bin")}
    assert main(["models", "convert", "--lake", settings.lake, "--by", "admin"]) == 1  # two versions refused
    said = capsys.readouterr().out
    line = next(line for line in said.splitlines() if line.startswith(production))
    assert "converted from format 2 (a pickle and a .keras file) to format 3" in line
    assert "give the old estimators' probabilities" in line and "are unchanged" in line
    assert "1 model version converted, 0 already in the safe format, 2 refused." in said
    hostile = next(line for line in said.splitlines() if line.startswith(old_lake["hostile"]))
    assert "io.open" in hostile and "not written by Käfer" in hostile and not old_lake["planted"].exists()
    elsewhere = next(line for line in said.splitlines() if line.startswith(old_lake["elsewhere"]))
    assert "pickled by scikit-learn 0.0.1" in elsewhere and "pip install scikit-learn==0.0.1" in elsewhere

    converted = load_model(registry.load_artifact(lake, production))
    cars, facts = old_lake["cars"], old_lake["facts"]
    np.testing.assert_allclose(converted.predict_proba(cars, facts), old_lake["model"].predict_proba(cars, facts),
                               rtol=1e-12)
    assert converted.meta["converted"]["by"] == "admin" and converted.meta["trained_on"] == entry["trained_on"]
    pointer = catalog.artifact_pointer(lake, production)
    assert pointer["from_sha256"] == entry["sha256"] and pointer["from_format"] == 2
    assert catalog.model_meta(lake, production) == entry
    assert catalog.model_training_cars(lake, production) == before["training"]
    assert catalog.model_scores(lake, production).equals(before["scores"])
    assert registry.decisions(lake) == before["decisions"] and catalog.production_pointer(lake) == before["pointer"]
    assert lake.read_bytes(f"models/versions/{production}/model.bin") == before["old"]
    for version in (old_lake["hostile"], old_lake["elsewhere"]):
        with pytest.raises(ModelError, match="kafer models convert"):
            load_model(registry.load_artifact(lake, version))

    keys = {key: lake.read_bytes(key) for key in lake.list("models")}
    assert main(["models", "convert", "--lake", settings.lake]) == 1
    assert "0 model versions converted, 1 already in the safe format, 2 refused." in capsys.readouterr().out
    assert {key: lake.read_bytes(key) for key in lake.list("models")} == keys
    assert main(["predict", "--car", cars["KNR"].iloc[0], "--lake", settings.lake]) == 0
