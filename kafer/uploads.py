"""A month's exports arriving in pieces: the receiving side of the desk's upload route.

A month is 60-125 MB in several files, more than one message of the page may carry, so the page
sends each file in pieces (:data:`PIECE_BYTES`) to a route of the desk, which hands them here:

1. :func:`open_upload` announces the files (names and sizes) for a person. Names are reduced to a
   plain file name; only the endings ``kafer ingest`` reads are accepted; a file or an upload larger
   than its cap (``upload_max_file_mb``, ``upload_max_mb``) or than the disk can take is refused
   before a byte is written.
2. :func:`receive_piece` appends a piece at its offset. A piece must start where the bytes
   received so far end: one out of order is refused in words naming the offset to send; a piece
   sent again (the answer was lost) changes nothing. When a file is whole, its unpacked size (a
   workbook's zip content, a csv.gz's text) is counted as a stream, never trusted from the file's
   own headers: past ``upload_max_unpacked_mb`` the upload is refused before anything reads it.
3. :func:`check_upload` reads every file with the very code ``kafer ingest`` reads it with
   (:func:`kafer.readers.scan_export`, block by block, nothing kept): a bad file refuses the upload
   whole, in ingest's words, before a retrain starts. The upload is then ``ready``: its folder
   (:attr:`Upload.paths`) is what a retrain job is started on (:func:`kafer.jobs.start_retrain`).

Every change is its owner's: the functions that write take the person (``by``) and refuse anyone
else. Everyone may read an upload's progress. An upload lives ``upload_expire_hours`` after its
last piece or check, then :func:`expire_uploads` removes it (every :func:`open_upload` does).

Where uploads live: ``upload_dir``, else ``<runs>/uploads``, one folder per upload, outside the
lake and the notebooks: ``upload.json`` (the owner, the files announced, the state, written whole),
``files/`` (a file being received is hidden as ``.<name>.part``, which ingest leaves out, and takes
its name once whole).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import re
import secrets
import shutil
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .config import Settings
from .errors import ConfigError, OwnerError, SessionError, UploadError
from .i18n import current, megabytes, number, percent, tr
from .lake import utc_now_iso, utc_stamp
from .readers import EXPORT_SUFFIXES, Progress, not_an_export, plausible_dates, scan_export
from .runrecord import write_json

#: Bytes the desk's page sends in one piece; a piece may be at most :data:`MAX_PIECE_BYTES`.
PIECE_BYTES = 1 << 20
MAX_PIECE_BYTES = 16 << 20
#: Files one upload may announce, and uploads one person may have open (not yet ready) at once.
MAX_FILES = 50
MAX_OPEN = 3
#: Entries a workbook (a zip) may hold: a real one holds a few dozen.
MAX_ZIP_ENTRIES = 10_000
#: The states of an upload: its pieces arrive; every file is whole; its files are read; they passed
#: ingest's checks (its folder can be retrained on); it was refused (``error`` says why).
STATES = ("receiving", "received", "checking", "ready", "refused")
RECORD = "upload.json"
FILES = "files"
_ID = re.compile(r"^u\d{8}T\d{6}Z-[0-9a-f]{8}$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_NAME_BYTES = 200
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class UploadFile:
    """One file of an upload: its name, the size announced, the bytes received so far, and its
    unpacked size once whole (``None`` for a plain csv, whose size is its text's)."""

    name: str
    size: int
    received: int
    unpacked: int | None = None

    @property
    def whole(self) -> bool:
        return self.received == self.size


@dataclass(frozen=True)
class Upload:
    """An upload as it stands: who sends it, since when, its files and how far each has come.

    ``state`` is one of :data:`STATES`; ``error`` says why a refused upload was refused (ingest's
    words for a file it would not accept); ``summary`` is what each file holds once checked (kind,
    format, sheets, rows, cars, period).
    """

    upload_id: str
    owner: str
    created_at: str
    updated_at: str
    state: str
    files: tuple[UploadFile, ...]
    folder: Path
    error: str | None = None
    summary: tuple[dict, ...] = ()

    @property
    def size(self) -> int:
        """Bytes announced."""
        return sum(f.size for f in self.files)

    @property
    def received(self) -> int:
        return sum(f.received for f in self.files)

    @property
    def share(self) -> float:
        """Share of the announced bytes received (0 to 1)."""
        return self.received / self.size if self.size else 0.0

    @property
    def paths(self) -> tuple[str, ...]:
        """What a retrain reads: the upload's folder of files (an upload that is ``ready``)."""
        return (str(self.folder / FILES),)

    def progress(self) -> str:
        """How far the upload has come, in the current language: ``61,2 MB de 124,3 MB (49,2 %)``."""
        return tr("{received} of {size} received ({share})", received=megabytes(self.received),
                  size=megabytes(self.size), share=percent(self.share))


def uploads_folder(settings: Settings) -> Path:
    """Where uploads live: ``upload_dir``, else ``<runs>/uploads``.

    Raises
    ------
    ConfigError
        When that folder lies inside a local lake (an upload is no part of the lake until ingested).
    """
    root = Path(settings.upload_dir or Path(settings.runs) / "uploads").resolve()
    if "://" not in settings.lake or settings.lake.startswith("file://"):
        lake = Path(settings.lake.removeprefix("file://")).resolve()
        if root == lake or lake in root.parents:
            raise ConfigError(f"upload_dir {root} lies inside the lake {lake}: set it to a folder outside the lake")
    return root


def safe_name(name: str) -> str:
    """A file name as an upload keeps it: its last part only (no folder), no control or reserved
    characters, no leading dot, composed Unicode (``Relatório`` however the browser spelled it),
    at most 200 bytes (the ending kept).

    Raises
    ------
    UploadError
        When nothing of the name is left.
    """
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip().lstrip(".").strip()
    if len(base.encode("utf-8")) > _NAME_BYTES:
        stem, dot, ending = base.partition(".")
        ending = dot + ending if len(ending) < 20 else ""
        stem = stem.encode("utf-8")[:_NAME_BYTES - len(ending.encode("utf-8"))].decode("utf-8", errors="ignore")
        base = stem + ending
    if not base:
        raise UploadError(tr("has no usable file name"), file=name)
    return base


def open_upload(files: Mapping[str, int] | Sequence[tuple[str, int]], *, by: str, settings: Settings) -> Upload:
    """Announce an upload of ``files`` (name → size in bytes) for ``by``; nothing is written when refused.

    Returns
    -------
    Upload
        The new upload, ``receiving``.

    Raises
    ------
    UploadError
        When a name is no export's, is announced twice, a file is empty or larger than
        ``upload_max_file_mb``, the upload larger than ``upload_max_mb`` or than the disk can take,
        or it holds no file or more than :data:`MAX_FILES`.
    SessionError
        When ``by`` has :data:`MAX_OPEN` uploads open already.
    """
    person = _person(by)
    root = uploads_folder(settings)
    expire_uploads(settings)
    announced = _announced(files, settings)
    total = sum(size for _, size in announced)
    if total > settings.upload_max_mb * 1e6:
        raise UploadError(tr("the upload is {size}, more than the {cap} one upload may be (setting upload_max_mb): "
                             "send fewer files at once, or ingest it from a terminal (kafer ingest)",
                             size=megabytes(total), cap=megabytes(settings.upload_max_mb * 1e6)))
    open_ones = [u for u in list_uploads(settings) if u.owner == person and u.state in STATES[:3]]
    if len(open_ones) >= MAX_OPEN:
        raise SessionError(tr("{by} has {count} uploads open already ({uploads}): finish or cancel one first",
                              by=person, count=number(len(open_ones)),
                              uploads=", ".join(u.upload_id for u in open_ones)))
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < 2 * total:
        raise UploadError(tr("the disk of {folder} has {free} free, too little for an upload of {size} and the "
                             "retrain's copy of it: free some space (old runs, old uploads) or set upload_dir",
                             folder=root, free=megabytes(free), size=megabytes(total)))
    upload_id = "u" + utc_stamp().split(".")[0] + "Z-" + secrets.token_hex(4)
    folder = root / upload_id
    (folder / FILES).mkdir(parents=True)
    now = utc_now_iso()
    record = {"upload": upload_id, "owner": person, "created_at": now, "updated_at": now, "state": "receiving",
              "files": [{"name": name, "size": size, "unpacked": None} for name, size in announced],
              "error": None, "summary": []}
    write_json(folder / RECORD, record)
    return _upload(folder, record)


def _announced(files: Mapping[str, int] | Sequence[tuple[str, int]], settings: Settings) -> list[tuple[str, int]]:
    """The files announced, their names made safe, each checked against the caps and ingest's endings."""
    items = list(files.items() if isinstance(files, Mapping) else files)
    if not items:
        raise UploadError(tr("the upload holds no file"))
    if len(items) > MAX_FILES:
        raise UploadError(tr("the upload holds {count} files, more than the {cap} one upload may hold",
                             count=number(len(items)), cap=number(MAX_FILES)))
    out, seen = [], set()
    for given, size in items:
        name = safe_name(given)
        why = not_an_export(name)
        if why:
            raise UploadError(tr("{why}: an upload holds exports only, whose names end in {endings} (maybe followed "
                                 "by .gz)", why=why, endings=", ".join(EXPORT_SUFFIXES)), file=name)
        if name.lower() in seen:
            raise UploadError(tr("is announced twice in the upload"), file=name)
        seen.add(name.lower())
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UploadError(tr("its size must be a whole number of bytes, not {size!r}", size=size), file=name)
        if size == 0:
            raise UploadError(tr("the file is empty"), file=name)
        if size > settings.upload_max_file_mb * 1e6:
            raise UploadError(tr("is {size}, more than the {cap} one file may be (setting upload_max_file_mb)",
                                 size=megabytes(size), cap=megabytes(settings.upload_max_file_mb * 1e6)), file=name)
        out.append((name, size))
    return out


def receive_piece(upload_id: str, name: str, offset: int, data: bytes, *, by: str, settings: Settings) -> Upload:
    """Append the piece ``data`` of file ``name`` at byte ``offset``; the upload as it then stands.

    A piece must start where the file's bytes received so far end. A piece sent again, whole or in
    part, is accepted when its bytes are those received (nothing changes), even once the upload is
    whole (its answer may have been lost). The piece that makes a file whole has the file's
    unpacked size measured (see the module); the piece that makes the last file whole makes the
    upload ``received``.

    Raises
    ------
    UploadError
        When the piece starts past the bytes received (the message names the offset to send),
        ends past the size announced, differs from bytes received already, is empty or larger
        than :data:`MAX_PIECE_BYTES`, or names a file not announced; when a whole file unpacks
        past ``upload_max_unpacked_mb`` or is no readable workbook or gzip (the upload is then
        refused and its files removed).
    SessionError
        When the upload is unknown, expired or refused.
    OwnerError
        When ``by`` is not the upload's owner.
    """
    if not data:
        raise UploadError(tr("an empty piece was sent"), file=name)
    if len(data) > MAX_PIECE_BYTES:
        raise UploadError(tr("a piece of {size} was sent; a piece may be at most {cap}", size=megabytes(len(data)),
                             cap=megabytes(MAX_PIECE_BYTES)), file=name)
    folder = _folder(settings, upload_id)
    with _locked(folder):
        record = _owned(folder, by, settings)
        if record["state"] == "refused":
            raise SessionError(tr("upload {upload} was refused: {why}", upload=upload_id, why=record["error"]))
        entry = next((f for f in record["files"] if f["name"] == safe_name(name)), None)
        if entry is None:
            raise UploadError(tr("was not announced in upload {upload}", upload=upload_id), file=name)
        _append(folder, entry, offset, data)  # once the upload is whole, only a piece sent again passes
        if record["state"] == "receiving":
            if _received(folder, entry) == entry["size"] and not (folder / FILES / entry["name"]).exists():
                _finish_file(folder, record, entry, settings)
            if all((folder / FILES / f["name"]).exists() for f in record["files"]):
                record["state"] = "received"
            record["updated_at"] = utc_now_iso()
            write_json(folder / RECORD, record)
        return _upload(folder, record)


def _append(folder: Path, entry: dict, offset: int, data: bytes) -> None:
    """Write the part of ``data`` past the bytes received; the part before must equal them."""
    name, size = entry["name"], entry["size"]
    whole = folder / FILES / name
    path = whole if whole.exists() else _part(folder, name)
    received = path.stat().st_size if path.exists() else 0
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise UploadError(tr("a piece's offset must be a byte position, not {offset!r}", offset=offset), file=name)
    if offset > received:
        raise UploadError(tr("the piece at byte {offset} came before the bytes from {received}: send the piece at "
                             "byte {received}", offset=offset, received=received), file=name)
    if offset + len(data) > size:
        raise UploadError(tr("the piece ends at byte {end}, past the {size} bytes announced", end=offset + len(data),
                             size=size), file=name)
    again = min(received - offset, len(data))
    if again:
        with open(path, "rb") as fh:
            fh.seek(offset)
            if fh.read(again) != data[:again]:
                raise UploadError(tr("the piece at byte {offset} differs from the bytes received there already: the "
                                     "file changed while it was sent; cancel this upload and send it again",
                                     offset=offset), file=name)
    if again < len(data):
        with open(path, "ab") as fh:
            fh.write(data[again:])


def _finish_file(folder: Path, record: dict, entry: dict, settings: Settings) -> None:
    """A file just made whole: its unpacked size measured, then its name taken; over the cap (or
    unreadable as what its first bytes say it is) the upload is refused and its files removed."""
    part = _part(folder, entry["name"])
    try:
        entry["unpacked"] = unpacked_size(part, name=entry["name"], limit=int(settings.upload_max_unpacked_mb * 1e6))
    except UploadError as exc:
        _refuse(folder, record, str(exc))
        raise
    part.rename(folder / FILES / entry["name"])


def unpacked_size(path: str | os.PathLike, *, name: str, limit: int) -> int | None:
    """The bytes a workbook (a zip) or a gzip file unpacks to, counted by unpacking it as a stream,
    one block at a time (what its headers declare is never trusted); ``None`` for a plain file.

    The file's kind is read from its first bytes, as ``kafer ingest`` reads it, whatever its name.

    Raises
    ------
    UploadError
        As soon as the count passes ``limit`` bytes (a zip or gzip bomb stops there, having
        filled neither memory nor disk), or when the file is no readable zip or gzip.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:4] == b"PK\x03\x04":
        blocks = _zip_blocks(path, name)
    elif head[:2] == b"\x1f\x8b":
        blocks = _gzip_blocks(path, name)
    else:
        return None
    total = 0
    for block in blocks:
        total += block
        if total > limit:
            raise UploadError(tr("unpacks to more than {cap} (setting upload_max_unpacked_mb): refused before it is "
                                 "read. A month's files unpack to 10-14 times their size; split a larger export "
                                 "into several files", cap=megabytes(limit)), file=name)
    return total


def _zip_blocks(path: str | os.PathLike, name: str) -> Iterator[int]:
    """The sizes of the blocks every entry of a zip unpacks to, in turn."""
    try:
        with zipfile.ZipFile(path) as book:
            entries = book.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise UploadError(tr("the workbook holds {count} parts, more than a workbook does ({cap}): refused "
                                     "before it is read", count=number(len(entries)), cap=number(MAX_ZIP_ENTRIES)),
                                  file=name)
            for entry in entries:
                with book.open(entry) as member:
                    while block := member.read(_READ_BLOCK):
                        yield len(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise UploadError(tr("not a readable xlsx workbook, truncated or damaged ({problem})", problem=exc),
                          file=name) from None


def _gzip_blocks(path: str | os.PathLike, name: str) -> Iterator[int]:
    """The sizes of the blocks a gzip file unpacks to (every member of it), in turn."""
    try:
        with gzip.open(path, "rb") as text:
            while block := text.read(_READ_BLOCK):
                yield len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise UploadError(tr("gzip data is corrupt ({problem})", problem=exc), file=name) from None


def check_upload(upload_id: str, *, by: str, settings: Settings, progress: Progress | None = None,
                 isolated: bool = False) -> Upload:
    """Read every file of a whole upload with ``kafer ingest``'s own reader and checks; ``ready`` when
    all pass. Nothing is kept of the rows (ingest reads them again): memory holds what the reader
    holds at once, one sheet of a workbook (about 1 GB for a full sheet of resultados).

    Parameters
    ----------
    isolated : bool
        Read in a child process (``python -m kafer.uploads``), so that a server's memory does not
        grow by the reader's; its progress lines are passed on, its refusal raised here.

    Returns
    -------
    Upload
        The upload, ``ready``, with what each file holds in ``summary`` (at once when it was checked
        already).

    Raises
    ------
    UploadError
        With ingest's words, for the first file ingest would refuse: the upload is then refused
        and its files removed.
    SessionError
        When the upload is unknown, expired, refused, being checked, or not every file has arrived.
    OwnerError
        When ``by`` is not the upload's owner.
    """
    from .ingest import list_upload

    if isolated:
        return _check_in_child(upload_id, by=by, settings=settings, progress=progress)
    folder = _folder(settings, upload_id)
    with _locked(folder):
        record = _owned(folder, by, settings)
        if record["state"] == "ready":
            return _upload(folder, record)
        if record["state"] != "received":
            upload = _upload(folder, record)
            raise SessionError(tr("upload {upload} cannot be checked: it is {state} ({progress})", upload=upload_id,
                                  state=_state_words(record["state"]), progress=upload.progress()))
        record.update(state="checking", updated_at=utc_now_iso())
        write_json(folder / RECORD, record)
    window = plausible_dates(settings.dates_from, days_ahead=settings.dates_ahead_days)
    summary = []
    try:
        list_upload([str(folder / FILES)])
        for entry in record["files"]:
            scanned = scan_export(str(folder / FILES / entry["name"]), entry["name"], write=_discard,
                                  restart=_nothing, dates_within=window, progress=progress)
            summary.append({"file": entry["name"], "kind": scanned.kind, "format": scanned.format,
                            "sheets": len(scanned.sheets) or None, "rows": scanned.rows, "cars": scanned.cars,
                            "period": [scanned.period[0].isoformat(), scanned.period[1].isoformat()]})
    except UploadError as exc:
        with _locked(folder):
            _refuse(folder, _read(folder), str(exc))
        raise
    with _locked(folder):
        record = _read(folder)
        record.update(state="ready", summary=summary, updated_at=utc_now_iso())
        write_json(folder / RECORD, record)
        return _upload(folder, record)


#: The refusals a check in a child process passes back, by name.
_REFUSALS = {cls.__name__: cls for cls in (UploadError, SessionError, OwnerError, ConfigError)}


def _check_in_child(upload_id: str, *, by: str, settings: Settings, progress: Progress | None) -> Upload:
    """:func:`check_upload` in a child process, which speaks the current language; its progress
    lines (stderr) are passed on as they come, its refusal (one JSON line on stdout) raised here."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "kafer.uploads", upload_id, by], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                             env={**os.environ, "KAFER_LANG": current()})
    child.stdin.write(json.dumps(settings.to_dict()))
    child.stdin.close()
    said = []
    for line in child.stderr:
        said.append(line)
        if progress and line.strip():
            progress(line.strip())
    answer = child.stdout.read()
    if child.wait() == 0:
        return upload_state(upload_id, settings=settings)
    try:
        refusal = json.loads(answer)
    except json.JSONDecodeError:
        raise UploadError(tr("the check of upload {upload} stopped ({problem})", upload=upload_id,
                             problem=("".join(said).strip().splitlines() or ["?"])[-1])) from None
    raise _REFUSALS[refusal["error"]](refusal["message"])


def _check_here(upload_id: str, by: str) -> int:
    """``python -m kafer.uploads UPLOAD BY``, the settings as JSON on stdin: check the upload,
    progress on stderr; a refusal is one JSON line on stdout and exit code 2."""
    import sys

    settings = Settings.from_dict(json.loads(sys.stdin.read()))
    try:
        check_upload(upload_id, by=by, settings=settings, progress=lambda line: print(line, file=sys.stderr,
                                                                                      flush=True))
    except tuple(_REFUSALS.values()) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 2
    return 0


def _discard(rows) -> None:
    """Rows read by the check: counted by the reader, kept nowhere."""


def _nothing() -> None:
    """A reader's restart: the check kept nothing to drop."""


def ready_upload(upload_id: str, *, settings: Settings) -> Upload:
    """A ``ready`` upload, to start a retrain on (:attr:`Upload.paths`); it lives
    ``upload_expire_hours`` from now, time enough for the retrain to ingest it.

    Raises
    ------
    SessionError
        When it is unknown, expired, or not ready (the message says how it stands).
    """
    folder = _folder(settings, upload_id)
    with _locked(folder):
        record = _live(folder, settings)
        if record["state"] != "ready":
            upload = _upload(folder, record)
            raise SessionError(tr("upload {upload} cannot be retrained on: it is {state} ({progress})",
                                  upload=upload_id, state=_state_words(record["state"]), progress=upload.progress()))
        record["updated_at"] = utc_now_iso()
        write_json(folder / RECORD, record)
        return _upload(folder, record)


def upload_state(upload_id: str, *, settings: Settings) -> Upload:
    """The upload as it stands, for anyone who watches it.

    Raises
    ------
    SessionError
        When it is unknown or expired.
    """
    folder = _folder(settings, upload_id)
    return _upload(folder, _live(folder, settings))


def list_uploads(settings: Settings) -> list[Upload]:
    """Every upload not yet expired, the latest first."""
    root = uploads_folder(settings)
    found = []
    for folder in sorted(root.iterdir(), reverse=True) if root.is_dir() else ():
        if _ID.match(folder.name):
            with contextlib.suppress(SessionError):
                found.append(_upload(folder, _live(folder, settings)))
    return found


def cancel_upload(upload_id: str, *, by: str, settings: Settings) -> None:
    """Remove an upload and its files.

    Raises
    ------
    SessionError
        When it is unknown or expired.
    OwnerError
        When ``by`` is not its owner.
    """
    folder = _folder(settings, upload_id)
    with _locked(folder):
        _owned(folder, by, settings)
        _remove(folder)


def expire_uploads(settings: Settings, *, now: dt.datetime | None = None) -> list[str]:
    """Remove the uploads untouched for ``upload_expire_hours`` (and folders left without a record
    for as long); the ids removed."""
    root = uploads_folder(settings)
    if not root.is_dir():
        return []
    now = now or dt.datetime.now(dt.timezone.utc)
    removed = []
    for folder in root.iterdir():
        if not _ID.match(folder.name):
            continue
        try:
            touched = dt.datetime.fromisoformat(_read(folder)["updated_at"])
        except (SessionError, KeyError, ValueError):
            touched = dt.datetime.fromtimestamp(folder.stat().st_mtime, dt.timezone.utc)
        if now - touched > dt.timedelta(hours=settings.upload_expire_hours):
            with _locked(folder):
                _remove(folder)
            removed.append(folder.name)
    return removed


# -- the record ------------------------------------------------------------------------------------------

def _person(by: str) -> str:
    person = str(by or "").strip()
    if not person:
        raise OwnerError(tr("an upload is sent by someone: give the name of the person who sends it"))
    return person


def _folder(settings: Settings, upload_id: str) -> Path:
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        raise SessionError(tr("{upload!r} is not an upload id (they look like u20261206T140501Z-3fa9c2d1)",
                              upload=upload_id))
    return uploads_folder(settings) / upload_id


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """The upload's own lock, held by every change of it (pieces may arrive on several threads)."""
    import filelock

    if not folder.is_dir():
        raise SessionError(tr("there is no upload {upload}: it expired, was cancelled or never existed",
                              upload=folder.name))
    try:
        with filelock.FileLock(folder.parent / f".{folder.name}.lock", timeout=60):
            yield
    except filelock.Timeout:
        raise SessionError(tr("upload {upload} stays locked by another request: try again",
                              upload=folder.name)) from None


def _read(folder: Path) -> dict:
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise SessionError(tr("there is no upload {upload}: it expired, was cancelled or never existed",
                              upload=folder.name)) from None


def _live(folder: Path, settings: Settings) -> dict:
    """The upload's record, unless it expired (:func:`expire_uploads` removes it)."""
    record = _read(folder)
    touched = dt.datetime.fromisoformat(record["updated_at"])
    if dt.datetime.now(dt.timezone.utc) - touched > dt.timedelta(hours=settings.upload_expire_hours):
        raise SessionError(tr("upload {upload} expired: nothing came for {hours} hours (setting "
                              "upload_expire_hours); send it again", upload=folder.name,
                              hours=number(settings.upload_expire_hours)))
    return record


def _owned(folder: Path, by: str, settings: Settings) -> dict:
    """The upload's record, for its owner only."""
    record = _live(folder, settings)
    if _person(by) != record["owner"]:
        raise OwnerError(tr("upload {upload} is {owner}'s: only they may add to it, check it or cancel it",
                            upload=folder.name, owner=record["owner"]))
    return record


def _refuse(folder: Path, record: dict, why: str) -> None:
    """Mark the upload refused (``why``) and remove its files: a refused upload is sent again whole."""
    record.update(state="refused", error=why, updated_at=utc_now_iso())
    write_json(folder / RECORD, record)
    shutil.rmtree(folder / FILES, ignore_errors=True)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.unlink(folder.parent / f".{folder.name}.lock")


def _part(folder: Path, name: str) -> Path:
    return folder / FILES / f".{name}.part"


def _received(folder: Path, entry: dict) -> int:
    for path in (folder / FILES / entry["name"], _part(folder, entry["name"])):
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_size
    return 0


def _state_words(state: str) -> str:
    return {"receiving": tr("receiving its files"), "received": tr("received whole, not checked yet"),
            "checking": tr("being checked"), "ready": tr("checked and ready"),
            "refused": tr("refused")}.get(state, state)


def _upload(folder: Path, record: dict) -> Upload:
    files = tuple(UploadFile(f["name"], f["size"], _received(folder, f) if record["state"] != "refused" else 0,
                             f.get("unpacked")) for f in record["files"])
    return Upload(upload_id=record["upload"], owner=record["owner"], created_at=record["created_at"],
                  updated_at=record["updated_at"], state=record["state"], files=files, folder=folder,
                  error=record.get("error"), summary=tuple(record.get("summary") or ()))


if __name__ == "__main__":
    import sys

    sys.exit(_check_here(*sys.argv[1:3]))
