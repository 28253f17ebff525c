"""Finish or undo what a process killed mid-way left behind, so that the next command simply works.

The lake is written once, pointers last, so a crash never loses data; what it can leave is a run
still marked ``running`` whose process is gone, a candidate registered whose run never said it
succeeded, or an artifact without its registry entry (ignored: a version exists only with its
entry). The decision log is written before the production pointer, and the registry reads the
log as the truth (:mod:`kafer.registry`). This module settles the runs by the registry, which is
in the lake: a run whose candidate was registered is completed (succeeded), any other left
running is marked ``abandoned`` with the step it died in. A run is judged dead when nobody alive
held the lake's ``retrain`` lock for it before or after its manifest was read (locks die with
their owner, see :mod:`kafer.locks`), and it is settled only if its manifest still says what was read.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import catalog
from .lake import Lake, utc_now_iso
from .locks import lock_holder
from .runrecord import CANDIDATE, died_in, list_runs, run_lake, update_manifest

#: Name of the lake lock a retrain holds, and where its holder record names the run.
RETRAIN_LOCK = "retrain"


def running_run(lake: Lake, *, stale_after: float) -> str | None:
    """The run whose retrain holds the lake's retrain lock and is alive, or ``None``."""
    holder = lock_holder(lake, RETRAIN_LOCK, stale_after=stale_after)
    if holder is None or holder.get("state") != "alive":
        return None
    return (holder.get("details") or {}).get("run")


def listed_runs(lake: Lake, runs: str | os.PathLike, *, stale_after: float) -> tuple[list[dict], set[str]]:
    """Every run's manifest, and the runs alive while they were listed.

    A retrain takes the retrain lock before it writes ``running`` into its manifest, and writes its
    last status before it lets go. So the lock is asked before the listing and again after it: a
    run listed ``running`` is alive when it held the lock at either moment, and one that held it at
    neither was already dead when it was listed (or done since, and its manifest no longer says
    running). Asked only before, a retrain that started in between (took the lock, wrote its
    manifest) would be listed ``running`` with nobody alive for it, and settled as abandoned while
    it works.
    """
    before = running_run(lake, stale_after=stale_after)
    manifests = list_runs(runs)
    after = running_run(lake, stale_after=stale_after)
    return manifests, {run for run in (before, after) if run}


def settle_runs(lake: Lake, runs: str | os.PathLike, *, stale_after: float, holding: bool = False) -> list[dict]:
    """Make this lake's runs agree with its registry after a process died or stopped.

    A run whose candidate is in the registry is completed (succeeded), whether it was left
    ``running`` by a process that died or marked ``failed`` by one stopped after registering; a run
    left ``running`` by a process that died, with nothing in the registry, is marked ``abandoned``.
    The run whose retrain holds the lake's retrain lock is alive and left alone, also one that took
    it while the runs were being listed (:func:`listed_runs`).

    Parameters
    ----------
    lake : Lake
    runs : path
        The run records folder.
    stale_after : float
        Staleness of the retrain lock's holder on an object store (see :func:`kafer.locks.hold`).
    holding : bool
        True when the caller holds the retrain lock itself: then no other run can be alive.

    Returns
    -------
    list of dict
        ``{"run", "outcome", "step"}`` per run settled; ``outcome`` is ``completed`` (its candidate
        was registered: the run succeeded) or ``abandoned``.
    """
    manifests, alive = (list_runs(runs), set()) if holding else listed_runs(lake, runs, stale_after=stale_after)
    ours = [m for m in manifests if m.get("status") in ("running", "failed", "abandoned")
            and m["run_id"] not in alive and run_lake(runs, m["run_id"]) == lake.url]
    registered = {m["run"]: m for m in catalog.model_metas(lake)} if ours else {}
    settled = []
    for manifest in ours:
        run_id, status = manifest["run_id"], manifest["status"]
        step = manifest.get("failed_step") or died_in(manifest)
        candidate = registered.get(run_id)
        if candidate is not None:
            how = "its process died" if status == "running" else f"it was marked {status}"
            if update_manifest(runs, run_id, if_status=status, status="succeeded",
                               finished_at=candidate["created_at"], candidate_version=candidate["version"],
                               production_version=candidate.get("compared_with"),
                               recovered=f"{how} after registering its candidate; completed {utc_now_iso()}"):
                settled.append({"run": run_id, "outcome": "completed", "step": step})
        elif status == "running":
            if update_manifest(runs, run_id, if_status="running", status="abandoned", failed_step=step,
                               abandoned_at=utc_now_iso(),
                               error=f"its process died during {step}; nothing it did reached the registry"):
                (Path(runs) / run_id / CANDIDATE).unlink(missing_ok=True)
                settled.append({"run": run_id, "outcome": "abandoned", "step": step})
    return settled
