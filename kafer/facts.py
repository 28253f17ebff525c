"""Per-car facts beyond the contract, and the columns a model makes of them.

The curated table has one row per car and fixed columns. What a plant engineer looks at is open
ended: which test was NOK, which defect text in which hall, at which station, which checkpoint a
car passed twice, its engine and colour. Those are kept long, one row per (car, fact)::

    KNR           kind                 key                                  value
    2024-1510001  config               MOTOR=CWL                            1
    2024-1510001  nok_test             131200                               2
    2024-1510001  nok_test_family      13xxxx                               2
    2024-1510001  repeated_checkpoint  M594                                 2   (passages)
    2024-1510001  defect               ZP7|PAINEL LATERAL 01. AMASSADO      1
    2024-1510001  station              PCEQS702                             1

Only facts known before the road test are built (the leakage rules of DATA.md): rows timestamped
before the car's road test, and of those falhas of the halls before it and resultados without the
post-road sections; status events before the first road-test checkpoint. The label never becomes
a fact. A car has a row only for what it has, so the table stays small: NOK rows are ~0.6 % of
resultados, and every other kind is a few rows a car.

:class:`FactColumns` chooses, on training cars only, which facts become model columns (those that
enough training cars have) and pivots them identically for any cars later: a car lacking a fact
gets 0, a configuration category not kept counts as ``other``, a car without a pre-road defect
row has no known configuration (missing).

Pure: Arrow tables of normalized rows in, Arrow tables and DataFrames out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import Settings
from .errors import ModelError
from .features import NOK, before_road_test, pre_road_events, road_tests
from .readers import COLUMNS, schema

#: The table's schema: one row per (car, kind, key).
FACT_SCHEMA = pa.schema([("KNR", pa.string()), ("kind", pa.string()), ("key", pa.string()), ("value", pa.float64())])
#: Kinds of fact, and the feature family each belongs to.
KINDS: Mapping[str, str] = {"config": "configuration", "nok_test": "tests", "nok_test_family": "tests",
                            "repeated_checkpoint": "route", "defect": "defects", "station": "defects"}
#: The configuration attributes, from the car's pre-road falhas rows.
CONFIG_ATTRIBUTES = ("MODELO", "COR", "MOTOR")
#: What a configuration category not kept in training is called.
OTHER = "other"
#: Most categories kept per configuration attribute: the boosting model takes at most 255 codes a
#: category input (its bins), and ``other`` takes one.
MAX_CATEGORIES = 254


def empty_facts() -> pa.Table:
    """A facts table without rows."""
    return FACT_SCHEMA.empty_table()


def family_of_test(name: str) -> str:
    """The family of a test NAME: ``13xxxx`` for the code ``131200`` (its first two digits), the parts
    before the first all-digit part for a named test (``SECTION_ROL_00000003`` → ``SECTION_ROL``,
    ``UPSECOS_ALS_00000025`` → ``UPSECOS_ALS``, ``CRIPPLE_0015_0000001`` → ``CRIPPLE``).

    The plant numbers its screw-tightening codes by assembly area, so two digits group them by area
    (about 40 groups); named tests carry their family before their number.
    """
    if name.isdigit():
        return name[:2] + "x" * (len(name) - 2)
    words = []
    for part in name.split("_"):
        if part.isdigit():
            break
        words.append(part)
    return "_".join(words) or name


def normalized_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Defect texts as one spelling: upper case, stray ``¨`` dropped, runs of spaces made one."""
    text = pc.utf8_upper(pc.fill_null(values, ""))
    text = pc.replace_substring(text, "¨", "")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))


def build_facts(resultados: pa.Table | None, falhas: pa.Table | None, status: pa.Table | None, *,
                settings: Settings) -> pa.Table:
    """Every pre-road fact of every car in the tables (see the module's docstring).

    Parameters
    ----------
    resultados, falhas, status : pyarrow.Table or None
        All normalized rows of the cars to build, as for :func:`kafer.features.build_features`.
    settings : Settings
        Hall groups, zones, the road-test code and the post-road sections.

    Returns
    -------
    pyarrow.Table
        :data:`FACT_SCHEMA`, sorted by KNR, kind and key.
    """
    status = _or_empty(status, "status")
    road = road_tests(status, settings)
    parts = [_test_facts(before_road_test(_or_empty(resultados, "resultados"), road), settings),
             *_falhas_facts(before_road_test(_or_empty(falhas, "falhas"), road), settings),
             _route_facts(status, settings)]
    table = pa.concat_tables([p.cast(FACT_SCHEMA) for p in parts])
    return table.sort_by([("KNR", "ascending"), ("kind", "ascending"), ("key", "ascending")])


def _or_empty(table: pa.Table | None, kind: str) -> pa.Table:
    return schema(kind).empty_table() if table is None else table.select(list(COLUMNS[kind]))


def _facts(knr, kind: str, key, value) -> pa.Table:
    knr = pa.array(knr, pa.string()) if not isinstance(knr, (pa.Array, pa.ChunkedArray)) else knr
    return pa.table({"KNR": knr, "kind": pa.array([kind] * len(knr), pa.string()),
                     "key": key if isinstance(key, (pa.Array, pa.ChunkedArray)) else pa.array(key, pa.string()),
                     "value": pa.array(np.asarray(value, dtype=float))})


def _test_facts(resultados: pa.Table, settings: Settings) -> pa.Table:
    """Distinct NOK rows per car and test NAME, and per test family (post-road sections left out)."""
    nok = resultados.filter(pc.equal(resultados["STATUS"], NOK))
    for prefix in settings.post_road_sections:
        nok = nok.filter(pc.invert(pc.fill_null(pc.starts_with(nok["NAME"], prefix), False)))
    if nok.num_rows == 0:
        return empty_facts()
    distinct = nok.group_by(list(COLUMNS["resultados"]), use_threads=False).aggregate([])
    per_test = distinct.group_by(["KNR", "NAME"], use_threads=False).aggregate([([], "count_all")]).to_pandas()
    per_test["family"] = per_test["NAME"].map(family_of_test)
    per_family = per_test.groupby(["KNR", "family"], as_index=False)["count_all"].sum()
    return pa.concat_tables([
        _facts(per_test["KNR"], "nok_test", per_test["NAME"], per_test["count_all"]),
        _facts(per_family["KNR"], "nok_test_family", per_family["family"], per_family["count_all"]),
    ])


def _falhas_facts(falhas: pa.Table, settings: Settings) -> list[pa.Table]:
    """Configuration, defects per (hall group, text) and per station, from pre-road halls only."""
    group_of = {hall: group for group, members in settings.hall_groups.items() for hall in members}
    pre = falhas.filter(pc.is_in(falhas["HALLE"], pa.array(list(group_of), pa.string())))
    if pre.num_rows == 0:
        return [empty_facts()]
    rows = pa.table({"KNR": pre["KNR"], "HALLE": pre["HALLE"], "FALHA": pc.utf8_upper(pre["FALHA"]),
                     "DATA": pre["DATA"], "ESTACAO": pc.fill_null(pre["ESTACAO"], "")})
    defects = rows.group_by(["KNR", "HALLE", "FALHA", "DATA"], use_threads=False).aggregate(
        [("ESTACAO", "min")]).to_pandas()
    defects["text"] = normalized_text(pa.array(defects["FALHA"], pa.string())).to_pandas()
    defects["what"] = defects["HALLE"].map(group_of) + "|" + defects["text"]
    texts = defects.groupby(["KNR", "what"], as_index=False).size()
    stations = defects[defects["ESTACAO_min"] != ""].groupby(["KNR", "ESTACAO_min"], as_index=False).size()
    out = [_facts(texts["KNR"], "defect", texts["what"], texts["size"]),
           _facts(stations["KNR"], "station", stations["ESTACAO_min"], stations["size"])]
    for attribute in CONFIG_ATTRIBUTES:
        values = pd.DataFrame({"KNR": pre["KNR"].to_pandas(),
                               "value": pc.utf8_trim_whitespace(pc.fill_null(pre[attribute], "")).to_pandas()})
        counts = values.groupby(["KNR", "value"], as_index=False).size()
        mode = counts.sort_values(["KNR", "size", "value"], ascending=[True, False, True]).drop_duplicates("KNR")
        out.append(_facts(mode["KNR"], "config", attribute + "=" + mode["value"], np.ones(len(mode))))
    return out


def _route_facts(status: pa.Table, settings: Settings) -> pa.Table:
    """Checkpoints passed more than once before the road test, with the number of passages."""
    events = pre_road_events(status, settings)
    if events.empty:
        return empty_facts()
    passes = events.groupby(["KNR", "STATUS"], as_index=False).size()
    repeated = passes[passes["size"] > 1]
    return _facts(repeated["KNR"], "repeated_checkpoint", repeated["STATUS"], repeated["size"])


def facts_of(facts: pa.Table, cars: Iterable[str]) -> pa.Table:
    """The facts of ``cars`` only."""
    return facts.filter(pc.is_in(facts["KNR"], pa.array(list(cars), pa.string())))


def column_name(kind: str, key: str) -> str:
    """The model column of a fact: ``nok_test:131200``, ``config:MOTOR``."""
    return f"{kind}:{key}"


@dataclass(frozen=True)
class FactColumns:
    """Which facts a model uses as columns, chosen on its training cars.

    Attributes
    ----------
    counts : tuple of (kind, key)
        Facts pivoted into a count column each (0 for a car without the fact).
    categories : dict
        Per configuration attribute, the categories kept, most common first; a car with another
        one is ``other``, a car without pre-road falhas rows has no value (missing).
    """

    counts: tuple[tuple[str, str], ...] = ()
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(cls, facts: pa.Table, cars: Sequence[str], *, min_cars: int, max_columns: int) -> "FactColumns":
        """Keep the facts at least ``min_cars`` of ``cars`` (the training cars) have, at most
        ``max_columns`` of each kind (and categories of each attribute, never more than
        :data:`MAX_CATEGORIES`), the most common first."""
        own = facts_of(facts, cars)
        if own.num_rows == 0:
            return cls()
        seen = own.group_by(["kind", "key"], use_threads=False).aggregate([("KNR", "count_distinct")]).to_pandas()
        seen = seen[seen["KNR_count_distinct"] >= min_cars]
        seen = seen.sort_values(["kind", "KNR_count_distinct", "key"], ascending=[True, False, True])
        counts: list[tuple[str, str]] = []
        for kind in KINDS:
            if kind == "config":
                continue
            keys = seen.loc[seen["kind"] == kind, "key"].head(max_columns)
            counts += [(kind, key) for key in keys]
        config = seen[seen["kind"] == "config"]
        attribute = config["key"].str.split("=", n=1).str[0]
        kept = min(max_columns, MAX_CATEGORIES)
        categories = {a: tuple(config.loc[attribute == a, "key"].str.split("=", n=1).str[1].head(kept))
                      for a in CONFIG_ATTRIBUTES if (attribute == a).any()}
        return cls(counts=tuple(counts), categories=categories)

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names: the counts', then one per configuration attribute."""
        return (tuple(column_name(k, key) for k, key in self.counts)
                + tuple(column_name("config", a) for a in self.categories))

    @property
    def categorical(self) -> tuple[str, ...]:
        """The configuration columns (integer codes: a kept category's position, ``other`` after them)."""
        return tuple(column_name("config", a) for a in self.categories)

    def levels(self, column: str) -> tuple[str, ...]:
        """What each code of a configuration column means: its categories, then ``other``."""
        return self.categories[column.split(":", 1)[1]] + (OTHER,)

    def family(self, column: str) -> str:
        """The feature family of one of :attr:`columns`."""
        return KINDS[column.split(":", 1)[0]]

    def frame(self, knr: Sequence[str], facts: pa.Table) -> pd.DataFrame:
        """The columns for the cars ``knr``, in that order (index 0..n-1).

        Raises
        ------
        ModelError
            When ``facts`` is not a facts table.
        """
        if not isinstance(facts, pa.Table) or not set(FACT_SCHEMA.names) <= set(facts.column_names):
            raise ModelError("facts must be a table of KNR, kind, key, value (kafer.facts.build_facts): "
                             "build them with the same code as the curated table")
        knr = pd.Index(pd.Series(knr, dtype=object).astype(str))
        own = facts_of(facts.select(FACT_SCHEMA.names), knr).to_pandas()
        counts = list(self.columns[:len(self.counts)])
        name = own["kind"] + ":" + own["key"]
        kept = own[name.isin(counts)].assign(name=name)
        out = pd.DataFrame(0.0, index=knr, columns=counts)
        if not kept.empty:
            out = (kept.pivot_table(index="KNR", columns="name", values="value", aggfunc="sum")
                   .reindex(index=knr, columns=counts).fillna(0.0).astype("float64"))
            out.columns.name = None
        config = own[own["kind"] == "config"]
        attribute, value = config["key"].str.split("=", n=1).str[0], config["key"].str.split("=", n=1).str[1]
        for a, kept in self.categories.items():
            code = {c: float(i) for i, c in enumerate(kept)}
            of_a = pd.Series(value[attribute == a].map(lambda v: code.get(v, float(len(kept)))).to_numpy(),
                             index=config.loc[attribute == a, "KNR"].to_numpy())
            out[column_name("config", a)] = of_a[~of_a.index.duplicated()].reindex(knr).to_numpy(dtype=float)
        return out.reset_index(drop=True)

    def to_dict(self) -> dict:
        """JSON-ready, for the model artifact."""
        return {"counts": [list(c) for c in self.counts], "categories": {a: list(c) for a, c in self.categories.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "FactColumns":
        """The columns saved by :meth:`to_dict`."""
        return cls(counts=tuple((str(k), str(key)) for k, key in data.get("counts", [])),
                   categories={str(a): tuple(c) for a, c in data.get("categories", {}).items()})
