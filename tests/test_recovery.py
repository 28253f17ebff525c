"""After a kill -9 at any point of a retrain or a decision, the very next command succeeds without anyone
deleting a file, and status tells the truth about every run and model (tests/crashing.py does the killing)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kafer import catalog, pipeline, registry, runrecord
from kafer.cli import main
from kafer.config import load_settings
from kafer.errors import DecisionError, LakeError, LockTimeout, RunError, StepError
from kafer.lake import Lake
from kafer.locks import lock_holder
from kafer.pipeline import retrain
from kafer.recovery import settle_runs
from kafer.runrecord import read_manifest, start_run, update_manifest
from test_pipeline import SMALL
from worlds import quick_retrain

CRASHING = Path(__file__).resolve().parent / "crashing.py"


def killed(point: str, settings, run_id: str, upload: Path | None = None) -> None:
    """Run tests/crashing.py to POINT and check it really died of SIGKILL."""
    argv = [sys.executable, str(CRASHING), point, settings.lake, settings.runs, run_id]
    done = subprocess.run(argv + ([str(upload)] if upload else []), capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def status(settings) -> dict:
    return registry.status(Lake(settings.lake), runs=settings.runs)


@pytest.fixture
def settings(tmp_path):
    return load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), **SMALL)


def test_a_retrain_killed_in_its_merge_blocks_nothing_and_is_shown_abandoned(settings, months):
    killed("merge", settings, "dead", months[0])
    assert [(r["run"], r["status"], r["step"]) for r in status(settings)["runs"]] == [("dead", "abandoned", "02_merge")]
    assert lock_holder(Lake(settings.lake), "retrain")["state"] == "dead"
    after = retrain([str(months[0])], settings=settings, run_id="next")  # no waiting, no file deleted by hand
    runs = {r["run"]: r for r in status(settings)["runs"]}
    assert runs["dead"]["status"] == "abandoned" and runs["next"]["status"] == "succeeded"
    manifest = json.loads((Path(settings.runs) / "dead" / "manifest.json").read_text())
    assert manifest["status"] == "abandoned" and manifest["failed_step"] == "02_merge"
    assert [c["version"] for c in status(settings)["candidates"]] == [after.candidate_version]


def test_a_candidate_registered_by_a_run_killed_before_it_said_succeeded_can_be_decided(settings, months, capsys):
    killed("registered", settings, "late", months[0])
    [run] = status(settings)["runs"]
    [pending] = status(settings)["candidates"]
    assert (run["status"], run["step"], run["candidate"]) == ("succeeded", None, pending["version"])  # as it is
    assert main(["decide", "late", "keep-new", "--by", "Ana", "--why", "good", "--lake", settings.lake,
                 "--runs", settings.runs]) == 0
    assert f"Kept the new model: {pending['version']}" in capsys.readouterr().out
    [run] = status(settings)["runs"]
    assert run["status"] == "succeeded" and run["candidate"] == pending["version"]


def test_an_artifact_without_its_entry_is_ignored_and_the_run_abandoned(settings, months):
    killed("artifact", settings, "half", months[0])
    lake = Lake(settings.lake)
    assert any(key.endswith("model.bin") for key in lake.list("models"))
    assert registry.versions(lake) == [] and status(settings)["candidates"] == []
    quick_retrain(None, settings=settings, run_id="again")
    runs = {r["run"]: r["status"] for r in status(settings)["runs"]}
    assert runs == {"half": "abandoned", "again": "succeeded"}
    assert [v["run"] for v in registry.versions(lake)] == ["again"]


def test_a_decision_killed_before_its_pointer_moved_is_what_status_and_predict_use(settings, months, tmp_path,
                                                                                   capsys):
    version = quick_retrain(months[0], settings=settings, run_id="r1")
    killed("logged", settings, "r1")
    lake = Lake(settings.lake)
    assert catalog.production_pointer(lake) is None  # the pointer never moved …
    assert registry.production(lake)["version"] == version  # … but the log is the truth
    assert main(["status", "--json", "--lake", settings.lake, "--runs", settings.runs]) == 0
    assert json.loads(capsys.readouterr().out)["production"]["version"] == version
    out = tmp_path / "ranked.csv"
    assert main(["predict", str(months[1]), "--lake", settings.lake, "--out", str(out)]) == 0
    assert version in out.read_text()
    second = quick_retrain(months[1], settings=settings, run_id="r2")
    registry.decide(lake, "r2", "keep-old", by="Rui", why="no better", runs_dir=settings.runs)  # the lock is free
    assert catalog.production_pointer(lake)["version"] == version != second


def test_a_live_retrain_on_another_machine_is_neither_abandoned_nor_taken_over(tmp_path, months, monkeypatch,
                                                                               capsys):
    """Machine A retrains (a process holding the retrain lock for run r-live) on a shared lake folder;
    machine B, with the smallest staleness, looks, decides, settles and retrains: all of it leaves the run
    alone, and the second retrain is refused naming A. Once A's process is gone, B recovers the run."""
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), lock_stale_after=0.01,
                             lock_timeout=0.5, **SMALL)
    start_run(settings.runs, "r-live", settings)
    update_manifest(settings.runs, "r-live", status="running", steps={"01_ingest": 1.0})
    (Path(settings.runs) / "r-live" / "candidate.model").write_bytes(b"being trained")
    script = ("import sys\nfrom kafer.lake import Lake\nfrom kafer.locks import hold\n"
              f"with hold(Lake({settings.lake!r}), 'retrain', purpose='retrain r-live', details={{'run': 'r-live'}}):\n"
              "    print('held', flush=True)\n    sys.stdin.read()\n")
    machine_a = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env={**os.environ, "KAFER_HOST": "machine-a"})
    try:
        assert machine_a.stdout.readline().strip() == "held"
        monkeypatch.setenv("KAFER_HOST", "machine-b")
        lake = Lake(settings.lake)
        assert [(r["run"], r["status"]) for r in status(settings)["runs"]] == [("r-live", "running")]
        assert settle_runs(lake, settings.runs, stale_after=settings.lock_stale_after) == []
        with pytest.raises(DecisionError, match="has status 'running'"):
            registry.decide(lake, "r-live", "keep-new", by="Ana", why="too early", runs_dir=settings.runs,
                            settings=settings)
        assert main(["status", "--lake", settings.lake, "--runs", settings.runs]) == 0
        assert "running" in capsys.readouterr().out
        with pytest.raises(LockTimeout, match=r"busy: retrain r-live \(pid \d+ on machine-a, alive"):
            retrain([str(months[0])], settings=settings, run_id="r-second")
        assert read_manifest(settings.runs, "r-live")["status"] == "running"
        assert (Path(settings.runs) / "r-live" / "candidate.model").exists()
        assert not (Path(settings.runs) / "r-second").exists()
    finally:
        machine_a.kill()
        machine_a.wait(timeout=30)
    assert [(r["run"], r["status"], r["step"]) for r in status(settings)["runs"]] == [
        ("r-live", "abandoned", "02_merge")]
    assert settle_runs(lake, settings.runs, stale_after=120) == [{"run": "r-live", "outcome": "abandoned",
                                                                  "step": "02_merge"}]
    assert not (Path(settings.runs) / "r-live" / "candidate.model").exists()


def test_a_retrain_that_starts_while_recovery_lists_the_runs_is_left_alone(settings, monkeypatch):
    """Recovery asks who holds the retrain lock (nobody), then lists the runs; in between a retrain takes
    the lock and writes its manifest. Neither settle_runs (as decide runs it) nor status may take it for
    dead: it is alive, its candidate being trained."""
    from kafer import recovery

    script = ("import sys\nfrom kafer.lake import Lake\nfrom kafer.locks import hold\n"
              f"with hold(Lake({settings.lake!r}), 'retrain', purpose='retrain r-new', details={{'run': 'r-new'}}):\n"
              "    print('held', flush=True)\n    sys.stdin.read()\n")
    started, listed = [], recovery.list_runs

    def list_while_a_retrain_starts(runs):
        if not started:
            started.append(subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True))
            assert started[0].stdout.readline().strip() == "held"
            start_run(settings.runs, "r-new", settings)
            update_manifest(settings.runs, "r-new", status="running", steps={"01_ingest": 1.0})
            (Path(settings.runs) / "r-new" / "candidate.model").write_bytes(b"being trained")
        return listed(runs)

    monkeypatch.setattr(recovery, "list_runs", list_while_a_retrain_starts)
    lake = Lake(settings.lake)
    try:
        assert settle_runs(lake, settings.runs, stale_after=settings.lock_stale_after) == []
        assert read_manifest(settings.runs, "r-new")["status"] == "running"
        assert (Path(settings.runs) / "r-new" / "candidate.model").exists()
        assert [(r["run"], r["status"]) for r in status(settings)["runs"]] == [("r-new", "running")]
    finally:
        started[0].kill()
        started[0].wait(timeout=30)
    assert settle_runs(lake, settings.runs, stale_after=settings.lock_stale_after) == [
        {"run": "r-new", "outcome": "abandoned", "step": "02_merge"}]


@pytest.fixture
def steps_here(monkeypatch):
    """``kafer.pipeline.retrain`` with its notebook steps run in this process (see tests/crashing.py)."""
    from crashing import in_process

    monkeypatch.setattr(pipeline, "run_notebook", in_process)
    monkeypatch.setattr(pipeline, "render_html", lambda notebook: notebook.with_suffix(".html").write_text("<html>"))


def _stop_once_succeeding(monkeypatch, error: BaseException) -> None:
    """Make the run's record fail once, where it would say the run succeeded (after registering)."""
    update, stopped = runrecord.update_manifest, []

    def failing(runs, run_id, **changes):
        if changes.get("status") == "succeeded" and not stopped:
            stopped.append(error)
            raise error
        return update(runs, run_id, **changes)

    monkeypatch.setattr(runrecord, "update_manifest", failing)


@pytest.mark.parametrize("error, raised", [(KeyboardInterrupt(), KeyboardInterrupt),
                                           (OSError(28, "No space left on device"), RunError)])
def test_a_retrain_stopped_after_registering_is_succeeded_and_its_candidate_can_be_decided(
        settings, months, steps_here, monkeypatch, error, raised):
    _stop_once_succeeding(monkeypatch, error)
    with pytest.raises(raised) as stopped:
        retrain([str(months[0])], settings=settings, run_id="late")
    if raised is RunError:
        assert re.match(r"run late registered its candidate m\S+, which waits for a decision \(kafer decide late "
                        r"keep-new\|keep-old\), but stopped before finishing its record: .*No space left",
                        str(stopped.value))
    [pending] = status(settings)["candidates"]
    manifest = read_manifest(settings.runs, "late")
    assert (manifest["status"], manifest["candidate_version"]) == ("succeeded", pending["version"])
    assert [(r["run"], r["status"]) for r in status(settings)["runs"]] == [("late", "succeeded")]
    assert (Path(settings.runs) / "late" / "candidate.model").exists()
    registry.decide(Lake(settings.lake), "late", "keep-new", by="Ana", why="good", runs_dir=settings.runs)
    assert registry.production(Lake(settings.lake))["version"] == pending["version"]


def test_a_retrain_stopped_after_registering_while_the_lake_cannot_answer_is_settled_from_the_registry(
        settings, months, steps_here, monkeypatch):
    """The record cannot be finished, nor the registry asked: the run stays running while its process
    lives, reads as succeeded once it ended, and the next command completes it, naming the production
    model its candidate was compared with."""
    production = quick_retrain(months[0], settings=settings, run_id="first")
    registry.decide(Lake(settings.lake), "first", "keep-new", by="Ana", why="first", runs_dir=settings.runs)
    _stop_once_succeeding(monkeypatch, OSError(5, "Input/output error"))

    def unreachable(lake, run_id):
        raise LakeError("cannot reach the lake")

    with monkeypatch.context() as lake_down:  # the registry cannot be asked only as the run stops
        lake_down.setattr(pipeline, "catalog", SimpleNamespace(**{**vars(catalog), "run_model": unreachable}))
        with pytest.raises(StepError, match="Input/output error"):
            retrain([str(months[1])], settings=settings, run_id="late")
    assert read_manifest(settings.runs, "late")["status"] == "running"
    assert sorted((r["run"], r["status"]) for r in status(settings)["runs"]) == [("first", "succeeded"),
                                                                                ("late", "succeeded")]
    assert settle_runs(Lake(settings.lake), settings.runs, stale_after=120) == [
        {"run": "late", "outcome": "completed", "step": "register"}]
    manifest = read_manifest(settings.runs, "late")
    assert (manifest["status"], manifest["production_version"]) == ("succeeded", production)


def test_a_retrain_that_fails_before_registering_is_failed_with_nothing_registered(settings, months, steps_here,
                                                                                   monkeypatch):
    def refused(*args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(registry, "register_candidate", refused)
    with pytest.raises(StepError, match="Permission denied"):
        retrain([str(months[0])], settings=settings, run_id="early")
    manifest = read_manifest(settings.runs, "early")
    assert (manifest["status"], manifest["failed_step"]) == ("failed", "register")
    assert not (Path(settings.runs) / "early" / "candidate.model").exists()
    assert status(settings)["candidates"] == [] and settle_runs(Lake(settings.lake), settings.runs,
                                                                stale_after=120) == []


def test_a_run_an_older_kafer_marked_failed_with_its_candidate_registered_is_completed(settings, months):
    """What the former finish() left after a write error: a failed run whose candidate waits in the registry."""
    version = quick_retrain(months[0], settings=settings, run_id="old")
    update_manifest(settings.runs, "old", status="failed", failed_step="register", error="StepError: disk full")
    assert [(r["run"], r["status"], r["candidate"]) for r in status(settings)["runs"]] == [
        ("old", "succeeded", version)]
    assert settle_runs(Lake(settings.lake), settings.runs, stale_after=120) == [
        {"run": "old", "outcome": "completed", "step": "register"}]
    registry.decide(Lake(settings.lake), "old", "keep-old", by="Ana", why="not better", runs_dir=settings.runs)
