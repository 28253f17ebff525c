"""Land uploads in the lake's raw zone and merge them into a new version of the curated table.

Where each dataset lives is :mod:`kafer.catalog`'s business. An upload is read and checked whole before anything is written: one bad file refuses it all.
Its files are checked block by block and staged on local disk (:mod:`kafer.staging`), so that an
upload of any size, a plant's history at once, is held in bounded memory.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import catalog, people
from .config import Settings
from .errors import LakeError, UploadError
from .facts import build_facts
from .features import (FalhasPeriod, build_features, feature_definitions, label_coverage, table_columns,
                       with_label_known)
from .lake import Lake, utc_now_iso, utc_stamp
from .locks import LockInfo, hold
from .readers import COLUMNS, EXPORT_SUFFIXES, Progress, not_an_export, plausible_dates, read_period_text
from .sources import fetch_source, list_source, unchanged
from .staging import StagedExport, Staging, stage_export


@dataclass(frozen=True)
class Received:
    """One file of an upload, as read, checked and staged on local disk (``export``), or recognized
    without reading: the same bytes as an earlier file of the upload (``duplicate_of``) or as a
    file already in the lake (``record``, its raw-zone record); or left out unread as no export
    (``ignored``, why, with no ``sha256``)."""

    path: str
    name: str
    sha256: str | None
    export: StagedExport | None = None
    record: dict | None = None
    duplicate_of: str | None = None
    ignored: str | None = None


def read_upload(paths: Iterable[str], *, settings: Settings, progress: Progress | None = None,
                allow_empty: bool = False, known: Callable[[str], dict | None] | None = None) -> list[Received]:
    """Read and check every file of an upload (folders are expanded); nothing is written to a lake.

    Each file is hashed in one streamed pass, then read block by block; its normalized rows are
    held dictionary-encoded (spilled to local disk past :data:`kafer.staging.SORT_ROWS` rows) and
    written, sorted as the raw zone keeps them, to a temporary folder on local disk
    (``settings.staging_dir``, else the system's) while the next file is read. The folder lives as
    long as the returned files refer to it, so memory holds about two files' rows at most, each
    bounded, whatever the number and size of the files.

    Parameters
    ----------
    paths : iterable of str
        Files, folders or globs, local or fsspec URLs.
    allow_empty : bool
        Accept an upload with no file (a retrain on the lake as it is).
    known : callable, optional
        ``known(sha256)`` gives the raw-zone record of a file already in the lake; such a file was
        checked when it was accepted and is not read again.
    settings : Settings
        For the plausible window of ``DATA`` (``dates_from``, ``dates_ahead_days``) and the
        staging folder (``staging_dir``).

    Returns
    -------
    list of Received
        One per file read or recognized, in order, then one per file left out (:func:`list_upload`).

    Raises
    ------
    UploadError
        At the first file that cannot be accepted, or when the upload holds no export; what was
        staged is removed.
    """
    listing = list_upload(paths)
    dates_within = plausible_dates(settings.dates_from, days_ahead=settings.dates_ahead_days)
    if not listing.files and not allow_empty:
        raise UploadError("the upload holds no file")
    staging = Staging(settings.staging_dir)
    received: list[Received] = []
    seen: dict[str, str] = {}
    try:
        for path in listing.files:
            fetched = fetch_source(path, staging=staging.path)
            name = _name(path)
            sha = fetched.sha256
            record = known(sha) if known else None
            if sha in seen or record is not None:
                if fetched.copied:
                    staging.discard(fetched.path)
                received.append(Received(path, name, sha, record=record, duplicate_of=seen.get(sha)))
            else:
                if progress:
                    progress(f"reading {name} ({fetched.size / 1e6:,.1f} MB)")
                export = stage_export(fetched, name, staging=staging, dates_within=dates_within, progress=progress)
                received.append(Received(path, name, sha, export=export))
            seen.setdefault(sha, name)
        staging.wait()
    except BaseException:
        staging.close()
        raise
    received.extend(Received(path, _name(path), None, ignored=why) for path, why in listing.ignored)
    return received


def receive(paths: Iterable[str], *, lake: Lake, settings: Settings, progress: Progress | None = None,
            allow_empty: bool = False) -> list[Received]:
    """Read and check an upload bound for ``lake``: files the lake already holds are not read again."""
    return read_upload(paths, settings=settings, progress=progress, allow_empty=allow_empty,
                       known=lambda sha: catalog.raw_record(lake, sha))


@dataclass(frozen=True)
class Listing:
    """The files an upload names: the exports to read, and the others with why they are left out."""

    files: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]


def list_upload(paths: Iterable[str]) -> Listing:
    """Files named, and the files inside folders or matching globs, in order.

    Hidden files (``.DS_Store``) and files that are no export by their name (``README.txt``) are
    left out unread, so that an upload folder may hold notes beside the exports; a file named
    on its own is treated alike, since a shell glob (``upload/*``) names every file on its own.

    Raises
    ------
    UploadError
        When a path names nothing, or when paths are named but none of their files is an export.
    """
    paths = [str(p) for p in paths]
    files: list[str] = []
    ignored: dict[str, str] = {}
    for path in paths:
        found, hidden = list_source(path)
        for file in found:
            why = not_an_export(_name(file))
            if why:
                ignored.setdefault(file, why)
            else:
                files.append(file)
        for file in hidden:
            ignored.setdefault(file, "hidden")
    if paths and not files:
        left_out = "; ".join(f"{_name(p)} is {why}" for p, why in list(ignored.items())[:3])
        more = f" (and {len(ignored) - 3} more)" if len(ignored) > 3 else ""
        raise UploadError(f"the upload holds no export: {left_out}{more}. An export's name ends in "
                          f"{', '.join(EXPORT_SUFFIXES[:-1])} or {EXPORT_SUFFIXES[-1]}, maybe followed by .gz")
    return Listing(tuple(dict.fromkeys(files)), tuple(ignored.items()))


def expand_paths(paths: Iterable[str]) -> list[str]:
    """The export files an upload names, in order (see :func:`list_upload`)."""
    return list(list_upload(paths).files)


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def upload_summary(received: Sequence[Received]) -> pd.DataFrame:
    """One line per file: kind, format, sheets, rows, cars, period; or why it was not read."""
    if not received:
        return pd.DataFrame({"file": ["(no new upload: the lake is used as it is)"]})
    lines = []
    for r in received:
        if r.ignored:
            lines.append({"file": r.name, "note": f"ignored: {r.ignored}"})
        elif r.duplicate_of:
            lines.append({"file": r.name, "note": f"same bytes as {r.duplicate_of}: read once"})
        elif r.record is not None:
            rec = r.record
            lines.append({"file": r.name, "kind": rec["kind"], "format": rec["format"],
                          "sheets": len(rec["sheets"]) or None, "rows": rec["rows"], "cars": rec["cars"],
                          "period": f"{rec['period'][0][:16]} to {rec['period'][1][:16]}".replace("T", " "),
                          "note": "already in the lake (same bytes): not read again"})
        else:
            e = r.export
            lines.append({"file": e.name, "kind": e.kind, "format": e.format, "sheets": len(e.sheets) or None,
                          "rows": e.rows, "cars": e.cars, "period": read_period_text(e.period), "note": ""})
    columns = ["file", "kind", "format", "sheets", "rows", "cars", "period", "note"]
    table = pd.DataFrame(lines, columns=columns).fillna({"kind": "", "format": "", "period": "", "note": ""})
    return table.astype({"sheets": "Int64", "rows": "Int64", "cars": "Int64"})  # counts stay whole beside blank lines


def land(received: Sequence[Received], *, lake: Lake, settings: Settings,
         progress: Progress | None = None) -> list[dict]:
    """Write the upload's files into the raw zone, holding the lake's lock; one record per distinct file.

    Content-addressed keys make this idempotent: a file already in the lake (landed earlier, or by
    another ingest of the same upload while this one waited for the lock) is recognized and left as
    it is (its record says ``already_in_lake``).
    """
    with _lake_lock(lake, settings, "land an upload"):
        return _land(received, lake=lake, settings=settings, progress=progress)


def _land(received: Sequence[Received], *, lake: Lake, settings: Settings,
          progress: Progress | None = None) -> list[dict]:
    changed = [r.name for r in received if r.export is not None and not unchanged(r.export.original)]
    if changed:
        raise UploadError("changed on disk since it was checked: upload it again", file=changed[0])
    clear = people.clear_records(lake)
    if clear:
        raise LakeError(f"the lake {lake.url} holds people's ids in clear ({len(clear)} falhas file"
                        f"{'s' if len(clear) != 1 else ''} landed by an older Käfer, e.g. {clear[0]['name']}): run "
                        "`kafer pseudonymize` once, then ingest again")
    key = None
    records = []
    for item in received:
        if item.duplicate_of or item.ignored:
            continue
        if item.record is not None:
            records.append({**item.record, "already_in_lake": True})
            continue
        export = item.export
        record = catalog.raw_record(lake, export.sha256)
        if record is None:
            if progress:
                progress(f"landing {export.name} in the raw zone")
            record = {
                "sha256": export.sha256, "name": export.name, "kind": export.kind, "format": export.format,
                "size": export.size, "sheets": list(export.sheets), "rows": export.rows, "cars": export.cars,
                "period": [export.period[0].isoformat(), export.period[1].isoformat()],
                "landed_at": utc_now_iso(),
                "keys": catalog.raw_keys(sha256=export.sha256, kind=export.kind, fmt=export.format),
            }
            original, rows = export.original.path, export.rows_path
            if people.holds_people(export.kind):  # its original bytes name people: only its rows are kept
                key = key or people.person_key(settings, lake)
                original, rows = None, people.pseudonymize_file(rows, export.kind, key, folder=export.staging.path)
                record.update(people=people.METHOD, keys={**record["keys"], "file": None})
            catalog.save_raw_from(lake, record, original=original, rows=rows)
            records.append({**record, "already_in_lake": False})
        else:
            records.append({**record, "already_in_lake": True})
    return records


def landed_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One line per distinct file of the upload: what the raw zone holds for it."""
    return pd.DataFrame([{"file": r["name"], "kind": r["kind"], "rows": r["rows"], "cars": r["cars"],
                          "raw key": r["keys"]["file"] or r["keys"]["rows"],
                          "state": "already in the lake" if r["already_in_lake"] else "landed"} for r in records],
                        columns=["file", "kind", "rows", "cars", "raw key", "state"])


def manifest_summary(manifest: dict) -> pd.DataFrame:
    """The facts of a curated version, one per line, for people."""
    facts = {
        "version": manifest["version"],
        "created at (UTC)": manifest["created_at"],
        "files merged now": ", ".join(manifest.get("new_sources", [])) or "none (nothing new)",
        "files in the lake": len(manifest["sources"]),
        "cars": manifest["cars"],
        "cars with a known label": manifest["labelled_cars"],
        "road-test failures among them": manifest["positives"],
        "label rate": "-" if manifest["label_rate"] is None else f"{manifest['label_rate']:.2%}",
        "falhas cover": "; ".join(f"{s[:16]} to {e[:16]}" for s, e in manifest["falhas_coverage"]) or "nothing",
    }
    for kind, (start, end) in sorted(manifest["periods"].items()):
        facts[f"{kind} rows / period"] = f"{manifest['rows'][kind]:,} / {start[:16]} to {end[:16]}"
    for i, filtered in enumerate(manifest.get("filtered_falhas", [])):
        facts[f"falhas left out ({i + 1})"] = filtered_note(filtered)
    return pd.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})


def filtered_note(filtered: dict) -> str:
    """Why a falhas export was taken as filtered, and how to overrule it, in words (an entry of a
    manifest's ``filtered_falhas``)."""
    name = filtered["name"]
    if filtered.get("named"):
        return (f"{name} is taken as filtered because falhas_filtered in kafer.toml names it: its period makes no "
                "label known. If it is complete, remove it from falhas_filtered and run kafer rebuild.")
    overrule = (f"If it is complete (the plant really had so few road-test failures), add it to kafer.toml as "
                f"falhas_complete = [\"{name}\"] and run kafer rebuild.")
    if "failures" not in filtered:  # judged by an older Käfer: no road-test defect at all
        return (f"{name} holds no road-test defect although {filtered['road_tests']:,} cars were road-tested in its "
                f"period: taken as a filtered export, its period makes no label known. {overrule}")
    seen = filtered.get("rate_road_tests", 0)
    rate = (f"the failure rate the lake's other falhas exports show ({filtered['rate']:.1%} over {seen:,} road "
            "tests)" if seen else f"the plant's expected failure rate ({filtered['rate']:.1%}: no other falhas "
            "export in the lake logs a road-test failure yet)")
    held = (f"holds defects of other halls but no road-test ({filtered.get('hall', 'ROD')}) defect"
            if filtered["failures"] == 0 else f"logs only {filtered['failures']:,} road-test failures")
    share = filtered.get("share")
    bound = f"under {share:.0%} of" if share else "below"
    return (f"{name} {held} among the {filtered['road_tests']:,} cars road-tested in its period, {bound} "
            f"{rate}, which gives about {filtered['expected']:,.0f}; a complete export shows so few "
            f"{_odds(filtered['chance'])}. Taken as cut by hall (exported for some halls only), its period makes no "
            f"label known. {overrule}")


def _odds(chance: float) -> str:
    """A small probability in words: ``about 1 time in 80``."""
    if chance <= 0 or 1 / chance >= 1e6:
        return "less than 1 time in a million"
    return f"about 1 time in {1 / chance:,.0f}"


def merge(*, lake: Lake, settings: Settings, progress: Progress | None = None) -> dict:
    """Merge every landed file not yet in the curated table into a new version of it.

    The features of every car the new files touch are rebuilt from all of that car's rows in the
    lake; ``label_known`` is recomputed for every car, since new falhas widen the covered period
    (and a filtered falhas export, see :func:`kafer.features.label_coverage`, covers nothing).
    When the current version was built with other feature definitions
    (:func:`kafer.features.feature_definitions`), every car is rebuilt instead (:func:`rebuild`).

    Returns
    -------
    dict
        The manifest of the (new or unchanged) current version, with ``new_sources`` listing the
        files this merge added (empty when there was nothing new).
    """
    with _lake_lock(lake, settings, "merge") as held:
        return _merge(lake=lake, settings=settings, held=held, progress=progress)


def _lake_lock(lake: Lake, settings: Settings, purpose: str):
    """The lake's lock, which every write to the raw and curated zones holds."""
    return hold(lake, "lake", purpose=purpose, **settings.lock_options)


def _merge(*, lake: Lake, settings: Settings, held: LockInfo, progress: Progress | None = None) -> dict:
    manifest = catalog.current_manifest(lake)
    if manifest is not None and manifest.get("feature_definitions") != feature_definitions(settings):
        return _rebuild(lake, settings, manifest, held, progress)
    merged = {s["sha256"] for s in manifest["sources"]} if manifest else set()
    records = catalog.raw_records(lake)
    new = sorted((r for r in records if r["sha256"] not in merged), key=lambda r: (r["landed_at"], r["name"]))
    if not new:
        if manifest is None:
            raise LakeError(f"the lake {lake.url} holds no landed file to merge: ingest an upload first")
        return {**manifest, "new_sources": []}
    latest = {r["sha256"]: r for r in records}  # a record pseudonymized since names its new rows
    sources = ([latest.get(s["sha256"], s) for s in manifest["sources"]] if manifest else []) + new
    touched = pa.array(sorted(set().union(*(catalog.raw_cars(lake, r) for r in new))), pa.string())
    if progress:
        progress(f"rebuilding the features of {len(touched):,} cars from all their rows in the lake")
    table, facts = _build_in_batches(lake, sources, touched, settings=settings, progress=progress)
    if manifest is not None:
        old = catalog.features(lake, manifest["version"])
        table = pd.concat([old[~old["KNR"].isin(touched.to_pylist())], table], ignore_index=True)
        old_facts = catalog.facts(lake, manifest["version"])
        facts = pa.concat_tables([old_facts.filter(pc.invert(pc.is_in(old_facts["KNR"], touched))), facts])
    return _save_version(lake, settings, held, manifest, sources, new, table, facts)


def rebuild(*, lake: Lake, settings: Settings, progress: Progress | None = None) -> dict:
    """Rebuild every car of the lake from the raw zone into a new curated version.

    What ``kafer rebuild`` runs, and what :func:`merge` does by itself when the feature definitions
    changed: the new version is built from the landed files alone (never from an older curated
    version), so it is exactly what a fresh ingest of the same files gives. Files landed but not
    merged yet are merged with it. Cars are built in batches (``merge_batch_cars``), so memory
    stays that of a batch's rows whatever the lake holds.

    Returns
    -------
    dict
        The new version's manifest, with ``new_sources`` as for :func:`merge` and ``rebuilt`` true.

    Raises
    ------
    LakeError
        When the raw zone holds no landed file.
    """
    with _lake_lock(lake, settings, "rebuild") as held:
        return _rebuild(lake, settings, catalog.current_manifest(lake), held, progress)


def _rebuild(lake: Lake, settings: Settings, manifest: dict | None, held: LockInfo,
             progress: Progress | None) -> dict:
    merged = {s["sha256"] for s in manifest["sources"]} if manifest else set()
    sources = sorted(catalog.raw_records(lake), key=lambda r: (r["landed_at"], r["name"]))
    if not sources:
        raise LakeError(f"the lake {lake.url} holds no landed file to rebuild from: ingest an upload first")
    new = [s for s in sources if s["sha256"] not in merged]
    if progress:
        progress(f"rebuilding every car from the raw zone ({len(sources)} files) with feature definitions "
                 f"{feature_definitions(settings)}")
    cars = pa.array(sorted(set().union(*(catalog.raw_cars(lake, r) for r in sources))), pa.string())
    table, facts = _build_in_batches(lake, sources, cars, settings=settings, progress=progress)
    return _save_version(lake, settings, held, manifest, sources, new, table, facts, rebuilt=True)


def _build_in_batches(lake: Lake, sources: list[dict], cars: pa.Array, *, settings: Settings,
                      progress: Progress | None) -> tuple[pd.DataFrame, pa.Table]:
    """The per-car table and facts of ``cars`` (sorted), from all their rows in ``sources``.

    Cars are taken ``settings.merge_batch_cars`` at a time, so only one batch's raw rows are in
    memory; raw rows are sorted by KNR, so a batch's range of KNRs reads few row groups. A batch's
    facts are built on a second thread while its features are (both read the same rows, and Arrow,
    NumPy and pandas let go of Python's lock for much of their work).
    """
    tables, facts = [], []
    size = max(1, settings.merge_batch_cars)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafer-facts") as beside:
        for start in range(0, len(cars), size):
            batch = cars.slice(start, size)
            rows = _raw_tables(lake, sources, cars=batch)
            built = beside.submit(build_facts, rows["resultados"], rows["falhas"], rows["status"], settings=settings)
            tables.append(build_features(rows["resultados"], rows["falhas"], rows["status"], settings=settings))
            facts.append(built.result())
            del rows, built
        if progress and len(cars) > size:
            progress(f"built {min(start + size, len(cars)):,} of {len(cars):,} cars")
    return pd.concat(tables, ignore_index=True), pa.concat_tables(facts)


def _save_version(lake: Lake, settings: Settings, held: LockInfo, parent: dict | None, sources: list[dict],
                  new: list[dict], table: pd.DataFrame, facts: pa.Table, *, rebuilt: bool = False) -> dict:
    """Label every car from the falhas coverage, then write the new curated version and its pointer."""
    periods = [_falhas_period(lake, s, settings) for s in sources if s["kind"] == "falhas"]
    coverage, filtered = label_coverage(periods, table.set_index("KNR")["road_test_at"], settings=settings)
    table = with_label_known(table, coverage, maturity_hours=settings.label_maturity_hours)
    table = table.sort_values("KNR", ignore_index=True).loc[:, list(table_columns(settings))]
    version = "v" + utc_stamp()
    manifest = _manifest(version, parent, sources, new, table, coverage, filtered)
    manifest["feature_definitions"] = feature_definitions(settings)
    if rebuilt:
        manifest["rebuilt_from_raw"] = True
    catalog.save_curated(lake, version, table, manifest, facts=_sorted_facts(facts), held=held)
    return {**manifest, "new_sources": [s["name"] for s in new], **({"rebuilt": True} if rebuilt else {})}


def _raw_tables(lake: Lake, sources: list[dict], *, cars: pa.Array | None) -> dict[str, pa.Table | None]:
    """The landed rows of each kind of ``sources``, only of ``cars`` when given (all in memory)."""
    return {kind: catalog.raw_rows(lake, [s for s in sources if s["kind"] == kind], cars=cars) for kind in COLUMNS}


def _sorted_facts(facts: pa.Table) -> pa.Table:
    return facts.sort_by([("KNR", "ascending"), ("kind", "ascending"), ("key", "ascending")])


def ingest(paths: Iterable[str], *, lake: Lake, settings: Settings, progress: Progress | None = None) -> dict:
    """Read and check an upload, land it, merge it; the report says what was received.

    Files already in the lake are recognized by their content and not read again.
    """
    received = receive(paths, lake=lake, settings=settings, progress=progress)
    files = upload_summary(received)
    with _lake_lock(lake, settings, f"ingest {', '.join(r.name for r in received[:3])}") as held:
        records = _land(received, lake=lake, settings=settings, progress=progress)
        del received  # the merge reads the rows back from the lake: free the upload's copy first
        manifest = _merge(lake=lake, settings=settings, held=held, progress=progress)
    return {"files": files, "landed": records, "manifest": manifest}


def _falhas_period(lake: Lake, record: dict, settings: Settings) -> FalhasPeriod:
    """What a landed falhas export holds for the labels: its period, the cars it logs a road-test
    (label hall) defect for, and whether it logs defects of other halls too."""
    rows = catalog.raw_rows(lake, [record], columns=["KNR", "HALLE"])
    label = pc.equal(rows["HALLE"], settings.label_hall)
    halls = set(pc.unique(rows["HALLE"]).to_pylist()) - {None, "", settings.label_hall}
    return FalhasPeriod(record["name"], *_period(record), frozenset(pc.unique(rows.filter(label)["KNR"]).to_pylist()),
                        other_halls=bool(halls))


def _period(record: dict) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(record["period"][0]), dt.datetime.fromisoformat(record["period"][1])


def _manifest(version: str, parent: dict | None, sources: list[dict], new: list[dict], table: pd.DataFrame,
              coverage: list[tuple], filtered: list[dict]) -> dict:
    periods = {}
    for kind in COLUMNS:
        of_kind = [_period(s) for s in sources if s["kind"] == kind]
        if of_kind:
            periods[kind] = [min(p[0] for p in of_kind).isoformat(), max(p[1] for p in of_kind).isoformat()]
    known = table["label_known"]
    return {
        "version": version,
        "created_at": utc_now_iso(),
        "parent": parent["version"] if parent else None,
        "sources": sources,
        "added": [s["sha256"] for s in new],
        "rows": {kind: sum(s["rows"] for s in sources if s["kind"] == kind) for kind in COLUMNS},
        "periods": periods,
        "falhas_coverage": [[s.isoformat(), e.isoformat()] for s, e in coverage],
        "filtered_falhas": filtered,
        "cars": int(len(table)),
        "labelled_cars": int(known.sum()),
        "positives": int(table.loc[known, "label_rod"].sum()),
        "label_rate": float(table.loc[known, "label_rod"].mean()) if known.any() else None,
    }
