"""The simulated plant: cars, their route through the checkpoints, their tests and their defects.

Everything is drawn from the generator's random streams with numpy, never a Python loop over rows.
What is measured after the road test (ROD, AGUA and ZP8 defects, ``SECTION_ZP8`` results, later
status events) is drawn by chance alone; the road-test failures themselves are added from the label
(:func:`with_label_defects`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from ..config import Settings

_NOK_SHARE = 0.006
_NOK_SHAPE = 0.31  # gamma shape of a car's NOK rate: ~40 % of full-size cars have none
_NO_ROAD_TEST = 0.005
_DOUBLED = 0.8
#: Repair points a car may loop back to before the road test (a stage's checkpoint), and their weights.
_REWORK = (("L66A", .25), ("L534", .10), ("M591", .20), ("M600", .10), ("M643", .10), ("M695", .10), ("M700", .15))
_REWORK_SHARE = 0.2  # cars looping back at least once
_REWORK_AGAIN = 0.3  # of those, cars looping back a second time

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
STATION_NAMES = sorted({s for v in _STATIONS.values() for s in v.split()})
#: Inspectors' badges (20xxxxx, 40xxxxx); the last is the automatic test bench's user, at station STOL.
USERS = [str(u) for u in np.random.default_rng(7).integers(0, 60_000, 40) + np.tile([2_020_000, 4_000_000], 20)]
USERS += ["FHQWRAP"]
#: Failure groups (S_GROUP_ID); CAB defects are mostly 9830946.
S_GROUPS = ("4", "5", "2", "1", "-2", "133", "140", "137")
#: Paint codes (COR) and their shares.
_COLORS = ("K2K2 2R2R 0Q0Q A1A1 5T5T 2RA1 K2A1 0QA1 8E8E 6K6K 5TA1 6KA1".split(),
           (.19, .19, .19, .11, .07, .04, .04, .03, .03, .05, .03, .03))


# -- the cars -------------------------------------------------------------------------------------

def fleet(rng: np.random.Generator, cars: int, start: pd.Timestamp) -> SimpleNamespace:
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


def route(settings: Settings) -> list[tuple[list[list[str]], float | None, float]]:
    """The line's stages with the settings' road-test code, and any zone checkpoint it lacks."""
    stages = [([alt.replace("ROAD", settings.road_test_code).split("+") for alt in codes.split()], share, minutes)
              for codes, share, minutes in _ROUTE]
    present = {c for alts, _, _ in stages for alt in alts for c in alt}
    missing = sorted({c for codes in settings.zones.values() for c in codes} - present)
    at = next(i for i, (alts, _, _) in enumerate(stages) if alts == [["G700"]])
    return stages[:at] + [([[c]], 0.5, 15) for c in missing] + stages[at:]


def checkpoints(rng: np.random.Generator, a600: np.ndarray, settings: Settings) -> SimpleNamespace:
    """Every car's checkpoint events (distinct, in time order) and the time of every stage."""
    stages = route(settings)
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
        return times[:, stage_of(stages, code_name)]

    first_code = [np.array([code_id[alt[0]] for alt in alts]) for alts, _, _ in stages]
    stage_code = np.stack([first_code[s][choice[:, s]] for s in range(count)], axis=1)
    return SimpleNamespace(car=car[order], code=code[order], t=t[order], codes=codes, time_of=time_of,
                           road_tested=road_tested, stage_times=times, stage_code=stage_code)


def stage_of(stages: list, code_name: str) -> int:
    """Index of the first stage where ``code_name`` is one of the alternatives."""
    return next(i for i, (alts, _, _) in enumerate(stages) if any(code_name in a for a in alts))


def with_rework(rng: np.random.Generator, line: SimpleNamespace, settings: Settings) -> SimpleNamespace:
    """The line with repair loops: some cars pass a checkpoint again before the road test.

    A loop sends a car back to a repair point it passed (``_REWORK``); the second passage falls
    between one and four stages later, never after ``G700``, so the code appears twice in status
    before the road test. Events stay distinct and sorted by car, time and code.
    """
    stages = route(settings)
    n = len(line.road_tested)
    loops = (rng.random(n) < _REWORK_SHARE).astype(np.int64) * (1 + (rng.random(n) < _REWORK_AGAIN))
    car = np.repeat(np.arange(n), loops)
    weights = np.array([w for _, w in _REWORK])
    point = rng.choice(len(_REWORK), size=len(car), p=weights / weights.sum())
    stage = np.array([stage_of(stages, code) for code, _ in _REWORK])[point]
    last = stage_of(stages, "G700")
    end = np.minimum(stage + 1 + rng.integers(1, 4, len(car)), last)
    low, high = line.stage_times[car, stage + 1], line.stage_times[car, end]
    t = low + (rng.random(len(car)) * (high - low)).astype(np.int64)
    events = np.stack([np.r_[line.car, car], np.r_[line.t, t], np.r_[line.code, line.stage_code[car, stage]]])
    events = np.unique(events, axis=1)  # sorted by car, time, code; a loop never repeats an event
    return SimpleNamespace(**{**vars(line), "car": events[0], "t": events[1], "code": events[2]})


# -- resultados -----------------------------------------------------------------------------------

def test_plan(results_per_car: int | None, settings: Settings) -> SimpleNamespace:
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


def test_results(rng: np.random.Generator, plan: SimpleNamespace, a600: np.ndarray, line: SimpleNamespace):
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

def defect_texts() -> tuple[list[str], dict[str, tuple[int, int]]]:
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
    texts, where = defect_texts()
    group = [_TEXT_GROUP.get(h, h) if _TEXT_GROUP.get(h, h) in _TEXTS else "ZP7" for h in halls]
    offset, count = (np.array([where[g][k] for g in group])[hall] for k in (0, 1))
    pools = [[STATION_NAMES.index(s) for s in _STATIONS[g].split()] for g in group]
    pool_start = np.cumsum([0] + [len(p) for p in pools])[:-1][hall]
    pool_size = np.array([len(p) for p in pools])[hall]
    size = len(car)
    return SimpleNamespace(
        car=car, hall=hall, text=offset + (rng.random(size) * count).astype(np.int64),
        t_ms=start * 1000 + (rng.random(size) * (end - start) * 1000).astype(np.int64),
        station=np.array(sum(pools, []), dtype=np.int64)[pool_start + (rng.random(size) * pool_size).astype(np.int64)],
        user=rng.integers(0, len(USERS) - 1, size), group_id=rng.integers(0, len(S_GROUPS), size),
        group_multi=rng.random(size) < .01, group_number=rng.random(size) < .5,
        doubled=rng.random(size) < _DOUBLED, upper_single=rng.random(size) < .5, halls=halls)


def defects(rng: np.random.Generator, line: SimpleNamespace, settings: Settings) -> SimpleNamespace:
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


def with_label_defects(rng: np.random.Generator, defects: SimpleNamespace, label: np.ndarray,
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
#: After a failed road test: line checkpoints passed again (minutes after G720), defects found in the
#: rework (per car, and within how many minutes), screw tests tightened again (per car).
_ROAD_REWORK_ROUTE = (("M695", 20), ("M701", 60), ("M711", 90))
_ROAD_REWORK_DEFECTS, _ROAD_REWORK_WINDOW = 0.8, 90
_ROAD_REWORK_TESTS = 1.5


def with_road_rework(rng: np.random.Generator, line: SimpleNamespace, plan: SimpleNamespace,
                     results: SimpleNamespace, defects: SimpleNamespace, label: np.ndarray,
                     settings: Settings) -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """Send every car that failed its road test back to the line, as the plant does (DATA.md).

    After its road test (from G720 on) such a car passes ZP7's checkpoints again and is road-tested
    a second time; inspectors log defects in ZP7; screws are tightened again, a tightening NOK then
    OK. These rows exist only for failing cars and only after the road test: they carry the
    outcome, and an implementation that lets one reach a feature learns the label.
    """
    failed = np.nonzero(label)[0]
    back = line.time_of("G720")[failed] + rng.integers(5, 30, len(failed)) * 60
    codes = list(line.codes)
    steps = [(code, minutes) for code, minutes in _ROAD_REWORK_ROUTE if code in codes]
    steps.append((settings.road_test_code, 180))
    car = np.repeat(failed, len(steps))
    t = np.repeat(back, len(steps)) + np.tile([m * 60 for _, m in steps], len(failed))
    code = np.tile([codes.index(c) for c, _ in steps], len(failed))
    events = np.unique(np.stack([np.r_[line.car, car], np.r_[line.t, t], np.r_[line.code, code]]), axis=1)
    line = SimpleNamespace(**{**vars(line), "car": events[0], "t": events[1], "code": events[2]})

    found = np.repeat(failed, 1 + rng.poisson(_ROAD_REWORK_DEFECTS, len(failed)))
    starts = back[np.searchsorted(failed, found)]
    rework = _defect_rows(rng, found, np.full(len(found), defects.halls.index("ZP7")), defects.halls,
                          starts, starts + _ROAD_REWORK_WINDOW * 60)
    defects = SimpleNamespace(**{k: np.concatenate([getattr(defects, k), getattr(rework, k)]) for k in _ROW_FIELDS},
                              halls=defects.halls)

    screws = np.unique(plan.group[plan.id == 2])
    tested = np.repeat(failed, 1 + rng.poisson(_ROAD_REWORK_TESTS - 1, len(failed)))
    if len(screws):  # a small test plan may hold no screw test
        group = rng.choice(screws, len(tested))
        size = np.bincount(plan.group, minlength=plan.group.max() + 1)[group]
        first = np.searchsorted(plan.group, group)
        instance = np.repeat(np.arange(len(group)), 2 * size)
        nth = np.arange(len(instance)) - np.repeat(np.cumsum(2 * size) - 2 * size, 2 * size)
        retest = nth >= size[instance]
        prow = first[instance] + nth % size[instance]
        when = back[np.searchsorted(failed, tested)] + rng.integers(5, 60, len(tested)) * 60
        t_rows = when[instance] + retest * rng.integers(60, 1200, len(tested))[instance]
        nok = ~retest & (nth == 0)
        value = np.rint(rng.normal(plan.mu[prow], plan.sd[prow]) * 10.0 ** plan.places[prow]).astype(np.int64)
        added = {"car": tested[instance], "prow": prow, "t": t_rows, "status": np.where(nok, 13, 10),
                 "value": value, "flag": np.where(plan.has_value[prow], 0, 2),
                 "multi_id": np.zeros(len(prow), dtype=bool)}
        results = SimpleNamespace(**{k: np.concatenate([old, added[k].astype(old.dtype)])
                                     for k, old in ((k, getattr(results, k)) for k in added)})
    return line, results, defects


def take_defects(defects: SimpleNamespace, mask: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(**{k: getattr(defects, k)[mask] for k in _ROW_FIELDS}, halls=defects.halls)


def until_ms(until: str) -> int:
    """First millisecond no longer exported: the day after a date, the moment after a time."""
    moment = pd.Timestamp(until)
    if len(str(until).strip()) <= 10:
        return (moment.normalize() + pd.Timedelta(days=1)).value // 10**6
    return moment.value // 10**6 + 1
