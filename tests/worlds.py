"""Real runs, made quickly: the retrain's steps called in this process instead of through papermill.

The notebooks 01-04 are thin views over exactly these calls, so a run made here leaves the same
record (settings snapshot, candidate, training cars, metrics.json and predictions.csv written by
the real evaluation) and the same registry entry as ``kafer retrain``, minus the executed notebooks
and the rendered report, in a second or two instead of twenty. Being in-process, it works on
``memory://`` lakes too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kafer.config import Settings
from kafer.demo import make_demo_upload
from kafer.ingest import land, receive
from kafer.lake import utc_now_iso
from kafer.locks import hold
from kafer.pipeline import finish
from kafer.recovery import RETRAIN_LOCK
from kafer.runrecord import start_run, update_manifest
from kafer.steps import evaluate_run, merge_run, save_candidate, train_candidate

#: Comparisons on the small uploads below count as fair from 50 cars and 5 failures.
SMALL = {"min_compare_cars": 50, "min_compare_failures": 5}


def quick_retrain(upload: Path | None, *, settings: Settings, run_id: str) -> str:
    """Ingest ``upload`` (none: the lake as it is), merge, train, compare and register, holding the
    retrain lock as ``kafer retrain`` does; the candidate's version."""
    run = start_run(settings.runs, run_id, settings)
    with hold(run.lake, RETRAIN_LOCK, purpose=f"retrain {run_id}", details={"run": run_id},
              **settings.lock_options) as held:
        update_manifest(run.runs, run_id, status="running", started_at=utc_now_iso())
        received = receive([str(upload)] if upload else [], lake=run.lake, settings=settings, allow_empty=True)
        land(received, lake=run.lake, settings=settings)
        merge_run(run)
        model, split = train_candidate(run)
        save_candidate(model, split, run)
        evaluate_run(run)
        return finish(run, {}, held=held).candidate_version


@pytest.fixture(scope="session")
def months(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Three small monthly uploads, April, May and June (folders of exports)."""
    root = tmp_path_factory.mktemp("months")
    return tuple(make_demo_upload(root / name, cars=cars, seed=seed, results_per_car=20, sheet_rows=3000,
                                  start=start).folder
                 for name, cars, seed, start in (("april", 400, 11, "2024-04-01"), ("may", 300, 12, "2024-05-06"),
                                                 ("june", 300, 13, "2024-06-03")))
