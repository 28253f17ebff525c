"""Score cars with the production model: the ranked inspection list.

An upload is read and checked exactly as for ingest, but not added to the lake; its cars get the
same features as in training and the model kept in production scores them.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from .config import Settings
from .errors import RegistryError
from .features import build_features
from .ingest import read_upload
from .lake import Lake
from .readers import COLUMNS, Progress


def upload_features(paths: Iterable[str], *, settings: Settings, progress: Progress | None = None) -> pd.DataFrame:
    """The per-car table of an upload on its own (nothing is written to the lake)."""
    received = read_upload(paths, settings=settings, progress=progress)
    exports = [r.export for r in received if r.export is not None]
    tables = {kind: [e.table for e in exports if e.kind == kind] for kind in COLUMNS}
    merged = {kind: pa.concat_tables(parts) if parts else None for kind, parts in tables.items()}
    return build_features(merged["resultados"], merged["falhas"], merged["status"], settings=settings)


def production_model(lake: Lake):
    """The production model and its registry metadata.

    Raises
    ------
    RegistryError
        When no model was ever kept in production.
    """
    from . import registry
    from .model import load_model

    meta = registry.production(lake)
    if meta is None:
        raise RegistryError(f"the lake {lake.url} has no production model yet: retrain, then keep a "
                            "candidate with `kafer decide RUN keep-new --by NAME --why TEXT`")
    return load_model(registry.load_artifact(lake, meta["version"])), meta


def rank(table: pd.DataFrame, probability: np.ndarray, *, budget: float, threshold: float | None) -> pd.DataFrame:
    """KNR, probability, rank (1 = riskiest) and whether the car falls in the inspection budget.

    With the production model's operating threshold (the score above which its riskiest
    ``budget`` share of evaluation cars lay), a car is in the budget when it reaches that
    threshold, so the answer does not depend on how many cars are scored together; without
    one, the riskiest ``ceil(budget * n)`` cars of this list are.
    """
    out = pd.DataFrame({"KNR": table["KNR"].to_numpy(), "probability": np.asarray(probability, dtype=float)})
    out = out.sort_values(["probability", "KNR"], ascending=[False, True], ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    if threshold is None:
        out["in_budget"] = out["rank"] <= math.ceil(budget * len(out))
    else:
        out["in_budget"] = out["probability"] >= threshold
    return out


def predict_upload(paths: Iterable[str], *, settings: Settings, progress: Progress | None = None) -> pd.DataFrame:
    """Score every car of an upload with the production model of the settings' lake, riskiest first."""
    model, meta = production_model(Lake(settings.lake))
    table = upload_features(paths, settings=settings, progress=progress)
    threshold = (meta.get("metrics") or {}).get("operating_threshold")
    scored = rank(table, model.predict_proba(table), budget=settings.operating_budget, threshold=threshold)
    scored.insert(1, "model_version", meta["version"])
    return scored


def save_ranking(ranked: pd.DataFrame, out: str) -> str:
    """Write the ranked list to ``out`` (CSV) when a path is given; say what was written."""
    flagged = int(ranked["in_budget"].sum())
    text = f"{len(ranked):,} cars scored; {flagged:,} fall in the inspection budget."
    if not out:
        return text
    ranked.to_csv(out, index=False)
    return f"{text} Written to {out}."
