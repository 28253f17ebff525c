"""Benchmarks: `make bench` prints the figures the issues ask for.

1. Ingest speed and memory on a month-sized upload (6,000 cars, ~5.5 M resultados rows as csv.gz,
   status and falhas as multi-sheet xlsx) against merely parsing the same files once.
   At scale (``--only scale``): six such months given to one ``kafer ingest``, against the six
   ingested one after another, the read-check-stage-land half alone, and the bare parse.
   A plant's history (``--only history``): a thirteenth month into an empty lake and into a lake
   holding twelve, and a rebuild of the twelve-month lake from its raw zone.
2. Model quality against the truth: the candidate's ROC-AUC as a share of the way from chance
   to the AUC of the true probabilities on the same evaluation cars; and on pure-chance data.
3. Scoring speed with the production model: one car and 1,000 cars.

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


def upload(name: str, *, cars: int, seed: int, signal: float = 1.0, start: str = "2024-04-01") -> Path:
    """A generator upload in bench/out/<name>, made once (in a child process, like all heavy work)."""
    folder = OUT / name
    if not (folder / "truth.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        seconds, _, _ = timed(KAFER + ["demo-data", str(folder), "--cars", str(cars), "--seed", str(seed),
                                       "--signal", str(signal), "--start", start])
        print(f"  (made {name} in {seconds:.0f} s)")
    return folder


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
    print(f"\n== Ingest: month-sized upload, {cars:,} cars")
    folder = upload(f"month-{cars}", cars=cars, seed=11)
    files = files_of(folder)
    size = sum(p.stat().st_size for p in files) / 1e6
    print(f"  files: {', '.join(p.name for p in files)} ({size:,.0f} MB)")
    parse = min(float(timed([sys.executable, __file__, "--parse-only", *map(str, files)])[2]) for _ in range(2))
    lake = OUT / "lake-ingest"
    shutil.rmtree(lake, ignore_errors=True)
    seconds, peak, out = timed(KAFER + ["ingest", *map(str, files), "--lake", str(lake)])
    rows = sum(json.loads(p.read_text())["rows"] for p in (lake / "raw" / "index").glob("*.json"))
    print(f"  rows read: {rows:,}")
    print(f"  parse only (pyarrow / python-calamine): {parse:6.1f} s")
    print(f"  kafer ingest (read, check, land, merge): {seconds:6.1f} s  = {seconds / parse:.2f} x parse   (bar: 3 x)")
    print(f"  peak memory of the ingest process:       {peak:6.0f} MB            (bar: 3,072 MB)")
    seconds, _, _ = timed(KAFER + ["ingest", *map(str, files), "--lake", str(lake)])
    print(f"  the same upload again (recognized, nothing new): {seconds:.1f} s")


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


def bench_quality(cars: int, signal: float, family: str | None) -> None:
    import pandas as pd

    label = "pure chance" if signal == 0 else f"planted signal {signal}"
    print(f"\n== Model quality: {cars:,} cars, {label}, family {family or 'default'}")
    folder = upload(f"quality-{cars}-{signal}", cars=cars, seed=5, signal=signal)
    root = OUT / f"run-quality-{cars}-{signal}-{family}"
    shutil.rmtree(root, ignore_errors=True)
    cmd = KAFER + ["retrain", str(folder / "upload"), "--lake", str(root / "lake"), "--runs", str(root / "runs")]
    seconds, peak, _ = timed(cmd + (["--family", family] if family else []))
    run = next((root / "runs").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    predictions = pd.read_csv(run / "predictions.csv", dtype={"KNR": str})
    truth = pd.read_csv(folder / "truth.csv", dtype={"KNR": str})
    both = predictions.merge(truth[["KNR", "p_true"]], on="KNR")
    model_auc = auc(both["y_true"], both["p_candidate"])
    print(f"  retrain end to end: {seconds:.1f} s, peak {peak:,.0f} MB; steps: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in manifest["steps"].items()))
    print(f"  evaluation cars: {len(both):,}, failures among them: {int(both['y_true'].sum())}")
    if signal == 0:
        print(f"  candidate ROC-AUC {model_auc:.3f}   (bar: between 0.40 and 0.60 - nothing of the label leaks)")
        return
    oracle = auc(both["y_true"], both["p_true"])
    share = (model_auc - 0.5) / (oracle - 0.5)
    print(f"  candidate ROC-AUC {model_auc:.3f}, true-probability ROC-AUC {oracle:.3f}")
    print(f"  share of the way from chance to the truth: {share:.0%}   (bar: 80 %)")


def bench_predict() -> None:
    print("\n== Scoring with the production model")
    root = OUT / "run-quality-2000-1.0-None"
    if not (root / "runs").exists():
        print("  (needs the quality run; skipped)")
        return
    run = next((root / "runs").iterdir()).name
    lake = str(root / "lake")
    subprocess.run(KAFER + ["decide", run, "keep-new", "--by", "bench", "--why", "benchmark", "--lake", lake,
                            "--runs", str(root / "runs")], capture_output=True)
    for cars in (1, 1000):
        folder = upload(f"predict-{cars}", cars=cars, seed=99, start="2024-09-01")
        seconds, _, _ = timed(KAFER + ["predict", str(folder / "upload"), "--lake", lake,
                                       "--out", str(OUT / f"predict-{cars}.csv")])
        bar = 5 if cars == 1 else 15
        print(f"  {cars:>5,} car(s): {seconds:5.1f} s  (bar: {bar} s, whole command including start-up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=6000, help="cars in the month-sized upload")
    parser.add_argument("--only", choices=("ingest", "scale", "history", "quality", "predict"))
    parser.add_argument("--parse-only", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--land-only", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_only:
        print(parse_only(args.parse_only))
        return
    if args.land_only:
        land_only(args.land_only[0], args.land_only[1:])
        return
    OUT.mkdir(exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    if args.only in (None, "predict"):
        bench_predict()


if __name__ == "__main__":
    main()
