"""The decision desk: the decision notebook served as a page without code, on this machine.

``kafer desk`` runs Voila on ``notebooks/05_decide.ipynb`` at ``http://127.0.0.1:PORT/``: the
same :class:`kafer.decide.DecisionPanel` a person runs in JupyterLab, without the code. The lake
and runs folder reach the page's kernels through ``KAFER_LAKE`` / ``KAFER_RUNS`` (the notebook's
parameters default to "not given"); a run is chosen with ``?run=ID`` in the address. Voila's own
log goes to ``<runs>/desk.log``, not to the terminal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

from .config import Settings
from .errors import KaferError
from .pipeline import NOTEBOOKS
from .readers import Progress

NOTEBOOK = NOTEBOOKS / "05_decide.ipynb"
#: A file Voila serves without starting a kernel: asked for to know the desk is up.
_READY = "/voila/static/extension.js"


class DeskError(KaferError, RuntimeError):
    """The desk cannot be served (port taken, Voila missing or failing to start)."""


def desk_url(port: int, run_id: str | None = None) -> str:
    """The desk's address, for one run when ``run_id`` is given."""
    return f"http://127.0.0.1:{port}/" + (f"?run={run_id}" if run_id else "")


def serve(*, settings: Settings, port: int = 8866, open_browser: bool = True, run_id: str | None = None,
          progress: Progress | None = None, ready_timeout: float = 120.0) -> int:
    """Serve the desk until interrupted (Ctrl-C); the exit status of Voila.

    Raises
    ------
    DeskError
        When the port is taken, or Voila exits or stays silent before the page is up (the message
        quotes the end of its log).
    """
    _check_port(port)
    log = Path(settings.runs) / "desk.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KAFER_LAKE": settings.lake, "KAFER_RUNS": settings.runs}
    argv = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--theme=light"]
    say = progress or (lambda message: None)
    with open(log, "ab") as sink:
        server = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=NOTEBOOK.parent)
    try:
        _wait_until_up(server, port, log, timeout=ready_timeout)
        url = desk_url(port, run_id)
        say(f"The decision desk is at {url} (lake {settings.lake}); Voila's log: {log}. Press Ctrl-C to stop.")
        if open_browser:
            webbrowser.open(url)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def _check_port(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise DeskError(f"port {port} on 127.0.0.1 is in use (another desk?): choose another with "
                            "--port, e.g. kafer desk --port 8867") from None


def _wait_until_up(server: subprocess.Popen, port: int, log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DeskError(f"Voila stopped before the desk was up (exit {server.returncode}); the end of its log "
                            f"{log}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{_READY}", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise DeskError(f"the desk did not come up within {timeout:.0f} s; the end of Voila's log {log}: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "(empty)"
