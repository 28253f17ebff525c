"""Whose kernel is whose: each desk page's kernel belongs to the person who opened it.

The desk's page handler names the person opening a page in a context variable (:data:`OPENING`)
while Voila renders it; Voila then asks the kernel manager to start the page's kernel, and
:class:`DeskKernelManager` (set as Voila's ``multi_kernel_manager_class``) writes that person into
the kernel's environment, records them as its owner and refuses a kernel nobody opened. It caps
the pages one person has open and, through Jupyter Server's culler, shuts down pages idle for the
configured minutes (connected or not: an open but untouched tab holds ~340 MB).

:class:`DeskAuthorizer` is Jupyter Server's authorization hook for every route that names a
kernel (``/api/kernels/<id>``, its websocket ``…/channels``, the desk's shutdown route): it is
given only the resource's kind, so it reads the kernel id from the handler's route and allows the
kernel's owner alone. Nothing else of Jupyter's APIs is served.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Callable

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Integer

from .rights import Person, allowed

#: The person opening a page, and what their kernel's environment adds, while the page renders.
OPENING: ContextVar[tuple[Person, dict[str, str]] | None] = ContextVar("kafer_desk_opening", default=None)
#: Environment variables of the server that never reach a page's kernel: request headers (Voila's
#: ``http_header_envs``) and any desk person the server's own environment might carry.
_NEVER_INHERITED = ("HTTP_", "KAFER_DESK_")


class PagesCapReached(web.HTTPError):
    """A person already has as many desk pages open as they may."""

    def __init__(self, person: Person, cap: int):
        super().__init__(429, f"{person.name} already has {cap} desk page{'s' if cap > 1 else ''} open, the most one "
                              "person may: close one (pages left idle close by themselves), then reload this page")


class DeskKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager, with an owner for every kernel and a cap per person."""

    kernels_per_person = Integer(3, config=True, help="Desk pages (kernels) one person may have open at once.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._owners: dict[str, Person] = {}
        self._starting: dict[str, int] = {}
        self._closing: set[str] = set()

    def owner(self, kernel_id: str | None) -> Person | None:
        """The person who opened kernel ``kernel_id`` (``None``: no such kernel)."""
        return self._owners.get(kernel_id or "")

    def owners(self) -> dict[str, Person]:
        """Every running kernel's owner, by kernel id."""
        return dict(self._owners)

    def pages_of(self, name: str) -> int:
        """The kernels ``name`` has running or starting (one being shut down, as a page closes, no longer counts:
        a person reloading their page is not refused while the old page's kernel is still stopping)."""
        key = name.casefold()
        return sum(p.name.casefold() == key for k, p in self._owners.items() if k not in self._closing) + \
            self._starting.get(key, 0)

    async def start_kernel(self, *, kernel_name: str | None = None, path: str | None = None, **kwargs) -> str:
        """Start a page's kernel for the person opening it (:data:`OPENING`), with them in its environment.

        Raises
        ------
        tornado.web.HTTPError
            403 when no signed-in person is opening a page; 429 (:class:`PagesCapReached`) when
            they have as many pages open as they may.
        """
        opening = OPENING.get()
        if opening is None:
            raise web.HTTPError(403, "the desk starts a kernel only for a signed-in person's page")
        person, extra = opening
        if self.pages_of(person.name) >= self.kernels_per_person:
            raise PagesCapReached(person, self.kernels_per_person)
        given = kwargs.pop("env", None) or os.environ
        env = {k: v for k, v in given.items() if not k.startswith(_NEVER_INHERITED)} | extra
        key = person.name.casefold()
        self._starting[key] = self._starting.get(key, 0) + 1
        try:
            kernel_id = await super().start_kernel(kernel_name=kernel_name, path=path, env=env, **kwargs)
        finally:
            self._starting[key] -= 1
        self._owners[kernel_id] = person
        self.log.info("kafer desk: kernel %s opened for %s", kernel_id, person.describe())
        return kernel_id

    async def shutdown_kernel(self, kernel_id: str, now: bool = False, restart: bool = False) -> None:
        """Shut a kernel down; while it stops, it no longer counts against its owner's pages."""
        self._closing.add(kernel_id)
        try:
            await super().shutdown_kernel(kernel_id, now=now, restart=restart)
        finally:
            self._closing.discard(kernel_id)

    def remove_kernel(self, kernel_id: str):
        """Forget the kernel's owner with the kernel (shut down, culled or died)."""
        self._owners.pop(kernel_id, None)
        return super().remove_kernel(kernel_id)

    async def end_sessions(self, still_valid: Callable[[Person], bool], *, why: str) -> list[str]:
        """Shut down every kernel whose owner's session no longer holds; their ids."""
        ended = [kernel_id for kernel_id, person in self.owners().items() if not still_valid(person)]
        for kernel_id in ended:
            self.log.warning("kafer desk: closing kernel %s of %s: %s", kernel_id, self._owners[kernel_id].name, why)
            if kernel_id in self:
                await self.shutdown_kernel(kernel_id)
        return ended


class DeskAuthorizer(Authorizer):
    """Jupyter Server's authorization for the desk: a kernel route for the kernel's owner only."""

    def is_authorized(self, handler, user, action: str, resource: str) -> bool:
        """Allow ``action`` on ``resource`` when it is a kernel route naming a kernel ``user`` opened.

        Jupyter Server passes the resource's kind only (``kernels``); which kernel is asked for is
        in the route (``kernel_id``), and the kernel manager knows its owner.
        """
        person = getattr(user, "person", None)
        if resource != "kernels" or not allowed(person, "read"):
            return False
        kernel_id = handler.path_kwargs.get("kernel_id")
        owner = handler.kernel_manager.owner(kernel_id)
        if owner is None or owner.name.casefold() != person.name.casefold():
            self.log.warning("kafer desk: %s refused %s on kernel %s (%s)", person.name, action, kernel_id,
                             "not theirs" if owner else "no such kernel")
            return False
        return True
