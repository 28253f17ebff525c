"""One root for every error a user can cause; the CLI maps them to a short message and exit code.

Each subclass also inherits the matching built-in, so callers can catch either.
"""

from __future__ import annotations

from .i18n import tr


class KaferError(Exception):
    """Root of every error Käfer raises on purpose; its message is meant for the user."""

    exit_code = 1

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the one-line message, so a notebook refusing
        an upload reads like the CLI (IPython calls this when an exception defines it)."""
        return [f"{type(self).__name__}: {self}"]


class UploadError(KaferError, ValueError):
    """An uploaded file cannot be accepted.

    The message names the file and, where they apply, the sheet, row, column and value.
    """

    exit_code = 2

    def __init__(self, problem, *, file=None, sheet=None, row=None, column=None, value=None):
        self.problem = problem
        self.file = file
        self.sheet = sheet
        self.row = row
        self.column = column
        self.value = value
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.sheet is not None:
            where.append(tr("sheet {sheet!r}", sheet=self.sheet))
        if self.row is not None:
            where.append(tr("row {row}", row=self.row))
        if self.column is not None:
            where.append(tr("column {column}", column=self.column))
        text = ", ".join(where)
        if self.value is not None:
            shown = str(self.value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            text += " " + tr("(value {value!r})", value=shown)
        return f"{text}: {self.problem}" if text else self.problem


class ConfigError(KaferError, ValueError):
    """The settings (kafer.toml, environment, arguments) are not usable."""


class OutputError(KaferError, ValueError):
    """A result cannot be written where it was asked (unknown format, missing folder, file in use)."""


class LakeError(KaferError, OSError):
    """The lake is missing something it should hold, or holds something broken."""


class LockTimeout(KaferError, TimeoutError):
    """Another decision or retrain holds the lake's lock longer than we may wait."""


class NestedLockError(LockTimeout):
    """This thread asked for a lake lock it already holds: waiting for itself would never end.

    A :class:`LockTimeout` (the lock is busy, held by the caller) raised at once instead of after
    the timeout, so code that handles a busy lake handles this too.
    """


class LockLost(KaferError, RuntimeError):
    """Another process took over a lake lock this one held (its heartbeat had stopped for too long):
    this one must write nothing more under it."""


class ModelError(KaferError, RuntimeError):
    """A model cannot be trained, saved, loaded or applied."""


class CarError(KaferError, LookupError):
    """A car asked for by its KNR is malformed or not in the lake."""

    exit_code = 2


class RegistryError(KaferError, ValueError):
    """A registry request is not allowed (unknown version, run decided twice, no production model)."""


class DecisionError(RegistryError):
    """A keep-new / keep-old / rollback decision was refused."""


class RightsError(KaferError, PermissionError):
    """The person acting lacks the right for what they asked (deciding takes the approver role…),
    or is no longer who the desk signed in (account removed, password changed)."""

    exit_code = 3


class AccountError(KaferError, ValueError):
    """The desk's users file or state folder cannot be used as asked (unknown name, weak password,
    a file others can write…)."""


class RunError(KaferError, FileNotFoundError):
    """A run record is missing or incomplete."""


class StepError(KaferError, RuntimeError):
    """A pipeline step (notebook) failed; names the step and the cause."""

    def __init__(self, step: str, cause: str):
        self.step = step
        self.cause = cause
        super().__init__(tr("step {step!r} failed: {cause}", step=step, cause=cause))


class JobError(KaferError, RuntimeError):
    """A retrain job cannot be started or read (no such job, a record that cannot be read)."""


class JobBusy(JobError):
    """A retrain cannot start: another one runs (a job of the desk, or a retrain from a terminal)."""


class SessionError(KaferError, LookupError):
    """An upload session is unknown or expired, or cannot do what was asked in the state it is in."""


class OwnerError(KaferError, PermissionError):
    """A person acted on what belongs to another person (an upload session is written by its owner only)."""


class KaferWarning(UserWarning):
    """Root of the warnings Käfer gives on purpose: the work goes on, and the message says what the
    user should know (the CLI prints it as one line)."""


class LockReachWarning(KaferWarning):
    """A local lake's locks were taken without knowing whether they reach other machines (the
    system does not say which file system holds the folder)."""
