"""The retrain and compare steps: train a candidate, then score it and production on the same cars.

What the notebooks 03 and 04 call. Training reads the current curated table and writes the
candidate artifact into the run's folder; comparing writes ``metrics.json`` and
``predictions.csv`` there. Neither touches the registry: the pipeline registers the candidate
only after every step succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import runrecord
from .config import Settings
from .dataset import Split, labelled, time_split
from .features import feature_columns
from . import catalog
from .catalog import current_features
from .lake import Lake
from .drift import data_summary, drift
from .metrics import compare, threshold_at
from .narrative import verdict
from .model import Model, load_model, train


def data_version(lake: Lake) -> str:
    """The curated version the lake's pointer names."""
    return catalog.current_version(lake)


def split_summary(split: Split) -> pd.DataFrame:
    """Cars, failures and production period of the training and evaluation cars."""
    rows = []
    for name, part in (("train", split.train), ("evaluation", split.eval)):
        produced = pd.to_datetime(part["produced_at"])
        rows.append({"set": name, "cars": len(part), "failures": int(part["label_rod"].sum()),
                     "failure rate": f"{part['label_rod'].mean():.2%}",
                     "produced from": produced.min(), "produced to": produced.max()})
    return pd.DataFrame(rows)


def train_candidate(table: pd.DataFrame, *, family: str, settings: Settings) -> tuple[Model, Split]:
    """Fit the candidate on the training cars of the time-ordered split of the labelled cars."""
    split = time_split(labelled(table), eval_fraction=settings.eval_fraction)
    model = train(split.train, features=feature_columns(settings), family=family, seed=settings.seed)
    return model, split


def save_candidate(model: Model, *, runs: str, run_id: str, lake: Lake) -> pd.DataFrame:
    """Write the candidate artifact into the run folder; return what it is, for people."""
    out = runrecord.run_dir(runs, run_id)
    (out / runrecord.CANDIDATE).write_bytes(model.to_bytes())
    info = {"family": model.meta["family"], "data_version": data_version(lake), "features": len(model.features),
            "trained on cars": model.meta["trained_on"]["cars"],
            "failures among them": model.meta["trained_on"]["positives"]}
    runrecord.update_manifest(runs, run_id, data_version=info["data_version"])
    return pd.DataFrame({"fact": list(info), "value": [str(v) for v in info.values()]})


@dataclass(frozen=True)
class Evaluation:
    """Both models' scores on the same evaluation cars, and everything the report shows."""

    knr: np.ndarray
    y_true: np.ndarray
    probabilities: dict
    comparison: dict
    metrics: dict
    changes: pd.DataFrame
    drift: pd.DataFrame

    @property
    def verdict(self) -> str:
        return self.metrics["verdict"]


def evaluate_run(*, lake: Lake, runs: str, run_id: str, settings: Settings) -> Evaluation:
    """Score the run's candidate and the production model on the latest labelled cars.

    Writes ``metrics.json`` and ``predictions.csv`` into the run folder.
    """
    from . import registry

    folder = runrecord.run_dir(runs, run_id)
    candidate = load_model((folder / runrecord.CANDIDATE).read_bytes())
    table = current_features(lake)
    split = time_split(labelled(table), eval_fraction=settings.eval_fraction)
    cars = split.eval
    y_true = cars["label_rod"].to_numpy(dtype=int)
    probabilities = {"candidate": candidate.predict_proba(cars)}
    production = registry.production(lake)
    if production is not None:
        model = load_model(registry.load_artifact(lake, production["version"]))
        probabilities["production"] = model.predict_proba(cars)
    comparison = compare(y_true, probabilities["candidate"], probabilities.get("production"),
                         budgets=settings.budgets, rounds=settings.bootstrap_rounds, seed=settings.seed)
    words = verdict(comparison, budget=settings.operating_budget)
    metrics = {
        "run_id": run_id,
        "data_version": data_version(lake),
        "eval_cars": int(len(cars)),
        "eval_positives": int(y_true.sum()),
        "budgets": list(settings.budgets),
        "operating_budget": settings.operating_budget,
        "models": {
            "candidate": {"version": None, "family": candidate.meta["family"],
                          "metrics": {**comparison["candidate"],
                                      "operating_threshold": threshold_at(
                                          probabilities["candidate"], budget=settings.operating_budget)}},
            "production": None if production is None else {
                "version": production["version"], "family": production.get("family"),
                "metrics": comparison["production"]},
        },
        "difference": comparison.get("difference"),
        "verdict": words,
    }
    runrecord.write_json(folder / runrecord.METRICS, metrics)
    predictions = pd.DataFrame({"KNR": cars["KNR"].to_numpy(), "y_true": y_true,
                                "p_candidate": probabilities["candidate"],
                                "p_production": probabilities.get("production", np.full(len(cars), np.nan))})
    predictions.to_csv(folder / runrecord.PREDICTIONS, index=False)
    old = None
    if production is not None and production.get("data_version"):
        version = production["data_version"]
        old = catalog.features(lake, version) if catalog.has_features(lake, version) else None
    changes = data_changes(old, table)
    shift = drift(old, table, features=list(feature_columns(settings))) if old is not None else pd.DataFrame()
    return Evaluation(cars["KNR"].to_numpy(), y_true, probabilities, comparison, metrics, changes, shift)


def data_changes(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Cars, labelled cars, label rate and periods: when production was trained, and now."""
    now = data_summary(new)
    if old is None:
        return pd.DataFrame({"now": now}).rename_axis("what")
    return pd.DataFrame({"when production was trained": data_summary(old), "now": now}).rename_axis("what")

