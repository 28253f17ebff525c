"""The datalake's store: every read and write of a lake, through fsspec.

A lake is a URL (local folder, ``memory://``, ``s3://``…) turned once into a filesystem and a
root. Keys are ``/``-separated paths below the root. Data keys are immutable: writing an existing
one is refused. Pointers (small JSON files naming the current version of something) are the only
keys replaced, always last, so a failed step leaves the lake as it was.

Faults of the store (unreachable, no credentials, missing bucket, permission denied, a file where
the lake should be) become :class:`~kafer.errors.LakeError` with one line naming the lake and what
to do (:mod:`kafer.faults`); :meth:`Lake.check` finds them before any work starts. No method ever
creates a bucket. Who may write is decided by the lake's locks (:mod:`kafer.locks`), above this module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator

import fsspec
import fsspec.asyn
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import KaferError, LakeError
from .faults import exception_chain, lake_fault, missing_bucket, names_missing_bucket

#: How tables are written into the lake: zstd, in row groups of this many rows.
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_SIZE = 256_000
#: Bytes read at once when a file is hashed, copied or compared.
COPY_BLOCK = 8 << 20

_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})


def utc_stamp(moment: datetime | None = None) -> str:
    """A sortable UTC timestamp without colons, e.g. ``20241126T201753.123456Z``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: What ``link()`` answers on a file system without hard links (some SMB and FUSE mounts, FAT).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})

#: What a conditional request answers when its condition does not hold: it failed (412), a concurrent
#: conditional write won (409), or the object is gone (404).
_REFUSED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"})


@dataclass(frozen=True)
class Versioned:
    """A key's bytes as the store holds them, the store's tag for this version of them (an ETag),
    and their age: seconds since they were written, by the store's own clock."""

    data: bytes
    etag: str
    age: float


# memory:// is one store per process: this makes its conditional writes atomic between threads.
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
        names = set(protocols(self.fs))
        self.is_local = bool(names & {"file", "local"})
        self.is_memory = "memory" in names
        #: A store reached over the network (S3…): checked on first use, never asked to make folders.
        self.is_remote = not (self.is_local or self.is_memory)
        self._bucket = self.root.split("/", 1)[0] if names & _BUCKET_PROTOCOLS else None
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
        """Write an immutable key, created once: when it exists (or another writer creates it first,
        however close the race) with other content, refuse and leave it as it is."""
        path = self.path(key)
        with self._io("write", key):
            if self.is_remote:
                created = self._create(path, data)  # create-if-absent: immutable even against a racing writer
            elif self.is_memory:
                with _MEMORY_GUARD:  # one store per process: its threads race for it
                    created = not self.fs.exists(path)
                    if created:
                        self._put(path, data)
            else:
                created = self._create_local(path, lambda tmp: self.fs.pipe_file(tmp, data))
            if not created and self.fs.cat_file(path) != data:
                raise self._taken(key)

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
            elif self.fs.exists(path):  # a file landed before: not copied again
                created = False
            else:
                created = self._create_local(path, lambda tmp: self.fs.put_file(local, tmp))
            if not created and not self._holds(path, local):
                raise self._taken(key)

    def _taken(self, key: str) -> LakeError:
        return LakeError(f"refusing to overwrite {key!r} in the lake {self.url}: it holds other content (another "
                         "writer created it first) and lake data is immutable; nothing of this write was kept: "
                         "run the command again")

    def _create_local(self, path: str, fill: Callable[[str], None]) -> bool:
        """Create ``path`` in a local folder only when absent, atomically; True when this call created it.

        ``fill(tmp)`` writes the content to a temporary file beside it, which is then hard-linked to
        ``path``: the link fails when ``path`` exists, so of two writers racing for one key exactly
        one creates it, whole, and the other learns that it lost (a rename would silently replace the
        first one's file). Where the file system has no hard links, ``path`` is created with
        ``O_EXCL`` and written in place.
        """
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            fill(tmp)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                return self._create_exclusive(path, tmp)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @staticmethod
    def _create_exclusive(path: str, tmp: str) -> bool:
        """Create ``path`` with ``O_EXCL`` and copy ``tmp`` into it; False when it exists."""
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(handle, "wb") as out, open(tmp, "rb") as source:
                while block := source.read(COPY_BLOCK):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return True

    def remove(self, key: str) -> None:
        """Delete a data key, if it exists. Lake data is immutable: this is only for erasing what must
        not stay (people's ids in clear, see :mod:`kafer.people`)."""
        path = self.path(key)
        with self._io("remove", key):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)

    def _create_from(self, path: str, local: str) -> bool:
        """Upload ``local`` to ``path`` only when absent (an object store); True when this call created it."""
        return self._created(path, lambda **mode: self.fs.put_file(local, path, **mode))

    def _holds(self, path: str, local: str) -> bool:
        """Whether the lake's ``path`` has exactly the bytes of the local file, compared block by block."""
        if self.fs.size(path) != os.path.getsize(local):
            return False
        with self.fs.open(path, "rb") as theirs, open(local, "rb") as ours:
            while block := ours.read(COPY_BLOCK):
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
                if names_missing_bucket(exc, self._bucket):
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
        self.write_bytes(key, json_bytes(obj))

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
            self._put(self.path(key), json_bytes(obj))

    # -- parquet ---------------------------------------------------------------------------------
    def write_table(self, key: str, table: pa.Table, *, row_group_size: int = ROW_GROUP_SIZE) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, compression=PARQUET_COMPRESSION)
        self.write_bytes(key, buf.getvalue())

    def read_table(self, keys: list[str] | str, *, columns: list[str] | None = None, filter=None,
                   dictionary: bool = False) -> pa.Table:
        """Read one or several Parquet keys as one table, optionally filtered (pyarrow expression).

        With ``dictionary``, text columns come dictionary-encoded, as Parquet keeps them (indices into
        each row group's distinct values): reading and filtering them is then much less work.
        """
        import pyarrow.dataset as ds

        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys:
            raise LakeError("no Parquet keys to read")
        shown = keys[0] if len(keys) == 1 else f"{keys[0]} (and {len(keys) - 1} more)"
        with self._io("read", shown):
            try:
                paths = [self.path(k) for k in keys]
                dataset = ds.dataset(paths, filesystem=self.fs, format="parquet")
                if dictionary:
                    text = [f.name for f in dataset.schema if pa.types.is_string(f.type)]
                    options = ds.ParquetReadOptions(dictionary_columns=text)
                    dataset = ds.dataset(paths, filesystem=self.fs, format=ds.ParquetFileFormat(read_options=options))
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
                    raise missing_bucket(self.url, self._bucket) from None
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
        if not set(protocols(self.fs)) & _S3_PROTOCOLS:
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
        return lake_fault(exc, url=self.url, action=action, key=key, bucket=self._bucket,
                          s3=bool(set(protocols(self.fs)) & _S3_PROTOCOLS))

    # -- conditional writes (object stores: the locks' ground) -----------------------------------
    def read_versioned(self, key: str) -> Versioned | None:
        """The bytes of ``key`` with their version tag and age, or ``None`` when it does not exist.

        On S3 the age is read from the store's own clock (its answer's ``Date`` less the object's
        ``Last-Modified``, less a second for their resolution), so that the clocks of the machines
        that wrote and read the key do not matter.
        """
        path = self._conditional_path(key)
        with self._io("read", key):
            if self.is_memory:
                with _MEMORY_GUARD:
                    if not self.fs.exists(path):
                        return None
                    data = self.fs.cat_file(path)
                    age = time.time() - self.fs.modified(path).timestamp()
                return Versioned(data, _etag(data), max(age, 0.0))
            bucket, name, _ = self.fs.split_path(path)
            try:
                data, answer = fsspec.asyn.sync(self.fs.loop, _get_object, self.fs, bucket, name)
            except FileNotFoundError as exc:
                if names_missing_bucket(exc, self._bucket):
                    raise
                return None
            said = parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"])
            age = (said - answer["LastModified"]).total_seconds() - 1.0
            return Versioned(data, answer["ETag"], max(age, 0.0))

    def create_versioned(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only when it does not exist (S3: ``If-None-Match: *``); its new version tag,
        or ``None`` when it exists."""
        return self._write_if(key, data, None)

    def replace_versioned(self, key: str, data: bytes, etag: str) -> str | None:
        """Replace ``key`` only when it is still the version ``etag`` (S3: ``If-Match``); its new
        version tag, or ``None`` when it changed or is gone."""
        return self._write_if(key, data, etag)

    def delete_versioned(self, key: str, etag: str) -> bool:
        """Delete ``key`` only when it is still the version ``etag`` (S3: a conditional DELETE,
        ``If-Match``); False when it changed or is gone."""
        path = self._conditional_path(key)
        with self._io("delete", key):
            if self.is_memory:
                with _MEMORY_GUARD:
                    if not self.fs.exists(path) or _etag(self.fs.cat_file(path)) != etag:
                        return False
                    self.fs.rm_file(path)
                    return True
            try:
                self._s3("delete_object", path, IfMatch=etag)
            except OSError as exc:
                if _refused(exc):
                    return False
                raise
            return True

    def _write_if(self, key: str, data: bytes, etag: str | None) -> str | None:
        """Write ``key`` when it is absent (``etag`` None) or still the version ``etag``; the new tag or None."""
        path = self._conditional_path(key)
        with self._io("write", key):
            if self.is_memory:
                with _MEMORY_GUARD:
                    exists = self.fs.exists(path)
                    if exists != (etag is not None) or (exists and _etag(self.fs.cat_file(path)) != etag):
                        return None
                    self.fs.pipe_file(path, data)
                    return _etag(data)
            condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
            try:
                return self._s3("put_object", path, Body=data, **condition)["ETag"]
            except OSError as exc:
                if _refused(exc):
                    return None
                raise

    def _s3(self, method: str, path: str, **params) -> dict:
        """One S3 request about the object at ``path``; s3fs's listing cache forgets it."""
        bucket, name, _ = self.fs.split_path(path)
        try:
            return self.fs.call_s3(method, Bucket=bucket, Key=name, **params)
        finally:
            self.fs.invalidate_cache(path)

    def _conditional_path(self, key: str) -> str:
        """The path of ``key`` on a store that has conditional writes (S3, memory)."""
        if not (self.is_memory or set(protocols(self.fs)) & _S3_PROTOCOLS):
            raise LakeError(f"the lake {self.url} is on a store Käfer cannot lock: a lock on an object store needs "
                            "conditional writes (If-Match), which Käfer uses on s3:// only. Put the lake on S3, or "
                            "in a folder on a local disk or on a share that locks on its server (NFS with locking, "
                            "SMB); a folder mounted from this store (gcsfuse, blobfuse2, rclone) locks nothing "
                            "beyond this machine and is refused too")
        return self.path(key)

    def _create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only when absent (an object store); True when this call created it."""
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


def protocols(fs) -> tuple[str, ...]:
    """The protocol names of an fsspec filesystem (``("s3", "s3a")``, ``("file", "local")``…)."""
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def json_bytes(obj: Any) -> bytes:
    """A JSON document as the lake stores it: indented, keys sorted, UTF-8."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def _etag(data: bytes) -> str:
    """The tag of ``data`` as S3 gives it to an object written whole: its quoted MD5."""
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _refused(exc: BaseException) -> bool:
    """Whether a conditional request was refused (the object changed, exists, or is gone), not failed."""
    codes = {str(((getattr(e, "response", None) or {}).get("Error") or {}).get("Code")) for e in exception_chain(exc)}
    return bool(codes & _REFUSED) or isinstance(exc, (FileNotFoundError, FileExistsError))


async def _get_object(fs, bucket: str, name: str) -> tuple[bytes, dict]:
    """An S3 object's bytes and the store's answer (its ETag, Last-Modified and Date)."""
    answer = await fs._call_s3("get_object", Bucket=bucket, Key=name)
    try:
        return await answer["Body"].read(), answer
    finally:
        answer["Body"].close()
