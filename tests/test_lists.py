"""Every list issued is recorded: the audit draw, the outcome and its lift over random (checked by hand), the
shadow's verdict, the lists that shaped outcomes, and the record written from the command line and the notebook."""

from __future__ import annotations

import datetime as dt
import json
import math

import nbformat
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from kafer import catalog, lists
from kafer.cli import main
from kafer.config import load_settings
from kafer.errors import LakeError, OutputError
from kafer.ingest import ingest
from kafer.lake import Lake
from kafer.lists import (audit_draw, draft_list, issue, issued_lists, lift_over_random, list_outcome, pooled_cars,
                         shadow_verdict, shaped_cars, shift_of)
from kafer.pipeline import run_notebook
from kafer.predict import ABOUT_SHEET, LIST_SHEET, issue_ranking, predict_upload, ranking_facts
from test_predict import world  # noqa: F401  (a module fixture: a production model and an upload to score)

SETTINGS = load_settings()


# -- the lift over random, by hand -----------------------------------------------------------------

def test_the_lift_over_random_and_its_interval_are_what_a_hand_computes():
    """10 flagged cars with 4 failures, 90 others with 9: random picking finds 13 % a car, the flag 40 %."""
    lift = lift_over_random(4, 10, 9, 90, share=10 / 100)
    assert lift["value"] == pytest.approx(0.4 / 0.13)  # 3.077: precision over the list's failure rate
    # Katz: ratio 4, log standard error sqrt(1/4 - 1/10 + 1/9 - 1/90) = 0.5
    ratio_low, ratio_high = 4 * math.exp(-1.959964 * 0.5), 4 * math.exp(1.959964 * 0.5)
    assert [lift["ratio"][k] for k in ("value", "low", "high")] == pytest.approx([4, ratio_low, ratio_high])
    assert [lift["low"], lift["high"]] == pytest.approx([ratio_low / (0.1 * ratio_low + 0.9),
                                                         ratio_high / (0.1 * ratio_high + 0.9)])
    assert [round(lift["low"], 3), round(lift["high"], 3)] == [1.430, 5.422]


def test_a_group_without_failures_gets_half_a_car_and_an_empty_one_no_lift():
    lift = lift_over_random(3, 10, 0, 90, share=0.1)  # Haldane: 3.5 of 11 against 0.5 of 91
    assert lift["ratio"]["value"] == pytest.approx((3.5 / 11) / (0.5 / 91))
    assert lift["low"] < lift["value"] < lift["high"] < 1 / 0.1, "the lift can never pass 1 / flagged share"
    assert lift_over_random(0, 10, 0, 90, share=0.1) is None
    assert lift_over_random(3, 0, 2, 90, share=0.0) is None and lift_over_random(3, 10, 2, 0, share=1.0) is None


def cars_of_a_list(flagged: int, others: int, *, audit=()) -> pd.DataFrame:
    knr = [f"2024-{i:07d}" for i in range(flagged + others)]
    return pd.DataFrame({"KNR": knr, "in_budget": [True] * flagged + [False] * others,
                         "audit": [i in set(audit) for i in range(flagged + others)], "at_road_test": True})


def labels_of(cars: pd.DataFrame, failed: set[int], *, unknown=()) -> pd.DataFrame:
    return pd.DataFrame({"KNR": cars["KNR"], "label_known": [i not in set(unknown) for i in range(len(cars))],
                         "label_rod": [int(i in failed) for i in range(len(cars))]})


def test_a_shadow_list_is_measured_on_all_its_unflagged_cars():
    cars = cars_of_a_list(10, 90, audit=(5, 50, 60))
    labels = labels_of(cars, failed={0, 1, 2, 3} | set(range(10, 19)), unknown=(99,))
    outcome = list_outcome(cars, labels, acted_on=False)
    assert (outcome["known"], outcome["flagged_failures"], outcome["other_failures"]) == (99, 4, 9)
    assert outcome["reference"] == "its unflagged cars"
    assert outcome["lift_over_random"] == pytest.approx(
        [v for k, v in lift_over_random(4, 10, 9, 89, share=10 / 99).items() if k != "ratio"])


def test_a_list_acted_on_is_measured_on_its_unflagged_audit_cars_alone():
    """Its flagged cars were inspected because the model chose them; the audit's unflagged cars had the
    same inspection, picked at random: only they say what random picking finds."""
    cars = cars_of_a_list(10, 90, audit=(5,) + tuple(range(40, 60)))
    labels = labels_of(cars, failed={0, 1, 2} | {40, 41} | set(range(70, 80)))
    outcome = list_outcome(cars, labels, acted_on=True)
    assert (outcome["audit_known"], outcome["audit_failures"], outcome["other_failures"]) == (21, 2, 12)
    assert outcome["reference"] == "its unflagged audit cars"
    expected = lift_over_random(3, 10, 2, 20, share=0.1)
    assert outcome["lift_over_random"] == pytest.approx([expected[k] for k in ("value", "low", "high")])
    without = list_outcome(cars.assign(audit=False), labels, acted_on=True)
    assert without["lift_over_random"] is None and without["reference"] is None
    assert list_outcome(cars, labels.assign(label_known=False), acted_on=True) is None


# -- the audit draw --------------------------------------------------------------------------------

def test_the_audit_picks_its_share_of_the_cars_at_their_road_test_reproducibly_whatever_their_order():
    ranked = pd.DataFrame({"KNR": [f"2024-{i:07d}" for i in range(300)], "at_road_test": [True] * 250 + [False] * 50})
    picked = audit_draw(ranked, share=0.02, seed=7)
    assert picked.sum() == 5 and ranked.loc[picked, "at_road_test"].all()
    shuffled = ranked.sample(frac=1, random_state=3)
    again = audit_draw(shuffled, share=0.02, seed=7)
    assert set(shuffled.loc[again, "KNR"]) == set(ranked.loc[picked, "KNR"])
    assert set(ranked.loc[audit_draw(ranked, share=0.02, seed=8), "KNR"]) != set(ranked.loc[picked, "KNR"])
    assert not audit_draw(ranked, share=0.0, seed=7).any()
    on_line = ranked.assign(at_road_test=False)
    assert audit_draw(on_line, share=0.02, seed=7).sum() == 6, "no car at its road test: drawn among them all"


def test_a_list_is_refused_empty_or_from_an_unknown_path():
    with pytest.raises(OutputError, match="an empty list cannot be issued"):
        draft_list(pd.DataFrame({"KNR": [], "in_budget": []}), facts={}, settings=SETTINGS, by="Ana",
                   source="command line")
    with pytest.raises(OutputError, match="unknown source of a list 'fax'"):
        draft_list(pd.DataFrame({"KNR": ["2024-0000001"], "in_budget": [True]}), facts={}, settings=SETTINGS,
                   by="Ana", source="fax")


def test_a_shift_is_named_by_its_day_and_the_night_belongs_to_the_day_before():
    assert shift_of(dt.datetime(2024, 5, 20, 21, 30), (6, 14, 22)) == "2024-05-20 shift 2"
    assert shift_of(dt.datetime(2024, 5, 21, 3, 0), (6, 14, 22)) == "2024-05-20 shift 3"
    assert shift_of(dt.datetime(2024, 5, 21, 6, 0), (6, 14, 22)) == "2024-05-21 shift 1"


# -- the shadow's verdict --------------------------------------------------------------------------

def shadow_world(days: int, *, lift: float, cars_a_day: int = 300, plan: dict | None = None,
                 acted_on: bool = False, seed: int = 1) -> tuple[list[dict], dict, pd.DataFrame]:
    """Daily lists from 2024-05-06, 10 % of their cars flagged; flagged cars fail ``lift`` times as often as the
    list on average (7 %)."""
    rng = np.random.default_rng(seed)
    plan = plan or {"bar": 2.0, "weeks": 4, "from": None, "min_failures": 20}
    records, frames, labels = [], {}, []
    for d in range(days):
        day = dt.date(2024, 5, 6) + dt.timedelta(days=d)
        knr = [f"2024-{d:03d}{i:04d}" for i in range(cars_a_day)]
        flagged = np.arange(cars_a_day) < cars_a_day // 10
        rate = np.where(flagged, 0.07 * lift, 0.07 * (1 - 0.1 * lift) / 0.9)
        frames[f"l{d}"] = pd.DataFrame({"KNR": knr, "in_budget": flagged, "audit": False, "at_road_test": True})
        labels.append(pd.DataFrame({"KNR": knr, "label_known": True,
                                    "label_rod": (rng.random(cars_a_day) < rate).astype(int)}))
        records.append({"id": f"l{d}", "at": f"{day}T23:00:00+00:00", "acted_on": acted_on, "model": "m1",
                        "data_end": f"{day} 22:00:00", "shadow": None if acted_on else plan})
    return records, frames, pd.concat(labels, ignore_index=True)


def test_the_verdict_is_go_when_even_the_low_end_of_the_lift_reaches_the_bar():
    records, frames, labels = shadow_world(28, lift=4.0)
    verdict = shadow_verdict(records, frames, labels, settings=SETTINGS, today=dt.date(2024, 7, 1))
    assert verdict.decision == "go" and verdict.lift[1] >= 2.0 and verdict.lists == 28
    assert verdict.words.startswith("Go: over the 4 weeks from 2024-05-06 to 2024-06-02")
    assert (verdict.start, verdict.end) == ("2024-05-06", "2024-06-03")
    assert verdict.known == 28 * 300 and "GO" in verdict.html and "<table>" in verdict.html


def test_the_verdict_is_no_go_when_the_low_end_stays_below_the_bar():
    records, frames, labels = shadow_world(28, lift=1.5)
    verdict = shadow_verdict(records, frames, labels, settings=SETTINGS, today=dt.date(2024, 7, 1))
    assert verdict.decision == "no-go" and verdict.lift[1] < 2.0
    assert f"The low end of the interval, {verdict.lift[1]:.2f}, stays below the bar of 2" in verdict.words


def test_the_verdict_says_not_yet_while_the_weeks_run_or_too_few_outcomes_are_known():
    records, frames, labels = shadow_world(10, lift=4.0)
    running = shadow_verdict(records, frames, labels, settings=SETTINGS, today=dt.date(2024, 5, 16))
    assert running.decision == "not yet" and "its lists cover 10 days so far" in running.words
    assert "So far the flagged cars hold" in running.words
    unknown = labels.assign(label_known=labels.index < 100)
    waiting = shadow_verdict(records, frames, unknown, settings=SETTINGS, today=dt.date(2024, 7, 1))
    assert waiting.decision == "not yet" and waiting.words.startswith("Not yet: 100 of the 3,000 cars")
    assert waiting.failures < 20 and "the verdict needs 20 failures among them" in waiting.words


def test_the_bar_is_the_one_set_before_the_shadow_began():
    records, frames, labels = shadow_world(28, lift=2.6, plan={"bar": 1.5, "weeks": 4, "from": None,
                                                                "min_failures": 20})
    verdict = shadow_verdict(records, frames, labels, settings=SETTINGS.replace(shadow_bar=3.0),
                             today=dt.date(2024, 7, 1))
    assert verdict.bar == 1.5 and verdict.decision == "go"
    assert verdict.note.startswith("The settings say shadow_bar 3 (now) instead of 1.5")


def test_without_a_shadow_list_the_verdict_says_how_to_run_one():
    records, frames, labels = shadow_world(5, lift=4.0, acted_on=True)
    verdict = shadow_verdict(records, frames, labels, settings=SETTINGS)
    assert verdict.decision == "no shadow" and "set shadow = true in kafer.toml" in verdict.words


def test_a_car_listed_twice_counts_once_from_its_first_list_at_the_road_test():
    first = pd.DataFrame({"KNR": ["a", "b", "c"], "in_budget": [False, True, False],
                          "at_road_test": [False, True, False]})
    second = pd.DataFrame({"KNR": ["a", "b", "c"], "in_budget": [True, False, False],
                           "at_road_test": [True, True, False]})
    pooled = pooled_cars([first, second]).set_index("KNR")
    assert pooled.loc["a", "in_budget"] and pooled.loc["b", "in_budget"], "a from the second list, b from the first"
    assert list(pooled.index) == ["a", "b", "c"]


# -- recorded in the lake --------------------------------------------------------------------------

def test_the_command_line_records_the_list_with_its_audit_and_kafer_lists_shows_it(world, tmp_path, capsys):
    lake = Lake(world["settings"].lake)
    before = len(catalog.list_records(lake))
    out = tmp_path / "ranked.xlsx"
    assert main(["predict", str(world["upload"].folder), "--lake", lake.url, "--out", str(out), "--by", "Bia",
                 "--shadow"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    record = catalog.list_records(lake)[-1]
    assert len(catalog.list_records(lake)) == before + 1
    assert f"List {record['id']} recorded in the lake (a shadow list: recorded, not acted on)" in line
    assert (record["by"], record["source"], record["model"], record["acted_on"]) == ("Bia", "command line",
                                                                                     world["version"], False)
    assert record["budget"] == 0.1 and record["threshold"] == pytest.approx(world["threshold"])
    assert sorted(f["name"] for f in record["files"]) == sorted(p.name for p in world["upload"].files)
    assert all(len(f["sha256"]) == 64 for f in record["files"]) and record["shift"].endswith(("1", "2", "3"))
    cars = catalog.list_cars(lake, record["id"])
    assert list(cars.columns) == list(lists.CAR_COLUMNS) and len(cars) == record["cars"] == 200
    assert cars["audit"].sum() == record["audit"] == 4 and cars.loc[cars["audit"], "at_road_test"].all()
    assert cars["in_budget"].sum() == record["flagged"] and cars["rank"].tolist() == list(range(1, 201))
    sheet = load_workbook(out)[LIST_SHEET]
    header = [c.value for c in sheet[1]]
    assert header[:5] == ["Rank", "KNR", "Road-test risk", "In inspection budget", "Audit pick (random)"]
    rows = list(sheet.iter_rows(min_row=2))
    blue = {r[1].value for r in rows if r[0].fill.fgColor.rgb == "FFDDEBF7"}
    assert blue == set(cars.loc[cars["audit"] & ~cars["in_budget"], "KNR"])
    assert {r[1].value for r in rows if r[4].value == "yes"} == set(cars.loc[cars["audit"], "KNR"])
    about = dict(r for r in load_workbook(out)[ABOUT_SHEET].iter_rows(max_col=2, values_only=True) if r[0])
    assert about["List"] == f"{record['id']}, recorded in the lake by Bia" and about["Acted on"].startswith("no")
    assert main(["lists", "--json", "--lake", lake.url]) == 0
    shown = json.loads(capsys.readouterr().out)
    listed = shown["lists"][-1]
    assert set(listed) >= {"id", "at", "model", "budget", "cars", "flagged", "acted_on", "audit", "outcome"}
    assert listed["id"] == record["id"] and listed["outcome"] is None, "no car of the upload is labelled yet"
    assert [item["id"] for item in shown["lists"]] == sorted(item["id"] for item in shown["lists"])
    assert shown["verdict"]["decision"] == "not yet"


def test_once_the_road_tests_are_in_the_list_has_its_outcome(world, tmp_path, capsys):
    import shutil

    lake_path = tmp_path / "lake"
    shutil.copytree(world["settings"].lake, lake_path)
    settings = world["settings"].replace(lake=str(lake_path))
    upload = [str(world["upload"].folder)]
    ranked = predict_upload(upload, settings=settings)
    issue_ranking(ranked, str(tmp_path / "ranked.csv"), facts=ranking_facts(ranked, paths=upload, settings=settings),
                  settings=settings, by="Ana", source="command line", paths=upload, shadow=False)
    assert pd.read_csv(tmp_path / "ranked.csv")["audit"].sum() == 4, "the CSV marks the audit too"
    ingest(upload, lake=Lake(settings.lake), settings=settings)
    assert main(["lists", "--lake", settings.lake, "--html", str(tmp_path / "verdict.html")]) == 0
    text = capsys.readouterr().out
    found = issued_lists(Lake(settings.lake), settings=settings).lists[-1]
    table = catalog.current_features(Lake(settings.lake)).set_index("KNR")
    cars = catalog.list_cars(Lake(settings.lake), found["id"]).set_index("KNR")
    known = table.loc[cars.index, "label_known"].astype(bool)
    failed = known & (table.loc[cars.index, "label_rod"] == 1)
    outcome = found["outcome"]
    assert outcome["known"] == known.sum() > 150
    assert outcome["flagged_failures"] == (failed & cars["in_budget"]).sum()
    assert outcome["other_failures"] == (failed & ~cars["in_budget"]).sum()
    assert found["id"] in text and "Shadow verdict:" in text
    assert "Shadow verdict" in (tmp_path / "verdict.html").read_text()


def test_a_list_that_cannot_be_recorded_is_not_left_where_inspectors_read(world, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise LakeError("the lake refused the record")

    out = tmp_path / "ranked.csv"
    monkeypatch.setattr(catalog, "save_list", refuse)
    ranked = pd.DataFrame({"KNR": ["2024-0000001"], "probability": [0.3], "in_budget": [True]})
    draft = draft_list(ranked, facts={"made_at": "2024-05-06T10:00:00+00:00", "budget": 0.1,
                                      "model": {"version": "m1"}}, settings=SETTINGS, by="", source="desk")
    assert draft.record["by"], "blank: this machine's login"
    with pytest.raises(LakeError, match="refused the record"):
        issue(draft, lake=Lake(world["settings"].lake), out=str(out), write=lambda: out.write_text("x") and "written")
    assert not out.exists()


def test_the_notebook_records_its_list_too(world, tmp_path):
    lake = Lake(world["settings"].lake)
    before = {r["id"] for r in catalog.list_records(lake)}
    run_notebook("06_predict", tmp_path, {"upload": [str(world["upload"].folder)], "lake": world["settings"].lake,
                                          "out": "", "by": "Caio", "shadow": True})
    [new] = [r for r in catalog.list_records(lake) if r["id"] not in before]
    assert (new["source"], new["by"], new["acted_on"]) == ("notebook", "Caio", False)
    shown = [o["data"]["text/markdown"] for c in nbformat.read(str(tmp_path / "06_predict.ipynb"), as_version=4).cells
             for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert f"List {new['id']} recorded in the lake" in shown[0]


# -- outcomes the lists shaped ------------------------------------------------------------------------

def test_shaped_cars_are_those_flagged_on_lists_acted_on_recorded_by_then(memory_lake):
    def record(list_id: str, at: str, acted_on: bool, cars: pd.DataFrame) -> None:
        catalog.save_list(memory_lake, {"id": list_id, "at": at, "acted_on": acted_on}, cars)

    cars = cars_of_a_list(2, 3, audit=(4,))
    record("l1", "2024-05-06T10:00:00+00:00", True, cars)
    record("l2", "2024-05-07T10:00:00+00:00", False, cars_of_a_list(5, 0))
    record("l3", "2024-05-08T10:00:00+00:00", True, cars.assign(in_budget=[False, False, True, False, False]))
    shaped = shaped_cars(memory_lake)
    assert shaped.to_dict("list") == {"KNR": list(cars["KNR"][:3]), "list": ["l1", "l1", "l3"]}
    assert shaped_cars(memory_lake, as_of="2024-05-07T23:00:00+00:00")["KNR"].tolist() == list(cars["KNR"][:2])
