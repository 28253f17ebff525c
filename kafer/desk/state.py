"""The desk's state folder, outside the lake: where the users file and the cookie secret live.

Only the desk's administrators (the account that runs the desk) may write it: whoever can write
the users file can give themselves the approver role, and whoever can read the cookie secret can
sign in as anyone. The folder is made 0700 and its files 0600; a folder or users file that other
accounts can write is refused in words rather than used. (On Windows the folder's ACL is what
protects it; POSIX modes are not checked there: docs/desk.md says how to set it.)
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..config import Settings
from ..errors import AccountError

#: The users file and the cookie secret, inside the state folder.
USERS_FILE = "users.json"
COOKIE_SECRET = "cookie_secret"
_CHECKS_MODES = os.name == "posix"


def state_dir(settings: Settings) -> Path:
    """The state folder: ``desk_state_dir``, else ``~/.config/kafer/desk`` (``%APPDATA%\\kafer\\desk``)."""
    if settings.desk_state_dir:
        return Path(settings.desk_state_dir)
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "kafer" / "desk"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kafer" / "desk"


def users_file(settings: Settings) -> Path:
    """The users file of the desk's local accounts (it need not exist)."""
    return state_dir(settings) / USERS_FILE


def private_dir(folder: Path) -> Path:
    """Make ``folder`` (0700) when missing, and refuse it when other accounts can write it.

    Raises
    ------
    AccountError
        When it cannot be made, or when its group or others may write it.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise AccountError(f"the desk's state folder {folder} cannot be made ({exc.strerror}): set desk_state_dir "
                           "in kafer.toml to a folder the desk's service account owns") from None
    check_private(folder)
    return folder


def check_private(path: Path) -> None:
    """Refuse ``path`` (the state folder or a file in it) when an account other than its owner may write it.

    Raises
    ------
    AccountError
        Naming the path, its mode and the command that fixes it.
    """
    if not _CHECKS_MODES or not path.exists():
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        fix = "chmod 700" if path.is_dir() else "chmod 600"
        raise AccountError(f"{path} can be written by other accounts (mode {stat.filemode(mode)}): anyone who can "
                           f"write it could give themselves the approver role. Make it private ({fix} {path}) "
                           "and check who changed it")


def cookie_secret(settings: Settings) -> bytes:
    """The secret that signs the desk's sign-in cookies: made (0600) on first use, then read.

    Kept outside the lake and apart from the code, so a restart keeps people signed in and nobody
    who reads the lake or the project can forge a sign-in.

    Raises
    ------
    AccountError
        When the state folder or the secret's file is not private, or the file is damaged.
    """
    path = private_dir(state_dir(settings)) / COOKIE_SECRET
    if not path.exists():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another desk made it meanwhile: read theirs
            pass
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
    check_private(path)
    if _CHECKS_MODES and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise AccountError(f"{path} can be read by other accounts: whoever reads it can sign in as anyone. "
                           f"Delete it (a new one is made; everyone signs in again) and check the folder's rights")
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise AccountError(f"{path} is damaged (too short): delete it, a new one is made on the next start "
                           "(everyone signs in again)")
    return secret.encode("ascii")
