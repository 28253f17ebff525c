"""The datalake: the only module that talks to fsspec.

A lake is a URL (local folder, ``memory://``, ``s3://``…) turned once into a filesystem and a
root. Keys are ``/``-separated paths below the root. Data keys are immutable: writing an existing
one is refused. Pointers (small JSON files naming the current version of something) are the only
keys replaced, always last, so a failed step leaves the lake as it was.

Faults of the store (unreachable, no credentials, missing bucket, permission denied, a file where
the lake should be) become :class:`~kafer.errors.LakeError` with one line naming the lake and what
to do; :meth:`Lake.check` finds them before any work starts. No method ever creates a bucket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import stat
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import KaferError, LakeError, LockTimeout

_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})


def utc_stamp(moment: datetime | None = None) -> str:
    """A sortable UTC timestamp without colons, e.g. ``20241126T201753.123456Z``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        """Keys of the files below ``prefix`` (recursively), sorted; empty when there is none."""
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
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith(".tmp-"))

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
    def write_table(self, key: str, table: pa.Table, *, row_group_size: int = 256_000) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, compression="zstd")
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
        if isinstance(exc, OSError) or "ClientError" in names or any(
                type(e).__module__.startswith(("botocore", "aiobotocore", "aiohttp")) for e in chain):
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
    def lock(self, name: str = "lake", *, timeout: float = 30.0, stale_after: float = 6 * 3600.0,
             purpose: str = "") -> Iterator[None]:
        """Hold the lake-wide lock ``name`` for the duration of the block.

        Waits up to ``timeout`` seconds for another holder, then raises :class:`LockTimeout`
        naming that holder. A lock older than ``stale_after`` seconds is taken over.
        """
        key = f"locks/{name}.lock"
        path = self.path(key)
        token = {"owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                 "purpose": purpose, "since": time.time(), "since_utc": utc_now_iso()}
        deadline = time.monotonic() + timeout
        delay = 0.05
        with self._io("lock", key):
            while not self._try_create(path, _json_bytes(token)):
                holder = self._read_record(path)
                if holder is not None and time.time() - float(holder.get("since", 0)) > stale_after:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)
                    continue
                if time.monotonic() >= deadline:
                    who = f"{holder.get('purpose') or 'another job'} ({holder.get('owner')}, since {holder.get('since_utc')})" \
                        if holder else "another job"
                    raise LockTimeout(
                        f"the lake {self.url} is busy: {who} holds its lock; waited {timeout:g} s. "
                        "Try again when it has finished.")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            if self.is_remote:
                self.fs.invalidate_cache()  # object stores cache listings: see what others wrote before we held the lock
        try:
            yield
        finally:
            with self._io("unlock", key):
                holder = self._read_record(path)
                if holder is not None and holder.get("owner") == token["owner"]:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)

    def _try_create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only when absent; True when this call created it."""
        if not self.is_local:
            return self._create(path, data)
        os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True

    def _create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only when absent (memory and object stores); True when this call created it."""
        if self.is_memory:
            with _MEMORY_GUARD:
                if self.fs.exists(path):
                    return False
                self._put(path, data)
                return True
        try:
            self.fs.pipe_file(path, data, mode="create")  # S3: If-None-Match
        except TypeError:  # a filesystem without create mode: not atomic, the caller's re-read decides
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
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
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            return None


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




def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def list_source(path: str) -> tuple[list[str], list[str]]:
    """The files an upload path names (itself, the files below a folder, or a glob's matches), and
    apart the hidden ones left out: those whose name, or a folder's below ``path``, starts with
    ``.``; a hidden folder is named once, not each file in it."""
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


def read_source(path: str) -> bytes:
    """The bytes of an upload file at a local path or fsspec URL."""
    from .errors import UploadError

    try:
        with fsspec.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UploadError("no such file", file=path) from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise UploadError(f"cannot be read ({exc.strerror or exc})", file=path) from None
