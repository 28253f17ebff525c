"""What changed in the data between two tables of cars: per-feature drift and the headline counts.

Pure: DataFrames in, DataFrames or dicts out. The Kolmogorov-Smirnov statistic is scipy's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from .errors import ModelError

#: Population stability index from which a shift is called moderate, and large.
PSI_MODERATE, PSI_LARGE = 0.1, 0.25


def _psi(old: np.ndarray, new: np.ndarray) -> float:
    """Population stability index over the old values' deciles (fewer bins where values repeat)."""
    edges = np.unique(np.quantile(old, np.linspace(0.1, 0.9, 9)))
    share_old = np.bincount(np.searchsorted(edges, old), minlength=edges.size + 1) / old.size
    share_new = np.bincount(np.searchsorted(edges, new), minlength=edges.size + 1) / new.size
    share_old, share_new = np.maximum(share_old, 1e-4), np.maximum(share_new, 1e-4)
    return float(np.sum((share_new - share_old) * np.log(share_new / share_old)))


def drift(old_table: pd.DataFrame, new_table: pd.DataFrame, *, features: Sequence[str]) -> pd.DataFrame:
    """How each feature's distribution moved between two tables of cars.

    Parameters
    ----------
    old_table, new_table : pandas.DataFrame
        Cars then (e.g. what production was trained on) and now.
    features : sequence of str
        The columns to compare.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``feature``, largest shift first: ``mean_old``, ``mean_new``, ``psi``
        (population stability index over the old deciles), ``ks`` (Kolmogorov-Smirnov statistic)
        and ``shift`` (``none`` below a PSI of 0.1, ``moderate`` below 0.25, else ``large``).
        Missing values are left out.

    Raises
    ------
    ModelError
        When a feature is missing from a table or has no value in it.
    """
    for name, table in (("old", old_table), ("new", new_table)):
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise ModelError(f"the {name} table has no column {', '.join(missing)}")
    rows = []
    for feature in features:
        old = pd.to_numeric(old_table[feature], errors="coerce").to_numpy(dtype=float)
        new = pd.to_numeric(new_table[feature], errors="coerce").to_numpy(dtype=float)
        old, new = old[np.isfinite(old)], new[np.isfinite(new)]
        if old.size == 0 or new.size == 0:
            raise ModelError(f"feature {feature} has no value in the {'old' if old.size == 0 else 'new'} table")
        psi = _psi(old, new)
        shift = "large" if psi >= PSI_LARGE else "moderate" if psi >= PSI_MODERATE else "none"
        rows.append({"feature": feature, "mean_old": float(old.mean()), "mean_new": float(new.mean()),
                     "psi": psi, "ks": float(ks_2samp(old, new).statistic), "shift": shift})
    columns = ["feature", "mean_old", "mean_new", "psi", "ks", "shift"]
    out = pd.DataFrame(rows, columns=columns).set_index("feature")
    return out.sort_values("psi", ascending=False, kind="stable")


def data_summary(table: pd.DataFrame) -> dict:
    """Cars, labelled cars, road-test failures, failure rate and production period of a table.

    Parameters
    ----------
    table : pandas.DataFrame
        A curated table (``label_rod``, ``label_known``, ``produced_at``).

    Returns
    -------
    dict
        ``cars``, ``labelled cars``, ``road-test failures`` (among the labelled cars),
        ``failure rate`` (their share, ``None`` without labelled cars), ``produced from`` and
        ``produced to`` (ISO timestamps, ``None`` without any production time).

    Raises
    ------
    ModelError
        When a column is missing.
    """
    missing = [c for c in ("label_rod", "label_known", "produced_at") if c not in table.columns]
    if missing:
        raise ModelError(f"the table has no column {', '.join(missing)}")
    known = table["label_known"].fillna(False).astype(bool).to_numpy()
    failures = int(table["label_rod"].to_numpy()[known].sum())
    produced = pd.to_datetime(table["produced_at"]).dropna()
    return {
        "cars": int(len(table)),
        "labelled cars": int(known.sum()),
        "road-test failures": failures,
        "failure rate": failures / int(known.sum()) if known.any() else None,
        "produced from": produced.min().isoformat() if len(produced) else None,
        "produced to": produced.max().isoformat() if len(produced) else None,
    }
