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
