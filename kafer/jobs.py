"""A retrain the server owns: started in a process of its own, watched by everyone, one at a time.

The desk starts a retrain with :func:`start_retrain` on behalf of a person (whose right to do so the
desk checks first). The retrain is ``kafer retrain PATHS --run-id ID`` run by ``python -m
kafer.jobs FOLDER`` in a session of its own: it outlives the page that started it, the page's
kernel and the desk itself. When ``kafer retrain`` returns, the same process writes the job's
outcome. Its record is a small folder under the runs folder, ``<runs>/jobs/<run id>/``:

- ``job.json``: who started it and when, the files, the lake, the run id, its process, its state
  (``running``, ``succeeded``, ``failed``) and outcome (the new model and its comparison, or the
  error in words); always written whole (a temporary file renamed over it, under the job's lock);
- ``progress.log``: the lines the retrain prints as it works (what a terminal shows);
- ``summary.txt``: what it prints when it ends.

Two retrains never run at once: a start is refused, in words naming who, while a job runs or while
anyone else (a ``kafer retrain`` from a terminal) holds the lake's retrain lock. A job whose process
died without writing its outcome (killed, the machine stopped) is settled by the first reader from
its run's record (:mod:`kafer.runrecord`, :mod:`kafer.recovery`): succeeded when its new model
reached the registry, else failed in the step it died in. Whether a job's process lives is asked
of this machine's process table, so the runs folder holding the jobs is the desk machine's own.

Under a service manager, let the desk's stop leave its jobs running (systemd: ``KillMode=process``;
its default kills every process the service started, jobs included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from . import runrecord
from .config import Settings
from .errors import JobBusy, JobError, KaferError, RunError
from .holders import describe_holder, holder_record, judge_holder
from .i18n import datetime, language_code, number, tr
from .lake import Lake, utc_now_iso

#: The folder of job records inside the runs folder.
JOBS = "jobs"
RECORD = "job.json"
PROGRESS = "progress.log"
SUMMARY = "summary.txt"
#: Seconds a job may show no process yet (its starter is launching it) before it counts as dead.
_LAUNCH_SECONDS = 60.0
#: Seconds a start waits for another start (of this runs folder) to finish its checks.
_START_WAIT = 30.0


@dataclass(frozen=True)
class Job:
    """A retrain job as its record says, settled: who started it, when, on what, and how it stands.

    ``state`` is ``running``, ``succeeded`` (``candidate`` is the new model, compared with
    ``production`` in ``verdict`` and ``recommendation``; ``report`` is the comparison's page) or
    ``failed`` (``error`` says why, ``step`` where). ``step`` of a running job is the step it is in.
    ``settled`` says why a reader worked the outcome out (its process died without writing it).
    """

    job_id: str
    by: str
    started_at: str
    paths: tuple[str, ...]
    lake: str
    state: str
    family: str | None = None
    language: str = "en"
    pid: int | None = None
    step: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    candidate: str | None = None
    production: str | None = None
    verdict: str | None = None
    recommendation: str | None = None
    report: str | None = None
    error: str | None = None
    settled: str | None = None

    @property
    def run_id(self) -> str:
        """The run the job's retrain records (the job's id is its run id)."""
        return self.job_id

    @property
    def running(self) -> bool:
        return self.state == "running"

    def headline(self) -> str:
        """The job in one sentence, in the current language: who started it, when, and how it stands."""
        started = {"run": self.job_id, "by": self.by, "when": datetime(self.started_at)}
        if self.state == "running":
            return tr("Retrain {run}, started by {by} on {when}, is running (step {step}).",
                      step=self.step or "…", **started)
        ended = datetime(self.finished_at) if self.finished_at else "?"
        if self.state == "succeeded":
            if self.production:
                return tr("Retrain {run}, started by {by} on {when}, ended on {end}: new model {candidate}, compared "
                          "with production model {production}.", end=ended, candidate=self.candidate,
                          production=self.production, **started)
            return tr("Retrain {run}, started by {by} on {when}, ended on {end}: new model {candidate}; no model is "
                      "in production yet.", end=ended, candidate=self.candidate, **started)
        return tr("Retrain {run}, started by {by} on {when}, failed on {end}: {error}", end=ended,
                  error=self.error or "?", **started)


@dataclass(frozen=True)
class Progress:
    """Lines a job printed after some offset of its progress log, and the offset to ask from next."""

    lines: tuple[str, ...]
    offset: int


def jobs_folder(settings: Settings) -> Path:
    """Where the job records of ``settings``' runs folder live."""
    return Path(settings.runs).resolve() / JOBS


def start_retrain(paths: Sequence[str] = (), *, by: str, settings: Settings, run_id: str | None = None,
                  family: str | None = None, language: str | None = None) -> Job:
    """Start ``kafer retrain PATHS`` as a job of its own, on behalf of ``by``; return at once.

    The caller checks that ``by`` may start a retrain. The retrain reads the project's settings
    (``kafer.toml`` of the working folder) with ``settings``' lake and runs folder.

    Parameters
    ----------
    paths : sequence of str
        The upload: files, folders or globs, as ``kafer retrain`` takes them; empty: retrain on
        the lake as it is.
    by : str
        Who starts it (shown to everyone who watches).
    settings : Settings
        The lake, the runs folder (where the job's record goes), the lock settings.
    run_id : str, optional
        The run's id, and the job's (default: a new sortable id).
    family : str, optional
        The model family (default: the settings').
    language : str, optional
        The language the retrain prints its progress and messages in (default: the settings').

    Returns
    -------
    Job
        The job, running.

    Raises
    ------
    JobBusy
        When a retrain runs already: a job (its starter and start are named), or a retrain from
        outside the desk that holds the lake's retrain lock (named as the lock names it).
    UploadError
        When ``paths`` name nothing, or no export (nothing is started).
    JobError
        When ``by`` is empty or a run or job with ``run_id`` exists.
    LakeError, RunError
        When the lake cannot be reached or written, or ``run_id`` is no run id.
    """
    from .ingest import list_upload
    from .pipeline import absolute_url

    if not str(by or "").strip():
        raise JobError(tr("a retrain is started by someone: give the name of the person who starts it"))
    upload = [absolute_url(str(p)) for p in paths]
    if upload:
        list_upload(upload)
    run_id = run_id or runrecord.new_run_id()
    runs = Path(settings.runs).resolve()
    runrecord.run_dir(runs, run_id)
    lake = Lake(absolute_url(settings.lake))
    lake.check(write=True)
    folder = runs / JOBS / run_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _guard(folder.parent / ".start.lock", _START_WAIT, tr("another retrain is being started: try again")):
        refusal = _refusal(settings, lake)
        if refusal:
            raise JobBusy(refusal)
        if folder.exists() or (runs / run_id).exists():
            raise JobError(tr("a run or job {run} exists already in {runs}: choose another run id", run=run_id,
                              runs=runs))
        folder.mkdir()
        record = {"job": run_id, "by": str(by).strip(), "started_at": utc_now_iso(), "paths": upload,
                  "lake": lake.url, "runs": str(runs), "family": family,
                  "language": language_code(language or settings.language), "cwd": os.getcwd(),
                  "stale_after": settings.lock_stale_after, "state": "running", "pid": None, "process": None}
        _write(folder, record)
        child = _launch(folder, record)
        record = _launched(folder, child.pid)
    # Reap the child when it ends while this process lives (else it lingers as a zombie); it runs
    # on whatever becomes of this process.
    threading.Thread(target=child.wait, name=f"kafer-job-{run_id}", daemon=True).start()
    return _job(record)


def _launch(folder: Path, record: dict) -> subprocess.Popen:
    """The job's process: ``python -m kafer.jobs FOLDER`` in a session of its own (no terminal, no
    signal to the desk's process group reaches it), printing into the job's folder."""
    env = {**os.environ, "KAFER_LANG": record["language"]}
    with open(folder / PROGRESS, "ab") as progress, open(folder / SUMMARY, "ab") as summary:
        try:
            return subprocess.Popen([sys.executable, "-m", "kafer.jobs", str(folder)], cwd=record["cwd"], env=env,
                                    stdin=subprocess.DEVNULL, stdout=summary, stderr=progress,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            why = tr("the retrain's process could not be started ({problem})", problem=exc.strerror or exc)
            _update(folder, state="failed", finished_at=utc_now_iso(), error=why)
            raise JobError(why) from None


def _process(pid: int | None = None) -> dict:
    """What tells whether a process of this machine lives (:func:`kafer.holders.judge_holder`): this
    process's facts with its start time (which tells it from a later process given its pid), or
    ``pid``'s, whose start time the process adds itself once it runs."""
    own = holder_record("", "job", "", heartbeat_every=0.0)
    facts = {name: own[name] for name in ("host", "pid", "pidns", "boot", "started")}
    return facts if pid is None else {**facts, "pid": pid, "started": None}


def _launched(folder: Path, pid: int) -> dict:
    """Record the job's process, unless it has recorded itself already (with its start time)."""
    with _locked(folder):
        record = _read(folder)
        record = {**record, "pid": pid, "process": record.get("process") or _process(pid)}
        _write(folder, record)
        return record


def _refusal(settings: Settings, lake: Lake) -> str | None:
    """Why a retrain cannot start now, in words naming who holds the lake, or ``None``."""
    from .locks import lock_holder
    from .recovery import RETRAIN_LOCK

    job = running_job(settings)
    if job is not None:
        return tr("a retrain is running already: {by} started it on {when} (run {run}). Wait until it ends; "
                  "everyone sees its progress.", by=job.by, when=datetime(job.started_at), run=job.job_id)
    holder = lock_holder(lake, RETRAIN_LOCK, stale_after=settings.lock_stale_after)
    if holder is not None and holder.get("state") == "alive":
        return tr("the lake {lake} is being retrained outside the desk: {holder} holds its retrain lock (a kafer "
                  "retrain started from a terminal). Try again when it has finished.", lake=lake.url,
                  holder=describe_holder(holder, holder["why"]))
    return None


def read_job(job_id: str, *, settings: Settings) -> Job:
    """The job ``job_id``, settled (see the module).

    Raises
    ------
    JobError
        When there is no such job, or its record cannot be read.
    """
    folder = _folder(settings, job_id)
    if not (folder / RECORD).is_file():
        raise JobError(tr("there is no retrain job {job} in {folder}", job=job_id, folder=folder.parent))
    return _job(_settled(folder))


def list_jobs(settings: Settings) -> list[Job]:
    """Every job of the runs folder, settled, the latest started first."""
    root = jobs_folder(settings)
    if not root.is_dir():
        return []
    found = [_job(_settled(folder)) for folder in root.iterdir() if (folder / RECORD).is_file()]
    return sorted(found, key=lambda job: (job.started_at, job.job_id), reverse=True)


def running_job(settings: Settings) -> Job | None:
    """The job running now, or ``None``."""
    return next((job for job in list_jobs(settings) if job.running), None)


def read_progress(job_id: str, *, settings: Settings, since: int = 0) -> Progress:
    """The whole lines job ``job_id`` printed after byte ``since`` of its progress log.

    Raises
    ------
    JobError
        When there is no such job.
    """
    path = _folder(settings, job_id) / PROGRESS
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            data = fh.read()
    except FileNotFoundError:
        raise JobError(tr("there is no retrain job {job} in {folder}", job=job_id, folder=path.parent.parent)) from None
    whole = data[:data.rfind(b"\n") + 1]
    lines = tuple(line.strip() for line in whole.decode("utf-8", errors="replace").splitlines() if line.strip())
    return Progress(lines, since + len(whole))


def follow(job_id: str, *, settings: Settings, every: float = 0.5, timeout: float | None = None) -> Iterator[str]:
    """The lines job ``job_id`` prints, as it prints them, until it ends (then read it with :func:`read_job`).

    Raises
    ------
    JobError
        When there is no such job, or it still runs after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    offset = 0
    while True:
        ended = not read_job(job_id, settings=settings).running
        seen = read_progress(job_id, settings=settings, since=offset)
        offset = seen.offset
        yield from seen.lines
        if ended:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(tr("retrain job {job} still runs after {seconds} s", job=job_id, seconds=number(timeout)))
        time.sleep(every)


# -- the record ----------------------------------------------------------------------------------------

def _folder(settings: Settings, job_id: str) -> Path:
    try:
        runrecord.run_dir(jobs_folder(settings), job_id)
    except RunError:
        raise JobError(tr("{job!r} is not a job id (a job's id is its run id, such as r20241126T201753Z-3fa9)",
                          job=job_id)) from None
    return jobs_folder(settings) / job_id


@contextlib.contextmanager
def _guard(path: Path, wait: float, busy: str) -> Iterator[None]:
    import filelock

    try:
        with filelock.FileLock(path, timeout=wait):
            yield
    except filelock.Timeout:
        raise JobError(busy) from None


def _locked(folder: Path):
    """The job record's own lock: every change of it, and the settling of a dead job, hold it."""
    return _guard(folder / ".lock", 60.0, tr("the record of retrain job {job} stays locked by another process",
                                              job=folder.name))


def _read(folder: Path) -> dict:
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(tr("the record of retrain job {job} cannot be read ({problem})", job=folder.name,
                          problem=exc)) from None


def _write(folder: Path, record: dict) -> None:
    """Write the record whole: a temporary file renamed over it."""
    runrecord.write_json(folder / RECORD, record)


def _update(folder: Path, **changes) -> dict:
    """Merge ``changes`` into the job's record under its lock; the record."""
    with _locked(folder):
        record = {**_read(folder), **changes}
        _write(folder, record)
        return record


def _alive(record: dict) -> bool:
    """Whether the job lives: its process (one not started yet does, for a minute), or its run, which
    holds the lake's retrain lock until the last thread of a killed process is gone (its main thread
    shows dead before)."""
    from .recovery import running_run

    process = record.get("process")
    if not process:
        started = record.get("started_at")
        age = time.time() - _epoch(started) if started else _LAUNCH_SECONDS + 1
        if age <= _LAUNCH_SECONDS:
            return True
    elif judge_holder(process, age=0.0, stale_after=float("inf"))[0] == "alive":
        return True
    try:
        return running_run(Lake(record["lake"]), stale_after=record.get("stale_after", 120.0)) == record["job"]
    except KaferError:
        return False


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def _settled(folder: Path) -> dict:
    """The job's record; one still running whose process is gone gets its outcome from its run."""
    record = _read(folder)
    if record["state"] != "running" or _alive(record):
        return _with_step(record)
    with _locked(folder):
        record = _read(folder)
        if record["state"] == "running" and not _alive(record):
            record.update(_outcome(record, exit_code=None), finished_at=utc_now_iso())
            _write(folder, record)
    return _with_step(record)


def _with_step(record: dict) -> dict:
    """A running job's record with the step its run is in."""
    if record["state"] != "running":
        return record
    try:
        manifest = runrecord.read_manifest(record["runs"], record["job"])
    except RunError:
        return {**record, "step": None}
    return {**record, "step": runrecord.died_in(manifest)}


def _outcome(record: dict, *, exit_code: int | None) -> dict:
    """How the job ended, from its run's record: the new model and its comparison, or the error in
    words. ``exit_code`` is ``kafer retrain``'s, or ``None`` when its process died without one."""
    runs, run_id = record["runs"], record["job"]
    if exit_code is None:
        _settle_run(record)
    try:
        manifest = runrecord.read_manifest(runs, run_id)
    except RunError:
        manifest = None
    if manifest is not None and manifest.get("status") == "succeeded":
        folder = runrecord.run_dir(runs, run_id)
        try:
            metrics = runrecord.read_json(folder / runrecord.METRICS)
        except RunError:
            metrics = {}
        report = folder / runrecord.REPORT
        return {"state": "succeeded", "exit_code": exit_code, "candidate": manifest.get("candidate_version"),
                "production": manifest.get("production_version"), "verdict": metrics.get("verdict"),
                "recommendation": (metrics.get("recommendation") or {}).get("text"),
                "report": str(report) if report.is_file() else None,
                "settled": None if exit_code is not None else tr("its process ended without writing its outcome")}
    step = None if manifest is None else manifest.get("failed_step") or runrecord.died_in(manifest)
    if exit_code is not None:
        error = _said(Path(runs) / JOBS / run_id) or (manifest or {}).get("error") or \
            tr("kafer retrain ended with exit code {code}", code=exit_code)
        return {"state": "failed", "exit_code": exit_code, "error": error, "step": step}
    if manifest is None:
        error = tr("its process stopped before its run began (it was killed, or the machine stopped). Start the "
                   "retrain again.")
    else:
        error = tr("its process stopped in step {step} (it was killed, or the machine stopped); nothing it did "
                   "reached the registry. Start the retrain again.", step=step)
    return {"state": "failed", "exit_code": None, "error": error, "step": step,
            "settled": tr("its process ended without writing its outcome")}


def _settle_run(record: dict) -> None:
    """Mark the job's run as its lake's registry says it ended (:func:`kafer.recovery.settle_runs`);
    a lake that cannot be reached now leaves it for the next retrain to settle."""
    from .recovery import settle_runs

    with contextlib.suppress(KaferError):
        settle_runs(Lake(record["lake"]), record["runs"], stale_after=record.get("stale_after", 120.0))


def _said(folder: Path) -> str | None:
    """The last lines ``kafer retrain`` printed that are no progress line (those are indented): its error."""
    try:
        text = (folder / PROGRESS).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = text.rstrip("\n").splitlines()
    tail = []
    for line in reversed(lines):
        if not line.strip() or line.startswith(" "):
            break
        tail.append(line)
    return "\n".join(reversed(tail)) or None


def _job(record: dict) -> Job:
    return Job(job_id=record["job"], by=record["by"], started_at=record["started_at"], paths=tuple(record["paths"]),
               lake=record["lake"], state=record["state"], family=record.get("family"),
               language=record.get("language", "en"), pid=record.get("pid"), step=record.get("step"),
               finished_at=record.get("finished_at"), exit_code=record.get("exit_code"),
               candidate=record.get("candidate"), production=record.get("production"), verdict=record.get("verdict"),
               recommendation=record.get("recommendation"), report=record.get("report"), error=record.get("error"),
               settled=record.get("settled"))


# -- the job's own process -----------------------------------------------------------------------------

def _interrupted(signum, frame) -> None:
    """A stop asked of the job (``SIGTERM``) ends its retrain as Ctrl-C would: the run is marked failed."""
    raise KeyboardInterrupt


def run_job(folder: str | os.PathLike) -> int:
    """Run the job recorded in ``folder``: ``kafer retrain``, then its outcome into the record.

    What ``python -m kafer.jobs FOLDER`` does in the process :func:`start_retrain` starts.

    Returns
    -------
    int
        ``kafer retrain``'s exit code.
    """
    from .cli import main as kafer

    folder = Path(folder)
    record = _update(folder, process=_process())
    signal.signal(signal.SIGTERM, _interrupted)
    command = ["retrain", *record["paths"], "--run-id", record["job"], "--lake", record["lake"],
               "--runs", record["runs"], *(["--family", record["family"]] if record.get("family") else [])]
    code = 70
    try:
        code = kafer(command)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        with _locked(folder):
            record = _read(folder)
            if record["state"] == "running":
                record.update(_outcome(record, exit_code=code), finished_at=utc_now_iso())
                _write(folder, record)
    return code


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
