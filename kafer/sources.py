"""The sources of an upload: the files a path names, and each file hashed (and, from a store, copied) once.

An upload path is a local file, a folder, a glob, or a URL of any fsspec filesystem (``s3://…``).
:func:`list_source` says which files it names and which hidden ones it leaves out;
:func:`fetch_source` hashes a file in one streamed pass and gives it as a local file, so that a
workbook can be read with random access and landed without its bytes held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass

import fsspec

from .errors import UploadError
from .faults import first_line, from_store
from .lake import COPY_BLOCK, protocols


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
    try:
        return _list_source(path)
    except ImportError as exc:
        raise UploadError(f"cannot be read: {exc} (for s3:// uploads, pip install 'kafer[s3]')", file=path) from None
    except (UploadError, ValueError):
        raise
    except Exception as exc:
        if not from_store(exc):
            raise
        raise UploadError(f"cannot be listed ({first_line(exc)}): check the path, and for a store its address "
                          "and credentials", file=path) from None


def _list_source(path: str) -> tuple[list[str], list[str]]:
    fs, root = fsspec.core.url_to_fs(path)
    protocol = protocols(fs)[0]
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
    with _reading(path):
        fs, root = fsspec.core.url_to_fs(path)
        local = bool(set(protocols(fs)) & {"file", "local"})
        target = root if local else os.path.join(staging, f"original-{uuid.uuid4().hex}")
        found = os.stat(target) if local else None
        digest = hashlib.sha256()
        with fs.open(root, "rb") as src, (contextlib.nullcontext() if local else open(target, "wb")) as copy:
            while block := src.read(COPY_BLOCK):
                digest.update(block)
                if copy is not None:
                    copy.write(block)
        found = found or os.stat(target)
    return Fetched(path=target, sha256=digest.hexdigest(), size=found.st_size,
                   stamp=(found.st_size, found.st_mtime_ns), copied=not local)


def content_hash(path: str) -> str:
    """The SHA-256 of an upload file (local or any fsspec URL), read in one streamed pass.

    Raises
    ------
    UploadError
        When the file does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    with _reading(path), fsspec.open(path, "rb") as src:
        while block := src.read(COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _reading(path: str):
    """Turn a missing or unreadable upload file into one :class:`UploadError` line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UploadError("no such file", file=path) from None
    except UploadError:
        raise
    except Exception as exc:
        if not from_store(exc):
            raise
        raise UploadError(f"cannot be read ({getattr(exc, 'strerror', None) or first_line(exc)})", file=path) from None


def unchanged(fetched: Fetched) -> bool:
    """Whether the local file of ``fetched`` still has the size and modification time it was hashed with."""
    try:
        found = os.stat(fetched.path)
    except OSError:
        return False
    return (found.st_size, found.st_mtime_ns) == fetched.stamp
