"""Who holds a lake lock: the record a holder writes, and whether that holder is alive.

A record names its holder (machine, pid, its start time and boot, the job's purpose, heartbeat).
Whether an object-store lock's holder on this machine lives is read from the process table
(``/proc`` on Linux); one on another machine is judged by how long its lock object has not been
rewritten, by the store's own clock. A local lake's holder is judged by its OS lock
(:func:`kafer.locks.lock_holder`), never by a record.

The machine's name is the host name, or ``KAFER_HOST`` when set: tests give a second process
another name to play a second machine.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone

#: Seconds without a heartbeat after which an object-store lock is taken over (its holder being on
#: another machine, so that whether it is alive cannot be seen).
DEFAULT_STALE_AFTER = 120.0


def iso(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC text, to the second."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def this_host() -> str:
    """This machine's name in lock records: ``KAFER_HOST``, else the host name."""
    return os.environ.get("KAFER_HOST") or socket.gethostname()


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers sharing a host name do not share pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


@functools.lru_cache(maxsize=1)
def _boot_id() -> str | None:
    """This machine's boot id (Linux): tells this machine from another of the same name, and from
    itself before a restart."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid`` from /proc (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: str | None) -> bool | None:
    """Whether process ``pid`` of this host still runs (a zombie or a reused pid does not); None: unknown."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    except OSError:
        return None
    found = _proc_stat(pid)
    if found is None:
        return True
    state, start = found
    if state in ("Z", "X"):
        return False
    return not (started and start != started)


def holder_record(url: str, name: str, purpose: str, *, heartbeat_every: float) -> dict:
    """The record a new holder of the lock ``name`` writes: who it is, what for, since when."""
    now = time.time()
    pid = os.getpid()
    own = _proc_stat(pid)
    return {"lake": url, "lock": name, "owner": f"{this_host()}:{pid}:{uuid.uuid4().hex[:12]}",
            "host": this_host(), "pid": pid, "pidns": _pid_namespace(), "boot": _boot_id(),
            "started": own[1] if own else None,
            "purpose": purpose, "since": now, "since_utc": iso(now), "heartbeat": now, "heartbeat_utc": iso(now),
            "heartbeat_every": heartbeat_every}


def parse_record(data: bytes) -> dict:
    """A lock record; an older one (``owner`` = ``host:pid:…``) gets host and pid; an unreadable one
    is marked so (writes of lock records are whole, so it was never a live holder's)."""
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"owner": None, "unreadable": True}
    if not isinstance(record, dict):
        return {"owner": None, "unreadable": True}
    if "host" not in record and isinstance(record.get("owner"), str) and record["owner"].count(":") >= 2:
        host, pid, _ = record["owner"].rsplit(":", 2)
        record = {**record, "host": host, "pid": int(pid) if pid.isdigit() else None}
    return record


def judge_holder(holder: dict, *, age: float, stale_after: float = DEFAULT_STALE_AFTER) -> tuple[str, str]:
    """Whether an object-store lock's holder is ``alive``, ``dead`` (provably) or ``stale``, and why.

    A holder on this machine (same name, same boot, same pid namespace) is judged by its process:
    gone, a zombie or a reused pid is dead, else it is alive whatever its heartbeat. Any other
    holder is judged by ``age``, the seconds since its lock object was last written by the store's
    clock: older than ``stale_after`` (or twice the holder's own heartbeat interval, when longer)
    is stale. A record from another boot of a machine of this name is judged so too, since a
    restart cannot be told from another machine that bears the same name.
    """
    if holder.get("unreadable"):
        return "dead", "unreadable lock record"
    pidns, boot = _pid_namespace(), _boot_id()
    if (holder.get("host") == this_host() and not (holder.get("pidns") and pidns and holder["pidns"] != pidns)
            and not (holder.get("boot") and boot and holder["boot"] != boot)):
        alive = _process_alive(holder.get("pid"), holder.get("started"))
        if alive is False:
            return "dead", "dead"
        if alive:
            return "alive", "alive"
    limit = max(float(stale_after), 2.0 * float(holder.get("heartbeat_every") or 0.0))
    if age > limit:
        return "stale", f"no heartbeat for {age:.0f} s, presumed dead"
    return "alive", f"alive, heartbeat {age:.0f} s ago"


def describe_holder(holder: dict, why: str) -> str:
    """``retrain r… (pid 123 on host, alive, since 2024-…)``."""
    if not holder:
        return f"another job ({why})"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = holder.get("since_utc") or (iso(float(holder["since"])) if holder.get("since") else "?")
    return f"{holder.get('purpose') or 'another job'} ({where}, {why}, since {since})"


def busy(url: str, name: str, holder: dict, why: str, waited: float) -> str:
    """The message of a lock not had in ``waited`` seconds, naming its holder."""
    return (f"the lake {url} is busy: {describe_holder(holder, why)} holds its lock {name!r}; "
            f"waited {waited:g} s. Try again when it has finished.")

