"""The lake's catalog: every dataset of the lake by name, where it lives and how it is read and written.

Code elsewhere never builds a key; it asks for a dataset here (Kedro's ``DataCatalog`` is the
model). The layers, as the lake's folders show them::

    raw/files/<sha256>.<ext>                     each accepted file, byte for byte (but those holding people's ids)
    raw/rows/<kind>/<sha256>.parquet             its normalized rows, sorted by KNR, people's ids pseudonymized
    raw/index/<sha256>.json                      its record (name, kind, sheets, rows, cars, period), written last
    curated/features/<version>/features.parquet  an immutable per-car table
    curated/features/<version>/facts.parquet     the same cars' facts, long (KNR, kind, key, value)
    curated/features/<version>/manifest.json     what it was built from, and the feature definitions
    curated/CURRENT.json                         pointer to the current version, written last
    models/versions/<version>/model.bin          a model artifact, opaque bytes, written first
    models/versions/<version>/model-<sha256>.bin  the same model converted to a safe format (kafer models convert)
    models/versions/<version>/ARTIFACT.json      pointer to the converted artifact and its hash, written last
    models/versions/<version>/training_cars.parquet  the cars it was trained or validated on
    models/versions/<version>/meta.json          its registry entry; marks the version complete
    models/versions/<version>/scores/<data version>.parquet  its risk for cars of a curated version (a cache)
    models/versions/<version>/figures/<digest>.json  its figures on one set of scored cars (a cache)
    models/decisions/<id>.json                   one immutable record per decision (id: its sequence number)
    models/PRODUCTION.json                       the production pointer, written last
    lists/cars/<id>.parquet                      an inspection list's cars: risk, rank, flag, audit, stage
    lists/records/<id>.json                      its record (when, by whom, model, budget, files), written last
    people/key.json                              the fingerprint of the key that pseudonymizes people's ids

Data keys are written once; only the pointers are ever replaced (and, once, by ``kafer pseudonymize``,
the raw records of files an older Käfer landed with people's ids in clear). The writes that make
something exist or current (a version's entry, a decision, a pointer) take the lock their writer
holds (:class:`kafer.locks.LockInfo`) and verify it first: a writer whose lock was taken over
writes none of them.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import LakeError
from .lake import Lake
from .locks import LockInfo

_RAW_INDEX = "raw/index"
_CURATED = "curated/features"
_CURRENT = "curated/CURRENT.json"
_VERSIONS = "models/versions"
_DECISIONS = "models/decisions"
_PRODUCTION = "models/PRODUCTION.json"
_LIST_CARS = "lists/cars"
_LIST_RECORDS = "lists/records"
_PERSON_KEY = "people/key.json"


# -- raw zone ------------------------------------------------------------------------------------

def raw_keys(*, sha256: str, kind: str, fmt: str) -> dict[str, str]:
    """Where a landed file's bytes, rows and record live (kept in its record as ``keys``)."""
    return {"file": f"raw/files/{sha256}.{fmt}", "rows": f"raw/rows/{kind}/{sha256}.parquet",
            "index": f"{_RAW_INDEX}/{sha256}.json"}


def raw_record(lake: Lake, sha256: str) -> dict | None:
    """The record of the landed file with this content, or ``None`` when it never landed."""
    key = f"{_RAW_INDEX}/{sha256}.json"
    return lake.read_json(key) if lake.exists(key) else None


def raw_records(lake: Lake) -> list[dict]:
    """The record of every landed file."""
    return [lake.read_json(key) for key in lake.list(_RAW_INDEX) if key.endswith(".json")]


def save_raw_from(lake: Lake, record: dict, *, original: str | None, rows: str) -> None:
    """Land one file from local files, streamed rather than held in memory: its original bytes
    (the file ``original``; ``None`` for a file whose bytes are not kept, its record's
    ``keys["file"]`` then ``None``), its rows (the Parquet file ``rows``, sorted by KNR then DATA,
    zstd, row groups of 256,000 rows, see :func:`kafer.staging.sort_rows_file`), then its record
    (which makes it landed)."""
    keys = record["keys"]
    if original is not None:
        lake.write_file(keys["file"], original)
    lake.write_file(keys["rows"], rows)
    lake.write_json(keys["index"], record)


def replace_raw_rows(lake: Lake, record: dict, *, rows: str, held: LockInfo) -> None:
    """Give a landed file new rows (the Parquet file ``rows``, under ``record["keys"]["rows"]``, a key
    its old record does not name), then replace its record with ``record``, still holding the lake's
    lock ``held``; the old rows and original bytes are then the caller's to remove.

    The one change of the raw zone: people's ids an older Käfer landed in clear are replaced by their
    pseudonyms (:mod:`kafer.people`). The record is replaced whole, last, as a pointer is."""
    lake.write_file(record["keys"]["rows"], rows)
    held.verify()
    lake.write_pointer(record["keys"]["index"], record)


def raw_rows(lake: Lake, records: list[dict], *, cars: pa.Array | None = None,
             columns: list[str] | None = None) -> pa.Table | None:
    """The rows of the landed files ``records`` (of one kind), only of ``cars`` when given.

    Text is read dictionary-encoded and decoded once the rows are chosen, which halves the work
    of reading a batch of cars.
    """
    if not records:
        return None
    keys = [r["keys"]["rows"] for r in records]
    if cars is None:
        return lake.read_table(keys, columns=columns)
    knr = pc.field("KNR")
    inside = (knr >= pc.min(cars).as_py()) & (knr <= pc.max(cars).as_py())  # prunes row groups by their statistics
    return _decoded(lake.read_table(keys, columns=columns, filter=inside & knr.isin(cars), dictionary=True))


def raw_cars(lake: Lake, record: dict) -> set[str]:
    """The cars (KNR) a landed file holds rows of, read from the distinct values its Parquet keeps."""
    cars: set[str] = set()
    for chunk in lake.read_table(record["keys"]["rows"], columns=["KNR"], dictionary=True)["KNR"].chunks:
        cars.update(chunk.dictionary.take(pc.unique(chunk.indices)).to_pylist())
    return cars


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary-encoded columns as plain values."""
    return table.cast(pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                 for f in table.schema], metadata=table.schema.metadata))


# -- curated zone --------------------------------------------------------------------------------

def current_version(lake: Lake) -> str | None:
    """The curated version the pointer names, or ``None`` before the first merge."""
    pointer = lake.read_pointer(_CURRENT)
    return None if pointer is None else pointer["version"]


def curated_manifest(lake: Lake, version: str) -> dict:
    """The manifest of a curated version."""
    return lake.read_json(f"{_CURATED}/{version}/manifest.json")


def current_manifest(lake: Lake) -> dict | None:
    """The manifest of the current curated version, or ``None`` before the first merge."""
    version = current_version(lake)
    return None if version is None else curated_manifest(lake, version)


def current_features(lake: Lake) -> pd.DataFrame:
    """The current per-car table.

    Raises
    ------
    LakeError
        When nothing was merged into this lake yet.
    """
    version = current_version(lake)
    if version is None:
        raise LakeError(f"the lake {lake.url} holds no curated table yet: ingest an upload first "
                        "(kafer ingest FOLDER)")
    return features(lake, version)


def has_features(lake: Lake, version: str) -> bool:
    """Whether the lake still holds the per-car table of ``version``."""
    return lake.exists(f"{_CURATED}/{version}/features.parquet")


def features(lake: Lake, version: str) -> pd.DataFrame:
    """The per-car table of a curated version."""
    key = f"{_CURATED}/{version}/features.parquet"
    if not lake.exists(key):
        raise LakeError(f"the lake {lake.url} holds no curated version {version!r}")
    return lake.read_table(key).to_pandas()


def has_facts(lake: Lake, version: str) -> bool:
    """Whether the curated version holds its cars' facts (versions built before facts existed do not)."""
    return lake.exists(f"{_CURATED}/{version}/facts.parquet")


def facts(lake: Lake, version: str, *, cars: pa.Array | None = None) -> pa.Table:
    """The facts of a curated version (:mod:`kafer.facts`), only of ``cars`` when given.

    Raises
    ------
    LakeError
        When the version holds no facts: it was built before facts existed.
    """
    if not has_facts(lake, version):
        raise LakeError(f"the curated version {version!r} in the lake {lake.url} holds no facts: it was built by an "
                        "older Käfer; rebuild the curated table from the raw zone (kafer rebuild)")
    return lake.read_table(f"{_CURATED}/{version}/facts.parquet",
                           filter=None if cars is None else pc.field("KNR").isin(cars))


def current_facts(lake: Lake) -> pa.Table:
    """The facts of the current curated version.

    Raises
    ------
    LakeError
        When nothing was merged yet, or the current version holds no facts.
    """
    version = current_version(lake)
    if version is None:
        raise LakeError(f"the lake {lake.url} holds no curated table yet: ingest an upload first "
                        "(kafer ingest FOLDER)")
    return facts(lake, version)


def curated_versions(lake: Lake) -> list[str]:
    """Every complete curated version (its manifest written), oldest first (ids start with their UTC time)."""
    return sorted(key[len(_CURATED) + 1:].split("/")[0] for key in lake.list(_CURATED) if key.endswith("/manifest.json"))


def save_curated(lake: Lake, version: str, table: pd.DataFrame, manifest: dict, *, facts: pa.Table,
                 held: LockInfo) -> None:
    """Write a new curated version (its table, its facts, its manifest), then move the pointer to it,
    still holding the lake's lock ``held``."""
    lake.write_table(f"{_CURATED}/{version}/features.parquet", pa.Table.from_pandas(table, preserve_index=False))
    lake.write_table(f"{_CURATED}/{version}/facts.parquet", facts)
    lake.write_json(f"{_CURATED}/{version}/manifest.json", manifest)
    held.verify()
    lake.write_pointer(_CURRENT, {"version": version, "at": manifest["created_at"]})


# -- model registry ------------------------------------------------------------------------------

def model_metas(lake: Lake) -> list[dict]:
    """The registry entry of every complete model version, oldest first."""
    return [lake.read_json(key) for key in lake.list(_VERSIONS) if key.endswith("/meta.json")]


def model_meta(lake: Lake, version: str) -> dict | None:
    """The registry entry of ``version``, or ``None`` when there is no such complete version."""
    key = f"{_VERSIONS}/{version}/meta.json"
    return lake.read_json(key) if lake.exists(key) else None


def save_model(lake: Lake, version: str, artifact: bytes, meta: dict, *, training_cars: list[str],
               held: LockInfo) -> None:
    """Write a model's artifact and training cars, then its entry (which makes the version complete),
    still holding the registry lock ``held``."""
    lake.write_bytes(original_artifact_key(version), artifact)
    lake.write_table(f"{_VERSIONS}/{version}/training_cars.parquet",
                     pa.table({"KNR": pa.array(sorted(training_cars), pa.string())}))
    held.verify()
    lake.write_json(f"{_VERSIONS}/{version}/meta.json", meta)


def run_model(lake: Lake, run_id: str) -> dict | None:
    """The registry entry of the candidate the run ``run_id`` registered, or ``None``."""
    return next((m for m in model_metas(lake) if m["run"] == run_id), None)


def model_training_cars(lake: Lake, version: str) -> set[str] | None:
    """The cars ``version`` was trained or validated on; ``None`` for a version registered before
    they were recorded."""
    key = f"{_VERSIONS}/{version}/training_cars.parquet"
    return set(lake.read_table(key)["KNR"].to_pylist()) if lake.exists(key) else None


def model_artifact(lake: Lake, version: str) -> bytes:
    """The artifact bytes of ``version``: its converted artifact when it has one (:func:`artifact_pointer`)."""
    pointer = artifact_pointer(lake, version)
    return lake.read_bytes(pointer["key"] if pointer else original_artifact_key(version))


def original_artifact_key(version: str) -> str:
    """Where ``version``'s artifact was written when it was registered (before any conversion)."""
    return f"{_VERSIONS}/{version}/model.bin"


def kept_score_versions(lake: Lake, version: str) -> list[str]:
    """The curated versions whose cars ``version``'s kept scores cover (:func:`save_model_scores`)."""
    return [key.rsplit("/", 1)[1][:-len(".parquet")] for key in lake.list(f"{_VERSIONS}/{version}/scores")
            if key.endswith(".parquet")]


def artifact_pointer(lake: Lake, version: str) -> dict | None:
    """The record of ``version``'s conversion (``key``, ``sha256`` of the artifact now read, what it was
    converted from, when and by whom), or ``None`` when its artifact is the one it was registered with."""
    return lake.read_pointer(f"{_VERSIONS}/{version}/ARTIFACT.json")


def save_converted_artifact(lake: Lake, version: str, artifact: bytes, record: dict, *, held: LockInfo) -> dict:
    """Write ``version``'s converted artifact under a new key, then point the version at it, still holding
    the registry lock ``held``; the pointer as written (``record`` with ``key`` and ``sha256``)."""
    sha256 = hashlib.sha256(artifact).hexdigest()
    key = f"{_VERSIONS}/{version}/model-{sha256[:16]}.bin"
    lake.write_bytes(key, artifact)
    pointer = {**record, "key": key, "sha256": sha256}
    held.verify()
    lake.write_pointer(f"{_VERSIONS}/{version}/ARTIFACT.json", pointer)
    return pointer


def model_scores(lake: Lake, version: str, *, data_version: str | None = None) -> pd.DataFrame | None:
    """The risk ``version`` gave the cars of ``data_version`` (``KNR``, ``fingerprint``, ``probability``), as
    cached by :func:`save_model_scores`; without ``data_version``, its newest cached scores; ``None``
    when there are none."""
    folder = f"{_VERSIONS}/{version}/scores"
    if data_version is None:
        cached = [key for key in lake.list(folder) if key.endswith(".parquet")]
        return lake.read_table(cached[-1]).to_pandas() if cached else None
    key = f"{folder}/{data_version}.parquet"
    return lake.read_table(key).to_pandas() if lake.exists(key) else None


def save_model_scores(lake: Lake, version: str, data_version: str, scores: pd.DataFrame) -> None:
    """Keep the risk ``version`` gave cars of ``data_version``, written once (see :mod:`kafer.monitor`)."""
    lake.write_table(f"{_VERSIONS}/{version}/scores/{data_version}.parquet",
                     pa.Table.from_pandas(scores, preserve_index=False))


def model_figures(lake: Lake, version: str, digest: str) -> dict | None:
    """The figures ``version`` scored on the cars, labels and settings ``digest`` names, as cached; ``None`` if never."""
    key = f"{_VERSIONS}/{version}/figures/{digest}.json"
    return lake.read_json(key) if lake.exists(key) else None


def save_model_figures(lake: Lake, version: str, digest: str, figures: dict) -> None:
    """Keep the figures ``version`` scored on the cars ``digest`` names, written once (see :mod:`kafer.monitor`)."""
    lake.write_json(f"{_VERSIONS}/{version}/figures/{digest}.json", figures)


def decisions(lake: Lake) -> list[dict]:
    """Every logged decision in the log's order: by sequence number (``seq``), those an older Käfer
    logged without one first, in the order of their ids (which start with their UTC time)."""
    found = [lake.read_json(key) for key in lake.list(_DECISIONS) if key.endswith(".json")]
    return sorted(found, key=lambda d: (d.get("seq") or 0, d["id"]))


def save_decision(lake: Lake, record: dict, *, held: LockInfo) -> None:
    """Append one immutable decision record, still holding the registry lock ``held``; its key (its
    sequence number) is written once, so two writers can never log the same number."""
    held.verify()
    lake.write_json(f"{_DECISIONS}/{record['id']}.json", record)


def production_pointer(lake: Lake) -> dict | None:
    """The production pointer, or ``None`` while no model was ever kept."""
    return lake.read_pointer(_PRODUCTION)


def set_production(lake: Lake, pointer: dict, *, held: LockInfo) -> None:
    """Replace the production pointer atomically, still holding the registry lock ``held``."""
    held.verify()
    lake.write_pointer(_PRODUCTION, pointer)


# -- inspection lists ----------------------------------------------------------------------------

def save_list(lake: Lake, record: dict, cars: pd.DataFrame) -> None:
    """Record one inspection list: its cars, then its record (which makes it issued); both written once.

    A list's id is new (:func:`kafer.lists.new_list_id`), so writers never meet: no lock is taken."""
    lake.write_table(f"{_LIST_CARS}/{record['id']}.parquet", pa.Table.from_pandas(cars, preserve_index=False))
    lake.write_json(f"{_LIST_RECORDS}/{record['id']}.json", record)


def list_records(lake: Lake) -> list[dict]:
    """The record of every list issued, oldest first (ids start with their UTC time)."""
    return [lake.read_json(key) for key in lake.list(_LIST_RECORDS) if key.endswith(".json")]


def list_cars(lake: Lake, list_id: str) -> pd.DataFrame:
    """The cars of the list ``list_id`` as recorded."""
    return lake.read_table(f"{_LIST_CARS}/{list_id}.parquet").to_pandas()


# -- people --------------------------------------------------------------------------------------

def person_key_fingerprint(lake: Lake) -> dict | None:
    """The fingerprint of the key the lake's people's ids were pseudonymized with, or ``None`` before the first."""
    return lake.read_json(_PERSON_KEY) if lake.exists(_PERSON_KEY) else None


def save_person_key_fingerprint(lake: Lake, record: dict) -> None:
    """Keep the key's fingerprint, written once: a second key can never take the lake over."""
    lake.write_json(_PERSON_KEY, record)
