"""The datalake: the only module that talks to fsspec.

A lake is a URL (local folder, ``memory://``, ``s3://``…) turned once into a filesystem and a
root. Keys are ``/``-separated paths below the root. Data keys are immutable: writing an existing
one is refused. Pointers (small JSON files naming the current version of something) are the only
keys replaced, always last, so a failed step leaves the lake as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LakeError, LockTimeout


def utc_stamp(moment: datetime | None = None) -> str:
    """A sortable UTC timestamp without colons, e.g. ``20241126T201753.123456Z``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Lake:
    """A datalake at an fsspec URL.

    Parameters
    ----------
    url : str
        Where the lake lives: a local path, ``memory://name``, ``s3://bucket/prefix``…
    """

    def __init__(self, url: str):
        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise LakeError(f"cannot open the lake at {self.url!r}: {exc}") from None
        self.root = self.root.rstrip("/")
        self.is_local = "file" in _protocols(self.fs)

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- paths ---------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The filesystem path of ``key``."""
        return f"{self.root}/{key.strip('/')}" if key else self.root

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def list(self, prefix: str) -> list[str]:
        """Keys of the files below ``prefix`` (recursively), sorted; empty when there is none."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        root = self.root + "/" if self.root else ""
        keys = []
        for p in found:
            p = p if not root or p.startswith(root) else "/" + p
            keys.append(p[len(root):] if root and p.startswith(root) else p)
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith(".tmp-"))

    # -- bytes -----------------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise LakeError(f"the lake {self.url} has no {key!r}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write an immutable key; refuse when it exists with other content."""
        path = self.path(key)
        if self.fs.exists(path):
            if self.fs.cat_file(path) == data:
                return
            raise LakeError(f"refusing to overwrite {key!r} in the lake {self.url}: lake data is immutable")
        self._put(path, data)

    def _put(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

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
        return self.read_json(key) if self.exists(key) else None

    def write_pointer(self, key: str, obj: Any) -> None:
        """Replace a pointer atomically (written to a temporary key, then moved into place)."""
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
        dataset = ds.dataset([self.path(k) for k in keys], filesystem=self.fs, format="parquet")
        return dataset.to_table(columns=columns, filter=filter)

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
        while not self._try_create(path, _json_bytes(token)):
            holder = self._lock_holder(path)
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
        self.fs.invalidate_cache()  # object stores cache listings: see what others wrote before we held the lock
        try:
            yield
        finally:
            holder = self._lock_holder(path)
            if holder is not None and holder.get("owner") == token["owner"]:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)

    def _try_create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only when absent; True when this call created it."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.is_local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.fs.exists(path):
            return False
        try:
            with self.fs.open(path, "xb") as fh:
                fh.write(data)
        except (FileExistsError, ValueError, NotImplementedError):
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
        return True

    def _lock_holder(self, path: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def open_lake(url: str | None = None) -> Lake:
    """The lake at ``url``, else ``KAFER_LAKE``, else the settings' default (``./lake``)."""
    from .config import load_settings

    return Lake(url or load_settings().lake)


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
