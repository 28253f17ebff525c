"""The desk's own routes, and the one place that registers them (:func:`desk_handlers`).

Every desk handler derives from :class:`DeskMixin`: it gives the signed-in :class:`Person`
(``self.person``), checks a right where the handler acts (``self.require("decide")``, a 403 in
words otherwise) and answers errors with a small page of the desk's own (no traceback, nothing of
the lake). The routes of the whole loop (bringing exports, the retrain job, inspection lists, the
language) are :mod:`kafer.desk.loop`'s, registered here too (:func:`desk_handlers`).

The routes here: ``/`` the decision page (Voila's page handler, after a right and the cap on pages
are checked, with the person handed to the kernel manager), ``/login`` and ``/logout`` (local
accounts; with single sign-on they say where to sign in) and ``/voila/api/shutdown/<kernel>`` (the
page closing its own kernel, for the kernel's owner only). The decision page carries the desk's bar
(:func:`kafer.desk.pages.nav`), and its kernel is told the person's language.
"""

from __future__ import annotations

import asyncio
import math
import re
from urllib.parse import urlparse

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from voila.tornado.handler import TornadoVoilaHandler

from ..config import Settings
from ..errors import RightsError
from ..i18n import tr, using
from .identity import AccountIdentity
from .kernels import OPENING, PagesCapReached
from .pages import LANGUAGE_COOKIE, TEMPLATES, chosen_language, nav
from .person import kernel_environment
from .rights import Person, require

_KERNEL = r"(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)"
_BODY = re.compile(r"<body[^>]*>")
#: Characters of Voila's page held at most while waiting for its body's tag.
_HOLD_MOST = 1 << 20


class DeskMixin:
    """What every desk handler has: the signed-in person, a right checked, errors as a desk page."""

    @property
    def person(self) -> Person | None:
        """Who is signed in (``None``: nobody)."""
        return getattr(self.current_user, "person", None)

    @property
    def desk_settings(self) -> Settings:
        """The desk's settings (lake, runs folder, caps, the plant's language)."""
        return self.settings["kafer_desk_settings"]

    @property
    def language(self) -> str:
        """The language this request is answered in: the person's choice, else the plant's setting."""
        return chosen_language(self.get_cookie(LANGUAGE_COOKIE), self.desk_settings)

    def next_url(self) -> str:
        """Where to go next (after signing in, after choosing a language): the page asked for
        (``next``), when it is one of the desk's own."""
        asked = self.get_argument("next", self.base_url).replace("\\", "/")
        parsed = urlparse(asked)
        if parsed.scheme or parsed.netloc or asked.startswith("//") or not asked.startswith(self.base_url):
            return self.base_url
        return asked

    def require(self, right: str) -> Person:
        """The signed-in person when they have ``right``; a 403 saying why otherwise."""
        try:
            return require(self.person, right)
        except RightsError as exc:
            raise web.HTTPError(403, str(exc)) from None

    def desk_page(self, title: str, message: str = "", *, status: int = 200, problem: bool = False, **more) -> None:
        """Answer with one of the desk's small pages (:file:`kafer/templates/desk/page.html`)."""
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(TEMPLATES.get_template("page.html").render(title=title, message=message, problem=problem, **more))

    def write_error(self, status_code: int, **kwargs) -> None:
        """Errors as a desk page: the refusal's words for 403 and 429, the status otherwise."""
        error = (kwargs.get("exc_info") or (None, None))[1]
        said = error.log_message if isinstance(error, web.HTTPError) and status_code in (403, 404, 429) else ""
        if status_code == 429:
            self.set_header("Retry-After", "60")
        with using(self.language):
            title = {403: tr("Not allowed"), 404: tr("Not found"),
                     429: tr("Too many pages open")}.get(status_code, tr("Something failed"))
            self.desk_page(title, said or tr("The desk could not answer this request; its log says why."),
                           status=status_code, problem=True, link=self.base_url, link_text=tr("Back to the desk"))


class DeskHandler(DeskMixin, JupyterHandler):
    """Base of the desk's own page routes."""


class DeskPageHandler(DeskMixin, TornadoVoilaHandler):
    """The decision page: Voila's page handler, for a signed-in person who may read, within their cap."""

    @web.authenticated
    async def get(self, path=None):
        person = self.require("read")
        manager = self.kernel_manager
        if manager.pages_of(person.name) >= manager.kernels_per_person:
            raise PagesCapReached(person, manager.kernels_per_person)
        self.xsrf_token  # sets the XSRF cookie the page's script sends back when it closes its kernel (a beacon)
        with using(self.language):
            self.bar = nav(person, base=self.base_url, here="", xsrf_form_html=self.xsrf_form_html(),
                           next_url=self.request.uri)
        opening = OPENING.set((person, self.kernel_environment(person)))
        try:
            await super().get(path)
        finally:
            OPENING.reset(opening)

    def write(self, chunk) -> None:
        """Voila's page as it streams, with the desk's bar put in first thing in its body (Voila sends its
        head in small snippets: they are held until the body's tag is whole)."""
        if not getattr(self, "bar", None) or not isinstance(chunk, str):
            super().write(chunk)
            return
        self.held = getattr(self, "held", "") + chunk
        if _BODY.search(self.held) or len(self.held) > _HOLD_MOST:
            chunk, self.held = _BODY.sub(lambda found: found.group(0) + self.bar, self.held, count=1), ""
            self.bar = None
            super().write(chunk)

    def finish(self, chunk=None):
        """Finish the page, with whatever was held waiting for the body's tag first."""
        held, self.held, self.bar = getattr(self, "held", ""), "", None
        if held:
            super().write(held)
        return super().finish(chunk)

    def kernel_environment(self, person: Person) -> dict[str, str]:
        """What the page's kernel is told: who it acts for (and where to re-check a local account), and
        the language the person chose (``KAFER_LANG``)."""
        return kernel_environment(person, users_file=self.identity_provider.users_file(), language=self.language)


class SignInHandler(DeskHandler):
    """``/login``: the sign-in form of local accounts (with single sign-on: where to sign in)."""

    @allow_unauthenticated
    def get(self):
        if self.current_user is not None:
            self.redirect(self.next_url())
        elif not isinstance(self.identity_provider, AccountIdentity):
            self.desk_page("Sign in through the plant's sign-on",
                           "This desk learns who you are from the plant's single sign-on. Open it through the "
                           "address the plant gave you (its sign-on page comes first), not this server directly.",
                           status=401, problem=True)
        else:
            self.sign_in_form()

    @allow_unauthenticated
    async def post(self):
        identity = self.identity_provider
        if not isinstance(identity, AccountIdentity):
            raise web.HTTPError(404)
        throttle = self.settings["kafer_desk_throttle"]
        address = self.request.remote_ip
        name = self.get_body_argument("name", "").strip()
        wait = math.ceil(throttle.wait_left(address))
        if wait > 0:
            self.set_header("Retry-After", str(wait))
            self.sign_in_form(f"Too many failed sign-ins from your address: wait {wait} s before the next try "
                              "(nothing was checked).", status=429, name=name)
            return
        password = self.get_body_argument("password", "")
        # argon2 is slow on purpose: hashed off the event loop, so other people's pages are not held up
        person = await asyncio.get_running_loop().run_in_executor(None, identity.check_password, name, password)
        if person is None:
            wait = math.ceil(throttle.failed(address))
            self.log.warning("kafer desk: a sign-in as %r from %s was refused", name[:64], address)
            self.sign_in_form(f"Wrong name or password. The next try from your address is checked after {wait} s.",
                              status=401, name=name)
            return
        throttle.succeeded(address)
        identity.set_session(self, person)
        self.log.info("kafer desk: %s signed in from %s", person.describe(), address)
        self.redirect(self.next_url())

    def sign_in_form(self, message: str = "", *, status: int = 200, name: str = "") -> None:
        self.desk_page("Sign in to the decision desk", message, status=status, problem=bool(message), form=True,
                       action=url_path_join(self.base_url, "login"), next=self.next_url(), name=name,
                       xsrf_form_html=self.xsrf_form_html())


class SignOutHandler(DeskHandler):
    """``/logout``: end the session, and close the person's pages (their kernels) with it."""

    @allow_unauthenticated
    async def get(self):
        identity = self.identity_provider
        if not isinstance(identity, AccountIdentity):
            self.desk_page("Signing out", "Sign out of the plant's single sign-on (or close the browser) to sign out "
                           "of the desk." if identity.mode == "proxy" else "Nobody signs in to this desk: it serves "
                           "one person on this computer.", link=self.base_url, link_text="Back to the desk")
            return
        person = self.person
        identity.clear_session(self)
        if person is not None:
            await self.kernel_manager.end_sessions(lambda owner: owner.name.casefold() != person.name.casefold(),
                                                   why="signed out")
        self.desk_page("Signed out", "You are signed out of the decision desk; your open desk pages were closed.",
                       link=url_path_join(self.base_url, "login"), link_text="Sign in again")


class ShutdownHandler(DeskMixin, APIHandler):
    """``/voila/api/shutdown/<kernel>``: a page closing its kernel as it unloads (its owner only)."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def post(self, kernel_id):
        await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        self.set_status(204)
        self.finish()

    def write_error(self, status_code: int, **kwargs) -> None:
        APIHandler.write_error(self, status_code, **kwargs)


def desk_handlers(server_url: str, *, page_options: dict) -> list[tuple]:
    """The desk's own routes, in the order tornado tries them.

    Parameters
    ----------
    server_url : str
        Where the desk's routes start (Voila's ``server_url``, ``/`` by default).
    page_options : dict
        The options Voila gives its page handler (notebook, templates, configuration).
    """
    from .loop import loop_handlers

    return [
        *loop_handlers(server_url),
        (url_path_join(server_url, "/login"), SignInHandler),
        (url_path_join(server_url, "/logout"), SignOutHandler),
        (url_path_join(server_url, rf"/voila/api/shutdown/{_KERNEL}"), ShutdownHandler),
        (server_url, DeskPageHandler, page_options),
    ]
