"""Synthetic uploads in the plant's real layouts, and the truth they were drawn from.

:func:`make_demo_upload` writes what the plant's quality system exports for a run of cars
(resultados, falhas and status with the layouts, quirks and volumes of DATA.md) and ``truth.csv``:
each car's true probability of a road-test failure and the contract values that an exact
implementation of DATA.md must compute from those files. The truth is worked out here from the
generator's own clean rows, independently of :mod:`kafer.features`. The tests, the benchmarks and
``make retrain``'s demo use it.

The label carries a weak, learnable signal from what is known before the road test only: by default
the contract's counts and dwell times, or (``signal_in``) the configuration, which tests were NOK,
rework loops and shifts, or which defect texts at which station, the carriers drawn from the seed
and written to ``signal.json``. Whatever is measured after the road test (ROD, AGUA and ZP8
defects, ``SECTION_ZP8`` results, later status events) is drawn by chance alone, but for one thing:
as in the plant, a car that failed its road test is sent back to the line, and its rework rows
(ZP7 checkpoints and defects, screws tightened again, after its road test) carry the outcome.
Everything comes from one seed and is built with numpy and Arrow string kernels, never a Python
loop over rows; workbooks are written as SpreadsheetML directly
(inline strings), which is some thirty times faster than a workbook library.

One module each: :mod:`.plant` simulates the line (repair loops included), :mod:`.signal` plants
the risk, :mod:`.truth` works out what an exact implementation must find, :mod:`.exports` cuts the
rows into the plant's export pieces, and :mod:`.csvfile` and :mod:`.xlsxfile` write them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..config import Settings, load_settings
from ..errors import ConfigError, KaferError
from . import exports, plant, truth, xlsxfile
from .signal import PLACEMENTS, planted

#: Sub-folder of ``out`` that holds the export files (``truth.csv`` sits beside it).
DEMO_UPLOAD = "upload"
#: ``plant``: the plant's real mix of formats; ``csv`` / ``xlsx``: every file in that format.
LAYOUTS = ("plant", "csv", "xlsx")


@dataclass(frozen=True)
class DemoUpload:
    """Where a demo upload was written."""

    folder: Path
    """The folder holding the export files."""
    files: tuple[Path, ...]
    """The export files (not the truth file)."""
    truth: Path
    """``truth.csv``: one row per car, its true probability and the contract values."""
    signal: Path
    """``signal.json``: where the risk was planted and which facts carry it."""


def make_demo_upload(out: str | Path, *, cars: int = 2000, seed: int = 0, start: str = "2024-04-01",
                     signal: float = 1.0, layout: str = "plant", sheet_rows: int | None = None,
                     falhas_until: str | None = None, results_per_car: int | None = None,
                     signal_in: tuple[str, ...] = ("contract",), settings: Settings | None = None,
                     fixed: Iterable[str] = (), fixed_share: float = 1.0) -> DemoUpload:
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
    signal_in : tuple of str
        Where the risk is planted, some of :data:`PLACEMENTS`: ``contract`` (the contract's counts
        and dwell times), ``configuration`` (an engine × colour, a colour), ``tests`` (NOKs of three
        tests and a test family), ``route`` (loops through two repair points, every loop, a shift at
        a zone), ``defects`` (two defect texts in their halls, a station). Which ones carry the risk
        is drawn from the seed and written to ``out/signal.json``.
    settings : Settings, optional
        Zones, hall groups, road-test code and label hall (default: :func:`load_settings`).
    fixed : iterable of str
        KNRs an inspection list flagged, and inspectors fixed before their road test: each one's
        road-test failure, if it had one, is prevented with chance ``fixed_share`` (drawn per car from
        the seed). Nothing known before the road test changes, nor whether any other car fails: the same
        seed with and without ``fixed`` is the same plant, the list acted on or not.
    fixed_share : float
        Chance that the inspection prevents a fixed car's failure.

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
    if sheet_rows <= max(xlsxfile.TOP_ROWS.values()):
        raise ConfigError(f"sheet_rows must be more than {max(xlsxfile.TOP_ROWS.values())}, not {sheet_rows}")
    if results_per_car is not None and results_per_car < 4:
        raise ConfigError(f"results_per_car must be at least 4, not {results_per_car}")
    if signal < 0:
        raise ConfigError(f"signal must not be negative, not {signal}")
    if not 0 <= fixed_share <= 1:
        raise ConfigError(f"fixed_share must lie between 0 and 1, not {fixed_share}")
    if isinstance(signal_in, str) or not signal_in or not set(signal_in) <= set(PLACEMENTS):
        raise ConfigError(f"signal_in must name some of {', '.join(PLACEMENTS)}, not {signal_in!r}")
    signal_in = tuple(dict.fromkeys(signal_in))
    out = Path(out)
    folder = out / DEMO_UPLOAD
    if folder.exists() and any(folder.iterdir()):
        raise KaferError(f"{folder} already holds files; give an empty or new folder for the demo upload")

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]
    fleet = plant.fleet(streams[0], cars, pd.Timestamp(start).normalize())
    line = plant.with_rework(streams[6], plant.checkpoints(streams[1], fleet.a600, settings), settings)
    plan = plant.test_plan(results_per_car, settings)
    results = plant.test_results(streams[2], plan, fleet.a600, line)
    defects = plant.defects(streams[3], line, settings)
    measured = truth.result_counts(results, plan, cars).join(truth.dwell(line, cars, settings))
    before = truth.falhas_counts(defects, cars, settings, measured["road_t"])
    contract = truth.contract_score(measured.join(before))
    score, carriers = planted(streams[7], signal_in, contract=contract, fleet=fleet, line=line, plan=plan,
                              results=results, found=defects, settings=settings)
    p_true = truth.p_true(score, signal)
    label = (streams[4].random(cars) < p_true) & line.road_tested
    fixed = set(fixed)
    if fixed:  # an acted-on list: its flagged cars' failures prevented before their road test, by chance
        prevented = np.random.default_rng([seed, 27]).random(cars) < fixed_share
        label &= ~(np.isin(fleet.knr, list(fixed)) & prevented)
    defects = plant.with_label_defects(streams[4], defects, label, line, settings)
    line, results, defects = plant.with_road_rework(streams[8], line, plan, results, defects, label, settings)
    if falhas_until is not None:
        defects = plant.take_defects(defects, defects.t_ms < plant.until_ms(falhas_until))

    table = truth.truth_table(fleet, p_true, measured, defects, cars, settings)
    folder.mkdir(parents=True, exist_ok=True)
    files = exports.write_exports(streams[5], folder, layout, sheet_rows, fleet, line, plan, results, defects)
    truth_path = out / "truth.csv"
    table.to_csv(truth_path, index=False)
    signal_path = out / "signal.json"
    signal_path.write_text(json.dumps({"signal": signal, "signal_in": list(signal_in), "seed": seed,
                                       "carriers": carriers, "fixed": len(fixed), "fixed_share": fixed_share},
                                      indent=2, default=str), encoding="utf-8")
    return DemoUpload(folder=folder, files=tuple(files), truth=truth_path, signal=signal_path)
