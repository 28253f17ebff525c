"""DATA.md's rules, pinned: each test fails when its rule is changed (the label's road test, the order of
same-second events, the joining of falhas periods, what makes two defect rows one defect, when a falhas
export is taken as filtered, the inspection budget of a scored list)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kafer.config import load_settings
from kafer.errors import ConfigError
from kafer.features import FalhasPeriod, build_features, label_coverage, merge_periods
from kafer.predict import rank
from kafer.readers import COLUMNS, schema

T = dt.datetime
CAR, OTHER = "2024-1510001", "2024-1510002"
COVERED = [(T(2024, 4, 1), T(2024, 4, 30))]


def table(kind: str, rows: list[tuple]) -> pa.Table:
    cols = COLUMNS[kind]
    return pa.table({c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(cols)}, schema=schema(kind))


def defect(car, hall, text, at, station="E1"):
    return (car, "T-CROSS", "2R2R", "DHS", station, "U1", hall, text, at)


def build(falhas=(), status=(), settings=None, coverage=COVERED):
    return build_features(None, table("falhas", list(falhas)), table("status", list(status)), settings=settings,
                          coverage=coverage).set_index("KNR")


def test_the_road_test_is_the_first_g710_never_the_first_rod_defect(settings):
    # CAR failed on the road but its G710 was not exported; OTHER's ROD defect was logged before its G710.
    falhas = [defect(CAR, "ROD", "RUÍDO", T(2024, 4, 10, 9)), defect(OTHER, "ROD", "RUÍDO", T(2024, 3, 31, 23))]
    status = [(CAR, "R640", T(2024, 4, 10, 7)), (OTHER, "R640", T(2024, 3, 31, 20)), (OTHER, "G710", T(2024, 4, 2, 8))]
    cars = build(falhas, status, settings)
    assert pd.isna(cars.loc[CAR, "road_test_at"]) and not cars.loc[CAR, "label_known"]
    assert cars.loc[OTHER, "road_test_at"] == pd.Timestamp(2024, 4, 2, 8) and cars.loc[OTHER, "label_known"]
    assert cars["label_rod"].tolist() == [1, 1]


def test_events_in_the_same_second_are_ordered_by_code(settings):
    # L534 (ZP5A) and M591 (ZP6) share a second: L534 comes first and lasts 0, M591 lasts until G710.
    status = [(CAR, "R640", T(2024, 4, 1, 8)), (CAR, "M591", T(2024, 4, 1, 9)), (CAR, "L534", T(2024, 4, 1, 9)),
              (CAR, "G710", T(2024, 4, 1, 9, 30))]
    car = build(status=status, settings=settings).loc[CAR]
    assert car["dwell_min_ZP5"] == 60 and car["dwell_min_ZP5A"] == 0 and car["dwell_min_ZP6"] == 30


def test_falhas_periods_less_than_a_day_apart_are_joined(settings):
    first, second = (T(2024, 4, 1), T(2024, 4, 10, 18)), (T(2024, 4, 11, 6), T(2024, 4, 30))
    assert merge_periods([first, second], gap_hours=settings.falhas_gap_hours) == [(first[0], second[1])]
    status = [(CAR, "R640", T(2024, 4, 10, 20)), (CAR, "G710", T(2024, 4, 10, 22))]  # road test in the gap
    coverage = merge_periods([first, second], gap_hours=settings.falhas_gap_hours)
    assert build(status=status, settings=settings, coverage=coverage).loc[CAR, "label_known"]
    apart = merge_periods([first, (T(2024, 4, 12), T(2024, 4, 30))], gap_hours=settings.falhas_gap_hours)
    assert len(apart) == 2 and not build(status=status, settings=settings, coverage=apart).loc[CAR, "label_known"]


def test_one_defect_recorded_at_two_stations_counts_once(settings):
    at = T(2024, 4, 1, 8, 31, 52)
    falhas = [defect(CAR, "ZP7", "PAINEL 01. AMASSADO", at, station="HCEQS506"),
              defect(CAR, "ZP7", "Painel 01. amassado", at, station="HCEQS507"),
              defect(CAR, "ZP7", "PAINEL 01. AMASSADO", T(2024, 4, 1, 8, 40), station="HCEQS506")]
    car = build(falhas, [(CAR, "G710", T(2024, 4, 2))], settings).loc[CAR]
    assert car["n_falhas_ZP7"] == 2


def test_a_scored_car_is_in_the_budget_when_it_reaches_the_threshold_whatever_the_list():
    cars = pd.DataFrame({"KNR": [f"2024-15100{i:02d}" for i in range(8)]})
    p = np.array([0.30, 0.20, 0.142, 0.141, 0.10, 0.05, 0.142, 0.01])
    ranked = rank(cars, p, budget=0.10, threshold=0.142)
    assert ranked.loc[ranked["in_budget"], "KNR"].tolist() == ["2024-1510000", "2024-1510001", "2024-1510002",
                                                              "2024-1510006"]
    assert ranked["rank"].tolist() == list(range(1, 9)) and ranked["probability"].is_monotonic_decreasing
    alone = rank(cars.iloc[:1], p[:1] * 0 + 0.15, budget=0.10, threshold=0.142)
    assert alone["in_budget"].tolist() == [True]  # one car scored alone is judged by the same threshold
    without = rank(cars, p, budget=0.10, threshold=None)
    assert without["in_budget"].sum() == 1  # ceil(10 % of 8 cars): the riskiest one


def road_tested(n: int, start: dt.datetime, *, prefix: str = "2024-15") -> pd.Series:
    """``n`` cars road-tested an hour apart from ``start``, indexed by KNR."""
    return pd.Series([start + dt.timedelta(hours=h) for h in range(n)],
                     index=[f"{prefix}{i:05d}" for i in range(n)], dtype="datetime64[ns]")


def period(name, at: pd.Series, failed: int, *, other_halls: bool = True) -> FalhasPeriod:
    return FalhasPeriod(name, at.min().to_pydatetime(), at.max().to_pydatetime(), frozenset(at.index[:failed]),
                        other_halls=other_halls)


def left_out(history: tuple[int, int], month: tuple[int, int], settings, *, other_halls: bool = True,
             name: str = "month") -> list[dict]:
    """The exports taken as filtered of a lake holding a complete ``history`` export and ``month``
    (each ``(road tests, failures)``)."""
    before = road_tested(history[0], T(2024, 1, 1), prefix="2024-01")
    after = road_tested(month[0], T(2024, 6, 1), prefix="2024-06")
    periods, filtered = label_coverage([period("history", before, history[1]),
                                        period(name, after, month[1], other_halls=other_halls)],
                                       pd.concat([before, after]), settings=settings)
    assert len(periods) == (1 if filtered else 2)
    return filtered


def test_a_falhas_export_is_filtered_only_when_its_failures_are_absent_or_implausibly_few(settings):
    """At the ~7 % the lake has seen, a month failing half or a quarter as often keeps its labels; 60 road
    tests without one failure (about 1 time in 70) and 6 failures among 3,000 road tests (under a tenth of
    the rate) are an export cut by hall; 30 road tests without one (1 time in 8) are too few to tell."""
    history = (3000, 210)
    cases = {"halved": ((3000, 105), False), "quarter": ((3000, 52), False), "usual": ((3000, 210), False),
             "sixty": ((60, 0), True), "thirty": ((30, 0), False), "stray": ((3000, 6), True)}
    for name, (month, filtered) in cases.items():
        assert [f["name"] for f in left_out(history, month, settings, name=name)] == ([name] if filtered else []), name
    # an export of the road-test hall alone is complete for the labels, however few failures it logs
    assert left_out(history, (3000, 6), settings, other_halls=False) == []
    # without history, the expected rate (6 %) judges: 100 road tests without a failure is implausible
    alone = road_tested(100, T(2024, 6, 1))
    assert label_coverage([period("alone", alone, 0)], alone, settings=settings)[1][0]["failures"] == 0
    lenient = settings.replace(filtered_falhas_chance=1e-3)
    assert label_coverage([period("alone", alone, 0)], alone, settings=lenient)[1] == []


def test_an_export_is_judged_by_the_rate_of_the_other_exports_never_its_own(settings):
    """A long export cut by hall with a few stray road-test rows (20 among 8,000 road tests) beside a
    complete month at 7 %: counted in, its own rows would pull the rate it is judged by down to 1.5 %."""
    [found] = left_out((1000, 70), (8000, 20), settings)
    assert found["failures"] == 20 and found["rate_road_tests"] == 1000
    assert found["rate"] == pytest.approx((70 + 1000 * settings.expected_failure_rate) / 2000)


def test_the_analyst_overrules_the_rule_by_naming_an_export(settings, tmp_path):
    toml = tmp_path / "kafer.toml"
    toml.write_text('falhas_complete = ["month"]\n', encoding="utf-8")
    complete = load_settings(config_file=toml)
    assert complete.falhas_complete == ("month",)
    assert left_out((3000, 210), (3000, 0), complete) == []
    [named] = left_out((3000, 210), (3000, 105), settings.replace(falhas_filtered=("month",)))
    assert named["named"] and named["failures"] == 105
    toml.write_text('falhas_complete = ["month"]\nfalhas_filtered = ["month"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="falhas_complete and falhas_filtered both name month"):
        load_settings(config_file=toml)
