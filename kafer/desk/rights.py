"""Who may do what on the desk: roles, the rights each gives, and the check an action makes.

Pure and small, so the desk's server and each page's kernel import the same rules. A right is
checked where the action runs (:func:`require` in the widget callback or the request handler that
acts), every time; hiding or disabling a button guards nothing, since a widget message reaches the
kernel whatever the button shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DESK_ROLES
from ..errors import RightsError

#: What each right lets a person do, in words.
RIGHTS = {
    "read": "read the desk",
    "download": "download lists",
    "decide": "keep a new model or the old one",
    "rollback": "roll production back to an earlier model",
    "upload": "bring a month's exports",
    "retrain": "start a retrain",
}

#: The rights of each role. Everyone signed in reads and downloads lists; deciding (and rolling
#: back) and bringing data (and retraining) are kept apart, so the person who trains a model is
#: not, by the same role, the one who puts it in production.
ROLES: dict[str, frozenset[str]] = {
    "approver": frozenset({"read", "download", "decide", "rollback"}),
    "analyst": frozenset({"read", "download", "upload", "retrain"}),
    "viewer": frozenset({"read", "download"}),
}
assert tuple(ROLES) == DESK_ROLES

#: How the desk knew who acts, as the decision log records it (``by_source``).
SOURCES = {
    "proxy": "desk sign-in (proxy)",
    "account": "desk account",
    "os user": "os user",
}


@dataclass(frozen=True)
class Person:
    """Someone acting on the desk (or at this computer).

    Attributes
    ----------
    name : str
        As the sign-in gave it (the proxy's header, the account, the OS login).
    roles : tuple of str
        Their roles now; a person in several groups has the rights of each.
    source : {"proxy", "account", "os user"}
        Where the identity came from.
    generation : str
        For a local account: the account's session generation when they signed in (a new
        password or a removal changes it, which ends the session); empty otherwise.
    """

    name: str
    roles: tuple[str, ...]
    source: str
    generation: str = ""

    @property
    def rights(self) -> frozenset[str]:
        """The union of the rights of their roles."""
        return frozenset().union(*(ROLES.get(role, frozenset()) for role in self.roles))

    @property
    def by_source(self) -> str:
        """How the decision log says this person was known (``desk account``, ``os user``…)."""
        return SOURCES[self.source]

    def describe(self) -> str:
        """``Ana (approver, desk account)``: the name, roles and source, for pages and messages."""
        roles = ", ".join(self.roles) or "no role"
        return f"{self.name} ({roles}, {self.by_source})"


def allowed(person: Person | None, right: str) -> bool:
    """Whether ``person`` has ``right`` (``None``, nobody signed in, has none)."""
    if right not in RIGHTS:
        raise ValueError(f"unknown right {right!r}; known: {', '.join(RIGHTS)}")
    return person is not None and right in person.rights


def require(person: Person | None, right: str) -> Person:
    """Return ``person`` when they have ``right``; else refuse in words.

    Parameters
    ----------
    person : Person or None
        Who acts (``None``: nobody is signed in).
    right : str
        One of :data:`RIGHTS`.

    Returns
    -------
    Person

    Raises
    ------
    RightsError
        When nobody is signed in or their roles do not give ``right``; the message names the
        person, what they asked and the role that gives it.
    """
    if allowed(person, right):
        return person
    if person is None:
        raise RightsError(f"nobody is signed in: sign in to {RIGHTS[right]}")
    giving = [role for role, rights in ROLES.items() if right in rights]
    raise RightsError(f"{person.describe()} may not {RIGHTS[right]}: that takes the {' or '.join(giving)} role; "
                      "ask the desk's administrator for it")
