"""Cut the simulated rows into the plant's export pieces and format their cells.

Resultados in two overlapping export periods (csv.gz with a pandas index and a titled multi-sheet
workbook), status as a workbook, falhas as a workbook with a car count on top and again, in part,
as a ``;``-separated cp1252 csv with day-first dates.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import csvfile, plant, xlsxfile
from .csvfile import Column

_OUT_OF_ORDER = 0.04
_VALUE_WIDTH = 60
_EXCEL_EPOCH = 25569.0  # 1970-01-01 as an Excel serial day

_HEADERS = {
    "resultados": ["KNR", "NAME", "ID", "STATUS", "UNIT", "VALUE_ID", "VALUE", "DATA"],
    "status": ["KNR", "STATUS", "DATA"],
    "falhas": ["KNR", "MODELO", "COR", "MOTOR", "ESTACAO", "USUARIO", "HALLE", "FALHA", "S_GROUP_ID", "DATA"],
}



# -- the files ------------------------------------------------------------------------------------

def write_exports(rng, folder, layout, sheet_rows, fleet, line, plan, results, defects) -> list[Path]:
    """Cut the rows into the plant's pieces and write each in the layout's format."""
    knr = pa.array(fleet.knr, pa.string())
    xlsx_or_csv = "csv" if layout == "csv" else "xlsx"
    written: list[Path] = []

    def path(prefix: str, seconds: np.ndarray, fmt: str) -> Path:
        period = f"{pd.Timestamp(seconds.min(), unit='s'):%Y%m%d}_{pd.Timestamp(seconds.max(), unit='s'):%Y%m%d}"
        ext = ".csv.gz" if fmt == "csv.gz" else f".{fmt}"
        name, k = f"{prefix}_{period}", 1
        while (folder / f"{name}{ext}").exists():
            k += 1
            name = f"{prefix}_{period}_{k}"
        written.append(folder / f"{name}{ext}")
        return written[-1]

    # resultados: two export periods overlapping by a few hours; the first lists a few rows twice
    t = results.t
    cut = np.quantile(t, 0.7) if len(t) else 0
    first = np.nonzero(t < cut + 4 * 3600)[0]
    first = np.sort(np.concatenate([first, rng.choice(first, int(len(first) * .002), replace=False)]))
    second = np.nonzero(t >= cut - 4 * 3600)[0]
    pieces = ((first, "csv.gz" if layout == "plant" else xlsx_or_csv, "plain", True),
              (second, xlsx_or_csv, "title", False))
    for rows, fmt, top, pandas_floats in pieces:
        if len(rows):
            cols = _result_cols(results, rows, plan, knr, fmt, pandas_floats=pandas_floats)
            _write(path("RESULTADOS", t[rows], fmt), "resultados", cols, fmt, sheet_rows, top=top,
                   index=fmt == "csv.gz")

    order = _status_order(rng, line)
    cols = [Column(knr.take(line.car[order])), Column(pa.array(line.codes).take(line.code[order])),
            _date_col(line.t[order], xlsx_or_csv, ms=False)]
    _write(path("STATUS", line.t, xlsx_or_csv), "status", cols, xlsx_or_csv, sheet_rows, top="plain")

    # falhas: every exported row in one export (a car count on top), an overlapping part again in another
    rows = _falhas_rows(defects)
    if len(rows.car):
        cols = _falhas_cols(rows, np.arange(len(rows.car)), fleet, knr, defects, xlsx_or_csv, dayfirst=False)
        _write(path("FALHAS_PREDICT", rows.t_ms // 1000, xlsx_or_csv), "falhas", cols, xlsx_or_csv, sheet_rows,
               top="count", count=len(np.unique(rows.car)))
        low, high = np.quantile(rows.t_ms, [.35, .85])
        again = np.nonzero((rows.t_ms >= low) & (rows.t_ms <= high))[0]
        plant = layout == "plant"
        fmt = "csv" if plant else xlsx_or_csv
        cols = _falhas_cols(rows, again, fleet, knr, defects, fmt, dayfirst=plant)
        _write(path("FALHAS", rows.t_ms[again] // 1000, fmt), "falhas", cols, fmt, sheet_rows, top="plain",
               sep=";" if plant else ",", encoding="cp1252" if plant else "utf-8")
    return written


def _status_order(rng: np.random.Generator, line: SimpleNamespace) -> np.ndarray:
    """Rows in the export's order: by car and time, but for ~4 % of cars one event listed too early,
    and a few events listed twice."""
    n, cars = len(line.car), len(line.road_tested)
    starts = np.searchsorted(line.car, np.arange(cars))
    events = np.bincount(line.car, minlength=cars)
    moved = (rng.random(cars) < _OUT_OF_ORDER) & (events > 1)
    late = starts + 1 + (rng.random(cars) * (events - 1)).astype(np.int64)
    early = starts + (rng.random(cars) * (late - starts)).astype(np.int64)
    position = np.arange(n, dtype=float)
    position[late[moved]] = early[moved] - 0.5
    order = np.argsort(position, kind="stable")
    twice = rng.choice(n, int(n * .005), replace=False)
    return order[np.sort(np.concatenate([np.arange(n), twice]))]


def _falhas_rows(defects: SimpleNamespace) -> SimpleNamespace:
    """Defects as rows: most twice (hall unpadded and mixed-case text, hall padded and upper case)."""
    twice = defects.doubled.astype(np.int64) + 1
    index = np.repeat(np.arange(len(defects.car)), twice)
    nth = np.arange(len(index)) - np.repeat(np.cumsum(twice) - twice, twice)
    upper = np.where(defects.doubled[index], nth == 1, defects.upper_single[index])
    order = np.lexsort((upper, defects.t_ms[index], defects.car[index]))
    index, upper = index[order], upper[order]
    return SimpleNamespace(index=index, upper=upper, car=defects.car[index], t_ms=defects.t_ms[index])


def _falhas_cols(rows, sel, fleet, knr, defects, fmt, *, dayfirst) -> list[Column]:
    """Falhas cells; S_GROUP_ID is text in some rows and a number in others, as in the real export."""
    texts, _ = plant.defect_texts()
    i = rows.index[sel]
    upper = pa.array(rows.upper[sel])
    car = defects.car[i]
    hall = pc.if_else(upper, pa.array([h.ljust(4) for h in defects.halls]).take(defects.hall[i]),
                      pa.array([h or None for h in defects.halls], pa.string()).take(defects.hall[i]))
    text = pc.if_else(upper, pa.array([x.upper() for x in texts]).take(defects.text[i]),
                      pa.array(texts).take(defects.text[i]))
    is_cab = np.array([h == "CAB" for h in defects.halls])[defects.hall[i]]
    group = np.where(is_cab & (defects.group_id[i] < 6), len(plant.S_GROUPS), defects.group_id[i])
    group = np.where(defects.group_multi[i], len(plant.S_GROUPS) + 1, group)
    at_stol = np.array([s == "STOL" for s in plant.STATION_NAMES])[defects.station[i]]
    return [
        Column(knr.take(car)), Column(pa.array(fleet.modelo).take(car)), Column(pa.array(fleet.cor).take(car)),
        Column(pa.array(fleet.motor).take(car)), Column(pa.array(plant.STATION_NAMES).take(defects.station[i])),
        Column(pa.array(plant.USERS).take(np.where(at_stol, len(plant.USERS) - 1, defects.user[i]))), Column(hall), Column(text),
        Column(pa.array([*plant.S_GROUPS, "9830946", "#MULTIVALUE"]).take(group),
             number=pa.array(defects.group_number[i] & (group <= len(plant.S_GROUPS)))),
        _date_col(defects.t_ms[i], fmt, ms=True, dayfirst=dayfirst),
    ]


def _result_cols(results, rows, plan, knr, fmt, *, pandas_floats) -> list[Column]:
    """Resultados cells: UNIT padded to 10, VALUE long padded text, VALUE_ID a number (``1.0`` in a
    csv written by pandas from a float column)."""
    prow = results.prow[rows]
    unit = pa.array([u.ljust(10) if u else None for u in plan.unit], pa.string()).take(prow)
    ids = pa.array([f"{v}.0" if v and pandas_floats and fmt != "xlsx" else v for v in plan.value_id])
    ids = pc.if_else(pa.array(results.multi_id[rows]), "#MULTIVALUE", ids.take(prow))
    ids = pc.if_else(pc.equal(ids, ""), pa.scalar(None, pa.string()), ids)
    value = _number_text(results.value[rows], plan.places[prow])
    flag = results.flag[rows]
    value = pc.if_else(pa.array(flag == 1), "#MULTIVALUE", value)
    value = pc.if_else(pa.array(flag == 2), pa.scalar(None, pa.string()), pc.utf8_rpad(value, _VALUE_WIDTH))
    status = pa.array(["10", "13"]).take((results.status[rows] == 13).astype(np.int64))
    return [Column(knr.take(results.car[rows])), Column(pa.array(plan.name.tolist()).take(prow)),
            Column(pa.array(plan.id.astype(str)).take(prow), number=True), Column(status, number=True), Column(unit),
            Column(ids, number=pc.invert(pa.array(results.multi_id[rows]))), Column(value),
            _date_col(results.t[rows], fmt, ms=False)]


def _number_text(mantissa: np.ndarray, places: np.ndarray) -> pa.Array:
    """``mantissa / 10**places`` as text with exactly ``places`` decimals (``55.00``, ``-2.3``)."""
    scale = 10 ** places
    whole = pa.array(np.abs(mantissa) // scale).cast(pa.string())
    fraction = pa.array(np.abs(mantissa) % scale).cast(pa.string())
    for width in (2, 3):
        fraction = pc.if_else(pa.array(places == width), pc.utf8_lpad(fraction, width, "0"), fraction)
    fraction = pc.if_else(pa.array(places == 0), "", pc.binary_join_element_wise(".", fraction, ""))
    return pc.binary_join_element_wise(pa.array(np.where(mantissa < 0, "-", "")), whole, fraction, "")


def _date_col(t: np.ndarray, fmt: str, *, ms: bool, dayfirst: bool = False) -> Column:
    """Dates: Excel serial days in xlsx (milliseconds kept when ``ms``), text to the second in csv."""
    if fmt == "xlsx":
        days = t / (86_400_000.0 if ms else 86_400.0) + _EXCEL_EPOCH
        return Column(pa.array(days).cast(pa.string()), number=True, style=2 if ms else 1)
    stamps = pa.array(t // 1000 if ms else t, pa.timestamp("s"))
    iso = stamps.cast(pa.string())  # 2024-05-20 21:31:51
    if not dayfirst:
        return Column(iso)
    day, month, year = (pc.day(stamps).cast(pa.string()), pc.month(stamps).cast(pa.string()),
                        pc.year(stamps).cast(pa.string()))
    return Column(pc.binary_join_element_wise(day, "/", month, "/", year, " ", pc.utf8_slice_codeunits(iso, 11), ""))


def _write(path: Path, kind: str, cols: list[Column], fmt: str, sheet_rows: int, *, top: str,
           count: int | None = None, index: bool = False, sep: str = ",", encoding: str = "utf-8") -> None:
    if fmt == "xlsx":
        xlsxfile.write_xlsx(path, _HEADERS[kind], cols, top=top, sheet_rows=sheet_rows, count=count)
    else:
        csvfile.write_csv(path, _HEADERS[kind], cols, sep=sep, encoding=encoding, index=index)
