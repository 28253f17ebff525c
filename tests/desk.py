"""The served desk's test support: a desk world, its server, a self-signed certificate, a visitor
speaking HTTP and websockets from a chosen address, and the kernels a desk runs.

A desk world is a lake with a real run (family ``hgb``: the pages' kernels then never load
TensorFlow, so a page opens in seconds), a ``kafer.toml`` holding the desk's settings (the server
is started from that folder and reads it, as a plant's would), and the desk's private state folder
inside it. :class:`Visitor` is a person's browser reduced to what the tests look at: its cookies, no
redirect followed, the XSRF token sent back as a browser's form or script would, and the source
address it connects from (127.0.0.0/8 all reaches this computer), so failed sign-ins from one
visitor do not slow another; :meth:`Visitor.api` posts to the desk's JSON routes as its pages'
script does. :func:`person` and :func:`sign_in` are a person's real browser (a Playwright context).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import json
import re
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlparse

import psutil
from playwright.sync_api import expect

from browser import _OPEN, UI_TIMEOUT, capture, free_port
from kafer.config import load_settings
from kafer.desk import accounts
from kafer.desk.state import users_file
from worlds import SMALL

#: Each test account's password.
PASSWORD = {name: f"{name}'s long password" for name in ("ana", "vic", "rui", "eve")}
_KERNEL_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json")


def desk_world(tmp_path: Path, **desk: object):
    """Settings of a desk world in ``tmp_path`` (lake, runs, state folder) and its ``kafer.toml``."""
    values = {"family": "hgb", **SMALL, "desk_state_dir": str(tmp_path / "desk-state"), **desk}
    lines = ["[kafer]"] + [f"{name} = {json.dumps(v)}" for name, v in values.items() if not isinstance(v, dict)]
    lines += [line for name, value in values.items() if isinstance(value, dict)
              for line in [f"[kafer.{name}]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())]]
    (tmp_path / "kafer.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(config_file=tmp_path / "kafer.toml", lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"))


def add_accounts(settings, **roles: str) -> None:
    """Local accounts ``name=role`` with their :data:`PASSWORD`."""
    for name, role in roles.items():
        accounts.add(users_file(settings), name, role=role, password=PASSWORD[name])


def desk_argv(settings, *, port: int, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> list[str]:
    """``kafer desk`` for ``settings`` on ``host:port`` (with a certificate and key: HTTPS)."""
    argv = [sys.executable, "-m", "kafer.cli", "desk", "--no-browser", "--host", host, "--port", str(port),
            "--lake", settings.lake, "--runs", settings.runs]
    return argv + (["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls else [])


def self_signed(folder: Path, *, hosts: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` and its key (PEM files in ``folder``)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafer desk test")])
    now = dt.datetime.now(dt.timezone.utc)
    names = [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(key, hashes.SHA256()))
    cert, private = folder / "desk-cert.pem", folder / "desk-key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    return cert, private


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str
    raw: bytes = b""

    def json(self):
        return json.loads(self.body)

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Visitor:
    """A browser's requests to ``base`` from ``source`` (an address of this computer), cookies kept."""

    base: str
    source: str = "127.0.0.1"
    headers: dict = field(default_factory=dict)
    cookies: dict = field(default_factory=dict)

    def request(self, method: str, path: str, *, form: dict | None = None, headers: dict | None = None,
                data: bytes | None = None) -> Reply:
        url = urlparse(self.base)
        where = {"host": url.hostname, "port": url.port, "timeout": 300, "source_address": (self.source, 0)}
        if url.scheme == "https":
            connection = http.client.HTTPSConnection(**where, context=ssl._create_unverified_context())
        else:
            connection = http.client.HTTPConnection(**where)
        sent = {**self.headers, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = data
        if form is not None:
            body = urlencode({"_xsrf": self.cookies.get("_xsrf", ""), **form})
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            reply = Reply(response.status, response.headers, raw.decode("utf-8", "replace"), raw)
        finally:
            connection.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0].strip('"')
            if "expires=Thu, 01 Jan 1970" in cookie or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";")[0]
        return reply

    @property
    def signed_in(self) -> bool:
        """Whether the desk gave this browser a session cookie."""
        return any(name.startswith("kafer-desk-session") for name in self.cookies)

    def get(self, path: str, **options) -> Reply:
        return self.request("GET", path, **options)

    def post(self, path: str, form: dict | None = None, **options) -> Reply:
        return self.request("POST", path, form=form or {}, **options)

    def api(self, path: str, payload: dict | None = None, *, data: bytes | None = None) -> Reply:
        """POST to one of the desk's routes as its pages' script does: JSON (or raw bytes), the XSRF
        token in its header."""
        body = data if data is not None else json.dumps(payload or {}).encode()
        kind = "application/octet-stream" if data is not None else "application/json"
        return self.request("POST", path, data=body, headers={"X-XSRFToken": self.cookies.get("_xsrf", "").strip('"'),
                                                              "Content-Type": kind})

    def sign_in(self, name: str, password: str | None = None) -> Reply:
        """The sign-in form, filled and sent (its XSRF cookie fetched first)."""
        self.get("/login")
        return self.post("/login", {"name": name, "password": PASSWORD[name] if password is None else password})

    def open_page(self, query: str = "") -> str:
        """Open the desk's page (its kernel runs the notebook); the page's kernel id."""
        reply = self.get("/" + query)
        assert reply.status == 200, (reply.status, reply.location, reply.body[-500:])
        return re.search(r'"kernelId": "([0-9a-f-]{36})"', reply.body).group(1)

    def websocket(self, kernel_id: str, *, origin: str | None = None) -> int:
        """Connect to a kernel's websocket as the page would (from ``origin``, the desk's own by default):
        101 when it opens, else the refusal's status."""
        from tornado import httpclient, websocket

        url = self.base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels?session_id=test"
        headers = {"Origin": origin or self.base, **({"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
                                            if self.cookies else {}), **self.headers}

        async def connect() -> int:
            request = httpclient.HTTPRequest(url, headers=headers, validate_cert=False,
                                             network_interface=self.source)
            try:
                socket = await websocket.websocket_connect(request)
            except httpclient.HTTPClientError as exc:
                return exc.code
            socket.close()
            return 101

        # In a thread of its own: Playwright's sync API (the browser tests, same session) keeps an event loop
        # running in this one, and asyncio.run refuses to start another inside it.
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(lambda: asyncio.run(connect())).result()


def kernels_of(server) -> set[str]:
    """The ids of the kernels the desk ``server`` runs (its processes, by their connection files)."""
    found = set()
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            match = _KERNEL_FILE.search(" ".join(child.cmdline()))
        except psutil.Error:
            continue
        if match:
            found.add(match.group(1))
    return found


@contextlib.contextmanager
def person(browser, name: str, **options):
    """A browser context of its own (a person's browser: cookies of their own) and its page,
    screenshot as ``name`` when the test fails while it is open."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    context.set_default_timeout(UI_TIMEOUT * 1000)
    page = context.new_page()
    _OPEN[page] = {"name": name, "console": [], "captured": False}
    try:
        yield page
    except BaseException:
        capture(page)
        raise
    finally:
        del _OPEN[page]
        context.close()


def sign_in(page, url: str, name: str, password: str | None = None) -> None:
    """Open the desk (it asks who you are first) and sign in."""
    page.goto(url + "/")
    expect(page.get_by_role("heading", name="Sign in to the decision desk")).to_be_visible()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD[name] if password is None else password)
    page.get_by_role("button", name="Sign in").click()
