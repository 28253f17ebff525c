"""The truth behind a demo upload: each car's true probability and its contract values.

Worked out from the generator's own clean rows, independently of :mod:`kafer.features`, so the
tests can check the curated table against it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from ..config import Settings

_POSITIVE_SHARE = 0.07
#: Spread of the planted logit at ``signal=1``: the true probabilities reach a ROC-AUC of about 0.75.
_SIGNAL_SCALE = 0.9
#: Pre-road features behind the label, with their weights (each log1p-transformed and standardized).
_SIGNAL = {"n_nok_id2": 0.5, "n_nok_id718": 0.3, "n_nok_id1": 0.1, "n_falhas_ZP7": 0.35, "n_falhas_ZP5": 0.2,
           "n_falhas_ZP6": 0.2, "dwell_min_ZP6": 0.3, "dwell_min_ZP5A": -0.2, "dwell_min_CAB": 0.15}


def result_counts(results: SimpleNamespace, plan: SimpleNamespace, n: int) -> pd.DataFrame:
    """Resultados rows per ID and NOK rows per ID, post-road sections left out (rows are distinct)."""
    out = {}
    counted = ~plan.excluded[results.prow]
    for result_id in (1, 2, 718):
        of_id = counted & (plan.id[results.prow] == result_id)
        out[f"n_results_id{result_id}"] = np.bincount(results.car[of_id], minlength=n)
        out[f"n_nok_id{result_id}"] = np.bincount(results.car[of_id & (results.status == 13)], minlength=n)
    return pd.DataFrame(out)


def falhas_counts(defects: SimpleNamespace, n: int, settings: Settings,
                  road_t: np.ndarray | None = None) -> pd.DataFrame:
    """Distinct defects per hall group: one per (car, hall, text, second), before the car's road test
    (``road_t``, seconds, NaN for a car without one) when given."""
    second = defects.t_ms // 1000
    if road_t is not None:
        limit = np.asarray(road_t, dtype=float)[defects.car]
        keep = np.isnan(limit) | (second < limit)
        defects = SimpleNamespace(car=defects.car[keep], hall=defects.hall[keep], text=defects.text[keep],
                                  halls=defects.halls)
        second = second[keep]
    key = np.unique(np.stack([defects.car, defects.hall, defects.text, second]), axis=1)
    out = {}
    for group, members in settings.hall_groups.items():
        of_group = np.isin(np.array(defects.halls, dtype=object)[key[1]], list(members))
        out[f"n_falhas_{group}"] = np.bincount(key[0][of_group], minlength=n)
    return pd.DataFrame(out)


def dwell(line: SimpleNamespace, n: int, settings: Settings) -> pd.DataFrame:
    """Minutes per zone before the first road test, and when that was (seconds; NaN if never).

    Events are already distinct and sorted by car, time and code; each lasts until the car's next.
    """
    car, t = line.car, line.t
    same_car_next = np.r_[car[1:] == car[:-1], False]
    duration = np.where(same_car_next, np.r_[t[1:] - t[:-1], 0], 0) / 60.0
    position = np.arange(len(car))
    road = np.array(line.codes) == settings.road_test_code
    first = np.full(n, len(car))
    is_road = road[line.code]
    np.minimum.at(first, car[is_road], position[is_road])
    before = position < first[car]
    out = {}
    for zone, codes in settings.zones.items():
        of_zone = before & np.isin(np.array(line.codes), list(codes))[line.code]
        out[f"dwell_min_{zone}"] = np.bincount(car[of_zone], weights=duration[of_zone], minlength=n)
    tested = first < len(car)
    out["road_t"] = np.where(tested, t[np.minimum(first, len(car) - 1)], np.nan)
    return pd.DataFrame(out)


def contract_score(features: pd.DataFrame) -> np.ndarray:
    """The contract placement's score: a weighted sum of standardized ``log1p`` pre-road counts."""
    score = np.zeros(len(features))
    for column, weight in _SIGNAL.items():
        if column in features:
            x = np.log1p(features[column].to_numpy(dtype=float))
            if x.std() > 0:
                score += weight * (x - x.mean()) / x.std()
    return score


def p_true(score: np.ndarray, signal: float) -> np.ndarray:
    """The true probability: a logistic function of a standardized score, ~7 % on average."""
    logit = signal * _SIGNAL_SCALE * np.asarray(score, dtype=float)
    low, high = -30.0, 30.0
    for _ in range(80):  # the intercept that makes the average probability the positive share
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(middle + logit)))) < _POSITIVE_SHARE:
            low = middle
        else:
            high = middle
    return 1 / (1 + np.exp(-((low + high) / 2 + logit)))


def truth_table(fleet, p_true, measured, defects, n, settings) -> pd.DataFrame:
    """The truth table: what an exact implementation of DATA.md computes from the exported files."""
    label = np.zeros(n, dtype=np.int64)
    is_label = np.array([h.strip().upper() == settings.label_hall for h in defects.halls])[defects.hall]
    label[defects.car[is_label]] = 1
    road_t = measured["road_t"].to_numpy()
    if len(defects.t_ms):
        low, high = defects.t_ms.min() // 1000, defects.t_ms.max() // 1000
        known = (road_t >= low) & (road_t <= high - settings.label_maturity_hours * 3600)
    else:
        known = np.zeros(n, dtype=bool)
    table = pd.DataFrame({"KNR": fleet.knr, "p_true": p_true, "label_rod": label, "label_known": known})
    counts = measured.drop(columns="road_t").join(falhas_counts(defects, n, settings, road_t))
    columns = ([f"n_results_id{i}" for i in (1, 2, 718)] + [f"n_nok_id{i}" for i in (1, 2, 718)]
               + [f"n_falhas_{g}" for g in settings.hall_groups] + [f"dwell_min_{z}" for z in settings.zones])
    return pd.concat([table, counts[columns]], axis=1)
