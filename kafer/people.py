"""People's ids in the exports, pseudonymized when they are landed: a keyed hash whose key stays outside the lake.

Of the plant's columns (DATA.md) one names a person: the falhas ``USUARIO``, the badge of the
inspector who logged the defect (``ESTACAO`` is a station, ``S_GROUP_ID`` a failure group). Käfer
needs no one's identity: the label, the features and the defects' double records never read it. It
is kept, pseudonymized, so that the rows stay whole and one person's defects stay linkable (the same
badge gives the same pseudonym), and no one can be named from the lake alone.

A pseudonym is ``P`` and the first 16 hex digits of HMAC-SHA256(key, badge); an empty badge stays
empty. The key is 32 random bytes in a file outside the lake (``person_key_file``), made on first use
with mode 0600. The lake keeps the key's fingerprint (an HMAC of a fixed text, which reveals nothing of
the key): a machine with another key, or none, is refused before it lands anything, since its
pseudonyms would not match the lake's.

The raw zone keeps each export's original bytes, but not of a kind that holds people's ids: for
those it keeps the rows as read, every column, the ids pseudonymized (all that Käfer reads from the
raw zone: a rebuild reads rows, never files). A lake an older Käfer filled holds such ids in clear;
ingest refuses it until ``kafer pseudonymize`` (:func:`pseudonymize_lake`) has rewritten them once.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import catalog
from .config import Settings
from .errors import ConfigError, LakeError
from .lake import PARQUET_COMPRESSION, ROW_GROUP_SIZE, Lake, utc_now_iso

#: The columns of each kind that name a person.
PERSON_COLUMNS: dict[str, tuple[str, ...]] = {"falhas": ("USUARIO",), "resultados": (), "status": ()}
#: How ids are pseudonymized, as each landed file's record says (``people``).
METHOD = "hmac-sha256-64"
_FINGERPRINT_TEXT = b"kafer person key fingerprint"


def holds_people(kind: str) -> bool:
    """Whether exports of ``kind`` name people."""
    return bool(PERSON_COLUMNS.get(kind))


def fingerprint(key: bytes) -> str:
    """A key's fingerprint: 16 hex digits that tell two keys apart and reveal nothing of them."""
    return hmac.new(key, _FINGERPRINT_TEXT, "sha256").hexdigest()[:16]


def pseudonyms(values: pa.Array, key: bytes) -> pa.Array:
    """Each id's pseudonym (``P`` + 16 hex digits of its keyed hash); empty and missing ids stay as they are.

    Works through the distinct values only: a month's falhas hold a few hundred badges."""
    encoded = pc.dictionary_encode(values)
    words = encoded.dictionary.to_pylist()
    hashed = pa.array([w if not w else "P" + hmac.new(key, w.encode("utf-8"), "sha256").hexdigest()[:16]
                       for w in words], pa.string())
    return pc.take(hashed, encoded.indices)


def pseudonymized(rows: pa.Table, kind: str, key: bytes) -> pa.Table:
    """``rows`` of ``kind`` with every person's id replaced by its pseudonym."""
    for column in PERSON_COLUMNS.get(kind, ()):
        if column in rows.column_names:
            i = rows.column_names.index(column)
            rows = rows.set_column(i, column, pseudonyms(rows[column].combine_chunks().cast(pa.string()), key))
    return rows


def pseudonymize_file(source: str, kind: str, key: bytes, *, folder: str) -> str:
    """Write a landed-rows Parquet file again with people's ids pseudonymized, as the raw zone keeps it
    (row groups of :data:`kafer.lake.ROW_GROUP_SIZE` rows, zstd); the new file, in ``folder``.

    Only kinds that name people are given (a falhas export: about a million rows for a plant-year)."""
    from .readers import schema

    target = os.path.join(folder, f"people-{secrets.token_hex(6)}.parquet")
    rows = pseudonymized(pq.read_table(source).cast(schema(kind)), kind, key)
    pq.write_table(rows, target, row_group_size=ROW_GROUP_SIZE, compression=PARQUET_COMPRESSION)
    return target


def person_key(settings: Settings, lake: Lake) -> bytes:
    """The key that pseudonymizes people's ids for ``lake``, made on first use; its fingerprint is kept in the lake.

    Raises
    ------
    ConfigError
        When the key file lies inside the lake, can be read by others, is not a key, or is missing or
        another key than the one the lake's ids were pseudonymized with (copy that one here).
    """
    path = Path(settings.person_key_file).expanduser()
    if lake.is_local and _inside(path, Path(lake.root)):
        raise ConfigError(f"person_key_file {path} lies inside the lake {lake.url}: the key that pseudonymizes "
                          "people's ids must live outside it; set person_key_file in kafer.toml to a file elsewhere")
    known = catalog.person_key_fingerprint(lake)
    if not path.exists() and known is not None:
        raise ConfigError(f"the lake {lake.url} holds people's ids pseudonymized with a key made elsewhere "
                          f"(fingerprint {known['fingerprint']}), and this machine has none at {path}: copy the key "
                          "file from the machine that made it there (mode 0600), or set person_key_file to where it is")
    key = _read_or_make(path)
    mine = fingerprint(key)
    if known is None:
        try:
            catalog.save_person_key_fingerprint(lake, {"fingerprint": mine, "method": METHOD, "made_at": utc_now_iso()})
        except LakeError:  # another machine's first key won the race
            known = catalog.person_key_fingerprint(lake)
    if known is not None and known["fingerprint"] != mine:
        raise ConfigError(f"the key at {path} (fingerprint {mine}) is not the one the lake {lake.url} pseudonymized "
                          f"people's ids with (fingerprint {known['fingerprint']}): copy that key file here, or set "
                          "person_key_file to it; lands with another key would give one person two pseudonyms")
    return key


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _read_or_make(path: Path) -> bytes:
    """The key in ``path``, made (32 random bytes, hex, mode 0600) when the file does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by another process meanwhile: read it
        else:
            with os.fdopen(handle, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"the key file {path} can be read by others than its owner: chmod 600 {path}")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ConfigError(f"{path} is not a Käfer person key (64 hex digits): restore the key file, or remove it on a "
                          "lake that holds no pseudonymized id yet")
    return key


def clear_records(lake: Lake, records: list[dict] | None = None) -> list[dict]:
    """The landed files whose people's ids the raw zone holds in clear (landed by an older Käfer)."""
    records = catalog.raw_records(lake) if records is None else records
    return [r for r in records if holds_people(r["kind"]) and not r.get("people")]


def pseudonymize_lake(lake: Lake, *, settings: Settings, progress: Callable[[str], None] | None = None) -> str:
    """Replace the people's ids a lake holds in clear by their pseudonyms, once, holding the lake's lock.

    For each such landed file: its rows are written again, pseudonymized, under a new key; its record,
    naming them, replaces the old one (the one raw-zone record ever replaced); then its clear rows and
    its original bytes are removed. Stopped half-way, it leaves every file readable (old rows and record,
    or new ones) and is finished by running it again. The curated tables hold no person's id.

    Returns
    -------
    str
        What was done, in one line.

    Raises
    ------
    ConfigError
        As :func:`person_key`.
    """
    from .locks import hold

    with hold(lake, "lake", purpose="pseudonymize people's ids", **settings.lock_options) as held:
        records = catalog.raw_records(lake)
        leftovers = [r for r in records if r.get("people") and r.get("people_cleared")]
        for record in leftovers:  # a run stopped after a record was replaced: remove what it left in clear
            for key in record["people_cleared"]:
                lake.remove(key)
        todo = clear_records(lake, records)
        if not todo:
            return f"The lake {lake.url} holds no person's id in clear: nothing to do."
        key = person_key(settings, lake)
        if settings.staging_dir:
            os.makedirs(settings.staging_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kafer-people-", dir=settings.staging_dir or None) as folder:
            for record in todo:
                if progress:
                    progress(f"pseudonymizing the people's ids of {record['name']}")
                local = os.path.join(folder, "clear.parquet")
                with open(local, "wb") as out:
                    out.write(lake.read_bytes(record["keys"]["rows"]))
                rows = pseudonymize_file(local, record["kind"], key, folder=folder)
                old = [k for k in (record["keys"]["rows"], record["keys"].get("file")) if k]
                keys = {**record["keys"], "file": None,
                        "rows": record["keys"]["rows"].replace(".parquet", f".{fingerprint(key)}.parquet")}
                catalog.replace_raw_rows(lake, {**record, "keys": keys, "people": METHOD, "people_cleared": old},
                                         rows=rows, held=held)
                for stale in old:
                    lake.remove(stale)
    return (f"Pseudonymized the people's ids of {len(todo)} landed file{'s' if len(todo) != 1 else ''} in the lake "
            f"{lake.url} and removed their clear rows and original files; keep the key file {settings.person_key_file} "
            "safe (without it no more falhas can be landed in this lake).")
