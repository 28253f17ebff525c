"""Nothing known only after the road test reaches a feature."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from kafer.facts import FactColumns, build_facts
from kafer.features import build_features, feature_columns
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
