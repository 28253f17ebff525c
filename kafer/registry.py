"""The model registry in the lake: immutable versions, the production pointer and the decision log.

A version is an artifact plus its entry (run, data version, family, metrics, sha256); a decision
is one immutable record numbered by a sequence (``seq``, taken under the registry lock: its id is
the number, and the number's key is created only once); the production pointer is written last.
The log's order is its sequence, never a machine's clock, so decisions from machines whose clocks
disagree keep their true order; decisions an older Käfer logged without a number (ids
``<stamp>-<run>``) come first, in the order of their ids. Where they live is :mod:`kafer.catalog`'s
business.

Nothing here is ever rewritten except the pointer; the decision log is written before it and is
the truth: wherever they disagree (a change died between the two), every read follows the log
(production is the last decision's ``after``) and the next change rewrites the pointer. A
version's status is derived from the pointer and the log: ``production`` (the pointer names it),
``superseded`` (a decision once had it in production), ``rejected`` (its run was decided
keep-old), else ``pending``. Every change holds the lake's ``registry`` lock, and verifies it
before each write. When a change stopped between its log record and its pointer, the next change
completes the pointer from the log before doing anything else. Decisions rest on the lake: whether
a candidate's comparison is still current is read from its entry (``compared_with``), not from
the run's local record.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import datetime, timezone
from typing import Iterator, Sequence

import pandas as pd

from . import catalog, runrecord
from .config import Settings, load_settings
from .errors import DecisionError, LakeError, RegistryError, RunError
from .i18n import tr
from .lake import Lake, utc_stamp
from .locks import LockInfo, hold
from .model import read_meta
from .recovery import listed_runs, settle_runs
from .runrecord import died_in, run_lake, state_of

#: Name of the lake lock every registry change holds.
LOCK = "registry"
#: What a person may decide about a run's candidate.
CHOICES = ("keep-new", "keep-old")
#: A comparison whose production model is recorded nowhere.
_UNRECORDED = "unrecorded"


def new_version() -> str:
    """A fresh, sortable model version id such as ``m20241126T201753.123456Z``."""
    return "m" + utc_stamp()


def register_candidate(lake: Lake, *, run_id: str, version: str, artifact: bytes, family: str, data_version: str,
                       metrics: dict, trained_on: dict, training_cars: Sequence[str],
                       compared_with: str | None = None, settings: Settings | None = None) -> str:
    """Add a run's candidate to the registry as a pending version.

    Parameters
    ----------
    lake : Lake
    run_id : str
        The run that trained it; a run has at most one candidate.
    version : str
        Its version id (:func:`new_version`, given when the run trained it, so the run's report
        can name it).
    artifact : bytes
        The saved model, stored as is.
    family, data_version : str
        Model family and the curated features version it learned from.
    metrics : dict
        Its evaluation figures, stored with it.
    trained_on : dict
        Cars, failures and production period of its training cars.
    training_cars : sequence of str
        The KNRs it was trained or validated on: a later comparison never scores it on them.
    compared_with : str, optional
        The production version its run compared it with (``None``: there was none).
    settings : Settings, optional
        For the lock's timeout; :func:`kafer.config.load_settings` when omitted.

    Returns
    -------
    str
        The version id.

    Raises
    ------
    RegistryError
        When the run id or version is malformed or taken, the artifact is empty, or the run already
        has a candidate.
    LockTimeout
        When another registry change holds the lock longer than ``settings.lock_timeout``.
    """
    _check_id(run_id, "run id")
    _check_id(version, "model version")
    if not isinstance(artifact, (bytes, bytearray)) or not artifact:
        raise RegistryError(f"the candidate of run {run_id} has no artifact bytes: nothing to register")
    with _locked(lake, settings, purpose=f"register the candidate of run {run_id}") as held:
        existing = catalog.run_model(lake, run_id)
        if existing is not None:
            raise RegistryError(f"run {run_id} already has a candidate, {existing['version']}: a run registers "
                                "at most one; retrain for another")
        if catalog.model_meta(lake, version) is not None:
            raise RegistryError(f"model version {version} already exists in the lake {lake.url}")
        now = datetime.now(timezone.utc)
        data = bytes(artifact)
        catalog.save_model(lake, version, data, {
            "version": version, "run": run_id, "data_version": data_version, "family": family,
            "metrics": metrics, "trained_on": trained_on, "compared_with": compared_with, "created_at": _iso(now),
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            training_cars=list(training_cars), held=held)
    return version


def decide(lake: Lake, run_id: str, choice: str, *, by: str, why: str, runs_dir: str | os.PathLike,
           settings: Settings | None = None, by_source: str | None = None) -> dict:
    """Keep a run's candidate (``keep-new``) or the production model (``keep-old``), and log it.

    Parameters
    ----------
    lake : Lake
    run_id : str
        A succeeded run whose candidate is in the registry and was never decided.
    choice : {"keep-new", "keep-old"}
        ``keep-new`` puts the candidate in production; ``keep-old`` leaves production as it is
        and the candidate becomes rejected.
    by, why : str
        Who decides and why; neither may be blank.
    runs_dir : path
        The folder of run records (for the run's manifest and the hash of its report).
    settings : Settings, optional
        For the lock's timeout; :func:`kafer.config.load_settings` when omitted.
    by_source : str, optional
        How ``by`` was known (``desk sign-in (proxy)``, ``desk account``, ``os user``, ``--by``),
        logged with it; records logged before Käfer said it have none.

    Returns
    -------
    dict
        The decision record as logged: ``id, at, by, by_source, why, choice, run, candidate, before,
        after, report_sha256``.

    Raises
    ------
    DecisionError
        For an unknown choice, a blank name or reason, an unknown or unsucceeded run, a run
        without a candidate in this registry, a run already decided, or a keep-new whose
        comparison was made against another production model than the current one.
    LockTimeout
        When another registry change holds the lock longer than ``settings.lock_timeout``.
    """
    if choice not in CHOICES:
        raise DecisionError(tr("unknown choice {choice!r}: keep-new (the run's new model becomes production) or "
                               "keep-old (production stays); to go back to an earlier model, roll back", choice=choice))
    by, why = _who_and_why(by, why)
    settle_runs(lake, runs_dir, stale_after=(settings or load_settings()).lock_stale_after)
    manifest = _succeeded_manifest(runs_dir, run_id)
    report = runrecord.run_dir(runs_dir, run_id) / runrecord.REPORT
    report_sha256 = hashlib.sha256(report.read_bytes()).hexdigest() if report.is_file() else None
    with _locked(lake, settings, purpose=f"decide run {run_id} ({choice} by {by})") as held:
        metas, pointer, log = _state(lake)
        candidate = _candidate_of(metas, run_id)
        if candidate is None:
            raise DecisionError(tr("run {run} has no new model in the registry of the lake {lake}: is this the lake "
                                   "the run used?", run=run_id, lake=lake.url))
        listed = manifest.get("candidate_version")
        if listed and listed != candidate["version"]:
            raise DecisionError(tr("run {run}'s manifest names new model {listed}, but the lake {lake} holds {held} "
                                   "for it: are the lake and the runs folder from the same place?", run=run_id,
                                   listed=listed, lake=lake.url, held=candidate["version"]))
        earlier = _decision_of(log, run_id)
        if earlier is not None:
            raise DecisionError(tr("run {run} was already decided: {choice} by {by} at {at} ({why!r})", run=run_id,
                                   choice=earlier["choice"], by=earlier["by"], at=earlier["at"], why=earlier["why"]))
        before = pointer["version"] if pointer else None
        compared = _compared_with(candidate, manifest)
        if choice == "keep-new" and compared == _UNRECORDED:
            raise DecisionError(tr("run {run}'s new model {version} does not say which production model it was "
                                   "compared with (neither its registry entry nor its run's record does): retrain to "
                                   "compare against the current production model, or keep-old", run=run_id,
                                   version=candidate["version"]))
        if choice == "keep-new" and compared != before:
            raise DecisionError(tr("run {run} compared its new model with {compared}, but production is now {now}: its "
                                   "report no longer describes this choice; retrain to compare against the current "
                                   "production model, or keep-old", run=run_id,
                                   compared=compared or tr("no production model"), now=before or tr("empty")))
        after = candidate["version"] if choice == "keep-new" else before
        record = _log(lake, held, log, choice, run=run_id, candidate=candidate["version"], before=before, after=after,
                      by=by, by_source=by_source, why=why, report_sha256=report_sha256)
        if choice == "keep-new":
            catalog.set_production(lake, _pointer(record), held=held)
    return record


def rollback(lake: Lake, *, to_version: str, by: str, why: str, settings: Settings | None = None,
             by_source: str | None = None) -> dict:
    """Put a version that was once in production back in production, and log it.

    Only a superseded version qualifies: a pending candidate is promoted by deciding its run
    (after reading its report), and a rejected one was never in production.

    Parameters
    ----------
    lake : Lake
    to_version : str
        The version to restore.
    by, why : str
        Who decides and why; neither may be blank.
    settings : Settings, optional
        For the lock's timeout; :func:`kafer.config.load_settings` when omitted.
    by_source : str, optional
        How ``by`` was known, logged with it (see :func:`decide`).

    Returns
    -------
    dict
        The decision record as logged, with ``choice`` ``rollback`` and ``run`` ``None``.

    Raises
    ------
    DecisionError
        For a blank name or reason, an unknown version, the version already in production, or a
        version that was never in production.
    LockTimeout
        When another registry change holds the lock longer than ``settings.lock_timeout``.
    """
    by, why = _who_and_why(by, why)
    with _locked(lake, settings, purpose=f"roll back to {to_version} (by {by})") as held:
        metas, pointer, log = _state(lake)
        target = next((m for m in metas if m["version"] == to_version), None)
        if target is None:
            raise DecisionError(tr("unknown model version {version!r} in the lake {lake}: `kafer status` lists the "
                                   "versions", version=to_version, lake=lake.url))
        before = pointer["version"] if pointer else None
        state = _status_of(to_version, before, log)
        if state == "production":
            raise DecisionError(tr("{version} is already in production (since {since}): nothing to roll back",
                                   version=to_version, since=pointer["since"]))
        if state == "pending":
            compared = target.get("compared_with")
            if compared == before:
                raise DecisionError(tr("{version} was never in production: it is the new model of run {run}, waiting "
                                       "for a decision; read its report, then `kafer decide {run} keep-new`",
                                       version=to_version, run=target["run"]))
            raise DecisionError(tr("{version} was never in production: it is the new model of run {run}, waiting for a "
                                   "decision, compared with {compared} while production is now {now}; retrain to "
                                   "compare it with today's production model before keeping it", version=to_version,
                                   run=target["run"], compared=compared or tr("no production model"),
                                   now=before or tr("empty")))
        if state == "rejected":
            rejected = _decision_of(log, target["run"])
            raise DecisionError(tr("{version} was never in production: run {run} kept the old model ({by} at {at}); "
                                   "retrain to compare again", version=to_version, run=target["run"],
                                   by=rejected["by"], at=rejected["at"]))
        record = _log(lake, held, log, "rollback", run=None, candidate=None, before=before, after=to_version,
                      by=by, by_source=by_source, why=why, report_sha256=None)
        catalog.set_production(lake, _pointer(record), held=held)
    return record


def production(lake: Lake) -> dict | None:
    """The production version's metadata plus ``since`` (and the ``decision`` id), or ``None``."""
    pointer = _effective_pointer(catalog.production_pointer(lake), catalog.decisions(lake))
    if pointer is None:
        return None
    meta = _meta(lake, pointer["version"])
    return {**meta, "since": pointer["since"], "decision": pointer["decision"]}


def load_artifact(lake: Lake, version: str) -> bytes:
    """The artifact bytes of ``version``, checked against the hash registered with them (for a converted
    version, the hash its conversion recorded).

    Raises
    ------
    RegistryError
        When the version is unknown.
    LakeError
        When the stored bytes do not match their registered hash.
    """
    meta = _meta(lake, version)
    converted = catalog.artifact_pointer(lake, version)
    data = catalog.model_artifact(lake, version)
    if hashlib.sha256(data).hexdigest() != (converted or meta)["sha256"]:
        raise LakeError(f"the artifact of {version} in the lake {lake.url} does not match its registered hash: "
                        "it was damaged; roll back to another version")
    return data


def replace_artifact(lake: Lake, version: str, artifact: bytes, record: dict, *, replaces: str,
                     settings: Settings | None = None) -> dict:
    """Point ``version`` at a new artifact (a conversion of the one it has), keeping everything else:
    its entry and hash as registered, its training cars, kept scores and the decisions naming it.

    Parameters
    ----------
    lake : Lake
    version : str
    artifact : bytes
        The new artifact, written under a new immutable key.
    record : dict
        What happened (from which format, when, by whom, how it was checked), kept in the pointer.
    replaces : str
        The SHA-256 of the artifact it replaces: when another conversion changed it meanwhile,
        nothing is written.
    settings : Settings, optional
        For the lock's timeout.

    Returns
    -------
    dict
        The pointer as written (``record`` with ``key`` and ``sha256``).

    Raises
    ------
    RegistryError
        When the version is unknown or its artifact changed since it was read.
    """
    with _locked(lake, settings, purpose=f"convert the artifact of {version}") as held:
        now = (catalog.artifact_pointer(lake, version) or _meta(lake, version))["sha256"]
        if now != replaces:
            raise RegistryError(f"the artifact of {version} changed while it was converted (another conversion?): "
                                "run the conversion again")
        return catalog.save_converted_artifact(lake, version, artifact, record, held=held)


def training_cars(lake: Lake, version: str, *, table: pd.DataFrame) -> set[str]:
    """The cars ``version`` was trained or validated on.

    Recorded at registration; for a version registered before they were recorded, every car of
    ``table`` built up to the end of its training period (a superset: never too few).
    """
    cars = catalog.model_training_cars(lake, version)
    if cars is not None:
        return cars
    trained_on = _meta(lake, version).get("trained_on") or read_meta(load_artifact(lake, version))["trained_on"]
    built = pd.to_datetime(table["produced_at"]) <= pd.Timestamp(trained_on["produced_to"])
    return set(table.loc[built.fillna(False), "KNR"].astype(str))


def versions(lake: Lake) -> list[dict]:
    """Every version's metadata with its derived ``status``, oldest first."""
    metas, pointer, log = _state(lake)
    current = pointer["version"] if pointer else None
    return [{**m, "status": _status_of(m["version"], current, log)} for m in metas]


def candidates(lake: Lake) -> list[dict]:
    """The pending versions (registered, not yet decided), oldest first."""
    return [v for v in versions(lake) if v["status"] == "pending"]


def latest_pending_run(lake: Lake) -> str | None:
    """The run of the newest pending candidate, or ``None`` when nothing waits for a decision."""
    pending = candidates(lake)
    return pending[-1]["run"] if pending else None


def decisions(lake: Lake) -> list[dict]:
    """Every logged decision, oldest first."""
    return catalog.decisions(lake)


def status(lake: Lake, *, runs: str | os.PathLike | None = None, stale_after: float = 120.0) -> dict:
    """The registry and the runs at a glance, JSON-ready. Reads only.

    Returns
    -------
    dict
        ``{"lake": url, "production": {"version", "run", "family", "since", …} or None,
        "candidates": [{"version", "run", "status": "pending", …}],
        "decisions": [{"run", "choice", "by", "why", "at", "before", "after", …}],
        "runs": [{"run", "status", "step", "started_at", "finished_at", "candidate", "error"}]}``,
        each run of this lake in ``runs`` with its true status: ``running`` only while its process
        lives, ``succeeded`` once its candidate is in the registry, ``abandoned`` once it died
        without (with the ``step`` it died in).
    """
    runs_of_lake = []
    if runs is not None:
        manifests, alive = listed_runs(lake, runs, stale_after=stale_after)
        registered = {m["run"]: m["version"] for m in catalog.model_metas(lake)}
        for manifest in manifests:
            run_id = manifest["run_id"]
            if run_lake(runs, run_id) != lake.url:
                continue
            state = state_of(manifest, alive=alive, registered=run_id in registered)
            step = None if state == "succeeded" else manifest.get("failed_step") or (
                died_in(manifest) if state in ("running", "abandoned") else None)
            runs_of_lake.append({"run": run_id, "status": state, "step": step,
                                 "started_at": manifest.get("started_at"), "finished_at": manifest.get("finished_at"),
                                 "candidate": manifest.get("candidate_version") or registered.get(run_id),
                                 "error": None if state == "succeeded" else manifest.get("error")})
    return {"lake": lake.url, "production": production(lake), "candidates": candidates(lake),
            "decisions": decisions(lake), "runs": runs_of_lake}


@contextlib.contextmanager
def _locked(lake: Lake, settings: Settings | None, *, purpose: str) -> Iterator[LockInfo]:
    """Hold the registry lock, first completing a pointer write a failed change left undone."""
    settings = settings or load_settings()
    with hold(lake, LOCK, purpose=purpose, **settings.lock_options) as held:
        pointer = catalog.production_pointer(lake)
        truth = _effective_pointer(pointer, catalog.decisions(lake))
        if truth is not None and truth != pointer:
            catalog.set_production(lake, truth, held=held)
        yield held


def _effective_pointer(pointer: dict | None, log: list[dict]) -> dict | None:
    """The production pointer as the decision log says it is (the log is written first)."""
    if log and log[-1]["after"] != (pointer or {}).get("version"):
        return _pointer(log[-1]) if log[-1]["after"] is not None else None
    return pointer


def _state(lake: Lake) -> tuple[list[dict], dict | None, list[dict]]:
    log = catalog.decisions(lake)
    return catalog.model_metas(lake), _effective_pointer(catalog.production_pointer(lake), log), log


def _meta(lake: Lake, version: str) -> dict:
    _check_id(version, "model version")
    meta = catalog.model_meta(lake, version)
    if meta is None:
        raise RegistryError(f"unknown model version {version!r} in the lake {lake.url}: "
                            "`kafer status` lists the versions")
    return meta


def _compared_with(entry: dict, manifest: dict) -> str | None:
    """The production version a candidate was compared with, as its registry entry recorded it; an
    entry from before Käfer recorded it there falls back on its run's record; else unrecorded."""
    if "compared_with" in entry:
        return entry["compared_with"]
    return manifest.get("production_version", _UNRECORDED)


def _candidate_of(metas: list[dict], run_id: str) -> dict | None:
    return next((m for m in metas if m["run"] == run_id), None)


def _decision_of(log: list[dict], run_id: str) -> dict | None:
    return next((d for d in log if d["run"] == run_id), None)


def _status_of(version: str, current: str | None, log: list[dict]) -> str:
    if version == current:
        return "production"
    if any(version in (d["before"], d["after"]) for d in log):
        return "superseded"
    if any(d["choice"] == "keep-old" and d["candidate"] == version for d in log):
        return "rejected"
    return "pending"


def _log(lake: Lake, held: LockInfo, log: list[dict], choice: str, *, run: str | None, candidate: str | None,
         before: str | None, after: str | None, by: str, by_source: str | None, why: str,
         report_sha256: str | None) -> dict:
    """Append one immutable decision record, numbered after the last of ``log``, and return it."""
    seq = max((d.get("seq") or 0 for d in log), default=0) + 1
    record = {"seq": seq, "id": f"{seq:06d}", "at": _iso(datetime.now(timezone.utc)), "by": by,
              "by_source": by_source, "why": why, "choice": choice, "run": run, "candidate": candidate,
              "before": before, "after": after, "report_sha256": report_sha256}
    catalog.save_decision(lake, record, held=held)
    return record


def _pointer(record: dict) -> dict:
    return {"version": record["after"], "since": record["at"], "by": record["by"], "decision": record["id"]}


def _who_and_why(by: str, why: str) -> tuple[str, str]:
    if not isinstance(why, str) or not why.strip():
        raise DecisionError(tr("a decision needs a reason: say why (--why TEXT), e.g. what in the comparison report "
                               "convinced you"))
    if not isinstance(by, str) or not by.strip():
        raise DecisionError(tr("a decision needs a name: say who decides (--by NAME)"))
    return by.strip(), why.strip()


def _succeeded_manifest(runs_dir: str | os.PathLike, run_id: str) -> dict:
    try:
        manifest = runrecord.read_manifest(runs_dir, run_id)
    except RunError as exc:
        raise DecisionError(tr("unknown run {run!r}: {problem}", run=run_id, problem=exc)) from None
    if manifest.get("status") != "succeeded":
        raise DecisionError(tr("run {run} has status {status!r}: only a succeeded run's new model can be decided",
                               run=run_id, status=manifest.get("status")))
    return manifest


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
        raise RegistryError(f"{value!r} is not a {what}")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
