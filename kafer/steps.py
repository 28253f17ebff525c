"""The merge, retrain and compare steps of a run: what the notebooks 02, 03 and 04 call.

Every step reads the run's settings snapshot and the data version the run pinned after its merge
(:class:`kafer.runrecord.Run`), so an ingest landing between two steps changes nothing the run
evaluates or registers. Training writes the candidate artifact and its training cars into the
run's folder; comparing writes ``metrics.json`` and ``predictions.csv`` there. No step touches
the registry: the pipeline registers the candidate only after every step succeeded.

The candidate and production are compared only on evaluation cars that neither was trained or
validated on; when too few such cars remain, the comparison says so instead of guessing. Cars an
acted-on inspection list flagged (their outcome shaped by the list) are neither trained on nor
compared (:func:`run_shaped`); the report says how many.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from . import catalog, lists, registry, runrecord
from .dataset import Split, labelled, time_split
from .drift import data_summary
from .explain import Drivers, drivers
from .features import feature_columns
from .ingest import merge
from .metrics import compare, threshold_at
from .model import Model, library_differences, load_model, select_family, train
from .narrative import recommendation, verdict
from .readers import Progress
from .runrecord import CANDIDATE, METRICS, PREDICTIONS, TRAINING_CARS, Run, write_json


def merge_run(run: Run, *, progress: Progress | None = None) -> dict:
    """Merge what was landed into a new curated version (when anything is new) and pin it for the run."""
    manifest = merge(lake=run.lake, settings=run.settings, progress=progress)
    run.pin(manifest["version"])
    return manifest


def run_features(run: Run) -> pd.DataFrame:
    """The per-car table of the version the run pinned."""
    return catalog.features(run.lake, run.data_version)


def run_shaped(run: Run) -> frozenset[str]:
    """The cars of the run's pinned version whose outcome an acted-on inspection list shaped (flagged
    on it: fixed before the road test, or tested harder), from the lists recorded up to its making."""
    return frozenset(lists.shaped_as_of(run.lake, run.data_version)["KNR"])


def run_split(run: Run) -> Split:
    """The run's training and evaluation cars: the time-ordered split of the pinned version's labelled cars.

    The cars an acted-on list flagged (:func:`run_shaped`) keep their place in time, but none of them is
    trained on: their label says what the inspection did, not what the car would have done. The
    evaluation cars keep them (their risk sets the threshold); :func:`evaluate_run` leaves them out of
    the comparison."""
    split = time_split(labelled(run_features(run)), eval_fraction=run.settings.eval_fraction)
    shaped = run_shaped(run)
    return Split(train=split.train[~split.train["KNR"].isin(shaped)].reset_index(drop=True), eval=split.eval)


def split_summary(split: Split) -> pd.DataFrame:
    """Cars, failures and production period of the training and evaluation cars."""
    rows = []
    for name, part in (("train", split.train), ("evaluation", split.eval)):
        produced = pd.to_datetime(part["produced_at"])
        rows.append({"set": name, "cars": len(part), "failures": int(part["label_rod"].sum()),
                     "failure rate": f"{part['label_rod'].mean():.2%}",
                     "produced from": produced.min(), "produced to": produced.max()})
    return pd.DataFrame(rows)


def run_facts(run: Run, cars: pd.DataFrame | None = None) -> pa.Table:
    """The facts (:mod:`kafer.facts`) of the version the run pinned, only of ``cars`` when given."""
    knr = None if cars is None else pa.array(cars["KNR"].astype(str), pa.string())
    return catalog.facts(run.lake, run.data_version, cars=knr)


def train_candidate(run: Run) -> tuple[Model, Split]:
    """Fit the candidate on the training cars of the run's split, with the facts enough of them have.

    Family ``auto`` compares the families first (:func:`kafer.model.select_family`); how the family
    was chosen is kept in the model's ``meta["family_choice"]``.
    """
    split = run_split(run)
    settings = run.settings
    options = {"features": feature_columns(settings), "seed": settings.seed, "facts": run_facts(run, split.train),
               "min_fact_cars": settings.fact_min_cars, "max_fact_columns": settings.fact_max_columns}
    choice = {"rule": "named (--family or the family setting)", "chosen": settings.family}
    if settings.family == "auto":
        choice = select_family(split.train, **options)
    model = train(split.train, family=choice["chosen"], **options)
    return replace(model, meta={**model.meta, "family_choice": choice}), split


def save_candidate(model: Model, split: Split, run: Run) -> pd.DataFrame:
    """Write the candidate artifact and its training cars into the run's folder, and give it the
    version id it will have in the registry; say what it is."""
    run.folder.joinpath(CANDIDATE).write_bytes(model.to_bytes())
    split.train[["KNR"]].to_csv(run.folder / TRAINING_CARS, index=False)
    version = registry.new_version()
    runrecord.update_manifest(run.runs, run.run_id, candidate_version=version)
    info = {"version": version, "family": model.meta["family"],
            "family chosen by": (model.meta.get("family_choice") or {}).get("rule", "named"),
            "data version": run.data_version,
            "features": len(model.features),
            "trained on cars": model.meta["trained_on"]["cars"],
            "failures among them": model.meta["trained_on"]["positives"]}
    return pd.DataFrame({"fact": list(info), "value": [str(v) for v in info.values()]})


@dataclass(frozen=True)
class Evaluation:
    """The scores on the compared cars, and everything the report shows."""

    knr: np.ndarray
    y_true: np.ndarray
    probabilities: dict
    comparison: dict
    metrics: dict
    changes: pd.DataFrame
    drivers: Drivers

    @property
    def verdict(self) -> str:
        return self.metrics["verdict"]


def fair_cars(cars: pd.DataFrame, seen: set[str] | None, *, min_cars: int, min_failures: int,
              shaped: np.ndarray | None = None) -> dict:
    """Which evaluation cars the candidate and production can be compared on.

    Parameters
    ----------
    cars : pandas.DataFrame
        The candidate's evaluation cars (``KNR``, ``label_rod``), none of them seen in its training.
    seen : set of str or None
        The cars production was trained or validated on; ``None`` without a production model.
    min_cars, min_failures : int
        Fewest cars, and failures among them, a fair comparison needs.
    shaped : array of bool, optional
        Per car, whether an acted-on inspection list flagged it (its outcome shaped by the list):
        never compared.

    Returns
    -------
    dict
        ``mask`` (bool array over ``cars``: unseen by production, not shaped), ``cars`` and
        ``failures`` among them, ``seen`` (evaluation cars production was trained on), ``shaped``
        (evaluation cars left out as shaped), ``possible`` and ``why`` (a sentence when a comparison
        is not possible, else ``None``).
    """
    unseen = np.ones(len(cars), dtype=bool) if seen is None else ~cars["KNR"].astype(str).isin(seen).to_numpy()
    shaped = np.zeros(len(cars), dtype=bool) if shaped is None else np.asarray(shaped, dtype=bool)
    mask = unseen & ~shaped
    y = cars["label_rod"].to_numpy(dtype=int)[mask]
    out = {"mask": mask, "cars": int(mask.sum()), "failures": int(y.sum()), "seen": int((~unseen).sum()),
           "shaped": int((unseen & shaped).sum()), "possible": True, "why": None}
    if seen is not None and (out["cars"] < min_cars or out["failures"] < min_failures or out["failures"] == out["cars"]):
        out["possible"] = False
        listed = f" and {out['shaped']:,} were flagged on inspection lists that were acted on" if out["shaped"] else ""
        out["why"] = (f"of the {len(cars):,} evaluation cars, {out['seen']:,} were production's own training cars"
                      f"{listed}; the {out['cars']:,} left hold {out['failures']:,} road-test failures, fewer than the "
                      f"{min_cars:,} cars and {min_failures:,} failures a fair comparison needs")
    return out


def evaluate_run(run: Run) -> Evaluation:
    """Score the run's candidate and the production model on evaluation cars neither was trained on.

    Writes ``metrics.json`` and ``predictions.csv`` into the run's folder.
    """
    settings, lake = run.settings, run.lake
    candidate = load_model(run.folder.joinpath(CANDIDATE).read_bytes())
    table = run_features(run)
    split = time_split(labelled(table), eval_fraction=settings.eval_fraction)
    cars, listed = split.eval, run_shaped(run)
    shaped = cars["KNR"].isin(listed).to_numpy()
    facts = run_facts(run, cars)
    production = registry.production(lake)
    seen = None
    p_production = np.full(len(cars), np.nan)
    libraries = None
    if production is not None:
        model = load_model(registry.load_artifact(lake, production["version"]))
        libraries = library_differences(model.meta, name=f"Production model {production['version']}")
        seen = registry.training_cars(lake, production["version"], table=table)
        p_production = model.predict_proba(cars, facts)
    fair = fair_cars(cars, seen, min_cars=settings.min_compare_cars, min_failures=settings.min_compare_failures,
                     shaped=shaped)
    compared = fair["mask"] if fair["possible"] else ~shaped
    y_true = cars["label_rod"].to_numpy(dtype=int)[compared]
    p_candidate = candidate.predict_proba(cars, facts)
    probabilities = {"candidate": p_candidate[compared]}
    if production is not None and fair["possible"]:
        probabilities["production"] = p_production[compared]
    comparison = compare(y_true, probabilities["candidate"], probabilities.get("production"),
                         budgets=settings.budgets, rounds=settings.bootstrap_rounds, seed=settings.seed)
    metrics = {
        "run_id": run.run_id,
        "data_version": run.data_version,
        "eval_cars": int(len(cars)),
        "eval_positives": int(cars["label_rod"].sum()),
        "compared_cars": int(compared.sum()),
        "compared_positives": int(y_true.sum()),
        "fair_comparison": {"possible": fair["possible"], "why": fair["why"], "seen_by_production": fair["seen"]},
        "budgets": list(settings.budgets),
        "operating_budget": settings.operating_budget,
        "models": {
            "candidate": {"version": runrecord.read_manifest(run.runs, run.run_id)["candidate_version"],
                          "family": candidate.meta["family"], "family_choice": candidate.meta.get("family_choice"),
                          "stack": candidate.meta.get("stack"), "trained_on": candidate.meta["trained_on"],
                          "metrics": {**comparison["candidate"],  # the threshold from every car's risk, shaped or not
                                      "operating_threshold": threshold_at(
                                          p_candidate[compared | shaped], budget=settings.operating_budget)}},
            "production": None if production is None else {
                "version": production["version"], "family": production.get("family"),
                "data_version": production.get("data_version"), "trained_on": model.meta.get("trained_on"),
                "metrics": comparison["production"]},
        },
        "difference": comparison.get("difference"),
        "shaped_by_lists": {"training": int(split.train["KNR"].isin(listed).sum()), "evaluation": int(shaped.sum())},
        "libraries": libraries,
    }
    metrics["verdict"] = verdict(comparison, budget=settings.operating_budget, fair=metrics["fair_comparison"],
                                 production=production is not None)
    metrics["recommendation"] = recommendation(comparison, production=production is not None,
                                               fair=metrics["fair_comparison"])
    judged = cars[~shaped].reset_index(drop=True)
    explained = drivers(candidate, judged, facts, judged["label_rod"].to_numpy(dtype=int),
                        rounds=settings.bootstrap_rounds, seed=settings.seed)
    metrics["drivers"] = explained.to_dict()
    write_json(run.folder / METRICS, metrics)
    pd.DataFrame({"KNR": cars["KNR"].to_numpy(), "y_true": cars["label_rod"].to_numpy(dtype=int),
                  "p_candidate": p_candidate, "p_production": p_production,
                  "compared": compared}).to_csv(run.folder / PREDICTIONS, index=False)
    old = None
    if production is not None and catalog.has_features(lake, production["data_version"]):
        old = catalog.features(lake, production["data_version"])
    return Evaluation(cars["KNR"].to_numpy()[compared], y_true, probabilities, comparison, metrics,
                      data_changes(old, table), explained)


def data_changes(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Cars, labelled cars, label rate and periods: when production was trained, and now."""
    now = data_summary(new)
    if old is None:
        return pd.DataFrame({"now": now}).rename_axis("what")
    return pd.DataFrame({"when production was trained": data_summary(old), "now": now}).rename_axis("what")
