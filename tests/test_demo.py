"""The demo upload: the plant's real layouts, a truth that matches its own files, a weak planted signal."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from python_calamine import CalamineWorkbook

from kafer.config import load_settings
from kafer.demo import DEMO_UPLOAD, make_demo_upload
from kafer.errors import ConfigError, KaferError

SMALL = dict(cars=60, seed=1, results_per_car=30, sheet_rows=200)
KNR = re.compile(r"^\d{4}-\d{7}$")
POST_HALLS = {"ROD", "AGUA", "ZP8", "ZP82", "ZP8R", "BUY", "DKA"}


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return make_demo_upload(tmp_path_factory.mktemp("plant"), **SMALL)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Enough cars for shares and correlations, few resultados rows each."""
    return make_demo_upload(tmp_path_factory.mktemp("many"), cars=3000, seed=7, results_per_car=8, layout="csv")


def sheets(path):
    book = CalamineWorkbook.from_path(str(path))
    return {name: book.get_sheet_by_name(name).to_python(skip_empty_area=False) for name in book.sheet_names}


def read_rows(path) -> pd.DataFrame:
    """Every data row of one export, read without Käfer: header found, all sheets, csv dialects."""
    if path.suffix == ".xlsx":
        rows, header = [], None
        for cells in sheets(path).values():
            if header is None:
                at = next(i for i, row in enumerate(cells) if len(row) > 1 and row[1] == "KNR")
                header, cells = cells[at][1:], cells[at + 1:]
            rows += [row[1:] for row in cells]
        return pd.DataFrame(rows, columns=header)
    raw = path.read_bytes()
    text = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError:
        text = text.decode("cp1252")
    sep = ";" if ";" in text.splitlines()[0] else ","
    frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    return frame.drop(columns=[c for c in frame if c.startswith("Unnamed")])


def when(value) -> pd.Timestamp:
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value).floor("s")
    return pd.Timestamp(pd.to_datetime(value, dayfirst="/" in value)).floor("s")


def number_text(value) -> str:
    text = str(value).strip()
    try:
        return repr(float(text))
    except ValueError:
        return text


def recount(folder, settings) -> pd.DataFrame:
    """DATA.md's contract computed straight from the files, the simplest way (small uploads only):
    every count from rows before the car's road test."""
    kinds = {"RESULTADOS": [], "FALHAS": [], "STATUS": []}
    for path in sorted(folder.iterdir()):
        kinds[path.name.split("_")[0]].append(read_rows(path))
    res, fal, sta = (pd.concat(kinds[k], ignore_index=True) for k in ("RESULTADOS", "FALHAS", "STATUS"))
    for col in ("KNR", "NAME", "UNIT"):
        res[col] = res[col].map(lambda v: str(v).strip())
    for col in ("ID", "STATUS", "VALUE_ID", "VALUE"):
        res[col] = res[col].map(number_text)
    res["DATA"] = res["DATA"].map(when)
    res = res.drop_duplicates()
    sta["DATA"] = sta["DATA"].map(when)
    road_test, dwell = {}, {zone: {} for zone in settings.zones}
    for knr, events in sta.drop_duplicates().sort_values(["KNR", "DATA", "STATUS"]).groupby("KNR"):
        times, codes = events["DATA"].tolist(), events["STATUS"].tolist()
        cut = codes.index(settings.road_test_code) if settings.road_test_code in codes else len(codes)
        road_test[knr] = times[cut] if cut < len(codes) else pd.NaT
        for zone, members in settings.zones.items():
            dwell[zone][knr] = sum((times[i + 1] - times[i]).total_seconds() / 60 if i + 1 < len(codes) else 0.0
                                   for i in range(cut) if codes[i] in members)
    road_test = pd.Series(road_test, dtype="datetime64[ns]")

    def before_road_test(rows: pd.DataFrame) -> pd.DataFrame:
        limit = rows["KNR"].map(road_test)
        return rows[limit.isna() | (rows["DATA"] < limit)]

    counted = before_road_test(res[~res["NAME"].str.startswith("SECTION_ZP8_")])
    out = {}
    for i in ("1", "2", "718"):
        of_id = counted[counted["ID"] == repr(float(i))]
        out[f"n_results_id{i}"] = of_id.groupby("KNR").size()
        out[f"n_nok_id{i}"] = of_id[of_id["STATUS"] == "13.0"].groupby("KNR").size()
    fal["HALLE"] = fal["HALLE"].map(lambda v: str(v).strip().upper())
    fal["FALHA"] = fal["FALHA"].map(lambda v: str(v).strip().upper())
    fal["DATA"] = fal["DATA"].map(when)
    defects = before_road_test(fal.drop_duplicates(["KNR", "HALLE", "FALHA", "DATA"]))
    for group, members in settings.hall_groups.items():
        out[f"n_falhas_{group}"] = defects[defects["HALLE"].isin(members)].groupby("KNR").size()
    out["label_rod"] = fal[fal["HALLE"] == settings.label_hall].groupby("KNR").size().clip(upper=1)
    for zone in settings.zones:
        out[f"dwell_min_{zone}"] = pd.Series(dwell[zone], dtype=float)
    table = pd.DataFrame(out).fillna(0)
    last = fal["DATA"].max() - pd.Timedelta(hours=settings.label_maturity_hours)
    table["label_known"] = (road_test >= fal["DATA"].min()) & (road_test <= last)
    return table


def truth_of(demo) -> pd.DataFrame:
    return pd.read_csv(demo.truth, dtype={"KNR": str}).set_index("KNR")


# -- layouts --------------------------------------------------------------------------------------

def test_plant_layout_writes_the_real_mix_of_files(plant):
    assert plant.folder == plant.truth.parent / DEMO_UPLOAD
    assert sorted(p.name for p in plant.folder.iterdir()) == sorted(p.name for p in plant.files)
    kinds = sorted(re.sub(r"_\d{8}_\d{8}", "", p.name) for p in plant.files)
    assert kinds == ["FALHAS.csv", "FALHAS_PREDICT.xlsx", "RESULTADOS.csv.gz", "RESULTADOS.xlsx", "STATUS.xlsx"]


@pytest.mark.parametrize("layout, suffix", [("csv", ".csv"), ("xlsx", ".xlsx")])
def test_single_format_layouts_and_the_truth_does_not_depend_on_the_layout(tmp_path, plant, layout, suffix):
    demo = make_demo_upload(tmp_path, layout=layout, **SMALL)
    assert len(demo.files) == 5 and all(p.name.endswith(suffix) for p in demo.files)
    assert demo.truth.read_bytes() == plant.truth.read_bytes()


def test_workbooks_have_the_plant_top_rows_and_headerless_continuation_sheets(plant):
    tops = {"STATUS": (2, None), "FALHAS": (3, "count"), "RESULTADOS": (4, "title")}
    for path in (p for p in plant.files if p.suffix == ".xlsx"):
        header_row, variant = tops[path.name.split("_")[0]]
        book = sheets(path)
        names = list(book)
        assert names == ["Relatório 1"] + [f"Relatório 1({k})" for k in range(1, len(names))]
        assert len(names) >= 2, f"{path.name}: sheet_rows=200 should split it"
        first = book[names[0]]
        assert not any(first[0]), "Excel row 1 is blank"
        assert all(row[0] == "" for cells in book.values() for row in cells), "column A is empty"
        assert first[header_row - 1][1] == "KNR" and KNR.match(first[header_row][1])
        if variant == "count":
            cars = {row[1] for cells in book.values() for row in cells if KNR.match(str(row[1]))}
            assert first[1][1] == len(cars) and not any(first[1][2:])
        if variant == "title":
            assert first[1][3] == "Relatório 1" and not any(first[2])
        for name in names[1:]:
            assert KNR.match(book[name][0][1]), f"{name} starts with data, no header"
        heights = [len(cells) for cells in book.values()]
        assert all(h == 200 for h in heights[:-1]) and 0 < heights[-1] <= 200


def test_csv_variants(plant):
    gz = next(p for p in plant.files if p.name.endswith(".csv.gz"))
    lines = gzip.decompress(gz.read_bytes()).decode("utf-8").splitlines()
    assert lines[0] == ",KNR,NAME,ID,STATUS,UNIT,VALUE_ID,VALUE,DATA"
    frame = read_rows(gz)
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(len(frame)))
    assert frame["NAME"].str.match(r"^\d{6}$|^[A-Z]").all() and (frame["NAME"] == "012001").any()
    units = frame["UNIT"][frame["UNIT"] != ""]
    assert (units.str.len() == 10).all() and {"Grad", "Nm"} <= set(units.str.strip())
    values = frame["VALUE"][frame["VALUE"] != ""]
    assert (values.str.len() >= 50).all() and values.str.strip().str.match(r"^-?\d+(\.\d+)?$").mean() > .99
    assert (frame["VALUE_ID"].str.match(r"^\d+\.0$") | frame["VALUE_ID"].isin(["", "#MULTIVALUE"])).all()
    assert frame.duplicated().any(), "a few rows are exported twice"

    falhas_csv = next(p for p in plant.files if p.name.startswith("FALHAS_") and p.suffix == ".csv")
    raw = falhas_csv.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.decode("cp1252").splitlines()[0] == "KNR;MODELO;COR;MOTOR;ESTACAO;USUARIO;HALLE;FALHA;S_GROUP_ID;DATA"
    again = read_rows(falhas_csv)
    assert again["DATA"].str.match(r"^\d{1,2}/\d{1,2}/\d{4} \d\d:\d\d:\d\d$").all()


def test_falhas_csv_re_exports_rows_of_the_workbook_with_dates_truncated(plant):
    workbook = read_rows(next(p for p in plant.files if p.name.startswith("FALHAS_PREDICT")))
    again = read_rows(next(p for p in plant.files if p.name.startswith("FALHAS_") and p.suffix == ".csv"))
    assert 0 < len(again) < len(workbook)
    assert (workbook["DATA"].map(lambda d: d.microsecond) >= 500_000).any(), "rounding would differ"
    key = ["KNR", "ESTACAO", "USUARIO", "HALLE", "FALHA", "DATA"]
    truncated = workbook.assign(DATA=workbook["DATA"].map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")))
    again = again.assign(DATA=again["DATA"].map(lambda d: when(d).strftime("%Y-%m-%d %H:%M:%S")))
    assert set(map(tuple, again[key].to_numpy())) <= set(map(tuple, truncated[key].to_numpy()))


def test_double_recorded_defects(plant):
    rows = read_rows(next(p for p in plant.files if p.name.startswith("FALHAS_PREDICT")))
    pairs = rows.groupby(["KNR", "ESTACAO", "USUARIO", "DATA"])
    twice = [group for _, group in pairs if len(group) == 2]
    assert len(twice) > 0.6 * pairs.ngroups
    for group in twice:
        plain, padded = sorted(group.itertuples(), key=lambda r: r.FALHA == r.FALHA.upper() and r.FALHA != "")
        assert padded.HALLE == plain.HALLE.ljust(4) and padded.FALHA == plain.FALHA.upper()
        assert plain.FALHA != padded.FALHA
    assert rows["FALHA"].str.contains("¨").any()
    assert {type(v) for v in rows["S_GROUP_ID"]} == {str, float}, "S_GROUP_ID mixes text and numbers"


# -- the truth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["plant", "csv"])
def test_truth_is_what_the_contract_gives_on_the_files(tmp_path, settings, layout):
    demo = make_demo_upload(tmp_path, layout=layout, falhas_until="2024-04-05", **SMALL)
    truth, counted = truth_of(demo), recount(demo.folder, settings)
    assert truth["label_known"].any() and not truth["label_known"].all()
    for column in counted:
        expected = counted[column].reindex(truth.index, fill_value=0)
        if column.startswith("dwell_min_"):
            assert np.allclose(truth[column], expected.astype(float)), column
        else:
            assert (truth[column].astype(int) == expected.astype(int)).all(), column


def test_truth_columns_and_cars(plant, settings):
    truth = pd.read_csv(plant.truth, dtype={"KNR": str})
    assert list(truth.columns[:4]) == ["KNR", "p_true", "label_rod", "label_known"]
    contract = ([f"n_results_id{i}" for i in (1, 2, 718)] + [f"n_nok_id{i}" for i in (1, 2, 718)]
                + [f"n_falhas_{h}" for h in ("ZP5", "ZP5A", "ZP6", "ZP7")] + [f"dwell_min_{z}" for z in settings.zones])
    assert set(contract) <= set(truth.columns)
    assert len(truth) == SMALL["cars"] and truth["KNR"].is_unique and truth["KNR"].str.match(KNR).all()
    assert truth["KNR"].is_monotonic_increasing and (truth["KNR"].str[8:] >= "6001").all()
    week, weekday = truth["KNR"].str[5:7].astype(int), truth["KNR"].str[7].astype(int)
    assert week.between(1, 53).all() and weekday.between(1, 5).all()  # produced on working days
    assert truth["p_true"].between(0, 1, inclusive="neither").all()
    for zone in settings.zones:
        assert (truth[f"dwell_min_{zone}"] > 0).mean() > 0.9, f"dwell in {zone} is trivial"


def test_same_seed_same_bytes_other_seed_other_cars(tmp_path, plant):
    again = make_demo_upload(tmp_path / "again", **SMALL)
    assert len(again.files) == len(plant.files)
    for a, b in zip(plant.files, again.files):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    other = make_demo_upload(tmp_path / "other", **{**SMALL, "seed": 2})
    assert not truth_of(other)["p_true"].equals(truth_of(plant)["p_true"])


def test_positives_and_a_weak_learnable_signal(many):
    truth = truth_of(many)
    assert 0.055 <= truth["label_rod"].mean() <= 0.085
    assert truth["p_true"].mean() == pytest.approx(0.07, abs=0.001)
    from sklearn.metrics import roc_auc_score

    assert 0.68 <= roc_auc_score(truth["label_rod"], truth["p_true"]) <= 0.84


def test_signal_zero_is_pure_chance(tmp_path):
    truth = truth_of(make_demo_upload(tmp_path, cars=400, seed=3, results_per_car=8, signal=0, layout="csv"))
    assert np.ptp(truth["p_true"]) < 1e-12 and truth["p_true"].iloc[0] == pytest.approx(0.07)


def test_nothing_after_the_road_test_tells_more_than_the_label(many, settings):
    """Post-road halls are chance alone; later status events depend on the car's risk only through
    its label (a failing car is sent back for rework)."""
    truth = truth_of(many)
    falhas = pd.concat(read_rows(p) for p in many.files if p.name.startswith("FALHAS_PREDICT"))
    falhas["HALLE"] = falhas["HALLE"].str.strip()
    post = falhas[falhas["HALLE"].isin(POST_HALLS - {settings.label_hall})].drop_duplicates(["KNR", "DATA"])
    per_car = post.groupby("KNR").size().reindex(truth.index, fill_value=0)
    assert abs(np.corrcoef(per_car, truth["p_true"])[0, 1]) < 0.08
    status = pd.concat(read_rows(p) for p in many.files if p.name.startswith("STATUS"))
    status["DATA"] = pd.to_datetime(status["DATA"])
    road = status[status["STATUS"] == settings.road_test_code].groupby("KNR")["DATA"].min()
    rod = falhas[falhas["HALLE"] == settings.label_hall]
    assert (pd.to_datetime(rod["DATA"]).to_numpy() >= road.reindex(rod["KNR"]).to_numpy()).all()
    after = status[status["DATA"] > status["KNR"].map(road)].groupby("KNR").size().reindex(truth.index, fill_value=0)
    passed = truth["label_rod"] == 0
    assert abs(np.corrcoef(after[passed], truth.loc[passed, "p_true"])[0, 1]) < 0.08


def test_a_car_that_failed_its_road_test_is_reworked_on_the_line(many, settings):
    """As in the plant: ZP7 checkpoints and defects, and screws tested again, after its road test."""
    truth = truth_of(many)
    status = pd.concat(read_rows(p) for p in many.files if p.name.startswith("STATUS"))
    status["DATA"] = pd.to_datetime(status["DATA"])
    road = status[status["STATUS"] == settings.road_test_code].groupby("KNR")["DATA"].min()

    def after_road_test(rows: pd.DataFrame) -> pd.Index:
        return pd.Index(rows.loc[pd.to_datetime(rows["DATA"]) > rows["KNR"].map(road), "KNR"].unique())

    falhas = read_rows(next(p for p in many.files if p.name.startswith("FALHAS_PREDICT")))
    zp7 = after_road_test(falhas[falhas["HALLE"].str.strip() == "ZP7"])
    back = after_road_test(status[status["STATUS"].isin(["M695", "M701"])])
    results = pd.concat(read_rows(p) for p in many.files if p.name.startswith("RESULTADOS"))
    nok_screws = results["ID"].astype(str).str.startswith("2") & results["STATUS"].astype(str).str.startswith("13")
    retested = after_road_test(results[nok_screws])
    failed = pd.Index(truth.index[truth["label_rod"] == 1])
    assert len(failed) > 20
    assert set(zp7) == set(back) == set(failed)
    assert 0.5 < len(retested) / len(failed) <= 1 and set(retested) <= set(failed)


def test_status_events_like_the_plant(many, settings):
    status = read_rows(next(p for p in many.files if p.name.startswith("STATUS")))
    per_car = status.groupby("KNR").size()
    assert 47 <= per_car.mean() <= 55 and status["STATUS"].nunique() >= 110
    assert status["STATUS"].str.match(r"^[ARLMG]\w{3}$").all()
    assert {c for codes in settings.zones.values() for c in codes} <= set(status["STATUS"])
    events = status.drop_duplicates()
    pair = events[events["STATUS"] == "G620"].merge(events[events["STATUS"] == "M620"], on="KNR")
    assert len(pair) == events["KNR"].nunique() and (pair["DATA_x"] == pair["DATA_y"]).all()
    unsorted = status.groupby("KNR")["DATA"].apply(lambda d: not d.is_monotonic_increasing)
    assert 0.02 <= unsorted.mean() <= 0.06


def test_full_size_resultados(tmp_path):
    demo = make_demo_upload(tmp_path, cars=150, seed=4, layout="csv")
    truth = truth_of(demo)
    rows = truth[[f"n_results_id{i}" for i in (1, 2, 718)]].sum(axis=1)
    assert 850 <= rows.mean() <= 920
    assert 0.9 <= truth["n_results_id2"].sum() / rows.sum() <= 0.95
    nok = truth[[f"n_nok_id{i}" for i in (1, 2, 718)]].sum(axis=1)
    assert 0.003 <= nok.sum() / rows.sum() <= 0.009 and 0.45 <= (nok > 0).mean() <= 0.75
    frame = pd.concat(read_rows(p) for p in demo.files if p.name.startswith("RESULTADOS"))
    tightening = frame[frame["ID"] == "2"]
    units = tightening.groupby(["KNR", "NAME", "DATA"])["UNIT"].agg(lambda u: set(u.str.strip()))
    assert (units.map(lambda u: {"Grad", "Nm"} <= u)).mean() > 0.95, "angle and torque share their time"
    assert frame["NAME"].str.startswith("SECTION_ZP8_").any()
    assert (frame["VALUE"].str.strip() == "#MULTIVALUE").any() and (frame["VALUE_ID"] == "#MULTIVALUE").any()


def test_falhas_until_leaves_later_road_tests_unknown(tmp_path):
    demo = make_demo_upload(tmp_path, cars=1500, seed=5, results_per_car=8, layout="csv", falhas_until="2024-04-06")
    falhas = pd.concat(read_rows(p) for p in demo.files if p.name.startswith("FALHAS"))
    assert pd.to_datetime(falhas["DATA"]).max() < pd.Timestamp("2024-04-07")
    known = truth_of(demo)["label_known"]
    assert 0.1 < known.mean() < 0.9


def test_bad_options_and_a_used_folder_are_refused(tmp_path, plant):
    with pytest.raises(KaferError, match="already holds files"):
        make_demo_upload(plant.truth.parent, **SMALL)
    for bad in ({"cars": 0}, {"layout": "parquet"}, {"sheet_rows": 3}, {"results_per_car": 2}, {"signal": -1}):
        with pytest.raises(ConfigError):
            make_demo_upload(tmp_path, **{**SMALL, **bad})


# -- rework and where the risk hides --------------------------------------------------------------

def pre_road_status(folder, settings) -> pd.DataFrame:
    status = pd.concat(read_rows(p) for p in folder.iterdir() if p.name.startswith("STATUS")).drop_duplicates()
    status["DATA"] = pd.to_datetime(status["DATA"])  # csv layouts: ISO text
    road = status[status["STATUS"] == settings.road_test_code].groupby("KNR")["DATA"].min()
    return status[status["DATA"] < status["KNR"].map(road)]


def test_some_cars_loop_back_to_a_repair_point_before_the_road_test(many, settings):
    passes = pre_road_status(many.folder, settings).groupby(["KNR", "STATUS"]).size()
    looped = passes[passes > 1].reset_index()
    share = looped["KNR"].nunique() / len(truth_of(many))
    assert 0.15 <= share <= 0.3
    assert set(looped["STATUS"]) <= {"L66A", "L534", "L535", "L536", "L537", "L538", "L539", "M591", "M592", "M593",
                                     "M594", "M595", "M596", "M600", "M643", "M644", "M695", "M698", "M700"}


def carriers_of(demo, placement, settings) -> pd.Series:
    """Which cars carry the planted facts, read from the files without Käfer."""
    what = json.loads(demo.signal.read_text())["carriers"][placement]
    cars = truth_of(demo).index
    falhas = pd.concat(read_rows(p) for p in demo.folder.iterdir() if p.name.startswith("FALHAS"))
    if placement == "configuration":
        motor, cor = what["MOTOR x COR"]
        has = falhas.loc[(falhas["MOTOR"].str.strip() == motor) & (falhas["COR"] == cor), "KNR"]
    elif placement == "tests":
        rows = pd.concat(read_rows(p) for p in demo.folder.iterdir() if p.name.startswith("RESULTADOS"))
        has = rows.loc[rows["NAME"].isin(what["tests NOK"]) & (rows["STATUS"].map(number_text) == "13.0"), "KNR"]
    elif placement == "route":
        passes = pre_road_status(demo.folder, settings).groupby(["KNR", "STATUS"]).size().reset_index()
        has = passes.loc[(passes[0] > 1) & passes["STATUS"].isin(what["checkpoints passed twice"]), "KNR"]
    else:
        group_of = {h: g for g, members in settings.hall_groups.items() for h in members}
        key = falhas["HALLE"].str.strip().str.upper().map(group_of) + "|" + falhas["FALHA"].str.strip().str.upper()
        has = falhas.loc[key.isin(what["defects"]), "KNR"]
    return pd.Series(cars.isin(set(has)), index=cars)


@pytest.mark.parametrize("placement", ["configuration", "tests", "route", "defects"])
def test_the_risk_hides_where_asked_and_the_seed_draws_what_carries_it(tmp_path, settings, placement):
    options = dict(cars=1500, results_per_car=120, layout="csv", signal_in=(placement,))
    demo = make_demo_upload(tmp_path / "a", seed=8, **options)
    truth, has = truth_of(demo), carriers_of(demo, placement, settings)
    assert 0.02 < has.mean() < 0.5
    assert truth.loc[has, "p_true"].mean() > 1.8 * truth.loc[~has, "p_true"].mean()
    assert truth["p_true"].mean() == pytest.approx(0.07, abs=0.001)
    drawn = {json.dumps(json.loads(make_demo_upload(tmp_path / str(seed), seed=seed, **options).signal.read_text())
                        ["carriers"]) for seed in (9, 10, 11)}
    assert len(drawn | {json.dumps(json.loads(demo.signal.read_text())["carriers"])}) >= 2


def test_signal_in_is_checked(tmp_path):
    for bad in ((), ("weather",), "tests"):
        with pytest.raises(ConfigError, match="signal_in"):
            make_demo_upload(tmp_path, **{**SMALL, "signal_in": bad})
