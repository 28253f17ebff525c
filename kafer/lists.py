"""Every inspection list issued, recorded in the lake; its outcome, its lift over random, the shadow's verdict.

A list is recorded when it is issued, from whatever path issues it (``kafer predict``, notebook 06,
``kafer predict --watch``, the desk through :func:`kafer.predict.issue_ranking`): when, by whom, the
model, the budget and threshold, the export files it scored (their SHA-256), and per car its risk,
rank, flag, audit pick and stage (at its road test, or where on the line). Records are append-only
and small (:func:`kafer.catalog.save_list`: a new id, written once; no lock).

**The audit.** A share of each list's cars at their road test (``audit_share``) is picked at random,
whatever their risk, for the extended inspection; the draw's seed is recorded, and the cars are
marked on the list and in its record.

**Outcome and lift over random.** Once the lake knows a listed car's label, the list's outcome counts
the road-test failures among its flagged cars and among the rest. Its *lift over random* is how many
times more failures the flagged cars hold than as many cars picked at random from the list would:
``p1 / (w p1 + (1 - w) p0)``, with ``p1`` the failure rate of the flagged cars, ``p0`` that of the
reference (unflagged) cars and ``w`` the flagged share of the list's cars with an outcome. Its 95 %
interval comes from the rate ratio ``p1 / p0`` (Katz's log interval, 0.5 added to each count when a
group has no failure), through the lift, which rises with the ratio. On a list not acted on, every
unflagged car is a reference; on a list acted on, the flagged cars were inspected because the model
chose them, so only its unflagged *audit* cars, which had the same inspection, can be: without an
audit the lift of a list acted on cannot be measured.

**The shadow.** Lists made in the shadow (``shadow``, or per list) are recorded as not acted on. The
verdict pools the shadow's lists over the weeks the plant chose (each car once: from the first list
that had it at its road test, else the last one that listed it) and sets the lower end of the lift's
interval against the bar the plant set before the shadow began (recorded with each shadow list).

**Shaped outcomes.** A car flagged on a list that was acted on has an outcome the list shaped (fixed
before the road test, or tested harder): :func:`shaped_cars` names them for the track record and the
retrain (docs/monitoring.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import html
import math
import os
import secrets
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import catalog
from .config import Settings
from .errors import LakeError, OutputError
from .i18n import date, mark, ntr, tr
from .i18n import number as written
from .lake import Lake, utc_stamp

#: Where a list was issued from.
SOURCES = ("command line", "notebook", "watch", "desk")
#: The per-car columns a list's record keeps (those the list has).
CAR_COLUMNS = ("KNR", "probability", "rank", "in_budget", "audit", "at_road_test", "road_test_at",
               "last_checkpoint", "last_checkpoint_at")
#: z of a two-sided 95 % interval.
_Z95 = 1.959963984540054


def new_list_id() -> str:
    """A fresh, sortable list id such as ``l20241126T201753.123456Z-3fa9``."""
    return f"l{utc_stamp()}-{secrets.token_hex(2)}"


# -- issuing ----------------------------------------------------------------------------------------

def audit_draw(ranked: pd.DataFrame, *, share: float, seed: int) -> np.ndarray:
    """Which cars of a list the audit picks: ``round(share * n)`` of its ``n`` cars at their road test
    (of all its cars when none is), at random whatever their risk, reproducibly from ``seed``.

    The draw is made over the cars in KNR order, so the same cars and seed pick the same cars however
    the list is sorted.

    Returns
    -------
    numpy.ndarray of bool
        Per row of ``ranked``.
    """
    tested = ranked["at_road_test"].to_numpy(dtype=bool) if "at_road_test" in ranked else np.ones(len(ranked), bool)
    eligible = tested if tested.any() else np.ones(len(ranked), dtype=bool)
    order = np.argsort(ranked["KNR"].astype(str).to_numpy(), kind="stable")
    pool = order[eligible[order]]
    count = math.floor(share * len(pool) + 0.5)
    picked = np.zeros(len(ranked), dtype=bool)
    if count:
        picked[np.random.default_rng(seed).choice(pool, size=count, replace=False)] = True
    return picked


@dataclass(frozen=True)
class Draft:
    """A list about to be issued: its cars with their audit marks, and the record it will have."""

    ranked: pd.DataFrame
    record: dict

    @property
    def cars(self) -> pd.DataFrame:
        """The per-car part of the record (:data:`CAR_COLUMNS` the list has)."""
        return self.ranked[[c for c in CAR_COLUMNS if c in self.ranked.columns]].reset_index(drop=True)


def draft_list(ranked: pd.DataFrame, *, facts: Mapping, settings: Settings, by: str | None, source: str,
               files: Sequence[Mapping] = (), shadow: bool | None = None) -> Draft:
    """Mark a ranked list's audit cars and make its record; nothing is written.

    Parameters
    ----------
    ranked : pandas.DataFrame
        The scored list (:func:`kafer.predict.predict_upload`).
    facts : dict
        What :func:`kafer.predict.ranking_facts` says about it (model, budget, threshold, when).
    settings : Settings
        ``audit_share``, ``shadow`` and the shadow's plan (``shadow_bar``, ``shadow_weeks``,
        ``shadow_from``, ``shadow_min_failures``), ``shift_start_hours``.
    by : str or None
        Who issues it (the desk passes the signed-in person); blank: this machine's login.
    source : str
        One of :data:`SOURCES`.
    files : sequence of dict
        The export files scored: ``name`` and ``sha256`` (:func:`upload_files`).
    shadow : bool, optional
        Made in the shadow (recorded as not acted on); ``None``: the setting's.

    Returns
    -------
    Draft

    Raises
    ------
    OutputError
        When the list is empty or the source unknown.
    """
    if ranked.empty:
        raise OutputError(tr("an empty list cannot be issued: the upload scored no car"))
    if source not in SOURCES:
        raise OutputError(f"unknown source of a list {source!r}: one of {', '.join(SOURCES)}")
    shadow = settings.shadow if shadow is None else bool(shadow)
    seed = secrets.randbits(32)
    audit = audit_draw(ranked, share=settings.audit_share, seed=seed)
    marked = ranked.drop(columns="audit", errors="ignore")
    marked.insert(marked.columns.get_loc("in_budget") + 1 if "in_budget" in marked else len(marked.columns),
                  "audit", audit)
    tested = marked["at_road_test"].to_numpy(dtype=bool) if "at_road_test" in marked else np.ones(len(marked), bool)
    end = _data_end(marked)
    model = facts["model"]
    record = {
        "id": new_list_id(), "at": facts["made_at"], "by": (by or "").strip() or getpass.getuser(), "source": source,
        "model": model["version"], "family": model.get("family"), "budget": facts["budget"],
        "threshold": facts.get("threshold"), "files": [dict(f) for f in files], "cars": int(len(marked)),
        "at_road_test": int(tested.sum()), "flagged": int(marked["in_budget"].sum()), "audit": int(audit.sum()),
        "audit_share": settings.audit_share, "audit_seed": seed, "acted_on": not shadow,
        "shadow": ({"bar": settings.shadow_bar, "weeks": settings.shadow_weeks, "from": settings.shadow_from or None,
                    "min_failures": settings.shadow_min_failures} if shadow else None),
        "data_end": None if end is None else end.isoformat(sep=" "),
        "shift": None if end is None else shift_of(end, settings.shift_start_hours),
    }
    return Draft(marked, record)


def upload_files(paths: Iterable[str]) -> list[dict]:
    """The export files an upload names, each with its name and SHA-256 (what a list's record keeps)."""
    from .ingest import list_upload
    from .sources import content_hash

    return [{"name": path.replace("\\", "/").rsplit("/", 1)[-1], "sha256": content_hash(path)}
            for path in list_upload(paths).files]


def _data_end(ranked: pd.DataFrame) -> pd.Timestamp | None:
    """Where the list's data ends (plant time): its cars' latest checkpoint."""
    if "last_checkpoint_at" not in ranked:
        return None
    end = pd.to_datetime(ranked["last_checkpoint_at"]).max()
    return None if pd.isna(end) else end


def shift_of(moment: dt.datetime, starts: Sequence[int]) -> str:
    """The plant shift a moment falls in, ``2024-05-20 shift 2`` (1 = the shift starting at the first of
    ``starts``; the hours before it belong to the previous day's last shift)."""
    moment = pd.Timestamp(moment)
    position = int(np.searchsorted(np.asarray(starts), moment.hour, side="right")) - 1
    day = moment.normalize() - pd.Timedelta(days=1) if position < 0 else moment.normalize()
    return f"{day:%Y-%m-%d} shift {len(starts) if position < 0 else position + 1}"


def record_list(lake: Lake, draft: Draft) -> dict:
    """Record a drafted list in the lake (its cars, then its record); the record."""
    catalog.save_list(lake, draft.record, draft.cars)
    return draft.record


def issue(draft: Draft, *, lake: Lake, write: Callable[[], str] | None = None, out: str = "") -> str:
    """Issue a drafted list: write it where it is read (``write()``, which says what it wrote), then record it.

    A list is issued only when it is recorded: when the record cannot be written, the file just
    written to the local path ``out`` is removed again, and the error raised.

    Parameters
    ----------
    draft : Draft
        The list and its record (:func:`draft_list`).
    lake : Lake
        Where it is recorded.
    write : callable, optional
        Writes ``draft.ranked`` where inspectors read it and says so (``None``: it is only recorded).
    out : str
        The file ``write`` writes, removed again if the record fails (a local path; empty: none).

    Returns
    -------
    str
        What ``write`` said, then the list's id and its audit and shadow in one sentence.

    Raises
    ------
    LakeError
        When the record cannot be written (nothing is left where inspectors read).
    """
    said = write() if write is not None else ""
    try:
        record_list(lake, draft)
    except BaseException:
        if out and "://" not in out:
            with contextlib.suppress(OSError):
                os.remove(out)
        raise
    return f"{said} {recorded_note(draft.record)}".strip()


def recorded_note(record: Mapping) -> str:
    """One sentence: the list recorded in the lake, acted on or not, and its audit."""
    audit = (ntr("{count} car picked at random for the audit ({share} % of the cars at their road test, seed {seed})",
                 "{count} cars picked at random for the audit ({share} % of the cars at their road test, seed {seed})",
                 record["audit"], share=_g(record["audit_share"] * 100), seed=record["audit_seed"])
             if record["audit_share"] else tr("no audit share"))
    mode = tr("a shadow list: recorded, not acted on") if not record["acted_on"] else tr("to be acted on")
    return tr("List {id} recorded in the lake ({mode}); {audit}.", id=record["id"], mode=mode, audit=audit)


def _g(x: float) -> str:
    """A setting's number as written in it (``1.5``, ``2``; ``1,5`` in pt-BR): no more decimals than it has."""
    text = f"{x:g}"
    return text if "e" in text or not math.isfinite(x) else written(x, len(text.partition(".")[2]))


# -- outcomes -----------------------------------------------------------------------------------------

def lift_over_random(found: int, flagged: int, reference_found: int, reference: int, *, share: float) -> dict | None:
    """How many times more failures the flagged cars hold than as many cars picked at random, with a 95 % interval.

    Parameters
    ----------
    found, flagged : int
        Failures among the flagged cars with an outcome, and those cars.
    reference_found, reference : int
        Failures among the reference cars (unflagged cars treated as the flagged ones were), and those cars.
    share : float
        The flagged share ``w`` of the list's cars with an outcome: random picking finds
        ``w p1 + (1 - w) p0`` per car.

    Returns
    -------
    dict or None
        ``value``, ``low``, ``high`` and ``ratio`` (``p1 / p0`` with its interval); ``None`` when a
        group is empty or neither holds a failure.
    """
    if not flagged or not reference or not (found or reference_found):
        return None
    a, n1, c, n0 = float(found), float(flagged), float(reference_found), float(reference)
    if a == 0 or c == 0:  # Haldane: half a car of each kind in each group
        a, n1, c, n0 = a + 0.5, n1 + 1, c + 0.5, n0 + 1
    ratio = (a / n1) / (c / n0)
    spread = _Z95 * math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    low, high = ratio * math.exp(-spread), ratio * math.exp(spread)

    def lift(rr: float) -> float:
        return rr / (share * rr + 1 - share)

    return {"value": lift(ratio), "low": lift(low), "high": lift(high),
            "ratio": {"value": ratio, "low": low, "high": high}}


def list_outcome(cars: pd.DataFrame, labels: pd.DataFrame, *, acted_on: bool) -> dict | None:
    """A list's outcome from its cars and the lake's labels; ``None`` while no listed car has its outcome.

    Parameters
    ----------
    cars : pandas.DataFrame
        The list's cars: ``KNR``, ``in_budget`` and ``audit`` (absent: none).
    labels : pandas.DataFrame
        ``KNR``, ``label_known``, ``label_rod`` (the curated table).
    acted_on : bool
        Whether the list was acted on: its reference cars are then its unflagged audit cars.

    Returns
    -------
    dict or None
        ``known``, ``flagged_known``, ``flagged_failures``, ``other_failures`` (among the unflagged cars
        with an outcome), ``audit_known``, ``audit_failures``, ``reference`` (which cars random picking
        is measured on, in words, or ``None``) and ``lift_over_random`` (``[point, low, high]`` or ``None``).
    """
    merged = cars[["KNR"]].assign(
        flagged=cars["in_budget"].to_numpy(dtype=bool),
        audit=cars["audit"].to_numpy(dtype=bool) if "audit" in cars else False,
    ).merge(labels[["KNR", "label_known", "label_rod"]], on="KNR", how="left")
    known = merged["label_known"].fillna(False).astype(bool).to_numpy()
    if not known.any():
        return None
    failed = known & (merged["label_rod"].fillna(0).to_numpy(dtype=int) == 1)
    flagged, audit = merged["flagged"].to_numpy(), merged["audit"].to_numpy()
    reference = known & ~flagged & (audit if acted_on else True)
    lift = lift_over_random(int((failed & flagged).sum()), int((known & flagged).sum()),
                            int((failed & reference).sum()), int(reference.sum()),
                            share=float((known & flagged).sum() / known.sum()))
    return {"known": int(known.sum()), "flagged_known": int((known & flagged).sum()),
            "flagged_failures": int((failed & flagged).sum()), "other_failures": int((failed & ~flagged).sum()),
            "audit_known": int((known & audit).sum()), "audit_failures": int((failed & audit).sum()),
            "reference": ((tr("its unflagged audit cars") if acted_on else tr("its unflagged cars"))
                          if reference.any() else None),
            "lift_over_random": None if lift is None else [lift["value"], lift["low"], lift["high"]]}


def _labels(lake: Lake, data_version: str | None) -> pd.DataFrame:
    version = data_version or catalog.current_version(lake)
    if version is None:
        return pd.DataFrame({"KNR": pd.Series(dtype=str), "label_known": pd.Series(dtype=bool),
                             "label_rod": pd.Series(dtype=int), "road_test_at": pd.Series(dtype="datetime64[s]")})
    return catalog.features(lake, version)[["KNR", "label_known", "label_rod", "road_test_at"]]


# -- the shadow's verdict ----------------------------------------------------------------------------

#: A verdict's decision as people read it (the record keeps the keys).
DECISIONS = {"go": mark("GO"), "no-go": mark("NO-GO"), "not yet": mark("NOT YET"), "no shadow": mark("NO SHADOW")}


@dataclass(frozen=True)
class Verdict:
    """The shadow's go/no-go verdict against the bar the plant set before it began.

    ``decision`` is ``go``, ``no-go``, ``not yet`` or ``no shadow``; ``words`` says why and what to
    do. ``lift`` is ``[point, low, high]`` over the shadow's pooled cars with an outcome (``None``
    while it cannot be measured); ``start`` and ``end`` bound the shadow's days (plant time, the end
    excluded).
    """

    decision: str
    words: str
    bar: float
    weeks: int
    min_failures: int
    start: str | None = None
    end: str | None = None
    lists: int = 0
    cars: int = 0
    known: int = 0
    failures: int = 0
    flagged_failures: int = 0
    lift: list | None = None
    models: tuple[str, ...] = ()
    note: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {**asdict(self), "models": list(self.models)}

    @property
    def label(self) -> str:
        """The decision as people read it, in the current language: ``GO``, ``NO-GO``, ``NOT YET``, ``NO SHADOW``."""
        return tr(DECISIONS[self.decision]) if self.decision in DECISIONS else self.decision.upper()

    @property
    def html(self) -> str:
        """The go/no-go page as one HTML block (what the desk shows), in the current language."""
        colour = {"go": "#1a7f37", "no-go": "#b42318"}.get(self.decision, "#6e5d00")
        rows = [(tr("Shadow"), tr("{start} to {end} ({weeks} weeks chosen)", start=date(self.start) if self.start
                                  else "—", end=date(self.end) if self.end else "—", weeks=written(self.weeks))),
                (tr("Lists"), tr("{lists} by {models}", lists=written(self.lists),
                                 models=", ".join(self.models) or "—")),
                (tr("Cars listed"), tr("{cars}, {known} with their road-test outcome", cars=written(self.cars),
                                       known=written(self.known))),
                (tr("Road-test failures"), tr("{failures}, {flagged} of them among the flagged cars",
                                              failures=written(self.failures), flagged=written(self.flagged_failures))),
                (tr("Lift over random"), "—" if self.lift is None else _lift_text(self.lift)),
                (tr("Bar (set before the shadow)"), tr("{bar} times random picking, interval included",
                                                       bar=_g(self.bar)))]
        table = "".join(f"<tr><th style=\"text-align:left;padding-right:1em\">{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return (f'<section class="kafer-shadow-verdict"><h3>{html.escape(tr("Shadow verdict:"))} '
                f'<span style="color:{colour}">{html.escape(self.label)}</span></h3><p>{html.escape(self.words)}</p>'
                f"{note}<table>{table}</table></section>")


def _lift_text(lift: Sequence[float]) -> str:
    return f"{written(lift[0], 2)} [{written(lift[1], 2)}, {written(lift[2], 2)}]"


def _day(record: Mapping) -> dt.date:
    """A list's day (plant time): the day its data ends, else the day it was made."""
    return pd.Timestamp(record.get("data_end") or record["at"][:19]).date()


def pooled_cars(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Each car once over several lists (given oldest first): from the first list that had it at its
    road test, else from the last list that listed it."""
    rows = pd.concat([f.assign(_list=i) for i, f in enumerate(frames)], ignore_index=True)
    tested = rows["at_road_test"].to_numpy(dtype=bool) if "at_road_test" in rows else np.zeros(len(rows), bool)
    rows = rows.assign(_order=np.where(tested, rows["_list"], len(frames) + (len(frames) - rows["_list"])))
    return rows.sort_values(["KNR", "_order"], kind="stable").drop_duplicates("KNR").drop(columns=["_list", "_order"])


def shadow_verdict(records: Sequence[Mapping], frames: Mapping[str, pd.DataFrame] | None, labels: pd.DataFrame, *,
                   settings: Settings, today: dt.date | None = None) -> Verdict:
    """The shadow's go/no-go verdict (pure).

    Parameters
    ----------
    records : sequence of dict
        Every list's record, oldest first.
    frames : mapping
        The cars of the shadow's lists by list id (:func:`kafer.catalog.list_cars`).
    labels : pandas.DataFrame
        The lake's labels (``KNR``, ``label_known``, ``label_rod``).
    settings : Settings
        The shadow's plan now (``shadow_from``, and the bar and weeks, compared with those recorded).
    today : datetime.date, optional
        The day the shadow is judged (default: today): its weeks are over once today or a list's day
        reaches its end.

    Returns
    -------
    Verdict
    """
    plan = {"bar": settings.shadow_bar, "weeks": settings.shadow_weeks, "min_failures": settings.shadow_min_failures}
    since = dt.date.fromisoformat(settings.shadow_from) if settings.shadow_from else None
    shadow = [r for r in records if not r["acted_on"] and r.get("shadow") and (since is None or _day(r) >= since)]
    if not shadow:
        return Verdict("no shadow", tr("No shadow list yet: set shadow = true in kafer.toml (or give kafer predict "
                                       "--shadow) and issue the lists for the weeks you chose; then the verdict "
                                       "compares the failures their flagged cars hold with random picking, against the "
                                       "bar set before (now {bar} times random picking, its 95 % interval included).",
                                       bar=_g(plan["bar"])), **plan)
    first = shadow[0]["shadow"]  # the plan recorded before the shadow began
    plan = {"bar": first["bar"], "weeks": first["weeks"], "min_failures": first.get("min_failures", plan["min_failures"])}
    start = dt.date.fromisoformat(first["from"]) if first.get("from") else _day(shadow[0])
    end = start + dt.timedelta(weeks=plan["weeks"])
    last = end - dt.timedelta(days=1)
    inside = [r for r in shadow if start <= _day(r) < end]
    cars = pooled_cars([frames[r["id"]] for r in inside]) if inside and frames else pd.DataFrame()
    outcome = (list_outcome(cars, labels, acted_on=False) if len(cars) else None) or {}
    known, found = outcome.get("known", 0), outcome.get("flagged_failures", 0)
    failures, lift = found + outcome.get("other_failures", 0), outcome.get("lift_over_random")
    base = dict(**plan, start=start.isoformat(), end=end.isoformat(), lists=len(inside), cars=int(len(cars)),
                known=known, failures=failures, flagged_failures=found, lift=lift,
                models=tuple(dict.fromkeys(r["model"] for r in inside)), note=_plan_changed(settings, plan))
    last_day = max(_day(r) for r in records)
    if max(last_day, today or dt.date.today()) < end:
        running = "" if lift is None else tr(" So far the flagged cars hold {lift} times the failures of as many cars "
                                             "picked at random.", lift=_lift_text(lift))
        return Verdict("not yet", tr("Not yet: the shadow runs {weeks} weeks, from {start} to {last}; its lists cover "
                                     "{days} days so far.{running}", weeks=written(plan["weeks"]), start=date(start),
                                     last=date(last), days=written(max((last_day - start).days + 1, 0)),
                                     running=running), **base)
    if failures < plan["min_failures"] or lift is None:
        return Verdict("not yet", tr("Not yet: {known} of the {cars} cars the shadow listed have their road-test "
                                     "outcome in the lake, {failures} of them failed; the verdict needs {needed} "
                                     "failures among them. Ingest the falhas exports that cover their road tests "
                                     "(kafer ingest).", known=written(known), cars=written(len(cars)),
                                     failures=written(failures), needed=written(plan["min_failures"])), **base)
    said = dict(weeks=written(plan["weeks"]), start=date(start), last=date(last), lists=written(len(inside)),
                found=written(found), failures=written(failures), known=written(known), lift=_lift_text(lift),
                bar=_g(plan["bar"]))
    if lift[1] >= plan["bar"]:
        return Verdict("go", tr("Go: over the {weeks} weeks from {start} to {last}, the flagged cars of {lists} lists "
                                "held {found} of the {failures} road-test failures among {known} cars with their "
                                "outcome: {lift} times what as many cars picked at random would find (95 % interval). "
                                "Even the low end of the interval reaches the bar of {bar} set before the shadow "
                                "began: acting on the list finds more failures than random picking. Set shadow = false "
                                "to act on the lists (keep the audit share: it keeps the lift measurable).", **said),
                       **base)
    return Verdict("no-go", tr("No-go: over the {weeks} weeks from {start} to {last}, the flagged cars of {lists} "
                               "lists held {found} of the {failures} road-test failures among {known} cars with their "
                               "outcome: {lift} times what as many cars picked at random would find (95 % interval). "
                               "The low end of the interval, {low}, stays below the bar of {bar} set before the shadow "
                               "began: the shadow has not shown that acting on the list finds that many more failures "
                               "than random picking. Keep picking cars as before; retrain, then run another shadow.",
                               low=written(lift[1], 2), **said), **base)


def _plan_changed(settings: Settings, plan: Mapping) -> str | None:
    """A sentence when the settings now say another bar or length than the shadow's recorded plan."""
    pairs = (("shadow_bar", settings.shadow_bar, plan["bar"]), ("shadow_weeks", settings.shadow_weeks, plan["weeks"]))
    changed = [tr("{setting} {now} (now) instead of {then}", setting=name, now=_g(now), then=_g(then))
               for name, now, then in pairs if now != then]
    if not changed:
        return None
    return tr("The settings say {changed}: the verdict keeps the plan recorded with the shadow's first list, set "
              "before the shadow began; set shadow_from to start a new shadow with a new plan.",
              changed=", ".join(changed))


# -- reading the record ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lists:
    """Every list issued with its outcome, and the shadow's verdict."""

    lake: str
    data_version: str | None
    lists: tuple[dict, ...]
    verdict: Verdict

    def to_dict(self) -> dict:
        """JSON-ready: ``{"lake", "data_version", "lists": [...], "verdict": {...}}``, lists oldest first."""
        return {"lake": self.lake, "data_version": self.data_version, "lists": list(self.lists),
                "verdict": self.verdict.to_dict()}


def issued_lists(lake: Lake, *, settings: Settings, data_version: str | None = None,
                 today: dt.date | None = None) -> Lists:
    """Every list recorded in the lake with its outcome on a curated version, and the shadow's verdict.

    Parameters
    ----------
    lake : Lake
    settings : Settings
    data_version : str, optional
        The curated version whose labels give the outcomes (default: the current one).
    today : datetime.date, optional
        See :func:`shadow_verdict`.

    Returns
    -------
    Lists
        Each list as ``id, at, by, source, model, budget, threshold, cars, at_road_test, flagged,
        audit, audit_share, audit_seed, acted_on, shadow, data_end, shift, files`` and ``outcome``
        (:func:`list_outcome`, ``None`` while no car has its outcome).
    """
    records = catalog.list_records(lake)
    labels = _labels(lake, data_version)
    frames = {r["id"]: catalog.list_cars(lake, r["id"]) for r in records}
    shown = tuple({**r, "outcome": list_outcome(frames[r["id"]], labels, acted_on=r["acted_on"])} for r in records)
    verdict = shadow_verdict(records, frames, labels, settings=settings, today=today)
    return Lists(lake.url, data_version or catalog.current_version(lake), shown, verdict)


def scored_files(lake: Lake) -> set[str]:
    """The SHA-256 of every export file a recorded list scored."""
    return {f["sha256"] for r in catalog.list_records(lake) for f in r.get("files", []) if f.get("sha256")}


def shaped_cars(lake: Lake, *, as_of: str | None = None) -> pd.DataFrame:
    """The cars whose outcome a list shaped: flagged on a list that was acted on, recorded up to ``as_of``.

    Parameters
    ----------
    lake : Lake
    as_of : str, optional
        An ISO UTC time (a curated version's ``created_at``): lists recorded later are left out, so that
        what a curated version says is the same whenever it is read.

    Returns
    -------
    pandas.DataFrame
        ``KNR`` and ``list`` (the first acted-on list that flagged it), one row per car.
    """
    acted = [r for r in catalog.list_records(lake) if r["acted_on"] and (as_of is None or r["at"][:19] <= as_of[:19])]
    found = [catalog.list_cars(lake, r["id"]).loc[lambda c: c["in_budget"].astype(bool), ["KNR"]].assign(list=r["id"])
             for r in acted]
    if not found:
        return pd.DataFrame({"KNR": pd.Series(dtype=str), "list": pd.Series(dtype=str)})
    return pd.concat(found, ignore_index=True).drop_duplicates("KNR").reset_index(drop=True)


def with_shaped(table: pd.DataFrame, lake: Lake, data_version: str) -> pd.DataFrame:
    """A curated table with ``shaped_by_list``: the acted-on list that flagged each car (empty for none),
    as the version sees the lists (:func:`shaped_as_of`); the mark the per-car table carries when it is read."""
    shaped = shaped_as_of(lake, data_version).set_index("KNR")["list"]
    return table.assign(shaped_by_list=table["KNR"].map(shaped).astype(object).fillna("").to_numpy())


def shaped_as_of(lake: Lake, data_version: str) -> pd.DataFrame:
    """:func:`shaped_cars` as a curated version sees them: lists recorded up to its making.

    Raises
    ------
    LakeError
        When the lake holds no such curated version.
    """
    try:
        made = catalog.curated_manifest(lake, data_version)["created_at"]
    except LakeError:
        raise LakeError(tr("the lake {lake} holds no curated version {version!r}", lake=lake.url,
                           version=data_version)) from None
    return shaped_cars(lake, as_of=made)
