"""Scoring every shift: watch a folder, score each new export once as it lands, issue and record its list.

``kafer predict --watch INBOX --out LISTS`` looks at the folder ``INBOX`` every ``every`` seconds.
Export files (folders below it included) that nothing changed for ``settle`` seconds, and that no
recorded list scored before, are scored together as one export with the production model: the
day's resultados, falhas and status dropped together make one list. The list is written into the
folder ``LISTS`` (``inspection-<day>-<hhmm>.xlsx``, named after where its data ends, plant time)
and recorded in the lake (:func:`kafer.predict.issue_ranking`).

A file is known by its content: the lake's list records name the SHA-256 of every file they scored,
so an unchanged file is never scored twice, across restarts and machines; a file whose content
changed is scored again. A file refused (a broken export) is reported once and left alone until it
changes; the export's other files are scored at the next look. ``--once`` scores what is new and
ends: the same command run by a timer (cron, systemd).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import KaferError, OutputError, UploadError

if TYPE_CHECKING:  # the command line imports this module: keep it light
    from .config import Settings
    from .readers import Progress

#: The list formats a watch writes, by ``--format``.
WATCH_FORMATS = ("xlsx", "csv")


@dataclass
class Inbox:
    """What a watch knows of its folder between two looks: each file's content hash by its stamp
    (so an unchanged file is hashed once), and the hashes refused in this process."""

    folder: str
    hashes: dict = field(default_factory=dict)
    refused: set = field(default_factory=set)

    def files(self, *, settle: float, now: float) -> tuple[list[str], bool]:
        """The export files of the folder, and whether any of them changed in the last ``settle`` seconds."""
        from .ingest import list_upload

        try:
            found = list(list_upload([self.folder]).files)
        except KaferError:
            return [], False  # an empty inbox, or one holding no export yet
        busy = False
        for path in found:
            try:
                busy |= now - os.stat(path).st_mtime < settle
            except OSError:
                busy = True  # moved or removed while we looked: look again later
        return found, busy

    def sha256(self, path: str) -> str:
        """A file's SHA-256, hashed again only when its size or modification time changed."""
        from .sources import content_hash

        info = os.stat(path)
        stamp = (path, info.st_size, info.st_mtime_ns)
        if stamp not in self.hashes:
            self.hashes[stamp] = content_hash(path)
        return self.hashes[stamp]


def list_path(out: str, ranked, *, fmt: str) -> str:
    """Where a watch writes a list: ``out/inspection-<day>-<hhmm>.<fmt>`` after where its data ends
    (plant time; ``-2``, ``-3``… when taken)."""
    import pandas as pd

    end = pd.to_datetime(ranked["last_checkpoint_at"]).max() if "last_checkpoint_at" in ranked else pd.NaT
    stem = "inspection-" + (end.strftime("%Y-%m-%d-%H%M") if not pd.isna(end) else "undated")
    path, n = Path(out) / f"{stem}.{fmt}", 1
    while path.exists():
        n += 1
        path = Path(out) / f"{stem}-{n}.{fmt}"
    return str(path)


def score_new(inbox: Inbox, out: str, *, settings: Settings, by: str | None, fmt: str = "xlsx",
              shadow: bool | None = None, settle: float = 60.0, now: float | None = None,
              progress: Progress | None = None) -> str | None:
    """One look at the inbox: score the new export, if one has settled, and issue its list.

    Returns
    -------
    str or None
        What was done (the list's summary, or why a file was refused), ``None`` when nothing new settled.
    """
    from .lake import Lake
    from .lists import scored_files
    from .predict import issue_ranking, predict_upload, ranking_facts

    files, busy = inbox.files(settle=settle, now=time.time() if now is None else now)
    if busy or not files:
        return None
    lake = Lake(settings.lake)
    done = scored_files(lake) | inbox.refused
    new = [path for path in files if inbox.sha256(path) not in done]
    if not new:
        return None
    try:
        ranked = predict_upload(new, settings=settings, progress=progress)
    except UploadError as exc:
        named = [path for path in new if exc.file is not None and str(exc.file) in (path, Path(path).name)]
        inbox.refused.update(inbox.sha256(path) for path in named or new)  # the others are scored at the next look
        return f"Refused, left alone until it changes: {exc}"
    facts = ranking_facts(ranked, paths=new, settings=settings)
    target = list_path(out, ranked, fmt=fmt)
    return issue_ranking(ranked, target, facts=facts, settings=settings, by=by, source="watch", paths=new,
                         shadow=shadow)


def watch(folder: str, out: str, *, settings: Settings, by: str | None, fmt: str = "xlsx",
          shadow: bool | None = None, settle: float = 60.0, every: float = 60.0, once: bool = False,
          say: Callable[[str], None] = print, progress: Progress | None = None,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Watch ``folder`` and issue a list for each new export, until interrupted (or once, with ``once``).

    Parameters
    ----------
    folder : str
        The inbox the plant's exports land in (a local folder).
    out : str
        The local folder inspectors read their lists from.
    settings : Settings
    by : str or None
        Recorded as who issued the lists (blank: this machine's login).
    fmt : {"xlsx", "csv"}
    shadow : bool, optional
        Shadow lists (``None``: the setting's).
    settle : float
        Seconds a file must stay unchanged before the export is taken (a copy may still be under way).
    every : float
        Seconds between two looks.
    once : bool
        Look once and return (for a timer).
    say : callable
        Given one line per list issued or export refused.

    Returns
    -------
    int
        0 (the exit code).

    Raises
    ------
    OutputError
        When ``folder`` or ``out`` is not a local folder, or ``fmt`` unknown.
    KaferError
        With ``once``, when the export cannot be scored for a reason of its own (no production model,
        the lake); a running watch says it and looks again.
    """
    for name, path in (("the inbox", folder), ("the lists' folder", out)):
        if "://" in path or not Path(path).is_dir():
            raise OutputError(f"{name} {path} is not a local folder: make it first, or name another")
    if fmt not in WATCH_FORMATS:
        raise OutputError(f"a watch writes lists as {' or '.join(WATCH_FORMATS)}, not {fmt!r}")
    inbox = Inbox(folder)
    if not once:
        say(f"Watching {folder} every {every:g} s; lists go to {out} (Ctrl-C stops).")
    while True:
        try:
            said = score_new(inbox, out, settings=settings, by=by, fmt=fmt, shadow=shadow, settle=settle,
                             progress=progress)
        except KaferError as exc:  # not the export's fault (no production model yet, the lake): try again later
            if once:
                raise
            said = f"Cannot score now ({exc}); looking again in {every:g} s."
        if said:
            say(said)
        elif once:
            say(f"Nothing new in {folder}.")
        if once:
            return 0
        sleep(every)
