"""The whole loop on the desk's pages, as its people use it, in a real headless Chromium.

(a) An analyst brings a month on the page (pieces of 50 kB, so a small generator month travels in
a dozen) while a viewer watches the retrain page; the analyst starts the retrain, the viewer sees
who started it and its progress, and when it ends the approver opens the decision from the link and
keeps the new model. The viewer then scores an export into a list and downloads it (the workbook
opens and holds the cars), downloads the latest list, looks up one car by its KNR, switches to
Portuguese (Portuguese words, a Brazilian number) and back to English. (b) Uploads refused: a bad
file in ingest's words, a wrong ending and a month too big for the caps, each said on the page; a
retrain refused while a terminal's retrain holds the lake's lock, in words naming it; a
viewer's forced requests to the upload and retrain routes are refused 403 and an upload that is
someone else's is not theirs to send to. See tests/desk.py and tests/browser.py.
"""

from __future__ import annotations

import csv
import io
import re

import openpyxl
from playwright.sync_api import expect

from browser import VOILA_READY, free_port, serving
from desk import Visitor, add_accounts, desk_argv, desk_world, person, sign_in
from kafer import catalog, registry
from kafer.demo import make_demo_upload
from kafer.jobs import list_jobs
from kafer.lake import Lake
from kafer.locks import hold
from kafer.recovery import RETRAIN_LOCK
from worlds import quick_retrain

WHY = "What in the comparison decides it (required)"
DROP = "Drop the files here, or choose them"
#: A job's whole run on a small world takes about 20 s on a quiet machine.
JOB_TIMEOUT = 240_000


def road_tested(month) -> str:
    """The KNR of a car the falhas export of ``month`` names (a car at its road test)."""
    falhas = next(path for path in sorted(month.iterdir()) if path.name.startswith("FALHAS_") and path.suffix == ".csv")
    with open(falhas, encoding="latin-1", newline="") as rows:
        return next(csv.DictReader(rows, delimiter=";"))["KNR"]


def workbook(download):
    """A downloaded workbook, opened (the browser keeps it under a name without its ending)."""
    return openpyxl.load_workbook(io.BytesIO(download.path().read_bytes()), read_only=True)


def test_a_month_brought_on_the_page_retrained_watched_decided_then_lists_in_both_languages(browser, tmp_path,
                                                                                            months):
    settings = desk_world(tmp_path, desk_piece_mb=0.05)
    quick_retrain(months[0], settings=settings, run_id="r1")
    add_accounts(settings, ana="approver", vic="viewer", rui="analyst")
    lake, port = Lake(settings.lake), free_port()
    with serving(desk_argv(settings, port=port), port=port, ready=VOILA_READY, log=tmp_path / "desk.log",
                 cwd=tmp_path) as server, \
            person(browser, "loop-rui") as rui, person(browser, "loop-vic") as vic, \
            person(browser, "loop-ana") as ana:
        for page, name in ((rui, "rui"), (vic, "vic"), (ana, "ana")):
            sign_in(page, server.url, name)
        vic.get_by_role("link", name="Retrain").click()
        expect(vic.get_by_text("No retrain has run on this desk yet.")).to_be_visible()
        expect(vic.get_by_role("link", name="Bring exports")).to_have_count(0)  # not offered to a viewer

        rui.get_by_role("link", name="Bring exports").click()
        expect(rui.get_by_role("heading", name="Bring the month's exports")).to_be_visible()
        expect(rui.get_by_text("Signed in: rui (analyst)")).to_be_visible()
        pieces = []
        rui.on("request", lambda request: pieces.append(request.url) if "/piece?" in request.url else None)
        rui.get_by_label(DROP).set_input_files(sorted(months[1].iterdir()))
        rui.get_by_role("button", name="Send the files").click()
        expect(rui.get_by_text("Ready: every file passed ingest's checks.")).to_be_visible()
        expect(rui.get_by_role("status")).to_contain_text("received (100.0%)")
        assert len(pieces) > len(list(months[1].iterdir())) + 5  # the files travelled in pieces
        rui.get_by_role("button", name="Start the retrain").click()
        expect(rui).to_have_url(re.compile(r"/retrain$"))

        expect(vic.get_by_role("status")).to_contain_text("started by rui")  # the viewer's page, never reloaded
        opened = vic.get_by_role("link", name="Open the comparison and the decision")
        expect(opened).to_be_visible(timeout=JOB_TIMEOUT)
        expect(vic.locator("[data-lines]")).to_contain_text("step 04_compare done")
        run = re.search(r"run=(\S+)$", opened.get_attribute("href")).group(1)
        ana.get_by_role("link", name="Retrain").click()
        ana.get_by_role("link", name="Open the comparison and the decision").click()
        expect(ana.get_by_role("heading", name=re.compile(f"Run {run}: new model"))).to_be_visible()
        expect(ana.get_by_role("navigation")).to_contain_text("Decision")
        ana.get_by_placeholder(WHY).fill("the month brought on the page; clearly better than chance")
        ana.get_by_role("button", name="keep new", exact=True).click()
        expect(ana.get_by_text("Kept the new model")).to_be_visible()
        production = registry.production(lake)
        assert production["run"] == run
        assert [(d["by"], d["by_source"]) for d in registry.decisions(lake)] == [("ana", "desk account")]

        vic.get_by_role("link", name="Inspection lists").click()
        expect(vic.get_by_text("No list has been issued from this lake yet.")).to_be_visible()
        vic.get_by_label(DROP).set_input_files(sorted(months[2].iterdir()))
        vic.get_by_role("button", name="Score into a list").click()
        with vic.expect_download() as scored:
            vic.get_by_role("link", name="Download the list (workbook)").click()
        record = catalog.list_records(lake)[-1]
        assert (record["by"], record["source"], record["model"]) == ("vic", "desk", production["version"])
        assert scored.value.suggested_filename == f"inspection-list-{record['id']}.xlsx"
        book = workbook(scored.value)
        rows = list(book["Inspection list"].iter_rows(values_only=True))
        assert rows[0][:2] == ("Rank", "KNR") and len(rows) - 1 == record["cars"] > 100
        assert "Why (what raises its risk most)" in rows[0]  # the workbook as issued, reasons and all
        vic.reload()
        expect(vic.get_by_text(f"List {record['id']}, issued on")).to_contain_text("by vic (desk)")
        with vic.expect_download() as latest:
            vic.get_by_role("link", name="Download the latest list (workbook)").click()
        again = workbook(latest.value)
        assert [r[1] for r in again["Inspection list"].iter_rows(values_only=True)] == [r[1] for r in rows]

        knr = road_tested(months[1])  # a car the lake knows (the month brought on the page)
        vic.get_by_label("The car's KNR").fill(knr)
        vic.get_by_role("button", name="Score this car").click()
        table = vic.get_by_role("table", name="One car by its KNR")
        expect(table).to_contain_text(knr)
        expect(table).to_contain_text("at its road test")
        expect(table.get_by_role("row")).to_have_count(2)

        vic.get_by_role("button", name="Português").click()
        expect(vic.get_by_role("heading", name="Listas de inspeção")).to_be_visible()
        expect(vic.get_by_role("link", name="Trazer exportações")).to_have_count(0)
        expect(vic.get_by_role("table")).to_contain_text(re.compile(r"\d+,\d\u00a0%"))  # the risk, as Brazil writes it
        expect(vic.get_by_role("table")).to_contain_text("na rodagem")
        vic.get_by_role("link", name="Retreinamento").click()
        expect(vic.get_by_role("status")).to_contain_text("iniciado por rui")
        vic.get_by_role("button", name="English").click()
        expect(vic.get_by_role("heading", name="Retrain")).to_be_visible()
        expect(vic.get_by_role("status")).to_contain_text("started by rui")


def test_uploads_refused_on_the_page_and_forced_requests_refused_by_the_server(browser, tmp_path, months):
    settings = desk_world(tmp_path, upload_max_mb=0.4, upload_max_file_mb=0.4)
    add_accounts(settings, rui="analyst", vic="viewer")
    bad = tmp_path / "FALHAS_extra.csv"
    bad.write_bytes(b"KNR,MODELO,COR,MOTOR,ESTACAO,USUARIO,HALLE,DATA\n"
                    b"2024-0100001,T,Azul,1.0,S,u,ZP7,2024-05-07 10:00:00\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an export\n", encoding="utf-8")
    port = free_port()
    with serving(desk_argv(settings, port=port), port=port, ready=VOILA_READY, log=tmp_path / "desk.log",
                 cwd=tmp_path) as server, person(browser, "refused-rui") as rui:
        sign_in(rui, server.url, "rui")
        rui.goto(server.url + "/exports")
        said = rui.get_by_role("alert")
        rui.get_by_label(DROP).set_input_files([bad])
        rui.get_by_role("button", name="Send the files").click()
        expect(said).to_contain_text("FALHAS_extra.csv")
        expect(said).to_contain_text("missing column(s) FALHA")
        expect(rui.get_by_role("button", name="Start the retrain")).to_be_hidden()
        rui.get_by_label(DROP).set_input_files([notes])
        rui.get_by_role("button", name="Send the files").click()
        expect(said).to_contain_text("an upload holds exports only")
        rui.get_by_label(DROP).set_input_files(sorted(months[1].iterdir()))
        rui.get_by_role("button", name="Send the files").click()
        expect(said).to_contain_text("more than the 0.4 MB one upload may be (setting upload_max_mb)")
        small = make_demo_upload(tmp_path / "small", cars=40, seed=5, results_per_car=10, sheet_rows=3000,
                                 start="2024-05-06").folder
        rui.get_by_label(DROP).set_input_files(sorted(small.iterdir()))
        rui.get_by_role("button", name="Send the files").click()
        expect(rui.get_by_text("Ready: every file passed ingest's checks.")).to_be_visible()
        with hold(Lake(settings.lake), RETRAIN_LOCK, purpose="retrain r-terminal", details={"run": "r-terminal"}):
            rui.get_by_role("button", name="Start the retrain").click()
            expect(said).to_contain_text("is being retrained outside the desk: retrain r-terminal")
        assert not list_jobs(settings)

        vic = Visitor(server.url, source="127.0.0.41")
        vic.sign_in("vic")
        files = {"files": [{"name": "STATUS_1.csv", "size": 10}]}
        refused = vic.api("/api/uploads", {"purpose": "retrain", **files})
        assert refused.status == 403 and "vic (viewer, desk account) may not bring" in refused.json()["message"]
        assert vic.api("/api/retrain", {"upload": "u20240101T000000Z-00000000"}).status == 403
        assert vic.get("/exports").status == 403
        mine = Visitor(server.url, source="127.0.0.42")
        mine.sign_in("rui")
        upload = mine.api("/api/uploads", {"purpose": "retrain", **files}).json()["upload"]
        theirs = vic.api(f"/api/uploads/{upload}/piece?name=STATUS_1.csv&offset=0", data=b"KNR,STATUS\n")
        assert theirs.status == 403 and f"upload {upload} is rui's" in theirs.json()["message"]
        assert vic.request("POST", "/api/uploads", data=b"{}", headers={"Content-Type": "application/json"}).status \
            == 403  # no XSRF token: refused before anything is read
        chosen = vic.post("/language", {"language": "pt-BR", "next": "/\\elsewhere.example/"})
        assert chosen.status == 302 and chosen.location == "/" and vic.cookies["kafer-desk-lang"] == "pt-BR"
        assert "Listas de inspeção" in vic.get("/lists").body
        assert vic.post("/language", {"language": "xx", "next": "/lists"}).status == 400
