"""The desk's local accounts, for a plant without single sign-on: the users file.

One JSON file in the desk's state folder (:mod:`kafer.desk.state`), private to the desk's
administrators. Each account has a name, a role, an argon2id hash of its password (salted, slow;
the password itself is never stored or logged) and a session *generation*: a random value made
anew when the account is added or its password changed. A sign-in remembers the generation it was
made under, so a new password (or removing the account) ends every session made before it. There
is no default account. Changes are written to a new file that replaces the old one whole, under a
lock, so a failed change leaves the file as it was.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ..config import DESK_ROLES
from ..errors import AccountError
from .state import check_private, private_dir

#: Fewest characters of a password.
MIN_PASSWORD = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_FORMAT = 1


@dataclass(frozen=True)
class Account:
    """One local account (its hash is kept out of ``repr``)."""

    name: str
    role: str
    generation: str
    added_at: str
    changed_at: str
    hash: str = field(repr=False, default="")


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's current defaults (RFC 9106's second choice)


def read_accounts(path: Path) -> dict[str, Account]:
    """The accounts of the users file at ``path``, by name folded to lower case; none when it is missing.

    Raises
    ------
    AccountError
        When the file (or its folder) can be written by other accounts, or cannot be read as a
        users file.
    """
    if not path.exists():
        return {}
    check_private(path.parent)
    check_private(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        accounts = [Account(**entry) for entry in data["accounts"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AccountError(f"{path} is not a readable users file ({exc}): restore it from a backup, or remove it "
                           "and add the accounts again with kafer users add") from None
    return {account.name.casefold(): account for account in accounts}


def find(path: Path, name: str) -> Account:
    """The account named ``name`` (any case).

    Raises
    ------
    AccountError
        When there is no such account (the message lists those there are).
    """
    return _known(read_accounts(path), name, path)


def add(path: Path, name: str, *, role: str, password: str) -> Account:
    """Add an account.

    Raises
    ------
    AccountError
        For a name already taken or not a plain name, an unknown role, or a weak password.
    """
    _check_name(name)
    _check_role(role)
    _check_password(password, name)
    now = _now()
    account = Account(name, role, secrets.token_hex(8), now, now, _hasher().hash(password))

    def change(accounts: dict[str, Account]) -> Account:
        if name.casefold() in accounts:
            raise AccountError(f"{name!r} already has an account ({accounts[name.casefold()].role}): change its "
                               f"password with kafer users passwd {name} --password-stdin, or remove it first")
        accounts[name.casefold()] = account
        return account

    return _changing(path, change)


def remove(path: Path, name: str) -> Account:
    """Remove an account; its sessions end (the desk also shuts down their pages).

    Raises
    ------
    AccountError
        When there is no such account.
    """
    return _changing(path, lambda accounts: accounts.pop(_known(accounts, name, path).name.casefold()))


def set_password(path: Path, name: str, *, password: str) -> Account:
    """Give an account a new password and a new generation: every earlier session ends.

    Raises
    ------
    AccountError
        When there is no such account, or the password is weak.
    """
    find(path, name)
    _check_password(password, name)
    digest = _hasher().hash(password)

    def change(accounts: dict[str, Account]) -> Account:
        account = _known(accounts, name, path)
        accounts[account.name.casefold()] = updated = replace(account, hash=digest, generation=secrets.token_hex(8),
                                                              changed_at=_now())
        return updated

    return _changing(path, change)


def set_role(path: Path, name: str, *, role: str) -> Account:
    """Give an account another role. Its sessions go on: the new role holds at its next action
    (each action re-reads the account) and its next page shows the controls of that role.

    Raises
    ------
    AccountError
        When there is no such account or the role is unknown.
    """
    _check_role(role)

    def change(accounts: dict[str, Account]) -> Account:
        account = _known(accounts, name, path)
        accounts[account.name.casefold()] = updated = replace(account, role=role, changed_at=_now())
        return updated

    return _changing(path, change)


def verify(accounts: dict[str, Account], name: str, password: str) -> Account | None:
    """The account when ``password`` is its password, else ``None``.

    An unknown name costs the same hashing as a known one, so the answer's time does not say which
    names have accounts.
    """
    from argon2.exceptions import InvalidHashError, VerificationError

    account = accounts.get(name.strip().casefold())
    hasher = _hasher()
    digest = account.hash if account else _decoy(hasher)
    try:
        hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return None
    return account


_DECOY: list[str] = []


def _decoy(hasher) -> str:
    """A hash of a random password, made once, verified against when the name is unknown."""
    if not _DECOY:
        _DECOY.append(hasher.hash(secrets.token_hex(16)))
    return _DECOY[0]


def _changing(path: Path, change) -> Account:
    """Read the accounts under the file's lock, apply ``change``, and replace the file whole."""
    from filelock import FileLock

    private_dir(path.parent)
    with FileLock(str(path) + ".lock", timeout=30, mode=0o600):
        accounts = read_accounts(path)
        result = change(accounts)
        data = {"format": _FORMAT, "accounts": [asdict(a) for a in sorted(accounts.values(), key=lambda a: a.name)]}
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".json")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:  # mkstemp makes it 0600
                json.dump(data, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return result


def _known(accounts: dict[str, Account], name: str, path: Path) -> Account:
    account = accounts.get(name.strip().casefold())
    if account is None:
        known = ", ".join(sorted(a.name for a in accounts.values())) or "none yet"
        raise AccountError(f"no account named {name!r} in {path} (accounts: {known})")
    return account


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name or ""):
        raise AccountError(f"{name!r} is not an account name: up to 64 letters, digits and . _ @ -, starting with a "
                           "letter or digit (e.g. ana.souza)")


def _check_role(role: str) -> None:
    if role not in DESK_ROLES:
        raise AccountError(f"{role!r} is not a role: one of {', '.join(DESK_ROLES)}")


def _check_password(password: str, name: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters (nothing was changed)")
    if password.strip().casefold() == name.strip().casefold():
        raise AccountError("the password may not be the account's name (nothing was changed)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
