"""What changed in a model's inputs between two sets of cars, per input and per feature family.

Pure: tables of cars and their facts in, DataFrames and words out. Each input is tested for a
change of its distribution (numbers: Kolmogorov-Smirnov; a fact: the share of cars that have it,
a two-sided test of two proportions; a configuration attribute: chi-square over its categories),
and the p-values of every input looked at are adjusted together (Holm), so that looking at
hundreds of inputs does not find movement by chance. An input *moved* when its adjusted p-value
is at most ``alpha`` and its population stability index (PSI) says the shift is not negligible
(at least :data:`PSI_MODERATE`): with tens of thousands of cars a trifle is significant.
Categories the new cars have and no old car had (an engine, a colour, a test NOK, a station) are
named apart: a model scores them as ``other`` or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import chi2_contingency, ks_2samp, norm

from .errors import ModelError
from .facts import KINDS, column_name, facts_of
from .features import family_of
from .i18n import ntr, number, percent, tr
from .metrics import holm
from .narrative import FAMILY_WORDS, column_words, condition_words, input_words

#: Population stability index from which a shift is called moderate, and large.
PSI_MODERATE, PSI_LARGE = 0.1, 0.25


def _psi(old: np.ndarray, new: np.ndarray) -> float:
    """Population stability index over the old values' deciles (fewer bins where values repeat)."""
    edges = np.unique(np.quantile(old, np.linspace(0.1, 0.9, 9)))
    share_old = np.bincount(np.searchsorted(edges, old), minlength=edges.size + 1) / old.size
    share_new = np.bincount(np.searchsorted(edges, new), minlength=edges.size + 1) / new.size
    return _shares_psi(share_old, share_new)


#: Fact kinds whose keys are things of the plant (an engine, a colour, a test, a station): one never
#: seen among the old cars is named as new.
NEW_KINDS = ("config", "nok_test", "station")
_INPUTS = ["family", "what", "then", "now", "psi", "p_value", "p_adjusted", "moved"]


@dataclass(frozen=True)
class InputDrift:
    """What moved in a model's inputs between its old cars (those it learned from) and new ones.

    Attributes
    ----------
    inputs : pandas.DataFrame
        Indexed by input (the model's name for it), most moved first: ``family``, ``what`` (in
        words), ``then`` and ``now`` (a number's mean, a fact's share of cars, an attribute's most
        common category and its share), ``psi``, ``p_value``, ``p_adjusted`` (Holm, over every
        input) and ``moved``.
    families : pandas.DataFrame
        Indexed by feature family: ``inputs`` looked at, ``moved``, and ``most`` (the most moved
        input of the family in words, empty when none moved).
    new_categories : pandas.DataFrame
        ``kind``, ``key``, ``what`` (in words) and ``cars`` (new cars that have it), most common first.
    old_cars, new_cars : int
    alpha : float
    """

    inputs: pd.DataFrame
    families: pd.DataFrame
    new_categories: pd.DataFrame
    old_cars: int
    new_cars: int
    alpha: float

    @property
    def summary(self) -> str:
        """What moved, in a sentence or two."""
        looked = dict(old=number(self.old_cars), new=number(self.new_cars), inputs=number(len(self.inputs)),
                      alpha=percent(self.alpha, 0), psi=number(PSI_MODERATE, 1))
        moved = self.inputs[self.inputs["moved"]]
        if moved.empty:
            text = tr("Between the {old} cars the model learned from and the {new} cars scored since, {inputs} inputs "
                      "were compared; none moved clearly (adjusted for the number of inputs compared, at {alpha}, "
                      "with a PSI of at least {psi}).", **looked)
        else:
            per_family = "; ".join(f"{tr(FAMILY_WORDS[family]) if family in FAMILY_WORDS else family}: "
                                   f"{', '.join(group['what'].head(3))}" + ("…" if len(group) > 3 else "")
                                   for family, group in moved.groupby("family", sort=False))
            text = ntr("Between the {old} cars the model learned from and the {new} cars scored since, {inputs} inputs "
                       "were compared; {count} moved clearly (adjusted for the number of inputs compared, at {alpha}, "
                       "with a PSI of at least {psi}): {families}.",
                       "Between the {old} cars the model learned from and the {new} cars scored since, {inputs} inputs "
                       "were compared; {count} moved clearly (adjusted for the number of inputs compared, at {alpha}, "
                       "with a PSI of at least {psi}): {families}.", len(moved), families=per_family, **looked)
        if len(self.new_categories):
            named = ", ".join(tr("{what} ({cars} cars)", what=r.what, cars=number(r.cars))
                              for r in self.new_categories.head(8).itertuples())
            more = (tr(" and {more} more", more=number(len(self.new_categories) - 8))
                    if len(self.new_categories) > 8 else "")
            text += " " + tr("Never seen among the cars it learned from: {named}{more}.", named=named, more=more)
        return text

    def to_dict(self) -> dict:
        """JSON-ready."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                    for row in frame.reset_index().to_dict("records")]

        return {"old_cars": self.old_cars, "new_cars": self.new_cars, "alpha": self.alpha, "summary": self.summary,
                "families": records(self.families), "inputs": records(self.inputs),
                "new_categories": records(self.new_categories)}


def input_drift(old: pd.DataFrame, new: pd.DataFrame, *, columns: Sequence[str], old_facts: pa.Table | None = None,
                new_facts: pa.Table | None = None, facts: Sequence[tuple[str, str]] = (),
                attributes: Sequence[str] = (), alpha: float = 0.05, min_new_cars: int = 20) -> InputDrift:
    """How each input moved between the old cars and the new ones, per family, with new categories named.

    Parameters
    ----------
    old, new : pandas.DataFrame
        Cars then (a model's training cars) and now (the cars it scored since): ``KNR`` and ``columns``.
    columns : sequence of str
        Numeric columns of the curated table compared.
    old_facts, new_facts : pyarrow.Table, optional
        Facts (:mod:`kafer.facts`) of at least those cars; needed for ``facts``, ``attributes`` and
        the new categories.
    facts : sequence of (kind, key)
        Facts compared by the share of cars that have them (e.g. a model's fact columns).
    attributes : sequence of str
        Configuration attributes (``MODELO``, ``COR``, ``MOTOR``) compared by their categories.
    alpha : float
        Chance of calling any unchanged input moved.
    min_new_cars : int
        Fewest new cars a new category needs to be named.

    Returns
    -------
    InputDrift

    Raises
    ------
    ModelError
        When a column is missing, either set of cars is empty, or facts are needed and not given.
    """
    if len(old) == 0 or len(new) == 0:
        raise ModelError(f"drift needs cars on both sides, not {len(old)} old and {len(new)} new cars")
    for name, table in (("old", old), ("new", new)):
        missing = [c for c in ["KNR", *columns] if c not in table.columns]
        if missing:
            raise ModelError(f"the {name} cars have no column {', '.join(missing)}")
    if (facts or attributes) and (old_facts is None or new_facts is None):
        raise ModelError("comparing facts or configuration needs the facts of both sets of cars")
    rows = [_number_row(column, old[column], new[column]) for column in columns]
    new_categories = pd.DataFrame(columns=["kind", "key", "what", "cars"])
    if old_facts is not None and new_facts is not None:
        old_own, new_own = facts_of(old_facts, old["KNR"].astype(str)), facts_of(new_facts, new["KNR"].astype(str))
        rows += _share_rows(facts, old_own, new_own, len(old), len(new))
        configured_old, configured_new = _configuration(old_own), _configuration(new_own)
        rows += [_category_row(a, _categories(configured_old, old["KNR"], a), _categories(configured_new, new["KNR"], a))
                 for a in attributes]
        new_categories = _new_categories(old_own, new_own, min_cars=min_new_cars)
    table = pd.DataFrame(rows, columns=["input", *_INPUTS[:-2]]).set_index("input")
    table["p_adjusted"] = holm(table["p_value"].fillna(1.0).to_numpy()) if len(table) else []
    table["moved"] = (table["p_adjusted"] <= alpha) & (table["psi"] >= PSI_MODERATE)
    table = table.sort_values(["moved", "psi"], ascending=False, kind="stable")
    families = pd.DataFrame([{"family": family, "inputs": len(group), "moved": int(group["moved"].sum()),
                              "most": group["what"].iloc[0] if group["moved"].iloc[0] else ""}
                             for family, group in table.groupby("family", sort=False)],
                            columns=["family", "inputs", "moved", "most"]).set_index("family")
    families = families.sort_values(["moved", "inputs"], ascending=False, kind="stable")
    return InputDrift(table, families, new_categories, int(len(old)), int(len(new)), float(alpha))


def _number_row(column: str, old: pd.Series, new: pd.Series) -> dict:
    before = pd.to_numeric(old, errors="coerce").to_numpy(dtype=float)
    after = pd.to_numeric(new, errors="coerce").to_numpy(dtype=float)
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    known = before.size and after.size
    return {"input": column, "family": family_of(column), "what": column_words(column),
            "then": float(before.mean()) if before.size else np.nan, "now": float(after.mean()) if after.size else np.nan,
            "psi": _psi(before, after) if known else np.nan,
            "p_value": float(ks_2samp(before, after).pvalue) if known else np.nan}


def _share_rows(facts: Sequence[tuple[str, str]], old: pa.Table, new: pa.Table, n_old: int, n_new: int) -> list[dict]:
    """One row per fact: the share of old and new cars that have it, tested as two proportions."""
    if not facts:
        return []
    have_old, have_new = _cars_with(old), _cars_with(new)
    rows = []
    for kind, key in facts:
        a, b = have_old.get((kind, key), 0) / n_old, have_new.get((kind, key), 0) / n_new
        pooled = (a * n_old + b * n_new) / (n_old + n_new)
        spread = np.sqrt(pooled * (1 - pooled) * (1 / n_old + 1 / n_new))
        p = 1.0 if spread == 0 else float(2 * norm.sf(abs(a - b) / spread))
        rows.append({"input": column_name(kind, key), "family": KINDS[kind],
                     "what": condition_words(column_name(kind, key)), "then": a, "now": b,
                     "psi": _shares_psi(np.array([a, 1 - a]), np.array([b, 1 - b])), "p_value": p})
    return rows


def _cars_with(facts: pa.Table) -> dict[tuple[str, str], int]:
    counted = facts.group_by(["kind", "key"], use_threads=False).aggregate([("KNR", "count_distinct")]).to_pandas()
    return dict(zip(zip(counted["kind"], counted["key"]), counted["KNR_count_distinct"]))


def _configuration(facts: pa.Table) -> pd.DataFrame:
    """The configuration facts as ``KNR``, ``attribute``, ``value`` (``MOTOR=CWL`` → ``MOTOR``, ``CWL``)."""
    config = facts.filter(pc.equal(facts["kind"], "config"))
    parts = pc.split_pattern(config["key"], "=", max_splits=1)
    return pd.DataFrame({"KNR": config["KNR"].to_numpy(zero_copy_only=False),
                         "attribute": pc.list_element(parts, 0).to_numpy(zero_copy_only=False),
                         "value": pc.list_element(parts, 1).to_numpy(zero_copy_only=False)})


def _categories(configuration: pd.DataFrame, cars: pd.Series, attribute: str) -> pd.Series:
    """Each car's category of a configuration attribute (``(none)`` without pre-road falhas rows)."""
    own = configuration[configuration["attribute"] == attribute].drop_duplicates("KNR")
    return pd.Series(own["value"].to_numpy(), index=own["KNR"].to_numpy()).reindex(
        cars.astype(str).to_numpy()).fillna("(none)")


def _category_row(attribute: str, old: pd.Series, new: pd.Series) -> dict:
    counts = pd.DataFrame({"old": old.value_counts(), "new": new.value_counts()}).fillna(0)
    share_old, share_new = counts["old"] / counts["old"].sum(), counts["new"] / counts["new"].sum()
    top_old, top_new = share_old.idxmax(), share_new.idxmax()
    p = float(chi2_contingency(counts.T.to_numpy()).pvalue) if len(counts) > 1 else 1.0
    return {"input": column_name("config", attribute), "family": "configuration",
            "what": column_words(column_name("config", attribute)),
            "then": f"{top_old} {percent(share_old[top_old], 0)}", "now": f"{top_new} {percent(share_new[top_new], 0)}",
            "psi": _shares_psi(share_old.to_numpy(), share_new.to_numpy()), "p_value": p}


def _new_categories(old: pa.Table, new: pa.Table, *, min_cars: int) -> pd.DataFrame:
    seen = set(_cars_with(old))
    rows = [{"kind": kind, "key": key, "cars": int(cars)} for (kind, key), cars in _cars_with(new).items()
            if kind in NEW_KINDS and (kind, key) not in seen and cars >= min_cars]
    out = pd.DataFrame(rows, columns=["kind", "key", "cars"])
    out["what"] = [_category_words(kind, key) for kind, key in zip(out["kind"], out["key"])]
    return out.sort_values(["cars", "kind", "key"], ascending=[False, True, True], ignore_index=True)[
        ["kind", "key", "what", "cars"]]


def _category_words(kind: str, key: str) -> str:
    if kind == "config":
        attribute, _, value = key.partition("=")
        return input_words(column_name("config", attribute), category=value)
    return condition_words(column_name(kind, key))


def _shares_psi(old: np.ndarray, new: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares floored at 1e-4)."""
    old, new = np.maximum(old, 1e-4), np.maximum(new, 1e-4)
    return float(np.sum((new - old) * np.log(new / old)))


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
