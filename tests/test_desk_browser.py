"""The desk shared by a team, as its people use it, in a real headless Chromium.

(a) Local accounts over TLS, served beyond the loopback: an approver and a viewer signed in at
once; the viewer's page has no approver controls; the approver decides and the viewer sees it
after a refresh; the approver's role withdrawn while their page is open: the click is refused, and
so is a disabled button enabled in the page's DOM (nothing moves in the lake); a wrong password is
refused and the next try from that address waits. (b) The plant's single sign-on: a small tornado
proxy (tests/sso_proxy.py) signs people in and forwards HTTP and websockets from its own address;
through it the approver decides and the log says how they were known; the identity header sent
straight to the desk by anyone else is ignored. See tests/desk.py and tests/browser.py.
"""

from __future__ import annotations

import sys

from playwright.sync_api import expect

from browser import ROOT, VOILA_READY, free_port, serving
from desk import PASSWORD, Visitor, add_accounts, desk_argv, desk_world, person, self_signed, sign_in
from kafer import registry
from kafer.desk import accounts
from kafer.desk.state import users_file
from kafer.lake import Lake
from worlds import quick_retrain

WHY = "What in the comparison decides it (required)"


def test_an_approver_and_a_viewer_at_once_over_tls_rights_checked_where_the_click_lands(browser, tmp_path, months):
    settings = desk_world(tmp_path, desk_signin_wait=30.0, desk_signin_wait_max=60.0)
    first = quick_retrain(months[0], settings=settings, run_id="r1")
    add_accounts(settings, ana="approver", vic="viewer")
    lake, port = Lake(settings.lake), free_port()
    tls = self_signed(tmp_path)
    argv = desk_argv(settings, port=port, host="0.0.0.0", tls=tls)  # beyond the loopback: TLS and sign-in
    with serving(argv, port=port, ready=VOILA_READY, log=tmp_path / "desk.log", cwd=tmp_path, tls=True) as server, \
            person(browser, "tls-ana", ignore_https_errors=True) as ana, \
            person(browser, "tls-vic", ignore_https_errors=True) as vic:
        sign_in(ana, server.url, "ana")
        sign_in(vic, server.url, "vic")
        for page in (ana, vic):
            expect(page.get_by_role("heading", name=f"Run r1: new model {first}")).to_be_visible()
            assert page.url.startswith("https://127.0.0.1:")
        expect(ana.get_by_text("Signed in as ana")).to_contain_text("(approver; desk account)")
        expect(vic.get_by_text("Signed in as vic")).to_contain_text("(viewer; desk account)")
        expect(vic.get_by_text("You can read this page; keeping a model or rolling back takes the approver role"))\
            .to_be_visible()
        for control in ("keep new", "keep old", "roll back"):
            expect(vic.get_by_role("button", name=control, exact=True)).to_have_count(0)
        expect(vic.get_by_placeholder(WHY)).to_have_count(0)
        session = next(c for c in ana.context.cookies() if c["name"].startswith("kafer-desk-session-"))
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"

        ana.get_by_placeholder(WHY).fill("first model, clearly better than chance")
        ana.get_by_role("button", name="keep new", exact=True).click()
        expect(ana.get_by_text(f"Kept the new model: {first} is now in production")).to_be_visible()
        vic.reload()
        expect(vic.get_by_role("cell", name="ana (desk account)")).to_be_visible()
        assert [(d["by"], d["by_source"]) for d in registry.decisions(lake)] == [("ana", "desk account")]

        second = quick_retrain(months[1], settings=settings, run_id="r2")
        ana.reload()
        expect(ana.get_by_role("heading", name=f"Run r2: new model {second}")).to_be_visible()
        accounts.set_role(users_file(settings), "ana", role="viewer")  # withdrawn while her page is open
        ana.get_by_placeholder(WHY).fill("no clear difference")
        ana.get_by_role("button", name="keep old", exact=True).click()
        expect(ana.get_by_text("Your keep old was refused: ana (viewer, desk account) may not keep a new model or "
                               "the old one")).to_be_visible()
        keep_new = ana.get_by_role("button", name="keep new", exact=True)
        expect(keep_new).to_be_disabled()
        keep_new.evaluate("button => button.removeAttribute('disabled')")  # the page's DOM, changed by hand
        keep_new.click()
        expect(ana.get_by_text("Your keep new was refused: ana (viewer, desk account)")).to_be_visible()
        assert registry.production(lake)["version"] == first and len(registry.decisions(lake)) == 1

        with person(browser, "tls-guesser", ignore_https_errors=True) as guesser:
            sign_in(guesser, server.url, "vic", "not her password")
            expect(guesser.get_by_text("Wrong name or password. The next try from your address is checked after 30 s"))\
                .to_be_visible()
            guesser.get_by_label("Password").fill(PASSWORD["vic"])
            guesser.get_by_role("button", name="Sign in").click()
            expect(guesser.get_by_text("Too many failed sign-ins from your address")).to_be_visible()
            expect(guesser.get_by_role("heading", name="Sign in to the decision desk")).to_be_visible()
        ana.screenshot(path=str(tmp_path / "desk-refused.png"), full_page=True)


def test_the_plants_sign_on_through_its_proxy_and_the_desk_trusts_only_that_proxy(browser, tmp_path, months):
    settings = desk_world(tmp_path, desk_proxy_addresses=["127.0.0.2"],
                          desk_group_roles={"kafer-approvers": "approver", "kafer-viewers": "viewer"})
    first = quick_retrain(months[0], settings=settings, run_id="r1")
    lake, port, front = Lake(settings.lake), free_port(), free_port()
    proxy = [sys.executable, str(ROOT / "tests" / "sso_proxy.py"), "--port", str(front), "--upstream",
             f"http://127.0.0.1:{port}", "--source", "127.0.0.2"]
    with serving(desk_argv(settings, port=port), port=port, ready=VOILA_READY, log=tmp_path / "desk.log",
                 cwd=tmp_path) as desk, \
            serving(proxy, port=front, ready=VOILA_READY, log=tmp_path / "proxy.log") as sso, \
            person(browser, "proxy-ana") as ana, \
            person(browser, "proxy-forger", extra_http_headers={"X-Forwarded-User": "ana",
                                                                "X-Forwarded-Groups": "kafer-approvers"}) as forger:
        ana.goto(f"{sso.url}/sso/login?user=ana&next=/")
        expect(ana.get_by_role("heading", name=f"Run r1: new model {first}")).to_be_visible()
        expect(ana.get_by_text("Signed in as ana")).to_contain_text("(approver; desk sign-in (proxy))")
        ana.get_by_placeholder(WHY).fill("first model")
        ana.get_by_role("button", name="keep new", exact=True).click()  # a widget message over the proxied websocket
        expect(ana.get_by_text(f"Kept the new model: {first} is now in production")).to_be_visible()
        assert [(d["by"], d["by_source"]) for d in registry.decisions(lake)] == [("ana", "desk sign-in (proxy)")]

        forger.goto(desk.url + "/")  # straight to the desk, the identity headers in hand
        expect(forger.get_by_role("heading", name="Sign in through the plant's sign-on")).to_be_visible()
        assert Visitor(desk.url, headers={"X-Forwarded-User": "ana"}).get("/").status == 302
        forger.goto(f"{sso.url}/sso/login?user=eve&next=/")  # signed on, but no group the desk gives a role
        expect(forger.get_by_text("eve (no role, desk sign-in (proxy)) may not read the desk")).to_be_visible()
