"""Landing uploads in the lake and merging them into the curated per-car table."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from conftest import lake_snapshot, write_csv, write_xlsx
from kafer.cli import main
from kafer.errors import UploadError
from kafer.catalog import current_features, current_manifest
from kafer.ingest import ingest
from kafer.lake import Lake
from kafer.predict import upload_cars
from kafer.readers import KINDS

T = dt.datetime
CAR, OTHER = "2023-2016173", "2023-2016174"
STATUS = [[CAR, "R640", T(2024, 5, 1, 8, 0)], [CAR, "R650", T(2024, 5, 1, 8, 10)], [CAR, "M591", T(2024, 5, 1, 9, 0)],
          [CAR, "G710", T(2024, 5, 1, 9, 30)], [CAR, "M695", T(2024, 5, 1, 9, 45)], [CAR, "G720", T(2024, 5, 1, 10, 0)],
          [CAR, "R650", T(2024, 5, 1, 8, 10)],  # the same event exported twice counts once
          [OTHER, "L534", T(2024, 5, 3, 8, 0)], [OTHER, "G710", T(2024, 5, 3, 8, 20)]]
FALHAS = [
    [CAR, "T-CROSS", "2R2R", "DHS", "HCEQS506", "4013334", "ZP7 ", "PARALAMA 01. AMASSADO", T(2024, 5, 1, 8, 31, 52, 400000)],
    [CAR, "T-CROSS", "2R2R", "DHS", "HCEQS506", "4013334", "ZP7", "Paralama 01. amassado", T(2024, 5, 1, 8, 31, 52, 400000)],
    [CAR, "T-CROSS", "2R2R", "DHS", "HCEQS507", "4013334", "ZP62", "Porta 02. risco", T(2024, 5, 1, 8, 40)],
    [CAR, "T-CROSS", "2R2R", "DHS", "HCEQS999", "4013334", "ROD ", "RUÍDO", T(2024, 5, 1, 9, 40)],
    [CAR, "T-CROSS", "2R2R", "DHS", "HCEQS999", "4013334", "AGUA", "INFILTRAÇÃO", T(2024, 5, 1, 9, 50)],
    [OTHER, "T-CROSS", "0Q0Q", "   ", "PCEQS314", "2061350", "ZP5A", "TETO 05. SUJEIRA", T(2024, 5, 2, 12, 25)],
]
RESULTADOS = [
    [CAR, "012001", "1", "10", "", "", "", T(2024, 5, 1, 7, 41, 25)],
    [CAR, "042000", "2", "13", "Nm        ", "80.0", "12.479" + " " * 44, T(2024, 5, 1, 7, 41, 25)],
    [CAR, "042000", "2", "13", "Nm        ", "80", "12.4790", T(2024, 5, 1, 7, 41, 25)],
    [CAR, "042000", "2", "10", "Grad      ", "80", "35.1", T(2024, 5, 1, 7, 41, 25)],
    [CAR, "SECTION_ZP8_00000001", "718", "13", "V         ", "80", "12.4", T(2024, 5, 1, 11, 0)],
    [CAR, "SECTION_ROL_00000003", "718", "13", "V         ", "#MULTIVALUE", "#MULTIVALUE", T(2024, 5, 1, 8, 0)],
]


def upload(folder, *, fmt="mixed"):
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        write_xlsx(folder / "STATUS.xlsx", list(KINDS["status"]), STATUS, sheet_rows=4)
        write_xlsx(folder / "FALHAS.xlsx", list(KINDS["falhas"]), FALHAS, top="count")
        write_xlsx(folder / "RESULTADOS.xlsx", list(KINDS["resultados"]), RESULTADOS, top="title")
    else:
        write_xlsx(folder / "STATUS.xlsx", list(KINDS["status"]), STATUS, sheet_rows=4)
        write_csv(folder / "FALHAS.csv", list(KINDS["falhas"]), FALHAS, sep=";", encoding="cp1252", dayfirst=True)
        write_csv(folder / "RESULTADOS.csv.gz", list(KINDS["resultados"]), RESULTADOS, index=True)
    return folder


def test_contract_values(lake, settings, tmp_path):
    ingest([str(upload(tmp_path / "up"))], lake=lake, settings=settings)
    table = current_features(lake).set_index("KNR")
    car = table.loc[CAR]
    assert car["label_rod"] == 1 and car["label_known"]
    assert (car["n_results_id1"], car["n_results_id2"], car["n_results_id718"]) == (1, 2, 1)
    assert (car["n_nok_id1"], car["n_nok_id2"], car["n_nok_id718"]) == (0, 1, 1)
    assert (car["n_falhas_ZP5"], car["n_falhas_ZP5A"], car["n_falhas_ZP6"], car["n_falhas_ZP7"]) == (0, 0, 1, 1)
    assert car["dwell_min_ZP5"] == pytest.approx(60.0)  # R640 10 min + R650 50 min
    assert car["dwell_min_ZP6"] == pytest.approx(30.0)  # M591 until G710
    assert car["dwell_min_ZP7"] == 0.0  # M695 is after the road test started
    other = table.loc[OTHER]
    assert other["label_rod"] == 0 and other["n_falhas_ZP5A"] == 1 and other["dwell_min_ZP5A"] == pytest.approx(20.0)
    assert not other["label_known"]  # road-tested on May 3rd, after the last falhas row (May 2nd)
    assert "label_rod" not in [c for c in table.columns if c.startswith(("n_", "dwell_"))]


def test_same_rows_as_xlsx_or_again_change_nothing(lake, settings, tmp_path):
    folder = upload(tmp_path / "a")
    ingest([str(folder)], lake=lake, settings=settings)
    first = current_features(lake)
    before = lake_snapshot(lake)
    report = ingest([str(folder)], lake=lake, settings=settings)
    assert report["manifest"]["new_sources"] == [] and lake_snapshot(lake) == before
    ingest([str(upload(tmp_path / "b", fmt="xlsx"))], lake=lake, settings=settings)
    again = current_features(lake)
    assert again.equals(first)
    assert len(current_manifest(lake)["sources"]) == 5  # the xlsx falhas and resultados are new files


def test_car_spanning_two_uploads(lake, settings, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    write_csv(first / "r.csv", list(KINDS["resultados"]), RESULTADOS[:2])
    write_csv(second / "r.csv", list(KINDS["resultados"]), RESULTADOS[2:])
    write_csv(second / "s.csv", list(KINDS["status"]), STATUS)
    ingest([str(first)], lake=lake, settings=settings)
    ingest([str(second)], lake=lake, settings=settings)
    car = current_features(lake).set_index("KNR").loc[CAR]
    assert (car["n_results_id1"], car["n_results_id2"], car["n_nok_id2"]) == (1, 2, 1)
    assert not car["label_known"]  # no falhas at all: unknown, not negative


def test_new_falhas_make_old_cars_labelled(lake, settings, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    write_csv(one / "s.csv", list(KINDS["status"]), STATUS)
    ingest([str(one)], lake=lake, settings=settings)
    assert not current_features(lake)["label_known"].any()
    write_csv(two / "f.csv", list(KINDS["falhas"]), FALHAS + [[OTHER] + FALHAS[0][1:-1] + [T(2024, 5, 5)]])
    ingest([str(two)], lake=lake, settings=settings)
    assert current_features(lake)["label_known"].all()


@pytest.mark.parametrize("bad", ["empty", "garbage", "garbage csv", "knr"])
def test_a_bad_file_refuses_the_whole_upload(lake, settings, tmp_path, bad):
    ingest([str(upload(tmp_path / "first"))], lake=lake, settings=settings)
    before = lake_snapshot(lake)
    folder = upload(tmp_path / "second", fmt="xlsx")
    if bad == "empty":
        (folder / "zz.csv").write_bytes(b"")
    elif bad == "garbage":
        (folder / "zz.xlsx").write_bytes(b"\x00\x01garbage" * 100)
    elif bad == "garbage csv":  # named like an export, so read, and refused
        (folder / "zz.csv").write_text("these are my notes, not an export\n")
    else:
        write_csv(folder / "zz.csv", list(KINDS["status"]), [["2023-20161", "G620", T(2024, 1, 1)]])
    with pytest.raises(UploadError, match="zz"):
        ingest([str(folder)], lake=lake, settings=settings)
    assert lake_snapshot(lake) == before


def test_cli_refuses_without_traceback(tmp_path, capsys):
    folder = upload(tmp_path / "up")
    (folder / "broken.xlsx").write_bytes(b"not a workbook")
    code = main(["ingest", str(folder), "--lake", str(tmp_path / "lake")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    message = err[err.index("kafer ingest: error"):]
    assert "broken.xlsx" in message and len(message.strip().splitlines()) <= 5
    assert not (tmp_path / "lake").exists()


def test_cli_ingest_and_features(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(upload(tmp_path / "up")), "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert "status" in out and "falhas" in out and "2 cars" in out
    assert main(["features", "--lake", lake, "--out", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "f.csv").read_text().startswith("KNR,label_rod,label_known")


def test_features_before_any_ingest_is_a_clear_error(tmp_path, capsys):
    assert main(["features", "--lake", str(tmp_path / "nothing"), "--out", str(tmp_path / "f.csv")]) == 1
    assert "ingest an upload first" in capsys.readouterr().err


def test_notes_beside_the_exports_are_listed_as_ignored(lake, settings, tmp_path):
    folder = upload(tmp_path / "up")
    (folder / "README.txt").write_text("exports of May, from the quality system\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "~$STATUS.xlsx").write_bytes(b"\x0cana")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    report = ingest([str(folder)], lake=lake, settings=settings)
    notes = dict(zip(report["files"]["file"], report["files"]["note"]))
    assert notes["README.txt"] == "ignored: not an export (.txt)"
    assert notes[".DS_Store"] == notes[".git"] == "ignored: hidden"
    assert notes["~$STATUS.xlsx"] == "ignored: Excel's lock file of an open workbook"
    assert sorted(r["name"] for r in report["landed"]) == ["FALHAS.csv", "RESULTADOS.csv.gz", "STATUS.xlsx"]
    assert current_features(lake)["KNR"].tolist() == [CAR, OTHER]


def test_a_file_that_is_no_export_named_alone_is_refused(lake, settings, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("to do\n")
    with pytest.raises(UploadError, match=r"holds no export: notes\.txt is not an export \(\.txt\)"):
        ingest([str(notes)], lake=lake, settings=settings)
    assert lake_snapshot(lake) == {}


def test_cli_ingest_reports_the_ignored_files(tmp_path, capsys):
    folder = upload(tmp_path / "up")
    (folder / "README.txt").write_text("notes\n")
    assert main(["ingest", str(folder / "*"), "--lake", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    assert "README.txt" in out and "ignored: not an export (.txt)" in out


def test_a_glob_below_a_hidden_folder_finds_the_exports(lake, settings, tmp_path):
    folder = upload(tmp_path / ".uploads" / "may")
    report = ingest([str(folder / "*")], lake=lake, settings=settings)
    assert len(report["landed"]) == 3


def test_a_date_outside_the_settings_window_refuses_the_upload(lake, settings, tmp_path):
    folder = upload(tmp_path / "up")
    write_csv(folder / "zz.csv", list(KINDS["status"]), [[OTHER, "G720", T(1970, 1, 1)]])
    with pytest.raises(UploadError, match=r"zz\.csv, row 2, column DATA .*outside the plausible window"):
        ingest([str(folder)], lake=lake, settings=settings)
    assert lake_snapshot(lake) == {}
    ingest([str(folder)], lake=lake, settings=settings.replace(dates_from="1960-01-01"))
    assert current_manifest(lake)["periods"]["status"][0] == "1970-01-01T00:00:00"


def test_predict_reads_an_upload_with_the_settings_window(settings, tmp_path):
    folder = upload(tmp_path / "up")
    write_csv(folder / "zz.csv", list(KINDS["status"]), [[OTHER, "G720", T(1970, 1, 1)]])
    with pytest.raises(UploadError, match="outside the plausible window"):
        upload_cars([str(folder)], settings=settings)
    assert len(upload_cars([str(folder)], settings=settings.replace(dates_from="1960-01-01")).table) == 2


def test_each_file_is_hashed_once(lake, settings, tmp_path, monkeypatch):
    folder = upload(tmp_path / "up")
    files = sorted(p.read_bytes() for p in folder.iterdir())
    fed = []
    real = hashlib.sha256

    class Counted:
        """A sha256 that remembers every byte it was given."""

        def __init__(self, data=b""):
            self.seen = bytearray(data)
            self.digest = real(data)
            fed.append(self.seen)

        def update(self, data):
            self.seen += data
            self.digest.update(data)

        def hexdigest(self):
            return self.digest.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Counted)
    ingest([str(folder)], lake=lake, settings=settings)
    assert sorted(bytes(seen) for seen in fed if bytes(seen) in files) == files

def _months_with_road_test_rows(root, *, kept_share: dict[str, float]):
    """Three demo months (csv), each keeping this share of its failing cars' road-test (ROD) rows."""
    import pandas as pd

    from kafer.demo import make_demo_upload

    folders = []
    for name, seed, start in (("april", 5, "2024-04-01"), ("may", 6, "2024-05-06"), ("june", 7, "2024-06-03")):
        demo = make_demo_upload(root / name, cars=300, seed=seed, start=start, results_per_car=8, layout="csv")
        for path in demo.files:
            if path.name.startswith("FALHAS") and kept_share[name] < 1:
                rows = pd.read_csv(path, dtype=str, keep_default_na=False)
                rod = rows["HALLE"].str.strip() == "ROD"
                failed = sorted(set(rows.loc[rod, "KNR"]))
                dropped = set(failed[round(kept_share[name] * len(failed)):])
                rows[~(rod & rows["KNR"].isin(dropped))].to_csv(path, index=False)
        folders.append(str(demo.folder))
    return folders


def test_a_month_failing_half_as_often_keeps_its_labels_and_an_export_cut_by_hall_is_caught(tmp_path, capsys):
    """May fails half as often as April (its ROD rows kept for half its failing cars): every label it
    had stays known. June's exports hold no ROD row (cut by hall): every car would be a known negative,
    so its period makes no label known, and ingest says why and how to overrule it."""
    lakes = {}
    for name, may in (("complete", 1.0), ("halved", 0.5)):
        folders = _months_with_road_test_rows(tmp_path / name, kept_share={"april": 1.0, "may": may, "june": 0.0})
        lakes[name] = str(tmp_path / name / "lake")
        assert main(["ingest", *folders, "--lake", lakes[name]]) == 0
    out = capsys.readouterr().out
    complete, halved = (current_features(Lake(lakes[n])).set_index("KNR") for n in ("complete", "halved"))
    may = complete.index.str.startswith("2024-19")
    assert complete.loc[may, "label_known"].sum() > 250
    assert (halved["label_known"] == complete["label_known"]).all()
    failed = halved.loc[may & halved["label_known"], "label_rod"]
    assert 0 < failed.sum() <= complete.loc[may & complete["label_known"], "label_rod"].sum() / 2 + 1
    june = halved.index.str.startswith("2024-23")
    assert june.sum() > 250 and not halved.loc[june, "label_known"].any()
    manifest = current_manifest(Lake(lakes["halved"]))
    assert {f["name"] for f in manifest["filtered_falhas"]} == {s["name"] for s in manifest["sources"]
                                                                 if s["kind"] == "falhas" and "_202406" in s["name"]}
    assert "holds defects of other halls but no road-test (ROD) defect among the" in out
    assert "Taken as cut by hall" in out and "falhas_complete = [" in out
