"""Nothing known only after the road test reaches a feature."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from kafer.catalog import current_facts, current_features
from kafer.dataset import labelled, time_split
from kafer.demo import make_demo_upload
from kafer.facts import FactColumns, build_facts, facts_of
from kafer.features import build_features, feature_columns
from kafer.ingest import ingest
from kafer.metrics import compare
from kafer.model import train
from kafer.readers import COLUMNS, schema

T = dt.datetime
CAR = "2024-1510001"


def tables(extra_falhas=(), extra_results=(), extra_status=(), *, car=CAR, falhas=True):
    status = [(car, "R640", T(2024, 4, 1, 8)), (car, "M591", T(2024, 4, 1, 9)), (car, "M695", T(2024, 4, 1, 10)),
              (car, "M591", T(2024, 4, 1, 10, 30)), (car, "G710", T(2024, 4, 1, 11)), *extra_status]
    falhas = [(car, "T-CROSS", "2R2R", "DHS", "E1", "U1", "ZP5", "RISCO", T(2024, 4, 1, 8, 30))] * falhas
    falhas += list(extra_falhas)
    results = [(car, "012001", "1", "13", "", "", "", T(2024, 4, 1, 8, 5)), *extra_results]

    def make(kind, rows):
        cols = COLUMNS[kind]
        data = {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(cols)}
        return pa.table(data, schema=schema(kind))

    return make("resultados", results), make("falhas", falhas), make("status", status)


def test_post_road_rows_change_only_the_label(settings):
    base = build_features(*tables(), settings=settings)
    after = build_features(*tables(
        extra_falhas=[(CAR, "T-CROSS", "2R2R", "DHS", "E9", "U9", hall, "RUÍDO", T(2024, 4, 1, 12))
                      for hall in ("ROD", "AGUA", "ZP8", "ZP82", "ZP8R", "ESPC", "")],
        extra_results=[(CAR, "SECTION_ZP8_00000001", "718", "13", "V", "80", "12.4", T(2024, 4, 1, 12))],
        extra_status=[(CAR, "G720", T(2024, 4, 1, 12)), (CAR, "M620", T(2024, 4, 1, 13)),
                      (CAR, "R650", T(2024, 4, 2, 8))]), settings=settings)
    features = list(feature_columns(settings))
    assert base[features].equals(after[features])
    assert (base["label_rod"].item(), after["label_rod"].item()) == (0, 1)


POST_ROAD = dict(
    extra_falhas=[(CAR, "AUDI Q3", "0Q0Q", "CWL", "E9", "U9", hall, "RUÍDO", T(2024, 4, 1, 12))
                  for hall in ("ROD", "AGUA", "ZP8", "ZP82", "ZP8R", "ESPC", "")],
    extra_results=[(CAR, "SECTION_ZP8_00000001", "718", "13", "V", "80", "12.4", T(2024, 4, 1, 12)),
                   (CAR, "SECTION_ZP8_00000003", "718", "13", "V", "80", "12.2", T(2024, 4, 1, 12, 5))],
    extra_status=[(CAR, "G720", T(2024, 4, 1, 12)), (CAR, "M620", T(2024, 4, 1, 13)),
                  (CAR, "R650", T(2024, 4, 2, 8)), (CAR, "M695", T(2024, 4, 2, 9)), (CAR, "G710", T(2024, 4, 2, 10))])


def test_post_road_rows_change_no_fact(settings):
    base = build_facts(*tables(), settings=settings)
    after = build_facts(*tables(**POST_ROAD), settings=settings)
    assert base.num_rows > 0 and base.equals(after)
    assert {"ROD", "AGUA", "ZP8", "SECTION_ZP8_00000001", "M620", "R650", "AUDI Q3", "0Q0Q", "CWL"}.isdisjoint(
        {part for key in after["key"].to_pylist() for part in key.replace("=", "|").split("|")})


def test_post_road_rows_change_no_route_column(settings):
    base = build_features(*tables(), settings=settings)
    after = build_features(*tables(**POST_ROAD), settings=settings)
    assert base["n_repeat_passages_pre_road"].item() == 1
    assert base[list(feature_columns(settings))].equals(after[list(feature_columns(settings))])


def test_a_car_with_only_a_rod_defect_has_no_configuration(settings):
    """Its only falhas row is the label's: it must look exactly like a car without any falhas row."""
    rod_only, nothing = "2024-1510002", "2024-1510003"
    parts = [tables(car=CAR), tables(car=rod_only, falhas=False, extra_falhas=[
        (rod_only, "AUDI Q3", "0Q0Q", "CWL", "E9", "U9", "ROD", "RUÍDO", T(2024, 4, 1, 12))]),
             tables(car=nothing, falhas=False)]
    merged = [pa.concat_tables([p[i] for p in parts]) for i in range(3)]
    facts = build_facts(*merged, settings=settings)
    columns = FactColumns.fit(facts, [CAR, rod_only, nothing], min_cars=1, max_columns=10)
    assert set(columns.categorical) == {"config:MODELO", "config:COR", "config:MOTOR"}
    frame = columns.frame([rod_only, nothing, CAR], facts)
    assert frame.iloc[0].equals(frame.iloc[1]) and frame.iloc[:2][list(columns.categorical)].isna().all().all()
    assert not np.isnan(frame.iloc[2][list(columns.categorical)].to_numpy(dtype=float)).any()
    table = build_features(*merged, settings=settings).set_index("KNR")
    features = list(feature_columns(settings))
    assert table.loc[rod_only, features].equals(table.loc[nothing, features])
    assert (table.loc[rod_only, "label_rod"], table.loc[nothing, "label_rod"]) == (1, 0)


#: What a car sent back after a failed road test (G710 at 11:00) gets: rework rows in line halls,
#: screws tightened and tested again, a checkpoint passed again, a second road test.
REWORK = dict(
    extra_falhas=[(CAR, "AUDI Q3", "0Q0Q", "CWL", "E9", "U9", "ROD", "RUÍDO", T(2024, 4, 1, 11, 20)),
                  (CAR, "AUDI Q3", "0Q0Q", "CWL", "HCEQS504", "U7", "ZP7", "PAINEL RISCADO", T(2024, 4, 1, 12)),
                  (CAR, "AUDI Q3", "0Q0Q", "CWL", "PCEQS601", "U7", "ZP61", "CHICOTE SOLTO", T(2024, 4, 1, 11)),
                  (CAR, "AUDI Q3", "0Q0Q", "CWL", "PCEQS100", "U5", "ZP5", "RISCO", T(2024, 4, 1, 13))],
    extra_results=[(CAR, "131200", "2", "13", "Nm", "0", "5.1", T(2024, 4, 1, 12, 30)),
                   (CAR, "131200", "2", "10", "Nm", "0", "9.8", T(2024, 4, 1, 12, 40)),
                   (CAR, "012002", "1", "13", "", "", "", T(2024, 4, 1, 11)),
                   (CAR, "SECTION_ROL_00000003", "718", "13", "km/h", "1", "50", T(2024, 4, 1, 12, 50))],
    extra_status=[(CAR, "G720", T(2024, 4, 1, 11, 30)), (CAR, "M695", T(2024, 4, 1, 12)),
                  (CAR, "M701", T(2024, 4, 1, 12, 20)), (CAR, "G710", T(2024, 4, 1, 14))])


def test_rework_after_a_failed_road_test_changes_no_feature(settings):
    """Rows in the line's halls logged at or after the road test carry its outcome: only the label moves."""
    base = build_features(*tables(), settings=settings)
    after = build_features(*tables(**REWORK), settings=settings)
    features = list(feature_columns(settings))
    assert base[features].equals(after[features])
    assert after[["n_falhas_ZP7", "n_falhas_ZP6", "n_nok_id2", "n_results_id2", "n_nok_id1"]].iloc[0].tolist() == [
        0, 0, 0, 0, 1]
    assert (base["label_rod"].item(), after["label_rod"].item()) == (0, 1)
    assert base["road_test_at"].equals(after["road_test_at"])


def test_rework_after_a_failed_road_test_changes_no_fact(settings):
    base = build_facts(*tables(), settings=settings)
    after = build_facts(*tables(**REWORK), settings=settings)
    assert base.num_rows > 0 and base.equals(after)


def test_a_car_whose_only_line_defect_came_after_its_road_test_has_no_configuration(settings):
    """A configuration read from a rework row would exist exactly for the failing cars."""
    reworked, nothing = "2024-1510002", "2024-1510003"
    rework_only = [(reworked, "AUDI Q3", "0Q0Q", "CWL", "HCEQS504", "U7", "ZP7", "PAINEL RISCADO", T(2024, 4, 1, 12))]
    parts = [tables(car=CAR), tables(car=reworked, falhas=False, extra_falhas=rework_only),
             tables(car=nothing, falhas=False)]
    merged = [pa.concat_tables([p[i] for p in parts]) for i in range(3)]
    facts = build_facts(*merged, settings=settings)
    own = {car: facts_of(facts, [car]).drop(["KNR"]) for car in (reworked, nothing)}
    assert own[reworked].num_rows > 0 and own[reworked].equals(own[nothing])
    table = build_features(*merged, settings=settings).set_index("KNR")
    features = list(feature_columns(settings))
    assert table.loc[reworked, features].equals(table.loc[nothing, features])


def test_a_car_still_on_the_line_uses_every_row_it_has(settings):
    """Without a road test, every row counts under the hall and section rules: its risk so far."""
    resultados, falhas, _ = tables(**REWORK)
    on_line = [(CAR, "R640", T(2024, 4, 1, 8)), (CAR, "M695", T(2024, 4, 1, 10))]
    status = pa.table({c: [row[i] for row in on_line] for i, c in enumerate(COLUMNS["status"])}, schema=schema("status"))
    row = build_features(resultados, falhas, status, settings=settings).iloc[0]
    assert row["road_test_at"] is pd.NaT or np.isnat(np.datetime64(row["road_test_at"]))
    assert (row["n_falhas_ZP7"], row["n_falhas_ZP6"], row["n_falhas_ZP5"], row["n_nok_id2"], row["n_nok_id1"]) == (
        1, 1, 2, 1, 2)


def test_a_model_learns_nothing_from_rework_rows_when_the_outcome_is_chance(memory_lake, settings, tmp_path):
    """Pure-chance labels, failing cars reworked after their road test (as in the plant): a model fed
    those rows would rank the failures almost perfectly; one fed what is known at the road test
    ranks them like chance."""
    demo = make_demo_upload(tmp_path / "demo", cars=1500, seed=7301, results_per_car=30, signal=0, layout="csv")
    ingest([str(demo.folder)], lake=memory_lake, settings=settings)
    table = current_features(memory_lake)
    split = time_split(labelled(table), eval_fraction=0.3)
    facts = current_facts(memory_lake)
    model = train(split.train, features=feature_columns(settings), family="hgb", seed=1, facts=facts)
    y = split.eval["label_rod"].to_numpy()
    assert y.sum() >= 20
    figures = compare(y, model.predict_proba(split.eval, facts), budgets=(0.1,), rounds=300, seed=1)["candidate"]
    low, high = figures["roc_auc"]["low"], figures["roc_auc"]["high"]
    assert low < 0.5 < high and figures["roc_auc"]["value"] < 0.62
