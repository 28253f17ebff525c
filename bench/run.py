"""Benchmarks: `make bench` prints the figures the issues ask for.

1. Ingest speed and memory on a month-sized upload (6,000 cars, ~5.5 M resultados rows) against
   merely parsing the same files once, in two shapes: the generator's plant layout (resultados as a
   csv.gz and a titled multi-sheet workbook, status and falhas as workbooks, falhas again as a ``;``
   csv), and the resultados as one csv.gz, status and falhas as multi-sheet workbooks (a workbook
   makes the parse floor slow and hides a slow ingest; a csv.gz does not).
   At scale (``--only scale``): six such months given to one ``kafer ingest``, against the six
   ingested one after another, the read-check-stage-land half alone, and the bare parse.
   A plant's history (``--only history``): a thirteenth month into an empty lake and into a lake
   holding twelve, and a rebuild of the twelve-month lake from its raw zone.
2. Model quality against the truth on the 2,000-car demo: the candidate's ROC-AUC as a share of the
   way from chance to the AUC of the true probabilities on the same evaluation cars, per family;
   pure-chance labels; and the retrain's time.
3. Where the signal hides (issue 9): on held-out uploads (seeds used nowhere in development) with
   the risk planted in the contract's counts, the configuration, the tests NOK, the route or the
   defect texts, the same share, which feature families the comparison says stand out, and
   whether the planted one is among them, on month-sized uploads (6,000 cars).
4. Families compared on the same time-ordered validation cars (``--family auto``) per placement;
   ``--only ensemble``: hgb against the ensemble on held-out uploads, paired differences with intervals.
   What is known at the road test (``--only timerule``): the demo, each placement's held-out upload and
   pure chance, with every row of a car in its features and with only its rows before its road test.
5. What people wait for, the default family (hgb) and the ensemble side by side (``--only costs``):
   ``kafer predict`` of one new car, of 2,000 new cars and ``--car`` of one car the lake holds, whole
   commands, reasons included; ``03_retrain`` and ``04_compare`` on the demo and a month-sized upload;
   peak memory of each. ``--only install``: the time and ``.venv`` size of ``make retrain``'s and
   ``make test``'s installs from the lock files.
6. The one real per-car table (peer-samples/g05): what of the new families it allows, and what
   that gives on a time split.
7. The track record (``--only monitor``): ``kafer monitor`` on a twelve-month lake; its false-warning
   rate on independent months drawn like the training month, and on such months whose plant fails
   half or twice as often with the ranking unchanged; the months it needs to warn once the plant's
   failures come from somewhere else. ``--only warnings``: these figures alone.
8. A month through the desk's upload library (``--only uploads``): the month-sized upload received in
   1 MiB pieces (time, peak memory of the receiving process), the unpacked-size checks alone, and the
   check with ingest's reader (in the process, and in a child process as a server would run it).
9. Inspection lists (``--only lists``): a shadow month of daily lists through ``kafer predict --watch``,
   then the go/no-go verdict; the lift over random of lists acted on, with and without an audit share;
   the track record once the lists were acted on and their cars fixed, with and without the correction.
10. The shared desk (``--only desk``): five people signed in with local accounts, each with the page
    open, in Chromium: the memory of the desk's server and of each page's kernel (RSS, and PSS, which
    counts shared pages once), whether the kernels load TensorFlow, and the time from signing in to
    the page ready, for the default family (boosting) and for the ensemble; and for the default
    family once a month was ingested after the last retrain with production's scores of it not kept
    (``kafer ingest`` keeps them; a lake an older Käfer fed may not have them): the first page scores
    those cars and keeps the scores for the others.
11. The whole loop on the desk's pages (``--only deskloop``): a month-sized upload dropped on the
    Bring exports page (sent in the page's pieces), checked, retrained as the server's job, until the
    decision page shows the new model, in Chromium; against ``kafer retrain`` of the same upload from
    the terminal (both into an empty lake), and the desk server's peak memory (RSS) while it
    receives and checks the upload.

Uploads are made once by the project's own generator and kept in bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
KAFER = [sys.executable, "-m", "kafer.cli"]


#: Where the risk is planted, one upload each (``+`` joins placements).
PLACEMENTS = ("contract", "configuration", "tests", "route", "defects", "configuration+tests+route+defects")
#: Seeds of the held-out uploads: used by no test and in no development run.
HELD_OUT = (7201, 7202, 7203)
#: Seeds of the uploads that judge the default family: the ensemble was chosen on other seeds.
ENSEMBLE_HELD_OUT = (8101, 8102)
REAL = Path("/work/shared/reference/peer-samples/g05/falha_processadas_parquet_full.csv.gz")


def upload(name: str, *, cars: int, seed: int, signal: float = 1.0, start: str = "2024-04-01",
           signal_in: str = "contract", layout: str = "plant") -> Path:
    """A generator upload in bench/out/<name>, made once (in a child process, like all heavy work)."""
    folder = OUT / name
    if not (folder / "truth.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        seconds, _, _ = timed(KAFER + ["demo-data", str(folder), "--cars", str(cars), "--seed", str(seed),
                                       "--signal", str(signal), "--start", start,
                                       "--signal-in", signal_in.replace("+", ","), "--layout", layout])
        print(f"  (made {name} in {seconds:.0f} s)")
    return folder


#: Rows per sheet of the csv.gz shape's workbooks: status and falhas then span several sheets.
CSV_SHAPE_SHEET_ROWS = 40_000


def csv_shape(cars: int, seed: int) -> Path:
    """The month of ``seed`` with its resultados as one csv.gz, made once (in a child process).

    The generator writes the same rows in every layout: its ``csv`` layout gives the resultados
    (joined into one gzip csv with pandas' ``Unnamed: 0`` index), its ``xlsx`` layout the status and
    falhas workbooks, with sheets of :data:`CSV_SHAPE_SHEET_ROWS` rows.
    """
    folder = OUT / f"month-{cars}-csvgz"
    if not (folder / "truth.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        seconds, _, _ = timed([sys.executable, __file__, "--csv-shape", str(folder), str(cars), str(seed)])
        print(f"  (made {folder.name} in {seconds:.0f} s)")
    return folder


def make_csv_shape(folder: Path, cars: int, seed: int) -> None:
    """Write :func:`csv_shape`'s upload into ``folder``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from kafer.demo import make_demo_upload
    from kafer.demo.csvfile import Column, write_csv

    parts = {layout: make_demo_upload(folder / f"parts-{layout}", cars=cars, seed=seed, layout=layout,
                                      sheet_rows=CSV_SHAPE_SHEET_ROWS) for layout in ("csv", "xlsx")}
    (folder / "upload").mkdir()
    for path in parts["xlsx"].files:
        if not path.name.startswith("RESULTADOS"):
            path.rename(folder / "upload" / path.name)
    pieces = sorted(p for p in parts["csv"].files if p.name.startswith("RESULTADOS"))
    rows = pa.concat_tables(pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in ("KNR", "NAME", "ID", "STATUS", "UNIT", "VALUE_ID", "VALUE", "DATA")},
        strings_can_be_null=True)) for p in pieces)
    first, last = pieces[0].name.split("_")[1], pieces[-1].name.split("_")[2].split(".")[0]
    write_csv(folder / "upload" / f"RESULTADOS_{first}_{last}.csv.gz", rows.column_names,
              [Column(rows[c].combine_chunks()) for c in rows.column_names], sep=",", encoding="utf-8", index=True)
    parts["csv"].truth.rename(folder / "truth.csv")
    for layout in parts:
        shutil.rmtree(folder / f"parts-{layout}")


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "upload").iterdir() if p.is_file())


def parse_only(files: list[Path]) -> float:
    """Seconds to parse every file once: pyarrow for csv/csv.gz, python-calamine for xlsx."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from python_calamine import CalamineWorkbook

    started = time.monotonic()
    for path in files:
        if path.suffix == ".xlsx":
            book = CalamineWorkbook.from_path(str(path))
            for sheet in book.sheet_names:
                book.get_sheet_by_name(sheet).to_python()
        else:
            data = path.read_bytes()
            compression = "gzip" if path.name.endswith(".gz") else None
            delimiter = ";" if b";" in data[:200] and compression is None else ","
            pacsv.read_csv(pa.input_stream(pa.py_buffer(data), compression=compression),
                           read_options=pacsv.ReadOptions(encoding="cp1252" if delimiter == ";" else "utf8"),
                           parse_options=pacsv.ParseOptions(delimiter=delimiter))
    return time.monotonic() - started


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of this one child (from ``wait4``), and its output."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def bench_ingest(cars: int) -> None:
    for shape, folder in (("plant layout (resultados csv.gz + workbook)", upload(f"month-{cars}", cars=cars, seed=11)),
                          ("resultados as one csv.gz", csv_shape(cars, seed=11))):
        print(f"\n== Ingest: month-sized upload, {cars:,} cars, {shape}")
        ingest_figures(folder)


def ingest_figures(folder: Path) -> None:
    """Parse floor, ingest time and peak memory, and a second ingest of the same files, for one upload.

    The machine is shared: parse and ingest are taken twice, in turn, and the better of each kept
    (peak memory: the higher of the two ingests).
    """
    files = files_of(folder)
    size = sum(p.stat().st_size for p in files) / 1e6
    print(f"  files: {', '.join(p.name for p in files)} ({size:,.0f} MB)")
    lake = OUT / "lake-ingest"
    parses, ingests = [], []
    for _ in range(2):
        parses.append(float(timed([sys.executable, __file__, "--parse-only", *map(str, files)])[2]))
        shutil.rmtree(lake, ignore_errors=True)
        ingests.append(timed(KAFER + ["ingest", *map(str, files), "--lake", str(lake)])[:2])
    parse, seconds, peak = min(parses), min(s for s, _ in ingests), max(m for _, m in ingests)
    rows = sum(json.loads(p.read_text())["rows"] for p in (lake / "raw" / "index").glob("*.json"))
    print(f"  rows read: {rows:,}")
    print(f"  parse only (pyarrow / python-calamine): {parse:6.1f} s")
    print(f"  kafer ingest (read, check, land, merge): {seconds:6.1f} s  = {seconds / parse:.2f} x parse   (bar: 2 x)")
    print(f"  peak memory of the ingest process:       {peak:6.0f} MB            (bar: 3,072 MB)")
    seconds, _, _ = timed(KAFER + ["ingest", *map(str, files), "--lake", str(lake)])
    print(f"  the same upload again (recognized, nothing new): {seconds:.1f} s")


def compare_lakes(first: str, second: str) -> bool:
    """Whether two lakes hold the same bytes: the current per-car table and facts, and every landed
    file's rows (a check that a change to the ingest leaves what it builds as it was)."""
    from kafer.catalog import current_version, raw_records
    from kafer.lake import Lake

    lakes = [Lake(first), Lake(second)]
    versions = [current_version(lake) for lake in lakes]
    pairs = [(f"curated {name}", f"curated/features/{versions[0]}/{name}", f"curated/features/{versions[1]}/{name}")
             for name in ("features.parquet", "facts.parquet")]
    records = [{r["sha256"]: r for r in raw_records(lake)} for lake in lakes]
    same = set(records[0]) == set(records[1])
    print(f"  the same landed files: {'yes' if same else 'NO'} ({len(records[0])} and {len(records[1])})")
    pairs += [(f"raw rows of {r['name']}", r["keys"]["rows"], r["keys"]["rows"])
              for sha, r in sorted(records[0].items()) if sha in records[1]]
    for what, a, b in pairs:
        equal = lakes[0].read_bytes(a) == lakes[1].read_bytes(b)
        same &= equal
        print(f"  {what}: {'the same bytes' if equal else 'DIFFERENT'}")
    return same


def bench_scale(cars: int, months: int = 6) -> None:
    from kafer.catalog import current_features
    from kafer.lake import Lake

    print(f"\n== Scale: {months} month-sized uploads of {cars:,} cars, at once and month by month")
    folders = month_uploads(cars, range(1, months + 1))
    files = [str(p) for folder in folders for p in files_of(folder)]
    size = sum(Path(f).stat().st_size for f in files) / 1e6
    print(f"  files: {len(files)} ({size:,.0f} MB)")
    parse = float(timed([sys.executable, __file__, "--parse-only", *files])[2])
    monthly, monthly_peak = 0.0, 0.0
    lake_monthly = OUT / "lake-scale-monthly"
    shutil.rmtree(lake_monthly, ignore_errors=True)
    for folder in folders:
        seconds, peak, _ = timed(KAFER + ["ingest", *map(str, files_of(folder)), "--lake", str(lake_monthly)])
        monthly += seconds
        monthly_peak = max(monthly_peak, peak)
    lake_once = OUT / "lake-scale-once"
    shutil.rmtree(lake_once, ignore_errors=True)
    once, once_peak, _ = timed(KAFER + ["ingest", *files, "--lake", str(lake_once)])
    lake_land = OUT / "lake-scale-land"
    shutil.rmtree(lake_land, ignore_errors=True)
    land, land_peak, _ = timed([sys.executable, __file__, "--land-only", str(lake_land), *files])
    rows = sum(json.loads(p.read_text())["rows"] for p in (lake_once / "raw" / "index").glob("*.json"))
    same = current_features(Lake(str(lake_once))).equals(current_features(Lake(str(lake_monthly))))
    print(f"  rows read: {rows:,}")
    print(f"  parse only (pyarrow / python-calamine):  {parse:6.1f} s")
    print(f"  {months} monthly ingests one after another:  {monthly:6.1f} s, peak {monthly_peak:6,.0f} MB")
    print(f"  one kafer ingest of all {months} months:      {once:6.1f} s, peak {once_peak:6,.0f} MB"
          f"   = {once / monthly:.2f} x monthly (bar: 1.2 x), {once / parse:.2f} x parse; peak bar: 4,096 MB")
    print(f"  of which read, check, stage, land alone: {land:6.1f} s, peak {land_peak:6,.0f} MB")
    print(f"  the same per-car table both ways: {'yes' if same else 'NO'}   (bar: yes)")


def month_uploads(cars: int, months: range) -> list[Path]:
    """Month-sized uploads, one a calendar month from January 2024 (shared by the scale benchmarks)."""
    return [upload(f"scale-{cars}-{m}", cars=cars, seed=100 + m, start=f"{2024 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-01")
            for m in months]


def bench_history(cars: int, months: int = 12) -> None:
    print(f"\n== A plant's history: {months} months of {cars:,} cars, then one more month, then a rebuild")
    folders = month_uploads(cars, range(1, months + 2))
    year = OUT / "lake-history"
    shutil.rmtree(year, ignore_errors=True)
    for folder in folders[:-1]:
        timed(KAFER + ["ingest", *map(str, files_of(folder)), "--lake", str(year)])
    last = [str(p) for p in files_of(folders[-1])]
    parse = float(timed([sys.executable, __file__, "--parse-only", *last])[2])
    into_empty, into_year = [], []
    for attempt in range(2):  # the machine is shared: the better of two of each, taken in turn
        empty = OUT / "lake-history-empty"
        shutil.rmtree(empty, ignore_errors=True)
        into_empty.append(timed(KAFER + ["ingest", *last, "--lake", str(empty)])[:2])
        grown = OUT / "lake-history-grown"
        shutil.rmtree(grown, ignore_errors=True)
        shutil.copytree(year, grown)
        into_year.append(timed(KAFER + ["ingest", *last, "--lake", str(grown)])[:2])
    (e_s, e_peak), (y_s, y_peak) = min(into_empty), min(into_year)
    print(f"  parse only (the month's files):            {parse:6.1f} s")
    print(f"  a month into an empty lake:                {e_s:6.1f} s, peak {e_peak:6,.0f} MB")
    print(f"  the same month into a {months}-month lake:      {y_s:6.1f} s, peak {y_peak:6,.0f} MB"
          f"   = {y_s / e_s:.2f} x (bar: 1.1 x)")
    seconds, peak, _ = timed(KAFER + ["rebuild", "--lake", str(year)])
    rows = sum(json.loads(p.read_text())["rows"] for p in (year / "raw" / "index").glob("*.json"))
    print(f"  kafer rebuild of the {months}-month lake ({rows:,} rows): {seconds:6.1f} s, peak {peak:6,.0f} MB"
          "   (bar: 4,096 MB)")


def land_only(lake: str, files: list[str]) -> None:
    """Read, check, stage and land an upload without merging it (the first half of an ingest)."""
    from kafer.config import load_settings
    from kafer.ingest import land, receive
    from kafer.lake import Lake

    settings = load_settings()
    land(receive(files, lake=Lake(lake), settings=settings), lake=Lake(lake), settings=settings)


def auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def retrained(folder: Path, name: str, family: str | None, *, keep: bool = False) -> dict:
    """Retrain on the upload in a fresh lake; the run's figures against the truth.

    The lake (a copy of the upload and more) is deleted afterwards unless ``keep``: dozens of
    month-sized runs would otherwise fill the disk.
    """
    import pandas as pd

    root = OUT / f"run-{name}-{family}"
    shutil.rmtree(root, ignore_errors=True)
    cmd = KAFER + ["retrain", str(folder / "upload"), "--lake", str(root / "lake"), "--runs", str(root / "runs")]
    seconds, peak, _ = timed(cmd + (["--family", family] if family else []))
    run = next((root / "runs").iterdir())
    predictions = pd.read_csv(run / "predictions.csv", dtype={"KNR": str})
    truth = pd.read_csv(folder / "truth.csv", dtype={"KNR": str})
    both = predictions.merge(truth[["KNR", "p_true"]], on="KNR")
    metrics = json.loads((run / "metrics.json").read_text())
    model_auc, oracle = auc(both["y_true"], both["p_candidate"]), auc(both["y_true"], both["p_true"])
    if not keep:
        shutil.rmtree(root / "lake")
    return {"seconds": seconds, "peak": peak, "steps": json.loads((run / "manifest.json").read_text())["steps"],
            "cars": len(both), "failures": int(both["y_true"].sum()), "auc": model_auc, "oracle": oracle,
            "share": (model_auc - 0.5) / (oracle - 0.5) if oracle > 0.5 else float("nan"), "metrics": metrics}


def bench_quality(cars: int, signal: float, family: str | None) -> dict:
    label = "pure chance" if signal == 0 else f"planted signal {signal}"
    print(f"\n== Model quality: {cars:,} cars, {label}, family {family or 'default'}")
    folder = upload(f"quality-{cars}-{signal}", cars=cars, seed=5, signal=signal)
    out = retrained(folder, f"quality-{cars}-{signal}", family, keep=family is None and signal > 0)
    print(f"  retrain end to end: {out['seconds']:.1f} s, peak {out['peak']:,.0f} MB; steps: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in out["steps"].items()) + "   (bar: 180 s)")
    choice = out["metrics"]["models"]["candidate"]["family_choice"]
    print(f"  family trained: {choice['chosen']} ({choice['rule']})")
    print(f"  evaluation cars: {out['cars']:,}, failures among them: {out['failures']}")
    if signal == 0:
        print(f"  candidate ROC-AUC {out['auc']:.3f}   (bar: between 0.40 and 0.60 - nothing of the label leaks)")
        return out
    print(f"  candidate ROC-AUC {out['auc']:.3f}, true-probability ROC-AUC {out['oracle']:.3f}")
    print(f"  share of the way from chance to the truth: {out['share']:.0%}   (bar: 80 %)")
    return out


def standing_out(metrics: dict) -> list[str]:
    return [f["group"] for f in metrics["drivers"]["families"] if f["stands_out"]]


def bench_signal(cars: int, seeds: tuple[int, ...]) -> None:
    """The share of the way to the truth where the risk hides in each family, on held-out uploads."""
    print(f"\n== Where the signal hides: held-out uploads of {cars:,} cars (seeds {', '.join(map(str, seeds))}), "
          "default family")
    print(f"  {'placement':<34} {'seed':>5} {'cars':>5} {'fail':>4} {'model':>6} {'truth':>6} {'share':>6}  "
          "families that stand out (planted found?)  retrain")
    for placement in PLACEMENTS + ("chance",):
        shares = []
        for seed in seeds:
            signal = 0.0 if placement == "chance" else 1.0
            name = f"signal-{placement}-{cars}-{seed}"
            folder = upload(name, cars=cars, seed=seed, signal=signal,
                            signal_in="contract" if placement == "chance" else placement)
            out = retrained(folder, name, None)
            stand = standing_out(out["metrics"])
            planted = set(placement.split("+")) if placement != "chance" else set()
            hits = len(planted & set(stand))
            found = "" if placement == "chance" else f" ({'yes' if hits == len(planted) else f'{hits} of {len(planted)}'})"
            share = "" if placement == "chance" else f"{out['share']:6.0%}"
            shares.append(out["share"])
            print(f"  {placement:<34} {seed:>5} {out['cars']:>5} {out['failures']:>4} {out['auc']:6.3f} "
                  f"{out['oracle']:6.3f} {share:>6}  {', '.join(stand) or 'nothing stands out'}{found}"
                  f"  {out['seconds']:.0f} s")
        if placement != "chance":
            print(f"  {'':<34} {'mean':>5} {'':>5} {'':>4} {'':>6} {'':>6} {sum(shares) / len(shares):6.0%}"
                  "   (bar: 80 %)")
    print("  chance: candidate ROC-AUC must lie between 0.40 and 0.60")


def in_process_share(folder: Path, name: str, *, time_rule: bool = True,
                     families: tuple[str, ...] = ("auto",), paired: bool = False) -> dict:
    """Ingest, train each of ``families`` (``auto``: the better of hgb and keras, the default before the
    ensemble) and evaluate in this
    process; per family the share of the way to the truth. Without ``time_rule`` every row of a car
    reaches its features, rows after its road test included: Käfer as it was before the time rule,
    on the same upload."""
    from contextlib import ExitStack
    from unittest import mock

    import pandas as pd

    from kafer.catalog import current_facts, current_features
    from kafer.config import load_settings
    from kafer.dataset import labelled, time_split
    from kafer.features import feature_columns
    from kafer.ingest import ingest
    from kafer.lake import Lake
    from kafer.model import select_family, train

    lake = OUT / f"lake-timerule-{name}-{'after' if time_rule else 'before'}"
    shutil.rmtree(lake, ignore_errors=True)
    settings = load_settings(lake=str(lake))
    with ExitStack() as stack:
        if not time_rule:
            for module in ("kafer.features", "kafer.facts"):
                stack.enter_context(mock.patch(f"{module}.before_road_test", lambda rows, road: rows))
        ingest([str(folder / "upload")], lake=Lake(settings.lake), settings=settings)
    table, facts = current_features(Lake(settings.lake)), current_facts(Lake(settings.lake))
    split = time_split(labelled(table), eval_fraction=settings.eval_fraction)
    options = {"features": feature_columns(settings), "seed": settings.seed, "facts": facts,
               "min_fact_cars": settings.fact_min_cars, "max_fact_columns": settings.fact_max_columns}
    truth = pd.read_csv(folder / "truth.csv", dtype={"KNR": str}).set_index("KNR")
    y = split.eval["label_rod"].to_numpy()
    oracle = auc(y, truth.loc[split.eval["KNR"], "p_true"].to_numpy())
    out = {"oracle": oracle, "cars": len(y), "failures": int(y.sum())}
    scores = {}
    for family in families:
        chosen = select_family(split.train, families=("hgb", "keras"), **options)["chosen"] if family == "auto" \
            else family
        scores[family] = train(split.train, family=chosen, **options).predict_proba(split.eval, facts)
        model_auc = auc(y, scores[family])
        out[family] = {"auc": model_auc, "family": chosen,
                       "share": (model_auc - 0.5) / (oracle - 0.5) if oracle > 0.5 else float("nan")}
    if paired:
        from kafer.metrics import compare

        out["difference"] = compare(y, scores[families[1]], scores[families[0]], budgets=(0.1,),
                                    rounds=settings.bootstrap_rounds, seed=settings.seed)["difference"]
    shutil.rmtree(lake, ignore_errors=True)
    return out


def bench_time_rule(seed: int) -> None:
    """The same uploads with every row of a car reaching its features, and with only those before its
    road test: failing cars' rework rows after the road test make a leaky model look better than the truth."""
    print("\n== What is known at the road test: the same uploads before and after the time rule "
          "(in-process retrain, family auto)")
    print(f"  {'upload':<44} {'truth':>6} {'before: model':>14} {'share':>6} {'after: model':>13} {'share':>6}")
    cases = [("demo, 2,000 cars (seed 5)", upload("quality-2000-1.0", cars=2000, seed=5, signal=1.0), 1.0)]
    cases += [(f"{placement}, 6,000 cars (seed {seed})",
               upload(f"signal-{placement}-6000-{seed}", cars=6000, seed=seed, signal_in=placement), 1.0)
              for placement in PLACEMENTS]
    cases.append((f"pure chance, 6,000 cars (seed {seed})",
                  upload(f"signal-chance-6000-{seed}", cars=6000, seed=seed, signal=0.0), 0.0))
    for title, folder, signal in cases:
        name = folder.name
        before, after = (in_process_share(folder, name, time_rule=rule) for rule in (False, True))
        oracle, before, after = after["oracle"], before["auto"], after["auto"]
        if signal == 0:
            print(f"  {title:<44} {'-':>6} {before['auc']:14.3f} {'':>6} {after['auc']:13.3f} {'':>6}"
                  "   (bar after: 0.40-0.60)")
        else:
            print(f"  {title:<44} {oracle:6.3f} {before['auc']:14.3f} {before['share']:6.0%} "
                  f"{after['auc']:13.3f} {after['share']:6.0%}")
    print("  before: rows after the road test (a failed car's rework in ZP7, its screws tightened again) reach the "
          "features; after: only rows before it. A share above 100 % is the outcome leaking in.")


def bench_ensemble(cars: int, seeds: tuple[int, ...]) -> None:
    """Boosting alone against the ensemble (boosting and a network stacked) on the same uploads and the
    same evaluation cars, seeds no development run looked at, in-process: the share of the way to the
    truth, and the paired bootstrap difference in ROC-AUC and in recall at 10 % (ensemble minus hgb)."""
    print(f"\n== hgb against the ensemble: {cars:,} cars, seeds {', '.join(map(str, seeds))}, never looked at while "
          "choosing; paired differences ensemble - hgb with 95 % intervals")
    print(f"  {'placement':<34} {'seed':>5} {'fail':>4} {'truth':>6} {'hgb':>5} {'ens.':>5}  {'ROC-AUC diff.':<24} "
          f"{'recall at 10 % diff.':<24}")
    means, clear = {"hgb": [], "ensemble": []}, {"better": 0, "worse": 0}
    for placement in PLACEMENTS:
        for seed in seeds:
            name = f"signal-{placement}-{cars}-{seed}"
            out = in_process_share(upload(name, cars=cars, seed=seed, signal_in=placement), name,
                                   families=("hgb", "ensemble"), paired=True)
            for family in means:
                means[family].append(out[family]["share"])
            diff = out["difference"]
            for key in ("roc_auc", "recall_at_10"):
                clear["better"] += diff[key]["low"] > 0
                clear["worse"] += diff[key]["high"] < 0
            print(f"  {placement:<34} {seed:>5} {out['failures']:>4} {out['oracle']:6.3f} {out['hgb']['share']:5.0%} "
                  f"{out['ensemble']['share']:5.0%}  {_signed(diff['roc_auc']):<24} {_signed(diff['recall_at_10']):<24}")
    print(f"  {'mean':<34} {'':>5} {'':>4} {'':>6} {sum(means['hgb']) / len(means['hgb']):5.0%} "
          f"{sum(means['ensemble']) / len(means['ensemble']):5.0%}")
    print(f"  differences clearly above 0: {clear['better']}, clearly below: {clear['worse']}, of "
          f"{2 * len(means['hgb'])} (ROC-AUC and recall at 10 % on each upload)")


def _signed(figure: dict) -> str:
    return f"{figure['value']:+.3f} [{figure['low']:+.3f}, {figure['high']:+.3f}]"


def bench_families(cars: int, seed: int) -> None:
    """hgb and keras on the same time-ordered validation cars (the latest 20 % of the training cars)."""
    print(f"\n== Families compared on the same validation cars (--family auto), {cars:,} cars, seed {seed}")
    print(f"  {'placement':<34} {'hgb PR-AUC':>10} {'keras PR-AUC':>12} {'hgb ROC':>8} {'keras ROC':>9}  chosen  "
          "candidate share  retrain")
    wins = {}
    for placement in PLACEMENTS:
        name = f"signal-{placement}-{cars}-{seed}"
        folder = upload(name, cars=cars, seed=seed, signal_in=placement)
        out = retrained(folder, name, "auto")
        choice = out["metrics"]["models"]["candidate"]["family_choice"]
        scores = choice["scores"]
        wins[choice["chosen"]] = wins.get(choice["chosen"], 0) + 1
        print(f"  {placement:<34} {scores['hgb']['pr_auc']:10.3f} {scores['keras']['pr_auc']:12.3f} "
              f"{scores['hgb']['roc_auc']:8.3f} {scores['keras']['roc_auc']:9.3f}  {choice['chosen']:<6}  "
              f"{out['share']:15.0%}  {out['seconds']:.0f} s")
    print(f"  validation: {choice['cars']:,} cars, {choice['failures']} failures each; wins: "
          + ", ".join(f"{k} {v}" for k, v in sorted(wins.items())))


def bench_real() -> None:
    """The real per-car hall counts of peer-samples/g05 (82,661 cars, real ROD outcome), time-split:
    Käfer's families must stay within noise of a plain model there (no hidden signal to find)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from kafer.metrics import compare
    from kafer.model import train

    print("\n== The real per-car table (peer-samples/g05: defect rows per hall, real ROD outcome)")
    if not REAL.exists():
        print(f"  ({REAL} not found; skipped)")
        return
    table = pd.read_csv(REAL, dtype={"KNR": str})
    halls = {"ZP5": ["ZP5"], "ZP5A": ["ZP5A"], "ZP6": ["ZP6", "ZP61", "ZP62", "ZP6Q"], "CAB": ["CAB"], "ZP7": ["ZP7"]}
    cars = pd.DataFrame({"KNR": table["KNR"], "label_rod": (table["QTD_FALHAS_ROD"] > 0).astype(int),
                         "label_known": True})
    for hall, members in halls.items():
        cars[f"n_falhas_{hall}"] = table[[f"QTD_FALHAS_{m}" for m in members]].sum(axis=1)
    weekday = cars["KNR"].str[7].astype(int)
    day = pd.to_datetime(cars["KNR"].str[:4] + "-W" + cars["KNR"].str[5:7] + "-" + weekday.clip(1, 7).astype(str),
                         format="%G-W%V-%u", errors="coerce")
    cars["produced_at"] = day + pd.to_timedelta(cars["KNR"].str[8:].astype(int), unit="s")
    cars["weekday_from_knr"] = weekday
    cars["nth_car_of_day"] = cars["KNR"].str[8:].astype(int) - 6000
    cars = cars.dropna(subset=["produced_at"]).sort_values(["produced_at", "KNR"], ignore_index=True)
    cut = int(len(cars) * 0.8)
    fit, held = cars.iloc[:cut], cars.iloc[cut:]
    counts = tuple(f"n_falhas_{h}" for h in halls)
    print(f"  {len(cars):,} cars, {cars['label_rod'].mean():.1%} failed ROD; time split: {len(fit):,} train, "
          f"{len(held):,} evaluate ({held['label_rod'].sum():,} failures)")
    print("  computable here: defects per hall before the road test (a coarse 'defects' family, no texts or "
          "stations), the KNR's weekday digit and its nth car of the day (a stand-in for weekday and shift).")
    print("  not computable: configuration, tests, rework loops, defect texts and stations (no such columns).")
    plain = LogisticRegression(max_iter=1000).fit(np.log1p(fit[list(counts)]), fit["label_rod"])
    p_plain = plain.predict_proba(np.log1p(held[list(counts)]))[:, 1]
    print("  a plain model (logistic regression on log1p of the hall counts) against Käfer's families:")
    for name, features, family in (("hall counts, plain logistic", counts, None),
                                   ("hall counts, hgb", counts, "hgb"),
                                   ("hall counts, ensemble (the default)", counts, "ensemble"),
                                   ("hall counts + weekday + nth car of day, ensemble",
                                    counts + ("weekday_from_knr", "nth_car_of_day"), "ensemble")):
        p = p_plain if family is None else train(fit, features=features, family=family,
                                                 seed=20240520).predict_proba(held)
        figures = compare(held["label_rod"], p, None if family is None else p_plain, budgets=(0.1,), rounds=1000,
                          seed=1)
        roc, recall = figures["candidate"]["roc_auc"], figures["candidate"]["recall_at_10"]
        against = "" if family is None else (
            f"; against plain {figures['difference']['roc_auc']['value']:+.3f} "
            f"[{figures['difference']['roc_auc']['low']:+.3f}, {figures['difference']['roc_auc']['high']:+.3f}]")
        print(f"  {name:<50} ROC-AUC {roc['value']:.3f} [{roc['low']:.3f}, {roc['high']:.3f}], recall at 10 % "
              f"{recall['value']:.2f} [{recall['low']:.2f}, {recall['high']:.2f}]{against}")


#: The families whose costs are put side by side: the default, and the ensemble one setting away.
COST_FAMILIES = ("hgb", "ensemble")


def bench_costs(families: tuple[str, ...] = COST_FAMILIES, *, repeats: int = 3) -> None:
    """What people wait for, with each family, side by side: ``kafer predict`` of one new car, of 2,000 new
    cars and of one car the lake holds (``--car``), whole commands, each with the demo's model of that
    family in production; ``03_retrain`` and ``04_compare`` on the demo and on a month-sized upload, each
    step run again alone (its kernel's start included) for its time and peak memory.

    The machine is shared: every measure is taken ``repeats`` times, the families in turn, and the best
    kept (peak memory: that of the best run)."""
    print(f"\n== Costs side by side: {' and '.join(families)} (whole commands, peak memory of the process and its "
          f"kernels; the best of {repeats}, the families measured in turn)")
    uploads = {"demo, 2,000 cars": upload("quality-2000-1.0", cars=2000, seed=5),
               "month, 6,000 cars": upload("month-6000", cars=6000, seed=11)}
    one = upload("predict-1", cars=1, seed=99, start="2024-09-01")
    many = upload("predict-2000", cars=2000, seed=98, start="2024-09-01")
    commands: dict[str, dict[str, list[str]]] = {}
    for label, folder in uploads.items():
        for family in families:
            root = OUT / f"costs-{folder.name}-{family}"
            shutil.rmtree(root, ignore_errors=True)
            where = ["--lake", str(root / "lake"), "--runs", str(root / "runs")]
            timed(KAFER + ["retrain", str(folder / "upload"), "--family", family, "--run-id", "r1", *where])
            for step in ("03_retrain", "04_compare"):
                commands.setdefault(f"{step}, {label}", {})[family] = [
                    sys.executable, __file__, "--step", step, str(root / "runs"), "r1"]
    best: dict[str, dict[str, tuple[float, float]]] = {}
    _best_of(commands, best, repeats)  # the steps of first runs: before any model is kept
    scoring: dict[str, dict[str, list[str]]] = {}
    for family in families:
        root = OUT / f"costs-quality-2000-1.0-{family}"
        lake = ["--lake", str(root / "lake")]
        timed(KAFER + ["decide", "r1", "keep-new", "--by", "bench", "--why", "costs", *lake, "--runs", str(root / "runs")])
        knr = (root / "runs" / "r1" / "predictions.csv").read_text().splitlines()[1].split(",")[0]
        for what, args in (("kafer predict, one new car", [str(one / "upload"), "--out", str(root / "1.csv")]),
                           ("kafer predict, 2,000 new cars", [str(many / "upload"), "--out", str(root / "2k.csv")]),
                           ("kafer predict --car, one car of the lake", ["--car", knr])):
            scoring.setdefault(what, {})[family] = KAFER + ["predict", *args, *lake]
    _best_of(scoring, best, repeats)
    first, second = families
    print(f"  {'what':<42} {first:>18} {second:>18}  {'ratio':>5}")
    for what, by in best.items():
        (s1, m1), (s2, m2) = by[first], by[second]
        print(f"  {what:<42} {s1:7.1f} s {m1:6,.0f} MB {s2:7.1f} s {m2:6,.0f} MB  {s2 / s1:5.2f}")
    print("  bar: the ensemble kept as the default only at <= 1.3 x hgb for one car, 2,000 cars and 04_compare")


def _best_of(commands: dict[str, dict[str, list[str]]], best: dict, repeats: int) -> None:
    """Run every command ``repeats`` times, in turn, and keep each one's best (seconds, peak MB) in ``best``."""
    for _ in range(repeats):
        for what, by in commands.items():
            for family, cmd in by.items():
                got = timed(cmd)[:2]
                best.setdefault(what, {})[family] = min(best.get(what, {}).get(family, got), got)


def bench_install() -> None:
    """How long installing takes and how big ``.venv`` grows: the runtime (``make retrain``), then the test
    extras (``make test``), from the lock files into bench/out (from ``wheelhouse/`` when it holds wheels)."""
    root = Path(__file__).resolve().parent.parent
    venv = OUT / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    source = "wheelhouse/, no network" if any((root / "wheelhouse").glob("*.whl")) else "PyPI"
    print(f"\n== Installs from the lock files (from {source})")
    for what, target in (("make retrain (runtime)", ".runtime"), ("make test (runtime + test extras)", ".test")):
        seconds, _, _ = timed(["make", "-C", str(root), "--no-print-directory", f"{venv}/{target}", f"VENV={venv}"])
        size = int(subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0])
        print(f"  {what:<36} {seconds:6.0f} s   .venv {size / 1024:4.1f} GB")
    shutil.rmtree(venv, ignore_errors=True)


def run_step(step: str, runs: str, run_id: str) -> None:
    """Run one notebook step of an existing run again, alone (its executed notebook into a scratch folder),
    then put the run's record back as it was (03 gives its candidate a new version id)."""
    import tempfile

    from kafer.pipeline import run_notebook, step_parameters

    folder = Path(runs) / run_id
    kept = {path: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            run_notebook(step, Path(scratch), step_parameters(step, upload=[], runs=runs, run_id=run_id))
    finally:
        for path, data in kept.items():
            path.write_bytes(data)


#: Where the training months' failures come from, and where a changed plant's do: the
#: configuration shares nothing with the contract's counts (a tests risk would: NOK counts carry it).
TRAINED_ON, CHANGES = ("contract",), {"completely (configuration)": ("configuration",),
                                      "half (contract and configuration)": ("contract", "configuration")}


def bench_monitor(cars: int) -> None:
    """The track record: the time of ``kafer monitor`` on a twelve-month lake of ``cars`` a month, then
    :func:`bench_warnings`."""
    print(f"\n== Track record: kafer monitor on a twelve-month lake of {cars:,} cars a month")
    folders = month_uploads(cars, range(1, 14))
    root = OUT / "monitor-year"
    shutil.rmtree(root, ignore_errors=True)
    where = ["--lake", str(root / "lake"), "--runs", str(root / "runs")]
    retrain_s, _, _ = timed(KAFER + ["retrain", str(folders[0] / "upload"), "--run-id", "r1", *where])
    timed(KAFER + ["decide", "r1", "keep-new", "--by", "bench", "--why", "first model", *where])
    for folder in folders[1:12]:
        timed(KAFER + ["ingest", *map(str, files_of(folder)), "--lake", str(root / "lake")])
    cold, cold_peak, out = timed(KAFER + ["monitor", "--json", "--lake", str(root / "lake")])
    record = json.loads(out)
    warm, _, _ = timed(KAFER + ["monitor", "--lake", str(root / "lake")])
    ingest_s, _, out = timed(KAFER + ["ingest", *map(str, files_of(folders[12])), "--lake", str(root / "lake")])
    month, _, _ = timed(KAFER + ["monitor", "--lake", str(root / "lake")])
    pooled = record["record"]["pooled"]
    print(f"  retrain on the first month {retrain_s:.0f} s; production judged on {pooled['cars']:,} cars "
          f"({len(record['periods'])} months) since it was kept: alert {record['alert']}")
    print(f"  kafer monitor, first time (every car scored, every month bootstrapped): {cold:5.1f} s, peak "
          f"{cold_peak:,.0f} MB")
    print(f"  kafer monitor again (scores and figures kept with the model):           {warm:5.1f} s   (bar: seconds)")
    print(f"  a thirteenth month: kafer ingest {ingest_s:.1f} s, its line: {out.strip().splitlines()[-1][:110]}…")
    print(f"  kafer monitor after it (the new month's cars and the pooled figures):    {month:5.1f} s")
    bench_warnings()


def bench_warnings(cars: int = 2000, *, trained: int = 5, alike: int = 24, changed: int = 6, seed: int = 1800) -> None:
    """False warnings on months like the training month, on such months whose plant fails half or twice
    as often with the ranking unchanged, and months to warn once the plant changed.

    Every month is a generator upload of ``cars`` cars with its own seed (20 resultados rows a car: the
    record reads the per-car table and the facts). Each training month's model is trained and promised
    as a retrain does (time split, family hgb, the comparison's figures on its evaluation cars), then
    every other month is judged with :func:`kafer.monitor.judge`, the function ``kafer monitor`` uses.
    A month failing half as often is a like month with the cars of the next like month that passed
    their road test added, one failing twice as often a like month with half its cars that passed
    left out at random: the model's scores of the failing and of the other cars are drawn as before,
    so it ranks them as well as before, and its failures (what the tests' uncertainty rests on) are
    the like month's own. Each is also judged as before this issue (PR-AUC tested beside ROC-AUC and
    the recalls), and the failure-rate news is counted.
    """
    from unittest import mock

    import numpy as np
    import pandas as pd

    from kafer import monitor
    from kafer.catalog import current_facts, current_features
    from kafer.config import load_settings
    from kafer.dataset import labelled, time_split
    from kafer.demo import make_demo_upload
    from kafer.features import feature_columns
    from kafer.ingest import ingest
    from kafer.lake import Lake
    from kafer.metrics import budget_key, compare, proportion, threshold_at
    from kafer.model import train
    from kafer.monitor import check_promise, judge

    plan = ([("trained", i, TRAINED_ON) for i in range(trained)] + [("alike", i, TRAINED_ON) for i in range(alike)]
            + [(name, i, where) for name, where in CHANGES.items() for i in range(changed)])
    root = OUT / f"monitor-months-{cars}"
    settings = load_settings(lake=str(root / "lake"), family="hgb")
    months = {}
    for n, (kind, i, where) in enumerate(plan):
        start = pd.Timestamp("2019-01-01") + pd.DateOffset(months=n)
        folder = root / f"{kind.split(' ')[0]}-{i}"
        if not (folder / "truth.csv").exists():
            shutil.rmtree(folder, ignore_errors=True)
            make_demo_upload(folder, cars=cars, seed=seed + n, start=start.strftime("%Y-%m-%d"), results_per_car=20,
                             layout="csv", signal_in=where)
        months[(kind, i)] = pd.read_csv(folder / "truth.csv", dtype={"KNR": str}, usecols=["KNR"])["KNR"]
    lake = Lake(settings.lake)
    if not (root / "lake").exists():
        ingest([str(root / f"{kind.split(' ')[0]}-{i}" / "upload") for kind, i, _ in plan], lake=lake,
               settings=settings)
    table, facts = current_features(lake), current_facts(lake)
    table = table[table["road_test_at"].notna()].set_index("KNR", drop=False)
    passed = table["label_known"].fillna(False).astype(bool) & (table["label_rod"] == 0)
    rng = np.random.default_rng(seed)
    rated = {"halved": [], "doubled": []}
    for i in range(alike):
        month = months[("alike", i)]
        others = table.loc[table["KNR"].isin(months[("alike", (i + 1) % alike)]) & passed, "KNR"]
        rated["halved"].append(pd.concat([month, others], ignore_index=True))
        own = table.loc[table["KNR"].isin(month) & passed, "KNR"].to_numpy()
        dropped = set(rng.choice(own, size=len(own) // 2, replace=False))
        rated["doubled"].append(month[~month.isin(dropped)])
    print(f"\n== Track record: false warnings, failure-rate news and months to warn ({len(plan)} months of {cars:,} "
          f"cars, seeds {seed}-{seed + len(plan) - 1}; models trained as a retrain does, family hgb)")
    before = ("roc_auc", "pr_auc")

    def with_pr_auc(record, promise) -> bool:
        """The warning as it was before PR-AUC left the test."""
        tested = lambda budgets: before + tuple(f"recall_at_{budget_key(b)}" for b in budgets)  # noqa: E731
        with mock.patch.object(monitor, "watched", tested):
            return check_promise(record.pooled, promise, version="", budgets=settings.budgets,
                                 budget=settings.operating_budget, alpha=settings.monitor_alpha,
                                 min_cars=settings.min_compare_cars, min_failures=settings.min_compare_failures).alert

    counts = {name: {"alert": [], "before": [], "news": [], "rate": []} for name in ("alike", "halved", "doubled")}
    yearly, late = [], {name: {0: [], 3: []} for name in CHANGES}
    for t in range(trained):
        split = time_split(labelled(table.loc[table["KNR"].isin(months[("trained", t)])].reset_index(drop=True)),
                           eval_fraction=settings.eval_fraction)
        model = train(split.train, features=feature_columns(settings), family="hgb", seed=settings.seed, facts=facts,
                      min_fact_cars=settings.fact_min_cars, max_fact_columns=settings.fact_max_columns)
        p_eval = model.predict_proba(split.eval, facts)
        promise = {**compare(split.eval["label_rod"], p_eval, budgets=settings.budgets,
                             rounds=settings.bootstrap_rounds, seed=settings.seed)["candidate"],
                   "operating_threshold": threshold_at(p_eval, budget=settings.operating_budget)}
        risk = pd.Series(model.predict_proba(table, facts), index=table.index)

        def record_of(knr: pd.Series):
            """The record on these cars, as if they were road-tested since the model was kept."""
            cars = table.loc[table["KNR"].isin(knr)].reset_index(drop=True)
            return judge(f"model {t}", cars, risk.loc[cars["KNR"]].to_numpy(), promise=promise, settings=settings,
                         learned=model.meta["trained_on"])

        def slipped(keys) -> bool:
            """The warning on the pooled cars of these months since the model was kept."""
            return record_of(pd.concat([months[k] for k in keys])).check.alert

        own = {"alike": [months[("alike", i)] for i in range(alike)], **rated}
        for name, sets in own.items():
            for knr in sets:
                record = record_of(knr)
                counts[name]["alert"].append(record.check.alert)
                counts[name]["before"].append(with_pr_auc(record, promise))
                counts[name]["news"].append(record.rate.moved if record.rate else None)
                counts[name]["rate"].append(record.rate.now if record.rate else np.nan)
        yearly.append(any(slipped([("alike", i) for i in range(k + 1)]) for k in range(min(12, alike))))
        for name in CHANGES:
            for good in late[name]:
                head = [("alike", i) for i in range(good)]
                late[name][good].append(next((k + 1 for k in range(changed)
                                              if slipped(head + [(name, i) for i in range(k + 1)])), None))
        roc = promise["roc_auc"]
        print(f"  model {t}: promised ROC-AUC {roc['value']:.3f} [{roc['low']:.3f}, {roc['high']:.3f}] on "
              f"{len(split.eval):,} cars, learned at {model.meta['trained_on']['positives'] / len(split.train):.1%}; "
              f"false warnings on like months {sum(counts['alike']['alert'][-alike:])} of {alike}, failing half as "
              f"often {sum(counts['halved']['alert'][-alike:])}, twice as often "
              f"{sum(counts['doubled']['alert'][-alike:])}; in its year {'yes' if yearly[-1] else 'no'}", flush=True)

    def share(flags: list) -> str:
        found = proportion(int(np.sum(flags)), len(flags))
        return (f"{int(np.sum(flags))} of {len(flags)} ({found['value']:.1%}, 95 % interval {found['low']:.1%} to "
                f"{found['high']:.1%})")

    for name, words in (("alike", "like the training month"), ("halved", "whose plant fails half as often"),
                        ("doubled", "whose plant fails twice as often")):
        seen = counts[name]
        moved = [m is not None for m in seen["news"]]
        print(f"  single months {words} (failure rate {np.nanmean(seen['rate']):.1%}): false warnings "
              f"{share(seen['alert'])}   (bar: 5 %, as on like months); with PR-AUC tested as before: "
              f"{share(seen['before'])}; news that the plant fails more or less often: {share(moved)}")
    print(f"  a false warning in a year of monthly checks (pooled since kept): {sum(yearly)} of {trained} models")
    for name, waits in late.items():
        for good, months_to_warn in waits.items():
            said = ", ".join("not within " + str(changed) if w is None else str(w) for w in months_to_warn)
            print(f"  plant changed {name}, {good} good months before: months to warn, per model: {said}")


def bench_uploads(cars: int) -> None:
    """A month received in 1 MiB pieces, its unpacked sizes counted, its files read by the check; each
    in a child process of its own, so that its time and peak memory are its own."""
    folder = upload(f"month-{cars}", cars=cars, seed=11) / "upload"
    files = files_of(folder.parent)
    size = sum(p.stat().st_size for p in files)
    print(f"\n== Uploads through the library: a month of {cars:,} cars, {len(files)} files, {size / 1e6:,.1f} MB, "
          "in 1 MiB pieces")
    runs = OUT / "runs-uploads"
    shutil.rmtree(runs, ignore_errors=True)
    seconds, peak, said = timed([sys.executable, __file__, "--receive-upload", str(runs), *map(str, files)])
    upload_id, unpack_seconds = said.split()
    pieces = sum(-(-p.stat().st_size // (1 << 20)) for p in files)
    print(f"  received in {pieces:,} pieces: {seconds:6.1f} s ({size / 1e6 / seconds:,.0f} MB/s), "
          f"peak memory {peak:,.0f} MB (the whole process, Python and Käfer's imports included)")
    print(f"  of which the unpacked-size checks of the whole files: {float(unpack_seconds):6.1f} s")
    seconds, peak, said = timed([sys.executable, __file__, "--unpacked", *map(str, files)])
    unpacked = sum(map(int, said.split()))
    print(f"  the unpacked-size checks alone: {seconds:6.1f} s for {unpacked / 1e9:,.2f} GB unpacked "
          f"({unpacked / size:.1f} x the files), peak {peak:,.0f} MB")
    seconds, peak, _ = timed([sys.executable, __file__, "--check-upload", str(runs), upload_id])
    print(f"  the check with ingest's reader, in the process: {seconds:6.1f} s, peak {peak:,.0f} MB")
    seconds, _, said = timed([sys.executable, __file__, "--check-upload", str(runs), upload_id, "isolated"])
    print(f"  again in a child process (as a server would): {seconds:6.1f} s, the calling process's own peak "
          f"{float(said):,.0f} MB")
    shutil.rmtree(runs, ignore_errors=True)


def receive_upload(runs: str, files: list[str]) -> None:
    """Send ``files`` through :mod:`kafer.uploads` in 1 MiB pieces; print the upload's id and the
    seconds spent counting unpacked sizes."""
    from kafer import uploads
    from kafer.config import load_settings

    settings = load_settings(runs=runs, lake=str(Path(runs) / "lake"))
    counting = {"seconds": 0.0}
    measured = uploads.unpacked_size

    def unpacked_size(*args, **kwargs):
        started = time.monotonic()
        try:
            return measured(*args, **kwargs)
        finally:
            counting["seconds"] += time.monotonic() - started

    uploads.unpacked_size = unpacked_size
    paths = [Path(f) for f in files]
    upload = uploads.open_upload({p.name: p.stat().st_size for p in paths}, by="bench", settings=settings)
    for path in paths:
        with open(path, "rb") as fh:
            offset = 0
            while piece := fh.read(uploads.PIECE_BYTES):
                state = uploads.receive_piece(upload.upload_id, path.name, offset, piece, by="bench",
                                              settings=settings)
                offset += len(piece)
    assert state.state == "received", state
    print(upload.upload_id, counting["seconds"])


def check_upload(runs: str, upload_id: str, isolated: bool) -> None:
    """Check a received upload (in a child process when ``isolated``); print this process's peak MB."""
    from kafer import uploads
    from kafer.config import load_settings

    settings = load_settings(runs=runs, lake=str(Path(runs) / "lake"))
    if isolated:  # check it again: a ready upload is made whole-again for the second pass
        record = json.loads((uploads.uploads_folder(settings) / upload_id / uploads.RECORD).read_text())
        record["state"] = "received"
        (uploads.uploads_folder(settings) / upload_id / uploads.RECORD).write_text(json.dumps(record))
    state = uploads.check_upload(upload_id, by="bench", settings=settings, isolated=isolated)
    assert state.state == "ready", state
    import resource

    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # this process alone, not its child
def daily_exports(month: Path, folder: Path) -> list[Path]:
    """The month's exports cut as the plant's daily exports of the cars road-tested that day: for each day,
    every row of those cars up to the day's end (one csv per kind in ``folder/<day>``), oldest day first."""
    import pandas as pd

    from kafer.readers import read_export

    rows: dict[str, list] = {}
    for path in files_of(month):
        export = read_export(path.read_bytes(), path.name)
        rows.setdefault(export.kind, []).append(export.table.to_pandas())
    tables = {kind: pd.concat(parts, ignore_index=True) for kind, parts in rows.items()}
    status = tables["status"]
    road = status[status["STATUS"] == "G710"].groupby("KNR")["DATA"].min().dt.normalize()
    days = []
    for day, cars in road.groupby(road):
        target = folder / f"{day:%Y-%m-%d}"
        target.mkdir(parents=True, exist_ok=True)
        end = day + pd.Timedelta(days=1)
        for kind, table in tables.items():
            cut = table[table["KNR"].isin(cars.index) & (table["DATA"] < end)]
            cut.assign(DATA=cut["DATA"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(target / f"{kind}.csv", index=False)
        days.append(target)
    return days


def bench_lists(cars: int, *, seed: int = 2700, shares: tuple[float, ...] = (0.0, 0.02, 0.05, 0.10),
                fixed_share: float = 0.7) -> None:
    """A shadow month of daily lists, then its go/no-go verdict; the lift over random of lists acted on, with and
    without an audit share, their flagged and audit cars fixed before the road test (each failure prevented with
    chance ``fixed_share``); what the track record says then, with and without the correction."""
    import numpy as np
    import pandas as pd

    from kafer import catalog, registry
    from kafer.config import load_settings
    from kafer.demo import make_demo_upload
    from kafer.ingest import ingest
    from kafer.lake import Lake
    from kafer.lists import issued_lists, list_outcome, pooled_cars
    from kafer.monitor import judge, judged_without_lists, track_record
    from kafer.predict import issue_ranking, predict_upload, ranking_facts
    from kafer.watch import watch

    root = OUT / f"lists-{cars}"
    month = dict(cars=cars, seed=seed + 1, start="2024-04-01", results_per_car=20, layout="csv")
    if not (root / "shadow-month" / "truth.csv").exists():
        shutil.rmtree(root, ignore_errors=True)
        make_demo_upload(root / "training-month", cars=cars, seed=seed, start="2024-03-01", results_per_car=20,
                         layout="csv")
        make_demo_upload(root / "shadow-month", **month)
    base = root / "base"
    if not (base / "runs").exists():
        where = ["--lake", str(base / "lake"), "--runs", str(base / "runs")]
        timed(KAFER + ["retrain", str(root / "training-month" / "upload"), "--family", "hgb", "--run-id", "r1", *where])
        timed(KAFER + ["decide", "r1", "keep-new", "--by", "bench", "--why", "the lists' model", *where])
    days = daily_exports(root / "shadow-month", root / "days") if not (root / "days").exists() else \
        sorted(p for p in (root / "days").iterdir() if p.is_dir())
    print(f"\n== Inspection lists: a month of {cars:,} cars road-tested over {len(days)} days, one list a day "
          f"(each day's export holds the cars road-tested that day), production trained on the month before (hgb)")

    def lake_copy(name: str, **options):
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(base / "lake", folder / "lake")
        settings = load_settings(lake=str(folder / "lake"), runs=str(base / "runs"), **options)
        return settings, Lake(settings.lake)

    # the shadow: every daily export dropped into a watched inbox, scored once, its list recorded (not acted on)
    settings, lake = lake_copy("shadow", shadow=True)
    inbox, out = root / "shadow" / "inbox", root / "shadow" / "lists"
    inbox.mkdir(), out.mkdir()
    started = time.monotonic()
    for day in days:
        for path in day.iterdir():
            shutil.copy(path, inbox / f"{day.name}-{path.name}")
        watch(str(inbox), str(out), settings=settings, by="bench", once=True, settle=0.0, say=lambda line: None)
    per_list = (time.monotonic() - started) / len(days)
    ingest([str(root / "shadow-month" / "upload")], lake=lake, settings=settings)
    seconds, _, out_json = timed(KAFER + ["lists", "--json", "--lake", settings.lake])
    shown = json.loads(out_json)
    verdict = shown["verdict"]
    print(f"  {len(shown['lists'])} lists recorded through kafer predict --watch ({per_list:.1f} s a list, scoring "
          f"included); kafer lists --json {seconds:.1f} s")
    weekly = {}
    for item in shown["lists"]:
        week = pd.Timestamp(item["data_end"]).strftime("%G-W%V")
        o = item["outcome"] or {}
        acc = weekly.setdefault(week, [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += o.get("known", 0)
        acc[2] += o.get("flagged_failures", 0)
        acc[3] += o.get("other_failures", 0)
    for week, (n, known, found, other) in weekly.items():
        print(f"  {week}: {n} lists, {known:,} cars with their outcome, failures {found} among the flagged / "
              f"{other} among the rest")
    lift = verdict["lift"]
    print(f"  shadow verdict ({verdict['start']} to {verdict['end']}, bar {verdict['bar']:g}): "
          f"{verdict['decision'].upper()}: lift over random {lift[0]:.2f} [{lift[1]:.2f}, {lift[2]:.2f}] on "
          f"{verdict['known']:,} cars, {verdict['failures']} failures ({verdict['flagged_failures']} flagged)")
    print(f"  in words: {verdict['words']}")
    truth = pd.read_csv(root / "shadow-month" / "truth.csv", dtype={"KNR": str}).set_index("KNR")
    inside = [item for item in shown["lists"] if verdict["start"] <= item["data_end"][:10] < verdict["end"]]
    judged = pooled_cars([catalog.list_cars(lake, item["id"]) for item in inside])
    judged = judged[judged["KNR"].isin(set(catalog.current_features(lake).query("label_known")["KNR"]))]
    p_true = truth.loc[judged["KNR"], "p_true"].to_numpy()
    flag = judged["in_budget"].to_numpy()
    print(f"  the truth behind it, on the same {len(judged):,} cars: the flagged cars' true failure chance "
          f"{p_true[flag].mean():.1%} against {p_true.mean():.1%} for all, a true lift of "
          f"{p_true[flag].mean() / p_true.mean():.2f}")
    replay_lifts(judged.assign(p_true=p_true), shares=shares, fixed_share=fixed_share, seed=seed)
    ranked = {day.name: predict_upload([str(day)], settings=settings) for day in days}
    production = registry.production(lake)

    # acted on: each share's lists, their flagged and audit cars fixed before the road test
    for share in shares:
        settings, lake = lake_copy(f"acted-{share:g}", shadow=False, audit_share=share)
        treated = set()
        for day in days:
            paths = [str(day)]
            issue_ranking(ranked[day.name], "", facts=ranking_facts(ranked[day.name], paths=paths, settings=settings),
                          settings=settings, by="bench", source="command line", paths=paths)
        for item in catalog.list_records(lake):
            listed = catalog.list_cars(lake, item["id"])
            treated |= set(listed.loc[listed["in_budget"] | listed["audit"], "KNR"])
        replay = root / f"acted-{share:g}" / "month"
        make_demo_upload(replay, **month, fixed=treated, fixed_share=fixed_share)
        ingest([str(replay / "upload")], lake=lake, settings=settings)
        found = issued_lists(lake, settings=settings)
        frames = pd.concat([catalog.list_cars(lake, item["id"]) for item in found.lists]).drop_duplicates("KNR")
        labels = catalog.current_features(lake)
        measured = list_outcome(frames, labels, acted_on=True)
        naive = list_outcome(frames, labels, acted_on=False)
        lift, wrong = measured["lift_over_random"], naive["lift_over_random"]
        print(f"  acted on, audit share {share:.0%} ({measured['audit_known']} audit cars with an outcome, "
              f"{measured['audit_failures']} failed): lift over random "
              + ("cannot be measured (no audit car)" if lift is None else
                 f"{lift[0]:.2f} [{lift[1]:.2f}, {lift[2]:.2f}]")
              + f"; against the unflagged cars not inspected (what a shadow computes) {wrong[0]:.2f} "
                f"[{wrong[1]:.2f}, {wrong[2]:.2f}]")
        if share != max(shares):
            continue
        record = track_record(lake, settings=settings, drift=False)
        corrected = record.production
        table = labels.set_index("KNR")
        every = corrected.cars.assign(label_known=table.loc[corrected.cars["KNR"], "label_known"].to_numpy())
        plain = judge(corrected.version, every, corrected.cars["probability"].to_numpy(),
                      promise=production["metrics"], settings=settings)

        def said(check, judged) -> str:
            roc = judged.pooled.figures.get("roc_auc") if judged.pooled else None
            shown_roc = "—" if not roc else f"{roc['value']:.3f} [{roc['low']:.3f}, {roc['high']:.3f}]"
            verdict = "SLIPPING" if check.alert else "keeps its promise"
            return f"{verdict} (ROC-AUC {shown_roc} on {judged.pooled.cars:,} cars)"

        promised = production["metrics"]["roc_auc"]
        print(f"  track record, lists acted on ({fixed_share:.0%} of treated failures prevented; promised ROC-AUC "
              f"{promised['value']:.3f}): without the correction {said(plain.check, plain)}; with it "
              f"{said(corrected.check, corrected)}, against {corrected.promise['roc_auc']['value']:.3f} promised "
              f"below the threshold")
        unshaped = track_record(Lake(str(root / "shadow" / "lake")), settings=settings, drift=False).production
        cars, p = unshaped.cars, unshaped.cars["probability"].to_numpy()
        kept, promise, _ = judged_without_lists(cars, p, np.zeros(len(cars), dtype=bool),
                                                promise=production["metrics"], below=corrected.promise)
        below = judge(unshaped.version, kept, p, promise=promise, settings=settings)
        print(f"  the same month in the shadow (no outcome shaped): {said(unshaped.check, unshaped)}; judged below "
              f"the threshold as the correction does, {said(below.check, below)}")


def replay_lifts(cars, *, shares: tuple[float, ...], fixed_share: float, seed: int, rounds: int = 400) -> None:
    """The lift's estimate and interval over ``rounds`` replays of the shadow's outcomes, drawn from the true
    chances (``cars``: ``in_budget``, ``p_true``): in the shadow, and acted on with each audit share (the flagged
    and audit cars' failures each prevented with chance ``fixed_share``)."""
    import numpy as np

    from kafer.lists import lift_over_random

    rng = np.random.default_rng(seed)
    flagged, p = cars["in_budget"].to_numpy(dtype=bool), cars["p_true"].to_numpy()
    truth = p[flagged].mean() / p.mean()
    print(f"  {rounds} replays of these cars' outcomes from their true chances (true lift {truth:.2f}):")
    for share in (None, *shares):
        values, held, widths = [], 0, []
        for _ in range(rounds):
            failed = rng.random(len(p)) < p
            audit = rng.random(len(p)) < (share or 0)
            if share is not None:
                failed &= ~((flagged | audit) & (rng.random(len(p)) < fixed_share))
            reference = ~flagged & (audit if share is not None else True)
            lift = lift_over_random(int((failed & flagged).sum()), int(flagged.sum()),
                                    int((failed & reference).sum()), int(reference.sum()), share=flagged.mean())
            if lift is None:
                continue
            values.append(lift["value"])
            held += lift["low"] <= truth <= lift["high"]
            widths.append(lift["high"] - lift["low"])
        what = "in the shadow" if share is None else f"acted on, audit share {share:.0%}"
        if not values:
            print(f"    {what}: cannot be measured in any replay")
            continue
        print(f"    {what}: median estimate {np.median(values):.2f} (middle 90 % {np.quantile(values, 0.05):.2f} to "
              f"{np.quantile(values, 0.95):.2f}), the 95 % interval held the true lift in {held / rounds:.0%} of the "
              f"replays, median width {np.median(widths):.2f}" + ("" if len(values) == rounds else
                                                                   f"; measurable in {len(values)} of {rounds}"))


#: Chromium as the tests drive it (tests/browser.py): Debian's, headless, no calls out.
CHROMIUM = os.environ.get("KAFER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESK_PEOPLE = ("ana", "bia", "caio", "davi", "eva")


def desk_world(family: str | None, *, ingested: bool = False) -> tuple[Path, dict]:
    """A desk's world, made once: production kept from one month, the next month's run waiting for a
    decision (both through ``kafer retrain``, report included), five local accounts, its kafer.toml;
    when ``ingested``, a copy of it with a third month ingested after the last retrain."""
    if ingested:
        source, _ = desk_world(family)
        root = OUT / f"desk-{family or 'default'}-ingested"
        if not (root / "ready").exists():
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(source, root)
            (root / "ready").unlink()
            folder = upload("desk-month-2", cars=2000, seed=33, start="2024-06-03")
            timed(KAFER + ["ingest", str(folder / "upload"), "--lake", str(root / "lake")])
            (root / "ready").touch()
        current = json.loads((root / "lake" / "curated" / "CURRENT.json").read_text())["version"]
        for kept in (root / "lake" / "models" / "versions").glob(f"*/scores/{current}.parquet"):
            kept.unlink()  # as if nobody had scored the new month yet
        return root, {"lake": str(root / "lake"), "runs": str(root / "runs")}
    root = OUT / f"desk-{family or 'default'}"
    lake, runs = root / "lake", root / "runs"
    root.mkdir(parents=True, exist_ok=True)
    (root / "kafer.toml").write_text(f'[kafer]\ndesk_state_dir = "state"\ndesk_kernels_per_person = 2\n'
                                     f'desk_signin_wait = 0.0\n', encoding="utf-8")
    if not (root / "ready").exists():
        for folder in (lake, runs, root / "state"):
            shutil.rmtree(folder, ignore_errors=True)
        where = ["--lake", str(lake), "--runs", str(runs)] + (["--family", family] if family else [])
        for n, start in enumerate(("2024-04-01", "2024-05-06")):
            folder = upload(f"desk-month-{n}", cars=2000, seed=31 + n, start=start)
            timed(KAFER + ["retrain", str(folder / "upload"), *where, "--run-id", f"r{n + 1}"])
            if n == 0:
                timed(KAFER + ["decide", "r1", "keep-new", "--why", "benchmark", "--lake", str(lake), "--runs",
                               str(runs)])
        for person in DESK_PEOPLE:
            subprocess.run(KAFER + ["users", "add", person, "--role", "approver" if person == "ana" else "viewer",
                                    "--password-stdin"], input=f"{person}'s bench password\n", text=True, cwd=root,
                           check=True, capture_output=True)
        (root / "ready").touch()
    return root, {"lake": str(lake), "runs": str(runs)}


def desk_memory(server) -> dict:
    """RSS and PSS (MB) of the desk's server and of each kernel; whether each kernel maps TensorFlow."""
    import psutil

    root = psutil.Process(server.pid)
    processes = [root, *root.children(recursive=True)]
    out = {"server": (0.0, 0.0), "kernels": []}
    for process in processes:
        try:
            line = " ".join(process.cmdline())
            full = process.memory_full_info()
            tensorflow = any("tensorflow" in m.path for m in process.memory_maps())
        except psutil.Error:
            continue
        figures = (full.rss / 2**20, full.pss / 2**20)
        if "ipykernel_launcher" in line:
            out["kernels"].append((*figures, tensorflow))
        elif "kafer.desk" in line:
            out["server"] = figures
    return out


def start_desk(root: Path, port: int, where: dict) -> tuple[subprocess.Popen, object]:
    """``kafer desk`` for the world in ``root`` on ``port``, its log in ``root/server.log``, once it
    answers; the command's process and the desk server's (a ``psutil.Process``)."""
    import psutil

    log = root / "server.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(KAFER + ["desk", "--no-browser", "--port", str(port), "--lake", where["lake"],
                                           "--runs", where["runs"]], cwd=root, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"The decision desk is at" not in log.read_bytes():
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise SystemExit(f"the desk did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return server, next(p for p in psutil.Process(server.pid).children() if "kafer.desk" in " ".join(p.cmdline()))


def bench_desk(family: str | None, *, ingested: bool = False) -> None:
    """Five people signed in, each with the desk open (see the module's docstring, point 8)."""
    from playwright.sync_api import expect, sync_playwright

    root, where = desk_world(family, ingested=ingested)
    port = 8870 + (family == "ensemble") + 2 * ingested
    server, desk = start_desk(root, port, where)
    try:
        idle = desk_memory(desk)["server"]
        since = ", a month ingested since the retrain" if ingested else ""
        print(f"\n== The shared desk, family {family or 'default'}{since}: five people signed in, each with the page "
              "open")
        print(f"  machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start (other work included)")
        print(f"  server alone: RSS {idle[0]:,.0f} MB, PSS {idle[1]:,.0f} MB")
        opened = []
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            pages = []
            for person in DESK_PEOPLE:
                page = chromium.new_context().new_page()
                page.goto(f"http://127.0.0.1:{port}/login")
                page.get_by_label("Name").fill(person)
                page.get_by_label("Password").fill(f"{person}'s bench password")
                started = time.monotonic()
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("heading", name="Production and decisions so far")).to_be_visible(
                    timeout=300_000)
                expect(page.get_by_role("heading", name="Run r2: new model")).to_be_visible(timeout=300_000)
                opened.append(time.monotonic() - started)
                pages.append(page)
            memory = desk_memory(desk)
            chromium.close()
        kernels = memory["kernels"]
        rss, pss = sum(k[0] for k in kernels), sum(k[1] for k in kernels)
        print(f"  sign-in to page ready, one person at a time: {', '.join(f'{t:.1f}' for t in opened)} s "
              f"(median {sorted(opened)[len(opened) // 2]:.1f} s)")
        print(f"  {len(kernels)} kernels: RSS {', '.join(f'{k[0]:,.0f}' for k in kernels)} MB; together RSS "
              f"{rss:,.0f} MB, PSS {pss:,.0f} MB")
        print(f"  server with five people: RSS {memory['server'][0]:,.0f} MB; desk in all: RSS "
              f"{rss + memory['server'][0]:,.0f} MB, PSS {pss + memory['server'][1]:,.0f} MB")
        with_tf = [k[0] for k in kernels if k[2]]
        without = [k[0] for k in kernels if not k[2]]
        cost = f" (RSS {max(with_tf):,.0f} MB against {max(without):,.0f} MB without)" if with_tf and without else ""
        print(f"  kernels that load TensorFlow: {len(with_tf)} of {len(kernels)}{cost}")
    finally:
        server.terminate()
        server.wait(60)


def bench_deskloop(cars: int) -> None:
    """A month from the page to the decision, against the terminal's retrain (point 11)."""
    import re
    import threading

    from playwright.sync_api import expect, sync_playwright

    folder = upload(f"month-{cars}", cars=cars, seed=11) / "upload"
    files = sorted(folder.iterdir())
    size = sum(p.stat().st_size for p in files)
    root = OUT / "deskloop"
    shutil.rmtree(root, ignore_errors=True)
    (root / "state").mkdir(parents=True)
    (root / "kafer.toml").write_text('[kafer]\ndesk_state_dir = "state"\ndesk_signin_wait = 0.0\n', encoding="utf-8")
    for person, role in (("rui", "analyst"), ("ana", "approver")):
        subprocess.run(KAFER + ["users", "add", person, "--role", role, "--password-stdin"],
                       input=f"{person}'s bench password\n", text=True, cwd=root, check=True, capture_output=True)
    print(f"\n== The whole loop on the desk's pages: a month of {cars:,} cars, {len(files)} files, {size / 1e6:,.1f} MB")
    print(f"  machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start (other work included)")
    terminal, terminal_peak, _ = timed(KAFER + ["retrain", str(folder), "--lake", str(root / "lake-terminal"),
                                                "--runs", str(root / "runs-terminal"), "--run-id", "r-terminal"])
    print(f"  kafer retrain of the upload from the terminal: {terminal:6.1f} s (peak {terminal_peak:,.0f} MB)", flush=True)
    port = 8880
    server, desk = start_desk(root, port, {"lake": str(root / "lake"), "runs": str(root / "runs")})
    try:
        idle = desk.memory_info().rss / 2**20
        peak, watching = [idle], threading.Event()

        def watch() -> None:
            while not watching.is_set():
                peak.append(desk.memory_info().rss / 2**20)
                time.sleep(0.1)

        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = chromium.new_context().new_page()
            page.goto(f"http://127.0.0.1:{port}/login")
            page.get_by_label("Name").fill("rui")
            page.get_by_label("Password").fill("rui's bench password")
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"http://127.0.0.1:{port}/exports")
            page.get_by_label("Drop the files here, or choose them").set_input_files(files)
            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.monotonic()
            page.get_by_role("button", name="Send the files").click()
            expect(page.get_by_text("Ready: every file passed ingest's checks.")).to_be_visible(timeout=1_800_000)
            checked = time.monotonic() - started
            watching.set()
            watcher.join()
            page.get_by_role("button", name="Start the retrain").click()
            page.get_by_role("link", name="Open the comparison and the decision").click(timeout=3_600_000)
            expect(page.get_by_role("heading", name=re.compile(r"^Run .*: new model"))).to_be_visible(timeout=600_000)
            whole = time.monotonic() - started
            chromium.close()
    finally:
        server.terminate()
        server.wait(60)
    print(f"  from dropping the files on the page to the decision shown: {whole:6.1f} s (of which sent and checked: "
          f"{checked:.1f} s)")
    print(f"  ratio page / terminal: {whole / terminal:.2f}")
    print(f"  the desk server's RSS: {idle:,.0f} MB before, peak {max(peak):,.0f} MB while the upload was received "
          "and checked (the check reads in a child process of its own)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=6000, help="cars in the month-sized upload")
    parser.add_argument("--only", choices=("ingest", "scale", "history", "quality", "signal", "timerule",
                                           "families", "ensemble", "costs", "install", "real", "monitor",
                                           "uploads", "lists", "warnings", "desk", "deskloop"))
    parser.add_argument("--parse-only", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--land-only", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--csv-shape", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--receive-upload", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--unpacked", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--check-upload", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--compare-lakes", nargs=2, metavar="LAKE",
                        help="only say whether two lakes hold the same per-car table, facts and landed rows")
    args = parser.parse_args()
    if args.compare_lakes:
        raise SystemExit(0 if compare_lakes(*args.compare_lakes) else 1)
    if args.step:
        run_step(*args.step)
        return
    if args.csv_shape:
        make_csv_shape(Path(args.csv_shape[0]), int(args.csv_shape[1]), int(args.csv_shape[2]))
        return
    if args.parse_only:
        print(parse_only(args.parse_only))
        return
    if args.receive_upload:
        receive_upload(args.receive_upload[0], args.receive_upload[1:])
        return
    if args.unpacked:
        from kafer.uploads import unpacked_size

        print(*(unpacked_size(f, name=f, limit=1 << 62) or os.path.getsize(f) for f in args.unpacked))
        return
    if args.check_upload:
        check_upload(args.check_upload[0], args.check_upload[1], len(args.check_upload) > 2)
        return
    if args.land_only:
        land_only(args.land_only[0], args.land_only[1:])
        return
    OUT.mkdir(exist_ok=True)
    if args.only in (None, "ingest"):
        bench_ingest(args.cars)
    if args.only in (None, "scale"):
        bench_scale(args.cars)
    if args.only in (None, "history"):
        bench_history(args.cars)
    if args.only in (None, "quality"):
        for family in ("hgb", "keras"):
            bench_quality(2000, 1.0, family)
        bench_quality(2000, 1.0, None)
        bench_quality(2000, 0.0, None)
    if args.only in (None, "signal"):
        bench_signal(6000, HELD_OUT)
    if args.only in (None, "timerule"):
        bench_time_rule(HELD_OUT[0])
    if args.only in (None, "families"):
        bench_families(6000, HELD_OUT[0])
    if args.only in (None, "ensemble"):
        bench_ensemble(6000, ENSEMBLE_HELD_OUT)
    if args.only in (None, "costs"):
        bench_costs()
    if args.only in (None, "install"):
        bench_install()
    if args.only in (None, "real"):
        bench_real()
    if args.only in (None, "monitor"):
        bench_monitor(args.cars)
    if args.only in (None, "uploads"):
        bench_uploads(args.cars)
    if args.only in (None, "lists"):
        bench_lists(args.cars)
    if args.only in (None, "desk"):
        bench_desk(None)
        bench_desk("ensemble")
        bench_desk(None, ingested=True)
    if args.only in (None, "deskloop"):
        bench_deskloop(args.cars)
    if args.only == "warnings":
        bench_warnings()


if __name__ == "__main__":
    main()
