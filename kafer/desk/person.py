"""Who a desk page's kernel acts for: from the environment the desk's server started it with,
checked again at every action.

The server starts one kernel per page and writes the signed-in person into that kernel's
environment (:func:`kernel_environment`); nothing a browser sends reaches it (Voila lets a page
send the kernel widget messages only, never code, and the desk copies no request header into it).
At each action the kernel asks :func:`current_person` again: a local account is re-read from the
users file (still there, same session generation, its role now), so a removed account, a changed
password or a withdrawn role stops the very next click, even on a page built before.

Outside the desk (JupyterLab, papermill, the command line) there is no desk person: whoever runs
the code is the operating system's user, with every right, since they could run any code anyway.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Mapping

from ..errors import AccountError, RightsError
from .rights import Person

#: The kernel environment's names for the person (set by the desk's server only).
NAME, ROLES, SOURCE, GENERATION, USERS = ("KAFER_DESK_PERSON", "KAFER_DESK_ROLES", "KAFER_DESK_SOURCE",
                                          "KAFER_DESK_GENERATION", "KAFER_DESK_USERS")
VARIABLES = (NAME, ROLES, SOURCE, GENERATION, USERS)


def login_name() -> str:
    """Who is at the keyboard, from the operating system (``getpass.getuser``); empty when unknown."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return ""


def kernel_environment(person: Person, *, users_file: Path | None, language: str | None = None) -> dict[str, str]:
    """The variables that tell a page's kernel who it acts for (``users_file`` for local accounts) and,
    when given, the language the person chose (``KAFER_LANG``: the kernel speaks it)."""
    from ..i18n import ENVIRONMENT

    spoken = {ENVIRONMENT: language} if language else {}
    return {NAME: person.name, ROLES: ",".join(person.roles), SOURCE: person.source, GENERATION: person.generation,
            USERS: str(users_file) if person.source == "account" and users_file else "", **spoken}


def current_person(environ: Mapping[str, str] | None = None) -> Person:
    """The person acting now.

    In a desk page's kernel: the signed-in person the server named, a local account re-read from
    the users file. Elsewhere: the operating system's user, with every right of an approver.

    Raises
    ------
    RightsError
        When the account was removed, its password changed since the page was opened, or the users
        file cannot be read.
    """
    environ = os.environ if environ is None else environ
    name = environ.get(NAME, "")
    if not name:
        return Person(login_name() or "unknown", ("approver",), "os user")
    person = Person(name, tuple(r for r in environ.get(ROLES, "").split(",") if r), environ.get(SOURCE, ""),
                    environ.get(GENERATION, ""))
    if person.source != "account":
        return person
    from .accounts import read_accounts

    try:
        account = read_accounts(Path(environ.get(USERS, ""))).get(name.casefold())
    except AccountError as exc:
        raise RightsError(f"who is signed in cannot be checked: {exc}") from None
    if account is None:
        raise RightsError(f"{name} no longer has a desk account: sign in with another")
    if account.generation != person.generation:
        raise RightsError(f"{name}'s password was changed since this page was opened: sign in again")
    return Person(account.name, (account.role,), "account", account.generation)
