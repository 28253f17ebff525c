"""A retrain or a decision killed with SIGKILL at a chosen point, in a child process of its own.

``python tests/crashing.py POINT LAKE RUNS RUN_ID [UPLOAD]`` runs the real ``kafer.pipeline.retrain``
(its notebook steps executed in-process through the very functions the notebooks call, so it
takes seconds) or, for the decision points, ``kafer.decide.decide`` on RUN_ID, and kills itself
with ``SIGKILL`` (no cleanup, no ``finally``) at POINT:

- ``merge``: in step 02, holding the retrain and the lake locks, before the curated version is written;
- ``artifact``: after the candidate's artifact is written, before its registry entry;
- ``registered``: after the candidate is registered, before the run says it succeeded;
- ``logged``: after a keep-new decision is logged, before the production pointer moves.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafer import catalog, pipeline, runrecord  # noqa: E402
from kafer.config import load_settings  # noqa: E402
from kafer.decide import decide  # noqa: E402
from kafer.ingest import land, receive  # noqa: E402
from kafer.lake import Lake  # noqa: E402
from kafer.steps import evaluate_run, merge_run, save_candidate, train_candidate  # noqa: E402
from worlds import SMALL  # noqa: E402


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def in_process(step: str, out_dir: Path, parameters: dict) -> Path:
    """One notebook step, run here through the calls its cells make."""
    run = runrecord.open_run(parameters["runs"], parameters["run_id"])
    if step == "01_ingest":
        received = receive(parameters["upload"], lake=run.lake, settings=run.settings, allow_empty=True)
        land(received, lake=run.lake, settings=run.settings)
    elif step == "02_merge":
        merge_run(run)
    elif step == "03_retrain":
        save_candidate(*train_candidate(run), run)
    else:
        evaluate_run(run)
    return out_dir / f"{step}.ipynb"


def main(point: str, lake: str, runs: str, run_id: str, upload: str | None = None) -> None:
    settings = load_settings(lake=lake, runs=runs, **SMALL)
    if point == "logged":
        catalog.set_production = die
        decide(run_id, "keep-new", by="Ana", why="killed while deciding", lake=lake, runs=runs)
        return
    pipeline.run_notebook = in_process
    pipeline.render_html = lambda notebook: notebook.with_suffix(".html").write_text("<html></html>")
    if point == "merge":
        catalog.save_curated = die
    elif point == "artifact":
        original = Lake.write_json

        def entry_then_die(self, key, obj):
            if key.endswith("/meta.json") and key.startswith("models/"):
                die()
            return original(self, key, obj)

        Lake.write_json = entry_then_die
    elif point == "registered":
        original_update = runrecord.update_manifest

        def succeed_then_die(runs_dir, rid, **changes):
            if changes.get("status") == "succeeded":
                die()
            return original_update(runs_dir, rid, **changes)

        pipeline.runrecord.update_manifest = succeed_then_die
    pipeline.retrain([upload] if upload else [], settings=settings, run_id=run_id)


if __name__ == "__main__":
    main(*sys.argv[1:])
