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
from ..i18n import mark, tr

#: What each right lets a person do, in words.
RIGHTS = {
    "read": mark("read the desk"),
    "download": mark("download lists"),
    "decide": mark("keep a new model or the old one"),
    "rollback": mark("roll production back to an earlier model"),
    "upload": mark("bring a month's exports"),
    "retrain": mark("start a retrain"),
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
#: Each role's name as people read it (translated where shown, :func:`role_names`).
ROLE_NAMES = {"approver": mark("approver"), "analyst": mark("analyst"), "viewer": mark("viewer")}

#: How the desk knew who acts, as the decision log records it (``by_source``).
SOURCES = {
    "proxy": mark("desk sign-in (proxy)"),
    "account": mark("desk account"),
    "os user": mark("os user"),
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


def role_names(roles) -> str:
    """``roles`` as people read them, in the current language (``no role`` for none)."""
    return ", ".join(tr(ROLE_NAMES[r]) if r in ROLE_NAMES else r for r in roles) or tr("no role")


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
        raise RightsError(tr("nobody is signed in: sign in to {action}", action=tr(RIGHTS[right])))
    giving = [role for role, rights in ROLES.items() if right in rights]
    raise RightsError(tr("{name} ({roles}, {source}) may not {action}: that takes the {role} role; ask the desk's "
                         "administrator for it", name=person.name, roles=role_names(person.roles),
                         source=tr(person.by_source), action=tr(RIGHTS[right]),
                         role=tr(" or ").join(tr(ROLE_NAMES[r]) for r in giving)))
