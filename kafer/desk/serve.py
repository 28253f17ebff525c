"""``kafer desk``: check how the desk may be served, start its server, wait until it answers.

The server (:mod:`kafer.desk.app`, run as ``python -m kafer.desk``) serves
``notebooks/05_decide.ipynb`` without its code: the same :class:`kafer.decide.DecisionPanel` a
person runs in JupyterLab. Before it starts, :func:`check_serving` refuses, in one line each, what
would not be safe: an address beyond this computer while nobody signs in, plain HTTP beyond this
computer unless ``--insecure-http`` says a proxy in front speaks TLS, a certificate that cannot be
used. The lake and runs folder reach the page's kernels through ``KAFER_LAKE`` / ``KAFER_RUNS``, the
settings through ``KAFER_DESK_SETTINGS``; a run is chosen with ``?run=ID`` in the address. The
server's log goes to ``<runs>/desk.log``, not to the terminal.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

from ..config import Settings
from ..errors import AccountError, KaferError
from ..pipeline import NOTEBOOKS
from ..readers import Progress
from .state import cookie_secret

NOTEBOOK = NOTEBOOKS / "05_decide.ipynb"
#: A file the server serves without starting a kernel or asking who is signed in: asked for to
#: know the desk is up.
_READY = "/voila/static/extension.js"
#: How each sign-in mode is said to the person starting the desk.
_MODES = {"proxy": "the plant's single sign-on (through the proxy at {proxies})",
          "account": "local accounts ({users})",
          "loopback": "nobody (one person on this computer: {user})"}


class DeskError(KaferError, RuntimeError):
    """The desk cannot be served (unsafe address, port taken, certificate unusable, server failing)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this computer alone (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def desk_url(port: int, run_id: str | None = None, *, host: str = "127.0.0.1", tls: bool = False) -> str:
    """The desk's address, for one run when ``run_id`` is given (a wildcard host as this computer's name)."""
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"{'https' if tls else 'http'}://{shown}:{port}/" + (f"?run={run_id}" if run_id else "")


def check_serving(settings: Settings, *, host: str, certfile: str | None = None, keyfile: str | None = None,
                  insecure_http: bool = False) -> str:
    """How the desk would sign people in, once serving it on ``host`` is known to be safe.

    Returns
    -------
    str
        ``proxy``, ``account`` or ``loopback`` (:func:`kafer.desk.identity.sign_in_mode`).

    Raises
    ------
    DeskError
        When ``host`` is beyond this computer and nobody signs in, or it would be plain HTTP
        without ``insecure_http``, or the certificate and key are incomplete or unusable, or the
        users file may not be used.
    """
    from .identity import sign_in_mode

    try:
        mode = sign_in_mode(settings)
    except AccountError as exc:
        raise DeskError(str(exc)) from None
    if (certfile is None) != (keyfile is None):
        raise DeskError("give both --certfile and --keyfile (the certificate and its private key, PEM), or neither")
    if certfile and insecure_http:
        raise DeskError("--insecure-http says a proxy in front speaks TLS: give it or --certfile/--keyfile, not both")
    if not is_loopback(host):
        if mode == "loopback":
            raise DeskError(f"kafer desk serves {host} only once people sign in: add accounts (kafer users add NAME "
                            "--role approver --password-stdin) or set the plant's single sign-on (desk_proxy_addresses "
                            "in kafer.toml, see docs/desk.md); without either it serves this computer alone "
                            "(--host 127.0.0.1)")
        if not certfile and not insecure_http:
            raise DeskError(f"beyond this computer ({host}) the desk speaks TLS: give --certfile CERT.pem --keyfile "
                            "KEY.pem, or --insecure-http when a proxy in front of it terminates TLS (docs/desk.md)")
    if certfile:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise DeskError(f"the certificate {certfile} with key {keyfile} cannot be used: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    return mode


def serve(*, settings: Settings, host: str = "127.0.0.1", port: int = 8866, certfile: str | None = None,
          keyfile: str | None = None, insecure_http: bool = False, open_browser: bool = True,
          run_id: str | None = None, progress: Progress | None = None, ready_timeout: float = 120.0) -> int:
    """Serve the desk until interrupted (Ctrl-C); the exit status of its server.

    Parameters
    ----------
    settings : Settings
        The lake, runs folder and the desk's block (who signs in, limits).
    host, port : str, int
        Where to listen; beyond the loopback only when people sign in (:func:`check_serving`).
    certfile, keyfile : str, optional
        TLS certificate and key (PEM): the desk speaks HTTPS.
    insecure_http : bool
        Plain HTTP beyond the loopback, for a proxy in front that terminates TLS.
    open_browser : bool
        Open the desk in this computer's browser once it is up.
    run_id : str, optional
        The run the printed address shows.
    progress : callable, optional
        Told the address and where the log is.

    Raises
    ------
    DeskError
        When serving would not be safe (:func:`check_serving`), the port is taken, or the server
        exits or stays silent before the page is up (the message quotes the end of its log).
    """
    mode = check_serving(settings, host=host, certfile=certfile, keyfile=keyfile, insecure_http=insecure_http)
    _check_port(host, port)
    try:
        cookie_secret(settings)  # made (or refused) here, in words, rather than in the server's log
    except AccountError as exc:
        raise DeskError(str(exc)) from None
    log = Path(settings.runs) / "desk.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KAFER_LAKE": settings.lake, "KAFER_RUNS": settings.runs,
           "KAFER_DESK_SETTINGS": json.dumps(settings.to_dict())}
    argv = [sys.executable, "-m", "kafer.desk", str(NOTEBOOK), "--no-browser", f"--port={port}", f"--Voila.ip={host}",
            "--Voila.port_retries=0", "--theme=light"]
    if certfile:
        argv += [f"--DeskApp.certfile={Path(certfile).resolve()}", f"--DeskApp.keyfile={Path(keyfile).resolve()}"]
    say = progress or (lambda message: None)
    with open(log, "ab") as sink:
        server = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=NOTEBOOK.parent)
    stopping = _stop_on_sigterm()
    try:
        _wait_until_up(server, host, port, log, tls=bool(certfile), timeout=ready_timeout)
        url = desk_url(port, run_id, host=host, tls=bool(certfile))
        who = _MODES[mode].format(proxies=", ".join(settings.desk_proxy_addresses), user=_login(),
                                  users=_users(settings))
        say(f"The decision desk is at {url} (lake {settings.lake}); who signs in: {who}. Its log: {log}. "
            "Press Ctrl-C to stop.")
        if open_browser:
            webbrowser.open(url)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if stopping is not None:
            signal.signal(signal.SIGTERM, stopping)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def _stop_on_sigterm():
    """Make SIGTERM (a service manager stopping ``kafer desk``) end it like Ctrl-C, so its server is
    stopped with it instead of left running; the handler it replaced (``None`` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _login() -> str:
    from .person import login_name

    return login_name() or "unknown"


def _users(settings: Settings) -> str:
    from .state import users_file

    return str(users_file(settings))


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DeskError(f"port {port} on {host} cannot be used ({exc.strerror}; another desk?): choose another "
                            "with --port, e.g. kafer desk --port 8867") from None


def _local(host: str) -> str:
    """Where this computer reaches a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _wait_until_up(server: subprocess.Popen, host: str, port: int, log: Path, *, tls: bool, timeout: float) -> None:
    url = f"{'https' if tls else 'http'}://{_local(host)}:{port}{_READY}"
    context = ssl._create_unverified_context() if tls else None  # our own server, just started: only "is it up?"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DeskError(f"the desk's server stopped before it was up (exit {server.returncode}); the end of its "
                            f"log {log}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise DeskError(f"the desk did not come up within {timeout:.0f} s; the end of its log {log}: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "(empty)"
