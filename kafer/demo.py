"""Synthetic uploads in the plant's real layouts, and the truth they were drawn from.

:func:`make_demo_upload` writes what the plant's quality system exports for a run of cars
(resultados, falhas and status with the layouts, quirks and volumes of DATA.md) and ``truth.csv``:
each car's true probability of a road-test failure and the contract values that an exact
implementation of DATA.md must compute from those files. The truth is worked out here from the
generator's own clean rows, independently of :mod:`kafer.features`. The tests, the benchmarks and
``make retrain``'s demo use it.

The label carries a weak, learnable signal from the car's features before the road test only;
whatever is measured after it (ROD, AGUA and ZP8 defects, ``SECTION_ZP8`` results, later status
events) is drawn by chance alone. Everything comes from one seed and is built with numpy and Arrow
string kernels, never a Python loop over rows; workbooks are written as SpreadsheetML directly
(inline strings, as xlsxwriter's constant-memory mode does), which is some thirty times faster.
"""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import Settings, load_settings
from .errors import ConfigError, KaferError

#: Sub-folder of ``out`` that holds the export files (``truth.csv`` sits beside it).
DEMO_UPLOAD = "upload"
#: ``plant``: the plant's real mix of formats; ``csv`` / ``xlsx``: every file in that format.
LAYOUTS = ("plant", "csv", "xlsx")

_POSITIVE_SHARE = 0.07
#: Spread of the planted logit at ``signal=1``: the true probabilities reach a ROC-AUC of about 0.75.
_SIGNAL_SCALE = 0.9
#: Pre-road features behind the label, with their weights (each log1p-transformed and standardized).
_SIGNAL = {"n_nok_id2": 0.5, "n_nok_id718": 0.3, "n_nok_id1": 0.1, "n_falhas_ZP7": 0.35, "n_falhas_ZP5": 0.2,
           "n_falhas_ZP6": 0.2, "dwell_min_ZP6": 0.3, "dwell_min_ZP5A": -0.2, "dwell_min_CAB": 0.15}
_NOK_SHARE = 0.006
_NOK_SHAPE = 0.31  # gamma shape of a car's NOK rate: ~40 % of full-size cars have none
_NO_ROAD_TEST = 0.005
_OUT_OF_ORDER = 0.04
_DOUBLED = 0.8
_VALUE_WIDTH = 60
_EXCEL_EPOCH = 25569.0  # 1970-01-01 as an Excel serial day
_CHUNK = 200_000
_TOP_ROWS = {"plain": 2, "count": 3, "title": 4}

#: The line, in order: (alternative checkpoints, share of cars passing, median minutes to the next
#: checkpoint). ``A+B`` passes two checkpoints in the same second; share ``None``: exactly the cars
#: of the stage before; ``ROAD`` is the settings' road-test code. 116 codes, ~51 events per car.
_ROUTE = (
    ("A600", 1, 0.02), ("R100", 1, 300), ("R110", .03, 20), ("R120", 1, 300), ("R130", .02, 20),
    ("R200", .01, 15), ("R300", .01, 15), ("R480", 1, 12), ("R490", .01, 10), ("R500", .03, 10), ("R600", 1, 15),
    ("R640 R650", 1, 12), ("R700", 1, 15), ("R710", .03, 10), ("R725", 1, 20), ("R750", 1, 1), ("R754", .9, 8),
    ("R755", 1, 30), ("R760", .03, 10), ("R800", 1, 20),
    ("L100", 1, 600), ("L110", .02, 15), ("L120", .02, 15), ("L150", 1, 25), ("L151", 1, 50), ("L161", 1, 40),
    ("L200 L201", .3, 30), ("L250", .01, 20), ("L300", .2, 30), ("L400 L410", .2, 30), ("L500", .3, 20),
    ("L534 L535 L536 L537 L538 L539", 1, 45), ("L540", 1, 5), ("L541 L542 L543 L544", 1, 40),
    ("L545 L546 L547 L548", 1, 40), ("L600", 1, 20), ("L610", .03, 10), ("L660", 1, 10), ("L662", .9, 5),
    ("L66A", 1, 60), ("L670", .02, 10), ("L700", .8, 30), ("L710", .03, 10), ("L800", 1, 120),
    ("M500", .7, 60), ("M510", .03, 10), ("M520", .01, 10), ("M530", .01, 10),
    ("M591 M592 M593 M594 M595 M596", 1, 30), ("M599", .5, 20), ("M600", 1, 15), ("G605", .1, 10),
    ("M610", .02, 10), ("G614+M614", .005, 10), ("M619", .9, 10), ("G620+M620", 1, 30), ("G622+M622", .005, 10),
    ("G630 M630", .02, 10), ("M643 M644", 1, 20), ("M647 M648", 1, 15), ("M651 M652", 1, 15), ("M655 M656", 1, 15),
    ("M660", .1, 10), ("M673 M674", 1, 15), ("M677 M678", 1, 15), ("M681 M682", 1, 15), ("M690", .2, 10),
    ("M695 M698", 1, 20), ("M699", .3, 5), ("M700", 1, 10), ("M701 M702 M704", 1, 15), ("M711 M712", 1, 15),
    ("M721 M722", 1, 20), ("M725", .01, 10), ("G700", 1, 60),
    ("ROAD", 1, 25), ("G720", 1, 60), ("ROAD", .03, 20), ("G720", None, 60), ("G800", 1, 90), ("G810 M810", .05, 30),
    ("M800", .7, 60),
)

#: Screw-tightening test codes (ID 2) of the real exports.
_ID2_CODES = """
130100 130200 130300 130400 131000 131100 131200 131600 140100 140700 160100 160200 160800 160900 190100 190200
190500 192000 192100 192600 192700 193000 193100 210100 210200 210600 210700 210800 211100 211300 211700 213200
214500 214600 214900 215400 215700 215900 216100 216200 216500 219500 221500 242900 243000 243400 243500 245300
246900 252000 260200 260500 260600 260700 261500 263000 270200 270500 272500 272700 273300 273400 274000 274600
275900 276300 276400 276600 276900 280500 292100 292300 310700 310800 310900 311000 311100 311200 311300 311400
313600 313700 313900 314000 314100 314200 314400 314500 314600 314700 315900 316000 316300 316400 316500 316600
316700 316800 317000 317100 317200 317300 317600 317700 318000 318100 318900 319000 319100 320500 320600 321100
321200 321300 321400 323100 323200 323300 323400 323500 323600 323700 323800 323900 324000 324100 324200 330100
330200 330300 340100 340200 340300 340400 360500 380500 380600 381000 381100 381200 381300 410700 420200 420300
420400 420500 421000 421100 421200 421300 421400 421500 421600 421700 421800 421900 422000 422100 422200 422300
422400 422500 422600 422700 422800 422900 423000 423100 423200 423300 423400 423500 423600 423700 425200 425300
425400 425500 426400 426500 426800 426900 427200 427300 427400 427500 520200 520300 520800 520900 521700 521800
522400 522500 523500 524300 524400 550100 550200 552400 552500 553700 560400 560500 560700 560800 561500 561600
562400 562500 562600 562700 563400 563500 563700 563800 563900 564000 568600 568700 572900 573000 580300 580500
580600 590400 590500 594700 611300 614000 650100 650200 650300 652300 720100 720200 720300 720400 722000 722100
722900 730100 760300 760400 760500 760600 760800 760900 772300 772400 791900 792000 792300 792400 840300
""".split()

#: Halls where defects are found: (hall, defects per car, window from checkpoint, to checkpoint,
#: plus minutes). ROD (the label hall) is drawn apart, from the label.
_HALLS = (
    ("ZP5", .55, "R600", "R800", 0), ("ZP5A", .9, "L100", "L800", 0), ("ZP61", .045, "M591", "M600", 0),
    ("ZP6", .11, "M591", "M700", 0), ("ZP62", .019, "M643", "M700", 0), ("ZP6Q", .002, "M591", "M700", 0),
    ("CAB", .011, "M619", "M673", 0), ("ZP7", 2.4, "M695", "G700", 0), ("ESPC", .06, "A600", "G700", 0),
    ("", .0045, "A600", "G800", 0), ("AGUA", .011, "G720", "G800", 0), ("ZP8", .11, "G720", "G800", 0),
    ("ZP82", .003, "G720", "G800", 0), ("ZP8R", .005, "G720", "G800", 0), ("BUY", .03, "G800", "G800", 4320),
    ("DKA", .0015, "G800", "G800", 4320),
)
#: Halls after the road test: only cars that were road-tested have defects there.
_POST_HALLS = ("AGUA", "ZP8", "ZP82", "ZP8R", "BUY", "DKA")
_TEXT_GROUP = {"ZP61": "ZP6", "ZP62": "ZP6", "ZP6Q": "ZP6", "ZP82": "ZP8", "ZP8R": "ZP8", "DKA": "BUY"}
#: Defect texts per group of halls (mixed case; the second record of a defect is upper-cased).
_TEXTS = {
    "ZP5": ("Porta dianteira Solda - Respingo", "Cinto de segurança - Fixação assoalho Rosca NOK",
            "Longarina Solda - Falta", "Coluna B Deslocado (Ajuste)", "Assoalho Respingo de solda",
            "Teto 01. Amassado", "Porta traseira Folga (Ajuste)", "Porta dianteira Folga (Ajuste)"),
    "ZP5A": ("Tampa dianteira 05. Sujeira na pintura", "Tampa traseira 05. Sujeira na pintura",
             "Teto 05. Sujeira na pintura", "Painel lateral 09. Empoeirado", "Paralama dianteiro Prep. Pintura NOK",
             "Porta traseira 04. Caroço / Pico", "Tampa dianteira Desvio de tonalidade / Cor", "Teto Sujeira de PVC"),
    "ZP6": ("Módulo do ACC (13) Peça incorreta ¨", "Teste eletrônico (IBN_3) NOK",
            "Chicote do motor Conector desconectado", "Farol (09) Chicote danificado (&)",
            "Mangueira de combustível Fixação NOK", "Wpk (célula 40) Falta ¨", "Pino tucker 063 Falta ¨",
            "Rev. porta - Clip de pressão Solto(a) ¨"),
    "CAB": ("Console central Ajuste incorreto", "Painel instrumentos Riscado", "Porta-luvas Folga (Ajuste)",
            "Revestimento coluna A Solto(a)"),
    "ZP7": ("Painel lateral 05. Sujeira na pintura", "Painel lateral 04. Caroço / Pico", "Painel lateral 01. Amassado",
            "Paralama dianteiro 01. Amassado", "Paralama dianteiro 02. Ondulação", "Porta traseira 04. Caroço / Pico",
            "Tampa dianteira Sujeira na pintura", "Aplique da tampa traseira (grip molding) Danificado",
            "Painel lateral Contaminado", "Console central Ajuste incorreto"),
    "ROD": ("Tampa traseira Ruído (-)", "Batente porta dianteira Ruído (-)", "Revestimento coluna A Ruído (-)",
            "Porta-luvas Ruído (-)", "Console central Ruído (-)", "Painel instrumentos Ruído (-)",
            "Retrovisor - espelho retrovisor interno Ruído (-)", "Botão de trava do freio estac. Ruído (-)",
            "Luz espia EPC Função NOK", "Para-sol (09) Solto(a) ¨", "Turbina Ruído de acionamento",
            "Console central Ruído de corpo estranho"),
    "AGUA": ("Vedação do vidro da porta traseira Infiltração", "Teto solar Infiltração de água",
             "Tampa traseira Infiltração de água"),
    "ZP8": ("Farol (09) Peça NOK", "Para-choque dianteiro Riscado", "Emblema / logo - Adesivos em geral Solto(a) ¨",
            "Lanterna tras (09) Interfere", "Painel instrumentos Ruído (-)"),
    "ESPC": ("Tampa traseira 05. Sujeira na pintura", "Painel lateral Sujeira na pintura", "Teto 09. Empoeirado"),
    "BUY": ("Painel lateral 04. Caroço / Pico", "Porta dianteira Riscado", "Roda Riscada"),
    "": ("WPK (CÉLULA 10) Falta liberacao", "Painel lateral 05. Sujeira na pintura"),
}
#: Inspection stations (ESTACAO) per group of halls.
_STATIONS = {
    "ZP5": "PCEQS100 PCEQS101 PCEQS102 PCEQS104 PCEQS107 PCEQS111 PCEQS113 PCEQS114 PCEQS118",
    "ZP5A": "PCEQS314 PCEQS315 PCEQS317 PCEQS319 PCEQS322 PCEQS324 HCEQS203 HCEQS204",
    "ZP6": "PCEQS601 PCEQS608 PCEQS613 PCEQS614 PCEQS616 PCEQS620 PCEQS622 PCEQS624 STOL",
    "CAB": "HCEQS661 HCEQS662 HCEQS663 HCEQS665 HCEQS666 HCEQS667",
    "ZP7": "HCEQS504 HCEQS506 HCEQS507 HCEQS508 PCEQS702 PCEQS704 PCEQS714",
    "ROD": "PCEQS709", "AGUA": "PCEQS713", "ZP8": "PCEQS802 PCEQS805 HCEQS806 HCEQS807 HCEQS810",
    "ESPC": "PCEQS999", "BUY": "HCEQSTST PCEQS901", "": "PCEQS999 HCEQS901",
}
_STATION_NAMES = sorted({s for v in _STATIONS.values() for s in v.split()})
#: Inspectors' badges (20xxxxx, 40xxxxx); the last is the automatic test bench's user, at station STOL.
_USERS = [str(u) for u in np.random.default_rng(7).integers(0, 60_000, 40) + np.tile([2_020_000, 4_000_000], 20)]
_USERS += ["FHQWRAP"]
#: Failure groups (S_GROUP_ID); CAB defects are mostly 9830946.
_S_GROUPS = ("4", "5", "2", "1", "-2", "133", "140", "137")
#: Paint codes (COR) and their shares.
_COLORS = ("K2K2 2R2R 0Q0Q A1A1 5T5T 2RA1 K2A1 0QA1 8E8E 6K6K 5TA1 6KA1".split(),
           (.19, .19, .19, .11, .07, .04, .04, .03, .03, .05, .03, .03))

_HEADERS = {
    "resultados": ["KNR", "NAME", "ID", "STATUS", "UNIT", "VALUE_ID", "VALUE", "DATA"],
    "status": ["KNR", "STATUS", "DATA"],
    "falhas": ["KNR", "MODELO", "COR", "MOTOR", "ESTACAO", "USUARIO", "HALLE", "FALHA", "S_GROUP_ID", "DATA"],
}


@dataclass(frozen=True)
class DemoUpload:
    """Where a demo upload was written."""

    folder: Path
    """The folder holding the export files."""
    files: tuple[Path, ...]
    """The export files (not the truth file)."""
    truth: Path
    """``truth.csv``: one row per car, its true probability and the contract values."""


def make_demo_upload(out: str | Path, *, cars: int = 2000, seed: int = 0, start: str = "2024-04-01",
                     signal: float = 1.0, layout: str = "plant", sheet_rows: int | None = None,
                     falhas_until: str | None = None, results_per_car: int | None = None,
                     settings: Settings | None = None) -> DemoUpload:
    """Write a synthetic upload of ``cars`` cars and the truth behind it.

    Parameters
    ----------
    out : str or Path
        Folder to write into: the exports go to ``out/upload`` (which must be empty or absent),
        the truth to ``out/truth.csv``.
    cars : int
        Cars built, about 300 per working day from ``start`` on.
    seed : int
        The same seed gives the same files, byte for byte.
    start : str
        First production day.
    signal : float
        Strength of the planted signal: 1 gives true probabilities with a ROC-AUC of about 0.75,
        0 the same probability for every car (pure chance).
    layout : {"plant", "csv", "xlsx"}
        ``plant``: RESULTADOS as csv.gz (pandas row index) and a titled multi-sheet workbook,
        STATUS as a workbook, FALHAS as a workbook with a car count on top and again, in part, as a
        ``;``-separated cp1252 csv with day-first dates. ``csv`` / ``xlsx``: the same pieces, every
        file in that format.
    sheet_rows : int, optional
        Rows per sheet, top rows included (default: the settings', Excel's limit).
    falhas_until : str, optional
        Falhas rows dated after this day (or moment, when a time is given) are not exported, so
        cars road-tested later end up with an unknown label.
    results_per_car : int, optional
        About this many resultados rows per car instead of the real ~880 (small, fast uploads).
    settings : Settings, optional
        Zones, hall groups, road-test code and label hall (default: :func:`load_settings`).

    Returns
    -------
    DemoUpload

    Raises
    ------
    ConfigError
        When an option is out of range.
    KaferError
        When ``out/upload`` already holds files.
    """
    settings = settings or load_settings()
    sheet_rows = settings.sheet_rows if sheet_rows is None else sheet_rows
    if cars < 1:
        raise ConfigError(f"cars must be at least 1, not {cars}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if sheet_rows <= max(_TOP_ROWS.values()):
        raise ConfigError(f"sheet_rows must be more than {max(_TOP_ROWS.values())}, not {sheet_rows}")
    if results_per_car is not None and results_per_car < 4:
        raise ConfigError(f"results_per_car must be at least 4, not {results_per_car}")
    if signal < 0:
        raise ConfigError(f"signal must not be negative, not {signal}")
    out = Path(out)
    folder = out / DEMO_UPLOAD
    if folder.exists() and any(folder.iterdir()):
        raise KaferError(f"{folder} already holds files; give an empty or new folder for the demo upload")

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    fleet = _fleet(streams[0], cars, pd.Timestamp(start).normalize())
    line = _status(streams[1], fleet.a600, settings)
    plan = _catalog(results_per_car, settings)
    results = _results(streams[2], plan, fleet.a600, line)
    defects = _defects(streams[3], line, settings)
    measured = _result_counts(results, plan, cars).join(_dwell(line, cars, settings))
    p_true = _p_true(measured.join(_falhas_counts(defects, cars, settings)), signal)
    label = (streams[4].random(cars) < p_true) & line.road_tested
    defects = _with_label_defects(streams[4], defects, label, line, settings)
    if falhas_until is not None:
        defects = _take(defects, defects.t_ms < _until_ms(falhas_until))

    truth = _truth(fleet, p_true, measured, defects, cars, settings)
    folder.mkdir(parents=True, exist_ok=True)
    files = _write_exports(streams[5], folder, layout, sheet_rows, fleet, line, plan, results, defects)
    truth_path = out / "truth.csv"
    truth.to_csv(truth_path, index=False)
    return DemoUpload(folder=folder, files=tuple(files), truth=truth_path)


# -- the cars -------------------------------------------------------------------------------------

def _fleet(rng: np.random.Generator, cars: int, start: pd.Timestamp) -> SimpleNamespace:
    """KNRs, models and the second each car enters the line (about 300 per working day)."""
    days, sizes = [], []
    day = start
    while sum(sizes) < cars:
        if day.weekday() < 5:
            days.append(day)
            sizes.append(min(int(rng.integers(270, 331)), cars - sum(sizes)))
        day += pd.Timedelta(days=1)
    sizes = np.array(sizes)
    day_of = np.repeat(np.arange(len(days)), sizes)
    nth = np.arange(cars) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    iso = [d.isocalendar() for d in days]
    prefix = np.array([f"{y:04d}-{w:02d}{wd}" for y, w, wd in iso], dtype=object)[day_of]
    knr = prefix + pd.Series(6001 + nth).astype(str).to_numpy(dtype=object)
    midnight = np.array([d.value // 10**9 for d in days], dtype=np.int64)[day_of]
    a600 = midnight + 19_800 + (nth / sizes[day_of] * 64_800).astype(np.int64) + rng.integers(0, 60, cars)
    q3 = rng.random(cars) < 0.08
    motor = np.where(q3, "DSN", rng.choice(["DHS", "CWL", "CWS", "DRP"], cars, p=[.64, .26, .06, .04]))
    motor = np.where(rng.random(cars) < 0.03, "   ", motor)
    return SimpleNamespace(knr=knr, a600=a600, modelo=np.where(q3, "AUDI Q3", "T-CROSS"),
                           cor=rng.choice(_COLORS[0], cars, p=_COLORS[1]), motor=motor)


def _route(settings: Settings) -> list[tuple[list[list[str]], float | None, float]]:
    """The line's stages with the settings' road-test code, and any zone checkpoint it lacks."""
    stages = [([alt.replace("ROAD", settings.road_test_code).split("+") for alt in codes.split()], share, minutes)
              for codes, share, minutes in _ROUTE]
    present = {c for alts, _, _ in stages for alt in alts for c in alt}
    missing = sorted({c for codes in settings.zones.values() for c in codes} - present)
    at = next(i for i, (alts, _, _) in enumerate(stages) if alts == [["G700"]])
    return stages[:at] + [([[c]], 0.5, 15) for c in missing] + stages[at:]


def _status(rng: np.random.Generator, a600: np.ndarray, settings: Settings) -> SimpleNamespace:
    """Every car's checkpoint events (distinct, in time order) and the time of every stage."""
    stages = _route(settings)
    n, count = len(a600), len(stages)
    road = next(i for i, (alts, _, _) in enumerate(stages) if alts == [[settings.road_test_code]])
    visited = np.zeros((n, count), dtype=bool)
    for s, (_, share, _) in enumerate(stages):
        visited[:, s] = visited[:, s - 1] if share is None else rng.random(n) < share
    road_tested = rng.random(n) >= _NO_ROAD_TEST
    visited[:, road:] &= road_tested[:, None]
    medians = np.array([minutes for _, _, minutes in stages])
    minutes = rng.lognormal(np.log(medians), 0.5, (n, count))
    hold = (rng.random((n, count)) < 0.02) & (np.arange(count) < road)  # rework, a weekend parked
    minutes += hold * rng.uniform(180, 3600, (n, count))
    seconds = np.maximum(1, np.rint(minutes * 60)).astype(np.int64) * visited
    times = a600[:, None] + np.cumsum(seconds, axis=1) - seconds
    choice = (rng.random((n, count)) * np.array([len(alts) for alts, _, _ in stages])).astype(np.int64)

    codes = sorted({c for alts, _, _ in stages for alt in alts for c in alt})
    code_id = {c: i for i, c in enumerate(codes)}
    cars, ids, when = [], [], []
    for s, (alts, _, _) in enumerate(stages):
        for a, alt in enumerate(alts):
            who = np.nonzero(visited[:, s] & (choice[:, s] == a))[0]
            for code in alt:
                cars.append(who)
                ids.append(np.full(len(who), code_id[code]))
                when.append(times[who, s])
    car, code, t = np.concatenate(cars), np.concatenate(ids), np.concatenate(when)
    order = np.lexsort((code, t, car))

    def time_of(code_name: str) -> np.ndarray:
        return times[:, next(i for i, (alts, _, _) in enumerate(stages) if any(code_name in a for a in alts))]

    return SimpleNamespace(car=car[order], code=code[order], t=t[order], codes=codes, time_of=time_of,
                           road_tested=road_tested)


# -- resultados -----------------------------------------------------------------------------------

def _catalog(results_per_car: int | None, settings: Settings) -> SimpleNamespace:
    """The plant's test plan: rows grouped in tests whose rows share one time, the same for every seed.

    Each row has a distinct (NAME, UNIT, VALUE_ID), so a car's rows are distinct by construction.
    """
    rng = np.random.default_rng(718)
    groups: list[tuple] = []  # (ID, share of the way to the road test, share of cars, post, retest, rows)

    def test(result_id, frac, keep, rows, *, post=False, retest=False):
        groups.append((result_id, frac, keep, post, retest, rows))

    blank = ("", "", None, 0, 0)
    for name, keep in (("012001", .97), ("012002", .97), ("012003", .97), ("012004", .97), ("012005", .3),
                       ("012006", .3), ("012007", .3), ("012008", .97)):
        test(1, .05, keep, [(name, *blank)])
    test(1, .12, .95, [("018001", *blank)])
    test(1, .14, .2, [("018002", *blank)])
    test(1, .3, .9, [("042000", "Deg", "5", 15600, 300, 0), ("042000", "mm", "3", 1.7, .2, 2),
                     ("042000", "mm", "2", 2.0, .2, 2), ("042000", "mm", "1", 3.6, .3, 2),
                     ("042000", "Nm", "4", 2.9, .2, 2)])
    for name in ("042004", "042005", "067001"):
        test(1, .35, .2, [(name, "Nm", "0", 3.0, .2, 2)])
    for i, code in enumerate(_ID2_CODES):
        spindles = rng.choice([1, 2, 3], p=[.5, .35, .15])
        angle, torque, places = rng.uniform(15, 200), rng.uniform(4, 150), int(rng.choice([1, 2]))
        rows = [(code, "Grad", str(2 * k + 1), angle, angle * .03, places) for k in range(spindles)]
        rows += [(code, "Nm", str(2 * k), torque, torque * .03, 2) for k in range(spindles)]
        if rng.random() < .015:
            rows.append((code, " ", *blank[1:]))  # a row without measurement: UNIT of blanks
        test(2, .1 + .8 * i / len(_ID2_CODES), .99, rows, retest=True)
    for name in ("SECTION_ALS_00000001", "SECTION_ALS_00000002"):
        test(718, .95, .95, [(name, "%", str(k), -2.3, .3, 2) for k in (19, 20, 21, 22)])
    test(718, .95, .1, [("SECTION_ALS_0000003", "%", "19", -2.3, .3, 2)])
    test(718, .93, .95, [("SECTION_FAS_00000001", "Grad", str(k), .2, .1, 2) for k in range(1, 5)])
    for k in (1, 2, 3, 4, 5, 7, 8, 9):
        name = f"SECTION_ROL_0000000{k}"
        speed = 20 + 10 * k
        test(718, .96, .95, [(name, "km/h", str(k), speed, 1, 1) for k in (0, 1, 2)])
    for k in (1, 2, 3):
        test(718, .97, .95, [(f"SECTION_IBN_0000000{k}", *blank)])
    for k in (20, 25, 30, 35):
        name = f"UPSECOS_ALS_000000{k}"
        test(718, .94, .95, [(name, "Grad", str(k), .1, .05, 3) for k in (1, 2, 3)])
    for name in ("CRIPPLE_0015_0000001", "CRIPPLE_0015_0000002"):
        test(718, .9, .5, [(name, *blank)])
    test(718, 1, 1, [("SECTION_ZP8_00000001", "V", "80", 12.6, .25, 3)], post=True, retest=True)
    test(718, 1, .1, [("SECTION_ZP8_00000003", "V", "80", 12.6, .25, 3)], post=True, retest=True)

    if results_per_car is not None:  # a fixed sample of tests: the first ID 1, ID 718 and ZP8 ones, then any
        first = [0, next(i for i, g in enumerate(groups) if g[0] == 718), len(groups) - 2]
        rest = [i for i in np.random.default_rng(2).permutation(len(groups)) if i not in first]
        chosen, rows = [], 0
        for i in first + rest:
            if rows >= results_per_car:
                break
            chosen.append(i)
            rows += len(groups[i][5])
        groups = [groups[i] for i in sorted(chosen)]

    rows = [(g, *row) for g, (*_, tests) in enumerate(groups) for row in tests]
    group, name, unit, value_id, mu, sd, places = (list(col) for col in zip(*rows))
    unit, value_id = np.array(unit, dtype=object), np.array(value_id, dtype=object)
    group_id = np.array([g[0] for g in groups])[group]
    return SimpleNamespace(
        group=np.array(group), name=np.array(name, dtype=object), unit=unit, value_id=value_id, id=group_id,
        mu=np.array([m or 0.0 for m in mu], dtype=float), sd=np.array(sd, dtype=float), places=np.array(places),
        has_value=np.array([m is not None for m in mu]), multi_ok=(unit == "Grad") & (value_id == "1"),
        excluded=np.array([n.startswith(tuple(settings.post_road_sections)) for n in name], dtype=bool),
        nok_weight=np.select([group_id == 718, group_id == 1], [3.0, 0.5], 1.0),
        frac=np.array([g[1] for g in groups]), keep=np.array([g[2] for g in groups]),
        post=np.array([g[3] for g in groups]), retest=np.array([g[4] for g in groups]),
        size=np.array([len(g[5]) for g in groups]),
        start=np.cumsum([0] + [len(g[5]) for g in groups])[:-1],
    )


def _results(rng: np.random.Generator, plan: SimpleNamespace, a600: np.ndarray, line: SimpleNamespace):
    """Every car's resultados rows, in the export's order (car, test, retest, row of the test)."""
    n = len(a600)
    end = line.time_of("G700")
    kept = rng.random((n, len(plan.keep))) < plan.keep[None, :] * rng.uniform(.96, 1, n)[:, None]
    kept[:, plan.post] &= line.road_tested[:, None]
    car_of, test = np.nonzero(kept)
    when = a600[car_of] + plan.frac[test] * (end - a600)[car_of] + rng.normal(0, 600, len(test))
    when = np.clip(when, a600[car_of] + 1, end[car_of] - 60)
    after_road = line.time_of("G720")[car_of] + rng.uniform(600, 5400, len(test))
    when = np.where(plan.post[test], after_road, when).astype(np.int64)

    size = plan.size[test]
    instance = np.repeat(np.arange(len(test)), size)
    prow = plan.start[test][instance] + np.arange(len(instance)) - np.repeat(np.cumsum(size) - size, size)
    car = car_of[instance]
    post = plan.post[test][instance]

    pre_rows = np.bincount(car[~post], minlength=n)
    rate = rng.gamma(_NOK_SHAPE, _NOK_SHARE * np.maximum(pre_rows, 1) / _NOK_SHAPE)
    wanted = np.minimum(rng.poisson(rate), pre_rows)
    key = np.where(post, -np.inf, np.log(rng.random(len(prow))) / plan.nok_weight[prow])  # weighted draw
    order = np.lexsort((-key, car))
    by_car = car[order]
    nok = np.zeros(len(prow), dtype=bool)
    nok[order] = np.arange(len(order)) - np.searchsorted(by_car, by_car) < wanted[by_car]
    nok |= post & (rng.random(len(prow)) < 0.3)  # ZP8 check after the road test: chance alone

    failed = (np.bincount(instance, weights=nok, minlength=len(test)) > 0) & plan.retest[test]
    again = np.nonzero(failed[instance])[0]
    delay = rng.integers(60, 1200, len(test))
    car = np.concatenate([car, car[again]])
    prow = np.concatenate([prow, prow[again]])
    t = np.concatenate([when[instance], when[instance][again] + delay[instance][again]])
    status = np.where(np.concatenate([nok, np.zeros(len(again), dtype=bool)]), 13, 10)
    retest = np.repeat([0, 1], [len(instance), len(again)])

    value = np.rint(rng.normal(plan.mu[prow], plan.sd[prow]) * 10.0 ** plan.places[prow]).astype(np.int64)
    flag = np.where(plan.has_value[prow], np.where(rng.random(len(prow)) < .0005, 1, 0), 2)  # 1 #MULTIVALUE, 2 empty
    multi_id = plan.multi_ok[prow] & (rng.random(len(prow)) < .005)
    order = np.lexsort((prow, retest, plan.group[prow], car))
    return SimpleNamespace(car=car[order], prow=prow[order], t=t[order], status=status[order],
                           value=value[order], flag=flag[order], multi_id=multi_id[order])


# -- falhas ---------------------------------------------------------------------------------------

def _texts() -> tuple[list[str], dict[str, tuple[int, int]]]:
    """All defect texts, and where each group's texts are among them."""
    texts, where = [], {}
    for group, items in _TEXTS.items():
        where[group] = (len(texts), len(items))
        texts += items
    return texts, where


def _hall_table(settings: Settings) -> list[tuple[str, float, str, str, float]]:
    known = {h[0] for h in _HALLS}
    extra = sorted({m for members in settings.hall_groups.values() for m in members} - known - {settings.label_hall})
    return list(_HALLS) + [(hall, .05, "A600", "G700", 0) for hall in extra]


def _defect_rows(rng: np.random.Generator, car: np.ndarray, hall: np.ndarray, halls: list[str],
                 start: np.ndarray, end: np.ndarray) -> SimpleNamespace:
    """Defects of the given cars and halls, at a random millisecond of their window."""
    texts, where = _texts()
    group = [_TEXT_GROUP.get(h, h) if _TEXT_GROUP.get(h, h) in _TEXTS else "ZP7" for h in halls]
    offset, count = (np.array([where[g][k] for g in group])[hall] for k in (0, 1))
    pools = [[_STATION_NAMES.index(s) for s in _STATIONS[g].split()] for g in group]
    pool_start = np.cumsum([0] + [len(p) for p in pools])[:-1][hall]
    pool_size = np.array([len(p) for p in pools])[hall]
    size = len(car)
    return SimpleNamespace(
        car=car, hall=hall, text=offset + (rng.random(size) * count).astype(np.int64),
        t_ms=start * 1000 + (rng.random(size) * (end - start) * 1000).astype(np.int64),
        station=np.array(sum(pools, []), dtype=np.int64)[pool_start + (rng.random(size) * pool_size).astype(np.int64)],
        user=rng.integers(0, len(_USERS) - 1, size), group_id=rng.integers(0, len(_S_GROUPS), size),
        group_multi=rng.random(size) < .01, group_number=rng.random(size) < .5,
        doubled=rng.random(size) < _DOUBLED, upper_single=rng.random(size) < .5, halls=halls)


def _defects(rng: np.random.Generator, line: SimpleNamespace, settings: Settings) -> SimpleNamespace:
    """Defects found in every hall but the label's, as distinct defects (before double recording)."""
    table = _hall_table(settings)
    halls = [h[0] for h in table] + [settings.label_hall]
    n = len(line.road_tested)
    rates = np.repeat(np.array([h[1] for h in table])[None, :], n, axis=0)
    built = [i for i, h in enumerate(table) if h[0] not in _POST_HALLS and h[0]]
    rates[:, built] *= rng.gamma(2.0, 0.5, n)[:, None]  # some cars are simply worse built
    rates[:, [i for i, h in enumerate(table) if h[0] in _POST_HALLS]] *= line.road_tested[:, None]
    counts = rng.poisson(rates)
    car = np.repeat(np.repeat(np.arange(n), len(table)), counts.ravel())
    hall = np.repeat(np.tile(np.arange(len(table)), n), counts.ravel())
    start = np.stack([line.time_of(h[2]) for h in table], axis=1)[car, hall]
    end = np.stack([line.time_of(h[3]) + h[4] * 60 for h in table], axis=1)[car, hall]
    return _defect_rows(rng, car, hall, halls, start, end)


def _with_label_defects(rng: np.random.Generator, defects: SimpleNamespace, label: np.ndarray,
                        line: SimpleNamespace, settings: Settings) -> SimpleNamespace:
    """Add the label hall's defects of the positive cars, found during their (first) road test."""
    cars = np.nonzero(label)[0]
    car = np.repeat(cars, 1 + rng.poisson(0.35, len(cars)))
    rod = _defect_rows(rng, car, np.full(len(car), len(defects.halls) - 1), defects.halls,
                       line.time_of(settings.road_test_code)[car], line.time_of("G720")[car])
    return SimpleNamespace(**{k: np.concatenate([getattr(defects, k), getattr(rod, k)]) for k in _ROW_FIELDS},
                           halls=defects.halls)


_ROW_FIELDS = ("car", "hall", "text", "t_ms", "station", "user", "group_id", "group_multi", "group_number",
               "doubled", "upper_single")


def _take(defects: SimpleNamespace, mask: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(**{k: getattr(defects, k)[mask] for k in _ROW_FIELDS}, halls=defects.halls)


def _until_ms(until: str) -> int:
    """First millisecond no longer exported: the day after a date, the moment after a time."""
    moment = pd.Timestamp(until)
    if len(str(until).strip()) <= 10:
        return (moment.normalize() + pd.Timedelta(days=1)).value // 10**6
    return moment.value // 10**6 + 1


# -- the contract, computed from the clean rows --------------------------------------------------

def _result_counts(results: SimpleNamespace, plan: SimpleNamespace, n: int) -> pd.DataFrame:
    """Resultados rows per ID and NOK rows per ID, post-road sections left out (rows are distinct)."""
    out = {}
    counted = ~plan.excluded[results.prow]
    for result_id in (1, 2, 718):
        of_id = counted & (plan.id[results.prow] == result_id)
        out[f"n_results_id{result_id}"] = np.bincount(results.car[of_id], minlength=n)
        out[f"n_nok_id{result_id}"] = np.bincount(results.car[of_id & (results.status == 13)], minlength=n)
    return pd.DataFrame(out)


def _falhas_counts(defects: SimpleNamespace, n: int, settings: Settings) -> pd.DataFrame:
    """Distinct defects per hall group: one per (car, hall, text, second)."""
    key = np.unique(np.stack([defects.car, defects.hall, defects.text, defects.t_ms // 1000]), axis=1)
    out = {}
    for group, members in settings.hall_groups.items():
        of_group = np.isin(np.array(defects.halls, dtype=object)[key[1]], list(members))
        out[f"n_falhas_{group}"] = np.bincount(key[0][of_group], minlength=n)
    return pd.DataFrame(out)


def _dwell(line: SimpleNamespace, n: int, settings: Settings) -> pd.DataFrame:
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


def _p_true(features: pd.DataFrame, signal: float) -> np.ndarray:
    """The true probability: a logistic function of standardized pre-road features, ~7 % on average."""
    score = np.zeros(len(features))
    for column, weight in _SIGNAL.items():
        if column in features:
            x = np.log1p(features[column].to_numpy(dtype=float))
            if x.std() > 0:
                score += weight * (x - x.mean()) / x.std()
    if score.std() > 0:
        score = (score - score.mean()) / score.std()
    logit = signal * _SIGNAL_SCALE * score
    low, high = -30.0, 30.0
    for _ in range(80):  # the intercept that makes the average probability the positive share
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(middle + logit)))) < _POSITIVE_SHARE:
            low = middle
        else:
            high = middle
    return 1 / (1 + np.exp(-((low + high) / 2 + logit)))


def _truth(fleet, p_true, measured, defects, n, settings) -> pd.DataFrame:
    """The truth table: what an exact implementation of DATA.md computes from the exported files."""
    label = np.zeros(n, dtype=np.int64)
    is_label = np.array([h.strip().upper() == settings.label_hall for h in defects.halls])[defects.hall]
    label[defects.car[is_label]] = 1
    road_t = measured["road_t"].to_numpy()
    if len(defects.t_ms):
        low, high = defects.t_ms.min() // 1000, defects.t_ms.max() // 1000
        known = (road_t >= low) & (road_t <= high)
    else:
        known = np.zeros(n, dtype=bool)
    table = pd.DataFrame({"KNR": fleet.knr, "p_true": p_true, "label_rod": label, "label_known": known})
    counts = measured.drop(columns="road_t").join(_falhas_counts(defects, n, settings))
    columns = ([f"n_results_id{i}" for i in (1, 2, 718)] + [f"n_nok_id{i}" for i in (1, 2, 718)]
               + [f"n_falhas_{g}" for g in settings.hall_groups] + [f"dwell_min_{z}" for z in settings.zones])
    return pd.concat([table, counts[columns]], axis=1)


# -- the files ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Col:
    """One column to write: its cells as text (null: empty cell), whether xlsx gets numbers, date style."""

    values: pa.Array
    number: bool | pa.Array = False
    style: int = 0  # xlsx: 1 date to the second, 2 to the millisecond


def _write_exports(rng, folder, layout, sheet_rows, fleet, line, plan, results, defects) -> list[Path]:
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
    cols = [_Col(knr.take(line.car[order])), _Col(pa.array(line.codes).take(line.code[order])),
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


def _falhas_cols(rows, sel, fleet, knr, defects, fmt, *, dayfirst) -> list[_Col]:
    """Falhas cells; S_GROUP_ID is text in some rows and a number in others, as in the real export."""
    texts, _ = _texts()
    i = rows.index[sel]
    upper = pa.array(rows.upper[sel])
    car = defects.car[i]
    hall = pc.if_else(upper, pa.array([h.ljust(4) for h in defects.halls]).take(defects.hall[i]),
                      pa.array([h or None for h in defects.halls], pa.string()).take(defects.hall[i]))
    text = pc.if_else(upper, pa.array([x.upper() for x in texts]).take(defects.text[i]),
                      pa.array(texts).take(defects.text[i]))
    is_cab = np.array([h == "CAB" for h in defects.halls])[defects.hall[i]]
    group = np.where(is_cab & (defects.group_id[i] < 6), len(_S_GROUPS), defects.group_id[i])
    group = np.where(defects.group_multi[i], len(_S_GROUPS) + 1, group)
    at_stol = np.array([s == "STOL" for s in _STATION_NAMES])[defects.station[i]]
    return [
        _Col(knr.take(car)), _Col(pa.array(fleet.modelo).take(car)), _Col(pa.array(fleet.cor).take(car)),
        _Col(pa.array(fleet.motor).take(car)), _Col(pa.array(_STATION_NAMES).take(defects.station[i])),
        _Col(pa.array(_USERS).take(np.where(at_stol, len(_USERS) - 1, defects.user[i]))), _Col(hall), _Col(text),
        _Col(pa.array([*_S_GROUPS, "9830946", "#MULTIVALUE"]).take(group),
             number=pa.array(defects.group_number[i] & (group <= len(_S_GROUPS)))),
        _date_col(defects.t_ms[i], fmt, ms=True, dayfirst=dayfirst),
    ]


def _result_cols(results, rows, plan, knr, fmt, *, pandas_floats) -> list[_Col]:
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
    return [_Col(knr.take(results.car[rows])), _Col(pa.array(plan.name.tolist()).take(prow)),
            _Col(pa.array(plan.id.astype(str)).take(prow), number=True), _Col(status, number=True), _Col(unit),
            _Col(ids, number=pc.invert(pa.array(results.multi_id[rows]))), _Col(value),
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


def _date_col(t: np.ndarray, fmt: str, *, ms: bool, dayfirst: bool = False) -> _Col:
    """Dates: Excel serial days in xlsx (milliseconds kept when ``ms``), text to the second in csv."""
    if fmt == "xlsx":
        days = t / (86_400_000.0 if ms else 86_400.0) + _EXCEL_EPOCH
        return _Col(pa.array(days).cast(pa.string()), number=True, style=2 if ms else 1)
    stamps = pa.array(t // 1000 if ms else t, pa.timestamp("s"))
    iso = stamps.cast(pa.string())  # 2024-05-20 21:31:51
    if not dayfirst:
        return _Col(iso)
    day, month, year = (pc.day(stamps).cast(pa.string()), pc.month(stamps).cast(pa.string()),
                        pc.year(stamps).cast(pa.string()))
    return _Col(pc.binary_join_element_wise(day, "/", month, "/", year, " ", pc.utf8_slice_codeunits(iso, 11), ""))


def _write(path: Path, kind: str, cols: list[_Col], fmt: str, sheet_rows: int, *, top: str,
           count: int | None = None, index: bool = False, sep: str = ",", encoding: str = "utf-8") -> None:
    if fmt == "xlsx":
        _write_xlsx(path, _HEADERS[kind], cols, top=top, sheet_rows=sheet_rows, count=count)
    else:
        _write_csv(path, _HEADERS[kind], cols, sep=sep, encoding=encoding, index=index)


def _chunk_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a string array, without copying."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]]


def _write_csv(path: Path, header: list[str], cols: list[_Col], *, sep: str, encoding: str, index: bool) -> None:
    """A CSV as pandas writes it (``index``: the leading unnamed row-number column), gzip for ``.gz``."""
    n = len(cols[0].values)
    with open(path, "wb") as raw:
        out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if path.suffix == ".gz" else raw
        out.write((sep.join([""] * index + header) + "\n").encode(encoding))
        for a in range(0, n, _CHUNK):
            b = min(n, a + _CHUNK)
            fields = [_quoted(c.values.slice(a, b - a), sep) for c in cols]
            if index:
                fields.insert(0, pa.array(np.arange(a, b)).cast(pa.string()))
            lines = pc.binary_join_element_wise(*fields, sep, null_handling="replace")
            data = _chunk_bytes(pc.binary_join_element_wise(lines, "\n", ""))
            out.write(data if encoding == "utf-8" else bytes(data).decode("utf-8").encode(encoding))
        if out is not raw:
            out.close()


def _quoted(values: pa.Array, sep: str) -> pa.Array:
    needs = pc.fill_null(pc.match_substring_regex(values, f'[{sep}"\n]'), False)
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE = "http://schemas.openxmlformats.org/package/2006"
_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_STYLES = (f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="2">'
           '<numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
           '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss.000"/></numFmts>'
           '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
           '<fills count="2"><fill><patternFill patternType="none"/></fill>'
           '<fill><patternFill patternType="gray125"/></fill></fills>'
           '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
           '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
           '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
           '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
           '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
           '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _escape(values: pa.Array) -> pa.Array:
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        values = pc.replace_substring(values, char, entity)
    return values


def _cell(letter: str, row: int, value, *, text: bool) -> str:
    if text:
        return f'<c r="{letter}{row}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'
    return f'<c r="{letter}{row}"><v>{value}</v></c>'


def _write_xlsx(path: Path, header: list[str], cols: list[_Col], *, top: str, sheet_rows: int,
                count: int | None) -> None:
    """A workbook as the plant exports it: row 1 blank, column A empty, the header at B2 (or below a
    car count in B2, or below a title in D2), sheets of ``sheet_rows`` rows, continuations headerless."""
    n = len(cols[0].values)
    above = _TOP_ROWS[top]
    bounds = [0, min(n, sheet_rows - above)]
    while bounds[-1] < n:
        bounds.append(min(n, bounds[-1] + sheet_rows))
    sheets = list(zip(bounds[:-1], bounds[1:]))
    letters = [chr(ord("B") + j) for j in range(len(cols))]
    names = ["Relatório 1"] + [f"Relatório 1({k})" for k in range(1, len(sheets))]
    head = "".join(_cell(letter, above, h, text=True) for letter, h in zip(letters, header))
    lead = {"plain": "", "count": f'<row r="2">{_cell("B", 2, count, text=False)}</row>',
            "title": f'<row r="2">{_cell("D", 2, names[0], text=True)}</row>'}[top] + f'<row r="{above}">{head}</row>'
    with zipfile.ZipFile(path, "w") as book:
        overrides = "".join(f'<Override PartName="/xl/worksheets/sheet{k}.xml" ContentType="{_TYPE}.worksheet+xml"/>'
                            for k in range(1, len(sheets) + 1))
        book.writestr(_entry("[Content_Types].xml"), (
            f'{_XML}<Types xmlns="{_PACKAGE}/content-types">'
            f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            f'<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_TYPE}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_TYPE}.styles+xml"/>{overrides}</Types>'))
        book.writestr(_entry("_rels/.rels"), (
            f'{_XML}<Relationships xmlns="{_PACKAGE}/relationships"><Relationship Id="rId1" '
            f'Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        links = "".join(f'<Relationship Id="rId{k}" Type="{_RELS}/worksheet" Target="worksheets/sheet{k}.xml"/>'
                        for k in range(1, len(sheets) + 1))
        book.writestr(_entry("xl/_rels/workbook.xml.rels"), (
            f'{_XML}<Relationships xmlns="{_PACKAGE}/relationships">{links}'
            f'<Relationship Id="rId{len(sheets) + 1}" Type="{_RELS}/styles" Target="styles.xml"/></Relationships>'))
        entries = "".join(f'<sheet name="{name}" sheetId="{k}" r:id="rId{k}"/>' for k, name in enumerate(names, 1))
        book.writestr(_entry("xl/workbook.xml"), (
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><bookViews><workbookView/></bookViews>'
            f'<sheets>{entries}</sheets></workbook>'))
        book.writestr(_entry("xl/styles.xml"), _STYLES)
        for k, (a, b) in enumerate(sheets):
            first_row = above + 1 if k == 0 else 1
            last_row = first_row + b - a - 1
            selected = ' tabSelected="1"' if k == 0 else ""
            with book.open(_entry(f"xl/worksheets/sheet{k + 1}.xml"), "w", force_zip64=True) as sheet:
                sheet.write((f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}">'
                             f'<dimension ref="B{2 if k == 0 else 1}:{letters[-1]}{last_row}"/>'
                             f'<sheetViews><sheetView{selected} workbookViewId="0"/></sheetViews>'
                             f'<sheetFormatPr defaultRowHeight="15"/><sheetData>'
                             f'{lead if k == 0 else ""}').encode())
                for c in range(a, b, _CHUNK):
                    sheet.write(_rows_xml(cols, letters, c, min(b, c + _CHUNK), first_row + c - a))
                sheet.write(b'</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" '
                            b'header="0.3" footer="0.3"/></worksheet>')


def _cells(letter: str, row: pa.Array, values: pa.Array, style: int, *, number: bool) -> pa.Array:
    """One column's ``<c>`` elements: numbers as values, text as inline strings; null where empty."""
    if number:
        styled = f' s="{style}"' if style else ""
        return pc.binary_join_element_wise(f'<c r="{letter}', row, f'"{styled}><v>', values, "</v></c>", "")
    return pc.binary_join_element_wise(f'<c r="{letter}', row, '" t="inlineStr"><is><t xml:space="preserve">',
                                       _escape(values), "</t></is></c>", "")


def _rows_xml(cols: list[_Col], letters: list[str], a: int, b: int, first_row: int) -> memoryview:
    """``<row>`` elements of rows ``a:b``, built column-wise by Arrow's string kernels."""
    row = pa.array(np.arange(first_row, first_row + b - a)).cast(pa.string())
    parts: list = ['<row r="', row, '">']
    for letter, col in zip(letters, cols):
        values = col.values.slice(a, b - a)
        if isinstance(col.number, pa.Array):
            cell = pc.if_else(pc.fill_null(col.number.slice(a, b - a), False),
                              _cells(letter, row, values, col.style, number=True),
                              _cells(letter, row, values, col.style, number=False))
        else:
            cell = _cells(letter, row, values, col.style, number=col.number)
        parts.append(pc.fill_null(cell, ""))
    parts.append("</row>")
    return _chunk_bytes(pc.binary_join_element_wise(*parts, ""))
