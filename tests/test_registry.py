"""The model registry: pending candidates, keep-new / keep-old, rollback, the log, the lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import queue
import re
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import lake_snapshot
from kafer import catalog, locks, registry
from kafer.config import load_settings
from kafer.errors import DecisionError, LakeError, LockLost, LockTimeout, RegistryError
from kafer.lake import Lake
from kafer.locks import hold
from kafer.runrecord import write_json

RUN1, RUN2, RUN3 = "r20241026T101500Z-ab12", "r20241126T201753Z-cd34", "r20241226T090000Z-ef56"
FIGURES = {"roc_auc": {"value": 0.81, "low": 0.78, "high": 0.84}, "pr_auc": {"value": 0.32, "low": 0.27, "high": 0.37},
           "brier": {"value": 0.061, "low": 0.055, "high": 0.067},
           **{f"{kind}_at_{p}": {"value": 0.1 * p / 5, "low": 0.08 * p / 5, "high": 0.12 * p / 5}
              for kind in ("recall", "precision") for p in (5, 10, 20)}}


TRAINED_ON = {"cars": 4800, "positives": 330, "produced_from": "2024-04-01T06:00:00",
              "produced_to": "2024-05-20T22:00:00"}


def register(lake: Lake, *, run_id: str, artifact: bytes, family: str = "hgb", data_version: str = "f1",
             metrics: dict | None = None, compared_with: str | None = None, settings=None) -> str:
    """Register a candidate as a retrain does, with a fresh version id."""
    return registry.register_candidate(lake, run_id=run_id, version=registry.new_version(), artifact=artifact,
                                       family=family, data_version=data_version,
                                       metrics={} if metrics is None else metrics, trained_on=TRAINED_ON,
                                       training_cars=["2024-1510001", "2024-1510002"], compared_with=compared_with,
                                       settings=settings)


def write_run(runs: Path, run_id: str, *, candidate: str | None, production: str | None,
              status: str = "succeeded") -> Path:
    """A run record as a retrain leaves it: manifest, metrics, predictions and the report."""
    folder = runs / run_id
    write_json(folder / "manifest.json", {"run_id": run_id, "status": status, "candidate_version": candidate,
                                          "production_version": production, "data_version": "f20241101T000000.000000Z"})
    shifted = {k: {b: v + 0.01 for b, v in f.items()} for k, f in FIGURES.items()}
    write_json(folder / "metrics.json", {
        "run_id": run_id, "eval_cars": 1200, "eval_positives": 48, "budgets": [0.05, 0.1, 0.2],
        "operating_budget": 0.1,
        "models": {"candidate": {"version": candidate, "family": "hgb", "metrics": shifted},
                   "production": {"version": production, "family": "hgb", "metrics": FIGURES} if production else None},
        "difference": {k: {"value": 0.01, "low": -0.02, "high": 0.04} for k in FIGURES} if production else None,
        "verdict": "The new model finds 1 more failure per 100 cars at 10 %, within chance."})
    (folder / "predictions.csv").write_text("KNR,probability\n2023-2016173,0.4\n", encoding="utf-8")
    (folder / "04_compare.html").write_text(f"<html><body>comparison of {run_id}</body></html>", encoding="utf-8")
    return folder


def retrain(lake: Lake, runs: Path, run_id: str) -> str:
    """What a succeeded retrain leaves: a pending candidate in the lake and the run's record."""
    current = (registry.production(lake) or {}).get("version")
    version = register(lake, run_id=run_id, artifact=f"model of {run_id}".encode(), family="hgb",
                       data_version="f20241101T000000.000000Z", metrics=FIGURES, compared_with=current)
    write_run(runs, run_id, candidate=version, production=current)
    return version


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def test_a_candidate_enters_pending(lake):
    metrics = {"roc_auc": {"value": 0.8, "low": 0.7, "high": 0.9}}
    version = register(lake, run_id=RUN1, artifact=b"\x00model", family="hgb",
                                          data_version="f1", metrics=metrics)
    assert re.fullmatch(r"m\d{8}T\d{6}\.\d{6}Z", version)
    assert metrics == {"roc_auc": {"value": 0.8, "low": 0.7, "high": 0.9}}
    assert registry.load_artifact(lake, version) == b"\x00model"
    [meta] = registry.versions(lake)
    assert meta["version"] == version and meta["run"] == RUN1 and meta["status"] == "pending"
    assert (meta["family"], meta["data_version"], meta["metrics"]) == ("hgb", "f1", metrics)
    assert meta["created_at"].endswith("+00:00")
    assert lake.list("models") == [f"models/versions/{version}/{name}"
                                   for name in ("meta.json", "model.bin", "training_cars.parquet")]
    assert catalog.model_training_cars(lake, version) == {"2024-1510001", "2024-1510002"}
    assert registry.production(lake) is None
    assert [c["version"] for c in registry.candidates(lake)] == [version]
    assert registry.latest_pending_run(lake) == RUN1


def test_a_run_registers_at_most_one_candidate(lake):
    first = register(lake, run_id=RUN1, artifact=b"a", family="hgb", data_version="f1", metrics={})
    before = lake_snapshot(lake)
    with pytest.raises(RegistryError, match=f"run {RUN1} already has a candidate, {first}"):
        register(lake, run_id=RUN1, artifact=b"b", family="hgb", data_version="f1", metrics={})
    assert lake_snapshot(lake) == before


@pytest.mark.parametrize("run_id, artifact, problem", [
    (RUN1, b"", "no artifact bytes"), ("../escape", b"a", "is not a run id"), ("", b"a", "is not a run id")])
def test_register_refuses_bad_input(lake, run_id, artifact, problem):
    with pytest.raises(RegistryError, match=re.escape(problem)):
        register(lake, run_id=run_id, artifact=artifact, family="hgb", data_version="f1",
                                    metrics={})
    assert lake.list("models") == []


def test_keep_new_promotes(lake, runs):
    version = retrain(lake, runs, RUN1)
    record = registry.decide(lake, RUN1, "keep-new", by=" Ana ", why=" better recall at 10 % ", runs_dir=runs)
    report = (runs / RUN1 / "04_compare.html").read_bytes()
    assert record["choice"] == "keep-new" and record["run"] == RUN1 and record["candidate"] == version
    assert (record["by"], record["why"]) == ("Ana", "better recall at 10 %")
    assert (record["before"], record["after"]) == (None, version)
    assert record["report_sha256"] == hashlib.sha256(report).hexdigest()
    assert record["at"].endswith("+00:00")
    assert registry.production(lake)["version"] == version
    assert registry.production(lake)["since"] == record["at"]
    assert catalog.production_pointer(lake)["version"] == version
    assert registry.decisions(lake) == [record]
    assert [d["id"] for d in catalog.decisions(lake)] == [record["id"]]
    assert (record["seq"], record["id"]) == (1, "000001")
    assert [v["status"] for v in registry.versions(lake)] == ["production"]
    assert registry.candidates(lake) == [] and registry.latest_pending_run(lake) is None


def test_keep_old_leaves_production_and_rejects_the_candidate(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first model", runs_dir=runs)
    second = retrain(lake, runs, RUN2)
    pointer = catalog.production_pointer(lake)
    record = registry.decide(lake, RUN2, "keep-old", by="Rui", why="no better within the intervals", runs_dir=runs)
    assert (record["before"], record["after"], record["candidate"]) == (first, first, second)
    assert catalog.production_pointer(lake) == pointer
    assert {v["version"]: v["status"] for v in registry.versions(lake)} == {first: "production", second: "rejected"}
    assert registry.candidates(lake) == []


def test_keep_old_without_production_rejects(lake, runs):
    version = retrain(lake, runs, RUN1)
    record = registry.decide(lake, RUN1, "keep-old", by="Ana", why="not convinced", runs_dir=runs)
    assert (record["before"], record["after"]) == (None, None)
    assert registry.production(lake) is None and catalog.production_pointer(lake) is None
    assert registry.versions(lake)[0]["version"] == version and registry.versions(lake)[0]["status"] == "rejected"


def test_deciding_twice_is_refused(lake, runs):
    retrain(lake, runs, RUN1)
    first = registry.decide(lake, RUN1, "keep-new", by="Ana", why="clearly better", runs_dir=runs)
    before = lake_snapshot(lake)
    for choice in ("keep-new", "keep-old"):
        with pytest.raises(DecisionError, match=re.escape(f"run {RUN1} was already decided: keep-new by Ana at "
                                                          f"{first['at']}")):
            registry.decide(lake, RUN1, choice, by="Rui", why="changed my mind", runs_dir=runs)
    assert lake_snapshot(lake) == before


@pytest.mark.parametrize("change, problem", [
    ({"why": ""}, "needs a reason"), ({"why": " \n\t"}, "needs a reason"), ({"why": None}, "needs a reason"),
    ({"by": "  "}, "needs a name"), ({"choice": "keep-both"}, "unknown choice 'keep-both'"),
    ({"choice": "rollback"}, "unknown choice"), ({"run_id": "r20990101T000000Z-0000"}, "unknown run"),
    ({"run_id": "../x"}, "unknown run"),
])
def test_refused_decisions_change_nothing(lake, runs, change, problem):
    retrain(lake, runs, RUN1)
    before = lake_snapshot(lake)
    args = {"run_id": RUN1, "choice": "keep-new", "by": "Ana", "why": "better", **change}
    with pytest.raises(DecisionError, match=re.escape(problem)):
        registry.decide(lake, args["run_id"], args["choice"], by=args["by"], why=args["why"], runs_dir=runs)
    assert lake_snapshot(lake) == before


@pytest.mark.parametrize("status", ["failed", "running"])
def test_a_run_that_did_not_succeed_is_refused(lake, runs, status):
    version = register(lake, run_id=RUN1, artifact=b"a", family="hgb", data_version="f1",
                                          metrics={})
    write_run(runs, RUN1, candidate=version, production=None, status=status)
    with pytest.raises(DecisionError, match=f"run {RUN1} has status '{status}'"):
        registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs)
    assert registry.decisions(lake) == [] and registry.production(lake) is None


def test_a_run_without_a_candidate_in_this_lake_is_refused(lake, runs):
    write_run(runs, RUN1, candidate="m20241026T101500.000000Z", production=None)
    with pytest.raises(DecisionError, match=f"run {RUN1} has no new model in the registry"):
        registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs)
    register(lake, run_id=RUN1, artifact=b"a", family="hgb", data_version="f1", metrics={})
    with pytest.raises(DecisionError, match="manifest names new model m20241026T101500.000000Z"):
        registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs)
    assert registry.decisions(lake) == []


def test_keep_new_on_a_stale_comparison_is_refused(lake, runs):
    first = retrain(lake, runs, RUN1)
    retrain(lake, runs, RUN2)  # compared against no production model
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    stale = f"compared its new model with no production model, but production is now {first}"
    with pytest.raises(DecisionError, match=stale):
        registry.decide(lake, RUN2, "keep-new", by="Ana", why="also good", runs_dir=runs)
    assert registry.production(lake)["version"] == first
    registry.decide(lake, RUN2, "keep-old", by="Ana", why="stale comparison", runs_dir=runs)
    assert registry.production(lake)["version"] == first


def test_whether_a_comparison_is_stale_is_read_from_the_registry_not_the_runs_folder(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    stale = register(lake, run_id=RUN2, artifact=b"two", compared_with=None)
    write_run(runs, RUN2, candidate=stale, production=first)  # a runs folder that says otherwise
    with pytest.raises(DecisionError, match=f"compared its new model with no production model, but production is now "
                                            f"{first}"):
        registry.decide(lake, RUN2, "keep-new", by="Ana", why="looks fine here", runs_dir=runs)
    fresh = register(lake, run_id=RUN3, artifact=b"three", compared_with=first)
    write_run(runs, RUN3, candidate=fresh, production=None)
    registry.decide(lake, RUN3, "keep-new", by="Ana", why="the lake says it is fair", runs_dir=runs)
    assert registry.production(lake)["version"] == fresh


def test_an_entry_from_before_the_registry_recorded_its_comparison_falls_back_on_its_run(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    old = retrain(lake, runs, RUN2)
    key = f"models/versions/{old}/meta.json"
    entry = {k: v for k, v in lake.read_json(key).items() if k != "compared_with"}
    lake.fs.pipe_file(lake.path(key), json.dumps(entry).encode())  # as an older Käfer registered it
    manifest = json.loads((runs / RUN2 / "manifest.json").read_text())
    write_json(runs / RUN2 / "manifest.json", {k: v for k, v in manifest.items() if k != "production_version"})
    with pytest.raises(DecisionError, match="does not say which production model it was compared with"):
        registry.decide(lake, RUN2, "keep-new", by="Ana", why="x", runs_dir=runs)
    write_json(runs / RUN2 / "manifest.json", manifest)
    registry.decide(lake, RUN2, "keep-new", by="Ana", why="its run says it was compared with the first", runs_dir=runs)
    assert registry.production(lake)["version"] == old != first


def test_a_missing_report_is_logged_as_such(lake, runs):
    retrain(lake, runs, RUN1)
    (runs / RUN1 / "04_compare.html").unlink()
    assert registry.decide(lake, RUN1, "keep-new", by="Ana", why="ok", runs_dir=runs)["report_sha256"] is None


def test_retrain_keep_new_retrain_keep_old(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first model beats nothing", runs_dir=runs)
    second = retrain(lake, runs, RUN2)
    assert json.loads((runs / RUN2 / "manifest.json").read_text())["production_version"] == first
    registry.decide(lake, RUN2, "keep-old", by="Rui", why="recall interval overlaps", runs_dir=runs)
    assert registry.production(lake)["version"] == first
    assert registry.load_artifact(lake, first) == f"model of {RUN1}".encode()
    log = registry.decisions(lake)
    assert [(d["run"], d["choice"], d["by"], d["why"]) for d in log] == [
        (RUN1, "keep-new", "Ana", "first model beats nothing"), (RUN2, "keep-old", "Rui", "recall interval overlaps")]
    assert [d["seq"] for d in log] == [1, 2] and log[0]["at"] <= log[1]["at"]
    assert [(d["before"], d["after"]) for d in log] == [(None, first), (first, first)]
    assert {v["version"]: v["status"] for v in registry.versions(lake)} == {first: "production", second: "rejected"}


def test_rollback_restores_an_earlier_version_and_is_logged(lake, runs):
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    second = retrain(lake, runs, RUN2)
    registry.decide(lake, RUN2, "keep-new", by="Ana", why="better", runs_dir=runs)
    assert {v["version"]: v["status"] for v in registry.versions(lake)} == {first: "superseded", second: "production"}
    record = registry.rollback(lake, to_version=first, by="Rui", why="line complaints about the new ranking")
    assert (record["choice"], record["run"], record["before"], record["after"]) == ("rollback", None, second, first)
    assert record["seq"] == 3 and record["by"] == "Rui"
    assert registry.production(lake)["version"] == first
    assert registry.production(lake)["decision"] == record["id"]
    assert registry.decisions(lake)[-1] == record and len(registry.decisions(lake)) == 3
    assert {v["version"]: v["status"] for v in registry.versions(lake)} == {first: "production", second: "superseded"}
    registry.rollback(lake, to_version=second, by="Ana", why="complaints were about the upload")
    assert registry.production(lake)["version"] == second


def test_rollback_refusals_change_nothing(lake, runs):
    first = retrain(lake, runs, RUN1)
    pending = f"{first} was never in production: it is the new model of run {RUN1}, waiting for a decision"
    with pytest.raises(DecisionError, match=pending):
        registry.rollback(lake, to_version=first, by="Ana", why="try it")
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    rejected = retrain(lake, runs, RUN2)
    registry.decide(lake, RUN2, "keep-old", by="Ana", why="worse", runs_dir=runs)
    before = lake_snapshot(lake)
    cases = [(first, "why", f"{first} is already in production"), (rejected, "why", f"run {RUN2} kept the old model"),
             ("m20990101T000000.000000Z", "why", "unknown model version"), ("../x", "why", "unknown model version"),
             (first, " ", "needs a reason")]
    for version, why, problem in cases:
        with pytest.raises(DecisionError, match=re.escape(problem)):
            registry.rollback(lake, to_version=version, by="Ana", why=why)
    assert lake_snapshot(lake) == before


def test_status_shape(lake, runs):
    assert registry.status(lake) == {"lake": lake.url, "production": None, "candidates": [], "decisions": [],
                                     "runs": []}
    first = retrain(lake, runs, RUN1)
    registry.decide(lake, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    pending = retrain(lake, runs, RUN2)
    state = json.loads(json.dumps(registry.status(lake)))
    assert set(state) == {"lake", "production", "candidates", "decisions", "runs"}
    assert {"version", "run", "family", "data_version", "metrics", "created_at", "since"} <= set(state["production"])
    assert (state["production"]["version"], state["production"]["run"]) == (first, RUN1)
    assert [(c["version"], c["run"], c["status"]) for c in state["candidates"]] == [(pending, RUN2, "pending")]
    [decision] = state["decisions"]
    assert {"run", "choice", "by", "why", "at", "before", "after", "candidate", "report_sha256"} <= set(decision)
    assert (decision["run"], decision["choice"], decision["by"], decision["why"]) == (RUN1, "keep-new", "Ana", "first")


def test_unknown_or_damaged_artifact(lake, runs):
    version = retrain(lake, runs, RUN1)
    with pytest.raises(RegistryError, match="unknown model version 'm1'"):
        registry.load_artifact(lake, "m1")
    lake.fs.pipe_file(lake.path(f"models/versions/{version}/model.bin"), b"tampered")
    with pytest.raises(LakeError, match="does not match its registered hash"):
        registry.load_artifact(lake, version)


class _Clock(datetime):
    """A machine's clock, ``ahead`` of the true time (set per test)."""

    ahead = timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + cls.ahead


def test_decisions_from_machines_whose_clocks_disagree_keep_their_true_order(lake, runs, monkeypatch):
    """Machine A's clock is an hour ahead: its decision, made first, says a later time than B's, made after;
    neither the production model nor the next change may go back to A's."""
    monkeypatch.setattr(registry, "datetime", _Clock)
    first = retrain(lake, runs, RUN1)
    _Clock.ahead = timedelta(hours=1)
    on_a = registry.decide(lake, RUN1, "keep-new", by="Ana on A", why="first", runs_dir=runs)
    _Clock.ahead = timedelta(0)
    second = retrain(lake, runs, RUN2)
    on_b = registry.decide(lake, RUN2, "keep-new", by="Rui on B", why="better", runs_dir=runs)
    assert on_b["at"] < on_a["at"]  # the clocks say B decided first …
    assert [d["id"] for d in registry.decisions(lake)] == [on_a["id"], on_b["id"]]  # … the sequence knows better
    assert registry.production(lake)["version"] == second
    retrain(lake, runs, RUN3)
    _Clock.ahead = timedelta(hours=1)
    registry.decide(lake, RUN3, "keep-old", by="Ana on A", why="no better", runs_dir=runs)
    assert registry.production(lake)["version"] == second == catalog.production_pointer(lake)["version"] != first


def test_decisions_of_an_older_kafer_come_first_in_their_old_order(lake, runs):
    first = retrain(lake, runs, RUN1)
    second = retrain(lake, runs, RUN2)
    old = [{"id": f"20241126T2017{s}.000000Z-{run}", "at": f"2024-11-26T20:17:{s}+00:00", "by": "Ana", "why": "old",
            "choice": "keep-new", "run": run, "candidate": v, "before": b, "after": v, "report_sha256": None}
           for s, run, v, b in (("53", RUN2, second, first), ("13", RUN1, first, None))]
    for record in old:
        lake.write_json(f"models/decisions/{record['id']}.json", record)
    assert [d["run"] for d in registry.decisions(lake)] == [RUN1, RUN2]  # by their ids, as they always read
    assert registry.production(lake)["version"] == second
    record = registry.rollback(lake, to_version=first, by="Rui", why="back")
    assert record["seq"] == 1 and [d["run"] for d in registry.decisions(lake)] == [RUN1, RUN2, None]
    assert registry.production(lake)["version"] == first == catalog.production_pointer(lake)["version"]


def test_a_pointer_write_that_failed_is_read_from_the_log_and_completed_by_the_next_change(lake, runs, monkeypatch):
    version = retrain(lake, runs, RUN1)

    def unreachable(key, obj):
        raise OSError("connection reset")

    monkeypatch.setattr(lake, "write_pointer", unreachable)
    with pytest.raises(OSError, match="connection reset"):
        registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs)
    monkeypatch.undo()
    assert catalog.production_pointer(lake) is None and len(registry.decisions(lake)) == 1
    assert registry.production(lake)["version"] == version  # the log is the truth
    assert [v["status"] for v in registry.versions(lake)] == ["production"]
    with pytest.raises(DecisionError, match="already decided"):
        registry.decide(lake, RUN1, "keep-new", by="Ana", why="retry", runs_dir=runs)
    assert catalog.production_pointer(lake)["version"] == version
    assert registry.production(lake)["decision"] == registry.decisions(lake)[0]["id"]


def test_a_held_lock_times_out_with_a_message(lake, runs):
    retrain(lake, runs, RUN1)
    before = lake_snapshot(lake)
    quick = load_settings(lock_timeout=0.2)
    with hold(lake, registry.LOCK, purpose="retrain r20241226T090000Z-ef56"):
        with pytest.raises(LockTimeout, match=r"is busy: retrain r20241226T090000Z-ef56 \(.*\) holds its lock"):
            registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs, settings=quick)
        with pytest.raises(LockTimeout, match="is busy"):
            registry.rollback(lake, to_version="m1", by="Ana", why="x", settings=quick)
        with pytest.raises(LockTimeout, match="is busy"):
            register(lake, run_id=RUN2, artifact=b"a", family="hgb", data_version="f1",
                                        metrics={}, settings=quick)
    assert {k: v for k, v in lake_snapshot(lake).items() if not k.startswith("locks/")} == before
    assert registry.decide(lake, RUN1, "keep-new", by="Ana", why="better", runs_dir=runs, settings=quick)


def _race_outcomes(outcomes: list[tuple[str, str]]) -> None:
    """Exactly one decision went through; the other was refused as decided, or timed out cleanly."""
    ok = [o for o in outcomes if o[0] == "ok"]
    refused = [o for o in outcomes if o[0] != "ok"]
    assert len(ok) == 1 and len(refused) == 1, outcomes
    kind, message = refused[0]
    expected = {"DecisionError": "was already decided", "LockTimeout": "is busy"}
    assert kind in expected and expected[kind] in message, refused


def _decide(lake_url: str, runs: str, choice: str, start, outcomes) -> None:
    """One contender: wait for the start, decide, report how it went."""
    start.wait()
    try:
        record = registry.decide(Lake(lake_url), RUN1, choice, by=choice, why="race", runs_dir=runs,
                                 settings=load_settings(lock_timeout=20.0))
        outcomes.put(("ok", record["choice"]))
    except (DecisionError, LockTimeout) as exc:
        outcomes.put((type(exc).__name__, str(exc)))


def test_two_threads_deciding_at_once(lake, runs, monkeypatch):
    """Each contender pauses after reading the log, up to a second, for the other to read it too:
    without the lock both would see the run undecided; with it the second cannot get there."""
    version = retrain(lake, runs, RUN1)
    both_read, read = threading.Barrier(2, timeout=1.0), registry._decision_of

    def read_together(log, run_id):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        return read(log, run_id)

    monkeypatch.setattr(registry, "_decision_of", read_together)
    start, outcomes = threading.Barrier(2), queue.Queue()
    threads = [threading.Thread(target=_decide, args=(lake.url, str(runs), choice, start, outcomes))
               for choice in ("keep-new", "keep-old")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [outcomes.get_nowait() for _ in threads]
    _race_outcomes(results)
    [decision] = registry.decisions(lake)
    assert decision["choice"] == next(o[1] for o in results if o[0] == "ok")
    assert (registry.production(lake) or {}).get("version") == (version if decision["choice"] == "keep-new" else None)


def test_two_processes_deciding_at_once(tmp_path, runs):
    lake = Lake(str(tmp_path / "lake"))
    version = retrain(lake, runs, RUN1)
    context = multiprocessing.get_context("spawn")
    start, outcomes = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_decide, args=(lake.url, str(runs), choice, start, outcomes))
                 for choice in ("keep-new", "keep-old")]
    for p in processes:
        p.start()
    results = [outcomes.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=120)
        assert p.exitcode == 0
    _race_outcomes(results)
    [decision] = registry.decisions(lake)
    assert decision["choice"] == next(o[1] for o in results if o[0] == "ok")
    assert (registry.production(lake) or {}).get("version") == (version if decision["choice"] == "keep-new" else None)
    assert lake.list("locks") == []


@pytest.fixture(params=["memory", "s3"])
def store(request):
    """Lakes whose lock is an object with a heartbeat."""
    return request.getfixturevalue("memory_lake" if request.param == "memory" else "s3_lake")


@pytest.mark.parametrize("change", ["register", "decide", "rollback"])
def test_a_holder_stalled_past_its_lock_registers_nothing_and_moves_no_pointer(store, runs, monkeypatch, change):
    """Machine A reads the registry under its lock, then stalls (no heartbeat) past the staleness; machine B
    takes the lock over and decides. A, woken, is refused (LockLost) before its entry, decision or pointer."""
    first = retrain(store, runs, RUN1)
    registry.decide(store, RUN1, "keep-new", by="Ana", why="first", runs_dir=runs)
    second = retrain(store, runs, RUN2)
    registry.decide(store, RUN2, "keep-new", by="Ana", why="second", runs_dir=runs)
    retrain(store, runs, RUN3)
    short = load_settings(lock_stale_after=1.0, lock_timeout=30)
    monkeypatch.setattr(locks, "_heartbeat", lambda lease, stop: stop.wait())
    read, stalled, woken = registry._state, threading.Event(), threading.Event()

    def read_then_stall(lake):
        state = read(lake)
        if threading.current_thread().name == "machine-a":
            stalled.set()
            woken.wait(60)
        return state

    monkeypatch.setattr(registry, "_state", read_then_stall)
    run_model = catalog.run_model
    monkeypatch.setattr(catalog, "run_model", lambda lake, run_id: (read_then_stall(lake), run_model(lake, run_id))[1])
    outcome = []

    def machine_a():
        try:
            if change == "register":
                register(store, run_id="r20250101T000000Z-a001", artifact=b"a's model", settings=short)
            elif change == "decide":
                registry.decide(store, RUN3, "keep-new", by="A", why="stalled", runs_dir=runs, settings=short)
            else:
                registry.rollback(store, to_version=first, by="A", why="stalled", settings=short)
            outcome.append("written")
        except LockLost as exc:
            outcome.append(str(exc))

    monkeypatch.setenv("KAFER_HOST", "machine-a")
    thread = threading.Thread(target=machine_a, name="machine-a")
    thread.start()
    assert stalled.wait(60)
    monkeypatch.setenv("KAFER_HOST", "machine-b")
    on_b = registry.decide(store, RUN3, "keep-old", by="B", why="b took over", runs_dir=runs, settings=short)
    woken.set()
    thread.join(60)
    assert len(outcome) == 1 and "lock 'registry' of " in outcome[0] and "was taken over by" in outcome[0]
    assert "Nothing more was written" in outcome[0]
    assert registry.decisions(store)[-1] == on_b and len(registry.decisions(store)) == 3
    assert [v["run"] for v in registry.versions(store)] == [RUN1, RUN2, RUN3]
    assert registry.production(store)["version"] == second == catalog.production_pointer(store)["version"]
