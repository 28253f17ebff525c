"""The whole loop on the desk's pages: bring exports, retrain, inspection lists, the language.

Pages (GET, each with the navigation bar of :mod:`kafer.desk.pages`):

``/exports`` (right ``upload``)
    Bring the month's exports: a drop zone; the page's script (``/desk-static/loop.js``) announces
    the files, sends each in pieces of ``desk_piece_mb``, shows the bytes received, asks for the
    check, then offers to start the retrain.
``/retrain`` (right ``read``)
    The latest retrain job: who started it, when, its step and progress lines (the script asks
    ``/api/jobs/latest`` every 2 s); when it ends, the link to the decision of its run, or its error.
``/lists`` (right ``download``)
    The latest list issued (download), an export scored into a list, one car by its KNR.

Routes that act (POST, XSRF token in the ``X-XSRFToken`` header or the form; JSON answers, a
refusal as ``{"message": ...}`` with 400, 403 or 409):

``/api/uploads`` announce files (:func:`kafer.uploads.open_upload`); ``purpose`` ``retrain`` takes
the right ``upload``, ``list`` the right ``download``. ``/api/uploads/<id>/piece?name=&offset=``
one piece, the body its raw bytes (:func:`~kafer.uploads.receive_piece`). ``/api/uploads/<id>/check``
ingest's checks in a child process (:func:`~kafer.uploads.check_upload`). ``/api/uploads/<id>/cancel``.
``/api/retrain`` start the job on a ready upload (right ``retrain``). ``/api/lists`` score a ready
upload into a list issued in the person's name (right ``download``). ``/language`` the person's language.

Every route checks the right where it acts and that the upload is the person's (the upload
functions refuse anyone else); slow work (a piece written, a check, a retrain's start, scoring)
runs off the event loop, so one person's upload never holds up another's page.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from pathlib import Path

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .. import jobs, uploads
from ..errors import CarError, JobBusy, KaferError, OutputError, OwnerError, RegistryError, RightsError, SessionError
from ..i18n import datetime, number, percent, tr, using
from .handlers import DeskHandler, DeskMixin
from .pages import LANGUAGE_COOKIE, LANGUAGE_NAMES, TEMPLATES, nav, words

_UPLOAD = r"(?P<upload_id>u\d{8}T\d{6}Z-[0-9a-f]{8})"
_LIST = re.compile(r"^l\d{8}T\d{6}(\.\d+)?Z-[0-9a-f]{4}$")
#: Seconds between two looks of the retrain page at the job.
POLL_SECONDS = 2
#: What each refusal answers with.
_STATUS = ((RightsError, 403), (OwnerError, 403), (JobBusy, 409), (SessionError, 409), (RegistryError, 409))
#: Where the desk keeps the workbooks of the lists it issued (inside the runs folder).
LISTS = "lists"


def speaking(method):
    """Run a handler's method in the person's language (:attr:`DeskMixin.language`)."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        with using(self.language):
            return await ensure_async(method(self, *args, **kwargs))
    return wrapper


def acting(method):
    """A route that acts: in the person's language; a refusal (a :class:`KaferError`) answered as JSON."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        with using(self.language):
            try:
                return await ensure_async(method(self, *args, **kwargs))
            except KaferError as exc:
                status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
                self.log.info("kafer desk: %s refused to %s: %s", self.person.name if self.person else "?",
                              self.request.path, exc)
                self.answer({"message": str(exc)}, status=status)
    return wrapper


def in_thread(function, /, *args, **kwargs):
    """``function(*args, **kwargs)`` on a worker thread, in the current language (contexts are copied)."""
    return asyncio.to_thread(function, *args, **kwargs)


class LoopPage(DeskHandler):
    """A page of the loop: rendered from its template with the bar, the words and the person."""

    def render_page(self, template: str, here: str, **values) -> None:
        base = self.base_url
        bar = nav(self.person, base=base, here=here, xsrf_form_html=self.xsrf_form_html(), next_url=self.request.uri)
        said = words()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(TEMPLATES.get_template(template).render(
            bar=bar, w=said, words_json=json.dumps(said).replace("</", "<\\/"), language=self.language, base=base,
            static=url_path_join(base, "desk-static/loop.js"), person=self.person,
            piece=int(self.desk_settings.desk_piece_mb * 1e6), **values))


class ExportsPage(LoopPage):
    """``/exports``: bring the month's exports (right ``upload``)."""

    @web.authenticated
    @speaking
    def get(self):
        person = self.require("upload")
        self.render_page("exports.html", "exports", may_retrain="retrain" in person.rights)


class RetrainPage(LoopPage):
    """``/retrain``: the latest retrain job, followed as it runs (right ``read``)."""

    @web.authenticated
    @speaking
    def get(self):
        self.require("read")
        self.render_page("retrain.html", "retrain", every=POLL_SECONDS * 1000)


class ListsPage(LoopPage):
    """``/lists``: the latest list, an export scored into a list, one car by its KNR (right ``download``)."""

    @web.authenticated
    @speaking
    async def get(self):
        self.require("download")
        settings = self.desk_settings
        latest = await in_thread(latest_list, settings)
        knr = self.get_query_argument("knr", "").strip()
        car, refusal = None, ""
        if knr:
            try:
                car = await in_thread(car_rows, knr, settings)
            except (CarError, RegistryError) as exc:
                refusal = str(exc)
        self.render_page("lists.html", "lists", latest=latest and {
            "id": latest["id"], "download": url_path_join(self.base_url, f"lists/{latest['id']}.xlsx"),
            "about": tr("List {list}, issued on {when} by {by} ({source}): {cars} cars, {flagged} in the inspection "
                        "budget.", list=latest["id"], when=datetime(latest["at"]), by=latest["by"],
                        source=latest["source"], cars=number(latest["cars"]), flagged=number(latest["flagged"]))},
            knr=knr, car=car, refusal=refusal)


class LanguageHandler(DeskHandler):
    """``/language`` (POST, a form): keep the person's language in a cookie, back to the page they were on."""

    @web.authenticated
    def post(self):
        chosen = self.get_body_argument("language", "")
        if chosen not in LANGUAGE_NAMES:
            raise web.HTTPError(400, f"unknown language {chosen[:20]!r}")
        self.set_cookie(LANGUAGE_COOKIE, chosen, path=self.base_url, expires_days=365, samesite="Lax",
                        secure=self.request.protocol == "https")
        self.redirect(self.next_url())


class LoopAPI(DeskMixin, APIHandler):
    """A route of the loop that acts or answers JSON."""

    def answer(self, body: dict, *, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    def body_json(self) -> dict:
        try:
            given = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request's body is no JSON") from None
        if not isinstance(given, dict):
            raise web.HTTPError(400, "the request's body is no JSON object")
        return given

    def upload_answer(self, upload: uploads.Upload) -> None:
        self.answer(upload_json(upload))

    def write_error(self, status_code: int, **kwargs) -> None:
        APIHandler.write_error(self, status_code, **kwargs)


class UploadsAPI(LoopAPI):
    """``/api/uploads``: announce the files of an upload (its purpose decides the right it takes)."""

    @web.authenticated
    @acting
    async def post(self):
        given = self.body_json()
        purpose = given.get("purpose")
        if purpose not in ("retrain", "list"):
            raise web.HTTPError(400, "purpose must be retrain or list")
        person = self.require("upload" if purpose == "retrain" else "download")
        files = [(str(f.get("name", "")), f.get("size")) for f in given.get("files") or () if isinstance(f, dict)]
        upload = await in_thread(uploads.open_upload, files, by=person.name, settings=self.desk_settings)
        self.log.info("kafer desk: %s opened upload %s (%s, %d files, %d bytes)", person.name, upload.upload_id,
                      purpose, len(upload.files), upload.size)
        self.upload_answer(upload)


class PieceAPI(LoopAPI):
    """``/api/uploads/<id>/piece?name=&offset=``: one piece of a file, the body its bytes."""

    @web.authenticated
    @acting
    async def post(self, upload_id):
        person = self.require("download")  # the least right that opens an upload; the owner check is the library's
        name = self.get_query_argument("name")
        try:
            offset = int(self.get_query_argument("offset"))
        except ValueError:
            raise web.HTTPError(400, "offset must be a whole number") from None
        upload = await in_thread(uploads.receive_piece, upload_id, name, offset, self.request.body, by=person.name,
                                 settings=self.desk_settings)
        self.upload_answer(upload)


class CheckAPI(LoopAPI):
    """``/api/uploads/<id>/check``: read the whole upload with ingest's checks, in a child process."""

    @web.authenticated
    @acting
    async def post(self, upload_id):
        person = self.require("download")
        upload = await in_thread(uploads.check_upload, upload_id, by=person.name, settings=self.desk_settings,
                                 isolated=True)
        self.upload_answer(upload)


class CancelAPI(LoopAPI):
    """``/api/uploads/<id>/cancel``: remove the person's own upload."""

    @web.authenticated
    @acting
    async def post(self, upload_id):
        person = self.require("download")
        await in_thread(uploads.cancel_upload, upload_id, by=person.name, settings=self.desk_settings)
        self.answer({"upload": upload_id, "state": "cancelled"})


class RetrainAPI(LoopAPI):
    """``/api/retrain``: start the retrain job on the person's ready upload (right ``retrain``)."""

    @web.authenticated
    @acting
    async def post(self):
        person = self.require("retrain")
        settings = self.desk_settings
        upload = await in_thread(uploads.ready_upload, str(self.body_json().get("upload", "")), settings=settings)
        if upload.owner != person.name:
            raise OwnerError(tr("upload {upload} is {owner}'s: only they may add to it, check it or cancel it",
                                upload=upload.upload_id, owner=upload.owner))
        job = await in_thread(jobs.start_retrain, upload.paths, by=person.name, settings=settings,
                              language=self.language)
        self.log.info("kafer desk: %s started retrain %s on upload %s", person.name, job.job_id, upload.upload_id)
        self.answer({"job": job.job_id, "page": url_path_join(self.base_url, "retrain")})


class LatestJobAPI(LoopAPI):
    """``/api/jobs/latest?job=&since=``: the latest job and its progress lines after byte ``since``."""

    @web.authenticated
    @acting
    async def get(self):
        self.require("read")
        settings = self.desk_settings
        found = await in_thread(jobs.list_jobs, settings)
        if not found:
            self.answer({"job": None, "lines": [], "offset": 0})
            return
        job = found[0]
        since = self.get_query_argument("since", "0")
        since = int(since) if since.isdigit() and self.get_query_argument("job", "") == job.job_id else 0
        progress = await in_thread(jobs.read_progress, job.job_id, settings=settings, since=since)
        self.answer({"job": job_json(job, base=self.base_url), "lines": list(progress.lines),
                     "offset": progress.offset})


class ListsAPI(LoopAPI):
    """``/api/lists``: score the person's upload into a list issued in their name (right ``download``)."""

    @web.authenticated
    @acting
    async def post(self):
        person = self.require("download")
        settings = self.desk_settings
        upload_id = str(self.body_json().get("upload", ""))
        upload = await in_thread(uploads.check_upload, upload_id, by=person.name, settings=settings, isolated=True)
        try:
            issued = await in_thread(issue_list, upload, by=person.name, settings=settings)
        finally:  # scored or not, its files are not kept: the list's record names them and their hashes
            await in_thread(uploads.cancel_upload, upload_id, by=person.name, settings=settings)
        self.log.info("kafer desk: %s issued list %s", person.name, issued["list"])
        self.answer({**issued, "download": url_path_join(self.base_url, f"lists/{issued['list']}.xlsx")})


class ListWorkbook(DeskHandler):
    """``/lists/<id>.xlsx`` and ``/lists/latest.xlsx``: a list issued, as the workbook (right ``download``)."""

    @web.authenticated
    @speaking
    async def get(self, list_id):
        self.require("download")
        settings = self.desk_settings
        if list_id == "latest":
            latest = await in_thread(latest_list, settings)
            if latest is None:
                raise web.HTTPError(404, tr("No list has been issued from this lake yet."))
            list_id = latest["id"]
        if not _LIST.match(list_id):
            raise web.HTTPError(404, tr("there is no list {list}", list=list_id))
        try:
            data = await in_thread(list_workbook_bytes, list_id, settings)
        except KaferError as exc:
            raise web.HTTPError(404, str(exc)) from None
        self.set_header("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        self.set_header("Content-Disposition", f'attachment; filename="inspection-list-{list_id}.xlsx"')
        self.set_header("Cache-Control", "no-store")
        self.finish(data)


# -- what the routes do, apart from the web ---------------------------------------------------------------

def upload_json(upload: uploads.Upload) -> dict:
    """An upload as the page's script reads it."""
    return {"upload": upload.upload_id, "state": upload.state, "received": upload.received, "size": upload.size,
            "progress": upload.progress(), "error": upload.error,
            "files": [{"name": f.name, "size": f.size, "received": f.received} for f in upload.files]}


def job_json(job: jobs.Job, *, base: str) -> dict:
    """A job as the retrain page shows it, in the current language."""
    return {"id": job.job_id, "by": job.by, "started": datetime(job.started_at), "state": job.state,
            "step": job.step, "headline": job.headline(), "error": job.error,
            "decision": url_path_join(base, f"?run={job.run_id}") if job.state == "succeeded" else None}


def latest_list(settings) -> dict | None:
    """The record of the latest list issued from the settings' lake, or ``None``."""
    from .. import catalog
    from ..lake import Lake

    records = catalog.list_records(Lake(settings.lake))
    return records[-1] if records else None


def kept_workbook(settings, list_id: str) -> Path:
    """Where the desk keeps the workbook of a list it issued: ``<runs>/lists/<id>.xlsx``."""
    return Path(settings.runs).resolve() / LISTS / f"{list_id}.xlsx"


def list_workbook_bytes(list_id: str, settings) -> bytes:
    """The workbook of list ``list_id``: the one the desk issued (with each car's reasons) when it issued
    it, else made again from the list's record in the lake (:func:`kafer.predict.recorded_workbook`)."""
    import io

    from ..lake import Lake
    from ..predict import recorded_workbook

    kept = kept_workbook(settings, list_id)
    if kept.is_file():
        return kept.read_bytes()
    out = io.BytesIO()
    recorded_workbook(Lake(settings.lake), list_id).save(out)
    return out.getvalue()


def issue_list(upload: uploads.Upload, *, by: str, settings) -> dict:
    """Score a ready upload with the production model into a list issued in ``by``'s name; its id and
    what was said. The workbook issued is kept (:func:`kept_workbook`) so that it downloads as issued."""
    from .. import catalog
    from ..lake import Lake
    from ..predict import issue_ranking, predict_upload, ranking_facts

    ranked = predict_upload(upload.paths, settings=settings)
    facts = ranking_facts(ranked, paths=upload.paths, settings=settings)
    folder = Path(settings.runs).resolve() / LISTS
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f".{upload.upload_id}.xlsx"
    said = issue_ranking(ranked, str(out), facts=facts, settings=settings, by=by, source="desk", paths=upload.paths)
    record = next((r for r in reversed(catalog.list_records(Lake(settings.lake)))
                   if r["at"] == facts["made_at"] and r["by"] == by and r["source"] == "desk"), None)
    if record is None:
        raise OutputError(tr("the list was issued, but its record is not in the lake {lake}: look for it with kafer "
                             "lists", lake=settings.lake))
    out.rename(kept_workbook(settings, record["id"]))
    return {"list": record["id"], "said": said, "cars": record["cars"], "flagged": record["flagged"]}


def car_rows(knr: str, settings) -> list[dict]:
    """One car by its KNR, scored with the production model, as the lists page shows it: rank, risk,
    whether in the inspection budget against the bar, where it is, and why.

    Raises
    ------
    CarError
        When the KNR is malformed or not in the lake.
    RegistryError
        When no model is in production.
    """
    from ..predict import predict_cars, ranking_facts

    ranked = predict_cars([knr], settings=settings)
    bar = ranking_facts(ranked, paths=[], settings=settings)["threshold"]  # the bar of the version that scored it
    rows = []
    for car in ranked.itertuples(index=False):
        if bar is None:
            budget = tr("yes: in the budget") if car.in_budget else tr("no: not in the budget")
        elif car.in_budget:
            budget = tr("yes: at or above the bar of {bar}", bar=percent(bar))
        else:
            budget = tr("no: below the bar of {bar}", bar=percent(bar))
        if car.at_road_test:
            stage = tr("at its road test ({when})", when=_moment(car.road_test_at))
        elif isinstance(car.last_checkpoint, str):
            stage = tr("still on the line, last seen at {checkpoint} ({when}): a risk so far",
                       checkpoint=car.last_checkpoint, when=_moment(car.last_checkpoint_at))
        else:
            stage = tr("not at its road test yet: a risk so far")
        rows.append({"knr": car.KNR, "rank": number(car.rank), "risk": percent(car.probability), "budget": budget,
                     "stage": stage, "why": car.reasons})
    return rows


def _moment(value) -> str:
    import pandas as pd

    return tr("time unknown") if value is None or pd.isna(value) else datetime(pd.Timestamp(value).to_pydatetime())


def loop_handlers(server_url: str) -> list[tuple]:
    """The loop's routes under ``server_url`` (registered by :func:`kafer.desk.handlers.desk_handlers`)."""
    static = Path(__file__).resolve().parent / "static"
    routes = [
        ("/exports", ExportsPage), ("/retrain", RetrainPage), ("/lists", ListsPage),
        (r"/lists/(?P<list_id>[A-Za-z0-9.\-]+)\.xlsx", ListWorkbook), ("/language", LanguageHandler),
        ("/api/uploads", UploadsAPI), (rf"/api/uploads/{_UPLOAD}/piece", PieceAPI),
        (rf"/api/uploads/{_UPLOAD}/check", CheckAPI), (rf"/api/uploads/{_UPLOAD}/cancel", CancelAPI),
        ("/api/retrain", RetrainAPI), ("/api/jobs/latest", LatestJobAPI), ("/api/lists", ListsAPI),
    ]
    return [(url_path_join(server_url, path), handler) for path, handler in routes] + [
        (url_path_join(server_url, r"/desk-static/(.*)"), web.StaticFileHandler, {"path": str(static)})]
