"""``kafer``: a thin shell over the library. Parses arguments, prints results, maps errors to exit codes.

A user's mistake ends with a one-paragraph message and a non-zero exit, never a traceback
(``KAFER_DEBUG=1`` shows it for developers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from .config import FAMILY_CHOICES, load_settings
from .errors import KaferError, OutputError
from .i18n import datetime, mark, ntr, number, percent, tr, using
from .watch import WATCH_FORMATS


def _progress():
    """A stderr printer that shows at most one row-count line a second."""
    last = {"at": 0.0, "key": None}

    def show(message: str) -> None:
        key = message.split(":")[0]
        now = time.monotonic()
        if key != last["key"] or now - last["at"] >= 1.0 or "rows read" not in message:
            print(f"  {message}", file=sys.stderr, flush=True)
            last.update(at=now, key=key)

    return show


def _lake(args, *, write: bool = False):
    """The settings and the lake, checked (reachable, credentials, bucket; writable when ``write``)
    before anything else is done, so a fault is one line naming the lake, not a failure mid-way."""
    from .lake import Lake

    settings = load_settings(lake=getattr(args, "lake", None), runs=getattr(args, "runs", None))
    lake = Lake(settings.lake)
    lake.check(write=write)
    return settings, lake


def _day(text: str) -> str:
    """An argparse type: a calendar day written YYYY-MM-DD."""
    import datetime as dt

    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day written YYYY-MM-DD, e.g. 2024-04-01") from None
    return text


def cmd_ingest(args) -> int:
    from .ingest import ingest
    from .monitor import outcome_line

    settings, lake = _lake(args, write=True)
    report = ingest(args.paths, lake=lake, settings=settings, progress=_progress())
    print(format_ingest(report))
    manifest = report["manifest"]
    print(outcome_line(lake, settings=settings, before=manifest["parent"] if manifest["new_sources"] else
                       manifest["version"], after=manifest["version"]))
    return 0


#: The columns of an ingest's table of files (:func:`kafer.ingest.upload_summary`), as people read them.
_FILE_COLUMNS = {"file": mark("file"), "kind": mark("kind"), "format": mark("format"), "sheets": mark("sheets"),
                 "rows": mark("rows"), "cars": mark("cars"), "period": mark("period"), "note": mark("note")}


def format_ingest(report: dict) -> str:
    """The analyst's summary of an ingest: files, kinds, sheets, rows, cars, periods, problems."""
    import pandas as pd

    from .ingest import filtered_note

    lines = []
    if "files" in report:
        files = report["files"]
        files = files.assign(**{c: files[c].map(lambda n: "" if pd.isna(n) else number(n))
                                for c in ("rows", "cars") if c in files})
        with pd.option_context("display.width", 160, "display.max_colwidth", 50):
            shown = files.rename(columns=lambda c: tr(_FILE_COLUMNS.get(c, c)))
            lines = [tr("Received:"), shown.to_string(index=False)]
    manifest = report["manifest"]
    already = [r["name"] for r in report.get("landed", []) if r["already_in_lake"]]
    if already:
        lines.append(tr("Already in the lake (same bytes), nothing to add: {files}", files=", ".join(already)))
    if manifest.get("rebuilt"):
        lines.append(tr("Every car was rebuilt from the raw zone (feature definitions {definitions}).",
                        definitions=manifest["feature_definitions"]))
    if manifest["new_sources"] or manifest.get("rebuilt"):
        lines.append(tr("Curated table {version}: {cars} cars, {known} with a known label, {failures} road-test "
                        "failures", version=manifest["version"], cars=number(manifest["cars"]),
                        known=number(manifest["labelled_cars"]), failures=number(manifest["positives"]))
                     + (f" ({percent(manifest['label_rate'])})" if manifest["label_rate"] is not None else ""))
    else:
        lines.append(tr("Nothing new: the curated table stays at {version}.", version=manifest["version"]))
    for kind, (start, end) in manifest["periods"].items():
        lines.append(f"  {kind:<10} " + tr("{start} to {end}  ({rows} rows in the lake)", start=datetime(start),
                                           end=datetime(end), rows=number(manifest["rows"][kind])))
    unknown = manifest["cars"] - manifest["labelled_cars"]
    if unknown:
        lines.append(ntr("Note: {count} car was road-tested outside the period the falhas cover (or not yet): its "
                         "label is unknown and it is not used to train or evaluate.",
                         "Note: {count} cars were road-tested outside the period the falhas cover (or not yet): "
                         "their label is unknown and they are not used to train or evaluate.", unknown))
    lines += [tr("Note: {note}", note=filtered_note(f)) for f in manifest.get("filtered_falhas", [])]
    if "falhas" not in manifest["periods"]:
        lines.append(tr("Problem: no falhas export in the lake, so no car has a known label yet."))
    return "\n".join(lines)


def cmd_rebuild(args) -> int:
    from .ingest import rebuild

    settings, lake = _lake(args, write=True)
    manifest = rebuild(lake=lake, settings=settings, progress=_progress())
    print(format_ingest({"manifest": manifest}))
    return 0


def cmd_features(args) -> int:
    from .catalog import current_features, current_version
    from .lists import with_shaped

    _, lake = _lake(args)
    table = with_shaped(current_features(lake), lake, current_version(lake))
    table.to_csv(args.out, index=False)
    print(f"{len(table):,} cars written to {args.out}")
    return 0


def cmd_demo_data(args) -> int:
    from .demo import make_demo_upload

    demo = make_demo_upload(args.out, cars=args.cars, seed=args.seed, start=args.start, signal=args.signal,
                            signal_in=tuple(p.strip() for p in args.signal_in.split(",")), layout=args.layout)
    print(f"Demo upload of {args.cars:,} cars in {demo.folder}:")
    for path in demo.files:
        print(f"  {path.name}")
    print(f"True probabilities per car: {demo.truth}")
    return 0


def cmd_retrain(args) -> int:
    from .pipeline import retrain

    settings, _ = _lake(args)
    result = retrain(args.paths, lake=settings.lake, runs=settings.runs, run_id=args.run_id, family=args.family,
                     progress=_progress())
    print(result.summary())
    return 0


def _who(args) -> tuple[str, str]:
    """Who decides from the command line, and how the log says it was known: ``--by`` when given,
    else the operating system's user."""
    from .desk.person import login_name

    if args.by is not None:
        return args.by, "--by"
    return login_name(), "os user"


def cmd_decide(args) -> int:
    from .decide import decide

    settings, _ = _lake(args, write=True)
    by, source = _who(args)
    record = decide(args.run, args.choice, by=by, by_source=source, why=args.why, lake=settings.lake,
                    runs=settings.runs)
    print(record.get("message") or json.dumps(record, indent=2))
    return 0


def cmd_rollback(args) -> int:
    from .decide import rollback

    settings, _ = _lake(args, write=True)
    by, source = _who(args)
    print(rollback(args.to, by=by, by_source=source, why=args.why, lake=settings.lake)["message"])
    return 0


def cmd_desk(args) -> int:
    from .desk import serve

    settings, _ = _lake(args)
    return serve(settings=settings, host=args.host, port=args.port, certfile=args.certfile, keyfile=args.keyfile,
                 insecure_http=args.insecure_http, open_browser=not args.no_browser, run_id=args.run,
                 progress=lambda message: print(message, flush=True))


def _password(args, name: str) -> str:
    """The new password: one line of standard input (``--password-stdin``), else typed twice at a terminal."""
    import getpass

    from .errors import AccountError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AccountError("give the password on standard input with --password-stdin (it is never an argument: "
                           "arguments show in the process list)")
    password = getpass.getpass(f"New password for {name}: ")
    if getpass.getpass("Again: ") != password:
        raise AccountError("the two passwords differ: nothing was changed")
    return password


def cmd_users(args) -> int:
    from .desk import accounts
    from .desk.state import users_file

    path = users_file(load_settings())
    if args.action == "list":
        known = accounts.read_accounts(path)
        if not known:
            print(f"No desk accounts in {path}: kafer users add NAME --role approver --password-stdin")
        for account in sorted(known.values(), key=lambda a: a.name):
            print(f"{account.name:<24} {account.role:<9} added {_short(account.added_at)}, changed "
                  f"{_short(account.changed_at)}")
        return 0
    if args.action == "add":
        account = accounts.add(path, args.name, role=args.role, password=_password(args, args.name))
        print(f"Added {account.name} ({account.role}) to {path}.")
    elif args.action == "passwd":
        accounts.find(path, args.name)  # before asking for a password
        account = accounts.set_password(path, args.name, password=_password(args, args.name))
        print(f"New password for {account.name}: their earlier sign-ins have ended, and a running desk closes their "
              "open pages within seconds.")
    elif args.action == "role":
        account = accounts.set_role(path, args.name, role=args.role)
        print(f"{account.name} is now {account.role}: it holds at their next action, and their next page shows it.")
    else:
        account = accounts.remove(path, args.name)
        print(f"Removed {account.name} ({account.role}): a running desk ends their sessions and closes their open "
              "pages within seconds; their past decisions stay in the log.")
    return 0


def cmd_status(args) -> int:
    from .monitor import track_record
    from .registry import status

    settings, lake = _lake(args)
    state = status(lake, runs=settings.runs, stale_after=settings.lock_stale_after)
    track = None
    if state["production"]:
        try:
            record = track_record(lake, settings=settings, earlier=False, drift=False)
            rate = record.production.rate if record.production else None
            track = {"alert": record.alert, "headline": record.headline, "why": record.why,
                     "failure_rate": rate.to_dict() if rate else None}
        except KaferError as exc:
            track = {"alert": None, "headline": tr("cannot be worked out ({problem})", problem=exc), "why": str(exc),
                     "failure_rate": None}
    if args.json:
        print(json.dumps({**state, "track_record": track}, indent=2, default=str))
        return 0
    print(tr("Lake: {lake}", lake=lake.url))
    if not (state["production"] or state["candidates"] or state["decisions"] or state["runs"]):
        print(tr("The lake {lake} holds no model yet: retrain first (make retrain, or kafer retrain PATH).",
                 lake=lake.url))
        return 0
    prod = state["production"]
    print(tr("Production: {version} (run {run}, {family})", version=prod["version"], run=prod["run"],
             family=prod["family"]) if prod else tr("Production: none"))
    if track:
        print(tr("Track record: {headline} (kafer monitor)", headline=track["headline"]))
    waiting = ", ".join(tr("{version} (run {run})", version=c["version"], run=c["run"]) for c in state["candidates"])
    print(tr("New models waiting for a decision: {models}", models=waiting or tr("none")))
    print(tr("Runs:") if state["runs"] else tr("Runs: none"))
    for r in state["runs"]:
        stopped = r["status"] in ("failed", "abandoned", "running") and r["step"]
        where = tr(" in {step}", step=r["step"]) if stopped else ""
        status = tr(_STATUS[r["status"]]) if r["status"] in _STATUS else r["status"]
        print(f"  {r['run']}  " + tr("{status}{where}  started {when}", status=status, where=where,
                                     when=_short(r["started_at"]))
              + ("  " + tr("new model {version}", version=r["candidate"]) if r["candidate"] else ""))
    print(tr("Decisions:") if state["decisions"] else tr("Decisions: none"))
    for d in state["decisions"]:
        known = f" ({d['by_source']})" if d.get("by_source") else ""
        choice = tr(_CHOICE[d["choice"]]) if d["choice"] in _CHOICE else d["choice"]
        print(f"  {_short(d['at'])}  " + tr("{choice} run {run}  by {by}{known}: {why}", choice=f"{choice:<13}",
                                           run=d.get("run") or "-", by=d["by"], known=known, why=d["why"]))
    return 0


#: A run's status and a logged choice as a terminal says them (the JSON keeps the keys).
_STATUS = {"succeeded": mark("succeeded"), "failed": mark("failed"), "abandoned": mark("abandoned"),
           "running": mark("running")}
_CHOICE = {"keep-new": mark("keep new"), "keep-old": mark("keep old"), "rollback": mark("roll back")}


def cmd_monitor(args) -> int:
    from . import registry
    from .model import library_differences, read_meta
    from .monitor import track_record

    settings, lake = _lake(args)
    production = registry.production(lake)
    if production is not None:
        note = library_differences(read_meta(registry.load_artifact(lake, production["version"])),
                                   name=f"production model {production['version']}")
        if note:
            print(f"  {note}", file=sys.stderr)
    record = track_record(lake, settings=settings)
    print(json.dumps(record.to_dict(), indent=2, default=str) if args.json else format_monitor(record))
    return 0


def format_monitor(record) -> str:
    """The track record for a terminal: the warning, production's months (and the failure rate) beside
    its promise and the cars it learned on, the failure-rate news, the threshold's share, what moved in
    the inputs, and the models before it."""
    from .metrics import budget_key
    from .monitor import period_words
    from .narrative import interval

    lines = [tr("Lake: {lake} (curated version {data})", lake=record.lake, data=record.data_version)]
    if record.production is None:
        return "\n".join(lines + [record.why])
    pct = budget_key(record.budget)
    recall = f"recall_at_{pct}"
    for model in record.records:
        spans = ", ".join(tr("kept {when} by {who}", when=_short(t.kept_at), who=t.kept_by)
                          + (tr(", left {when}", when=_short(t.left_at)) if t.left_at else "") for t in model.tenures)
        said = (tr("Production {version} ({family}; {spans}): {headline}") if model is record.production else
                tr("Earlier production {version} ({family}; {spans}): {headline}"))
        lines += ["", said.format(version=model.version, family=model.family, spans=spans,
                                  headline=model.check.headline),
                  f"  {tr('month'):<11} {tr('cars'):>6} {tr('failed'):>6} {tr('rate'):>6}  {'ROC-AUC':<22} "
                  f"{tr('recall at {budget}', budget=f'{pct} %'):<22} {tr('inside the budget'):<22}"]
        learned, promised = model.learned, model.promise
        if learned and learned.get("cars"):
            lines.append(f"  {tr('learned on'):<11} {number(learned['cars']):>6} {number(learned['positives']):>6} "
                         f"{percent(learned['positives'] / learned['cars']):>6}")
        lines.append(f"  {tr('promised'):<11} {'':>6} {'':>6} {'':>6}  {interval(promised.get('roc_auc')):<22} "
                     f"{interval(promised.get(recall)):<22} {percent(record.budget)}")
        for period in (*model.periods, *((model.pooled,) if model.pooled else ())):
            share = period.inside_budget
            inside = "—" if not share else (f"{percent(share['value'])} [{percent(share['low'])}, "
                                            f"{percent(share['high'])}]" + (" " + tr("far") if share["far"] else ""))
            rate = percent(period.failures / period.cars) if period.cars else "—"
            lines.append(f"  {period_words(period.period):<11} {number(period.cars):>6} "
                         f"{number(period.failures):>6} {rate:>6}  "
                         f"{interval(period.figures.get('roc_auc')):<22} {interval(period.figures.get(recall)):<22} "
                         f"{inside}")
    lines += ["", record.why]
    if record.drift is not None:
        lines += ["", record.drift.summary]
        lines += [f"  {family:<14} " + tr("{moved} of {inputs} inputs moved", moved=f"{row.moved:>3}",
                                           inputs=f"{row.inputs:>3}")
                  + (tr("; most: {inputs}", inputs=row.most) if row.most else "")
                  for family, row in record.drift.families.iterrows()]
    return "\n".join(lines)


def _short(iso: str | None) -> str:
    """A recorded moment to the minute, as the plant's language writes it."""
    return "?" if not iso else datetime(str(iso)[:16])


def cmd_predict(args) -> int:
    from .errors import OutputError, UploadError
    from .predict import car_lines, issue_ranking, output_format, predict_cars, predict_upload, ranking_facts, \
        save_ranking

    if args.car:
        # A lookup of named cars, not a list issued to inspectors: read the lake, record nothing.
        if args.paths or args.watch:
            raise UploadError("score either an upload's exports (PATH …, --watch) or cars the lake holds (--car KNR), "
                              "not both")
        settings, _ = _lake(args)
        output_format(args.out)
        scored = predict_cars(args.car, settings=settings, progress=_progress())
        facts = ranking_facts(scored, paths=[], settings=settings)
        print(car_lines(scored, facts))
        if args.out:
            print(save_ranking(scored, args.out, facts=facts))
        return 0
    settings, _ = _lake(args, write=True)
    if not args.out:
        raise OutputError("name where to write the ranked list: --out ranked.xlsx (the workbook) or --out ranked.csv"
                          + (" (with --watch, the folder the lists go into)" if args.watch else ""))
    if args.watch:
        from .watch import watch

        if args.paths:
            raise KaferError("kafer predict --watch FOLDER scores what lands in FOLDER: name no other upload")
        return watch(args.watch, args.out, settings=settings, by=args.by, fmt=args.format, shadow=args.shadow,
                     settle=args.settle, every=args.every, once=args.once,
                     say=lambda line: print(line, flush=True), progress=_progress())
    if not args.paths:
        raise UploadError("nothing to score: name the exports (kafer predict EXPORTS --out ranked.xlsx) or cars the "
                          "lake holds (kafer predict --car KNR)")
    output_format(args.out)
    scored = predict_upload(args.paths, settings=settings, progress=_progress())
    facts = ranking_facts(scored, paths=args.paths, settings=settings)
    print(issue_ranking(scored, args.out, facts=facts, settings=settings, by=args.by, source="command line",
                        paths=args.paths, shadow=args.shadow))
    return 0


def cmd_lists(args) -> int:
    from .lists import issued_lists

    settings, lake = _lake(args)
    found = issued_lists(lake, settings=settings)
    if args.html:
        page = f"<!doctype html><meta charset=\"utf-8\"><title>{tr('Shadow verdict')}</title>{found.verdict.html}"
        try:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(page)
        except OSError as exc:
            raise OutputError(f"cannot write the verdict to {args.html}: {exc.strerror or exc}") from None
    print(json.dumps(found.to_dict(), indent=2, default=str) if args.json else format_lists(found))
    return 0


def format_lists(found) -> str:
    """The lists issued, oldest first, with their outcome, then the shadow's verdict, for a terminal."""
    lines = [tr("Lake: {lake} (labels of curated version {data})", lake=found.lake,
                data=found.data_version or tr("none yet"))]
    if not found.lists:
        lines.append(tr("No inspection list issued yet (kafer predict PATHS --out FILE issues and records one)."))
    else:
        lines.append(f"  {tr('list'):<34} {tr('made (UTC)'):<16} {tr('by'):<10} {tr('model'):<26} "
                     f"{tr('acted on'):<8} {tr('cars'):>6} {tr('flagged'):>7} {tr('audit'):>5} {tr('known'):>6} "
                     f"{tr('failures'):>11}  {tr('lift over random [95 %]')}")
    for item in found.lists:
        outcome = item["outcome"]
        lift = (outcome or {}).get("lift_over_random")
        failures = "—" if outcome is None else f"{outcome['flagged_failures']} / {outcome['other_failures']}"
        lines.append(f"  {item['id']:<34} {_short(item['at']):<16} {str(item['by'])[:10]:<10} {item['model']:<26} "
                     f"{tr('yes') if item['acted_on'] else tr('shadow'):<8} {number(item['cars']):>6} "
                     f"{number(item['flagged']):>7} {number(item['audit']):>5} "
                     f"{number((outcome or {}).get('known', 0)):>6} {failures:>11}  "
                     + ("—" if lift is None else
                        f"{number(lift[0], 2)} [{number(lift[1], 2)}, {number(lift[2], 2)}]"))
    if found.lists:
        lines.append("  " + tr("failures: among the flagged cars / among the rest, of the cars whose outcome the "
                               "lake knows"))
    verdict = found.verdict
    lines += ["", tr("Shadow verdict: {decision}. {words}", decision=verdict.label, words=verdict.words)]
    if verdict.note:
        lines.append(verdict.note)
    return "\n".join(lines)


def cmd_pseudonymize(args) -> int:
    from .people import pseudonymize_lake

    settings, lake = _lake(args, write=True)
    print(pseudonymize_lake(lake, settings=settings, progress=_progress()))
    return 0


def cmd_models(args) -> int:
    from .convert import conversion_summary, convert_models

    settings, lake = _lake(args, write=True)
    done = convert_models(lake, by=args.by, settings=settings, progress=lambda message: print(message, flush=True))
    print(conversion_summary(done))
    return 1 if any(c.outcome == "refused" for c in done) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafer", description="Road-test failure risk for each car built, retrained safely: a person keeps the "
                                  "new model or the old one, and only the kept model scores cars.",
        epilog="`kafer COMMAND --help` shows a command's options. The lake is --lake, else $KAFER_LAKE, else "
               "kafer.toml's lake, else the project's ./lake.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def add(name, func, help_text, *, runs=False):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--lake", metavar="URL", help="datalake: a folder or fsspec URL, e.g. ./lake or "
                       "s3://bucket/kafer (default: $KAFER_LAKE, else kafer.toml's lake, else <project>/lake)")
        if runs:
            p.add_argument("--runs", metavar="FOLDER", help="folder of run records (default: $KAFER_RUNS, else "
                           "kafer.toml's runs, else <project>/runs)")
        p.set_defaults(func=func)
        return p

    upload = "export files, folders or globs (xlsx, csv, csv.gz), e.g. upload/ or 'exports/*2024*'"
    p = add("ingest", cmd_ingest, "check an upload, land it in the lake and rebuild the touched cars' features")
    p.add_argument("paths", nargs="+", metavar="PATH", help=upload)
    add("rebuild", cmd_rebuild, "rebuild every car's features from the raw zone into a new curated version (after "
        "the feature definitions changed; ingest does it by itself then)")
    p = add("features", cmd_features, "write the current per-car table as CSV (with shaped_by_list: the acted-on "
            "inspection list that flagged a car, whose outcome it shaped)")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write, e.g. features.csv")
    p = sub.add_parser("demo-data", help="write a realistic synthetic upload in the plant's layouts",
                       description="Write a realistic synthetic upload in the plant's layouts, and the true "
                                   "probabilities behind it.")
    p.add_argument("out", metavar="OUT", help="folder to write into: the exports go to OUT/upload (empty or "
                   "absent), the truth to OUT/truth.csv")
    p.add_argument("--cars", type=int, default=2000, metavar="N", help="cars built, about 300 a working day "
                   "(default: 2000)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the same seed writes the same files, byte "
                   "for byte (default: 0)")
    p.add_argument("--start", type=_day, default="2024-04-01", metavar="DATE", help="first production day, "
                   "YYYY-MM-DD (default: 2024-04-01)")
    p.add_argument("--signal", type=float, default=1.0, metavar="STRENGTH", help="strength of the planted "
                   "signal: 1 gives a ROC-AUC of about 0.75, 0 pure chance (default: 1)")
    p.add_argument("--layout", default="plant", choices=("plant", "csv", "xlsx"),
                   help="plant: the plant's real mix of xlsx and csv; csv / xlsx: every file in that format")
    p.add_argument("--signal-in", default="contract", metavar="WHERE",
                   help="where the risk hides, comma-separated: contract, configuration, tests, route, defects "
                        "(which ones carry it is drawn from the seed and written to OUT/signal.json)")
    p.set_defaults(func=cmd_demo_data)
    p = add("retrain", cmd_retrain, "ingest (when paths are given), merge, retrain and compare", runs=True)
    p.add_argument("paths", nargs="*", metavar="PATH", help=f"{upload}; none: retrain on the lake as it is")
    p.add_argument("--run-id", metavar="ID", help="name of the run's record (default: a new sortable id such as "
                   "r20241126T201753Z-3fa9)")
    p.add_argument("--family", choices=FAMILY_CHOICES, help="model family to train: hgb (gradient boosting), keras "
                   "(neural network), ensemble (both, stacked into one calibrated model) or auto (compare them on "
                   "the same time-ordered validation cars, keep the better) (default: the settings', hgb)")
    who = ("who decides, logged as given (with \"--by\" as how they were known); default: this computer's user, "
           "logged as \"os user\"")
    p = add("decide", cmd_decide, "keep the run's new model or the old one (logged)", runs=True)
    p.add_argument("run", metavar="RUN", help="the run whose new model to decide on, e.g. "
                   "r20241126T201753Z-3fa9 (kafer status lists those waiting)")
    p.add_argument("choice", choices=("keep-new", "keep-old"), help="keep-new: the run's new model goes into "
                   "production; keep-old: production stays")
    p.add_argument("--by", metavar="NAME", help=who)
    p.add_argument("--why", required=True, metavar="TEXT", help="why, in a sentence, e.g. \"finds 4 more "
                   "failures per 100 cars at 10 %%\" (logged)")
    p = add("rollback", cmd_rollback, "put an earlier model version back in production (logged)", runs=True)
    p.add_argument("--to", required=True, metavar="VERSION", help="a version once in production, e.g. "
                   "m20241026T101500.123456Z (kafer status lists them)")
    p.add_argument("--by", metavar="NAME", help=who)
    p.add_argument("--why", required=True, metavar="TEXT", help="why, in a sentence (logged)")
    p = add("desk", cmd_desk, "serve the decision page (keep new / keep old / roll back): on 127.0.0.1 for "
            "this computer's user, or for the plant's team once people sign in (docs/desk.md)", runs=True)
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="address to listen on (default: "
                   "127.0.0.1, this computer alone); beyond it only with sign-in set up, and with TLS or "
                   "--insecure-http")
    p.add_argument("--port", type=int, default=8866, help="port (default: 8866)")
    p.add_argument("--certfile", metavar="CERT.pem", help="TLS certificate (PEM): the desk speaks HTTPS")
    p.add_argument("--keyfile", metavar="KEY.pem", help="the certificate's private key (PEM)")
    p.add_argument("--insecure-http", action="store_true", help="plain HTTP beyond this computer: only when a proxy "
                   "in front of the desk terminates TLS")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; just print the address")
    p.add_argument("--run", metavar="RUN", help="the run to show (default: the newest run waiting for a decision)")
    p = sub.add_parser("users", help="the desk's local accounts (for a plant without single sign-on)",
                       description="The desk's local accounts, kept in its users file outside the lake "
                                   "(desk_state_dir). Passwords are read from standard input, never from arguments.")
    p.set_defaults(func=cmd_users)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions")
    roles = ("approver", "analyst", "viewer")
    role_help = ("approver: keep new / keep old / roll back; analyst: bring exports and retrain; viewer: read and "
                 "download lists")
    stdin_help = "read the password from one line of standard input (else it is asked twice at the terminal)"
    q = actions.add_parser("add", help="add an account", description="Add an account (no account exists by default).")
    q.add_argument("name", metavar="NAME", help="the account's name, e.g. ana.souza")
    q.add_argument("--role", required=True, choices=roles, help=role_help)
    q.add_argument("--password-stdin", action="store_true", help=stdin_help)
    actions.add_parser("list", help="list the accounts and their roles")
    q = actions.add_parser("remove", help="remove an account: its sessions end, its open pages close")
    q.add_argument("name", metavar="NAME", help="the account's name")
    q = actions.add_parser("passwd", help="set a new password: the account's earlier sessions end")
    q.add_argument("name", metavar="NAME", help="the account's name")
    q.add_argument("--password-stdin", action="store_true", help=stdin_help)
    q = actions.add_parser("role", help="give an account another role (it holds at their next action)")
    q.add_argument("name", metavar="NAME", help="the account's name")
    q.add_argument("--role", required=True, choices=roles, help=role_help)
    p = add("status", cmd_status, "the lake read, the production model, new models waiting for a decision, the runs and the "
            "decision history", runs=True)
    p.add_argument("--json", action="store_true", help="print it as JSON (with the lake's URL under \"lake\")")
    p = add("monitor", cmd_monitor, "is production keeping its promise? its track record month by month beside "
            "what its report promised, a warning when it slips, what moved in its inputs")
    p.add_argument("--json", action="store_true", help="print it as JSON (alert, why, production, periods, …)")
    p = add("predict", cmd_predict, "score every car of an upload with the production model: the ranked "
            "inspection list, recorded in the lake; or cars the lake holds, by their KNR (--car)")
    p.add_argument("paths", nargs="*", metavar="PATH", help=f"{upload}; none are added to the lake (the list is "
                   "recorded there)")
    p.add_argument("--out", metavar="FILE", help="where to write the ranked list: a workbook "
                   "(ranked.xlsx: riskiest first, cars in the inspection budget filled, audit picks in blue, a sheet "
                   "on the model) or CSV (ranked.csv); with --watch, the folder the lists are written into; needed "
                   "with PATH and --watch, optional with --car")
    p.add_argument("--car", action="append", metavar="KNR", help="a car the lake holds, e.g. 2024-1516075 (repeat "
                   "for more): its risk as known at its road test (or so far), whether it is in the inspection "
                   "budget, and why; a lookup, not a list issued (nothing is recorded)")
    p.add_argument("--by", metavar="NAME", help="who issues the list, recorded with it (default: this machine's "
                   "login)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--shadow", dest="shadow", action="store_const", const=True, default=None,
                      help="a shadow list: recorded as not acted on, to measure what acting on it would find "
                           "(default: the setting shadow)")
    mode.add_argument("--acted-on", dest="shadow", action="store_const", const=False,
                      help="a list inspectors act on, whatever the setting shadow says")
    p.add_argument("--watch", metavar="FOLDER", help="score each new export landing in FOLDER once, write its list "
                   "into the --out folder and record it; runs until stopped (Ctrl-C)")
    p.add_argument("--once", action="store_true", help="with --watch: look once and end (for a timer)")
    p.add_argument("--format", choices=WATCH_FORMATS, default="xlsx", help="with --watch: the lists' format "
                   "(default: xlsx)")
    p.add_argument("--settle", type=float, default=60.0, metavar="SECONDS", help="with --watch: take an export once "
                   "no file of it changed for this long (default: 60)")
    p.add_argument("--every", type=float, default=60.0, metavar="SECONDS", help="with --watch: seconds between two "
                   "looks (default: 60)")
    p = add("lists", cmd_lists, "every inspection list issued, oldest first, with its outcome once the road tests "
            "are in, and the shadow's go/no-go verdict")
    p.add_argument("--json", action="store_true", help="print it as JSON ({\"lists\": [{\"id\", \"at\", \"model\", "
                   "\"budget\", \"cars\", \"flagged\", \"acted_on\", \"audit\", \"outcome\"}], \"verdict\": {…}})")
    p.add_argument("--html", metavar="FILE", help="also write the go/no-go verdict as a page, e.g. verdict.html")
    add("pseudonymize", cmd_pseudonymize, "replace people's ids (falhas USUARIO) that an older Käfer landed in clear "
        "by their keyed pseudonyms, and remove the original files holding them; once, on a lake from before")
    p = add("models", cmd_models, "administer the lake's kept models: `convert` rewrites those an older Käfer kept "
            "(a pickle, a .keras file) as arrays that load without running code, keeping their record")
    p.add_argument("action", choices=("convert",), help="convert: every model version whose artifact an older Käfer "
                   "wrote, checked to score as before; once, after upgrading")
    p.add_argument("--by", metavar="NAME", help="who converts (recorded; default: the login name)")
    return parser


def _warnings_as_lines(command: str):
    """Show Käfer's own warnings as one line each on stderr (``kafer CMD: warning: …``), others as Python does."""
    import warnings

    from .errors import KaferWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, KaferWarning):
            print(f"kafer {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warnings_as_lines(args.command)
        return _in_language(args)


def _in_language(args) -> int:
    """Run the command in the plant's language (its settings' ``language``, else ``KAFER_LANG``)."""
    try:
        language = load_settings().language
    except KaferError:
        language = None  # the command itself says what is wrong with the settings
    with using(language, environ=True):
        return _run(args)


def _run(args) -> int:
    """Run the command; a user's mistake is one line in the plant's language and an exit code."""
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader left (`kafer status --json | head`): end quietly, as the Python docs advise for
        # SIGPIPE, pointing stdout at devnull so the flush at exit raises nothing either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KaferError as exc:
        print(tr("kafer {command}: error: {message}", command=args.command, message=exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(tr("kafer {command}: interrupted", command=args.command), file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI is the one place that catches broadly
        if os.environ.get("KAFER_DEBUG"):
            raise
        print(tr("kafer {command}: internal error: {kind}: {message}\nThis is a bug in Käfer; run again with "
                 "KAFER_DEBUG=1 to see where.", command=args.command, kind=type(exc).__name__, message=exc),
              file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
