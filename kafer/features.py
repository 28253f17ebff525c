"""The per-car feature table: DATA.md's contract and a few more features, all from before the road test.

Pure: Arrow tables of normalized rows (see :mod:`kafer.readers`) in, a pandas DataFrame with one
row per car out. Nothing after the road test reaches a feature: every row used is timestamped
before the car's road test (its first road-test checkpoint; all rows of a car that has none), and
of those, falhas only from the halls before it, resultados without the post-road sections. A car
sent back after a failed road test gets new rows in line halls (rework in ZP7, screws tightened
again): they carry the outcome and never exist when a car is scored, so the time rule drops them.
The label is computed from the falhas rows alone and is kept apart from the features.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
import hashlib
import json
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import Settings
from .readers import COLUMNS, schema

RESULT_IDS = ("1", "2", "718")
NOK = "13"

#: Version of what the curated table and its facts mean. Change it whenever a column or fact is
#: computed differently: the next merge (or ``kafer rebuild``) then rebuilds every car from the raw
#: zone into a new curated version, so that no version mixes rows built two ways.
FEATURE_DEFINITIONS = "4"

#: Columns that describe a car but are never fed to a model.
META_COLUMNS = ("KNR", "label_rod", "label_known", "produced_at", "road_test_at")

#: Families of model inputs, as the comparison reports what drives the risk.
FEATURE_FAMILIES = ("contract", "configuration", "tests", "route", "defects")
_FAMILY_OF_EXTRA = {"n_nok_tests_distinct": "tests", "n_tests_distinct": "tests",
                    "n_falhas_stations_pre_road": "defects", "n_status_events_pre_road": "route",
                    "n_status_codes_pre_road": "route", "dwell_min_pre_road": "route",
                    "n_checkpoints_repeated_pre_road": "route", "n_repeat_passages_pre_road": "route"}


#: The settings a curated table is built from: a change of any of them changes a feature or a label.
TABLE_SETTINGS = ("zones", "hall_groups", "road_test_code", "label_hall", "post_road_sections", "falhas_gap_hours",
                  "shift_start_hours", "label_maturity_hours", "filtered_falhas_chance", "filtered_falhas_rate_share",
                  "expected_failure_rate", "expected_failure_rate_road_tests", "falhas_complete", "falhas_filtered")


def feature_definitions(settings: Settings) -> str:
    """:data:`FEATURE_DEFINITIONS` and a digest of the settings the table is built from (:data:`TABLE_SETTINGS`).

    Changing a zone, a hall group, the road-test code, the label rules or the shifts changes the
    table as much as changing the code does, so the next merge rebuilds it into a new version.
    """
    shaping = {name: value for name, value in settings.to_dict().items() if name in TABLE_SETTINGS}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{FEATURE_DEFINITIONS}-{digest[:12]}"


def route_columns(settings: Settings) -> tuple[str, ...]:
    """Rework loops, and the shift and weekday of the car's first passage at each zone."""
    return (("n_checkpoints_repeated_pre_road", "n_repeat_passages_pre_road")
            + tuple(f"shift_at_{zone}" for zone in settings.zones)
            + tuple(f"weekday_at_{zone}" for zone in settings.zones))


def feature_columns(settings: Settings) -> tuple[str, ...]:
    """The model's inputs, in a fixed order: the contract's first, then the extra ones."""
    return (
        tuple(f"n_results_id{i}" for i in RESULT_IDS)
        + tuple(f"n_nok_id{i}" for i in RESULT_IDS)
        + tuple(f"n_falhas_{hall}" for hall in settings.hall_groups)
        + tuple(f"dwell_min_{zone}" for zone in settings.zones)
        + ("n_nok_tests_distinct", "n_tests_distinct", "n_falhas_pre_road", "n_falhas_stations_pre_road",
           "n_status_events_pre_road", "n_status_codes_pre_road", "dwell_min_pre_road")
        + route_columns(settings)
    )


def family_of(column: str) -> str:
    """The family of a curated table's column: what it describes (see :data:`FEATURE_FAMILIES`)."""
    if column in _FAMILY_OF_EXTRA:
        return _FAMILY_OF_EXTRA[column]
    if column.startswith(("shift_at_", "weekday_at_")):
        return "route"
    return "contract"


def table_columns(settings: Settings) -> tuple[str, ...]:
    """Every column of the curated table, in order."""
    return META_COLUMNS + feature_columns(settings)


def build_features(resultados: pa.Table | None, falhas: pa.Table | None, status: pa.Table | None, *,
                   settings: Settings, coverage: Sequence[tuple[dt.datetime, dt.datetime]] = ()) -> pd.DataFrame:
    """One row per car seen in any of the tables, its features from its rows before its road test.

    Parameters
    ----------
    resultados, falhas, status : pyarrow.Table or None
        All normalized rows of the cars to build (from the lake and from every upload that brought
        rows for them); a car's rows after its road test are read only for its label.
    settings : Settings
        Zones, hall groups, the road-test code, the label hall.
    coverage : sequence of (start, end)
        Periods the uploaded falhas cover; ``label_known`` is true for cars whose road test lies
        inside one of them, at least ``settings.label_maturity_hours`` before its end.

    Returns
    -------
    pandas.DataFrame
        Columns :func:`table_columns`, sorted by KNR.
    """
    resultados = _or_empty(resultados, "resultados")
    falhas = _or_empty(falhas, "falhas")
    status = _or_empty(status, "status")
    cars = pc.unique(pa.chunked_array(
        [resultados["KNR"].combine_chunks(), falhas["KNR"].combine_chunks(), status["KNR"].combine_chunks()],
        type=pa.string()))
    table = pd.DataFrame({"KNR": pd.Series(cars.to_pylist(), dtype=object)}).set_index("KNR")
    road = road_tests(status, settings)
    parts = [_result_counts(before_road_test(resultados, road), settings),
             _falhas_counts(before_road_test(falhas, road), settings), _labels(falhas, settings),
             _dwell(status, settings), _times(resultados, status, road)]
    for part in parts:
        table = table.join(part, how="left")
    moments = [c for c in route_columns(settings) if c.startswith(("shift_at_", "weekday_at_"))]
    ints = [c for c in feature_columns(settings) if not c.startswith("dwell_min_") and c not in moments]
    ints += ["label_rod"]
    for col in feature_columns(settings):
        if col not in table:
            table[col] = np.nan if col in moments else 0
    table[moments] = table[moments].astype("float64")
    table[ints] = table[ints].fillna(0).astype("int64")
    dwell = [c for c in feature_columns(settings) if c.startswith("dwell_min_")]
    table[dwell] = table[dwell].fillna(0.0).astype("float64")
    table = table.reset_index()
    table = with_label_known(table, coverage, maturity_hours=settings.label_maturity_hours)
    return table.loc[:, list(table_columns(settings))].sort_values("KNR", ignore_index=True)


def with_label_known(table: pd.DataFrame, coverage: Sequence[tuple[dt.datetime, dt.datetime]], *,
                     maturity_hours: float) -> pd.DataFrame:
    """A copy of ``table`` whose ``label_known`` says if the car's road test lies in a covered period.

    The road test must lie at least ``maturity_hours`` before the period's end (a defect found on
    the road can be logged after the export was cut); a car without a road test is never known.
    """
    known = np.zeros(len(table), dtype=bool)
    at = pd.to_datetime(table["road_test_at"])
    margin = pd.Timedelta(hours=maturity_hours)
    for start, end in coverage:
        inside = (at >= pd.Timestamp(start)) & (at <= pd.Timestamp(end) - margin)
        known |= inside.fillna(False).to_numpy(dtype=bool)
    out = table.copy()
    out["label_known"] = known
    return out


@dataclass(frozen=True)
class FalhasPeriod:
    """What one falhas export says about labels: its name, first and last defect, the cars it logs a
    road-test (label hall) defect for, and whether it holds defects of other halls too."""

    name: str
    start: dt.datetime
    end: dt.datetime
    failed: frozenset[str]
    other_halls: bool = True


def label_coverage(files: Sequence[FalhasPeriod], road_test_at: pd.Series, *,
                   settings: Settings) -> tuple[list[tuple], list[dict]]:
    """The periods whose road tests have a known label, and the falhas exports left out as filtered.

    An export cut by hall (exported for the line halls only) holds defects of other halls and no
    road-test defect, and counting its period would make every car it covers a known negative. An
    export is taken as filtered from what it holds: defects of other halls, and its road-test
    failures among the cars road-tested in its period absent or implausibly few. Implausibly few is
    below ``settings.filtered_falhas_rate_share`` (a tenth) of the failure rate the lake has seen in
    its *other* exports that hold any (pulled towards ``settings.expected_failure_rate`` while they
    hold few road tests) *and* fewer than a complete export would show with a chance of
    ``settings.filtered_falhas_chance``: a month that fails half or a quarter as often as usual keeps
    its labels, an export too small to tell keeps them too. An export named in
    ``settings.falhas_complete`` is never taken as filtered, one named in ``settings.falhas_filtered``
    always is (the analyst knows better). The others' periods are joined across gaps of up to
    ``settings.falhas_gap_hours``.

    Parameters
    ----------
    files : sequence of FalhasPeriod
        Every falhas export in the lake.
    road_test_at : pandas.Series
        Every car's road-test time (``NaT`` without one), indexed by KNR.
    settings : Settings

    Returns
    -------
    periods : list of (start, end)
    filtered : list of dict
        Per export left out: ``name``, ``start``, ``end``, ``road_tests`` and ``failures`` in its
        period, ``expected`` (failures at the lake's rate), ``rate`` (the lake's), ``rate_road_tests``
        (the other exports' road tests it rests on), ``chance`` (of so few failures in a complete
        export), ``share`` (the bound, a share of the lake's rate), ``hall`` (the label hall) and
        ``named`` (true when ``settings.falhas_filtered`` names it).
    """
    from scipy.stats import binom

    at = pd.to_datetime(road_test_at).dropna()
    judged = []
    for f in files:
        tested = at.index[(at >= pd.Timestamp(f.start)) & (at <= pd.Timestamp(f.end))]
        judged.append((f, len(tested), len(f.failed.intersection(tested))))
    kept, filtered = [], []
    for i, (f, tests, failures) in enumerate(judged):
        others = [(n, k) for j, (_, n, k) in enumerate(judged) if j != i and k > 0]
        weight = settings.expected_failure_rate_road_tests
        rate = ((sum(k for _, k in others) + weight * settings.expected_failure_rate)
                / (sum(n for n, _ in others) + weight)) if others or weight else settings.expected_failure_rate
        chance = float(binom.cdf(failures, tests, rate)) if tests else 1.0
        named = f.name in settings.falhas_filtered
        few = (f.other_halls and chance < settings.filtered_falhas_chance
               and failures < settings.filtered_falhas_rate_share * rate * tests)
        if named or (few and f.name not in settings.falhas_complete):
            filtered.append({"name": f.name, "start": f.start.isoformat(), "end": f.end.isoformat(),
                             "road_tests": tests, "failures": failures, "expected": round(rate * tests, 1),
                             "rate": rate, "rate_road_tests": sum(n for n, _ in others), "chance": chance,
                             "share": settings.filtered_falhas_rate_share, "hall": settings.label_hall,
                             "named": named})
        else:
            kept.append((f.start, f.end))
    return merge_periods(kept, gap_hours=settings.falhas_gap_hours), filtered


def merge_periods(periods: Sequence[tuple[dt.datetime, dt.datetime]], *, gap_hours: float) -> list[tuple]:
    """Union of periods, joining two whose gap is at most ``gap_hours``."""
    merged: list[list] = []
    for start, end in sorted((pd.Timestamp(s), pd.Timestamp(e)) for s, e in periods):
        if merged and start - merged[-1][1] <= pd.Timedelta(hours=gap_hours):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s.to_pydatetime(), e.to_pydatetime()) for s, e in merged]


def _or_empty(table: pa.Table | None, kind: str) -> pa.Table:
    return schema(kind).empty_table() if table is None else table.select(list(COLUMNS[kind]))


def road_tests(status: pa.Table | None, settings: Settings) -> pa.Table:
    """Each road-tested car's road test: ``KNR`` and ``DATA``, the time of its first road-test checkpoint.

    The road test's time comes from status alone: taking a car's first ROD defect instead would
    make exactly the failing cars' labels known when the checkpoint is missing.
    """
    status = _or_empty(status, "status")
    road = status.filter(pc.equal(status["STATUS"], settings.road_test_code))
    return road.group_by("KNR").aggregate([("DATA", "min")]).rename_columns(["KNR", "DATA"])


def before_road_test(rows: pa.Table, road: pa.Table) -> pa.Table:
    """The rows timestamped before their car's road test (``road``, from :func:`road_tests`); every row
    of a car that has none (it is still on the line, or its checkpoint was not exported).

    A row in the same second as the road test is left out: it may already be the road test's own.
    """
    if rows.num_rows == 0 or road.num_rows == 0:
        return rows
    car, cars = _codes(rows["KNR"])
    at = pc.index_in(cars, value_set=road["KNR"].combine_chunks())
    limits = _seconds(road["DATA"])
    limit = np.where(pc.is_null(at).to_numpy(zero_copy_only=False), np.iinfo(np.int64).max,
                     limits[pc.fill_null(at, 0).to_numpy(zero_copy_only=False)])
    seconds = _seconds(rows["DATA"])
    keep = seconds < limit[car]
    return rows if keep.all() else rows.filter(pa.array(keep))


def _seconds(times: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as integer seconds, whatever their unit (landed Parquet keeps milliseconds)."""
    return times.combine_chunks().cast(pa.timestamp("s")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _codes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of a column's values and the distinct values they index."""
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _hash_codes(codes: np.ndarray, distinct: pa.Array) -> np.ndarray:
    return pd.util.hash_array(np.asarray(distinct.to_pylist(), dtype=object))[codes]


def _result_counts(resultados: pa.Table, settings: Settings) -> pd.DataFrame:
    """Distinct resultados rows per ID and NOK, post-road sections left out.

    Rows are compared through a 64-bit hash of all eight fields (text hashed through its distinct
    values): two different rows share a hash with a chance of about one in 10^6 in a month-sized
    upload of 5.5 M rows, and then one row of one car would be counted once instead of twice.
    """
    if resultados.num_rows == 0:
        return pd.DataFrame(index=pd.Index([], name="KNR"))
    encoded = {col: _codes(resultados[col]) for col in COLUMNS["resultados"] if col != "DATA"}
    car, cars = encoded["KNR"]
    name, names = encoded["NAME"]
    post_names = np.zeros(len(names), dtype=bool)
    for prefix in settings.post_road_sections:
        post_names |= pc.fill_null(pc.starts_with(names, prefix), False).to_numpy(zero_copy_only=False)
    seconds = resultados["DATA"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    key = pd.util.hash_array(seconds.astype(np.uint64))
    with np.errstate(over="ignore"):
        for codes, distinct in encoded.values():
            key = key * np.uint64(0x100000001B3) ^ _hash_codes(codes, distinct)
    first = ~pd.Series(key).duplicated().to_numpy() & ~post_names[name]

    def matches(col: str, value: str) -> np.ndarray:
        codes, distinct = encoded[col]
        return (np.asarray(distinct.to_pylist(), dtype=object) == value)[codes]

    nok = matches("STATUS", NOK) & first
    n = len(cars)

    def per_car(mask: np.ndarray) -> np.ndarray:
        return np.bincount(car[mask], minlength=n)

    def distinct_tests(mask: np.ndarray) -> np.ndarray:
        seen = np.zeros(n * len(names), dtype=bool)
        seen[car[mask] * len(names) + name[mask]] = True
        return seen.reshape(n, len(names)).sum(axis=1)

    out = pd.DataFrame(index=pd.Index(cars.to_pylist(), name="KNR"))
    for result_id in RESULT_IDS:
        of_id = matches("ID", result_id)
        out[f"n_results_id{result_id}"] = per_car(first & of_id)
        out[f"n_nok_id{result_id}"] = per_car(nok & of_id)
    out["n_nok_tests_distinct"] = distinct_tests(nok)
    out["n_tests_distinct"] = distinct_tests(first)
    return out


def _labels(falhas: pa.Table, settings: Settings) -> pd.DataFrame:
    """``label_rod`` 1 for every car with a defect in the label hall, whenever it was logged."""
    label = falhas.filter(pc.equal(falhas["HALLE"], settings.label_hall))
    return pd.DataFrame({"label_rod": 1}, index=pd.Index(pc.unique(label["KNR"]).to_pylist(), name="KNR"))


def _falhas_counts(falhas: pa.Table, settings: Settings) -> pd.DataFrame:
    """Defects per hall before the road test, each double-recorded defect once (``falhas``: rows
    already cut at the road test)."""
    halls = falhas["HALLE"]
    group_of = {hall: group for group, members in settings.hall_groups.items() for hall in members}
    keyed = pa.table({
        "KNR": falhas["KNR"],
        "HALLE": halls,
        "FALHA": pc.utf8_upper(falhas["FALHA"]),
        "DATA": falhas["DATA"],
        "ESTACAO": falhas["ESTACAO"],
    }).filter(pc.is_in(halls, pa.array(list(group_of), pa.string())))
    defects = keyed.group_by(["KNR", "HALLE", "FALHA", "DATA"]).aggregate([("ESTACAO", "min")]).to_pandas()
    if defects.empty:
        return pd.DataFrame(index=pd.Index([], name="KNR"))
    defects["group"] = defects["HALLE"].map(group_of)
    out = defects.pivot_table(index="KNR", columns="group", values="DATA", aggfunc="count")
    out = out.reindex(columns=list(settings.hall_groups)).add_prefix("n_falhas_")
    out.columns.name = None
    out["n_falhas_pre_road"] = defects.groupby("KNR").size()
    out["n_falhas_stations_pre_road"] = defects.groupby("KNR")["ESTACAO_min"].nunique()
    return out


def pre_road_events(status: pa.Table, settings: Settings) -> pd.DataFrame:
    """Each car's distinct status events before its road test, in time order, with how long each lasted.

    Events are sorted by time and, within a second, by code; the first road-test checkpoint and
    everything after it are left out. Each event lasts until the car's next event (the first one
    left out included), the last one 0 minutes.

    Returns
    -------
    pandas.DataFrame
        ``KNR``, ``STATUS``, ``DATA``, ``minutes`` and ``zone`` (the settings' zone of the code, or
        missing).
    """
    columns = ["KNR", "STATUS", "DATA", "minutes", "zone"]
    events = status.group_by(["KNR", "STATUS", "DATA"]).aggregate([]).to_pandas()
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    events = events.sort_values(["KNR", "DATA", "STATUS"], ignore_index=True)
    knr = events["KNR"].to_numpy()
    new_car = np.r_[True, knr[1:] != knr[:-1]]
    car = np.cumsum(new_car) - 1
    times = events["DATA"].to_numpy(dtype="datetime64[s]").astype("int64")
    last_of_car = np.r_[new_car[1:], True]
    duration = np.where(last_of_car, 0, np.r_[times[1:] - times[:-1], 0]).astype("float64")
    is_road = (events["STATUS"] == settings.road_test_code).to_numpy()
    position = np.arange(len(events))
    first_road = np.full(car.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_road, car[is_road], position[is_road])
    before = position < first_road[car]
    frame = pd.DataFrame({"KNR": knr, "STATUS": events["STATUS"].to_numpy(), "DATA": events["DATA"].to_numpy(),
                          "minutes": duration / 60.0})[before]
    zone_of = {code: zone for zone, codes in settings.zones.items() for code in codes}
    frame["zone"] = frame["STATUS"].map(zone_of)
    return frame.reset_index(drop=True)


def last_checkpoints(status: pa.Table | None) -> pd.DataFrame:
    """Where each car was last seen: its latest distinct status event (within a second, the last code).

    Returns
    -------
    pandas.DataFrame
        ``KNR``, ``last_checkpoint`` and ``last_checkpoint_at``, one row per car with status events.
    """
    events = _or_empty(status, "status").group_by(["KNR", "STATUS", "DATA"]).aggregate([]).to_pandas()
    last = events.sort_values(["KNR", "DATA", "STATUS"]).drop_duplicates("KNR", keep="last")
    return pd.DataFrame({"KNR": last["KNR"].to_numpy(dtype=object), "last_checkpoint": last["STATUS"].to_numpy(),
                         "last_checkpoint_at": last["DATA"].to_numpy(dtype="datetime64[s]")})


def _dwell(status: pa.Table, settings: Settings) -> pd.DataFrame:
    """Minutes per zone before the road test, from distinct status events in time order."""
    frame = pre_road_events(status, settings)
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name="KNR"))
    out = frame.pivot_table(index="KNR", columns="zone", values="minutes", aggfunc="sum")
    out = out.reindex(columns=list(settings.zones)).add_prefix("dwell_min_")
    out.columns.name = None
    by_car = frame.groupby("KNR")
    out = out.join(by_car.size().rename("n_status_events_pre_road"), how="outer")
    out["n_status_codes_pre_road"] = by_car["STATUS"].nunique()
    out["dwell_min_pre_road"] = by_car["minutes"].sum()
    return out.join(_route(frame, settings), how="left")


def _route(events: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Rework loops (checkpoints passed more than once) and when the car first reached each zone.

    ``events`` are a car's distinct status events before the road test; ``shift_at_Z`` is the shift
    (1 = the one starting at the first of ``settings.shift_start_hours``) of the first event in
    zone Z and ``weekday_at_Z`` its weekday (0 = Monday), missing when the car never passed Z.
    """
    passes = events.groupby(["KNR", "STATUS"]).size()
    by_car = (passes - 1).groupby(level="KNR")
    out = pd.DataFrame({"n_checkpoints_repeated_pre_road": (passes > 1).groupby(level="KNR").sum(),
                        "n_repeat_passages_pre_road": by_car.sum()})
    first = events[events["zone"].notna()].groupby(["KNR", "zone"])["DATA"].min().unstack("zone")
    first = first.reindex(columns=list(settings.zones))
    hours = np.asarray(settings.shift_start_hours)
    for zone in settings.zones:
        at = pd.to_datetime(first[zone])
        position = np.searchsorted(hours, at.dt.hour.to_numpy(dtype=float, na_value=np.nan), side="right") - 1
        shift = np.where(position < 0, len(hours), position + 1).astype(float)
        out[f"shift_at_{zone}"] = pd.Series(np.where(at.isna(), np.nan, shift), index=first.index)
        out[f"weekday_at_{zone}"] = at.dt.day_of_week.astype("float64")
    return out


def _times(resultados: pa.Table, status: pa.Table, road: pa.Table) -> pd.DataFrame:
    """When each car was produced (its first event) and road-tested (``road``, :func:`road_tests`)."""
    def first(table: pa.Table, name: str) -> pd.Series:
        if table.num_rows == 0:
            return pd.Series(dtype="datetime64[s]", name=name)
        agg = table.group_by("KNR").aggregate([("DATA", "min")])
        return pd.Series(agg["DATA_min"].to_numpy(), index=agg["KNR"].to_pylist(), name=name)

    tested = pd.Series(road["DATA"].to_numpy(), index=road["KNR"].to_pylist(), name="road", dtype="datetime64[s]")
    produced = pd.concat([first(status, "a"), first(resultados, "b")], axis=1).min(axis=1)
    out = pd.concat([tested, produced.rename("produced")], axis=1)
    out.index.name = "KNR"
    return pd.DataFrame({"road_test_at": out["road"], "produced_at": out["produced"]})
