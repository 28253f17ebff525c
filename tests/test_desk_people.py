"""Who is on the desk and what they may do: rights, the users file, its folder, the sign-in providers,
failed sign-ins slowed per address, and the person a page's kernel re-checks at each action.

The providers are given real tornado requests (a peer address, headers, cookies signed with a real
secret); the browser tests (test_desk_browser.py) show the same through a served desk.
"""

from __future__ import annotations

import json
import os
import io
import stat
from unittest import mock

import pytest
import tornado.web
from jupyter_server.base.handlers import JupyterHandler
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from traitlets.config import Configurable

from kafer.cli import main
from kafer.config import load_settings
from kafer.desk import accounts
from kafer.desk.identity import (AccountIdentity, LoopbackIdentity, ProxyIdentity, SignInThrottle,
                                 session_cookie, sign_in_mode)
from kafer.desk.person import current_person, kernel_environment
from kafer.desk.rights import ROLES, Person, allowed, require
from kafer.desk.state import cookie_secret, users_file
from kafer.errors import AccountError, ConfigError, RightsError

PASSWORD = "correct horse battery"
SECRET = b"0123456789abcdef" * 4


@pytest.fixture
def settings(tmp_path):
    return load_settings(lake=str(tmp_path / "lake"), desk_state_dir=str(tmp_path / "desk"))


@pytest.fixture
def users(settings):
    return users_file(settings)


# -- rights ----------------------------------------------------------------------------------------------
def test_each_role_has_its_rights_and_everyone_reads():
    approver, analyst, viewer = (Person("p", (role,), "account") for role in ("approver", "analyst", "viewer"))
    assert [allowed(approver, r) for r in ("read", "download", "decide", "rollback", "upload", "retrain")] == [
        True, True, True, True, False, False]
    assert [allowed(analyst, r) for r in ("read", "download", "decide", "rollback", "upload", "retrain")] == [
        True, True, False, False, True, True]
    assert viewer.rights == {"read", "download"} and set(ROLES) == {"approver", "analyst", "viewer"}
    assert Person("p", ("analyst", "approver"), "proxy").rights == ROLES["analyst"] | ROLES["approver"]
    assert not allowed(None, "read") and not allowed(Person("p", (), "proxy"), "read")


def test_require_says_who_may_not_do_what_and_which_role_would():
    assert require(Person("ana", ("approver",), "account"), "decide").name == "ana"
    with pytest.raises(RightsError, match=r"^vic \(viewer, desk account\) may not roll production back to an earlier "
                                          r"model: that takes the approver role"):
        require(Person("vic", ("viewer",), "account"), "rollback")
    with pytest.raises(RightsError, match="nobody is signed in: sign in to start a retrain"):
        require(None, "retrain")
    with pytest.raises(PermissionError):  # a RightsError is a PermissionError too
        require(Person("rui", ("viewer",), "proxy"), "upload")
    with pytest.raises(ValueError, match="unknown right 'approve'"):
        allowed(Person("ana", ("approver",), "account"), "approve")


# -- the users file and its folder ------------------------------------------------------------------------
def test_accounts_are_added_listed_changed_and_removed_with_slow_salted_hashes(users):
    ana = accounts.add(users, "ana.souza", role="approver", password=PASSWORD)
    accounts.add(users, "vic", role="viewer", password=PASSWORD)
    stored = json.loads(users.read_text())
    hashes = [a["hash"] for a in stored["accounts"]]
    assert all(h.startswith("$argon2id$") for h in hashes) and hashes[0] != hashes[1]  # salted: same password
    assert PASSWORD not in users.read_text() and "hash" not in repr(ana)
    assert set(accounts.read_accounts(users)) == {"ana.souza", "vic"}
    assert accounts.verify(accounts.read_accounts(users), "ANA.souza", PASSWORD) == ana
    assert accounts.verify(accounts.read_accounts(users), "ana.souza", PASSWORD + "!") is None
    assert accounts.verify(accounts.read_accounts(users), "nobody", PASSWORD) is None
    renewed = accounts.set_password(users, "ana.souza", password="another good one")
    assert renewed.generation != ana.generation and renewed.added_at == ana.added_at
    assert accounts.verify(accounts.read_accounts(users), "ana.souza", PASSWORD) is None
    moved = accounts.set_role(users, "vic", role="analyst")
    assert moved.role == "analyst" and moved.generation == accounts.read_accounts(users)["vic"].generation
    assert accounts.remove(users, "VIC").name == "vic" and set(accounts.read_accounts(users)) == {"ana.souza"}
    if os.name == "posix":
        assert stat.S_IMODE(users.stat().st_mode) == 0o600 and stat.S_IMODE(users.parent.stat().st_mode) == 0o700


def test_a_bad_account_request_says_what_is_wrong_and_changes_nothing(users):
    accounts.add(users, "ana", role="approver", password=PASSWORD)
    before = users.read_bytes()
    for call, match in ((lambda: accounts.add(users, "Ana", role="viewer", password=PASSWORD),
                         "already has an account"),
                        (lambda: accounts.add(users, "bo b", role="viewer", password=PASSWORD), "not an account name"),
                        (lambda: accounts.add(users, "bob", role="admin", password=PASSWORD), "'admin' is not a role"),
                        (lambda: accounts.add(users, "bob", role="viewer", password="short"), "at least 10"),
                        (lambda: accounts.add(users, "bobbobbobbob", role="viewer", password="bobbobbobbob"),
                         "may not be the account's name"),
                        (lambda: accounts.remove(users, "bob"), r"no account named 'bob' .*accounts: ana"),
                        (lambda: accounts.set_password(users, "bob", password=PASSWORD), "no account named 'bob'")):
        with pytest.raises(AccountError, match=match):
            call()
    assert users.read_bytes() == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_users_file_or_folder_others_can_write_is_refused_in_words(users, settings):
    accounts.add(users, "ana", role="approver", password=PASSWORD)
    users.chmod(0o622)
    with pytest.raises(AccountError, match=r"users.json can be written by other accounts \(mode -rw--w--w-\).*600"):
        accounts.read_accounts(users)
    with pytest.raises(AccountError, match="can be written by other accounts"):
        sign_in_mode(settings)
    users.chmod(0o600)
    users.parent.chmod(0o777)
    with pytest.raises(AccountError, match="chmod 700"):
        accounts.add(users, "vic", role="viewer", password=PASSWORD)
    users.parent.chmod(0o700)
    users.write_text("{not json", encoding="utf-8")
    with pytest.raises(AccountError, match="is not a readable users file"):
        accounts.read_accounts(users)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_cookie_secret_is_made_once_private_and_refused_when_others_can_read_it(settings):
    first = cookie_secret(settings)
    path = users_file(settings).parent / "cookie_secret"
    assert len(first) == 64 and cookie_secret(settings) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(AccountError, match="can be read by other accounts: whoever reads it can sign in as anyone"):
        cookie_secret(settings)


def test_the_sign_in_mode_follows_the_settings_and_the_users_file(settings, users):
    assert sign_in_mode(settings) == "loopback"
    accounts.add(users, "ana", role="approver", password=PASSWORD)
    assert sign_in_mode(settings) == "account"
    proxied = settings.replace(desk_proxy_addresses=("10.0.4.7",), desk_default_role="viewer")
    assert sign_in_mode(proxied) == "proxy"


def test_the_desk_settings_are_checked_with_clear_errors(tmp_path):
    for values, match in (({"desk_group_roles": {"qa": "admin"}}, r"desk_group_roles: 'qa' = 'admin': a role is one"),
                          ({"desk_proxy_addresses": ("proxy.plant",), "desk_default_role": "viewer"},
                           "not an IP address or network"),
                          ({"desk_proxy_addresses": ("10.0.4.7",)}, "nobody the proxy signs in could get a role"),
                          ({"desk_user_header": "X User"}, "must be a header name"),
                          ({"desk_kernels_per_person": 0}, "at least 1"),
                          ({"desk_signin_wait": 5.0, "desk_signin_wait_max": 1.0}, "desk_signin_wait must lie")):
        with pytest.raises(ConfigError, match=match):
            load_settings(lake=str(tmp_path / "lake"), **values)
    (tmp_path / "kafer.toml").write_text('[kafer]\ndesk_state_dir = "state"\ndesk_proxy_addresses = ["10.0.4.0/29"]\n'
                                         '[kafer.desk_group_roles]\n"QA Approvers" = "approver"\n', encoding="utf-8")
    read = load_settings(config_file=tmp_path / "kafer.toml")
    assert read.desk_state_dir == str(tmp_path / "state") and read.desk_group_roles == {"QA Approvers": "approver"}
    assert read.desk_proxy_addresses == ("10.0.4.0/29",) and read.to_dict()["desk_group_roles"] == {
        "QA Approvers": "approver"}


# -- the sign-in providers ----------------------------------------------------------------------------------
class _Desk(Configurable):
    """What a provider's parent (the desk's app) gives it: the settings."""

    def __init__(self, settings):
        super().__init__()
        self.desk_settings = settings


def request(*, peer: str = "127.0.0.1", headers: dict | None = None, cookie: str | None = None,
            protocol: str = "http") -> JupyterHandler:
    """A request handler as the desk's server would have it: a peer address, headers, cookies."""
    app = tornado.web.Application(cookie_secret=SECRET, base_url="/")
    connection = mock.Mock()
    connection.context.remote_ip, connection.context.protocol = peer, protocol
    fields = HTTPHeaders({"Host": "desk.plant:8866", **(headers or {})})
    if cookie:
        fields["Cookie"] = cookie
    return JupyterHandler(app, HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"), headers=fields,
                                                 connection=connection))


def signed_in_cookie(identity: AccountIdentity, person: Person) -> str:
    """The cookie a browser sends back after ``person`` signed in."""
    handler = request()
    identity.set_session(handler, person)
    morsel = handler._new_cookie[session_cookie(handler)]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and not morsel["secure"]
    assert session_cookie(handler) == "kafer-desk-session-desk-plant-8866"  # per desk: host and port
    return f"{session_cookie(handler)}={morsel.value}"


def test_the_proxy_is_believed_only_from_its_own_address(settings):
    proxied = settings.replace(desk_proxy_addresses=("10.0.4.7", "fd00::/64"),
                               desk_group_roles={"KAFER-Approvers": "approver", "kafer-viewers": "viewer"},
                               desk_user_roles={"PLANT\\rui": "analyst"})
    identity = ProxyIdentity(parent=_Desk(proxied))
    headers = {"X-Forwarded-User": "ana.souza", "X-Forwarded-Groups": "Domain Users, kafer-approvers"}
    ana = identity.get_user(request(peer="10.0.4.7", headers=headers))
    assert ana.username == "ana.souza" and ana.person == Person("ana.souza", ("approver",), "proxy")
    assert identity.get_user(request(peer="::ffff:10.0.4.7", headers=headers)).person.name == "ana.souza"
    assert identity.get_user(request(peer="fd00::12", headers=headers)).person.roles == ("approver",)
    for peer in ("10.0.4.8", "127.0.0.1", "::1"):  # anyone else sending the same headers: nobody
        assert identity.get_user(request(peer=peer, headers={**headers, "X-Forwarded-For": "10.0.4.7"})) is None
    assert identity.get_user(request(peer="10.0.4.7", headers={"X-Forwarded-Groups": "kafer-approvers"})) is None
    rui = identity.get_user(request(peer="10.0.4.7", headers={"X-Forwarded-User": "plant\\RUI",
                                                              "X-Forwarded-Groups": "kafer-viewers"})).person
    assert rui.roles == ("analyst", "viewer")
    stranger = identity.get_user(request(peer="10.0.4.7", headers={"X-Forwarded-User": "eve"})).person
    assert stranger.roles == () and not allowed(stranger, "read")
    everyone = ProxyIdentity(parent=_Desk(proxied.replace(desk_default_role="viewer")))
    assert everyone.get_user(request(peer="10.0.4.7", headers={"X-Forwarded-User": "eve"})).person.roles == ("viewer",)


def test_loopback_is_one_person_the_operating_systems_user_and_nobody_from_elsewhere(settings, monkeypatch):
    from kafer.desk import person as person_module

    monkeypatch.setattr(person_module.getpass, "getuser", lambda: "ana")
    identity = LoopbackIdentity(parent=_Desk(settings))
    assert identity.get_user(request(peer="127.0.0.1")).person == Person("ana", ("approver",), "os user")
    assert identity.get_user(request(peer="10.0.0.9")) is None


def test_an_account_session_holds_until_its_password_changes_or_it_is_removed(settings, users):
    accounts.add(users, "ana", role="approver", password=PASSWORD)
    identity = AccountIdentity(parent=_Desk(settings))
    assert identity.get_user(request()) is None
    ana = identity.check_password("ana", PASSWORD)
    assert ana.roles == ("approver",) and identity.check_password("ana", "wrong password") is None
    cookie = signed_in_cookie(identity, ana)
    assert identity.get_user(request(cookie=cookie)).person == ana and identity.still_valid(ana)
    assert identity.get_user(request(cookie=cookie.replace("=", "=x", 1))) is None  # tampered
    accounts.set_role(users, "ana", role="viewer")
    assert identity.get_user(request(cookie=cookie)).person.roles == ("viewer",)  # the role now, same session
    accounts.set_password(users, "ana", password="a new password")
    assert identity.get_user(request(cookie=cookie)) is None and not identity.still_valid(ana)
    fresh = signed_in_cookie(identity, identity.check_password("ana", "a new password"))
    assert identity.get_user(request(cookie=fresh)).person.name == "ana"
    accounts.remove(users, "ana")
    assert identity.get_user(request(cookie=fresh)) is None


def test_failed_sign_ins_are_slowed_per_address_and_never_lock_anyone_out():
    now = [1000.0]
    throttle = SignInThrottle(wait=1.0, wait_max=8.0, clock=lambda: now[0])
    assert throttle.wait_left("10.0.0.9") == 0
    assert [throttle.failed("10.0.0.9") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert throttle.wait_left("10.0.0.9") == 8.0 and throttle.wait_left("10.0.0.10") == 0  # another address: now
    now[0] += 5
    assert throttle.wait_left("10.0.0.9") == 3.0
    now[0] += 3
    assert throttle.wait_left("10.0.0.9") == 0
    throttle.succeeded("10.0.0.9")
    assert throttle.failed("10.0.0.9") == 1.0


# -- the person a page's kernel acts for -------------------------------------------------------------------
def test_a_kernel_rechecks_its_account_at_each_action(settings, users):
    account = accounts.add(users, "ana", role="approver", password=PASSWORD)
    ana = Person("ana", ("approver",), "account", account.generation)
    environ = kernel_environment(ana, users_file=users)
    assert "KAFER_LAKE" not in environ and PASSWORD not in json.dumps(environ)
    assert current_person(environ) == ana
    accounts.set_role(users, "ana", role="viewer")
    assert current_person(environ).roles == ("viewer",)
    accounts.set_password(users, "ana", password="a new password")
    with pytest.raises(RightsError, match="ana's password was changed since this page was opened: sign in again"):
        current_person(environ)
    accounts.remove(users, "ana")
    with pytest.raises(RightsError, match="ana no longer has a desk account"):
        current_person(environ)


def test_outside_the_desk_the_person_is_the_operating_systems_user_with_every_right(monkeypatch):
    from kafer.desk import person as person_module

    monkeypatch.setattr(person_module.getpass, "getuser", lambda: "rui")
    assert current_person({}) == Person("rui", ("approver",), "os user")
    proxied = kernel_environment(Person("ana", ("viewer",), "proxy"), users_file=None)
    assert current_person(proxied) == Person("ana", ("viewer",), "proxy") and proxied["KAFER_DESK_USERS"] == ""


# -- kafer users ---------------------------------------------------------------------------------------------
def test_kafer_users_reads_passwords_from_stdin_and_never_echoes_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kafer.toml").write_text('[kafer]\ndesk_state_dir = "desk"\n', encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "ana", "--role", "approver", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "vic", "--role", "viewer", "--password-stdin"]) == 1
    assert main(["users", "role", "ana", "--role", "viewer"]) == 0
    assert main(["users", "list"]) == 0
    out, err = capsys.readouterr()
    assert f"Added ana (approver) to {tmp_path / 'desk' / 'users.json'}." in out and PASSWORD not in out + err
    assert "kafer users: error: the password is too short" in err
    assert [line.split()[:2] for line in out.splitlines() if " added " in line] == [["ana", "viewer"]]
    assert main(["users", "remove", "ana"]) == 0 and "Removed ana (viewer)" in capsys.readouterr().out
    assert main(["users", "passwd", "ana", "--password-stdin"]) == 1
    assert "no account named 'ana'" in capsys.readouterr().err
