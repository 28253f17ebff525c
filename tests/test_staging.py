"""An upload is checked block by block and staged on local disk; it lands the very bytes that
reading each file whole into memory landed."""

from __future__ import annotations

import datetime as dt
import io
import os

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import kafer.readers as readers
import kafer.staging as staging_module
from conftest import lake_snapshot, write_csv
from kafer.catalog import current_features, raw_records
from kafer.demo import make_demo_upload
from kafer.errors import UploadError
from kafer.ingest import ingest, land, read_upload, receive
from kafer.lake import Lake
from kafer.sources import fetch_source
from kafer import people
from kafer.readers import KINDS, encoded_schema, read_export, scan_export, schema
from kafer.staging import Staging, sort_rows_file

T = dt.datetime
ORDER = [("KNR", "ascending"), ("DATA", "ascending")]


def whole(path, *, row_group_size: int = 256_000, key: bytes | None = None) -> tuple[readers.Export, bytes]:
    """A file read whole into memory and its rows as the raw zone kept them before staging:
    sorted at once, written in one call (with ``key``, people's ids pseudonymized with it)."""
    export = read_export(path.read_bytes(), path.name)
    rows = export.table.take(pc.sort_indices(export.table, sort_keys=ORDER))
    if key is not None:
        rows = people.pseudonymized(rows, export.kind, key)
    buf = io.BytesIO()
    pq.write_table(rows, buf, row_group_size=row_group_size, compression="zstd")
    return export, buf.getvalue()


@pytest.fixture
def demo(tmp_path):
    """Five files of three kinds: csv.gz, ;-separated cp1252 csv, multi-sheet workbooks."""
    return make_demo_upload(tmp_path / "demo", cars=200, seed=4, results_per_car=20, sheet_rows=700)


def test_a_multi_file_upload_lands_what_reading_each_file_whole_landed(lake, settings, demo):
    report = ingest([str(demo.folder)], lake=lake, settings=settings)
    records = {r["name"]: r for r in raw_records(lake)}
    assert len(records) == len(demo.files) == 5
    key = people.person_key(settings, lake)
    for path in demo.files:
        named = people.holds_people(records[path.name]["kind"])
        export, rows = whole(path, key=key if named else None)
        record = records[path.name]
        assert lake.read_bytes(record["keys"]["rows"]) == rows, path.name
        if named:  # falhas: their original bytes name inspectors, only the pseudonymized rows are kept
            assert record["keys"]["file"] is None and record["people"] == people.METHOD
        else:
            assert lake.read_bytes(record["keys"]["file"]) == path.read_bytes()
        expected = {"sha256": export.sha256, "name": export.name, "kind": export.kind, "format": export.format,
                    "size": export.size, "sheets": list(export.sheets), "rows": export.rows, "cars": export.cars,
                    "period": [export.period[0].isoformat(), export.period[1].isoformat()]}
        assert {k: record[k] for k in expected} == expected
        assert set(record) == set(expected) | {"landed_at", "keys"} | ({"people"} if named else set())
    assert report["manifest"]["cars"] == 200


@pytest.mark.parametrize("run_rows, row_group_size", [(1_000, 500), (100, 1_000), (10**9, 333), (2_000, 256_000)])
def test_sorting_in_runs_of_cars_writes_the_bytes_of_sorting_at_once(demo, tmp_path, run_rows, row_group_size):
    staging = Staging(str(tmp_path / "stage"))
    for path in demo.files:
        export, expected = whole(path, row_group_size=row_group_size)
        unsorted = staging.file("unsorted")
        pq.write_table(export.table, unsorted, row_group_size=300)  # blocks as they were read
        target = staging.file("sorted")
        sort_rows_file(unsorted, target, schema(export.kind), staging=staging, run_rows=run_rows,
                       row_group_size=row_group_size)
        assert open(target, "rb").read() == expected, (path.name, run_rows)
    assert len(os.listdir(staging.path)) == 2 * len(demo.files)  # the runs are removed once sorted


def test_a_file_is_handed_over_in_blocks_of_bounded_size(demo, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 50)
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 4096)
    for path in demo.files:
        blocks = []
        scanned = scan_export(path, path.name, write=blocks.append, restart=blocks.clear)
        export = read_export(path.read_bytes(), path.name)
        assert len(blocks) > 1 and sum(b.num_rows for b in blocks) == scanned.rows == export.rows
        limit = 50 if scanned.format == "xlsx" else 4096 // 40  # no csv line of the demo is shorter
        assert max(b.num_rows for b in blocks) <= limit, path.name
        assert all(b.schema == encoded_schema(export.kind) for b in blocks)  # text as indices into its values
        assert pa.concat_tables(blocks).cast(schema(export.kind)).equals(export.table)
        assert (scanned.kind, scanned.sheets, scanned.cars, scanned.period) == \
               (export.kind, export.sheets, export.cars, export.period)


def test_staging_takes_each_block_as_it_comes(demo, settings, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 50)
    written = []
    real = staging_module._Held.write
    monkeypatch.setattr(staging_module._Held, "write", lambda self, rows: written.append(rows.num_rows)
                        or real(self, rows))
    status = next(p for p in demo.files if p.name.startswith("STATUS"))
    received = read_upload([str(status)], settings=settings)
    assert len(written) == -(-received[0].export.rows // 50) and max(written) == 50


@pytest.mark.parametrize("sort_rows", [10**9, 1_000, 100])
def test_a_file_past_the_rows_held_spills_to_disk_and_lands_the_same_bytes(demo, tmp_path, monkeypatch, sort_rows):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 50)
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 4096)
    held = []
    real = staging_module._Held.write
    monkeypatch.setattr(staging_module._Held, "write", lambda self, rows: real(self, rows)
                        or held.append(sum(b.num_rows for b in self.blocks)))
    staging = Staging(str(tmp_path / "stage"))
    window = readers.plausible_dates()
    for path in demo.files:
        held.clear()
        staged = staging_module.stage_export(fetch_source(str(path), staging=staging.path), path.name,
                                             staging=staging, dates_within=window, sort_rows=sort_rows)
        assert open(staged.rows_path, "rb").read() == whole(path)[1], (path.name, sort_rows)
        assert max(held) <= sort_rows
        assert (max(held) == staged.rows) == (staged.rows <= sort_rows)  # held whole, or spilled once past
    assert len(os.listdir(staging.path)) == len(demo.files)  # only the sorted rows stay


def late(rows: int, last: list) -> list[list]:
    """Status rows whose last row, far past the first blocks, is ``last``."""
    return [[f"2023-20{i % 90:05d}", "R650", T(2024, 5, 1, 8, i % 60)] for i in range(rows)] + [last]


@pytest.mark.parametrize("sort_rows", [10**9, 1_000])
@pytest.mark.parametrize("case", ["serial date", "cp1252"])
def test_a_csv_read_again_from_its_start_stages_its_rows_once(lake, settings, tmp_path, monkeypatch, case, sort_rows):
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(staging_module, "SORT_ROWS", sort_rows)  # held in memory, or spilled before the restart
    folder = tmp_path / "up"
    folder.mkdir()
    if case == "serial date":  # Arrow reads the dates as dates until this one: read again as text
        path = write_csv(folder / "s.csv", list(KINDS["status"]), late(3_000, ["2023-2099999", "G710", "45432.5"]))
    else:  # ASCII for more than 64 KiB, then one cp1252 byte: read again as cp1252
        path = write_csv(folder / "s.csv", list(KINDS["status"]), late(3_000, ["2023-2099999", "GÍ10", T(2024, 5, 2)]),
                         encoding="cp1252")
    restarts = []
    real = staging_module._Held.restart
    monkeypatch.setattr(staging_module._Held, "restart", lambda self: restarts.append(1) or real(self))
    ingest([str(folder)], lake=lake, settings=settings.replace(staging_dir=str(tmp_path / "stage")))
    assert restarts == [1]
    record = raw_records(lake)[0]
    assert record["rows"] == 3_001
    assert lake.read_bytes(record["keys"]["rows"]) == whole(path)[1]
    assert os.listdir(tmp_path / "stage") == []


def test_staged_files_are_removed_after_landing_or_refusal(lake, settings, tmp_path, demo):
    folder = tmp_path / "stage"
    settings = settings.replace(staging_dir=str(folder))
    received = receive([str(demo.folder)], lake=lake, settings=settings)
    staged = [r.export.rows_path for r in received]
    assert all(os.path.isfile(p) and p.startswith(str(folder)) for p in staged)
    land(received, lake=lake, settings=settings)
    del received
    assert os.listdir(folder) == []
    ingest([str(demo.folder)], lake=lake, settings=settings)
    assert os.listdir(folder) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    write_csv(bad / "a.csv", list(KINDS["status"]), [["2023-2016173", "G710", T(2024, 5, 1)]])
    write_csv(bad / "z.csv", list(KINDS["status"]), [["2023-20161", "G620", T(2024, 1, 1)]])
    with pytest.raises(UploadError, match=r"z\.csv.*malformed KNR"):
        ingest([str(bad)], lake=lake, settings=settings)
    assert os.listdir(folder) == []


def test_a_file_changed_after_its_check_is_not_landed(lake, settings, tmp_path):
    folder = tmp_path / "up"
    folder.mkdir()
    path = write_csv(folder / "s.csv", list(KINDS["status"]), late(10, ["2023-2099999", "G710", T(2024, 5, 2)]))
    received = receive([str(folder)], lake=lake, settings=settings)
    path.write_bytes(path.read_bytes().replace(b"G710", b"G720"))
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000_000))
    with pytest.raises(UploadError, match=r"s\.csv: changed on disk since it was checked: upload it again"):
        land(received, lake=lake, settings=settings)
    assert lake_snapshot(lake) == {}


def test_an_upload_on_another_filesystem_is_staged_and_lands_alike(settings, tmp_path, demo):
    fs = fsspec.filesystem("memory")
    try:
        for path in demo.files:
            fs.pipe_file(f"/upload-staging-test/{path.name}", path.read_bytes())
        fs.pipe_file(f"/upload-staging-test/again-{demo.files[0].name}", demo.files[0].read_bytes())
        remote, local = Lake(str(tmp_path / "remote")), Lake(str(tmp_path / "local"))
        ingest(["memory://upload-staging-test"], lake=remote, settings=settings)
        ingest([str(demo.folder)], lake=local, settings=settings)
        assert {k: v for k, v in lake_snapshot(remote).items() if k.startswith("raw/") and "index" not in k} == \
               {k: v for k, v in lake_snapshot(local).items() if k.startswith("raw/") and "index" not in k}
        assert current_features(remote).equals(current_features(local))
    finally:
        fs.rm("/upload-staging-test", recursive=True)


def test_a_prediction_upload_reads_its_staged_rows(settings, demo):
    from kafer.features import build_features
    from kafer.predict import upload_cars

    tables = {}
    for path in demo.files:
        export = read_export(path.read_bytes(), path.name)
        tables.setdefault(export.kind, []).append(export.table)
    expected = build_features(*(pa.concat_tables(tables[k]) for k in ("resultados", "falhas", "status")),
                              settings=settings)
    assert upload_cars([str(demo.folder)], settings=settings).table.equals(expected)
