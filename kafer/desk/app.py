"""The desk's server: Voila standalone, made safe to share (``python -m kafer.desk``).

:class:`DeskApp` is Voila's application (a tornado app serving one notebook) with the pieces a
shared desk needs put in where Voila lets them in:

- who is signed in: one of :mod:`kafer.desk.identity`'s providers as ``identity_provider_class``;
- a kernel per page that belongs to its opener (:mod:`kafer.desk.kernels`: the kernel manager
  class, the authorizer that checks every kernel route), capped per person, idle ones culled;
- the routes: Voila's kernel, websocket and static routes, plus the desk's own
  (:func:`kafer.desk.handlers.desk_handlers`: the page, sign-in, sign-out, shutdown). Voila's
  ``/voila/files/`` (files of the notebooks folder, served without sign-in) and its catch-all
  page route are left out; no tree, contents or kernel-listing route is served;
- cookies signed with a secret kept outside the lake (:func:`kafer.desk.state.cookie_secret`),
  XSRF tokens on every form and POST, the origin check on (no ``allow_origin``), and on the
  loopback the Host check too (a page elsewhere cannot reach the desk by DNS rebinding);
- TLS when given a certificate (``ssl_options`` to tornado's ``listen``); forwarded-for headers
  are never trusted (``xheaders`` stays off: the peer address is the connection's own);
- ending the sessions of people whose account was removed or password changed: the users file
  is watched, and their kernels shut down.

Configuration comes from Käfer's settings only (``KAFER_DESK_SETTINGS``, which :func:`kafer.desk.serve`
sets, else :func:`kafer.config.load_settings`): no ``voila.json`` or Jupyter config file is read.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile

import tornado.web
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Unicode, default
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from ..config import Settings, load_settings
from .handlers import desk_handlers
from .identity import AccountIdentity, LoopbackIdentity, ProxyIdentity, SignInThrottle, sign_in_mode
from .kernels import DeskAuthorizer, DeskKernelManager
from .state import cookie_secret

#: The environment variable through which ``kafer desk`` hands the server its settings.
SETTINGS_VARIABLE = "KAFER_DESK_SETTINGS"
#: Seconds between two looks at the users file (a removed account's pages close within this).
WATCH_SECONDS = 2.0
_IDENTITIES = {"proxy": ProxyIdentity, "account": AccountIdentity, "loopback": LoopbackIdentity}
#: Voila's routes the desk does not serve: notebook-folder files (open to anyone), and its page
#: catch-all (the desk's page route replaces it).
_LEFT_OUT = ("/voila/files/", "/voila/api/shutdown/")


class DeskApp(Voila):
    """Voila, serving the decision notebook to signed-in people (see the module's docstring)."""

    description = Unicode("kafer desk's server: the decision notebook for signed-in people.")
    certfile = Unicode("", config=True, help="TLS certificate (PEM); with keyfile the desk speaks HTTPS.")
    keyfile = Unicode("", config=True, help="Private key of certfile (PEM).")

    @default("config_file_paths")
    def _no_config_files(self):
        return []  # the desk is configured by kafer.toml alone: a stray voila.json changes nothing

    def initialize(self, argv=None):
        given = os.environ.pop(SETTINGS_VARIABLE, "")
        self.desk_settings = Settings.from_dict(json.loads(given)) if given else load_settings()
        super().initialize(argv)
        self.sign_in = sign_in_mode(self.desk_settings)
        self.identity_provider_class = _IDENTITIES[self.sign_in]
        self.authorizer_class = DeskAuthorizer
        configuration = self.voila_configuration
        configuration.multi_kernel_manager_class = DeskKernelManager
        configuration.preheat_kernel = False  # a kernel starts for a known person only
        configuration.prelaunch_hook = None
        configuration.http_header_envs = []  # no request header reaches a kernel
        configuration.progressive_rendering = False
        configuration.show_tracebacks = False

    @property
    def tls(self) -> bool:
        return bool(self.certfile)

    def init_settings(self) -> dict:
        settings = super().init_settings()
        desk = self.desk_settings
        manager = self.kernel_manager
        manager.kernels_per_person = desk.desk_kernels_per_person
        manager.cull_idle_timeout = max(1, round(desk.desk_idle_minutes * 60))
        manager.cull_interval = max(1, min(300, manager.cull_idle_timeout // 4))
        manager.cull_connected = True  # an open tab nobody touches still holds a kernel
        manager.cull_busy = False
        headers = {"Content-Security-Policy": "frame-ancestors 'self'", "Referrer-Policy": "same-origin",
                   "X-Content-Type-Options": "nosniff"}
        if self.tls:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        settings.update(
            cookie_secret=cookie_secret(desk),
            xsrf_cookies=True,
            xsrf_cookie_kwargs={"samesite": "Lax", "secure": self.tls},
            allow_remote_access=self.sign_in != "loopback",
            allow_origin="", allow_origin_pat="", allow_credentials=False,
            login_url=url_path_join(self.base_url, "/login"),
            headers=headers,
            kafer_desk_settings=desk,
            kafer_desk_throttle=SignInThrottle(wait=desk.desk_signin_wait, wait_max=desk.desk_signin_wait_max),
        )
        return settings

    def init_handlers(self) -> list:
        voila = super().init_handlers()
        page = next(h for h in voila if len(h) > 2 and h[1] is TornadoVoilaHandler)
        served = [h for h in voila if h[1] is not TornadoVoilaHandler and not any(h[0].startswith(
            url_path_join(self.server_url, left)) for left in _LEFT_OUT)]
        return desk_handlers(self.server_url, page_options=page[2]) + served

    def start(self):
        self.connection_dir = tempfile.mkdtemp(prefix="voila_", dir=self.connection_dir_root)
        self.app = tornado.web.Application(**self.init_settings())
        self.app.add_handlers(".*$", self.init_handlers())
        self.listen()

    def listen(self):
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.certfile, self.keyfile or None)
        try:
            self.app.listen(self.port, self.ip, ssl_options=context, xheaders=False)
        except OSError as exc:
            self.log.critical("kafer desk: cannot listen on %s port %s: %s", self.ip, self.port, exc)
            self.exit(1)
        self.log.info("kafer desk: serving %s://%s:%s%s (sign-in: %s)", "https" if self.tls else "http", self.ip,
                      self.port, self.base_url, self.sign_in)
        if isinstance(self.identity_provider, AccountIdentity):
            PeriodicCallback(self.end_ended_sessions, WATCH_SECONDS * 1000).start()
        self.ioloop = IOLoop.current()
        try:
            self.ioloop.start()
        except KeyboardInterrupt:
            self.log.info("Stopping...")
        finally:
            self.stop()

    async def end_ended_sessions(self) -> None:
        """Close the pages of people whose account was removed or whose password changed."""
        await self.kernel_manager.end_sessions(self.identity_provider.still_valid,
                                               why="their account was removed or its password changed")


def main(argv=None) -> None:
    """Run the desk's server (what ``kafer desk`` starts, as ``python -m kafer.desk``)."""
    DeskApp.launch_instance(argv)
