"""Score cars with the production model: the ranked inspection list, or a few cars by their KNR.

An upload is read and checked exactly as for ingest, but not added to the lake; its cars get the
same features and facts as in training, the model kept in production scores them, and each car
gets the two or three facts that raise its risk most, in words (:func:`kafer.explain.reasons`). The ranked list is
written as CSV or as the workbook the plant opens (the cars, then which model made the list and
how to read it). Cars the lake holds already are scored by their KNR (:func:`predict_cars`), as
the lake's current curated version knows them: from their rows before their road test, or so far.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import Settings
from .errors import CarError, LakeError, OutputError, RegistryError, UploadError
from .explain import reasons
from .facts import build_facts
from .i18n import current, mark, ntr, tr
from .i18n import datetime as written_moment
from .i18n import number as written
from .features import build_features, last_checkpoints
from .ingest import list_upload, read_upload
from .lake import Lake
from .metrics import threshold_share
from .readers import COLUMNS, KNR_PATTERN, Progress, schema


@dataclass(frozen=True)
class Cars:
    """The cars of an upload as the production model sees them.

    Attributes
    ----------
    table : pandas.DataFrame
        Their per-car table, built as ingest builds it (:func:`kafer.features.build_features`).
    facts : pyarrow.Table
        Their facts (:func:`kafer.facts.build_facts`).
    where : pandas.DataFrame
        ``KNR``, ``at_road_test`` (whether the car reached its road test), ``road_test_at``,
        ``last_checkpoint`` and ``last_checkpoint_at`` (its latest status event), in the table's order.
    """

    table: pd.DataFrame
    facts: pa.Table
    where: pd.DataFrame


def upload_cars(paths: Iterable[str], *, settings: Settings, lake: Lake | None = None,
                progress: Progress | None = None) -> Cars:
    """The cars of an upload, each from all its rows: the upload's, and the lake's when ``lake`` is given
    (earlier uploads may have brought a car's first rows); nothing is written to the lake.

    Each car's features come from its rows before its road test, so a car already at its road test
    gets the same features whichever export, and whichever lake, brought its rows. A car still on
    the line gets the features of what is known so far.

    Raises
    ------
    UploadError
        When no path is given, or the upload holds no export or a file that cannot be accepted.
    """
    from . import catalog

    paths = list(paths)
    if not paths:
        raise UploadError("no upload given: name the export files or folders of the cars to score")
    received = read_upload(paths, settings=settings, progress=progress)
    exports = [r.export for r in received if r.export is not None]
    tables = {kind: [e.read_rows() for e in exports if e.kind == kind] for kind in COLUMNS}
    if lake is not None and any(tables.values()):
        knr = pc.unique(pa.chunked_array([t["KNR"] for parts in tables.values() for t in parts], pa.string()))
        records = catalog.raw_records(lake)
        for kind in COLUMNS:
            landed = catalog.raw_rows(lake, [r for r in records if r["kind"] == kind], cars=knr)
            if landed is not None and landed.num_rows:
                tables[kind].append(landed.select(list(COLUMNS[kind])).cast(schema(kind)))
        if progress and records:
            progress(f"read the lake's earlier rows of the {len(knr):,} cars")
    merged = {kind: pa.concat_tables(parts) if parts else None for kind, parts in tables.items()}
    rows = (merged["resultados"], merged["falhas"], merged["status"])
    table = build_features(*rows, settings=settings)
    where = table[["KNR", "road_test_at"]].merge(last_checkpoints(merged["status"]), on="KNR", how="left")
    where.insert(1, "at_road_test", where["road_test_at"].notna().to_numpy())
    return Cars(table, build_facts(*rows, settings=settings), where)


def lake_cars(knr: Iterable[str], *, lake: Lake) -> Cars:
    """Cars the lake holds already, as its current curated version knows them: each from its rows
    before its road test, or from all its rows so far when it has not reached it.

    Raises
    ------
    CarError
        When a KNR is malformed or not in the lake (the message names each and what the lake holds).
    LakeError
        When the lake holds no curated table yet.
    """
    from . import catalog

    wanted = list(dict.fromkeys(str(k).strip() for k in knr))
    malformed = [k for k in wanted if not re.fullmatch(KNR_PATTERN, k)]
    if malformed:
        raise CarError(f"{', '.join(map(repr, malformed))} {'is not a KNR' if len(malformed) == 1 else 'are not KNRs'}: "
                       "a KNR is YYYY-NNNNNNN, e.g. 2023-2056234")
    version = catalog.current_version(lake)
    if version is None:
        raise LakeError(f"the lake {lake.url} holds no car yet: ingest an upload first (kafer ingest FOLDER), or "
                        "score exports with kafer predict EXPORTS --out ranked.xlsx")
    table = catalog.features(lake, version)
    known = set(table["KNR"].astype(str))
    unknown = [k for k in wanted if k not in known]
    if unknown:
        built = pd.to_datetime(table["produced_at"]).dropna()
        held = (f"its {len(table):,} cars were built {built.min():%Y-%m-%d} to {built.max():%Y-%m-%d}"
                if len(built) else f"it holds {len(table):,} cars")
        raise CarError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the lake {lake.url} ({held}): "
                       "check the number, or score the car's exports with kafer predict EXPORTS --out ranked.xlsx")
    cars = table[table["KNR"].astype(str).isin(wanted)]
    cars = cars.set_index(cars["KNR"].astype(str)).loc[wanted].reset_index(drop=True)
    selected = pa.array(wanted, pa.string())
    facts = catalog.facts(lake, version, cars=selected) if catalog.has_facts(lake, version) else None
    records = [r for r in catalog.raw_records(lake) if r["kind"] == "status"]
    status = catalog.raw_rows(lake, records, cars=selected, columns=list(COLUMNS["status"]))
    where = cars[["KNR", "road_test_at"]].merge(last_checkpoints(status), on="KNR", how="left")
    where.insert(1, "at_road_test", where["road_test_at"].notna().to_numpy())
    return Cars(cars, facts, where)


def production_model(lake: Lake, *, progress: Progress | None = None):
    """The production model and its registry metadata; says (through ``progress``) when the libraries
    its scores depend on differ from those it was built with.

    Raises
    ------
    RegistryError
        When no model was ever kept in production.
    """
    from . import registry
    from .model import library_differences, load_model

    meta = registry.production(lake)
    if meta is None:
        raise RegistryError(f"the lake {lake.url} has no production model yet: retrain, then keep a "
                            "candidate with `kafer decide RUN keep-new --by NAME --why TEXT`")
    model = load_model(registry.load_artifact(lake, meta["version"]))
    note = library_differences(model.meta, name=f"production model {meta['version']}")
    if note and progress:
        progress(note)
    return model, meta


def rank(table: pd.DataFrame, probability: np.ndarray, *, budget: float, threshold: float | None,
         at_road_test: np.ndarray | None = None) -> pd.DataFrame:
    """KNR, probability, rank (1 = riskiest) and whether the car falls in the inspection budget.

    Cars at their road test come first, riskiest first, then the cars still on the line (scored on
    what is known so far), riskiest first: inspectors test the cars that are there. With the
    production model's operating threshold (the score above which its riskiest ``budget`` share of
    evaluation cars lay), a car is in the budget when it reaches that threshold, so the answer does
    not depend on how many cars are scored together, and a car still on the line that already
    reaches it is flagged; without one, the bar is the risk of the riskiest ``ceil(budget * n)`` of
    the ``n`` cars at their road test (of all cars when none is).

    Parameters
    ----------
    at_road_test : array of bool, optional
        Per car of ``table``, whether it reached its road test (default: every car did).
    """
    tested = np.ones(len(table), dtype=bool) if at_road_test is None else np.asarray(at_road_test, dtype=bool)
    out = pd.DataFrame({"KNR": table["KNR"].to_numpy(), "probability": np.asarray(probability, dtype=float),
                        "at_road_test": tested})
    out = out.sort_values(["at_road_test", "probability", "KNR"], ascending=[False, False, True], ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    if threshold is None:
        pool = np.sort(out.loc[out["at_road_test"], "probability"].to_numpy() if out["at_road_test"].any()
                       else out["probability"].to_numpy())[::-1]
        threshold = pool[math.ceil(budget * len(pool)) - 1] if len(pool) else np.inf
    out["in_budget"] = out["probability"] >= threshold
    return out.drop(columns="at_road_test")


#: What a car gets when none of its facts raises its risk above a typical car's.
NO_REASON = "no fact raises its risk above a typical car's"


def with_reasons(ranked: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """``ranked`` with a ``reasons`` column: each car's reasons in words, ``; ``-separated, strongest first."""
    text = found.sort_values(["KNR", "rank"]).groupby("KNR")["words"].agg("; ".join)
    return ranked.assign(reasons=ranked["KNR"].map(text).fillna(NO_REASON).to_numpy())


def predict_upload(paths: Iterable[str], *, settings: Settings, progress: Progress | None = None) -> pd.DataFrame:
    """Score every car of an upload with the production model of the settings' lake, each from all its
    rows in the upload and the lake: cars at their road test first, riskiest first, then the cars
    still on the line; each with where it is and its reasons."""
    lake = Lake(settings.lake)
    model, meta = production_model(lake, progress=progress)
    return scored_list(model, meta, upload_cars(paths, settings=settings, lake=lake, progress=progress),
                       settings=settings)


def predict_cars(knr: Iterable[str], *, settings: Settings, progress: Progress | None = None) -> pd.DataFrame:
    """Score cars the settings' lake holds already, by their KNR, with its production model: as
    :func:`predict_upload` lists them, each as the lake knows it (:func:`lake_cars`).

    Raises
    ------
    CarError
        When a KNR is malformed or not in the lake.
    RegistryError
        When no model was ever kept in production.
    """
    lake = Lake(settings.lake)
    cars = lake_cars(knr, lake=lake)
    model, meta = production_model(lake, progress=progress)
    return scored_list(model, meta, cars, settings=settings)


def scored_list(model, meta: Mapping, cars: Cars, *, settings: Settings) -> pd.DataFrame:
    """The ranked list of ``cars`` by ``model`` (the production model, ``meta`` its registry entry):
    rank, risk, whether in the inspection budget, where each car is, and its reasons."""
    threshold = (meta.get("metrics") or {}).get("operating_threshold")
    scored = rank(cars.table, model.predict_proba(cars.table, cars.facts), budget=settings.operating_budget,
                  threshold=threshold, at_road_test=cars.where["at_road_test"].to_numpy())
    scored.insert(1, "model_version", meta["version"])
    scored = scored.merge(cars.where, on="KNR", how="left")
    return with_reasons(scored, reasons(model, cars.table, cars.facts))


def car_lines(ranked: pd.DataFrame, facts: Mapping) -> str:
    """Each car of a short list in words, riskiest first: its rank, risk, whether it is in the
    inspection budget (against the bar it must reach), where it is, and why."""
    bar = facts.get("threshold")
    budget = _percent(facts["budget"])
    rule = (tr("the bar is {bar}, the risk of the riskiest {budget} of the production model's evaluation cars",
               bar=_percent(bar, 1), budget=budget) if bar is not None else
            tr("no bar was recorded: the riskiest {budget} of these cars", budget=budget))
    lines = [ntr("{count} car scored with production model {version} ({family}); {rule}.",
                 "{count} cars scored with production model {version} ({family}); {rule}.", len(ranked),
                 version=facts["model"]["version"], family=facts["model"]["family"], rule=rule)]
    for row in ranked.itertuples(index=False):
        if bar is None:
            inside = tr("in the inspection budget") if row.in_budget else tr("not in the inspection budget")
        else:
            inside = (tr("in the inspection budget (at or above the bar)") if row.in_budget
                      else tr("not in the inspection budget (below the bar)"))
        if row.at_road_test:
            place = tr("at its road test {when}", when=_when(row.road_test_at))
        elif isinstance(row.last_checkpoint, str):
            place = tr("still on the line, last seen at {checkpoint} {when}: a risk so far, from what was known then",
                       checkpoint=row.last_checkpoint, when=_when(row.last_checkpoint_at))
        else:
            place = tr("not at its road test yet: a risk so far")
        lines += [tr("{rank}. {knr}  risk {risk}, {inside}; {place}.", rank=f"{row.rank:>3}", knr=row.KNR,
                     risk=_percent(row.probability, 1), inside=inside, place=place),
                  "     " + tr("Why: {reasons}.", reasons=row.reasons)]
    return "\n".join(lines)


def _when(moment) -> str:
    if moment is None or pd.isna(moment):
        return tr("(time unknown)")
    return pd.Timestamp(moment).strftime(_MINUTE[current()])


#: The formats the ranked list is written in, by the output's file suffix.
FORMATS = {".xlsx": mark("workbook"), ".csv": mark("CSV")}


def output_format(out: str) -> str | None:
    """The format ``out`` asks for (``".xlsx"`` or ``".csv"``), or ``None`` when no file is wanted.

    Checked before scoring, so a wrong name costs no reading.

    Raises
    ------
    OutputError
        When ``out`` ends otherwise, names a workbook at a URL, or lies in a missing local folder.
    """
    if not out:
        return None
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"cannot write the ranked list to {out}: name a workbook (.xlsx) or a CSV file (.csv)")
    if "://" in out:
        if suffix == ".xlsx":
            raise OutputError(f"cannot write the workbook to {out}: name a local file")
    elif not Path(out).resolve().parent.is_dir():
        raise OutputError(f"cannot write the ranked list to {out}: the folder {Path(out).parent} does not exist")
    return suffix


def ranking_facts(ranked: pd.DataFrame, *, paths: Iterable[str], settings: Settings) -> dict:
    """What the list's reader needs to know besides the cars: the model that scored them, the upload,
    the inspection budget and the threshold, and when the list was made (read from the registry).

    Returns
    -------
    dict
        ``made_at`` (ISO UTC), ``lake``, ``files`` (names), ``budget``, ``threshold`` (or ``None``),
        ``threshold_tolerance`` and ``model``: ``version``, ``family``, ``run``, ``data_version``, ``trained_on``, and
        ``since``, ``by``, ``why`` of the decision that put it in production (``None`` if unknown).

    Raises
    ------
    RegistryError
        When ``ranked`` is empty or names a version the registry does not hold.
    """
    from . import registry

    if ranked.empty:
        raise RegistryError("an empty ranked list names no model")
    version = str(ranked["model_version"].iloc[0])
    lake = Lake(settings.lake)
    meta = next((v for v in registry.versions(lake) if v["version"] == version), None)
    if meta is None:
        raise RegistryError(f"unknown model version {version!r} in the lake {lake.url}")
    kept = [d for d in registry.decisions(lake) if d["after"] == version and d["before"] != version]
    decision = kept[-1] if kept else {}
    return {
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lake": lake.url,
        "files": [file.replace("\\", "/").rsplit("/", 1)[-1] for file in list_upload(paths).files],
        "budget": settings.operating_budget,
        "threshold": (meta.get("metrics") or {}).get("operating_threshold"),
        "threshold_tolerance": settings.threshold_tolerance,
        "model": {"version": version, "family": meta.get("family"), "run": meta.get("run"),
                  "data_version": meta.get("data_version"), "trained_on": meta.get("trained_on"),
                  "since": decision.get("at"), "by": decision.get("by"), "why": decision.get("why")},
    }


def summary(ranked: pd.DataFrame, facts: Mapping) -> str:
    """The list in one line: how many cars, which model, how many in the inspection budget and why."""
    model = facts["model"]
    flagged = int(ranked["in_budget"].sum())
    on_line = int((~ranked["at_road_test"]).sum()) if "at_road_test" in ranked else 0
    where = tr(", {count} of them still on the line and scored on what is known so far",
               count=written(on_line)) if on_line else ""
    note = threshold_note(ranked, facts)
    return (tr("{cars} cars scored with production model {version} ({family}){where}; {flagged} fall in the "
               "inspection budget ({rule}).", cars=written(len(ranked)), version=model["version"],
               family=model["family"], where=where, flagged=written(flagged), rule=_budget_rule(facts))
            + (f" {note}" if note else ""))


def threshold_note(ranked: pd.DataFrame, facts: Mapping) -> str | None:
    """A sentence when the share of this list's cars at their road test that reach the operating threshold
    drifted far from the budget (:func:`kafer.metrics.threshold_share`), else ``None``."""
    if facts.get("threshold") is None:
        return None
    tested = ranked[ranked["at_road_test"]] if "at_road_test" in ranked else ranked
    share = threshold_share(int(tested["in_budget"].sum()), len(tested), budget=facts["budget"],
                            tolerance=facts.get("threshold_tolerance", Settings.threshold_tolerance))
    if not share["far"]:
        return None
    fewer = share["value"] < facts["budget"]
    budget = _percent(facts["budget"])
    values = {"share": _percent(share["value"], 1), "cars": written(len(tested)), "low": _percent(share["low"], 1),
              "high": _percent(share["high"], 1), "budget": budget}
    if fewer:
        return tr("The threshold flags {share} of the {cars} cars at their road test (95 % interval {low} to {high}), "
                  "far from the {budget} it was set for: fewer cars look as risky as the riskiest {budget} did when "
                  "the model was kept, so the list is shorter than planned: to use the whole budget, test the "
                  "riskiest {budget} of the list by rank, the flagged cars first. A plant that fails less often does "
                  "this as well as inputs that moved; kafer monitor tells which (how often the plant fails, what "
                  "moved in the inputs) and whether a retrain is due.", **values)
    return tr("The threshold flags {share} of the {cars} cars at their road test (95 % interval {low} to {high}), far "
              "from the {budget} it was set for: more cars look as risky as the riskiest {budget} did when the model "
              "was kept, so the list is longer than planned: when the inspectors cannot test every flagged car, test "
              "the riskiest {budget} by rank first. A plant that fails more often does this as well as inputs that "
              "moved; kafer monitor tells which (how often the plant fails, what moved in the inputs) and whether a "
              "retrain is due.", **values)


def line_note(ranked: pd.DataFrame) -> str:
    """Where the cars are, and how to read the risk of those still on the line, in words."""
    on_line = int((~ranked["at_road_test"]).sum()) if "at_road_test" in ranked else 0
    if not on_line:
        return tr("Every car of this list had reached its road test: each risk uses all that was known at it.")
    return tr("{count} of these cars had not reached their road test when their rows were exported: they are listed "
              "after the cars at the road test, with their last checkpoint and when. Their risk is a risk so far, "
              "from what was known at their last checkpoint: defects and NOK tests still to come are not in it, so it "
              "is usually lower than it will be at the road test. A car still on the line that is already in the "
              "budget is worth testing when it arrives; score the others again when they reach the road test.",
              count=written(on_line))


def budget_note(ranked: pd.DataFrame, facts: Mapping) -> str:
    """Why the cars in the budget can be more or fewer than the budget's share of this list."""
    flagged, n = int(ranked["in_budget"].sum()), len(ranked)
    share = f" ({_percent(flagged / n, 1)})" if n else ""
    budget = _percent(facts["budget"])
    if facts.get("threshold") is None:
        return tr("{flagged} of these {cars} cars{share} are in the inspection budget: the production model recorded "
                  "no operating threshold, so the budget is the riskiest {budget} of this list, and a car's flag "
                  "depends on which cars are scored with it.", flagged=written(flagged), cars=written(n), share=share,
                  budget=budget)
    note = threshold_note(ranked, facts)
    return tr("{flagged} of these {cars} cars{share} are in the inspection budget: a car is in it when its risk "
              "reaches {threshold}, the risk the riskiest {budget} of the production model's evaluation cars "
              "reached. The threshold does not depend on how many cars are scored together, so a car's flag is the "
              "same in any list; a riskier batch has more than {budget} of its cars in the budget, a safer one "
              "fewer.", flagged=written(flagged), cars=written(n), share=share,
              threshold=_percent(facts["threshold"], 1), budget=budget) + (f" {note}" if note else "")


def issue_ranking(ranked: pd.DataFrame, out: str, *, facts: Mapping, settings: Settings, by: str | None,
                  source: str, paths: Iterable[str], shadow: bool | None = None) -> str:
    """Issue the ranked list: mark its audit cars, write it to ``out`` (when given) and record it in the
    settings' lake (:mod:`kafer.lists`); say what was done. What every path that issues a list calls.

    Parameters
    ----------
    by : str or None
        Who issues it (blank: this machine's login); the desk passes the signed-in person.
    source : str
        One of :data:`kafer.lists.SOURCES`.
    paths : iterable of str
        The upload scored, whose files (and their SHA-256) the record names.
    shadow : bool, optional
        A shadow list, recorded as not acted on (``None``: the setting's).

    Raises
    ------
    OutputError
        When ``out`` cannot be written (nothing is recorded then).
    """
    from . import lists

    draft = lists.draft_list(ranked, facts=facts, settings=settings, by=by, source=source,
                             files=lists.upload_files(paths), shadow=shadow)
    shown = {**facts, "list": draft.record}
    return lists.issue(draft, lake=Lake(settings.lake), out=out,
                       write=lambda: save_ranking(draft.ranked, out, facts=shown))


def save_ranking(ranked: pd.DataFrame, out: str, *, facts: Mapping) -> str:
    """Write the ranked list to ``out`` (workbook or CSV, by its suffix) when given; say what was done.

    Raises
    ------
    OutputError
        When ``out`` names another format or cannot be written.
    """
    fmt = output_format(out)
    text = summary(ranked, facts)
    if fmt is None:
        return text
    try:
        if fmt == ".xlsx":
            ranking_workbook(ranked, facts).save(out)
        else:
            ranked.to_csv(out, index=False)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc} (is it open in another program?)") from None
    return tr("{summary} Written to {out} ({format}).", summary=text, out=out, format=tr(FORMATS[fmt]))


#: Known columns of the ranked list in the workbook: header and number format.
_SHOWN = {
    "rank": (mark("Rank"), "#,##0"),
    "KNR": ("KNR", "@"),
    "probability": (mark("Road-test risk"), "0.0 %"),
    "in_budget": (mark("In inspection budget"), "@"),
    "audit": (mark("Audit pick (random)"), "@"),
    "reasons": (mark("Why (what raises its risk most)"), "@"),
    "model_version": (mark("Model version"), "@"),
    "at_road_test": (mark("At the road test"), "@"),
    "road_test_at": (mark("Road test at"), "@"),
    "last_checkpoint": (mark("Last checkpoint"), "@"),
    "last_checkpoint_at": (mark("Last checkpoint at"), "@"),
}
#: Widest a column of the list gets, in characters; longer text wraps (its row grows by lines of
#: ``_LINE_HEIGHT`` points). The second sheet's text is cut into rows of at most ``_ABOUT_WIDTH``.
_MAX_WIDTH, _LINE_HEIGHT, _ABOUT_WIDTH = 60, 15, 90
#: Fill of the rows of the cars in the inspection budget, and of the other cars the audit picked.
_HIGHLIGHT, _AUDIT = "FFFFC7CE", "FFDDEBF7"
#: Names of the workbook's sheets.
LIST_SHEET, ABOUT_SHEET = "Inspection list", "About this list"


def ranking_workbook(ranked: pd.DataFrame, facts: Mapping):
    """The inspection list as an openpyxl workbook: the ranked cars, then what the list is.

    A pure function of the ranked list and its facts (:func:`ranking_facts`). The first sheet has
    one row per car, riskiest first, with a frozen header and a filter; risk is a number formatted
    as a percentage; the rows of the cars in the inspection budget are filled. ``rank``, ``KNR``,
    ``probability`` and ``in_budget`` come first; any other column of the list follows as text, in
    the list's order, then ``model_version`` when present.

    Returns
    -------
    openpyxl.Workbook
        Unsaved (``.save(path)``).
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(LIST_SHEET)
    first, last = ["rank", "KNR", "probability", "in_budget"], [c for c in ("model_version",) if c in ranked.columns]
    columns = first + [c for c in ranked.columns if c not in first + last] + last
    values = {c: ranked[c].tolist() if c in ("rank", "probability") else _as_text(ranked[c]).tolist()
              for c in columns}
    bold, fill = Font(name="Calibri", size=11, bold=True), PatternFill("solid", fgColor=_HIGHLIGHT)
    audited = ranked["audit"].to_numpy(dtype=bool) if "audit" in ranked else np.zeros(len(ranked), dtype=bool)
    fills = [fill if flagged else PatternFill("solid", fgColor=_AUDIT) if audit else None
             for flagged, audit in zip(ranked["in_budget"].to_numpy(dtype=bool), audited)]
    top, wrapped = Alignment(vertical="top"), Alignment(wrap_text=True, vertical="top")
    centered = Alignment(horizontal="center", vertical="top")
    numbers = {"rank": len(f"{len(ranked):,}"), "probability": len("100.0 %")}
    formats, alignments = [], []
    for i, column in enumerate(columns, start=1):
        header, number_format = _SHOWN.get(column, (column, "@"))
        header = tr(header) if column in _SHOWN else header
        longest = max(len(header), numbers.get(column) or max(map(len, values[column]), default=0))
        sheet.column_dimensions[get_column_letter(i)].width = min(longest + 2, _MAX_WIDTH)
        formats.append(number_format)
        alignments.append(wrapped if longest > _MAX_WIDTH else centered if column in ("rank", "in_budget") else top)
    long = [c for c, alignment in zip(columns, alignments) if alignment is wrapped]
    sheet.freeze_panes = "A2"
    sheet.print_title_rows = "1:1"
    _fit_to_page_width(sheet)
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(ranked) + 1}"
    sheet.append([_cell(sheet, _header(c), font=bold) for c in columns])
    for r, row_fill in enumerate(fills):
        lines = max((len(textwrap.wrap(values[c][r], _MAX_WIDTH - 2)) for c in long), default=1)
        if lines > 1:  # readers do not grow a row for wrapped text on their own
            sheet.row_dimensions[r + 2].height = _LINE_HEIGHT * lines
        sheet.append([_cell(sheet, values[c][r], number_format=formats[j], fill=row_fill,
                            alignment=alignments[j]) for j, c in enumerate(columns)])
    about = book.create_sheet(ABOUT_SHEET)
    about.column_dimensions["A"].width = 24
    about.column_dimensions["B"].width = _ABOUT_WIDTH + 2
    _fit_to_page_width(about)
    left = Alignment(horizontal="left")
    for label, value in about_rows(ranked, facts):
        if isinstance(value, float):
            about.append([_cell(about, label, font=bold), _cell(about, value, number_format="0.0 %", alignment=left)])
            continue
        for i, line in enumerate(textwrap.wrap(str(value), _ABOUT_WIDTH) or [""]):
            about.append([_cell(about, label if i == 0 else None, font=bold), _cell(about, line, number_format="@")])
    return book


def _header(column: str) -> str:
    """A column's header in the list, in the current language (a column Käfer does not know: its name)."""
    return tr(_SHOWN[column][0]) if column in _SHOWN else column


def about_rows(ranked: pd.DataFrame, facts: Mapping) -> list[tuple[str, object]]:
    """The second sheet's rows: which model, when, the upload's files, the budget, how to read the list."""
    model = facts["model"]
    trained = model.get("trained_on") or {}
    unknown = tr("unknown")
    kept = unknown
    if model.get("since"):
        kept = _moment(model["since"]) + (" " + tr("by {person}", person=model["by"]) if model.get("by") else "")
        kept += f" (\"{model['why']}\")" if model.get("why") else ""
    rows = [
        (tr("Inspection list"), tr("{cars} cars, riskiest first; {flagged} in the inspection budget (filled rows)",
                                   cars=written(len(ranked)), flagged=written(int(ranked["in_budget"].sum())))),
        (tr("Made at"), _moment(facts["made_at"])),
        (tr("Model version"), model["version"]),
        (tr("Model family"), tr(_FAMILY[model["family"]]) if model.get("family") in _FAMILY
         else model.get("family") or unknown),
        (tr("Trained on"), tr("{cars} cars ({failures} road-test failures) built {start} to {end}",
                              cars=written(trained["cars"]), failures=written(trained["positives"]),
                              start=_moment(trained["produced_from"], utc=False),
                              end=_moment(trained["produced_to"], utc=False)) if trained else unknown),
        (tr("Trained by run"), tr("{run} on data version {data}", run=model.get("run") or unknown,
                                  data=model.get("data_version") or unknown)),
        (tr("In production since"), kept),
        (tr("Inspection budget"), facts["budget"]),
        (tr("Operating threshold"), facts["threshold"] if facts.get("threshold") is not None
         else tr("none recorded: the riskiest share of this list is the budget")),
        (tr("Lake"), facts.get("lake") or unknown),
    ]
    issued = facts.get("list")
    if issued:
        rows += [(tr("List"), tr("{list}, recorded in the lake by {person}", list=issued["id"], person=issued["by"])),
                 (tr("Acted on"), tr("yes") if issued["acted_on"] else tr(
                     "no: a shadow list, recorded to measure what acting on the lists would find; pick cars as "
                     "before")),
                 (tr("Audit"), tr("{cars} cars picked at random whatever their risk ({share} of the cars at their "
                                  "road test, seed {seed}): blue rows, {column} {yes}", cars=written(issued["audit"]),
                                  share=_percent(issued["audit_share"], 1), seed=issued["audit_seed"],
                                  column=tr("Audit pick (random)").split(" (")[0], yes=tr("yes"))
                  if issued["audit_share"] else tr("none (audit_share is 0)"))]
    files = facts.get("files") or []
    rows += [(tr("Upload files") if i == 0 else "", name) for i, name in enumerate(files)]
    rows += [(tr("How to read this list") if i == 0 else "", line) for i, line in enumerate(_reading(ranked, facts))]
    return rows


#: What each model family is, in words.
_FAMILY = {"hgb": mark("hgb (gradient boosting, scikit-learn)"), "keras": mark("keras (neural network)"),
           "ensemble": mark("ensemble (gradient boosting and a neural network, stacked)")}


def _budget_rule(facts: Mapping) -> str:
    budget = _percent(facts["budget"])
    if facts.get("threshold") is None:
        return tr("the riskiest {budget} of this list", budget=budget)
    return tr("a risk of at least {threshold}, reached by the riskiest {budget} of the model's evaluation cars",
              threshold=_percent(facts["threshold"], 1), budget=budget)


def _reading(ranked: pd.DataFrame, facts: Mapping) -> list[str]:
    return [
        tr("One row per car of the upload, riskiest first: rank 1 is the car most likely to fail the road test "
           "among the cars at their road test, which come first."),
        tr("{risk} is the production model's probability that the car fails the road test.",
           risk=_header("probability")),
        tr("Filled rows ({column}: {yes}) are the cars to road-test first.", column=_header("in_budget"),
           yes=tr("yes")),
        tr("{why} lists the two or three facts of the car that raise its risk most (what the model gives it "
           "without each of them).", why=_header("reasons").split(" (")[0]),
        budget_note(ranked, facts),
        tr("The filter arrows in the header show only the cars in the budget, or find a KNR."),
        line_note(ranked),
    ]


def _as_text(values: pd.Series) -> pd.Series:
    """Cells as text: booleans as yes/no, moments to the minute, missing values empty."""
    if values.dtype == bool:
        return values.map({True: tr("yes"), False: tr("no")})
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime(_MINUTE[current()]).fillna("")
    return values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


def _fit_to_page_width(sheet) -> None:
    """Print every column on one page across (as many pages down as it takes)."""
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0


def _cell(sheet, value, *, number_format: str | None = None, font=None, fill=None, alignment=None):
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    if number_format:
        cell.number_format = number_format
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    if alignment is not None:
        cell.alignment = alignment
    return cell


#: A moment to the minute in a cell, as each language writes it.
_MINUTE = {"en": "%Y-%m-%d %H:%M", "pt-BR": "%d/%m/%Y %H:%M"}


def _percent(share: float, digits: int = 0) -> str:
    """``12.5 %`` (``12,5 %`` in pt-BR)."""
    return f"{written(share * 100, digits)} %"


def _moment(iso: str, *, utc: bool = True) -> str:
    """An ISO time as ``2024-11-26 20:17 UTC`` (``26/11/2024 20:17 UTC`` in pt-BR; without ``UTC`` for the
    plant's own clock: production times)."""
    text = written_moment(str(iso)[:16])
    return f"{text} UTC" if utc else text


def recorded_workbook(lake: Lake, list_id: str):
    """The workbook of list ``list_id`` made again from what the lake recorded of it: its cars (rank,
    risk, budget, audit, where each was) and its facts. A record keeps no reasons, so the list has no
    "Why" column; the desk keeps the workbook it issued itself, reasons and all.

    Raises
    ------
    OutputError
        When the lake holds no list ``list_id``.
    """
    from . import catalog, registry

    record = next((r for r in catalog.list_records(lake) if r["id"] == list_id), None)
    if record is None:
        raise OutputError(f"the lake {lake.url} holds no list {list_id}")
    cars = catalog.list_cars(lake, list_id).assign(model_version=record["model"])
    meta = next((v for v in registry.versions(lake) if v["version"] == record["model"]), {})
    facts = {"made_at": record["at"], "lake": lake.url, "files": [f["name"] for f in record.get("files") or ()],
             "budget": record["budget"], "threshold": record.get("threshold"), "list": record,
             "model": {"version": record["model"], "family": record.get("family"), "run": meta.get("run"),
                       "data_version": meta.get("data_version"), "trained_on": meta.get("trained_on")}}
    return ranking_workbook(cars, facts)
