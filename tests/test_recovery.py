"""After a kill -9 at any point of a retrain or a decision, the very next command succeeds without anyone
deleting a file, and status tells the truth about every run and model (tests/crashing.py does the killing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kafer import catalog, registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.errors import DecisionError, LockTimeout
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
    assert run["status"] == "abandoned" and run["step"] == "register"
    [pending] = status(settings)["candidates"]
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
