"""Browser tests' support: Debian's Chromium driven by Playwright, and servers on free local ports.

Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install -y chromium``, which ``.ci/run`` does
when it is missing), driven through Playwright's Python API with ``executable_path``: Playwright's
own browser download (``playwright install``) cannot be reached here, so it is never used. A
missing Chromium fails the browser tests with a message saying how to install it; it never skips
them, so a CI machine without it goes red instead of quietly green.

Fixtures (re-exported by ``conftest.py``)
-----------------------------------------
``browser``
    One headless Chromium for the session, started with :data:`CHROMIUM_FLAGS`. Playwright gives
    every launch a fresh temporary ``--user-data-dir`` of its own (it refuses one in ``args``) and
    removes it on close, so no profile is shared with a person's browser or an earlier run.
``page``
    A fresh context and page per test (1280×900). When the test fails, a full-page screenshot is
    written and its path printed in the failure report (folder :data:`SCREENSHOTS`), with the
    browser console's errors; a failure inside a :func:`serving` block is captured before that
    server stops, so the picture shows the page, not a lost connection.

Servers
-------
:func:`serving` starts a server as a subprocess in its own process group on a port from
:func:`free_port`, polls until it answers (never a fixed sleep; a deadline, and the server's log
in the failure if it exits or stays silent) and at exit terminates the whole group (``make`` and
what it started), then kills what is left after a deadline.

JupyterLab 4 (what works, and why)
----------------------------------
:func:`lab_args` gives the options that ``make lab LAB_ARGS=...`` adds for a test: a port, a
token, no browser (``make lab`` itself adds ``--allow-root`` for root), ``port_retries=0`` (a taken port fails
instead of silently moving), and private user-settings and workspace folders, so a person's
settings or last workspace cannot change the test and the test cannot change them. Those
settings switch autosave off and the news / update notifications (a toast over the page) off.

- The notebook's panel is found by its accessible name: ``get_by_role("tabpanel", name=...)``
  (JupyterLab labels each main-area tab panel with the document's name); every other locator is
  scoped inside it, because a restored workspace can hold more notebooks.
- Kernel ready: the toolbar's ``.jp-Notebook-ExecutionIndicator`` says ``data-status="idle"``
  *before any kernel exists* (its initial state), so waiting on it alone races: Run All then does
  nothing (seen here about one time in four on a fresh server). :func:`lab_wait_for_kernel`
  first asks the server's REST API (``/api/sessions``) for this notebook's kernel being idle with
  a websocket connected, then waits for the indicator's ``idle``.
- Choosing a kernel: when the notebook's kernelspec is unknown, a ``.jp-Dialog`` with a
  ``select`` offers kernels (option values ``{"name":"kafer"}``); the accept button is
  ``.jp-Dialog-button.jp-mod-accept``. With the ``kafer`` kernelspec that ``make setup``
  registers, the dialog does not appear.
- Run All: the menu, as a person does it: ``get_by_role("menuitem", name="Run", exact=True)``
  then the item named "Run All Cells" (JupyterLab 4 binds no default key to it).
- Done: each code cell's ``.jp-InputArea-prompt`` reads ``[*]:`` while queued or running and
  ``[n]:`` after; Run All marks all cells ``[*]:`` at once, and an error clears the cells after it
  back to ``[ ]:``. :func:`lab_run_all` waits (in the page, ``wait_for_function``) until the
  prompts changed, none is ``[*]:`` and the indicator is ``idle``, then fails with the cells'
  error output (``.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]``)
  unless every prompt is numbered.
- Widgets: ipywidgets render as ordinary elements inside the outputs; a ``Button`` is
  ``get_by_role("button", name=..., exact=True)`` scoped to the panel, an ``HTML`` widget is
  ``.widget-html``.

Voila
-----
:func:`voila_argv` serves one notebook: ``python -m voila NOTEBOOK --no-browser --port=N
--Voila.ip=127.0.0.1 --Voila.port_retries=0`` (no token by default; sources stripped by default).
Do not poll ``/`` for readiness: every GET of the page starts a kernel and runs the notebook;
:func:`serving` polls ``/voila/static/extension.js`` instead (any HTTP answer counts).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Debian's Chromium; ``KAFER_CHROMIUM`` may name another build.
CHROMIUM = Path(os.environ.get("KAFER_CHROMIUM", "/usr/bin/chromium"))
#: Without the background-networking flags Chromium keeps calling out, and this machine's closed
#: network refuses it; ``--headless`` is Playwright's own (``headless=True``).
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
#: Seconds for a server to answer, a kernel to start, a page to show what it should.
SERVER_TIMEOUT = 90.0
KERNEL_TIMEOUT = 90.0
UI_TIMEOUT = 60.0


# -- browser --------------------------------------------------------------------------------------
def launch_chromium(playwright):
    """Debian's Chromium, headless, with :data:`CHROMIUM_FLAGS`; a clear failure when it is missing."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's Chromium. Install it with "
                    "`apt-get install -y chromium` (.ci/run does so when it is missing), or point "
                    "KAFER_CHROMIUM at a Chromium build. Playwright's own download is not used.", pytrace=False)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_FLAGS))


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT * 1000)  # Playwright's 5 s is too short for a cold kernel on CI
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


#: Failure screenshots go here (``$KAFER_SCREENSHOTS`` overrides); pytest's tmp_path folders do not
#: last: other pytest runs on the machine remove all but the newest three.
SCREENSHOTS = Path(os.environ.get("KAFER_SCREENSHOTS") or ROOT / ".pytest_cache" / "screenshots")
#: The open pages, so a failing test's page is captured while its server still runs (see :func:`serving`).
_OPEN: dict = {}


@pytest.fixture
def page(browser, request):
    """A fresh page; on failure a full-page screenshot and the console's errors go in the report."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT * 1000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    _OPEN[page] = {"name": request.node.name, "console": console, "captured": False}
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        capture(page)
    del _OPEN[page]
    context.close()


def capture(page) -> None:
    """Screenshot ``page`` (once) and print where, with the browser console's errors."""
    state = _OPEN.get(page)
    if state is None or state["captured"]:
        return
    state["captured"] = True
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', state['name'])}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot} ({page.url})")
    except Exception as exc:  # a crashed page must not hide the test's own failure
        print(f"no screenshot of the failing page: {exc}")
    if state["console"]:
        print("browser console errors:\n  " + "\n  ".join(state["console"][-20:]))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so ``page`` knows at teardown whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# -- servers ----------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server is told ``port_retries=0``, so a race fails loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server started by :func:`serving`: its process (group leader), base URL and log file."""

    process: subprocess.Popen
    url: str
    log: Path

    def output(self, tail: int = 4000) -> str:
        """The end of what the server printed."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole process group (``make`` and the server it runs), SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.1,
               details: Callable[[], str] = lambda: "") -> object:
    """Call ``predicate`` until it returns something true and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{details()}", pytrace=False)
        time.sleep(interval)  # the polling step, not a wait for time to pass


def answers(url: str) -> bool:
    """Whether an HTTP server answers ``url`` at all (an HTTP error status counts as an answer); over
    HTTPS without checking the certificate (the tests' own, self-signed)."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def serving(argv: Sequence[str], *, port: int, ready: str, log: Path, cwd: Path = ROOT,
            env: dict | None = None, timeout: float = SERVER_TIMEOUT, tls: bool = False) -> Iterator[Server]:
    """Run ``argv`` until the block ends; yield once ``http://127.0.0.1:{port}{ready}`` answers.

    Parameters
    ----------
    argv : sequence of str
        The command; it must listen on 127.0.0.1:``port``.
    port : int
        From :func:`free_port`.
    ready : str
        A path (with query) to poll; choose one without side effects (not a Voila page).
    log : Path
        File for the server's stdout and stderr, shown when it fails.
    cwd, env
        Working folder (the project by default) and the complete environment (``os.environ`` by default).
    timeout : float
        Seconds to wait for the first answer.
    tls : bool
        The server speaks HTTPS (``https://127.0.0.1:{port}``).

    Raises
    ------
    Failed
        When the server exits before answering or does not answer in time (its log included).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(process, f"{'https' if tls else 'http'}://127.0.0.1:{port}", log)
    try:
        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {process.returncode} before answering:\n{server.output()}",
                            pytrace=False)
            return answers(server.url + ready)

        wait_until(up, timeout=timeout, what=f"{' '.join(argv[:3])} answering on {server.url}{ready}",
                   details=server.output)
        try:
            yield server
        except BaseException:
            for page in list(_OPEN):  # what the page showed, before the server behind it goes away
                capture(page)
            raise
    finally:
        server.stop()


# -- JupyterLab ---------------------------------------------------------------------------------------
def lab_args(*, port: int, token: str, home: Path) -> str:
    """``LAB_ARGS`` for ``make lab`` in a test; ``home`` gets private settings (autosave off) and workspaces."""
    settings = home / "lab-user-settings"
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return " ".join([
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'lab-workspaces'}",
    ])


def lab_panel(page, notebook: str):
    """The main-area tab panel of ``notebook`` (its file name), by accessible name."""
    return page.get_by_role("main").get_by_role("tabpanel", name=notebook, exact=True)


def lab_wait_for_kernel(page, server: Server, *, token: str, notebook: str, kernel: str = "kafer",
                        timeout: float = KERNEL_TIMEOUT) -> None:
    """Wait until ``notebook``'s kernel is idle and connected; pick ``kernel`` if JupyterLab asks for one."""
    from playwright.sync_api import expect

    dialog = page.locator(".jp-Dialog")

    def ready() -> bool:
        if dialog.locator("select").count():
            dialog.locator("select").select_option(value=json.dumps({"name": kernel}, separators=(",", ":")))
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        with urllib.request.urlopen(f"{server.url}/api/sessions?token={token}", timeout=5) as reply:
            sessions = json.load(reply)
        return any(s["path"].rsplit("/", 1)[-1] == notebook and s["kernel"]["connections"] > 0
                   and s["kernel"]["execution_state"] == "idle" for s in sessions)

    wait_until(ready, timeout=timeout, what=f"a connected, idle kernel for {notebook}", details=server.output)
    expect(lab_panel(page, notebook).locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=timeout * 1000)


_RUN_ALL_DONE = """([id, before]) => {
  const panel = document.getElementById(id);
  const texts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  return status === 'idle' && !texts.includes('[*]:') && JSON.stringify(texts) !== JSON.stringify(before);
}"""


def lab_run_all(page, notebook: str, *, timeout: float = KERNEL_TIMEOUT) -> None:
    """Run → Run All Cells on ``notebook``, wait until the kernel finished, fail on a cell's error."""
    panel = lab_panel(page, notebook)
    prompts = panel.locator(".jp-CodeCell .jp-InputArea-prompt")
    before = [text.strip() for text in prompts.all_inner_texts()]
    page.get_by_role("tab", name=notebook).click()  # Run All acts on the current notebook: make it this one
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    page.wait_for_function(_RUN_ALL_DONE, arg=[panel.get_attribute("id"), before], timeout=timeout * 1000,
                           polling=100)
    after = [text.strip() for text in prompts.all_inner_texts()]
    if not all(re.fullmatch(r"\[\d+\]:", text) for text in after):
        errors = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        pytest.fail(f"Run All stopped in {notebook} (prompts {after}):\n" + "\n".join(errors.all_inner_texts()),
                    pytrace=False)


# -- Voila ----------------------------------------------------------------------------------------------
#: A static file Voila serves without starting a kernel: the readiness probe.
VOILA_READY = "/voila/static/extension.js"


def voila_argv(notebook: Path | str, *, port: int, python: str | None = None) -> list[str]:
    """Serve ``notebook`` alone with Voila on 127.0.0.1:``port``, code hidden (Voila's default)."""
    return [python or sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]
