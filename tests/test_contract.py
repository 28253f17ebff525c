"""The curated table gives exactly the contract values the generator's truth file holds, in every layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import lake_snapshot
from kafer.demo import make_demo_upload
from kafer.features import feature_columns
from kafer.catalog import current_features, current_manifest
from kafer.ingest import ingest

CONTRACT = ["label_rod", "label_known", "n_results_id1", "n_results_id2", "n_results_id718", "n_nok_id1",
            "n_nok_id2", "n_nok_id718", "n_falhas_ZP5", "n_falhas_ZP5A", "n_falhas_ZP6", "n_falhas_ZP7",
            "dwell_min_ZP5", "dwell_min_ZP5A", "dwell_min_ZP6", "dwell_min_CAB", "dwell_min_ZP7"]


def assert_contract(table: pd.DataFrame, truth_path) -> None:
    truth = pd.read_csv(truth_path, dtype={"KNR": str}).set_index("KNR")
    table = table.set_index("KNR")
    assert sorted(table.index) == sorted(truth.index)
    for col in CONTRACT:
        ours, theirs = table.loc[truth.index, col].to_numpy(), truth[col].to_numpy()
        if col.startswith("dwell_"):
            np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=col)
        else:
            assert (ours.astype(int) == theirs.astype(int)).all(), col


@pytest.mark.parametrize("layout", ["plant", "csv", "xlsx"])
def test_every_layout_gives_the_contract(lake, settings, tmp_path, layout):
    demo = make_demo_upload(tmp_path / "demo", cars=120, seed=7, layout=layout, results_per_car=30, sheet_rows=400)
    ingest([str(demo.folder)], lake=lake, settings=settings)
    assert_contract(current_features(lake), demo.truth)
    before = lake_snapshot(lake)
    report = ingest([str(p) for p in demo.files], lake=lake, settings=settings)
    assert report["manifest"]["new_sources"] == [] and lake_snapshot(lake) == before


def test_label_unknown_after_the_falhas_period(lake, settings, tmp_path):
    demo = make_demo_upload(tmp_path / "demo", cars=200, seed=3, results_per_car=20, falhas_until="2024-04-03")
    ingest([str(demo.folder)], lake=lake, settings=settings)
    table = current_features(lake)
    assert_contract(table, demo.truth)
    last = current_manifest(lake)["periods"]["falhas"][1]
    expected = pd.to_datetime(table["road_test_at"]) <= pd.Timestamp(last) - pd.Timedelta(hours=24)
    assert (table["label_known"] == expected).all(), "known exactly when road-tested a day before the falhas end"
    assert last < "2024-04-04" and 0 < expected.sum() < expected.notna().sum()


def test_features_never_hold_the_label(settings):
    assert not {"label_rod", "label_known", "KNR", "road_test_at", "produced_at"} & set(feature_columns(settings))


def test_the_contract_holds_wherever_the_risk_hides(lake, settings, tmp_path):
    demo = make_demo_upload(tmp_path / "demo", cars=150, seed=9, results_per_car=40, layout="csv",
                            signal_in=("configuration", "tests", "route", "defects"))
    ingest([str(demo.folder)], lake=lake, settings=settings)
    assert_contract(current_features(lake), demo.truth)
