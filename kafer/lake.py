"""The datalake: the only module that talks to fsspec.

A lake is a URL (local folder, ``memory://``, ``s3://``…) turned once into a filesystem and a
root. Keys are ``/``-separated paths below the root. Data keys are immutable: writing an existing
one is refused. Pointers (small JSON files naming the current version of something) are the only
keys replaced, always last, so a failed step leaves the lake as it was.

Faults of the store (unreachable, no credentials, missing bucket, permission denied, a file where
the lake should be) become :class:`~kafer.errors.LakeError` with one line naming the lake and what
to do; :meth:`Lake.check` finds them before any work starts. No method ever creates a bucket.

Locks (:meth:`Lake.lock`) die with their owner: on a local lake an OS lock the kernel releases
when the process ends; on an object store a create-if-absent object with a heartbeat, taken over
when its owner is provably dead (same host, process gone) or its heartbeat stopped.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import KaferError, LakeError, LockTimeout, NestedLockError

#: Seconds without a heartbeat after which an object-store lock is taken over (its holder being on
#: another host, so that whether it is alive cannot be seen).
DEFAULT_STALE_AFTER = 120.0

#: How tables are written into the lake: zstd, in row groups of this many rows.
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_SIZE = 256_000
#: Bytes read at once when a file is hashed, copied or compared.
_COPY_BLOCK = 8 << 20

_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})


def utc_stamp(moment: datetime | None = None) -> str:
    """A sortable UTC timestamp without colons, e.g. ``20241126T201753.123456Z``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LockInfo:
    """What :meth:`Lake.lock` yields while the lock is held.

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
# memory:// is one store per process: this makes its create-if-absent atomic between threads.
_MEMORY_GUARD = threading.Lock()
# (url, write) of remote lakes this process has checked successfully.
_CHECKED: set[tuple[str, bool]] = set()

class Lake:
    """A datalake at an fsspec URL.

    Parameters
    ----------
    url : str
        Where the lake lives: a local path, ``memory://name``, ``s3://bucket/prefix``…

    Raises
    ------
    LakeError
        When the URL names no usable filesystem (e.g. ``s3://`` without s3fs installed), or a local
        lake's path is a file or lies below one (checked at once: it costs a ``stat``).
    """

    def __init__(self, url: str):
        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:
            extra = " (pip install 'kafer[s3]')" if self.url.startswith(("s3://", "s3a://")) else ""
            raise LakeError(f"cannot open the lake {self.url}: {exc}{extra}") from None
        except ValueError as exc:
            raise LakeError(f"cannot open the lake at {self.url!r}: {exc}") from None
        self.root = self.root.rstrip("/")
        protocols = set(_protocols(self.fs))
        self.is_local = bool(protocols & {"file", "local"})
        self.is_memory = "memory" in protocols
        #: A store reached over the network (S3…): checked on first use, never asked to make folders.
        self.is_remote = not (self.is_local or self.is_memory)
        self._bucket = self.root.split("/", 1)[0] if protocols & _BUCKET_PROTOCOLS else None
        if self.is_local:
            self._check_local_path()

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- paths ---------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The filesystem path of ``key``."""
        return f"{self.root}/{key.strip('/')}" if key else self.root

    def exists(self, key: str) -> bool:
        with self._io("look for", key):
            if self.is_remote:
                self.fs.invalidate_cache()  # other processes write too: ask the store, not our listing cache
            return self.fs.exists(self.path(key))

    def list(self, prefix: str) -> list[str]:
        """Keys of the files below ``prefix`` (recursively), sorted; empty when there is none.

        Hidden names (starting with a dot: temporary files, OS lock files) are not keys."""
        base = self.path(prefix)
        with self._io("list", prefix or "/"):
            if self.is_remote:
                self.fs.invalidate_cache()
                found = self.fs.find(base)
            else:
                found = self.fs.find(base) if self.fs.exists(base) else []
        root = self.root + "/" if self.root else ""
        keys = []
        for p in found:
            p = p if not root or p.startswith(root) else "/" + p
            keys.append(p[len(root):] if root and p.startswith(root) else p)
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith("."))  # temporary files, OS locks

    # -- bytes -----------------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        data = self._cat(key)
        if data is None:
            raise LakeError(f"the lake {self.url} has no {key!r}")
        return data

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write an immutable key; refuse when it exists with other content."""
        path = self.path(key)
        with self._io("write", key):
            if self.is_remote:
                created = self._create(path, data)  # create-if-absent: immutable even against a racing writer
            elif self.fs.exists(path):
                created = False
            else:
                self._put(path, data)
                created = True
            if not created and self.fs.cat_file(path) != data:
                raise LakeError(f"refusing to overwrite {key!r} in the lake {self.url}: lake data is immutable")

    def write_file(self, key: str, local: str) -> None:
        """Write an immutable key from a local file, streamed rather than held in memory (but on
        ``memory://``, which holds everything); refuse when the key exists with other content."""
        if self.is_memory:
            with open(local, "rb") as fh:
                self.write_bytes(key, fh.read())
            return
        path = self.path(key)
        with self._io("write", key):
            if self.is_remote:
                created = self._create_from(path, local)
            elif self.fs.exists(path):
                created = False
            else:
                parent = path.rsplit("/", 1)[0]
                self.fs.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
                self.fs.put_file(local, tmp)
                self.fs.mv(tmp, path)
                created = True
            if not created and not self._holds(path, local):
                raise LakeError(f"refusing to overwrite {key!r} in the lake {self.url}: lake data is immutable")

    def _create_from(self, path: str, local: str) -> bool:
        """Upload ``local`` to ``path`` only when absent (an object store); True when this call created it."""
        return self._created(path, lambda **mode: self.fs.put_file(local, path, **mode))

    def _holds(self, path: str, local: str) -> bool:
        """Whether the lake's ``path`` has exactly the bytes of the local file, compared block by block."""
        if self.fs.size(path) != os.path.getsize(local):
            return False
        with self.fs.open(path, "rb") as theirs, open(local, "rb") as ours:
            while block := ours.read(_COPY_BLOCK):
                if theirs.read(len(block)) != block:
                    return False
        return True

    def _put(self, path: str, data: bytes) -> None:
        """Write ``path`` whole: an object store's PUT is atomic; a folder gets a temporary file moved into place."""
        if self.is_remote:
            self.fs.pipe_file(path, data)
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)  # local and memory only: on object stores this makes buckets
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def _cat(self, key: str) -> bytes | None:
        """The bytes of ``key``, or ``None`` when it does not exist."""
        with self._io("read", key):
            try:
                return self.fs.cat_file(self.path(key))
            except FileNotFoundError as exc:
                if self._names_missing_bucket(exc):
                    raise
                return None

    # -- json and pointers -----------------------------------------------------------------------
    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_bytes(key))
        except json.JSONDecodeError as exc:
            raise LakeError(f"{key!r} in the lake {self.url} is not valid JSON: {exc}") from None

    def write_json(self, key: str, obj: Any) -> None:
        """Write an immutable JSON document."""
        self.write_bytes(key, _json_bytes(obj))

    def read_pointer(self, key: str) -> Any | None:
        """The pointer's content, or ``None`` when it was never written."""
        data = self._cat(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise LakeError(f"{key!r} in the lake {self.url} is not valid JSON: {exc}") from None

    def write_pointer(self, key: str, obj: Any) -> None:
        """Replace a pointer atomically (an object store's PUT; elsewhere a temporary key moved into place)."""
        with self._io("write", key):
            self._put(self.path(key), _json_bytes(obj))

    # -- parquet ---------------------------------------------------------------------------------
    def write_table(self, key: str, table: pa.Table, *, row_group_size: int = ROW_GROUP_SIZE) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, compression=PARQUET_COMPRESSION)
        self.write_bytes(key, buf.getvalue())

    def read_table(self, keys: list[str] | str, *, columns: list[str] | None = None, filter=None) -> pa.Table:
        """Read one or several Parquet keys as one table, optionally filtered (pyarrow expression)."""
        import pyarrow.dataset as ds

        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys:
            raise LakeError("no Parquet keys to read")
        shown = keys[0] if len(keys) == 1 else f"{keys[0]} (and {len(keys) - 1} more)"
        with self._io("read", shown):
            try:
                dataset = ds.dataset([self.path(k) for k in keys], filesystem=self.fs, format="parquet")
                return dataset.to_table(columns=columns, filter=filter)
            except pa.ArrowInvalid as exc:
                if "parquet" in str(exc).lower() or "magic" in str(exc).lower():
                    raise LakeError(f"{shown!r} in the lake {self.url} is not readable Parquet: {exc}") from None
                raise

    # -- faults ----------------------------------------------------------------------------------
    def check(self, *, write: bool = False) -> None:
        """Make sure the lake can be used before any work starts.

        Checks that the store answers, the credentials are accepted, the bucket exists (it is never
        created), the lake's path is a folder (not a file) and may be listed; with ``write`` also
        that it may be written (on an object store by writing and removing a hidden probe key).
        ``memory://`` always passes; a local folder that does not exist yet passes (it is made on
        first write). Remote checks use short timeouts and no retries, so an unreachable store is
        reported in seconds. A remote lake is also checked (read level) before its first I/O.

        Raises
        ------
        LakeError
            One line naming the lake and what to do: unreachable store, no credentials, missing
            bucket, permission denied, a file where the lake should be.
        """
        if self.is_memory:
            return
        if self.is_local:
            self._check_local_path(write=write)
            return
        probe = self._probe_fs()
        with self._io("open", "", ensure=False):
            if self._bucket is not None:
                try:
                    probe.info(self._bucket)
                except FileNotFoundError:
                    raise self._missing_bucket() from None
            if self.root and self.root != self._bucket:
                try:
                    kind = probe.info(self.root).get("type")
                except FileNotFoundError:
                    kind = None  # a lake not written yet
                if kind == "file":
                    raise LakeError(f"the lake {self.url} is a file (an object), not a folder: "
                                    "point --lake / KAFER_LAKE at a prefix that holds no object of that name")
            if write:
                probe_key = self.path(f"locks/.tmp-check-{uuid.uuid4().hex}")
                probe.pipe_file(probe_key, b"")
                with contextlib.suppress(FileNotFoundError):
                    probe.rm_file(probe_key)
        _CHECKED.add((self.url, write))
        if write:
            _CHECKED.add((self.url, False))

    def _check_local_path(self, *, write: bool = False) -> None:
        """A local lake must be a folder or not exist yet; with ``write`` its nearest folder must be writable."""
        probe = self.root or os.sep
        while True:
            try:
                found = os.stat(probe)
                break
            except (FileNotFoundError, NotADirectoryError):
                parent = os.path.dirname(probe)
                if parent == probe:
                    return
                probe = parent
            except PermissionError:
                raise LakeError(f"permission denied on the lake {self.url} ({probe}): "
                                "ask for access to it, or use another lake") from None
        if not stat.S_ISDIR(found.st_mode):
            where = "is a file" if probe == self.root else f"lies below the file {probe}"
            raise LakeError(f"the lake {self.url} {where}, not a folder: point --lake / KAFER_LAKE at a folder "
                            "(made on first write)")
        if probe == self.root:
            try:
                os.listdir(probe)
            except PermissionError:
                raise LakeError(f"permission denied reading the lake {self.url}: ask for access to it, "
                                "or use another lake") from None
        if write and not os.access(probe, os.W_OK | os.X_OK):
            raise LakeError(f"permission denied writing the lake {self.url} ({probe} is not writable): "
                            "ask for access to it, or use another lake")

    def _probe_fs(self):
        """The lake's filesystem, for S3 a twin with short timeouts and one retry, to answer in seconds."""
        if not set(_protocols(self.fs)) & _S3_PROTOCOLS:
            return self.fs
        options = dict(self.fs.storage_options)
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", 3)
        config.setdefault("read_timeout", 10)
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        probe = type(self.fs)(**{**options, "config_kwargs": config})  # fsspec caches it (its own options)
        probe.retries = 1  # s3fs's own retry loop, on top of botocore's
        return probe

    @contextlib.contextmanager
    def _io(self, action: str, key: str, *, ensure: bool = True) -> Iterator[None]:
        """Turn the store's faults met while doing ``action`` on ``key`` into a one-line LakeError."""
        if ensure and self.is_remote and (self.url, False) not in _CHECKED:
            self.check()
        try:
            yield
        except KaferError:
            raise
        except Exception as exc:
            fault = self._fault(exc, action, key)
            if fault is None:
                raise
            raise fault from exc

    def _fault(self, exc: BaseException, action: str, key: str) -> LakeError | None:
        """The LakeError that says what ``exc`` means for this lake, or None for a bug (re-raised)."""
        chain = _exception_chain(exc)
        names = {type(e).__name__ for e in chain}
        detail = _first_line(exc)
        what = f"{action} {key!r} in" if key else f"{action}"
        if names & _NO_CREDENTIALS:
            return LakeError(f"no credentials for the lake {self.url} ({detail}): set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or fsspec's configuration, and try again")
        if names & _UNREACHABLE or any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
            address = ("the store's address (AWS_ENDPOINT_URL_S3 or fsspec's configuration)"
                       if set(_protocols(self.fs)) & _S3_PROTOCOLS else "the store's address")
            return LakeError(f"cannot reach the lake {self.url} ({detail}): check {address} and the network, "
                             "then try again")
        if self._names_missing_bucket(exc):
            return self._missing_bucket()
        if isinstance(exc, PermissionError):
            return LakeError(f"permission denied: cannot {what} the lake {self.url} ({detail}): "
                             "check that your credentials may read and write it")
        if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)):
            return LakeError(f"cannot {what} the lake {self.url}: a file stands where a folder should be, "
                             f"or the reverse ({detail}); check the lake's path")
        if isinstance(exc, FileNotFoundError):
            return LakeError(f"the lake {self.url} has no {key!r}" if key else
                             f"cannot {what} the lake {self.url}: {detail}")
        if _from_store(exc):
            return LakeError(f"cannot {what} the lake {self.url}: {detail}")
        return None

    def _names_missing_bucket(self, exc: BaseException) -> bool:
        text = " ".join(str(e) for e in _exception_chain(exc))
        return self._bucket is not None and isinstance(exc, FileNotFoundError) and (
            "bucket does not exist" in text.lower() or "NoSuchBucket" in text)

    def _missing_bucket(self) -> LakeError:
        return LakeError(f"the lake {self.url} is in bucket {self._bucket!r}, which does not exist: "
                         "correct the lake URL, or create the bucket (Käfer never creates one)")

    # -- lock ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str = "lake", *, timeout: float = 30.0, stale_after: float = DEFAULT_STALE_AFTER,
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
        path = self.path(key)
        identity = os.path.realpath(path) if self.is_local else f"{_protocols(self.fs)[0]}://{path}"
        with _HELD_GUARD:
            held = _HELD.get(identity)
        if held is not None and held[0] == threading.get_ident():
            raise NestedLockError(
                f"the lake {self.url} is busy: {describe_holder(held[1], 'alive, this very thread')} holds its "
                f"lock {name!r}, and this thread asks for it again, which would wait forever: "
                "a lock must not be taken twice in one thread")
        every = float(heartbeat) if heartbeat is not None else max(stale_after / 4.0, 0.01)
        record = _holder_record(self.url, name, purpose, heartbeat_every=every)
        if details:
            record["details"] = dict(details)
        take = self._lock_local if self.is_local else self._lock_object
        with take(name, key, path, record, timeout=max(float(timeout), 0.0), stale_after=stale_after) as info:
            with _HELD_GUARD:
                _HELD[identity] = (threading.get_ident(), record)
            try:
                yield info
            finally:
                with _HELD_GUARD:
                    _HELD.pop(identity, None)

    def lock_holder(self, name: str = "lake", *, stale_after: float = DEFAULT_STALE_AFTER) -> dict | None:
        """The record of whoever holds (or, dead, left) the lock ``name``, with ``state`` (``alive``,
        ``dead`` or ``stale``) and ``why`` added; ``None`` when nobody does. Reads only."""
        key = f"locks/{name}.lock"
        data = self._cat(key)
        if not data:
            return None
        holder = _parse_record(data)
        state, why = judge_holder(holder, stale_after=stale_after)
        return {**holder, "state": state, "why": why}

    @contextlib.contextmanager
    def _lock_local(self, name: str, key: str, path: str, record: dict, *, timeout: float,
                    stale_after: float) -> Iterator[LockInfo]:
        """The OS lock is held on the hidden ``locks/.<name>.flock`` (left in place, as filelock advises:
        removing a locked file lets waiters split over two files); the holder record ``locks/<name>.lock``
        exists while the lock is held, and is left behind only by a holder that died."""
        import filelock

        folder = os.path.dirname(path)
        with self._io("lock", key):
            os.makedirs(folder, exist_ok=True)
        flock = filelock.FileLock(os.path.join(folder, f".{name}.flock"))
        timed_out = False
        with self._io("lock", key):
            try:
                flock.acquire(timeout=timeout, poll_interval=0.05)
            except filelock.Timeout:  # a TimeoutError, which _io would take for a store fault
                timed_out = True
        if timed_out:
            holder = self._read_local_holder(path)
            state, why = judge_holder(holder, stale_after=stale_after) if holder else ("alive", "alive")
            if holder is None or state == "dead":  # the new holder has not written its record yet
                holder, why = {}, "alive"
            raise LockTimeout(_busy(self.url, name, holder, why, timeout)) from None
        try:
            with self._io("lock", key):
                previous = self._read_local_holder(path)  # a record left behind: its holder died holding the lock
                tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
                with open(tmp, "wb") as fh:
                    fh.write(_json_bytes(record))
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
                current = self._read_local_holder(path)
                if current is not None and current.get("owner") == record["owner"]:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            finally:
                flock.release()

    def _read_local_holder(self, path: str) -> dict | None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        return _parse_record(data) if data.strip() else None

    @contextlib.contextmanager
    def _lock_object(self, name: str, key: str, path: str, record: dict, *, timeout: float,
                     stale_after: float) -> Iterator[LockInfo]:
        token = record["owner"]
        deadline = time.monotonic() + timeout
        delay, last_try = 0.05, False
        with self._io("lock", key):
            while True:
                now = time.time()
                record.update(since=now, since_utc=_iso(now), heartbeat=now, heartbeat_utc=_iso(now))
                if self._create(path, _json_bytes(record)):
                    current = self._read_record(path)
                    if current is not None and current.get("owner") == token:
                        break  # ours, confirmed (a store without an atomic create may have let another in)
                holder = self._read_record(path)
                moved = holder is None  # released meanwhile: try again at once
                if holder is not None:
                    state, why = judge_holder(holder, stale_after=stale_after)
                    moved = state != "alive" and self._take_over(path, holder, record, stale_after=stale_after)
                remaining = deadline - time.monotonic()
                if moved and (remaining > 0 or not last_try):
                    last_try = remaining <= 0  # freed at the deadline: one more try
                    continue
                if remaining <= 0:
                    if holder is None:
                        holder, why = {}, "alive"
                    raise LockTimeout(_busy(self.url, name, holder, why, timeout))
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)
            took = self._read_record(path + ".takeover")
            if took is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path + ".takeover")
                took = {**(took.get("victim") or {}), "state": took.get("state"), "why": took.get("why")}
            if self.is_remote:
                self.fs.invalidate_cache()  # see what others wrote before we held the lock
        info = LockInfo(name, record, took)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(path, record, stop, info._lost),
                                name=f"kafer-lock-{name}", daemon=True)
        beat.start()
        try:
            yield info
        finally:
            stop.set()
            beat.join()
            with contextlib.suppress(KaferError, OSError):  # an unreleased lock ends by its heartbeat
                with self._io("unlock", key, ensure=False):
                    current = self._read_record(path)
                    if current is not None and current.get("owner") == token:
                        self.fs.rm_file(path)

    def _heartbeat(self, path: str, record: dict, stop: threading.Event, lost: threading.Event) -> None:
        """Refresh the holder's heartbeat until ``stop``; note when the lock is no longer ours."""
        while not stop.wait(record["heartbeat_every"]):
            try:
                current = self._read_record(path)
                if current is None or current.get("owner") != record["owner"]:
                    lost.set()
                    return
                now = time.time()
                record.update(heartbeat=now, heartbeat_utc=_iso(now))
                self.fs.pipe_file(path, _json_bytes(record))
            except Exception:  # noqa: BLE001 - a missed beat is retried; staleness takes minutes
                continue

    def _take_over(self, path: str, victim: dict, record: dict, *, stale_after: float) -> bool:
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
        if not self._create(claim_path, _json_bytes(claim)):
            existing = self._read_record(claim_path)
            if existing is None:
                return False
            if (existing.get("victim") or {}).get("owner") != victim.get("owner"):
                removable = True  # about an earlier holder, not the current one: left over
            else:  # another waiter is taking over the same victim; unless it died doing so
                by = {**(existing.get("by") or {}), "heartbeat": existing.get("at", 0), "heartbeat_every": 0}
                removable = judge_holder(by, stale_after=stale_after)[0] != "alive"
            if removable:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(claim_path)
            return False
        current = self._read_record(path)
        if current is not None and current.get("owner") == victim.get("owner"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)
            return True
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(claim_path)
        return False

    def _create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only when absent (memory and object stores); True when this call created it."""
        if self.is_memory:
            with _MEMORY_GUARD:
                if self.fs.exists(path):
                    return False
                self._put(path, data)
                return True
        return self._created(path, lambda **mode: self.fs.pipe_file(path, data, **mode))

    def _created(self, path: str, write: Callable[..., None]) -> bool:
        """Call ``write(mode="create")``, which writes ``path`` only when absent; True when it did."""
        try:
            write(mode="create")  # S3: If-None-Match
        except TypeError:  # a filesystem without create mode: not atomic, the caller's re-read decides
            if self.fs.exists(path):
                return False
            write()
        except FileExistsError:
            return False
        except OSError as exc:
            if "ConditionalRequestConflict" in str(exc):  # S3: a concurrent conditional write won
                return False
            raise
        return True

    def _read_record(self, path: str) -> dict | None:
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError as exc:
            if self._names_missing_bucket(exc):
                raise
            return None
        return _parse_record(data)


_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                             "NoAuthTokenError", "TokenRetrievalError", "UnauthorizedSSOTokenError",
                             "ProfileNotFound", "InvalidConfigError"})
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                          "ReadTimeoutError", "ProxyConnectionError", "SSLError", "HTTPClientError",
                          "ClientConnectorError", "ServerDisconnectedError", "ServerTimeoutError"})


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- lock holders -----------------------------------------------------------------------------------
def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _this_host() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers sharing a host name do not share pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


@functools.lru_cache(maxsize=1)
def _boot_id() -> str | None:
    """This machine's boot id (Linux): a record from another boot names a process that is gone."""
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


def _holder_record(url: str, name: str, purpose: str, *, heartbeat_every: float) -> dict:
    now = time.time()
    pid = os.getpid()
    own = _proc_stat(pid)
    return {"lake": url, "lock": name, "owner": f"{_this_host()}:{pid}:{uuid.uuid4().hex[:12]}",
            "host": _this_host(), "pid": pid, "pidns": _pid_namespace(), "boot": _boot_id(),
            "started": own[1] if own else None,
            "purpose": purpose, "since": now, "since_utc": _iso(now), "heartbeat": now, "heartbeat_utc": _iso(now),
            "heartbeat_every": heartbeat_every}


def _parse_record(data: bytes) -> dict:
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


def judge_holder(holder: dict, *, stale_after: float = DEFAULT_STALE_AFTER,
                 now: float | None = None) -> tuple[str, str]:
    """Whether a lock's holder is ``alive``, ``dead`` (provably) or ``stale`` (heartbeat stopped), and why.

    A holder on this host (and in this pid namespace) is judged by its process (gone, a zombie, a
    reused pid or an earlier boot: dead; else alive, whatever its heartbeat). A holder on another
    host is judged by its heartbeat: older than ``stale_after`` seconds (or twice the holder's own
    interval, when longer) is stale.
    """
    if holder.get("unreadable"):
        return "dead", "unreadable lock record"
    now = time.time() if now is None else now
    pidns = _pid_namespace()
    if holder.get("host") == _this_host() and not (holder.get("pidns") and pidns and holder["pidns"] != pidns):
        boot = _boot_id()
        if holder.get("boot") and boot and holder["boot"] != boot:
            return "dead", "dead: this host restarted since"
        alive = _process_alive(holder.get("pid"), holder.get("started"))
        if alive is False:
            return "dead", "dead"
        if alive:
            return "alive", "alive"
    beat = holder.get("heartbeat", holder.get("since"))
    try:
        age = now - float(beat)
    except (TypeError, ValueError):
        return "stale", "no heartbeat recorded"
    limit = max(float(stale_after), 2.0 * float(holder.get("heartbeat_every") or 0.0))
    if age > limit:
        return "stale", f"no heartbeat for {age:.0f} s, presumed dead"
    return "alive", f"alive, heartbeat {max(age, 0):.0f} s ago"


def describe_holder(holder: dict, why: str) -> str:
    """``retrain r… (pid 123 on host, alive, since 2024-…)``."""
    if not holder:
        return f"another job ({why})"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = holder.get("since_utc") or (_iso(float(holder["since"])) if holder.get("since") else "?")
    return f"{holder.get('purpose') or 'another job'} ({where}, {why}, since {since})"


def _busy(url: str, name: str, holder: dict, why: str, waited: float) -> str:
    return (f"the lake {url} is busy: {describe_holder(holder, why)} holds its lock {name!r}; "
            f"waited {waited:g} s. Try again when it has finished.")


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def _from_store(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the storage (a file system, a network, an object store's client)
    rather than a bug."""
    chain = _exception_chain(exc)
    return isinstance(exc, OSError) or any("ClientError" == type(e).__name__ or type(e).__module__.startswith(
        ("botocore", "aiobotocore", "aiohttp")) for e in chain)


def list_source(path: str) -> tuple[list[str], list[str]]:
    """The files an upload path names (itself, the files below a folder, or a glob's matches), and
    apart the hidden ones left out: those whose name, or a folder's below ``path``, starts with
    ``.``; a hidden folder is named once, not each file in it.

    Raises
    ------
    UploadError
        When the path names nothing, or its store cannot be reached or read (no credentials, an
        endpoint down, permission denied), in one line.
    """
    from .errors import UploadError

    try:
        return _list_source(path)
    except ImportError as exc:
        raise UploadError(f"cannot be read: {exc} (for s3:// uploads, pip install 'kafer[s3]')", file=path) from None
    except (UploadError, ValueError):
        raise
    except Exception as exc:
        if not _from_store(exc):
            raise
        raise UploadError(f"cannot be listed ({_first_line(exc)}): check the path, and for a store its address "
                          "and credentials", file=path) from None


def _list_source(path: str) -> tuple[list[str], list[str]]:
    from .errors import UploadError

    fs, root = fsspec.core.url_to_fs(path)
    protocol = _protocols(fs)[0]
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    magic = [root.index(ch) for ch in "*?[" if ch in root]
    if magic:
        found = sorted(fs.glob(root))
        base = root[:min(magic)].rsplit("/", 1)[0]
    elif fs.isdir(root):
        found = sorted(fs.find(root))
        base = root.rstrip("/")
    elif fs.exists(root):
        found = [root]
        base = root
    else:
        raise UploadError("no such file or folder", file=path)
    files, hidden = [], []
    for p in found:
        parts = (p[len(base):] if p.startswith(base) else p).strip("/").split("/")
        dot = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
        if dot is not None:
            hidden.append("/".join([base, *parts[:dot + 1]]))
        elif not fs.isdir(p):
            files.append(p)
    if not files and not hidden:
        raise UploadError("matches no file", file=path)

    def url(p: str) -> str:
        return prefix + p if prefix and not p.startswith(prefix) else p

    return [url(p) for p in files], [url(p) for p in dict.fromkeys(hidden)]


@dataclass(frozen=True)
class Fetched:
    """An upload file as a local file: where, its SHA-256 and size, whether it is a copy made in the
    staging folder, and its stamp ``(size, mtime_ns)`` from before it was hashed, to see later that
    it was not changed since."""

    path: str
    sha256: str
    size: int
    stamp: tuple[int, int]
    copied: bool


def fetch_source(path: str, *, staging: str) -> Fetched:
    """Hash an upload file in one streamed pass; a file not on the local disk is copied into the
    folder ``staging`` on the way, so that it can be read (a workbook needs random access) and
    landed without its bytes ever being held in memory.

    Raises
    ------
    UploadError
        When the file does not exist or cannot be read.
    """
    import hashlib

    from .errors import UploadError

    try:
        fs, root = fsspec.core.url_to_fs(path)
        local = bool(set(_protocols(fs)) & {"file", "local"})
        target = root if local else os.path.join(staging, f"original-{uuid.uuid4().hex}")
        found = os.stat(target) if local else None
        digest = hashlib.sha256()
        with fs.open(root, "rb") as src, (contextlib.nullcontext() if local else open(target, "wb")) as copy:
            while block := src.read(_COPY_BLOCK):
                digest.update(block)
                if copy is not None:
                    copy.write(block)
        found = found or os.stat(target)
    except FileNotFoundError:
        raise UploadError("no such file", file=path) from None
    except Exception as exc:
        if not _from_store(exc):
            raise
        raise UploadError(f"cannot be read ({getattr(exc, 'strerror', None) or _first_line(exc)})", file=path) from None
    return Fetched(path=target, sha256=digest.hexdigest(), size=found.st_size,
                   stamp=(found.st_size, found.st_mtime_ns), copied=not local)


def unchanged(fetched: Fetched) -> bool:
    """Whether the local file of ``fetched`` still has the size and modification time it was hashed with."""
    try:
        found = os.stat(fetched.path)
    except OSError:
        return False
    return (found.st_size, found.st_mtime_ns) == fetched.stamp
