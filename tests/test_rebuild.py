"""Feature definitions are versioned: a change rebuilds every car from the raw zone, never a mix."""

from __future__ import annotations

import pandas as pd
import pytest

from kafer import catalog
from kafer.cli import main
from kafer.demo import make_demo_upload
from kafer.errors import LakeError
from kafer.features import feature_definitions
from kafer.ingest import ingest, rebuild
from kafer.lake import Lake


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_upload(tmp_path_factory.mktemp("rebuild"), cars=200, seed=12, results_per_car=30, layout="csv")


def current(lake: Lake) -> tuple[pd.DataFrame, pd.DataFrame]:
    facts = catalog.current_facts(lake).to_pandas()
    return catalog.current_features(lake), facts


def test_changed_definitions_rebuild_exactly_what_a_fresh_ingest_gives(demo, settings, tmp_path, monkeypatch):
    files = sorted(str(p) for p in demo.files)
    lake = Lake(str(tmp_path / "old"))
    for part in (files[:2], files[2:]):  # two uploads, two incremental merges
        ingest(part, lake=lake, settings=settings)
    before = catalog.current_manifest(lake)
    assert before["feature_definitions"] == feature_definitions(settings)

    monkeypatch.setattr("kafer.features.FEATURE_DEFINITIONS", "a later definition")
    changed = settings.replace(shift_start_hours=(5, 13, 21))
    report = ingest(files[:1], lake=lake, settings=changed)  # nothing new, but the definitions changed
    manifest = report["manifest"]
    assert manifest["rebuilt"] and manifest["rebuilt_from_raw"] and manifest["version"] != before["version"]
    assert manifest["feature_definitions"] == feature_definitions(changed) != before["feature_definitions"]
    assert catalog.has_features(lake, before["version"]), "the old version is kept as it was"

    fresh = Lake(str(tmp_path / "fresh"))
    ingest(files, lake=fresh, settings=changed)
    rebuilt_table, rebuilt_facts = current(lake)
    fresh_table, fresh_facts = current(fresh)
    pd.testing.assert_frame_equal(rebuilt_table, fresh_table)
    pd.testing.assert_frame_equal(rebuilt_facts, fresh_facts)
    assert not rebuilt_table.equals(catalog.features(lake, before["version"])), "the shifts moved"

    again = ingest(files[:1], lake=lake, settings=changed)["manifest"]
    assert again["version"] == manifest["version"] and not again.get("rebuilt")


def test_kafer_rebuild_makes_a_new_version_from_the_raw_zone(demo, settings, tmp_path, capsys):
    lake = Lake(str(tmp_path / "lake"))
    ingest([str(demo.folder)], lake=lake, settings=settings)
    before, facts_before = current(lake)
    version = catalog.current_version(lake)
    assert main(["rebuild", "--lake", lake.url]) == 0
    assert "rebuilt from the raw zone" in capsys.readouterr().out
    assert catalog.current_version(lake) != version
    after, facts_after = current(lake)
    pd.testing.assert_frame_equal(before, after)
    pd.testing.assert_frame_equal(facts_before, facts_after)


def test_rebuild_needs_landed_files_and_old_versions_say_to_rebuild(memory_lake, settings):
    with pytest.raises(LakeError, match="no landed file"):
        rebuild(lake=memory_lake, settings=settings)
    with pytest.raises(LakeError, match="kafer rebuild"):
        catalog.facts(memory_lake, "v20240101T000000Z")


def test_building_in_small_batches_gives_exactly_the_table_of_one_batch(demo, settings, tmp_path):
    whole, batched = Lake(str(tmp_path / "whole")), Lake(str(tmp_path / "batched"))
    ingest([str(demo.folder)], lake=whole, settings=settings)
    ingest([str(demo.folder)], lake=batched, settings=settings.replace(merge_batch_cars=7))
    for one, many in zip(current(whole), current(batched)):
        pd.testing.assert_frame_equal(one, many)
    rebuild(lake=batched, settings=settings.replace(merge_batch_cars=13))
    for one, many in zip(current(whole), current(batched)):
        pd.testing.assert_frame_equal(one, many)


#: Settings that change no feature and no label (where things live, how fast, what a model or a
#: comparison does with the table, what an upload may hold): every other one is a table setting.
NOT_TABLE = {"lake", "runs", "merge_batch_cars", "eval_fraction", "min_compare_cars", "min_compare_failures",
             "budgets", "operating_budget", "bootstrap_rounds", "family", "fact_min_cars", "fact_max_columns",
             "seed", "lock_timeout", "lock_stale_after", "single_machine", "sheet_rows", "dates_from",
             "dates_ahead_days", "staging_dir", "monitor_alpha", "threshold_tolerance",
             "language", "upload_dir", "upload_max_file_mb", "upload_max_mb", "upload_max_unpacked_mb",
             "upload_expire_hours",
             "audit_share", "shadow", "shadow_from", "shadow_weeks", "shadow_bar", "shadow_min_failures",
             "person_key_file"}
#: The desk's block (who signs in, how it is served) shapes no table either.
NOT_TABLE |= {"desk_state_dir", "desk_proxy_addresses", "desk_user_header", "desk_groups_header", "desk_group_roles",
              "desk_user_roles", "desk_default_role", "desk_kernels_per_person", "desk_idle_minutes",
              "desk_session_hours", "desk_signin_wait", "desk_signin_wait_max"}
#: Nor does the desk's loop (the pieces its pages send an upload in).
NOT_TABLE |= {"desk_piece_mb"}
CHANGED = {"zones": {"ZP5": ("R640",)}, "hall_groups": {"ZP5": ("ZP5", "ZP5A")}, "road_test_code": "G720",
           "label_hall": "AGUA", "post_road_sections": ("SECTION_ZP8_", "SECTION_ROL_"), "falhas_gap_hours": 48.0,
           "shift_start_hours": (5, 13, 21), "label_maturity_hours": 240.0, "filtered_falhas_chance": 0.01,
           "filtered_falhas_rate_share": 0.25, "expected_failure_rate": 0.08, "expected_failure_rate_road_tests": 10,
           "falhas_complete": ("FALHAS_06_2024.csv",), "falhas_filtered": ("FALHAS_07_2024.csv",)}


def test_every_setting_that_shapes_a_label_or_a_feature_versions_the_table(settings):
    from dataclasses import fields

    from kafer.features import TABLE_SETTINGS

    assert {f.name for f in fields(settings)} == NOT_TABLE | set(TABLE_SETTINGS), "classify every new setting"
    assert set(CHANGED) == set(TABLE_SETTINGS)
    digests = {name: feature_definitions(settings.replace(**{name: value})) for name, value in CHANGED.items()}
    assert len(set(digests.values()) | {feature_definitions(settings)}) == len(CHANGED) + 1
    assert all(feature_definitions(settings.replace(**{name: getattr(settings, name)})) == feature_definitions(settings)
               for name in NOT_TABLE)


def test_a_run_with_another_label_maturity_pins_a_table_labelled_with_it(demo, settings, tmp_path):
    """Nothing new to merge, but 240 h instead of 24 h: the merge relabels into a new version."""
    from kafer.runrecord import start_run
    from kafer.steps import merge_run

    lake = Lake(str(tmp_path / "lake"))
    ingest([str(demo.folder)], lake=lake, settings=settings)
    before, version = catalog.current_features(lake), catalog.current_version(lake)
    patient = settings.replace(lake=lake.url, runs=str(tmp_path / "runs"), label_maturity_hours=240.0)
    run = start_run(patient.runs, "r1", patient)
    manifest = merge_run(run)
    assert manifest["rebuilt"] and run.data_version == manifest["version"] != version
    pinned = catalog.features(lake, run.data_version)
    end = max(pd.Timestamp(p[1]) for p in manifest["falhas_coverage"])
    expected = pd.to_datetime(before["road_test_at"]) <= end - pd.Timedelta(hours=240)
    assert pinned["label_known"].sum() < before["label_known"].sum()
    assert (pinned["label_known"].to_numpy() == (expected & before["label_known"]).to_numpy()).all()
