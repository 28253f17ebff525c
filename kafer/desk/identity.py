"""Who is signed in, for each request to the desk: Jupyter Server identity providers.

Voila runs on Jupyter Server, whose :class:`~jupyter_server.auth.IdentityProvider` answers every
request handler's ``current_user`` (pages, the kernel API and its websocket alike): the desk gives
it one of three, chosen by the settings, in this order of preference:

:class:`ProxyIdentity`
    The plant's single sign-on in front (oauth2-proxy, Apache mod_auth_openidc, IIS with Windows
    authentication): the name and groups come from configured request headers, believed only when
    the connection's own peer address (never a forwarded-for header) is one of the configured proxy
    addresses. From anyone else the same headers are ignored: nobody is signed in.
:class:`AccountIdentity`
    Local accounts (:mod:`kafer.desk.accounts`) and a sign-in page; the session is a signed cookie
    holding the account's name and session generation, checked against the users file on every
    request, so a removed account or a new password ends it at once. Failed sign-ins are slowed
    per source address (:class:`SignInThrottle`), never per account.
:class:`LoopbackIdentity`
    Nobody configured: the desk serves 127.0.0.1 only, for one person, the operating system's user,
    with an approver's rights (as ``kafer decide`` on the same computer has).

Each returns a :class:`DeskUser`, a Jupyter ``User`` carrying the :class:`~kafer.desk.rights.Person`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jupyter_server.auth.identity import IdentityProvider, User

from ..config import Settings
from ..errors import AccountError
from .accounts import Account, read_accounts, verify
from .person import login_name
from .rights import Person
from .state import users_file

#: The local accounts' session cookie: this prefix and the desk's host and port (cookies are not kept
#: per port, and two desks on one server must not sign each other's people out).
SESSION_COOKIE = "kafer-desk-session"


def session_cookie(handler) -> str:
    """The session cookie's name for the desk ``handler`` answers for."""
    return f"{SESSION_COOKIE}-{re.sub(r'[^A-Za-z0-9]', '-', handler.request.host)}"


@dataclass
class DeskUser(User):
    """A Jupyter ``User`` who is a desk :class:`Person`."""

    person: Person | None = None


def desk_user(person: Person) -> DeskUser:
    """The Jupyter user for ``person``."""
    return DeskUser(username=person.name, name=person.name, person=person)


def sign_in_mode(settings: Settings) -> str:
    """``proxy`` (single sign-on configured), ``account`` (the users file holds accounts) or ``loopback``.

    Raises
    ------
    AccountError
        When the users file exists but may not be used (others can write it, unreadable).
    """
    if settings.desk_proxy_addresses:
        return "proxy"
    return "account" if read_accounts(users_file(settings)) else "loopback"


class DeskIdentity(IdentityProvider):
    """What the desk's identity providers share: the desk's settings, no token, no handlers of
    their own (the desk registers its sign-in pages itself, :mod:`kafer.desk.handlers`)."""

    mode = ""

    @property
    def settings(self) -> Settings:
        """The desk's settings (the app that made this provider holds them)."""
        return self.parent.desk_settings

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return False

    @property
    def logout_available(self) -> bool:
        return False

    def get_handlers(self) -> list:
        return []

    def users_file(self) -> Path | None:
        """The users file a kernel re-reads its person from (local accounts only)."""
        return None

    def still_valid(self, person: Person) -> bool:
        """Whether ``person``'s session still holds (a removed account's or changed password's does not)."""
        return True

    def get_user(self, handler) -> DeskUser | None:
        raise NotImplementedError


class LoopbackIdentity(DeskIdentity):
    """One person at this computer: every request from the loopback is the operating system's user."""

    mode = "loopback"

    def get_user(self, handler) -> DeskUser | None:
        if not _address(handler.request.remote_ip).is_loopback:
            return None
        return desk_user(Person(login_name() or "unknown", ("approver",), "os user"))


class ProxyIdentity(DeskIdentity):
    """The plant's single sign-on: the identity headers of a trusted proxy's connections only."""

    mode = "proxy"

    def get_user(self, handler) -> DeskUser | None:
        if not self.trusted(handler.request.remote_ip):
            return None
        name = handler.request.headers.get(self.settings.desk_user_header, "").strip()
        if not name:
            return None
        groups = [g.strip() for g in handler.request.headers.get(self.settings.desk_groups_header, "").split(",")]
        return desk_user(Person(name, proxy_roles(name, [g for g in groups if g], self.settings), "proxy"))

    def trusted(self, peer: str) -> bool:
        """Whether the connection's peer is one of the configured proxies."""
        address = _address(peer)
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.settings.desk_proxy_addresses)


def proxy_roles(name: str, groups: list[str], settings: Settings) -> tuple[str, ...]:
    """The roles of a person the proxy signed in: their groups' roles, their name's, else the default."""
    by_group = {g.casefold(): role for g, role in settings.desk_group_roles.items()}
    by_name = {n.casefold(): role for n, role in settings.desk_user_roles.items()}
    roles = {by_group[g.casefold()] for g in groups if g.casefold() in by_group}
    if name.casefold() in by_name:
        roles.add(by_name[name.casefold()])
    if not roles and settings.desk_default_role:
        roles.add(settings.desk_default_role)
    return tuple(sorted(roles))


class AccountIdentity(DeskIdentity):
    """Local accounts: a sign-in page, a signed session cookie checked against the users file."""

    mode = "account"

    @property
    def login_available(self) -> bool:
        return True

    @property
    def logout_available(self) -> bool:
        return True

    def users_file(self) -> Path:
        return users_file(self.settings)

    def accounts(self) -> dict[str, Account]:
        """The users file's accounts, read again whenever the file changed."""
        path = self.users_file()
        try:
            stamp = path.stat()
            key = (stamp.st_mtime_ns, stamp.st_size, stamp.st_ino)
        except FileNotFoundError:
            key = None
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] != key:
            try:
                self._cached = (key, read_accounts(path))
            except AccountError as exc:
                self.log.error("kafer desk: %s", exc)
                self._cached = (key, {})  # a users file that cannot be trusted signs nobody in
        return self._cached[1]

    def get_user(self, handler) -> DeskUser | None:
        cookie = handler.get_secure_cookie(session_cookie(handler), max_age_days=self.settings.desk_session_hours / 24)
        if not cookie:
            return None
        try:
            session = json.loads(cookie)
            name, generation = session["name"], session["generation"]
        except (ValueError, KeyError, TypeError):
            return None
        account = self.accounts().get(str(name).casefold())
        if account is None or account.generation != generation:
            return None
        return desk_user(Person(account.name, (account.role,), "account", account.generation))

    def still_valid(self, person: Person) -> bool:
        account = self.accounts().get(person.name.casefold())
        return account is not None and account.generation == person.generation

    def check_password(self, name: str, password: str) -> Person | None:
        """The person whose account ``name`` has ``password``, else ``None``."""
        account = verify(self.accounts(), name, password)
        return None if account is None else Person(account.name, (account.role,), "account", account.generation)

    def set_session(self, handler, person: Person) -> None:
        """Sign ``person`` in: a signed, HTTP-only session cookie (secure over TLS)."""
        session = json.dumps({"name": person.name, "generation": person.generation})
        handler.set_secure_cookie(session_cookie(handler), session, expires_days=None, httponly=True, samesite="Lax",
                                  path=handler.base_url, secure=handler.request.protocol == "https")

    def clear_session(self, handler) -> None:
        """Sign out: the session cookie is dropped."""
        handler.clear_cookie(session_cookie(handler), path=handler.base_url)


class SignInThrottle:
    """Failed sign-ins slowed per source address: after ``n`` failures in a row from an address,
    its next attempt is checked only after ``wait * 2**(n-1)`` seconds (at most ``wait_max``).

    Per address, never per account, so nobody can lock an approver out by failing in their name;
    a success from an address clears it.
    """

    def __init__(self, *, wait: float, wait_max: float, clock: Callable[[], float] = time.monotonic):
        self.wait, self.wait_max, self.clock = wait, wait_max, clock
        self._failures: dict[str, tuple[int, float]] = {}

    def wait_left(self, address: str) -> float:
        """Seconds before ``address`` may try again (0: now)."""
        failures, at = self._failures.get(address, (0, 0.0))
        if not failures:
            return 0.0
        return max(0.0, at + self._delay(failures) - self.clock())

    def failed(self, address: str) -> float:
        """Count a failure from ``address``; the seconds it must now wait."""
        now = self.clock()
        self._forget(now)
        failures = self._failures.get(address, (0, now))[0] + 1
        self._failures[address] = (failures, now)
        return self._delay(failures)

    def succeeded(self, address: str) -> None:
        """A correct sign-in from ``address``: its failures are forgotten."""
        self._failures.pop(address, None)

    def _delay(self, failures: int) -> float:
        return min(self.wait * 2 ** (failures - 1), self.wait_max)

    def _forget(self, now: float) -> None:
        """Drop addresses whose last failure is long past (the table stays small)."""
        for address, (_, at) in list(self._failures.items()):
            if now - at > 2 * self.wait_max + 60:
                del self._failures[address]


def _address(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The peer's address (an IPv4 address mapped into IPv6 as the IPv4 one)."""
    try:
        address = ipaddress.ip_address((peer or "").split("%")[0])
    except ValueError:
        return ipaddress.ip_address("0.0.0.0")
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address
