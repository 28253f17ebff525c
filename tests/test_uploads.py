"""A month's exports arriving in pieces: a real generator month received and checked, and every refusal
(piece order, sizes, unpacked size, layout, owner, expiry), each before anything is read or kept."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from kafer import uploads
from kafer.config import load_settings
from kafer.errors import ConfigError, OwnerError, SessionError, UploadError
from kafer.ingest import list_upload, read_upload
from kafer.uploads import (check_upload, expire_uploads, list_uploads, open_upload, ready_upload, receive_piece,
                           safe_name, unpacked_size, upload_state)

PIECE = 64 << 10


@pytest.fixture
def settings(tmp_path):
    return load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))


def send(upload_id: str, path: Path, *, by: str, settings, name: str | None = None, piece: int = PIECE):
    """Send a file in pieces, in order; the upload after the last."""
    data = path.read_bytes()
    for offset in range(0, len(data), piece):
        state = receive_piece(upload_id, name or path.name, offset, data[offset:offset + piece], by=by,
                              settings=settings)
    return state


def announce(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def test_a_month_arrives_in_pieces_while_others_watch_and_is_checked_with_ingest_s_reader(months, settings):
    month = months[0]
    upload = open_upload(announce(month), by="Ana Souza", settings=settings)
    assert upload.state == "receiving" and upload.received == 0 and upload.owner == "Ana Souza"
    assert uploads.uploads_folder(settings) == Path(settings.runs).resolve() / "uploads"
    files = sorted(month.iterdir())
    first = files[0].read_bytes()
    state = receive_piece(upload.upload_id, files[0].name, 0, first[:PIECE], by="Ana Souza", settings=settings)
    again = receive_piece(upload.upload_id, files[0].name, 0, first[:PIECE], by="Ana Souza", settings=settings)
    assert state.received == again.received == min(PIECE, len(first))  # a piece sent again changes nothing
    watched = upload_state(upload.upload_id, settings=settings)  # anyone may watch
    assert watched.received == state.received and 0 < watched.share < 1
    assert watched.progress().endswith(f"received ({watched.share:.1%})")
    for path in files:
        state = send(upload.upload_id, path, by="Ana Souza", settings=settings)
    assert state.state == "received" and state.share == 1 and all(f.whole for f in state.files)
    workbooks = [f for f in state.files if f.name.endswith((".xlsx", ".gz"))]
    assert workbooks and all(f.unpacked > f.size for f in workbooks)
    last = files[-1].read_bytes()
    resent = receive_piece(upload.upload_id, files[-1].name, len(last) - 10, last[-10:], by="Ana Souza",
                           settings=settings)  # the last answer was lost: sent again once whole
    assert resent.state == "received"

    heard = []
    ready = check_upload(upload.upload_id, by="Ana Souza", settings=settings, progress=heard.append)
    assert ready.state == "ready" and heard
    assert {row["kind"] for row in ready.summary} == {"resultados", "falhas", "status"}
    assert sum(row["cars"] for row in ready.summary if row["kind"] == "status") == 400
    assert ready_upload(upload.upload_id, settings=settings).paths == ready.paths
    assert [Path(p).name for p in list_upload(ready.paths).files] == [p.name for p in files]
    staged = read_upload(ready.paths, settings=settings)  # what the retrain will read: the same bytes
    assert [r.sha256 for r in staged] == [r.sha256 for r in read_upload([str(month)], settings=settings)]
    assert [u.upload_id for u in list_uploads(settings)] == [upload.upload_id]


def test_a_piece_out_of_order_past_the_end_or_changed_is_refused_in_words(tmp_path, settings):
    data = b"KNR,STATUS,DATA\n" + b"2024-0100001,A600,2024-04-02 10:00:00\n" * 100
    upload = open_upload({"STATUS.csv": len(data)}, by="ana", settings=settings)
    receive_piece(upload.upload_id, "STATUS.csv", 0, data[:100], by="ana", settings=settings)
    with pytest.raises(UploadError, match="STATUS.csv: the piece at byte 200 came before the bytes from 100: send "
                                          "the piece at byte 100"):
        receive_piece(upload.upload_id, "STATUS.csv", 200, data[200:300], by="ana", settings=settings)
    with pytest.raises(UploadError, match=f"ends at byte {len(data) + 1}, past the {len(data)} bytes announced"):
        receive_piece(upload.upload_id, "STATUS.csv", 100, data[100:] + b"x", by="ana", settings=settings)
    with pytest.raises(UploadError, match="differs from the bytes received there already"):
        receive_piece(upload.upload_id, "STATUS.csv", 50, b"X" * 100, by="ana", settings=settings)
    with pytest.raises(UploadError, match="was not announced"):
        receive_piece(upload.upload_id, "OTHER.csv", 0, b"x", by="ana", settings=settings)
    with pytest.raises(UploadError, match="an empty piece"):
        receive_piece(upload.upload_id, "STATUS.csv", 100, b"", by="ana", settings=settings)
    assert upload_state(upload.upload_id, settings=settings).received == 100  # nothing of those was written
    state = receive_piece(upload.upload_id, "STATUS.csv", 50, data[50:], by="ana", settings=settings)  # overlaps
    assert state.state == "received" and (state.folder / "files" / "STATUS.csv").read_bytes() == data


def test_files_and_uploads_too_big_are_refused_before_anything_is_written(settings):
    small = settings.replace(upload_max_file_mb=1.0, upload_max_mb=1.5)
    with pytest.raises(UploadError, match=r"RESULTADOS.csv.gz: is 1.2 MB, more than the 1.0 MB one file may be "
                                          r"\(setting upload_max_file_mb\)"):
        open_upload({"RESULTADOS.csv.gz": 1_200_000}, by="ana", settings=small)
    with pytest.raises(UploadError, match=r"the upload is 1.8 MB, more than the 1.5 MB one upload may be"):
        open_upload({"A.xlsx": 900_000, "B.xlsx": 900_000}, by="ana", settings=small)
    with pytest.raises(UploadError, match="notes.txt: not an export \\(.txt\\): an upload holds exports only"):
        open_upload({"A.xlsx": 10, "notes.txt": 10}, by="ana", settings=small)
    with pytest.raises(UploadError, match="a.XLSX: is announced twice in the upload"):
        open_upload({"A.xlsx": 10, "dir/a.XLSX": 10}, by="ana", settings=small)
    with pytest.raises(UploadError, match="A.xlsx: the file is empty"):
        open_upload({"A.xlsx": 0}, by="ana", settings=small)
    with pytest.raises(UploadError, match="the upload holds no file"):
        open_upload({}, by="ana", settings=small)
    assert not uploads.uploads_folder(settings).exists()  # not a folder made for any of them
    with pytest.raises(UploadError, match="a piece of 16.8 MB was sent; a piece may be at most 16.8 MB"):
        receive_piece("u20260101T000000Z-00000000", "A.xlsx", 0, b"x" * (uploads.MAX_PIECE_BYTES + 1), by="ana",
                      settings=settings)


def test_names_keep_no_folder_and_no_hidden_or_reserved_character():
    assert safe_name("../../etc/RESULTADOS.csv.gz") == "RESULTADOS.csv.gz"
    assert safe_name("C:\\exports\\maio\\FALHAS maio.xlsx") == "FALHAS maio.xlsx"
    assert safe_name(".STATUS.xlsx") == "STATUS.xlsx"
    assert safe_name("Relato\u0301rio?.csv") == "Relatório_.csv"  # composed, whatever the browser sent
    long = safe_name("R" * 300 + ".csv.gz")
    assert long.endswith(".csv.gz") and len(long.encode()) <= 200
    with pytest.raises(UploadError, match="has no usable file name"):
        safe_name("dir/..")


def bomb_gzip(size: int) -> bytes:
    return gzip.compress(b"KNR,STATUS,DATA\n" + b"0" * size, mtime=0)


def bomb_zip(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", b"<c/>" * (size // 4))
    return out.getvalue()


@pytest.mark.parametrize("name, data", [("STATUS.csv.gz", bomb_gzip(20_000_000)),
                                        ("STATUS.xlsx", bomb_zip(20_000_000)),
                                        ("STATUS.csv", bomb_gzip(20_000_000))])  # its bytes say gzip, not its name
def test_a_file_that_unpacks_past_the_cap_is_refused_before_it_is_read(tmp_path, settings, name, data):
    capped = settings.replace(upload_max_unpacked_mb=5.0)
    assert len(data) < 100_000  # some 20 MB packed into a few kB
    upload = open_upload({name: len(data)}, by="ana", settings=capped)
    with pytest.raises(UploadError, match=f"{name}: unpacks to more than 5.0 MB \\(setting upload_max_unpacked_mb\\): "
                                          "refused before it is read"):
        send(upload.upload_id, _written(tmp_path, name, data), by="ana", settings=capped)
    refused = upload_state(upload.upload_id, settings=capped)
    assert refused.state == "refused" and "unpacks to more than" in refused.error
    assert not (refused.folder / "files").exists()  # its bytes are gone from the disk
    with pytest.raises(SessionError, match="was refused: .*unpacks to more than"):
        receive_piece(upload.upload_id, name, 0, data[:10], by="ana", settings=capped)


def test_unpacked_sizes_are_counted_not_declared_and_broken_archives_refused(tmp_path):
    assert unpacked_size(_written(tmp_path, "a.csv.gz", bomb_gzip(3_000_000)), name="a.csv.gz",
                         limit=10_000_000) == 3_000_016
    two_members = gzip.compress(b"a" * 10, mtime=0) + gzip.compress(b"b" * 20, mtime=0)
    assert unpacked_size(_written(tmp_path, "b.csv.gz", two_members), name="b.csv.gz", limit=100) == 30
    assert unpacked_size(_written(tmp_path, "c.csv", b"KNR\n"), name="c.csv", limit=1) is None
    with pytest.raises(UploadError, match="d.xlsx: not a readable xlsx workbook, truncated or damaged"):
        unpacked_size(_written(tmp_path, "d.xlsx", b"PK\x03\x04" + b"\x00" * 100), name="d.xlsx", limit=100)
    with pytest.raises(UploadError, match="e.csv.gz: gzip data is corrupt"):
        unpacked_size(_written(tmp_path, "e.csv.gz", bomb_gzip(1000)[:30]), name="e.csv.gz", limit=10_000)


def _written(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "sent" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_bad_layout_refuses_the_upload_whole_in_ingest_s_own_words(tmp_path, months, settings):
    month = months[1]
    bad = _written(tmp_path, "FALHAS_extra.csv", b"KNR,MODELO,COR,MOTOR,ESTACAO,USUARIO,HALLE,DATA\n"
                                                 b"2024-0100001,T,Azul,1.0,S,u,ZP7,2024-05-07 10:00:00\n")
    with pytest.raises(UploadError) as by_ingest:
        read_upload([str(bad)], settings=settings)
    files = {**announce(month), bad.name: bad.stat().st_size}
    upload = open_upload(files, by="ana", settings=settings)
    for path in [*sorted(month.iterdir()), bad]:
        send(upload.upload_id, path, by="ana", settings=settings)
    with pytest.raises(UploadError) as by_check:
        check_upload(upload.upload_id, by="ana", settings=settings)
    assert str(by_check.value) == str(by_ingest.value) and "missing column(s) FALHA" in str(by_check.value)
    refused = upload_state(upload.upload_id, settings=settings)
    assert refused.state == "refused" and refused.error == str(by_ingest.value)
    assert not (refused.folder / "files").exists()
    with pytest.raises(SessionError, match="cannot be retrained on: it is refused"):
        ready_upload(upload.upload_id, settings=settings)


def test_a_check_in_a_child_process_passes_on_progress_and_refusals(tmp_path, months, settings):
    good = open_upload(announce(months[2]), by="ana", settings=settings)
    for path in sorted(months[2].iterdir()):
        send(good.upload_id, path, by="ana", settings=settings, piece=1 << 20)
    heard = []
    checked = check_upload(good.upload_id, by="ana", settings=settings, progress=heard.append, isolated=True)
    assert checked.state == "ready"
    assert any("rows read" in line for line in heard)
    bad = _written(tmp_path, "STATUS.csv", b"KNR,STATUS,DATA\n2024-0100001,A600,not a date\n")
    upload = open_upload(announce(bad.parent), by="ana", settings=settings)
    send(upload.upload_id, bad, by="ana", settings=settings)
    with pytest.raises(UploadError, match="STATUS.csv, row 2, column DATA \\(value 'not a date'\\): DATA is not"):
        check_upload(upload.upload_id, by="ana", settings=settings, isolated=True)
    with pytest.raises(OwnerError):
        check_upload(good.upload_id, by="bruno", settings=settings, isolated=True)


def test_only_the_owner_writes_checks_or_cancels_an_upload(settings):
    upload = open_upload({"STATUS.csv": 100}, by="Ana Souza", settings=settings)
    for act in (lambda by: receive_piece(upload.upload_id, "STATUS.csv", 0, b"KNR", by=by, settings=settings),
                lambda by: check_upload(upload.upload_id, by=by, settings=settings),
                lambda by: uploads.cancel_upload(upload.upload_id, by=by, settings=settings)):
        with pytest.raises(OwnerError, match=f"upload {upload.upload_id} is Ana Souza's: only they may"):
            act("Bruno Lima")
    assert upload_state(upload.upload_id, settings=settings).received == 0
    with pytest.raises(SessionError, match="cannot be checked: it is receiving its files \\(0.0 MB of 0.0 MB"):
        check_upload(upload.upload_id, by="Ana Souza", settings=settings)
    uploads.cancel_upload(upload.upload_id, by="Ana Souza", settings=settings)
    with pytest.raises(SessionError, match="there is no upload"):
        upload_state(upload.upload_id, settings=settings)
    with pytest.raises(SessionError, match="is not an upload id"):
        upload_state("../../lake", settings=settings)


def test_uploads_expire_and_are_removed_and_a_person_keeps_few_open(settings):
    upload = open_upload({"STATUS.csv": 100}, by="ana", settings=settings)
    record = upload.folder / uploads.RECORD
    stale = json.loads(record.read_text(encoding="utf-8"))
    stale["updated_at"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)).isoformat()
    record.write_text(json.dumps(stale), encoding="utf-8")
    with pytest.raises(SessionError, match=f"upload {upload.upload_id} expired: nothing came for 24 hours"):
        receive_piece(upload.upload_id, "STATUS.csv", 0, b"KNR", by="ana", settings=settings)
    assert expire_uploads(settings) == [upload.upload_id] and not upload.folder.exists()
    for _ in range(uploads.MAX_OPEN):
        open_upload({"STATUS.csv": 100}, by="ana", settings=settings)
    with pytest.raises(SessionError, match="ana has 3 uploads open already"):
        open_upload({"STATUS.csv": 100}, by="ana", settings=settings)
    assert open_upload({"STATUS.csv": 100}, by="bruno", settings=settings).owner == "bruno"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=25)
    assert len(expire_uploads(settings, now=later)) == uploads.MAX_OPEN + 1 and list_uploads(settings) == []


def test_the_upload_folder_must_lie_outside_the_lake(tmp_path):
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="lies inside the lake"):
        open_upload({"A.xlsx": 10}, by="ana", settings=settings.replace(upload_dir=str(tmp_path / "lake" / "up")))
