"""`kafer predict` and 06_predict: the ranked list as the workbook the plant opens, CSV, refusals.

A production model is registered straight through the registry (trained on one small demo upload,
scoring another), so no retrain runs. The lake is a local folder: the notebook's kernel is another
process.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from kafer import registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.demo import make_demo_upload
from kafer.errors import KaferError, OutputError, StepError, UploadError
from kafer.features import feature_columns
from kafer.i18n import number
from kafer.lake import Lake
from kafer.metrics import threshold_at
from kafer.model import train
from kafer.pipeline import run_notebook
from kafer.predict import (ABOUT_SHEET, LIST_SHEET, budget_note, output_format, predict_upload, ranking_facts,
                           ranking_workbook, save_ranking, summary, threshold_note, upload_cars)
from kafer.report import risk_chart
from kafer.runrecord import write_json

HIGHLIGHT = "FFFFC7CE"


def keep_in_production(settings, model, *, threshold: float, training_cars) -> str:
    """Register ``model`` in the settings' lake and keep it in production (Ana's decision); its version."""
    lake = Lake(settings.lake)
    version = registry.register_candidate(
        lake, run_id="r1", version=registry.new_version(), artifact=model.to_bytes(), family=model.meta["family"],
        data_version="f1", metrics={"operating_threshold": threshold}, trained_on=model.meta["trained_on"],
        training_cars=list(training_cars))
    write_json(Path(settings.runs) / "r1" / "manifest.json",
               {"run_id": "r1", "status": "succeeded", "candidate_version": version, "production_version": None})
    registry.decide(lake, "r1", "keep-new", by="Ana", why="first model", runs_dir=settings.runs)
    return version


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A lake whose production model (kept by Ana) was trained on one upload, and another upload to score."""
    root = tmp_path_factory.mktemp("predict")
    settings = load_settings(lake=str(root / "lake"), runs=str(root / "runs"))
    first = make_demo_upload(root / "first", cars=200, seed=11, results_per_car=20)
    second = make_demo_upload(root / "second", cars=200, seed=12, results_per_car=20, start="2024-04-15")
    table = upload_cars([str(first.folder)], settings=settings).table.drop(columns="label_known")
    model = train(table, features=feature_columns(settings), family="hgb", seed=1)
    threshold = threshold_at(model.predict_proba(table), budget=settings.operating_budget)
    version = keep_in_production(settings, model, threshold=threshold, training_cars=table["KNR"])
    return {"root": root, "settings": settings, "upload": second, "version": version, "threshold": threshold,
            "trained_on": model.meta["trained_on"], "model": model}


@pytest.fixture(scope="module")
def scored(world):
    settings, upload = world["settings"], [str(world["upload"].folder)]
    ranked = predict_upload(upload, settings=settings)
    return ranked, ranking_facts(ranked, paths=upload, settings=settings)


def test_the_facts_name_the_model_who_kept_it_the_upload_and_the_threshold(world, scored):
    ranked, facts = scored
    model = facts["model"]
    assert (model["version"], model["family"], model["run"], model["by"], model["why"]) == (
        world["version"], "hgb", "r1", "Ana", "first model")
    assert model["trained_on"] == world["trained_on"] and model["since"]
    assert facts["files"] == sorted(p.name for p in world["upload"].files)
    assert facts["threshold"] == world["threshold"] and facts["budget"] == 0.1
    flagged = ranked["in_budget"].to_numpy()
    assert (ranked.loc[flagged, "probability"] >= facts["threshold"]).all()
    assert (ranked.loc[~flagged, "probability"] < facts["threshold"]).all()


def test_the_summary_is_one_line_with_the_model_the_count_and_the_threshold(world, scored):
    ranked, facts = scored
    text = summary(ranked, facts)
    flagged, on_line = int(ranked["in_budget"].sum()), int((~ranked["at_road_test"]).sum())
    assert on_line == 1, "one car of 200 was never road-tested (the generator's 0.5 %)"
    assert text == (f"200 cars scored with production model {world['version']} (hgb), 1 of them still on the line "
                    f"and scored on what is known so far; {flagged} fall in the "
                    f"inspection budget (a risk of at least {world['threshold'] * 100:.1f} %, reached by the "
                    "riskiest 10 % of the model's evaluation cars).")
    note = budget_note(ranked, facts)
    assert note.startswith(f"{flagged} of these 200 cars ({flagged / 2:.1f} %) are in the inspection budget")
    assert "does not depend on how many cars are scored together" in note


def test_the_list_says_when_its_threshold_flags_far_more_or_fewer_cars_than_the_budget(scored):
    ranked, facts = scored
    tested = ranked["at_road_test"].to_numpy()
    about = ranked.assign(in_budget=tested & (np.cumsum(tested) <= 22))  # 22 of 199: about 10 %
    assert threshold_note(about, facts) is None and "far from" not in summary(about, facts)
    many = ranked.assign(in_budget=tested & (np.cumsum(tested) <= 60))  # 60 of 199: 30 %
    note = threshold_note(many, facts)
    assert note.startswith("The threshold flags 30.2 % of the 199 cars at their road test") and "far from the 10 %" in note
    assert "the list is longer than planned" in note and "kafer monitor tells which" in note and "Retrain:" not in note
    assert summary(many, facts).endswith(note) and budget_note(many, facts).endswith(note)


def test_the_workbook_the_plant_opens(world, scored, tmp_path):
    ranked, facts = scored
    out = tmp_path / "ranked.xlsx"
    assert save_ranking(ranked, str(out), facts=facts).endswith(f"Written to {out} (workbook).")
    book = load_workbook(out)
    assert book.sheetnames == [LIST_SHEET, ABOUT_SHEET]
    sheet = book[LIST_SHEET]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:J201"
    assert [c.value for c in sheet[1]] == ["Rank", "KNR", "Road-test risk", "In inspection budget",
                                           "At the road test", "Road test at", "Last checkpoint", "Last checkpoint at",
                                           "Why (what raises its risk most)", "Model version"]
    assert [r[8].value for r in sheet.iter_rows(min_row=2)] == ranked["reasons"].tolist()
    rows = list(sheet.iter_rows(min_row=2))
    where = [(r[4].value, r[5].value, r[6].value) for r in rows]
    assert [w[0] for w in where] == ["yes"] * 199 + ["no"], "the car still on the line comes last"
    assert not where[-1][1] and where[-1][2] and all(w[1] for w in where[:-1])
    assert [r[1].value for r in rows] == ranked["KNR"].tolist()
    assert [r[0].value for r in rows] == list(range(1, 201))
    risk = [r[2] for r in rows]
    assert all(isinstance(c.value, float) and c.number_format == "0.0 %" for c in risk)
    np.testing.assert_allclose([c.value for c in risk], ranked["probability"])
    filled = {r[1].value for r in rows if all(c.fill.fill_type == "solid" and c.fill.fgColor.rgb == HIGHLIGHT
                                              for c in r)}
    unfilled = {r[1].value for r in rows if all(c.fill.fill_type is None for c in r)}
    assert filled == set(ranked.loc[ranked["in_budget"], "KNR"]) and len(filled) + len(unfilled) == 200
    assert {r[3].value for r in rows if r[1].value in filled} == {"yes"}
    assert sheet.column_dimensions["B"].width >= len("2024-1510001")
    about = dict((label, value) for label, value in book[ABOUT_SHEET].iter_rows(max_col=2, values_only=True)
                 if label)
    assert about["Model version"] == world["version"] and about["Model family"].startswith("hgb")
    assert about["Trained on"].startswith(f"{world['trained_on']['cars']} cars ")
    assert about["In production since"].endswith('by Ana ("first model")')
    assert about["Made at"].endswith("UTC") and about["Lake"] == world["settings"].lake
    assert about["Inspection budget"] == 0.1 and about["Operating threshold"] == pytest.approx(world["threshold"])
    values = [v for _, v in book[ABOUT_SHEET].iter_rows(max_col=2, values_only=True) if isinstance(v, str)]
    assert set(facts["files"]) <= set(values) and max(map(len, values)) <= 90
    assert budget_note(ranked, facts) in " ".join(values)


def test_the_workbook_in_brazilian_portuguese_with_brazilian_moments(world, scored, tmp_path):
    from kafer.i18n import using

    ranked, facts = scored
    out = tmp_path / "lista.xlsx"
    with using("pt-BR"):
        said = save_ranking(ranked, str(out), facts=facts)
    assert said.endswith(f"Gravado em {out} (planilha).") and "carros pontuados com o modelo de produção" in said
    book = load_workbook(out)
    assert book.sheetnames == [LIST_SHEET, ABOUT_SHEET], "scripts open the sheets by these names"
    sheet = book[LIST_SHEET]
    assert [c.value for c in sheet[1]][:6] == ["Posição", "KNR", "Risco no teste de rodagem", "No orçamento de inspeção",
                                               "No teste de rodagem", "Teste de rodagem em"]
    rows = list(sheet.iter_rows(min_row=2))
    assert {r[3].value for r in rows} == {"sim", "não"} and rows[-1][4].value == "não"
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", rows[0][5].value), rows[0][5].value
    assert isinstance(rows[0][2].value, float) and rows[0][2].number_format == "0.0 %"  # Excel writes it as its reader
    about = dict(r for r in book[ABOUT_SHEET].iter_rows(max_col=2, values_only=True) if r[0])
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2} UTC", about["Feita em"]), about["Feita em"]
    assert about["Versão do modelo"] == world["version"] and about["Família do modelo"].startswith("hgb")
    assert about["Em produção desde"].endswith('por Ana ("first model")')
    assert about["Como ler esta lista"].startswith("Uma linha por carro do envio")
    with using("pt-BR"):
        assert f"{number(facts['threshold'] * 100, 1)} %" in budget_note(ranked, facts)
        assert "," in f"{number(facts['threshold'] * 100, 1)}"


def test_the_writer_writes_every_column_of_the_list_and_highlights_by_the_flag_alone():
    ranked = pd.DataFrame({"KNR": ["2024-1", "2024-2", "2024-3"], "model_version": "m1",
                           "probability": [0.5, 0.4, 0.3], "rank": [1, 2, 3], "in_budget": [True, False, True],
                           "reasons": ["many ZP7 defects " * 6, None, "long dwell in ZP6"], "n_falhas_ZP7": [4, 0, 1]})
    facts = {"made_at": "2024-11-26T20:17:53+00:00", "lake": "memory://x", "files": ["a.csv"], "budget": 0.1,
             "threshold": None, "model": {"version": "m1", "family": "keras", "run": None, "data_version": None,
                                          "trained_on": None, "since": None, "by": None, "why": None}}
    out = io.BytesIO()
    ranking_workbook(ranked, facts).save(out)
    book = load_workbook(out)
    sheet = book[LIST_SHEET]
    assert [c.value for c in sheet[1]] == ["Rank", "KNR", "Road-test risk", "In inspection budget",
                                           "Why (what raises its risk most)",
                                           "n_falhas_ZP7", "Model version"]
    assert [c.value for c in sheet[3]] == [2, "2024-2", 0.4, "no", None, "0", "m1"]
    assert sheet["E2"].alignment.wrap_text and sheet.column_dimensions["E"].width == 60
    assert sheet.row_dimensions[2].height == 30 and sheet.row_dimensions[4].height is None
    assert [row[0].fill.fill_type for row in sheet.iter_rows(min_row=2)] == ["solid", None, "solid"]
    about = dict(r for r in book[ABOUT_SHEET].iter_rows(max_col=2, values_only=True) if r[0])
    assert about["In production since"] == "unknown" and about["Model family"].startswith("keras")
    assert about["Operating threshold"].startswith("none recorded")
    assert "the riskiest 10 % of this list" in summary(ranked, facts)


def test_csv_still_works(scored, tmp_path):
    ranked, facts = scored
    out = tmp_path / "ranked.csv"
    assert save_ranking(ranked, str(out), facts=facts).endswith("(CSV).")
    back = pd.read_csv(out, dtype={"KNR": str})
    assert list(back.columns) == list(ranked.columns)
    assert back["KNR"].tolist() == ranked["KNR"].tolist()


@pytest.mark.parametrize("out, problem", [("ranked.txt", "name a workbook (.xlsx) or a CSV file (.csv)"),
                                          ("ranked", "name a workbook"),
                                          ("missing/ranked.xlsx", "the folder missing does not exist"),
                                          ("s3://bucket/ranked.xlsx", "name a local file")])
def test_an_output_it_cannot_write_is_refused(out, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match=re.escape(problem)):
        output_format(out)
    assert output_format("") is None and output_format("Ranked.XLSX") == ".xlsx"


def test_the_cli_writes_the_workbook_and_says_so_in_one_line(world, tmp_path, capsys):
    out = tmp_path / "ranked.xlsx"
    assert main(["predict", str(world["upload"].folder), "--lake", world["settings"].lake, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    assert line.startswith(f"200 cars scored with production model {world['version']} (hgb), ")
    assert "reading" in captured.err  # progress on the reads
    assert load_workbook(out).sheetnames == [LIST_SHEET, ABOUT_SHEET]


def test_the_cli_refuses_another_format_before_reading(world, tmp_path, capsys):
    code = main(["predict", str(world["upload"].folder), "--lake", world["settings"].lake,
                 "--out", str(tmp_path / "ranked.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "reading" not in err
    assert err.startswith("kafer predict: error: cannot write the ranked list to ") and "ranked.json" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("make, problem", [
    (lambda folder: None, "matches no file"),
    (lambda folder: (folder / "STATUS.csv").write_text("KNR,STATUS,DATA\n"), "has a header but no data rows"),
    (lambda folder: (folder / "notes.txt").write_text("hello"), "the upload holds no export"),
])
def test_an_upload_without_cars_is_refused_in_one_line(world, tmp_path, capsys, make, problem):
    folder = tmp_path / "upload"
    folder.mkdir()
    make(folder)
    code = main(["predict", str(folder), "--lake", world["settings"].lake, "--out", str(tmp_path / "r.xlsx")])
    err = capsys.readouterr().err
    assert code == 2 and problem in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith("kafer predict: error:") and not (tmp_path / "r.xlsx").exists()


def test_no_upload_at_all_is_refused(world):
    with pytest.raises(UploadError, match="no upload given: name the export files or folders"):
        upload_cars([], settings=world["settings"])


def test_without_a_production_model_the_cli_says_what_to_do(world, tmp_path, capsys):
    code = main(["predict", str(world["upload"].folder), "--lake", str(tmp_path / "lake"),
                 "--out", str(tmp_path / "r.xlsx")])
    err = capsys.readouterr().err
    assert code == 1 and "has no production model yet: retrain, then keep a candidate" in err
    assert "reading" not in err and err.count("\n") == 1


def test_a_kafer_error_shows_in_ipython_as_its_one_line_message():
    assert UploadError("the upload holds no file", file="up/")._render_traceback_() == [
        "UploadError: up/: the upload holds no file"]
    assert KaferError("x")._render_traceback_() == ["KaferError: x"]


def test_the_notebook_shows_the_summary_and_writes_the_workbook(world, tmp_path):
    out = tmp_path / "ranked.xlsx"
    run_notebook("06_predict", tmp_path, {"upload": [str(world["upload"].folder)], "lake": world["settings"].lake,
                                          "out": str(out)})
    shown = [o["data"]["text/markdown"] for c in nbformat.read(str(tmp_path / "06_predict.ipynb"), as_version=4).cells
             for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert shown[0].startswith(f"200 cars scored with production model {world['version']} (hgb), ")
    assert "does not depend on how many cars are scored together" in shown[1]
    assert load_workbook(out).sheetnames == [LIST_SHEET, ABOUT_SHEET]


def test_the_notebook_refuses_an_empty_upload_in_one_line_without_traceback(world, tmp_path):
    empty = tmp_path / "upload"
    empty.mkdir()
    with pytest.raises(StepError, match="matches no file"):
        run_notebook("06_predict", tmp_path, {"upload": [str(empty)], "lake": world["settings"].lake, "out": ""})
    cells = nbformat.read(str(tmp_path / "06_predict.ipynb"), as_version=4).cells
    [error] = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert error["ename"] == "UploadError"
    assert error["traceback"] == [f"UploadError: {empty}: matches no file"]


def test_the_risk_chart_draws_the_threshold_and_shows_risk_in_percent(scored):
    ranked, facts = scored
    fig = risk_chart(ranked.assign(reasons="text"), threshold=facts["threshold"])
    left, right = fig.axes
    [line] = [ln for ln in left.get_lines() if ln.get_linestyle() == "--"]
    assert list(line.get_ydata()) == [facts["threshold"]] * 2
    assert [ln.get_xdata()[0] for ln in right.get_lines()] == [facts["threshold"]]
    assert f"operating threshold {facts['threshold'] * 100:.1f} %" in [t.get_text() for t in left.get_legend().texts]
    fig.canvas.draw()
    assert all(t.get_text().endswith(" %") for t in left.get_yticklabels() if t.get_text())


def exported(upload, folder: Path, *, after=None, until=None) -> Path:
    """The upload's rows dated after ``after`` and up to ``until`` (an export taken then), one csv per kind."""
    from kafer.readers import read_export

    folder.mkdir(parents=True)
    rows = {}
    for path in upload.files:
        export = read_export(path.read_bytes(), path.name)
        rows.setdefault(export.kind, []).append(export.table.to_pandas())
    for kind, parts in rows.items():
        table = pd.concat(parts, ignore_index=True)
        keep = pd.Series(True, index=table.index)
        if after is not None:
            keep &= table["DATA"] > after
        if until is not None:
            keep &= table["DATA"] <= until
        table[keep].assign(DATA=table["DATA"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(folder / f"{kind}.csv",
                                                                                         index=False)
    return folder


def test_a_car_at_its_road_test_gets_the_same_risk_from_any_export_and_any_lake(world, tmp_path):
    """Taken mid-month or at its end, with the car's earlier rows in the lake or in the upload: the
    same risk, to the last bit, for every car that had reached its road test."""
    from kafer.ingest import ingest

    settings = {name: load_settings(lake=str(tmp_path / name / "lake"), runs=str(tmp_path / name / "runs"))
                for name in ("upload", "lake")}
    for each in settings.values():
        keep_in_production(each, world["model"], threshold=world["threshold"], training_cars=[])
    month = exported(world["upload"], tmp_path / "month")
    status = pd.read_csv(month / "status.csv", parse_dates=["DATA"])
    early, middle = status["DATA"].quantile([0.3, 0.6])
    whole = predict_upload([str(month)], settings=settings["upload"]).set_index("KNR")
    mid = predict_upload([str(exported(world["upload"], tmp_path / "mid", until=middle))],
                         settings=settings["upload"]).set_index("KNR")
    tested = mid.index[mid["at_road_test"]]
    assert 50 < len(tested) < len(mid) <= len(whole), "some cars were at the road test at mid-month, some on the line"
    assert (mid.loc[tested, "probability"] == whole.loc[tested, "probability"]).all()
    assert (mid.loc[tested, "road_test_at"] == whole.loc[tested, "road_test_at"]).all()
    on_line = mid.index[~mid["at_road_test"]]
    assert (mid.loc[on_line, "last_checkpoint_at"] <= middle).all() and mid["last_checkpoint"].notna().all()
    assert (mid["rank"].to_numpy()[~mid["at_road_test"].to_numpy()] > len(tested)).all(), "on the line: listed last"

    ingest([str(exported(world["upload"], tmp_path / "early", until=early))], lake=Lake(settings["lake"].lake),
           settings=settings["lake"])
    later = predict_upload([str(exported(world["upload"], tmp_path / "later", after=early))], settings=settings["lake"])
    later = later.set_index("KNR")
    both = later.index.intersection(status.loc[status["DATA"] <= early, "KNR"].unique())
    assert len(both) > 20, "cars whose first rows came in the earlier export"
    assert (later["probability"] == whole.loc[later.index, "probability"]).all()
    assert (later[["at_road_test", "last_checkpoint"]] == whole.loc[later.index, ["at_road_test", "last_checkpoint"]]).all().all()
