"""The record a retrain leaves in ``runs/<run-id>/``: manifest, metrics, predictions, candidate.

Run records are local folders (papermill writes executed notebooks locally); the lake holds the
models themselves. Run ids are sortable UTC strings without colons.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import RunError
from .lake import utc_stamp

MANIFEST = "manifest.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
CANDIDATE = "candidate.model"
REPORT = "04_compare.html"


def new_run_id() -> str:
    """A fresh, sortable run id such as ``r20241126T201753Z-3fa9``."""
    return "r" + utc_stamp().split(".")[0] + "Z-" + secrets.token_hex(2)


def run_dir(runs: str | os.PathLike, run_id: str) -> Path:
    """The folder of ``run_id`` (not created)."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id")
    return Path(runs) / run_id


def write_json(path: Path, obj: Any) -> None:
    """Write JSON next to its final name, then move it there, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} does not exist: is the run id right, and did the run finish?") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None


def read_manifest(runs: str | os.PathLike, run_id: str) -> dict:
    return read_json(run_dir(runs, run_id) / MANIFEST)


def update_manifest(runs: str | os.PathLike, run_id: str, **changes: Any) -> dict:
    """Merge ``changes`` into the run's manifest (created when absent) and return it."""
    path = run_dir(runs, run_id) / MANIFEST
    manifest = read_json(path) if path.exists() else {"run_id": run_id}
    manifest.update(changes)
    write_json(path, manifest)
    return manifest

