"""Lake locks, which die with their owner: who may change the lake, one at a time.

A local lake (a folder, on this disk or on a share) holds an OS lock on the hidden
``locks/.<name>.flock``, which the file system keeps for its holder wherever that runs and
releases when the holder's process ends; the record ``locks/<name>.lock`` beside it only names the
holder in messages. Whether a holder is alive is asked of the OS lock itself
(:func:`lock_holder` tries to take it without waiting), never of a clock or a host name. A folder
on a file system whose locks are not known to reach other machines is refused (:func:`lock_reach`:
an allow-list of local disks and of shares that lock on their server).

An object store (``s3://``, ``memory://``) holds the object ``locks/<name>.lock``, and every change
of it is conditional on the version the changer saw (:meth:`kafer.lake.Lake.create_versioned` and
its kin: ``If-None-Match`` to create it, ``If-Match`` on the ETag to renew, take over or release
it), so no one ever overwrites or deletes a lock that changed since it looked. A background thread
renews the holder's heartbeat; a lock whose holder is provably dead (same machine, process gone)
or whose object was not rewritten for ``stale_after`` seconds by the store's clock is taken over by
overwriting exactly the version judged. Before each write that matters (a registry entry, a
decision, a pointer) a holder calls :meth:`LockInfo.verify`, a conditional renewal: a holder whose
lock was taken over raises :class:`~kafer.errors.LockLost` and writes nothing more.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Iterator

from .errors import KaferError, LakeError, LockLost, LockReachWarning, LockTimeout, NestedLockError
from .holders import (DEFAULT_STALE_AFTER, busy, describe_holder, holder_record, iso, judge_holder,
                      parse_record)
from .lake import Lake, json_bytes, protocols

#: Where /proc tells this process's mounts (Linux).
MOUNTINFO = "/proc/self/mountinfo"


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

    def __init__(self, name: str, holder: dict, took_over_from: dict | None, *, lake: Lake,
                 lease: _Lease | None = None):
        self.name = name
        self.holder = holder
        self.took_over_from = took_over_from
        self._lake = lake
        self._lease = lease

    @property
    def lost(self) -> bool:
        """True once this holder learnt that another took its lock over (object stores only: its
        heartbeat or :meth:`verify` was refused)."""
        return self._lease is not None and self._lease.lost

    def verify(self) -> None:
        """Make sure this holder still holds the lock, right before a write that matters.

        On an object store this is a conditional renewal: it fails when another holder took the
        lock over, and otherwise gives this one a whole ``stale_after`` before anyone may. A local
        lake's OS lock is kept by the file system for as long as the process lives.

        Raises
        ------
        LockLost
            When the lock was taken over: nothing more may be written under it.
        LakeError
            When the store cannot be asked.
        """
        if self._lease is None or self._lease.renew():
            return
        current = lock_holder(self._lake, self.name)
        by = describe_holder(current, current["why"]) if current else "another process, which has released it since"
        raise LockLost(f"the lake {self._lake.url}'s lock {self.name!r} of {self.holder.get('purpose') or 'this job'} "
                       f"was taken over by {by}: this process had not renewed it for longer than lock_stale_after. "
                       "Nothing more was written; run the command again")


# Locks held by this process: identity -> (thread id, holder record); finds a thread asking twice.
_HELD: dict[str, tuple[int, dict]] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def hold(lake: Lake, name: str = "lake", *, timeout: float = 30.0, stale_after: float = DEFAULT_STALE_AFTER,
         single_machine: bool = False, purpose: str = "", heartbeat: float | None = None,
         details: dict | None = None) -> Iterator[LockInfo]:
    """Hold the lake-wide lock ``name`` for the duration of the block.

    Parameters
    ----------
    lake : Lake
    name : str
        Which lock (``lake``, ``registry``, ``retrain``…).
    timeout : float
        Seconds to wait for another holder before giving up.
    stale_after : float
        Object stores: seconds without a heartbeat, by the store's clock, after which a holder on
        another machine counts as dead (a holder's own ``heartbeat_every``, doubled, is honoured
        when longer). Local lakes never need it: their OS lock says whether its holder lives.
    single_machine : bool
        Local lakes: accept a folder whose locks may stay on this machine (see :func:`lock_reach`),
        the lake being used from this machine only.
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
        This holder's record, ``took_over_from`` (the record of a dead or stale holder whose lock
        this one took over, else ``None``) and :meth:`LockInfo.verify`.

    Raises
    ------
    LockTimeout
        When another holder keeps the lock longer than ``timeout``; the message names it
        (purpose, pid, machine, alive or not, since when).
    NestedLockError
        At once (a :class:`LockTimeout` too) when this thread already holds ``name`` on this lake:
        waiting for itself would never end. Other threads of the process wait as usual.
    LakeError
        When the store fails (unreachable, no credentials, permission denied…), or a local lake lies
        on a share whose locks would not reach other machines.
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
    timeout = max(float(timeout), 0.0)
    if lake.is_local:
        taken = _lock_local(lake, name, key, record, timeout=timeout, single_machine=single_machine)
    else:
        taken = _lock_object(lake, name, key, record, timeout=timeout, stale_after=stale_after)
    with taken as info:
        with _HELD_GUARD:
            _HELD[identity] = (threading.get_ident(), record)
        try:
            yield info
        finally:
            with _HELD_GUARD:
                _HELD.pop(identity, None)


def lock_holder(lake: Lake, name: str = "lake", *, stale_after: float = DEFAULT_STALE_AFTER) -> dict | None:
    """The record of whoever holds (or, dead, left) the lock ``name``, with ``state`` (``alive``,
    ``dead`` or ``stale``) and ``why`` added; ``None`` when nobody does.

    A local lake's holder is alive exactly when its OS lock cannot be taken (tried without
    waiting, and released at once when it could): the file system answers, wherever the holder
    runs. Writes nothing to an object store.
    """
    key = f"locks/{name}.lock"
    if lake.is_local:
        return _local_holder(lake, name, key)
    found = lake.read_versioned(key)
    if found is None:
        return None
    holder = parse_record(found.data)
    state, why = judge_holder(holder, age=found.age, stale_after=stale_after)
    return {**holder, "state": state, "why": why}


# -- local lakes: OS locks ------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock_local(lake: Lake, name: str, key: str, record: dict, *, timeout: float,
                single_machine: bool) -> Iterator[LockInfo]:
    """The OS lock is held on the hidden ``locks/.<name>.flock`` (left in place, as filelock advises:
    removing a locked file lets waiters split over two files); the holder record ``locks/<name>.lock``
    exists while the lock is held, and is left behind only by a holder that died."""
    import filelock

    path = lake.path(key)
    if not single_machine:
        _check_reach(lake)
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
        raise LockTimeout(busy(lake.url, name, _read_local_holder(path) or {}, "alive", timeout)) from None
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
        yield LockInfo(name, record, took, lake=lake)
    finally:
        try:
            current = _read_local_holder(path)
            if current is not None and current.get("owner") == record["owner"]:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            flock.release()


def _check_reach(lake: Lake) -> None:
    """Refuse a lake folder whose OS locks would not reach other machines; where that cannot be
    read (not Linux), say once per lake that it was not checked (:class:`~kafer.errors.LockReachWarning`).

    Raises
    ------
    LakeError
        When the folder's file system is not one whose locks are known to reach other machines.
    """
    reach = lock_reach(os.path.realpath(lake.root))
    if reach.problem:
        raise LakeError(f"the lake {lake.url} lies on {reach.problem}, so another machine could change the lake at "
                        "the same time: move it to a local disk, to a share that carries locks to its server (NFS "
                        "with locking, SMB without nobrl) or to S3 (s3://), or, if only this machine ever uses the "
                        "lake, set single_machine = true in kafer.toml")
    if not reach.checked and lake.url not in _UNCHECKED:
        _UNCHECKED.add(lake.url)
        warnings.warn(LockReachWarning(
            f"the lake {lake.url}: whether its locks reach other machines was not checked (this system does not "
            "say which file system holds the folder; only Linux does). They do on a local disk and on a Windows "
            "share or NFS with locking; a synced folder (OneDrive, Dropbox, Google Drive) or a mounted bucket "
            "carries none: use such a lake from one machine only (single_machine = true in kafer.toml says so), "
            "or put it on S3"), stacklevel=2)


# Lakes this process said it could not check (said once each).
_UNCHECKED: set[str] = set()


def _local_holder(lake: Lake, name: str, key: str) -> dict | None:
    """Who holds a local lake's lock, by trying its OS lock without waiting."""
    import filelock

    path = lake.path(key)
    record = _read_local_holder(path)
    lock_file = os.path.join(os.path.dirname(path), f".{name}.flock")
    if not os.path.exists(lock_file):
        return None if record is None else {**record, "state": "dead", "why": "dead: it holds no OS lock"}
    probe = filelock.FileLock(lock_file)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return {**(record or {}), "state": "alive", "why": "alive"}
    except OSError as exc:  # the lock file may not be opened here (a read-only share): assume the worst
        return {**(record or {}), "state": "alive",
                "why": f"taken for alive: its OS lock cannot be tried here ({exc.strerror or exc})"}
    probe.release()
    return None if record is None else {**record, "state": "dead", "why": "dead: its OS lock was released"}


def _read_local_holder(path: str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return parse_record(data) if data.strip() else None


#: File systems of disks and memory: only this machine's kernel opens their files, and it keeps their
#: locks for every process that does (a share exported from such a disk locks through its server).
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "nilfs2",
                                "bcachefs", "vfat", "exfat", "ntfs3", "hfsplus", "tmpfs", "ramfs", "overlay"})
#: Network and cluster file systems whose locks are kept by a server or a cluster lock manager for
#: every machine that mounts them, unless a mount option keeps them on the client (:data:`LOCAL_LOCKS`).
SHARED_LOCK_FILE_SYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "ceph", "gfs2", "ocfs2", "lustre"})
#: Per file system, the mount options that keep ``flock()`` locks on the client (for Lustre, locks
#: reach other clients only when it is mounted ``flock``).
LOCAL_LOCKS = {"nfs": {"nolock", "local_lock=all", "local_lock=flock"}, "nfs4": {"nolock", "local_lock=all",
                                                                                   "local_lock=flock"},
               "cifs": {"nobrl"}, "smb3": {"nobrl"}, "gfs2": {"localflocks"}, "ocfs2": {"localflocks"},
               "lustre": {"localflock", "noflock"}}


@dataclass(frozen=True)
class LockReach:
    """Whether OS locks taken on a lake folder reach every machine that can open it.

    ``checked`` is false where the mounts cannot be read (not Linux): then nothing is known.
    ``problem`` says why the locks would stay on this machine (``None``: they reach every machine
    that can open the folder).
    """

    checked: bool
    problem: str | None = None


def lock_reach(path: str, *, mountinfo: str | None = None) -> LockReach:
    """Whether OS locks taken on ``path`` would reach every machine that can open it.

    Read from the mount holding ``path`` (``/proc/self/mountinfo``, or the text ``mountinfo``), by
    an allow-list: a local disk or memory file system (:data:`LOCAL_FILE_SYSTEMS`: only this
    machine opens it), or a network or cluster file system that keeps locks on its server
    (:data:`SHARED_LOCK_FILE_SYSTEMS`) mounted without an option that keeps them on the client (NFS
    ``nolock``, ``local_lock=all`` or ``flock``; SMB ``nobrl``; GFS2 and OCFS2 ``localflocks``;
    Lustre unless mounted ``flock``). Anything else (FUSE mounts of object stores such as gcsfuse,
    blobfuse2, s3fs or rclone, sshfs, davfs, vboxsf, 9p and WSL's drvfs, virtiofs…) is a problem.
    """
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as fh:
                mountinfo = fh.read()
        except OSError:
            return LockReach(False)
    best = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        point = fields[4].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[0])):
            kind, source, *more = fields[dash + 1:dash + 4] + ["?", ""]
            best = (point, kind, source, set(fields[5].split(",")) | set(more[0].split(",")))
    if best is None:
        return LockReach(False)
    point, kind, source, options = best
    if kind in LOCAL_FILE_SYSTEMS:
        return LockReach(True)
    if kind in SHARED_LOCK_FILE_SYSTEMS:
        local = sorted(options & LOCAL_LOCKS.get(kind, set()))
        if kind == "lustre" and "flock" not in options:
            local = local or ["without flock"]
        if not local:
            return LockReach(True)
        return LockReach(True, f"{_KIND_WORDS.get(kind, kind)} ({source} mounted on {point}, option {local[0]}) "
                               "whose locks stay on this machine")
    return LockReach(True, f"{_KIND_WORDS.get(kind, f'a {kind} mount')} ({source} mounted on {point}), whose "
                           "locks are not known to reach other machines")


_KIND_WORDS = {"nfs": "an NFS share", "nfs4": "an NFS share", "cifs": "an SMB share", "smb3": "an SMB share",
               "gfs2": "a GFS2 file system", "ocfs2": "an OCFS2 file system", "lustre": "a Lustre file system",
               "fuse.sshfs": "an sshfs mount", "fuse.gcsfuse": "a gcsfuse mount of a Google Cloud Storage bucket",
               "fuse.blobfuse2": "a blobfuse2 mount of an Azure container", "fuse.blobfuse": "a blobfuse mount of "
               "an Azure container", "fuse.s3fs": "an s3fs mount of an S3 bucket", "fuse.rclone": "an rclone mount",
               "fuse.mountpoint-s3": "a Mountpoint mount of an S3 bucket", "davfs": "a WebDAV (davfs) mount",
               "fuse.davfs2": "a WebDAV (davfs) mount", "vboxsf": "a VirtualBox shared folder",
               "9p": "a 9p mount (a VM's or WSL's shared folder)", "drvfs": "a WSL drvfs mount of a Windows drive",
               "virtiofs": "a virtiofs mount (a VM's shared folder)"}


# -- object stores: conditional writes ----------------------------------------------------------------
class _Lease:
    """An object-store lock as this holder holds it: the record it wrote and the tag the store gave it.

    Every change is conditional on that tag, under a thread lock, so the heartbeat thread and
    :meth:`LockInfo.verify` never race each other with the same tag.
    """

    def __init__(self, lake: Lake, key: str, record: dict, etag: str):
        self.lake, self.key, self.record, self.etag = lake, key, record, etag
        self._guard = threading.Lock()
        self.lost = False
        self._unanswered: tuple[dict, bytes] | None = None  # a renewal whose answer never came

    def renew(self) -> bool:
        """Rewrite the record with a fresh heartbeat, only if the lock is still this version; False
        (and for good) once another holder has it."""
        with self._guard:
            if self.lost:
                return False
            if self._unanswered is not None:  # it may have landed: then the store holds its bytes
                current = self.lake.read_versioned(self.key)
                if current is not None and current.data == self._unanswered[1]:
                    self.record, self.etag = self._unanswered[0], current.etag
                self._unanswered = None
            now = time.time()
            record = {**self.record, "heartbeat": now, "heartbeat_utc": iso(now),
                      "beat": self.record.get("beat", 0) + 1}
            data = json_bytes(record)
            self._unanswered = (record, data)
            etag = _write_if(self.lake, self.key, data, self.etag)
            self._unanswered = None
            if etag is None:
                self.lost = True
                return False
            self.record, self.etag = record, etag
            return True

    def release(self) -> None:
        """Delete the lock, only if it is still this version (a lock taken over is left to its holder)."""
        with self._guard:
            if not self.lost:
                self.lake.delete_versioned(self.key, self.etag)


@contextlib.contextmanager
def _lock_object(lake: Lake, name: str, key: str, record: dict, *, timeout: float,
                 stale_after: float) -> Iterator[LockInfo]:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        now = time.time()
        record.update(since=now, since_utc=iso(now), heartbeat=now, heartbeat_utc=iso(now))
        data = json_bytes(record)
        current = lake.read_versioned(key)
        found, took, state, why = {}, None, "alive", "alive"
        try:
            if current is None:
                etag, state = _write_if(lake, key, data, None), "gone"
            else:
                found = parse_record(current.data)
                state, why = judge_holder(found, age=current.age, stale_after=stale_after)
                etag = None if state == "alive" else _write_if(lake, key, data, current.etag)
                took = {**found, "state": state, "why": why}
        except BaseException:
            _drop_if_ours(lake, key, record["owner"])  # a write whose answer was lost may have landed
            raise
        if etag is not None:
            break
        if state != "alive":
            continue  # another took it first: judge again
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(busy(lake.url, name, found, why, timeout))
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.5)
    if lake.is_remote:
        lake.fs.invalidate_cache()  # see what others wrote before we held the lock
    lease = _Lease(lake, key, record, etag)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lease, stop), name=f"kafer-lock-{name}", daemon=True)
    beat.start()
    try:
        yield LockInfo(name, record, took, lake=lake, lease=lease)
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(KaferError):  # an unreleased lock is taken over once stale
            lease.release()


def _heartbeat(lease: _Lease, stop: threading.Event) -> None:
    """Renew the holder's heartbeat until ``stop``, or until the lock is no longer its own."""
    while not stop.wait(lease.record["heartbeat_every"]):
        try:
            if not lease.renew():
                return
        except Exception:  # noqa: BLE001 - a missed beat is retried; staleness takes minutes
            continue


def _write_if(lake: Lake, key: str, data: bytes, etag: str | None) -> str | None:
    """Create ``key`` (``etag`` None) or replace the version ``etag`` with ``data``; its new tag, or
    None when refused. A refusal earned by this very write, retried after its answer was lost
    (the store holds exactly ``data``), is no refusal."""
    tag = lake.create_versioned(key, data) if etag is None else lake.replace_versioned(key, data, etag)
    if tag is None:
        current = lake.read_versioned(key)
        if current is not None and current.data == data:
            return current.etag
    return tag


def _drop_if_ours(lake: Lake, key: str, owner: str) -> None:
    """Delete the lock when it holds this owner's record (a take that failed half-way), else leave it."""
    with contextlib.suppress(Exception):
        current = lake.read_versioned(key)
        if current is not None and parse_record(current.data).get("owner") == owner:
            lake.delete_versioned(key, current.etag)
