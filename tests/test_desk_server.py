"""The served desk at the HTTP and websocket level, as a stranger, a second person and an administrator
meet it: nothing without signing in, kernels that belong to their opener, the cap per person,
failed sign-ins slowed, sessions ended when an account goes or its password changes, headers from
anyone but the proxy ignored, and what ``kafer desk`` refuses to start.

One desk with local accounts serves the module (it only reads, except the last test, which ends
a session of its own account); each visitor connects from its own address of this computer.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from browser import VOILA_READY, free_port, serving, wait_until
from desk import Visitor, add_accounts, desk_argv, desk_world, kernels_of
from kafer.desk import accounts
from kafer.desk.serve import DeskError, check_serving
from kafer.desk.state import users_file
from worlds import quick_retrain

RUN = "r20240501T000000Z-desk"
#: Every route Voila or the desk could answer, and what a stranger must get from each.
STRANGER = {"/": 302, f"/?run={RUN}": 302, "/voila/render/05_decide.ipynb": 404, "/voila/tree": 404,
            "/voila/files/05_decide.ipynb": 404, "/voila/files/desk.png": 404, "/api/kernels": 404,
            "/api/contents": 404, "/voila/api/contents/": 404, "/api/sessions": 404, "/tree": 404,
            "/voila/api/shutdown/00000000-0000-0000-0000-000000000000": 403,
            "/exports": 302, "/retrain": 302, "/lists": 302, "/lists/latest.xlsx": 302, "/api/jobs/latest": 403}


@pytest.fixture(scope="module")
def desk(tmp_path_factory, months):
    """A desk with local accounts (ana approver; vic, rui and eve viewers), two pages per person, a
    30-second wait after a failed sign-in; a run waiting for a decision."""
    root = tmp_path_factory.mktemp("desk")
    settings = desk_world(root, desk_kernels_per_person=2, desk_signin_wait=30.0, desk_signin_wait_max=60.0)
    quick_retrain(months[0], settings=settings, run_id=RUN)
    add_accounts(settings, ana="approver", vic="viewer", rui="viewer", eve="viewer")
    port = free_port()
    with serving(desk_argv(settings, port=port), port=port, ready=VOILA_READY, log=root / "desk.log",
                 cwd=root) as server:
        server.settings = settings
        yield server


def test_without_signing_in_no_page_no_api_no_websocket_and_nothing_of_the_lake(desk):
    ana = Visitor(desk.url, source="127.0.0.11")
    kernel = ana.sign_in("ana") and ana.open_page()
    stranger = Visitor(desk.url, source="127.0.0.12")
    said = []
    for path, status in STRANGER.items():
        reply = stranger.get(path)
        said.append(reply.body)
        assert reply.status == status, (path, reply.status)
        assert reply.location in ("", f"/login?next={quote(path, safe='')}")  # only what the stranger asked echoes
    for path in (f"/api/kernels/{kernel}", f"/api/kernels/{kernel}/restart"):
        reply = stranger.get(path)
        said.append(reply.body)
        assert reply.status in (403, 404) and kernel not in reply.body
    stranger.get("/login")
    assert stranger.post(f"/voila/api/shutdown/{kernel}").status == 403
    for route in ("/api/uploads", "/api/retrain", "/api/lists"):
        assert stranger.api(route, {"purpose": "list", "files": [{"name": "STATUS_1.csv", "size": 1}]}).status == 403
    assert stranger.request("DELETE", f"/api/kernels/{kernel}", headers={"X-XSRFToken": "x"}).status == 403
    assert stranger.websocket(kernel) == 403
    assert kernel in kernels_of(desk) and ana.post(f"/voila/api/shutdown/{kernel}").status == 204
    page = stranger.get("/login")
    assert page.status == 200 and "Sign in to the decision desk" in page.body and 'name="_xsrf"' in page.body
    everything = "\n".join(said + [page.body])
    for secret in (RUN, desk.settings.lake, desk.settings.runs, "KAFER", "Traceback"):
        assert secret not in everything, secret


def test_a_second_person_can_neither_attach_to_nor_shut_down_anothers_kernel(desk):
    ana, vic = Visitor(desk.url, source="127.0.0.13"), Visitor(desk.url, source="127.0.0.14")
    assert ana.sign_in("ana").status == 302 and vic.sign_in("vic").status == 302
    kernel = ana.open_page()
    assert vic.get(f"/api/kernels/{kernel}").status == 403
    assert vic.websocket(kernel) == 403
    assert vic.post(f"/voila/api/shutdown/{kernel}").status == 403
    assert vic.request("DELETE", f"/api/kernels/{kernel}",
                       headers={"X-XSRFToken": vic.cookies["_xsrf"]}).status == 403
    assert kernel in kernels_of(desk)
    assert ana.get(f"/api/kernels/{kernel}").status == 200 and ana.websocket(kernel) == 101
    assert ana.websocket(kernel, origin="https://elsewhere.example") == 403  # her cookie, another site's page
    del ana.cookies["_xsrf"]
    ana.open_page()  # the page hands out the XSRF cookie its closing beacon sends back
    assert ana.post(f"/voila/api/shutdown/{kernel}", {"_xsrf": "forged"}).status == 403
    assert ana.post(f"/voila/api/shutdown/{kernel}").status == 204
    wait_until(lambda: kernel not in kernels_of(desk), timeout=60, what="the kernel its owner shut down gone")


def test_a_person_may_have_two_pages_open_and_a_third_is_refused_in_words(desk):
    eve = Visitor(desk.url, source="127.0.0.15")
    eve.sign_in("eve")
    opened = [eve.open_page(), eve.open_page()]
    third = eve.get("/")
    assert third.status == 429 and "eve already has 2 desk pages open, the most one person may" in third.body
    vic = Visitor(desk.url, source="127.0.0.16")
    vic.sign_in("vic")
    assert vic.open_page()  # someone else's cap is their own
    eve.post(f"/voila/api/shutdown/{opened[0]}")
    wait_until(lambda: opened[0] not in kernels_of(desk), timeout=60, what="the page's kernel closed")
    assert eve.open_page()


def test_a_wrong_password_is_refused_and_the_next_try_from_that_address_waits(desk):
    guesser = Visitor(desk.url, source="127.0.0.17")
    refused = guesser.sign_in("ana", "not her password")
    assert refused.status == 401 and "Wrong name or password" in refused.body and "checked after 30 s" in refused.body
    assert not guesser.signed_in
    right = guesser.sign_in("ana")  # even the right password waits: nothing is checked
    assert right.status == 429 and "Too many failed sign-ins from your address" in right.body
    assert not guesser.signed_in and int(right.headers["Retry-After"]) > 20
    elsewhere = Visitor(desk.url, source="127.0.0.18")  # ana herself, from her own computer: not locked out
    assert elsewhere.sign_in("ana").status == 302 and elsewhere.get("/login").location == "/"
    assert guesser.sign_in("nobody-here", "whatever whatever").status == 429


def test_identity_headers_from_anyone_but_the_proxy_are_ignored(desk):
    forger = Visitor(desk.url, source="127.0.0.19", headers={"X-Forwarded-User": "ana", "X-Forwarded-Groups":
                                                             "kafer-approvers", "X-Forwarded-For": "10.0.4.7",
                                                             "Authorization": "token anything"})
    assert forger.get("/").status == 302 and forger.get("/api/kernels/x").status == 404
    assert forger.get(f"/?token=x&run={RUN}").location.startswith("/login")


def test_removing_a_person_or_changing_a_password_ends_their_session_and_their_kernel(desk):
    rui = Visitor(desk.url, source="127.0.0.20")
    rui.sign_in("rui")
    kernel = rui.open_page()
    accounts.set_password(users_file(desk.settings), "rui", password="rui's new password!")
    wait_until(lambda: kernel not in kernels_of(desk), timeout=30, what="the kernel of a changed password closed")
    assert rui.get("/").location.startswith("/login") and rui.websocket(kernel) == 403
    assert rui.sign_in("rui", "rui's new password!").status == 302
    kernel = rui.open_page()
    accounts.remove(users_file(desk.settings), "rui")
    wait_until(lambda: kernel not in kernels_of(desk), timeout=30, what="the kernel of a removed account closed")
    assert rui.get("/").location.startswith("/login")
    log = (Path(desk.settings.runs) / "desk.log").read_text(encoding="utf-8")  # the server's own log
    assert "closing kernel" in log and "refused" in log and "password" not in log.replace("password changed", "")


def test_kafer_desk_refuses_what_would_not_be_safe(tmp_path):
    settings = desk_world(tmp_path)
    with pytest.raises(DeskError, match="serves 0.0.0.0 only once people sign in: add accounts"):
        check_serving(settings, host="0.0.0.0")
    assert check_serving(settings, host="127.0.0.1") == "loopback"
    add_accounts(settings, ana="approver")
    with pytest.raises(DeskError, match=r"beyond this computer \(192.0.2.10\) the desk speaks TLS"):
        check_serving(settings, host="192.0.2.10")
    assert check_serving(settings, host="192.0.2.10", insecure_http=True) == "account"
    with pytest.raises(DeskError, match="give both --certfile and --keyfile"):
        check_serving(settings, host="0.0.0.0", certfile="cert.pem")
    (tmp_path / "cert.pem").write_text("not a certificate", encoding="utf-8")
    (tmp_path / "key.pem").write_text("not a key", encoding="utf-8")
    with pytest.raises(DeskError, match="cert.pem with key .*key.pem cannot be used"):
        check_serving(settings, host="0.0.0.0", certfile=str(tmp_path / "cert.pem"), keyfile=str(tmp_path / "key.pem"))
    proxied = settings.replace(desk_proxy_addresses=("10.0.4.7",), desk_default_role="viewer")
    assert check_serving(proxied, host="0.0.0.0", insecure_http=True) == "proxy"


def test_stopping_kafer_desk_stops_its_server(tmp_path):
    """A service manager's SIGTERM to ``kafer desk`` alone (not its process group) stops the server it started."""
    import contextlib
    import os
    import signal
    import subprocess

    import psutil

    settings = desk_world(tmp_path)
    port = free_port()
    with open(tmp_path / "desk.out", "wb") as out:
        desk = subprocess.Popen(desk_argv(settings, port=port), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        said = tmp_path / "desk.out"
        wait_until(lambda: b"The decision desk is at" in said.read_bytes() or desk.poll() is not None, timeout=120,
                   what="kafer desk up")
        [server] = psutil.Process(desk.pid).children()
        desk.send_signal(signal.SIGTERM)
        assert desk.wait(60) == 0
        wait_until(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE, timeout=60,
                   what="the desk's server stopped with kafer desk")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(desk.pid, signal.SIGKILL)  # whatever is left of the group, when the test failed
