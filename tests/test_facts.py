"""Facts beyond the contract, computed exactly on a hand-made upload, and the columns a model makes of them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kafer.errors import ModelError
from kafer.facts import FACT_SCHEMA, FactColumns, build_facts, family_of_test, normalized_text
from kafer.features import build_features, route_columns
from kafer.readers import COLUMNS, schema

T = dt.datetime
A, B, C = "2024-1410001", "2024-1410002", "2024-1410003"


def table(kind: str, rows: list[tuple]) -> pa.Table:
    cols = COLUMNS[kind]
    return pa.table({c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(cols)}, schema=schema(kind))


def upload():
    """Three cars, rows as the readers give them (text stripped, HALLE upper-cased)."""
    resultados = table("resultados", [
        (A, "131200", "2", "13", "Nm", "1", "12.5", T(2024, 4, 1, 8, 10)),
        (A, "131200", "2", "13", "Nm", "1", "12.5", T(2024, 4, 1, 8, 10)),   # the same row again: once
        (A, "131200", "2", "13", "Grad", "1", "40", T(2024, 4, 1, 8, 10)),
        (A, "131200", "2", "10", "Nm", "1", "12.6", T(2024, 4, 1, 8, 20)),   # OK: no fact
        (A, "SECTION_ROL_00000003", "718", "13", "km/h", "2", "50", T(2024, 4, 1, 9, 0)),
        (A, "SECTION_ZP8_00000001", "718", "13", "V", "80", "12.1", T(2024, 4, 1, 12, 0)),  # after the road test
        (B, "CRIPPLE_0015_0000001", "718", "13", "", "", "", T(2024, 4, 1, 15, 0)),
        (B, "UPSECOS_ALS_00000025", "718", "13", "Grad", "1", "0.1", T(2024, 4, 1, 15, 5)),
    ])
    falhas = table("falhas", [
        (A, "T-CROSS", "2R2R", "CWL", "HCEQS504", "u1", "ZP7", "Painel lateral ¨ 01.  Amassado", T(2024, 4, 1, 10, 0)),
        (A, "T-CROSS", "2R2R", "CWL", "HCEQS504", "u1", "ZP7", "PAINEL LATERAL ¨ 01.  AMASSADO", T(2024, 4, 1, 10, 0)),
        (A, "T-CROSS", "2R2R", "CWL", "PCEQS601", "u2", "ZP61", "Farol (09) Chicote", T(2024, 4, 1, 9, 40)),
        (A, "T-CROSS", "2R2R", "CWL", "PCEQS709", "u3", "ROD", "Porta-luvas Ruído (-)", T(2024, 4, 1, 11, 30)),
        (A, "T-CROSS", "2R2R", "CWL", "PCEQS713", "u4", "AGUA", "Teto solar Infiltração", T(2024, 4, 1, 13, 0)),
        (B, "AUDI Q3", "K2K2", "", "PCEQS100", "u5", "ZP5", "Longarina Solda - Falta", T(2024, 4, 1, 14, 0)),
        (C, "T-CROSS", "0Q0Q", "DHS", "PCEQS709", "u3", "ROD", "Console central Ruído (-)", T(2024, 4, 2, 11, 0)),
    ])
    status = table("status", [
        (A, "R640", T(2024, 4, 1, 8, 0)), (A, "M594", T(2024, 4, 1, 9, 0)), (A, "M600", T(2024, 4, 1, 9, 30)),
        (A, "M594", T(2024, 4, 1, 10, 0)), (A, "M594", T(2024, 4, 1, 10, 0)),  # listed twice: one event
        (A, "G710", T(2024, 4, 1, 11, 0)), (A, "M594", T(2024, 4, 1, 12, 0)),  # after the road test
        (B, "R640", T(2024, 4, 1, 23, 0)), (B, "M594", T(2024, 4, 2, 15, 0)), (B, "G710", T(2024, 4, 2, 16, 0)),
        (C, "M594", T(2024, 4, 2, 5, 59)), (C, "G710", T(2024, 4, 2, 10, 0)),
    ])
    return resultados, falhas, status


def test_every_kind_of_fact_exactly(settings):
    facts = build_facts(*upload(), settings=settings).to_pandas()
    got = {(r.KNR, r.kind, r.key): r.value for r in facts.itertuples()}
    assert got == {
        (A, "nok_test", "131200"): 2, (A, "nok_test", "SECTION_ROL_00000003"): 1,
        (A, "nok_test_family", "13xxxx"): 2, (A, "nok_test_family", "SECTION_ROL"): 1,
        (B, "nok_test", "CRIPPLE_0015_0000001"): 1, (B, "nok_test", "UPSECOS_ALS_00000025"): 1,
        (B, "nok_test_family", "CRIPPLE"): 1, (B, "nok_test_family", "UPSECOS_ALS"): 1,
        (A, "defect", "ZP7|PAINEL LATERAL 01. AMASSADO"): 1, (A, "defect", "ZP6|FAROL (09) CHICOTE"): 1,
        (B, "defect", "ZP5|LONGARINA SOLDA - FALTA"): 1,
        (A, "station", "HCEQS504"): 1, (A, "station", "PCEQS601"): 1, (B, "station", "PCEQS100"): 1,
        (A, "config", "MODELO=T-CROSS"): 1, (A, "config", "COR=2R2R"): 1, (A, "config", "MOTOR=CWL"): 1,
        (B, "config", "MODELO=AUDI Q3"): 1, (B, "config", "COR=K2K2"): 1, (B, "config", "MOTOR="): 1,
        (A, "repeated_checkpoint", "M594"): 2,
    }
    assert list(facts.columns) == ["KNR", "kind", "key", "value"]
    assert facts[["KNR", "kind", "key"]].equals(facts[["KNR", "kind", "key"]].sort_values(["KNR", "kind", "key"]))


def test_route_columns_exactly(settings):
    table_ = build_features(*upload(), settings=settings).set_index("KNR")
    assert set(route_columns(settings)) <= set(table_.columns)
    expected = {
        A: {"n_checkpoints_repeated_pre_road": 1, "n_repeat_passages_pre_road": 1, "shift_at_ZP5": 1,
            "weekday_at_ZP5": 0, "shift_at_ZP6": 1, "weekday_at_ZP6": 0},
        B: {"n_checkpoints_repeated_pre_road": 0, "n_repeat_passages_pre_road": 0, "shift_at_ZP5": 3,
            "weekday_at_ZP5": 0, "shift_at_ZP6": 2, "weekday_at_ZP6": 1},
        C: {"n_checkpoints_repeated_pre_road": 0, "n_repeat_passages_pre_road": 0, "shift_at_ZP6": 3,
            "weekday_at_ZP6": 1},
    }
    for car, values in expected.items():
        for column, value in values.items():
            assert table_.loc[car, column] == value, (car, column)
    assert np.isnan(table_.loc[C, "shift_at_ZP5"]) and np.isnan(table_.loc[A, "weekday_at_CAB"])


def test_test_families_and_texts():
    assert [family_of_test(n) for n in ("131200", "012001", "SECTION_ROL_00000003", "UPSECOS_ALS_00000025",
                                        "CRIPPLE_0015_0000001", "SECTION_ZP8_00000001")] == [
        "13xxxx", "01xxxx", "SECTION_ROL", "UPSECOS_ALS", "CRIPPLE", "SECTION_ZP8"]
    assert normalized_text(pa.array(["Rev. porta  Solto(a) ¨", None])).to_pylist() == ["REV. PORTA SOLTO(A)", ""]


def facts_of(rows: list[tuple]) -> pa.Table:
    return pa.table({"KNR": [r[0] for r in rows], "kind": [r[1] for r in rows], "key": [r[2] for r in rows],
                     "value": [float(r[3]) for r in rows]}, schema=FACT_SCHEMA)


def test_columns_are_chosen_on_training_cars_only_and_rebuilt_for_any_car():
    train = [f"2024-14100{i:02d}" for i in range(10)]
    rows = [(k, "nok_test", "131200", 1) for k in train[:3]]            # 3 training cars: kept (min 3)
    rows += [(k, "nok_test", "272500", 1) for k in train[:2]]           # 2 training cars: not kept
    rows += [(k, "nok_test", "999999", 1) for k in ("2024-9999991", "2024-9999992", "2024-9999993")]  # not training
    rows += [(k, "config", "MOTOR=CWL", 1) for k in train[:4]] + [(k, "config", "MOTOR=DHS", 1) for k in train[4:7]]
    rows += [(train[7], "config", "MOTOR=DRP", 1)]
    columns = FactColumns.fit(facts_of(rows), train, min_cars=3, max_columns=10)
    assert columns.columns == ("nok_test:131200", "config:MOTOR")
    assert columns.levels("config:MOTOR") == ("CWL", "DHS", "other")

    scored = ["2024-5000001", train[0], "2024-5000002", "2024-5000003"]
    later = facts_of([(train[0], "nok_test", "131200", 2), (train[0], "config", "MOTOR=DHS", 1),
                      ("2024-5000002", "config", "MOTOR=XYZ", 1), ("2024-5000003", "nok_test", "777777", 4)])
    frame = columns.frame(scored, later)
    assert list(frame.columns) == ["nok_test:131200", "config:MOTOR"]
    assert frame["nok_test:131200"].tolist() == [0.0, 2.0, 0.0, 0.0]
    assert frame["config:MOTOR"].tolist()[1:3] == [1.0, 2.0]        # DHS, and an unseen engine is "other"
    assert np.isnan(frame["config:MOTOR"].iloc[0]) and np.isnan(frame["config:MOTOR"].iloc[3])
    assert columns.frame(scored, facts_of([])).shape == (4, 2)
    assert FactColumns.from_dict(columns.to_dict()) == columns


def test_max_columns_keeps_the_most_common():
    train = [f"2024-14100{i:02d}" for i in range(10)]
    rows = [(k, "defect", "ZP7|A", 1) for k in train[:9]] + [(k, "defect", "ZP7|B", 1) for k in train[:5]]
    rows += [(k, "defect", "ZP7|C", 1) for k in train[:7]]
    assert FactColumns.fit(facts_of(rows), train, min_cars=1, max_columns=2).counts == (("defect", "ZP7|A"),
                                                                                      ("defect", "ZP7|C"))


def test_a_table_that_is_not_facts_is_refused():
    with pytest.raises(ModelError, match="KNR, kind, key, value"):
        FactColumns(counts=(("nok_test", "1"),)).frame(["2024-1410001"], pd.DataFrame({"KNR": []}))
