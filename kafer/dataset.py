"""Which cars train a model and which evaluate it: only labelled cars, split by production time.

Pure: DataFrames in, DataFrames out. The evaluation cars are always the latest ones built, never
a random draw, so a model is judged the way it is used: on cars built after those it learned from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ModelError

#: Fewest labelled cars a split is made from.
MIN_LABELLED = 50


@dataclass(frozen=True)
class Split:
    """Training and evaluation cars; every evaluation car was built after every training car."""

    train: pd.DataFrame
    eval: pd.DataFrame


def _require(table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ModelError(f"the curated table has no column {', '.join(missing)}: rebuild it with `kafer ingest`")


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The cars whose label is known (their road test lies inside the period the falhas cover).

    Parameters
    ----------
    table : pandas.DataFrame
        The curated table, with a boolean ``label_known`` column.

    Returns
    -------
    pandas.DataFrame
        A copy holding only those cars, with a fresh index.

    Raises
    ------
    ModelError
        When the table has no ``label_known`` column.
    """
    _require(table, ("label_known",))
    return table.loc[table["label_known"].fillna(False).astype(bool)].reset_index(drop=True)


def production_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions of ``table`` in production order: by ``produced_at``, then ``KNR``."""
    order = pd.DataFrame({"produced": pd.to_datetime(table["produced_at"]).to_numpy(),
                          "knr": table["KNR"].astype(str).to_numpy()})
    return order.sort_values(["produced", "knr"], kind="stable").index.to_numpy()


def time_split(table: pd.DataFrame, *, eval_fraction: float) -> Split:
    """Split the labelled cars by production time: the latest ``eval_fraction`` evaluate.

    Cars are ordered by ``produced_at``, cars built in the same instant by ``KNR``; the last
    ``round(eval_fraction * n)`` of them (at least one) are the evaluation cars. Cars whose label
    is unknown are left out.

    Parameters
    ----------
    table : pandas.DataFrame
        The curated table (``KNR``, ``label_rod``, ``label_known``, ``produced_at``, features).
    eval_fraction : float
        Share of the labelled cars kept for evaluation, between 0 and 1.

    Returns
    -------
    Split
        Copies of the training and evaluation cars, each in production order with a fresh index.

    Raises
    ------
    ModelError
        When a column is missing, a car appears twice, a labelled car has no production time, there
        are fewer than :data:`MIN_LABELLED` labelled cars, or the training or the evaluation cars
        hold no road-test failure or no car without one.
    """
    if not 0 < eval_fraction < 1:
        raise ModelError(f"eval_fraction must lie between 0 and 1, not {eval_fraction}")
    _require(table, ("KNR", "label_rod", "label_known", "produced_at"))
    cars = labelled(table)
    twice = cars["KNR"][cars["KNR"].duplicated()].unique()
    if len(twice):
        raise ModelError(f"{len(twice)} car(s) appear more than once among the labelled cars (e.g. {twice[0]}): "
                         "the curated table must hold one row per KNR; rebuild it with `kafer ingest`")
    produced = pd.to_datetime(cars["produced_at"])
    if produced.isna().any():
        raise ModelError(f"{int(produced.isna().sum())} labelled car(s) have no production time (produced_at): "
                         "the curated table is inconsistent; rebuild it with `kafer ingest`")
    if len(cars) < MIN_LABELLED:
        raise ModelError(f"only {len(cars)} car(s) have a known label; at least {MIN_LABELLED} are needed to train "
                         "and evaluate: upload falhas covering the road tests of more cars")
    ordered = cars.iloc[production_order(cars)].reset_index(drop=True)
    n_eval = max(1, math.floor(eval_fraction * len(ordered) + 0.5))
    split = Split(train=ordered.iloc[:-n_eval].reset_index(drop=True),
                  eval=ordered.iloc[-n_eval:].reset_index(drop=True))
    for name, part in (("training", split.train), ("evaluation", split.eval)):
        failures = int(part["label_rod"].sum())
        if failures == 0 or failures == len(part):
            kind = "no road-test failure" if failures == 0 else "only road-test failures"
            raise ModelError(f"the {len(part)} {name} cars hold {kind}, so no model can be "
                             f"{'trained' if name == 'training' else 'judged'}: upload more months of data "
                             f"(now {len(cars)} labelled cars, {int(cars['label_rod'].sum())} failures)")
    return split
