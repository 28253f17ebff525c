"""Wire the notebooks into a retrain: ingest → merge → retrain → compare, run by papermill.

The only module that imports papermill. Each step is a parameterized notebook under
``notebooks/``; executed copies and the rendered comparison go to ``runs/<run-id>/``. A run
writes its settings snapshot before the first step and pins its data version after the merge;
the steps read both (see :mod:`kafer.runrecord`). The candidate enters the lake's registry as a
pending version only once every step succeeded; a failure of any kind before that marks the run
failed, and a run whose candidate is registered is succeeded whatever stops it afterwards.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from . import catalog, registry, runrecord
from .config import Settings, load_settings
from .errors import KaferError, RunError, StepError
from .i18n import number, tr
from .lake import Lake, utc_now_iso
from .locks import LockInfo, hold
from .readers import Progress
from .recovery import RETRAIN_LOCK, settle_runs
from .runrecord import STEPS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: nbconvert templates of the package (the report's: offline, see kafer-report/index.html.j2).
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class RunResult:
    """What a retrain left: where its record is and what the candidate is."""

    run_id: str
    run_dir: Path
    candidate_version: str
    production_version: str | None
    verdict: str
    recommendation: str
    step_seconds: dict
    #: Production's track record on the cars that just got their outcome (:func:`kafer.monitor.outcome_line`).
    track_record: str = ""

    def summary(self) -> str:
        """The closing lines: where the report is and how to decide."""
        timing = ", ".join(tr("{step} {seconds} s", step=k, seconds=number(v, 1)) for k, v in self.step_seconds.items())
        vs = (tr("production model {version}", version=self.production_version) if self.production_version
              else tr("no production model yet"))
        return "\n".join([
            tr("Run {run} finished ({timing}).", run=self.run_id, timing=timing),
            tr("New model {version} waits for a decision; compared against {production}.",
               version=self.candidate_version, production=vs),
            tr("Verdict: {verdict}", verdict=self.verdict),
            tr("What the evidence supports: {recommendation}", recommendation=self.recommendation),
            *([self.track_record] if self.track_record else []),
            tr("Report: {path}", path=self.run_dir / runrecord.REPORT),
            tr("Decide: kafer decide {run} keep-new|keep-old --why TEXT   or on the decision desk: make desk (or kafer "
               "desk), or 05_decide.ipynb in make lab", run=self.run_id),
        ])


def absolute_url(url: str) -> str:
    """Local paths made absolute (notebooks run in another process); URLs kept."""
    return url if "://" in url else os.path.abspath(url)


def kernel_name() -> str:
    """The ``kafer`` kernel registered by ``make setup``, else this interpreter's ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "kafer" if "kafer" in KernelSpecManager().find_kernel_specs() else "python3"


def code_version() -> str:
    """The git commit of the code when in a checkout, else the package version."""
    from . import __version__

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=NOTEBOOKS.parent, capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=NOTEBOOKS.parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def _kernel_manager(log: Path):
    """A kernel manager class that sends the kernel's stderr to ``log``: its own log lines (the TCP
    warning, the interrupt at shutdown) are not the user's business, but are kept for diagnosis."""
    from jupyter_client.manager import AsyncKernelManager

    async def launch(self, kernel_cmd, **kw):
        with open(log, "ab") as sink:
            kw["stderr"] = sink
            return await AsyncKernelManager._async_launch_kernel(self, kernel_cmd, **kw)

    return type("RunKernelManager", (AsyncKernelManager,), {"_async_launch_kernel": launch})


def run_notebook(step: str, out_dir: Path, parameters: dict, *, notebooks: Path = NOTEBOOKS) -> Path:
    """Execute ``notebooks/<step>.ipynb`` with ``parameters`` into ``out_dir``; StepError on failure.

    The kernel's own log lines go to ``out_dir/kernel.log``, not to the terminal.
    """
    import papermill as pm

    source = notebooks / f"{step}.ipynb"
    if not source.is_file():
        raise StepError(step, f"notebook {source} is missing")
    declared = set(pm.inspect_notebook(str(source)))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise StepError(step, f"the notebook has no parameter(s) {', '.join(unknown)}")
    target = out_dir / f"{step}.ipynb"
    try:
        pm.execute_notebook(str(source), str(target), parameters=parameters, kernel_name=kernel_name(),
                            progress_bar=False, cwd=os.getcwd(), log_output=False,
                            kernel_manager_class=_kernel_manager(out_dir / "kernel.log"))
    except pm.PapermillExecutionError as exc:
        raise StepError(step, f"{exc.ename}: {exc.evalue}") from None
    except Exception as exc:  # kernel died, timed out, could not start
        raise StepError(step, f"{type(exc).__name__}: {exc}") from None
    return target


def render_html(notebook: Path) -> Path:
    """The executed notebook as HTML for the operator: no code, pictures embedded, titled by its run."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(str(notebook), as_version=4)
    node.metadata["title"] = report_title(node)
    exporter = HTMLExporter(template_name="kafer-report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(node)
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def report_title(node) -> str:
    """The page title: the first heading the notebook's outputs show (the report names the run there)."""
    for cell in node.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            if text.startswith("#"):
                return text.splitlines()[0].lstrip("#").strip()
    return "Käfer comparison"


def step_parameters(step: str, *, upload: Sequence[str], runs: str, run_id: str) -> dict:
    """The parameters each notebook declares: the run (whose record holds its settings and data
    version), and for the ingest step the upload."""
    common = {"runs": runs, "run_id": run_id}
    return {"01_ingest": {**common, "upload": list(upload)}, "02_merge": common, "03_retrain": common,
            "04_compare": common}[step]


def retrain(paths: Sequence[str] = (), *, lake: str | None = None, runs: str | None = None,
            run_id: str | None = None, family: str | None = None, progress: Progress | None = None,
            settings: Settings | None = None) -> RunResult:
    """Run ingest (when ``paths``), merge, retrain and compare; register the candidate as pending.

    Raises
    ------
    LockTimeout
        Before any step, when another retrain holds the lake (the message names it).
    StepError
        When a step fails; the run's manifest is marked failed and no candidate is registered.
    """
    from .ingest import list_upload
    from .monitor import outcome_line

    settings = (settings or load_settings(lake=lake, runs=runs)).replace(family=family)
    settings = settings.replace(lake=absolute_url(settings.lake), runs=str(Path(settings.runs).resolve()))
    runs_root = Path(settings.runs)
    upload = [absolute_url(str(p)) for p in paths]
    list_upload(upload)  # names nothing, or no export: refused before the run starts
    run_id = run_id or runrecord.new_run_id()
    runrecord.run_dir(runs_root, run_id)
    say = progress or (lambda message: None)
    store = Lake(settings.lake)
    store.check(write=True)
    timings: dict[str, float] = {}
    before = catalog.current_version(store)
    with hold(store, RETRAIN_LOCK, purpose=f"retrain {run_id}", details={"run": run_id},
              **settings.lock_options) as held:
        for settled in settle_runs(store, runs_root, stale_after=settings.lock_stale_after, holding=True):
            say(f"run {settled['run']} stopped during {settled['step']}: "
                + ("its candidate was registered, so it is marked succeeded" if settled["outcome"] == "completed"
                   else "its process died, so it is marked abandoned"))
        run = runrecord.start_run(runs_root, run_id, settings)
        runrecord.update_manifest(runs_root, run_id, status="running", started_at=utc_now_iso(), steps={},
                                  parameters={"upload": upload, "lake": settings.lake, "family": settings.family,
                                              "seed": settings.seed, "eval_fraction": settings.eval_fraction,
                                              "budgets": list(settings.budgets)},
                                  code_version=code_version(), python=platform.python_version())
        step = None
        try:
            for step in STEPS:
                say(f"step {step} …")
                started = time.monotonic()
                run_notebook(step, run.folder, step_parameters(step, upload=upload, runs=str(runs_root),
                                                               run_id=run_id))
                timings[step] = round(time.monotonic() - started, 2)
                runrecord.update_manifest(runs_root, run_id, steps=dict(timings))
                say(f"step {step} done in {timings[step]:.1f} s")
            step = "render"
            started = time.monotonic()
            render_html(run.folder / "04_compare.ipynb")
            timings["render"] = round(time.monotonic() - started, 2)
            runrecord.update_manifest(runs_root, run_id, steps=dict(timings))
            step = "register"
            result = finish(run, timings, held=held)
        except BaseException as exc:
            failed = exc if isinstance(exc, StepError) else StepError(
                step, str(exc) if isinstance(exc, KaferError) else f"{type(exc).__name__}: {exc}")
            said = _stopped(run, timings, failed)
            if isinstance(exc, (StepError, KeyboardInterrupt, SystemExit)):
                raise
            raise said from None
    return replace(result, track_record=outcome_line(store, settings=settings, before=before, after=run.data_version))


def _stopped(run: runrecord.Run, timings: dict, failed: StepError) -> KaferError:
    """Record a run that ``failed``; the error to raise.

    A run whose candidate reached the registry has succeeded, whatever stopped it afterwards (Ctrl-C,
    a write error), so that a run and its candidate always agree: it is recorded as succeeded, and
    the error says that its candidate waits for a decision. When the lake cannot say whether the
    candidate is there, the run is left ``running``: recovery settles it from the registry once
    this process has ended (:func:`kafer.recovery.settle_runs`).
    """
    candidate = None
    if failed.step == "register":
        try:
            candidate = catalog.run_model(run.lake, run.run_id)
        except KaferError:
            return failed
    if candidate is None:
        (run.folder / runrecord.CANDIDATE).unlink(missing_ok=True)
        runrecord.update_manifest(run.runs, run.run_id, status="failed", finished_at=utc_now_iso(), steps=timings,
                                  error=str(failed), failed_step=failed.step)
        return failed
    runrecord.update_manifest(run.runs, run.run_id, status="succeeded", finished_at=candidate["created_at"],
                              steps=timings, candidate_version=candidate["version"],
                              production_version=candidate.get("compared_with"),
                              recovered=f"stopped after registering its candidate ({failed}); "
                                        f"completed {utc_now_iso()}")
    return RunError(f"run {run.run_id} registered its candidate {candidate['version']}, which waits for a decision "
                    f"(kafer decide {run.run_id} keep-new|keep-old), but stopped before finishing its record: {failed}")


def finish(run: runrecord.Run, timings: dict, *, held: LockInfo) -> RunResult:
    """End a run whose steps all succeeded: register its candidate as pending, mark the run succeeded.

    ``held`` is the retrain lock: a run whose lock was taken over (its process had stalled, and
    another may have settled it) registers nothing.
    """
    metrics = runrecord.read_json(run.folder / runrecord.METRICS)
    candidate = metrics["models"]["candidate"]
    cars = (run.folder / runrecord.TRAINING_CARS).read_text(encoding="utf-8").split()[1:]
    production = (metrics["models"].get("production") or {}).get("version")
    held.verify()
    version = registry.register_candidate(
        run.lake, run_id=run.run_id, version=candidate["version"],
        artifact=(run.folder / runrecord.CANDIDATE).read_bytes(), family=candidate["family"],
        data_version=run.data_version, metrics=candidate["metrics"], trained_on=candidate["trained_on"],
        training_cars=cars, compared_with=production, settings=run.settings)
    runrecord.update_manifest(run.runs, run.run_id, status="succeeded", finished_at=utc_now_iso(), steps=timings,
                              total_seconds=round(sum(timings.values()), 2), candidate_version=version,
                              production_version=production)
    return RunResult(run.run_id, run.folder, version, production, metrics["verdict"],
                     metrics["recommendation"]["text"], timings)
