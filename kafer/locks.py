"""Lake locks, which die with their owner: who may change the lake, one at a time.

On a local lake an OS lock the kernel releases when the process ends; on an object store a
create-if-absent object with a heartbeat, taken over when its owner is provably dead (same host,
process gone) or its heartbeat stopped.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from .errors import KaferError, LockTimeout, NestedLockError
from .holders import (DEFAULT_STALE_AFTER, busy, describe_holder, holder_record, iso, judge_holder,
                      parse_record)
from .faults import names_missing_bucket
from .lake import Lake, json_bytes, protocols, utc_now_iso


@dataclass(frozen=True)
class LockInfo:
    """What :func:`hold` yields while the lock is held.

    Attributes
    ----------
    name : str
        The lock's name (``lake``, ``registry``, ``retrain``…).
    holder : dict
        The record this holder wrote: ``owner`` (unique token), ``host``, ``pid``, ``purpose``,
        ``since`` / ``since_utc``, ``heartbeat`` / ``heartbeat_utc``…
    took_over_from : dict or None
        The record of the previous holder when it had died (or, on an object store, its heartbeat
        had stopped) without releasing the lock, with ``state`` (``"dead"`` or ``"stale"``) and
        ``why`` added; ``None`` after a clean hand-over. Recovery code acts on it.
    """

    name: str
    holder: dict
    took_over_from: dict | None = None
    _lost: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def lost(self) -> bool:
        """True when another holder took the lock over while this one held it (object stores only:
        a heartbeat failed for longer than the waiters' staleness)."""
        return self._lost.is_set()


# Locks held by this process: identity -> (thread id, holder record); finds a thread asking twice.
_HELD: dict[str, tuple[int, dict]] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def hold(lake: Lake, name: str = "lake", *, timeout: float = 30.0, stale_after: float = DEFAULT_STALE_AFTER,
         purpose: str = "", heartbeat: float | None = None,
         details: dict | None = None) -> Iterator[LockInfo]:
    """Hold the lake-wide lock ``name`` for the duration of the block.

    A local lake holds an OS lock (filelock, on the hidden ``locks/.<name>.flock``), released by
    the OS when the process ends however it ends, and writes its holder record to
    ``locks/<name>.lock`` for whoever waits; a record left by a dead holder is replaced. An object store
    (``s3://``, ``memory://``) holds a create-if-absent object ``locks/<name>.lock`` whose
    heartbeat a background thread refreshes every ``heartbeat`` seconds. Such a lock is taken
    over when its holder is provably dead (same host, process gone or host restarted) or, for a
    holder on another host, when its heartbeat is older than ``stale_after`` seconds; a holder
    that is alive is never taken over. A holder removes only its own lock.

    Parameters
    ----------
    name : str
        Which lock (``lake``, ``registry``, ``retrain``…).
    timeout : float
        Seconds to wait for another holder before giving up.
    stale_after : float
        Object stores: seconds without a heartbeat after which a holder on another host counts as
        dead (a holder's own ``heartbeat_every``, doubled, is honoured when longer). Local lakes
        do not need it.
    purpose : str
        Words naming the job (``retrain r…``), shown to whoever waits.
    heartbeat : float, optional
        Object stores: seconds between heartbeats; ``stale_after / 4`` when omitted.
    details : dict, optional
        JSON-able facts for whoever finds this record, e.g. ``{"run": run_id}``; kept under
        ``details`` in the record, so a successor's ``took_over_from["details"]`` names what
        to recover without parsing ``purpose``.

    Yields
    ------
    LockInfo
        This holder's record and ``took_over_from``: the record of a dead (or stale) holder whose
        lock this one took over, else ``None``.

    Raises
    ------
    LockTimeout
        When another holder keeps the lock longer than ``timeout``; the message names it
        (purpose, pid, host, alive or not, since when).
    NestedLockError
        At once (a :class:`LockTimeout` too) when this thread already holds ``name`` on this lake:
        waiting for itself would never end. Other threads of the process wait as usual.
    LakeError
        When the store fails (unreachable, no credentials, permission denied…).
    """
    key = f"locks/{name}.lock"
    path = lake.path(key)
    identity = os.path.realpath(path) if lake.is_local else f"{protocols(lake.fs)[0]}://{path}"
    with _HELD_GUARD:
        held = _HELD.get(identity)
    if held is not None and held[0] == threading.get_ident():
        raise NestedLockError(
            f"the lake {lake.url} is busy: {describe_holder(held[1], 'alive, this very thread')} holds its "
            f"lock {name!r}, and this thread asks for it again, which would wait forever: "
            "a lock must not be taken twice in one thread")
    every = float(heartbeat) if heartbeat is not None else max(stale_after / 4.0, 0.01)
    record = holder_record(lake.url, name, purpose, heartbeat_every=every)
    if details:
        record["details"] = dict(details)
    take = _lock_local if lake.is_local else _lock_object
    with take(lake, name, key, path, record, timeout=max(float(timeout), 0.0), stale_after=stale_after) as info:
        with _HELD_GUARD:
            _HELD[identity] = (threading.get_ident(), record)
        try:
            yield info
        finally:
            with _HELD_GUARD:
                _HELD.pop(identity, None)


def lock_holder(lake: Lake, name: str = "lake", *, stale_after: float = DEFAULT_STALE_AFTER) -> dict | None:
    """The record of whoever holds (or, dead, left) the lock ``name``, with ``state`` (``alive``,
    ``dead`` or ``stale``) and ``why`` added; ``None`` when nobody does. Reads only."""
    key = f"locks/{name}.lock"
    data = lake._cat(key)
    if not data:
        return None
    holder = parse_record(data)
    state, why = judge_holder(holder, stale_after=stale_after)
    return {**holder, "state": state, "why": why}


@contextlib.contextmanager
def _lock_local(lake: Lake, name: str, key: str, path: str, record: dict, *, timeout: float,
                stale_after: float) -> Iterator[LockInfo]:
    """The OS lock is held on the hidden ``locks/.<name>.flock`` (left in place, as filelock advises:
    removing a locked file lets waiters split over two files); the holder record ``locks/<name>.lock``
    exists while the lock is held, and is left behind only by a holder that died."""
    import filelock

    folder = os.path.dirname(path)
    with lake._io("lock", key):
        os.makedirs(folder, exist_ok=True)
    flock = filelock.FileLock(os.path.join(folder, f".{name}.flock"))
    timed_out = False
    with lake._io("lock", key):
        try:
            flock.acquire(timeout=timeout, poll_interval=0.05)
        except filelock.Timeout:  # a TimeoutError, which _io would take for a store fault
            timed_out = True
    if timed_out:
        holder = _read_local_holder(path)
        state, why = judge_holder(holder, stale_after=stale_after) if holder else ("alive", "alive")
        if holder is None or state == "dead":  # the new holder has not written its record yet
            holder, why = {}, "alive"
        raise LockTimeout(busy(lake.url, name, holder, why, timeout)) from None
    try:
        with lake._io("lock", key):
            previous = _read_local_holder(path)  # a record left behind: its holder died holding the lock
            tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
            with open(tmp, "wb") as fh:
                fh.write(json_bytes(record))
            os.replace(tmp, path)
    except BaseException:
        flock.release()
        raise
    try:
        took = None
        if previous is not None:
            took = {**previous, "state": "dead",
                    "why": "its process ended without releasing the lock (the OS released it)"}
        yield LockInfo(name, record, took)
    finally:
        try:
            current = _read_local_holder(path)
            if current is not None and current.get("owner") == record["owner"]:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            flock.release()


def _read_local_holder(path: str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return parse_record(data) if data.strip() else None


@contextlib.contextmanager
def _lock_object(lake: Lake, name: str, key: str, path: str, record: dict, *, timeout: float,
                 stale_after: float) -> Iterator[LockInfo]:
    token = record["owner"]
    deadline = time.monotonic() + timeout
    delay, last_try = 0.05, False
    with lake._io("lock", key):
        while True:
            now = time.time()
            record.update(since=now, since_utc=iso(now), heartbeat=now, heartbeat_utc=iso(now))
            if lake._create(path, json_bytes(record)):
                current = _read_record(lake, path)
                if current is not None and current.get("owner") == token:
                    break  # ours, confirmed (a store without an atomic create may have let another in)
            holder = _read_record(lake, path)
            moved = holder is None  # released meanwhile: try again at once
            if holder is not None:
                state, why = judge_holder(holder, stale_after=stale_after)
                moved = state != "alive" and _take_over(lake, path, holder, record, stale_after=stale_after)
            remaining = deadline - time.monotonic()
            if moved and (remaining > 0 or not last_try):
                last_try = remaining <= 0  # freed at the deadline: one more try
                continue
            if remaining <= 0:
                if holder is None:
                    holder, why = {}, "alive"
                raise LockTimeout(busy(lake.url, name, holder, why, timeout))
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)
        took = _read_record(lake, path + ".takeover")
        if took is not None:
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm_file(path + ".takeover")
            took = {**(took.get("victim") or {}), "state": took.get("state"), "why": took.get("why")}
        if lake.is_remote:
            lake.fs.invalidate_cache()  # see what others wrote before we held the lock
    info = LockInfo(name, record, took)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lake, path, record, stop, info._lost),
                            name=f"kafer-lock-{name}", daemon=True)
    beat.start()
    try:
        yield info
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(KaferError, OSError):  # an unreleased lock ends by its heartbeat
            with lake._io("unlock", key, ensure=False):
                current = _read_record(lake, path)
                if current is not None and current.get("owner") == token:
                    lake.fs.rm_file(path)


def _heartbeat(lake: Lake, path: str, record: dict, stop: threading.Event, lost: threading.Event) -> None:
    """Refresh the holder's heartbeat until ``stop``; note when the lock is no longer ours."""
    while not stop.wait(record["heartbeat_every"]):
        try:
            current = _read_record(lake, path)
            if current is None or current.get("owner") != record["owner"]:
                lost.set()
                return
            now = time.time()
            record.update(heartbeat=now, heartbeat_utc=iso(now))
            lake.fs.pipe_file(path, json_bytes(record))
        except Exception:  # noqa: BLE001 - a missed beat is retried; staleness takes minutes
            continue


def _take_over(lake: Lake, path: str, victim: dict, record: dict, *, stale_after: float) -> bool:
    """Remove the lock of a dead or stale ``victim``; True when removed.

    Only the waiter that creates the claim ``<lock>.takeover`` may remove the lock, and only when
    the lock still is the victim's, so two waiters never remove each other's fresh lock. The claim
    stays, naming the victim, for whoever takes the lock next (``took_over_from``).
    """
    claim_path = path + ".takeover"
    state, why = judge_holder(victim, stale_after=stale_after)
    claimer = {k: record.get(k) for k in ("owner", "host", "pid", "boot", "started", "purpose")}
    claim = {"victim": victim, "state": state, "why": why, "by": claimer, "at": time.time(),
             "at_utc": utc_now_iso()}
    if not lake._create(claim_path, json_bytes(claim)):
        existing = _read_record(lake, claim_path)
        if existing is None:
            return False
        if (existing.get("victim") or {}).get("owner") != victim.get("owner"):
            removable = True  # about an earlier holder, not the current one: left over
        else:  # another waiter is taking over the same victim; unless it died doing so
            by = {**(existing.get("by") or {}), "heartbeat": existing.get("at", 0), "heartbeat_every": 0}
            removable = judge_holder(by, stale_after=stale_after)[0] != "alive"
        if removable:
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm_file(claim_path)
        return False
    current = _read_record(lake, path)
    if current is not None and current.get("owner") == victim.get("owner"):
        with contextlib.suppress(FileNotFoundError):
            lake.fs.rm_file(path)
        return True
    with contextlib.suppress(FileNotFoundError):
        lake.fs.rm_file(claim_path)
    return False


def _read_record(lake: Lake, path: str) -> dict | None:
    try:
        data = lake.fs.cat_file(path)
    except FileNotFoundError as exc:
        if names_missing_bucket(exc, lake._bucket):
            raise
        return None
    return parse_record(data)

