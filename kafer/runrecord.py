"""The record a retrain leaves in ``runs/<run-id>/``: settings, manifest, metrics, predictions, candidate.

A run's manifest names its status: ``running`` while its retrain works, then ``succeeded``
(its candidate is registered), ``failed`` (a step raised; nothing registered) or ``abandoned``
(its process died; see :mod:`kafer.recovery`), and the steps it finished (:data:`STEPS`, then
``render`` and ``register``).

Run records are local folders (papermill writes executed notebooks locally); the lake holds the
models themselves. Run ids are sortable UTC strings without colons.

One run, one truth: a run's settings are a snapshot written when it starts, and its data version
is pinned once its merge is done; every step reads both from here (:class:`Run`), never the
current settings or the lake's current pointer.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from .config import Settings, load_settings
from .errors import RunError
from .lake import Lake, utc_stamp

#: The notebooks of a retrain, in order.
STEPS = ("01_ingest", "02_merge", "03_retrain", "04_compare")
#: The steps of a retrain after the notebooks (what a manifest's ``steps`` can name beside STEPS).
AFTER_NOTEBOOKS = ("render", "register")

MANIFEST = "manifest.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
CANDIDATE = "candidate.model"
REPORT = "04_compare.html"
SETTINGS = "settings.json"
TRAINING_CARS = "training_cars.csv"


def new_run_id() -> str:
    """A fresh, sortable run id such as ``r20241126T201753Z-3fa9``."""
    return "r" + utc_stamp().split(".")[0] + "Z-" + secrets.token_hex(2)


def run_dir(runs: str | os.PathLike, run_id: str) -> Path:
    """The folder of ``run_id`` (not created).

    Raises
    ------
    RunError
        When ``run_id`` is not a plain name, or names a file rather than a run's folder.
    """
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id (run ids look like r20241126T201753Z-3fa9; "
                       "`kafer status` lists the runs)")
    folder = Path(runs) / run_id
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{run_id!r} is a file in {runs}, not a run: run ids look like r20241126T201753Z-3fa9; "
                       "`kafer status` lists the runs")
    return folder


def write_json(path: Path, obj: Any) -> None:
    """Write JSON next to its final name, then move it there, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise RunError(f"{path} does not exist: is the run id right, and did the run finish?") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None


def read_manifest(runs: str | os.PathLike, run_id: str) -> dict:
    return read_json(run_dir(runs, run_id) / MANIFEST)


def update_manifest(runs: str | os.PathLike, run_id: str, *, if_status: str | None = None,
                    **changes: Any) -> dict | None:
    """Merge ``changes`` into the run's manifest (created when absent) and return it; with
    ``if_status``, only while its status is still that (else ``None``: another process settled it).

    The read, the merge and the write hold the run's own OS lock (``.manifest.lock`` in its folder),
    so that two processes updating one run (its retrain, its notebook, a recovery) never lose each
    other's changes.

    Raises
    ------
    RunError
        When another process keeps the run's record locked for a minute.
    """
    import filelock

    path = run_dir(runs, run_id) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with filelock.FileLock(path.with_name(".manifest.lock"), timeout=60):
            manifest = read_json(path) if path.exists() else {"run_id": run_id}
            if if_status is not None and manifest.get("status") != if_status:
                return None
            manifest.update(changes)
            write_json(path, manifest)
            return manifest
    except filelock.Timeout:
        raise RunError(f"the record of run {run_id} in {runs} stays locked by another process: "
                       "try again when it has finished") from None


def list_runs(runs: str | os.PathLike) -> list[dict]:
    """The manifest of every run in ``runs``, oldest first (run ids sort by time); unreadable ones left out."""
    root = Path(runs)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()):
        try:
            out.append(read_json(folder / MANIFEST))
        except RunError:
            continue
    return out


def run_lake(runs: str | os.PathLike, run_id: str) -> str | None:
    """The lake a run worked on, from its settings snapshot (``None`` when it has none)."""
    try:
        return read_json(Path(runs) / run_id / SETTINGS).get("lake")
    except RunError:
        return None


def state_of(manifest: dict, *, alive: Collection[str], registered: bool) -> str:
    """A run's status as it truly is: ``running`` only while its retrain is alive (``alive`` names
    the runs whose retrain held the lake while the manifests were read); else ``succeeded`` once its
    candidate is in the registry (``registered``: a run and its candidate always agree), else
    ``abandoned`` when it died running."""
    status = manifest.get("status")
    if status == "running" and manifest.get("run_id") in alive:
        return "running"
    if registered:
        return "succeeded"
    return "abandoned" if status == "running" else status


def died_in(manifest: dict) -> str:
    """The step a run was in when it stopped: the first one its manifest has no time for."""
    done = manifest.get("steps") or {}
    return next((step for step in (*STEPS, *AFTER_NOTEBOOKS) if step not in done), "register")


@dataclass(frozen=True)
class Run:
    """A run as its steps see it: its folder, its settings snapshot and its lake."""

    runs: Path
    run_id: str
    settings: Settings

    @property
    def folder(self) -> Path:
        return run_dir(self.runs, self.run_id)

    @property
    def lake(self) -> Lake:
        return Lake(self.settings.lake)

    @property
    def data_version(self) -> str:
        """The curated version this run pinned after its merge.

        Raises
        ------
        RunError
            When the run has not merged yet (its merge step did not run or failed).
        """
        version = read_manifest(self.runs, self.run_id).get("data_version")
        if not version:
            raise RunError(f"run {self.run_id} has no data version yet: its merge step (02_merge) did not finish")
        return version

    def pin(self, data_version: str) -> None:
        """Record the curated version every later step of this run reads."""
        update_manifest(self.runs, self.run_id, data_version=data_version)


def start_run(runs: str | os.PathLike, run_id: str, settings: Settings) -> Run:
    """Create the run's folder and write its settings snapshot.

    Raises
    ------
    RunError
        When a run with this id already exists.
    """
    folder = run_dir(runs, run_id)
    if folder.exists():
        raise RunError(f"run {run_id} already exists in {runs}: choose another --run-id")
    folder.mkdir(parents=True)
    write_json(folder / SETTINGS, settings.to_dict())
    return Run(Path(runs), run_id, settings)


def open_run(runs: str | os.PathLike | None, run_id: str) -> Run:
    """The run ``run_id`` with its settings snapshot, for a step that belongs to it.

    ``runs`` empty or ``None``: the settings' runs folder.

    Raises
    ------
    RunError
        When no run id is given (the step was opened outside ``kafer retrain``) or the run is unknown.
    """
    if not run_id:
        raise RunError("this notebook is a step of a retrain and needs its run id: run the pipeline with "
                       "`make retrain` (or `kafer retrain`), which passes it")
    runs = Path(runs or load_settings().runs)
    snapshot = read_json(run_dir(runs, run_id) / SETTINGS)
    return Run(runs, run_id, Settings.from_dict(snapshot))
