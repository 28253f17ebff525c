"""A retrain the server owns: real (tiny, hgb) retrains started as jobs, watched through the library to
their end, a second start refused in words, a killed job settled from its run, a failure in words."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kafer import jobs
from kafer.config import load_settings
from kafer.demo import make_demo_upload
from kafer.errors import JobBusy, JobError, RunError, UploadError
from kafer.lake import Lake
from kafer.locks import hold, lock_holder
from kafer.recovery import RETRAIN_LOCK
from kafer.runrecord import read_manifest

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a tiny retrain may take on a busy machine before a test gives up on it.
PATIENCE = 900


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 300-car generator upload: a retrain of it takes some 15 s."""
    return make_demo_upload(tmp_path_factory.mktemp("tiny"), cars=300, seed=4, results_per_car=10,
                            sheet_rows=2000).folder


@pytest.fixture
def settings(tmp_path):
    return load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))


def test_a_job_outlives_its_starter_refuses_a_second_and_everyone_sees_it_end(tiny, settings):
    starter = ("import sys; from kafer.config import load_settings; from kafer.jobs import start_retrain; "
               "s = load_settings(lake=sys.argv[1], runs=sys.argv[2]); "
               "print(start_retrain([sys.argv[3]], by='Ana Souza', settings=s, family='hgb').job_id)")
    started = subprocess.run([sys.executable, "-c", starter, settings.lake, settings.runs, str(tiny)],
                             capture_output=True, text=True, timeout=120, check=True)
    job_id = started.stdout.strip()  # the process that started it has ended: the job runs on

    job = jobs.read_job(job_id, settings=settings)
    assert job.running and job.by == "Ana Souza" and job.paths == (str(tiny),) and job.family == "hgb"
    with pytest.raises(JobBusy, match=f"Ana Souza started it on .* \\(run {job_id}\\)"):
        jobs.start_retrain([str(tiny)], by="Bruno Lima", settings=settings)
    assert [j.job_id for j in jobs.list_jobs(settings)] == [job_id]

    lines = list(jobs.follow(job_id, settings=settings, every=0.2, timeout=PATIENCE))
    assert lines[0] == "step 01_ingest …" and "step 04_compare done in" in lines[-1]
    job = jobs.read_job(job_id, settings=settings)
    assert job.state == "succeeded" and job.exit_code == 0 and job.settled is None
    assert job.candidate.startswith("m") and job.production is None and "judged against chance" in job.verdict
    assert job.recommendation and Path(job.report).is_file()
    manifest = read_manifest(settings.runs, job_id)
    assert manifest["status"] == "succeeded" and manifest["candidate_version"] == job.candidate
    assert job.headline().startswith(f"Retrain {job_id}, started by Ana Souza on ")
    assert f"new model {job.candidate}; no model is in production yet" in job.headline()
    assert jobs.running_job(settings) is None
    assert jobs.read_progress(job_id, settings=settings, since=0).lines == tuple(lines)


def test_a_killed_job_is_settled_from_its_run_and_frees_the_lake(tiny, settings):
    job = jobs.start_retrain([str(tiny)], by="Ana Souza", settings=settings, family="hgb")
    first = next(jobs.follow(job.job_id, settings=settings, every=0.1, timeout=PATIENCE))
    assert first == "step 01_ingest …"  # the run has begun
    assert jobs.read_job(job.job_id, settings=settings).step == "01_ingest"
    os.killpg(job.pid, signal.SIGKILL)  # the job's process and its session, as a crash would
    list(jobs.follow(job.job_id, settings=settings, every=0.1, timeout=PATIENCE))  # until it is seen dead

    ended = jobs.read_job(job.job_id, settings=settings)
    assert ended.state == "failed" and ended.exit_code is None and ended.step == "01_ingest"
    assert ended.settled == "its process ended without writing its outcome"
    assert "stopped in step 01_ingest" in ended.error and "Start the retrain again" in ended.error
    assert read_manifest(settings.runs, job.job_id)["status"] == "abandoned"
    record = json.loads((jobs.jobs_folder(settings) / job.job_id / jobs.RECORD).read_text(encoding="utf-8"))
    assert record["state"] == "failed"  # written once, by the first reader
    assert lock_holder(Lake(settings.lake), RETRAIN_LOCK) is None or \
        lock_holder(Lake(settings.lake), RETRAIN_LOCK)["state"] == "dead"
    assert jobs.running_job(settings) is None and "failed on" in ended.headline()


def test_a_retrain_from_a_terminal_holding_the_lake_refuses_a_start_naming_it(settings, tiny):
    lake = Lake(settings.lake)
    lake.check(write=True)
    with hold(lake, RETRAIN_LOCK, purpose="retrain r-terminal", details={"run": "r-terminal"}):
        with pytest.raises(JobBusy, match="outside the desk: retrain r-terminal \\(pid \\d+ on .*, alive, since "):
            jobs.start_retrain([str(tiny)], by="Ana Souza", settings=settings)
    assert jobs.list_jobs(settings) == []


def test_a_failing_retrain_job_says_why_in_the_starter_s_language(tmp_path, settings):
    bad = tmp_path / "upload" / "FALHAS_bad.csv"
    bad.parent.mkdir()
    bad.write_text("KNR,MODELO,COR,MOTOR,ESTACAO,USUARIO,HALLE,FALHA,DATA\n"
                   "24-1,T-Cross,Azul,1.0,ST1,u1,ZP7,Ruído,2024-04-02 10:00:00\n", encoding="utf-8")
    job = jobs.start_retrain([str(bad.parent)], by="Ana Souza", settings=settings, language="pt-BR")
    list(jobs.follow(job.job_id, settings=settings, every=0.2, timeout=PATIENCE))
    ended = jobs.read_job(job.job_id, settings=settings)
    assert ended.state == "failed" and ended.exit_code == 1 and ended.step == "01_ingest" and ended.settled is None
    assert ended.error.startswith("kafer retrain: erro: a etapa '01_ingest' falhou: ")
    assert "linha 2, coluna KNR (valor '24-1')" in ended.error
    assert read_manifest(settings.runs, job.job_id)["status"] == "failed"


def test_nothing_starts_without_a_person_or_with_paths_that_name_no_export(tmp_path, settings):
    with pytest.raises(JobError, match="give the name of the person"):
        jobs.start_retrain([], by=" ", settings=settings)
    with pytest.raises(UploadError, match="no such file or folder"):
        jobs.start_retrain([str(tmp_path / "nowhere")], by="Ana Souza", settings=settings)
    with pytest.raises(RunError, match="is not a run id"):
        jobs.start_retrain([], by="Ana Souza", settings=settings, run_id="../escape")
    assert jobs.list_jobs(settings) == []
    with pytest.raises(JobError, match="there is no retrain job r1"):
        jobs.read_job("r1", settings=settings)
    with pytest.raises(JobError, match="is not a job id"):
        jobs.read_job("../r1", settings=settings)
