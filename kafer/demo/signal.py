"""Where the planted risk hides: the contract's counts, or the details issue 9 names.

Each placement gives every car a standardized score; the true probability is a logistic function
of their sum (:func:`kafer.demo.truth.p_true`). Which engine and colour, which tests, which repair
loop and shift, which defect texts and station carry the risk is drawn from the seed, among the
facts common enough to be learnable, so that nobody can tune a model to a fixed one. Everything is
known before the road test. The scores are worked out from the generator's own rows, independently
of :mod:`kafer.features` and :mod:`kafer.facts`.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from ..config import Settings
from . import plant

#: Where the risk can be planted; ``contract`` is the historical demo (counts and dwell times).
PLACEMENTS = ("contract", "configuration", "tests", "route", "defects")
#: A fact must be this common (share of cars) to be drawn as a carrier of risk.
_MIN_SHARE = {"configuration": 0.03, "tests": 0.02, "route": 0.03, "defects": 0.03}


def standardized(x: np.ndarray) -> np.ndarray:
    """``x`` minus its mean over its standard deviation; zeros when it does not vary."""
    x = np.asarray(x, dtype=float)
    return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)


def _draw(rng: np.random.Generator, names: list, shares: np.ndarray, k: int, minimum: float) -> list:
    """``k`` distinct names, drawn with probability proportional to their share, among the common ones
    (the most common ones when too few reach ``minimum``)."""
    shares = np.asarray(shares, dtype=float)
    common = np.nonzero(shares >= minimum)[0]
    if len(common) < k:
        common = np.argsort(-shares, kind="stable")[:k]
    common = common[shares[common] > 0]
    if len(common) == 0:
        return []
    pick = rng.choice(common, size=min(k, len(common)), replace=False, p=shares[common] / shares[common].sum())
    return [names[i] for i in pick]


def family_of_test(name: str) -> str:
    """A test's family: ``13xxxx`` for code 131200, the leading words for ``SECTION_ROL_00000003``.

    The plant's convention, written here again on purpose: the demo's truth never calls the feature
    code it checks (:func:`kafer.facts.family_of_test`).
    """
    if name.isdigit():
        return name[:2] + "x" * (len(name) - 2)
    words = []
    for part in name.split("_"):
        if part.isdigit():
            break
        words.append(part)
    return "_".join(words) or name


def configuration_score(rng, fleet, n: int) -> tuple[np.ndarray, dict]:
    """An engine × colour pair raises the risk, and one colour on its own."""
    motor, cor = np.asarray(fleet.motor), np.asarray(fleet.cor)
    pairs = pd.Series(list(zip(motor, cor))).value_counts(normalize=True)
    pairs = pairs[[m.strip() != "" for m, _ in pairs.index]]
    (pair,) = _draw(rng, list(pairs.index), pairs.to_numpy(), 1, _MIN_SHARE["configuration"])
    colours = pd.Series(cor).value_counts(normalize=True).drop(pair[1])
    (colour,) = _draw(rng, list(colours.index), colours.to_numpy(), 1, _MIN_SHARE["configuration"])
    score = 1.2 * ((motor == pair[0]) & (cor == pair[1])) + 0.6 * (cor == colour)
    return score, {"MOTOR x COR": [pair[0], pair[1]], "COR": colour}


def tests_score(rng, plan, results, n: int) -> tuple[np.ndarray, dict]:
    """NOKs of three tests and of one test family raise the risk."""
    nok = (results.status == 13) & ~plan.excluded[results.prow]
    names = np.asarray(plan.name, dtype=object)[results.prow[nok]]
    cars = results.car[nok]
    per_test = pd.crosstab(cars, names)
    per_test = per_test.reindex(range(n), fill_value=0)
    shares = (per_test > 0).mean().to_numpy()
    chosen = _draw(rng, list(per_test.columns), shares, 3, _MIN_SHARE["tests"])
    families = pd.Series([family_of_test(x) for x in per_test.columns], index=per_test.columns)
    per_family = per_test.T.groupby(families).sum().T
    (family,) = _draw(rng, list(per_family.columns), (per_family > 0).mean().to_numpy(), 1, _MIN_SHARE["tests"])
    weights = (1.0, 0.8, 0.6)[:len(chosen)]
    score = sum(w * (per_test[t].to_numpy() > 0) for w, t in zip(weights, chosen)) + 0.4 * per_family[family].to_numpy()
    return np.asarray(score, dtype=float), {"tests NOK": chosen, "test family NOK": family}


def _pre_road_events(line, settings: Settings) -> pd.DataFrame:
    events = pd.DataFrame({"car": line.car, "code": np.asarray(line.codes, dtype=object)[line.code], "t": line.t})
    road = events[events["code"] == settings.road_test_code].groupby("car")["t"].min()
    return events[events["t"] < events["car"].map(road).fillna(np.inf)]


def shift_of(seconds: np.ndarray, starts: tuple[int, ...]) -> np.ndarray:
    """Shift number (1 = the one starting at ``starts[0]``) of each moment, in seconds since 1970."""
    hour = (np.asarray(seconds, dtype=np.int64) // 3600) % 24
    position = np.searchsorted(np.asarray(starts), hour, side="right") - 1
    return np.where(position < 0, len(starts), position + 1)


def route_score(rng, line, n: int, settings: Settings) -> tuple[np.ndarray, dict]:
    """Looping back through two repair points, every loop, and one shift at one zone raise the risk."""
    events = _pre_road_events(line, settings)
    passes = events.groupby(["car", "code"]).size()
    repeated = passes[passes > 1].reset_index()
    per_code = pd.crosstab(repeated["car"], repeated["code"]).reindex(range(n), fill_value=0)
    shares = (per_code > 0).mean().to_numpy()
    chosen = _draw(rng, list(per_code.columns), shares, 2, _MIN_SHARE["route"])
    loops = (passes - 1).groupby(level="car").sum().reindex(range(n), fill_value=0).to_numpy()
    zone = str(rng.choice(list(settings.zones)))
    shift = int(rng.integers(1, len(settings.shift_start_hours) + 1))
    at_zone = events[events["code"].isin(settings.zones[zone])].groupby("car")["t"].min()
    shifts = pd.Series(shift_of(at_zone.to_numpy(), settings.shift_start_hours), index=at_zone.index)
    on_shift = (shifts.reindex(range(n)) == shift).to_numpy()
    weights = (1.0, 0.7)[:len(chosen)]
    score = (sum(w * (per_code[c].to_numpy() > 0) for w, c in zip(weights, chosen)) + 0.3 * loops
             + 0.5 * on_shift)
    return np.asarray(score, dtype=float), {"checkpoints passed twice": chosen, "shift at zone": [zone, shift]}


def defects_score(rng, found, n: int, settings: Settings) -> tuple[np.ndarray, dict]:
    """Two defect texts in their halls and one inspection station raise the risk."""
    texts, _ = plant.defect_texts()
    group_of = {hall: group for group, members in settings.hall_groups.items() for hall in members}
    group = np.array([group_of.get(h, "") for h in found.halls], dtype=object)[found.hall]
    rows = pd.DataFrame({"car": found.car, "group": group, "text": np.array([t.upper() for t in texts])[found.text],
                         "second": found.t_ms // 1000,
                         "station": np.asarray(plant.STATION_NAMES, dtype=object)[found.station]})
    distinct = rows[rows["group"] != ""].drop_duplicates(["car", "group", "text", "second"])
    per_text = pd.crosstab(distinct["car"], distinct["group"] + "|" + distinct["text"]).reindex(range(n), fill_value=0)
    chosen = _draw(rng, list(per_text.columns), (per_text > 0).mean().to_numpy(), 2, _MIN_SHARE["defects"])
    stations = pd.crosstab(distinct["car"], distinct["station"]).reindex(range(n), fill_value=0)
    (station,) = _draw(rng, list(stations.columns), (stations > 0).mean().to_numpy(), 1, _MIN_SHARE["defects"])
    weights = (1.0, 0.7)[:len(chosen)]
    score = sum(w * per_text[c].to_numpy() for w, c in zip(weights, chosen)) + 0.5 * stations[station].to_numpy()
    return np.asarray(score, dtype=float), {"defects": chosen, "station": station}


def planted(rng: np.random.Generator, placements: tuple[str, ...], *, contract: np.ndarray, fleet, line, plan,
            results, found, settings: Settings) -> tuple[np.ndarray, dict]:
    """The standardized risk score of every car, and which facts carry it.

    Parameters
    ----------
    placements : tuple of str
        Some of :data:`PLACEMENTS`; each adds its standardized score, the sum is standardized again.
    contract : numpy.ndarray
        The contract placement's score (:func:`kafer.demo.truth.contract_score`).
    fleet, line, plan, results, found
        The simulated cars, route (with repair loops), test plan, test results and defects
        (before the road test's).

    Returns
    -------
    score : numpy.ndarray
    carriers : dict
        Per placement, what carries its risk (names, codes, texts).
    """
    n = len(fleet.knr)
    parts, carriers = [], {}
    for placement in placements:
        if placement == "contract":
            score, what = contract, {"columns": "see kafer.demo.truth"}
        elif placement == "configuration":
            score, what = configuration_score(rng, fleet, n)
        elif placement == "tests":
            score, what = tests_score(rng, plan, results, n)
        elif placement == "route":
            score, what = route_score(rng, line, n, settings)
        else:
            score, what = defects_score(rng, found, n, settings)
        parts.append(standardized(score))
        carriers[placement] = what
    return standardized(np.sum(parts, axis=0)), carriers
