"""Nothing known only after the road test reaches a feature."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from kafer.features import build_features, feature_columns
from kafer.readers import COLUMNS, schema

T = dt.datetime
CAR = "2024-1510001"


def tables(extra_falhas=(), extra_results=(), extra_status=()):
    status = [(CAR, "R640", T(2024, 4, 1, 8)), (CAR, "M591", T(2024, 4, 1, 9)), (CAR, "M695", T(2024, 4, 1, 10)),
              (CAR, "G710", T(2024, 4, 1, 11)), *extra_status]
    falhas = [(CAR, "T-CROSS", "2R2R", "DHS", "E1", "U1", "ZP5", "RISCO", T(2024, 4, 1, 8, 30)), *extra_falhas]
    results = [(CAR, "012001", "1", "13", "", "", "", T(2024, 4, 1, 8, 5)), *extra_results]

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
